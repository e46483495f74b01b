// The container create and exec paths run once on a sample spec before the agent serves (in the start-up snapshot:
// at image build time), so V8 has compiled their functions when the first CreateContainer arrives. Under TCG the
// first run of this code cost ~70 ms of every container's create; a pooled VM serves exactly one sandbox, so every
// pooled start paid it. Pure computation only: no fds, no files, no processes.
import { limitsFor } from './cgroups.js';
import type { OciSpec } from './oci.js';
import { encodePlan } from './plan-encode.js';
import { computeCreatePlan, computeExecPlan, type Plan } from './spec-plan.js';
import { startContainerHooksFrom } from './start-hooks.js';

/** What containerd's CRI and `runc spec` send, with one of each field kind the plan reads. */
const SAMPLE_SPEC = {
  ociVersion: '1.1.0',
  process: {
    terminal: false,
    user: { uid: 0, gid: 0, additionalGids: [0, 10] },
    args: ['/bin/sh', '-c', 'true'],
    env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOSTNAME=warm-up'],
    cwd: '/',
    capabilities: {
      bounding: ['CAP_CHOWN', 'CAP_NET_BIND_SERVICE', 'CAP_KILL'],
      effective: ['CAP_CHOWN', 'CAP_NET_BIND_SERVICE', 'CAP_KILL'],
      permitted: ['CAP_CHOWN', 'CAP_NET_BIND_SERVICE', 'CAP_KILL'],
    },
    rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
    noNewPrivileges: true,
    oomScoreAdj: 100,
    apparmorProfile: '',
  },
  root: { path: 'rootfs', readonly: false },
  hostname: 'warm-up',
  mounts: [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup2', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
    { destination: '/etc/hosts', type: 'bind', source: '/run/hull/shared/warm-up/hosts', options: ['rbind', 'rprivate', 'rw'] },
  ],
  linux: {
    namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'cgroup' }],
    resources: {
      devices: [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' }],
      memory: { limit: 268435456 },
      cpu: { shares: 1024, quota: 100000, period: 100000 },
      pids: { limit: 1024 },
    },
    sysctl: { 'kernel.shm_rmid_forced': '1' },
    devices: [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0 }],
    seccomp: {
      defaultAction: 'SCMP_ACT_ERRNO',
      defaultErrnoRet: 1,
      architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
      syscalls: [
        { names: ['read', 'write', 'exit_group'], action: 'SCMP_ACT_ALLOW' },
        { names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0, op: 'SCMP_CMP_EQ' }] },
      ],
    },
    maskedPaths: ['/proc/kcore', '/proc/keys', '/sys/firmware'],
    readonlyPaths: ['/proc/bus', '/proc/sys'],
    rootfsPropagation: 'rprivate',
  },
  hooks: { startContainer: [{ path: '/bin/true', args: ['true'] }] },
};

/** Returns what it computed, for the test that the sample covers each branch and stays valid. */
export function warmUpContainerPaths(): { plan: Plan; warnings: string[] } {
  const spec = structuredClone(SAMPLE_SPEC) as unknown as OciSpec;
  const { plan, warnings } = computeCreatePlan({
    spec,
    rootfsPath: '/run/hull/shared/warm-up/rootfs',
    cgroupPath: '/sys/fs/cgroup/hull/warm-up',
    hostHostname: 'warm-up',
  });
  encodePlan(plan);
  limitsFor(spec.linux?.resources);
  startContainerHooksFrom(spec);
  const exec = computeExecPlan({ process: spec.process, joinPid: 1, cgroupPath: '/sys/fs/cgroup/hull/warm-up', ...(plan.seccomp ? { seccomp: plan.seccomp } : {}) });
  encodePlan(exec.plan);
  return { plan, warnings: [...warnings, ...exec.warnings] };
}
