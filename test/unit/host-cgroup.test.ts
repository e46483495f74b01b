// The sandbox's host cgroup (shim/sandbox/cgroups/): cgroupsPath parsing in both forms, the host's hierarchies from
// mountinfo (v1, hybrid, v2), the limits derived from the VM's size and the spec, planning and creation over a fake
// cgroupfs tree for v1 and v2, and — as root on a host with cgroups — placing a process tree into a real cgroup and
// removing it with whatever is left inside.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { processesIn, withDescendants } from '../../shim/sandbox/cgroups/cgroupfs.js';
import { detectHierarchies, hierarchiesFrom, layoutOf, type Hierarchy } from '../../shim/sandbox/cgroups/hierarchies.js';
import { HostCgroup, planHostCgroup, removeHostCgroup, type HostCgroupRecord } from '../../shim/sandbox/cgroups/host-cgroup.js';
import { HOST_PIDS_BASE, hostLimits, limitWrites, sharesToWeight, VMM_CPU_OVERHEAD, VMM_MEMORY_OVERHEAD_MIB } from '../../shim/sandbox/cgroups/limits.js';
import { cgroupLocation, expandSlice, looksLikeSystemdPath } from '../../shim/sandbox/cgroups/path.js';
import type { OciSpec } from '../../shim/oci-spec.js';

const work = mkdtempSync(path.join(os.tmpdir(), 'hull-cgroup-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const silent = pino({ level: 'silent' });
const MIB = 2 ** 20;

const specWith = (cgroupsPath?: string, resources?: NonNullable<OciSpec['linux']>['resources']): OciSpec => ({
  ociVersion: '1.0.2',
  root: { path: 'rootfs' },
  linux: { ...(cgroupsPath !== undefined ? { cgroupsPath } : {}), ...(resources ? { resources } : {}) },
});

describe('cgroupsPath', () => {
  it('cgroupfs: absolute below each root, relative below our own cgroup; default: <id> relative', () => {
    expect(cgroupLocation('/kubepods/pod1/abc', 'c', false)).toMatchObject({ relative: false, segments: ['kubepods', 'pod1', 'abc'], form: 'cgroupfs' });
    expect(cgroupLocation('a//b/./c/', 'c', false)).toMatchObject({ relative: true, segments: ['a', 'b', 'c'] });
    expect(cgroupLocation(undefined, 'c1', false)).toMatchObject({ relative: true, segments: ['c1'] });
    expect(cgroupLocation('', 'c1', false)).toMatchObject({ relative: true, segments: ['c1'] });
  });

  it('refuses a climb out of the hierarchy, the root, control characters — one line each', () => {
    expect(() => cgroupLocation('../../x', 'c', false)).toThrow(/^cgroupsPath "\.\.\/\.\.\/x" must not contain "\.\." \(it would leave the cgroup hierarchy\)$/);
    expect(() => cgroupLocation('/a/../../b', 'c', false)).toThrow(/must not contain "\.\."/);
    expect(() => cgroupLocation('/', 'c', false)).toThrow(/names the root cgroup/);
    expect(() => cgroupLocation('/a\nb', 'c', false)).toThrow(/^cgroupsPath "\/a\?b" contains a control character$/);
    expect(() => cgroupLocation(`/${'x'.repeat(300)}`, 'c', false)).toThrow(/longer than 255/);
  });

  it('systemd: slice:prefix:name → nested slices and prefix-name.scope', () => {
    expect(cgroupLocation('system.slice:docker:abc', 'c', true).segments).toEqual(['system.slice', 'docker-abc.scope']);
    expect(cgroupLocation('kubepods-besteffort-pod12.slice:cri-containerd:abc', 'c', true).segments).toEqual([
      'kubepods.slice',
      'kubepods-besteffort.slice',
      'kubepods-besteffort-pod12.slice',
      'cri-containerd-abc.scope',
    ]);
    expect(cgroupLocation('-.slice:p:n', 'c', true).segments).toEqual(['p-n.scope']);
    expect(cgroupLocation(':p:n', 'c', true).segments).toEqual(['system.slice', 'p-n.scope']);
    expect(cgroupLocation('a.slice::n', 'c', true).segments).toEqual(['a.slice', 'n.scope']);
    expect(cgroupLocation('a.slice:p:b.slice', 'c', true).segments).toEqual(['a.slice', 'b.slice']);
    expect(cgroupLocation(undefined, 'c1', true)).toMatchObject({ relative: false, segments: ['system.slice', 'hull-c1.scope'], form: 'systemd' });
  });

  it('systemd: refuses what runc refuses', () => {
    expect(() => cgroupLocation('/a/b', 'c', true)).toThrow(/^cgroupsPath "\/a\/b" is not of the form "slice:prefix:name"/);
    expect(() => cgroupLocation('foo:p:n', 'c', true)).toThrow(/slice "foo" is not a systemd slice name/);
    expect(() => cgroupLocation('a--b.slice:p:n', 'c', true)).toThrow(/empty component/);
    expect(() => cgroupLocation('-a.slice:p:n', 'c', true)).toThrow(/empty component/);
    expect(() => cgroupLocation('a/b.slice:p:n', 'c', true)).toThrow(/must not contain "\/"/);
    expect(() => cgroupLocation('a.slice:p:', 'c', true)).toThrow(/has no name/);
    expect(() => cgroupLocation('a.slice:p:..', 'c', true)).not.toThrow(); // "p-...scope" is a plain name
    expect(() => cgroupLocation('a.slice::..', 'c', true)).not.toThrow();
    expect(expandSlice('a-b-c.slice')).toEqual(['a.slice', 'a-b.slice', 'a-b-c.slice']);
  });

  it("recognizes CRI's systemd form without a flag, and only that", () => {
    expect(looksLikeSystemdPath('kubepods-burstable-pod1.slice:cri-containerd:abc')).toBe(true);
    expect(looksLikeSystemdPath('/kubepods/burstable/pod1/abc')).toBe(false);
    expect(looksLikeSystemdPath('/a.slice:x:y')).toBe(false);
    expect(looksLikeSystemdPath(undefined)).toBe(false);
  });
});

const HYBRID_MOUNTINFO = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
`;
const HYBRID_PROC = `5:pids:/user.slice
4:memory:/user.slice/session-1.scope
2:cpu,cpuacct:/
1:name=systemd:/user.slice/session-1.scope
0::/user.slice/session-1.scope
`;

describe('hierarchies', () => {
  it('hybrid: each v1 mount with its controllers and our cgroup in it, plus the unified one', () => {
    const found = hierarchiesFrom(HYBRID_MOUNTINFO, HYBRID_PROC, () => []);
    expect(found).toEqual([
      { mount: '/sys/fs/cgroup/cpu,cpuacct', version: 1, controllers: ['cpu', 'cpuacct'], own: '/' },
      { mount: '/sys/fs/cgroup/memory', version: 1, controllers: ['memory'], own: '/user.slice/session-1.scope' },
      { mount: '/sys/fs/cgroup/pids', version: 1, controllers: ['pids'], own: '/user.slice' },
      { mount: '/sys/fs/cgroup/systemd', version: 1, controllers: ['name=systemd'], own: '/user.slice/session-1.scope' },
      { mount: '/sys/fs/cgroup/unified', version: 2, controllers: [], own: '/user.slice/session-1.scope' },
    ]);
    expect(layoutOf(found)).toBe('hybrid');
  });

  it('pure v2: one hierarchy whose controllers come from its cgroup.controllers', () => {
    const found = hierarchiesFrom('30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n', '0::/init.scope\n', () => ['cpu', 'memory', 'pids']);
    expect(found).toEqual([{ mount: '/sys/fs/cgroup', version: 2, controllers: ['cpu', 'memory', 'pids'], own: '/init.scope' }]);
    expect(layoutOf(found)).toBe('v2');
  });

  it('this host: every hierarchy found has a mount that exists', () => {
    if (!existsSync('/sys/fs/cgroup')) return;
    for (const h of detectHierarchies()) expect(existsSync(h.mount)).toBe(true);
  });
});

describe('limits', () => {
  it('memory = guest RAM + the VMM overhead, always; pids bounded; no CPU limit unless the spec sets one', () => {
    expect(hostLimits({ vcpus: 1, memoryMiB: 512 }, undefined)).toEqual({ memoryBytes: (512 + VMM_MEMORY_OVERHEAD_MIB) * MIB, pidsMax: HOST_PIDS_BASE + 1 });
  });

  it('memory of a VM that can grow: + its guest page array for the headroom (1/64), raised as it grows', () => {
    expect(hostLimits({ vcpus: 1, memoryMiB: 512, maxMemoryMiB: 1536 }, undefined).memoryBytes).toBe((512 + VMM_MEMORY_OVERHEAD_MIB + 16) * MIB);
    expect(hostLimits({ vcpus: 1, memoryMiB: 1536, maxMemoryMiB: 1536 }, undefined).memoryBytes).toBe((1536 + VMM_MEMORY_OVERHEAD_MIB) * MIB);
  });

  it('CPU quota = spec quota + the overhead in its period; shares clamped', () => {
    const limits = hostLimits({ vcpus: 1, memoryMiB: 512 }, { cpu: { quota: 50_000, period: 100_000, shares: 1 } });
    expect(limits.cpu).toEqual({ quotaUs: 50_000 + 100_000 * VMM_CPU_OVERHEAD, periodUs: 100_000 });
    expect(limits.cpuShares).toBe(2);
    expect(hostLimits({ vcpus: 2, memoryMiB: 1024 }, { cpu: { quota: 150_000 } }).cpu).toEqual({ quotaUs: 175_000, periodUs: 100_000 });
    expect(hostLimits({ vcpus: 1, memoryMiB: 512 }, { cpu: { quota: -1, shares: 0 } })).not.toHaveProperty('cpu');
  });

  const v1: Hierarchy[] = [
    { mount: '/cg/cpu,cpuacct', version: 1, controllers: ['cpu', 'cpuacct'], own: '/' },
    { mount: '/cg/memory', version: 1, controllers: ['memory'], own: '/' },
    { mount: '/cg/unified', version: 2, controllers: [], own: '/' },
  ];
  const v2: Hierarchy[] = [{ mount: '/cg', version: 2, controllers: ['cpu', 'memory', 'pids'], own: '/' }];
  const limits = { memoryBytes: 704 * MIB, cpu: { quotaUs: 75_000, periodUs: 100_000 }, cpuShares: 1024, pidsMax: 129 };

  it('v1 files: limit_in_bytes, period before quota, shares; a missing controller is reported', () => {
    const { writes, missing } = limitWrites(limits, v1);
    expect(writes.map((w) => [w.hierarchy.mount, w.file, w.value])).toEqual([
      ['/cg/memory', 'memory.limit_in_bytes', String(704 * MIB)],
      ['/cg/cpu,cpuacct', 'cpu.cfs_period_us', '100000'],
      ['/cg/cpu,cpuacct', 'cpu.cfs_quota_us', '75000'],
      ['/cg/cpu,cpuacct', 'cpu.shares', '1024'],
    ]);
    expect(missing).toEqual(['pids']);
  });

  it('v2 files: memory.max, cpu.max, cpu.weight (runc\'s conversion), pids.max', () => {
    const { writes, missing } = limitWrites(limits, v2);
    expect(writes.map((w) => [w.file, w.value])).toEqual([
      ['memory.max', String(704 * MIB)],
      ['cpu.max', '75000 100000'],
      ['cpu.weight', '39'],
      ['pids.max', '129'],
    ]);
    expect(missing).toEqual([]);
    expect([sharesToWeight(2), sharesToWeight(262_144)]).toEqual([1, 10_000]);
  });
});

/** A fake cgroupfs: directories, and the control files a test needs written in. */
function fakeTree(name: string, files: Record<string, string>): string {
  const root = path.join(work, name);
  for (const [file, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), content);
  }
  return root;
}

describe('planning and creating over a fake cgroupfs', () => {
  it('v1: an absolute path below each root, a relative one below our own cgroup; limits land in their hierarchies', () => {
    const root = fakeTree('v1', { 'memory/cgroup.procs': '', 'cpu/cgroup.procs': '', 'pids/cgroup.procs': '', 'memory/user/cgroup.procs': '' });
    const hierarchies: Hierarchy[] = [
      { mount: path.join(root, 'memory'), version: 1, controllers: ['memory'], own: '/user' },
      { mount: path.join(root, 'cpu'), version: 1, controllers: ['cpu'], own: '/' },
      { mount: path.join(root, 'pids'), version: 1, controllers: ['pids'], own: '/' },
    ];
    const relative = planHostCgroup(specWith(undefined), 'c1', { systemd: false, hierarchies });
    expect(relative.dirs.map((d) => d.dir)).toEqual([`${root}/memory/user/c1`, `${root}/cpu/c1`, `${root}/pids/c1`]);

    const request = planHostCgroup(specWith('/pod/c2', { cpu: { quota: 100_000, period: 100_000 } }), 'c2', { systemd: false, hierarchies });
    const recorded: HostCgroupRecord[] = [];
    HostCgroup.create(request, { vcpus: 1, memoryMiB: 512 }, silent, (r) => recorded.push(r));
    // The levels hull made above the cgroup are on record too: removed at teardown once empty.
    expect(recorded).toEqual([
      { dirs: [`${root}/memory/pod/c2`, `${root}/cpu/pod/c2`, `${root}/pids/pod/c2`], parents: [`${root}/memory/pod`, `${root}/cpu/pod`, `${root}/pids/pod`] },
    ]);
    const read = (f: string) => readFileSync(path.join(root, f), 'utf8');
    expect(read('memory/pod/c2/memory.limit_in_bytes')).toBe(String((512 + VMM_MEMORY_OVERHEAD_MIB) * MIB));
    expect([read('cpu/pod/c2/cpu.cfs_period_us'), read('cpu/pod/c2/cpu.cfs_quota_us')]).toEqual(['100000', '125000']);
    expect(read('pids/pod/c2/pids.max')).toBe(String(HOST_PIDS_BASE + 1));
  });

  it('v2: a relative path goes below our cgroup\'s parent; parents enable cpu, memory and pids for their children', () => {
    const root = fakeTree('v2', {
      'cgroup.controllers': 'cpuset cpu io memory pids',
      'cgroup.subtree_control': 'memory',
      'cgroup.procs': '',
      'kubepods/cgroup.controllers': 'cpu memory pids',
      'kubepods/cgroup.subtree_control': '',
      'kubepods/cgroup.procs': '',
    });
    const hierarchies: Hierarchy[] = [{ mount: root, version: 2, controllers: ['cpu', 'memory', 'pids'], own: '/kubepods/shim' }];
    expect(planHostCgroup(specWith('x'), 'c', { systemd: false, hierarchies }).dirs[0]?.dir).toBe(`${root}/kubepods/x`);

    const request = planHostCgroup(specWith('/kubepods/pod9', { cpu: { shares: 1024, quota: 20_000, period: 10_000 } }), 'c', { systemd: false, hierarchies });
    HostCgroup.create(request, { vcpus: 2, memoryMiB: 1024 }, silent, () => undefined);
    const read = (f: string) => readFileSync(path.join(root, f), 'utf8');
    expect(read('cgroup.subtree_control')).toBe('+cpu +pids'); // memory was enabled already
    expect(read('kubepods/cgroup.subtree_control')).toBe('+cpu +memory +pids');
    expect(read('kubepods/pod9/memory.max')).toBe(String((1024 + VMM_MEMORY_OVERHEAD_MIB) * MIB));
    expect(read('kubepods/pod9/cpu.max')).toBe('22500 10000');
    expect(read('kubepods/pod9/cpu.weight')).toBe('39');
    expect(read('kubepods/pod9/pids.max')).toBe(String(HOST_PIDS_BASE + 2));
  });

  it('refuses a path through something that is not a directory, or a cgroup in use, creating nothing', () => {
    const root = fakeTree('bad', { 'memory/cgroup.procs': '', 'memory/busy/cgroup.procs': '4242\n' });
    const hierarchies: Hierarchy[] = [{ mount: path.join(root, 'memory'), version: 1, controllers: ['memory'], own: '/' }];
    expect(() => planHostCgroup(specWith('/cgroup.procs/x'), 'c', { systemd: false, hierarchies })).toThrow(
      new RegExp(`^cgroupsPath "/cgroup.procs/x": ${root}/memory/cgroup.procs exists and is not a cgroup directory$`),
    );
    expect(() => planHostCgroup(specWith('/busy'), 'c', { systemd: false, hierarchies })).toThrow(/is in use \(it holds process 4242\)$/);
    expect(() => planHostCgroup(specWith('../x'), 'c', { systemd: false, hierarchies })).toThrow(/must not contain "\.\."/);
    expect(() => planHostCgroup({ ...specWith(), linux: { cgroupsPath: 7 } }, 'c', { systemd: false, hierarchies })).toThrow(/must be a string/);
    expect(existsSync(path.join(root, 'memory', 'x'))).toBe(false);
  });

  it('removal refuses a recorded directory outside the hierarchies (or a hierarchy\'s root)', async () => {
    const hierarchies: Hierarchy[] = [{ mount: '/sys/fs/cgroup/memory', version: 1, controllers: ['memory'], own: '/' }];
    await expect(removeHostCgroup({ dirs: ['/etc'] }, hierarchies)).rejects.toThrow(/not inside a cgroup hierarchy/);
    await expect(removeHostCgroup({ dirs: ['/sys/fs/cgroup/memory'] }, hierarchies)).rejects.toThrow(/not inside a cgroup hierarchy/);
  });

  it('descendants: every thread\'s children, recursively, parents first', () => {
    const proc = fakeTree('proc', {
      '10/task/10/children': '11 12',
      '10/task/13/children': '14',
      '11/task/11/children': '15',
      '12/task/12/children': '',
    });
    expect(withDescendants(10, proc)).toEqual([10, 11, 15, 12, 14]);
  });
});

const realCgroups = process.getuid?.() === 0 && existsSync('/proc/self/cgroup') && existsSync('/sys/fs/cgroup');

describe.skipIf(!realCgroups)('a real cgroup on this host (root)', () => {
  it('holds a process and the child it forked in every hierarchy; removal kills what is left and removes it', async () => {
    const parent = `hull-unit-${process.pid}`;
    const tree = spawn('sh', ['-c', 'sleep 60 & exec sleep 61'], { stdio: 'ignore' });
    const pid = tree.pid!;
    const exited = new Promise((resolve) => tree.on('exit', resolve));
    const request = planHostCgroup(specWith(`/${parent}/c`), 'c', { systemd: false });
    let record: HostCgroupRecord | undefined;
    try {
      await new Promise((r) => setTimeout(r, 200)); // the shell has forked its child
      const cgroup = HostCgroup.create(request, { vcpus: 1, memoryMiB: 512 }, silent, (r) => (record = r));
      cgroup.place({ vmm: { role: 'vmm', pid } });
      const family = withDescendants(pid);
      expect(family.length).toBe(2);
      for (const { dir } of request.dirs) expect(processesIn(dir).sort()).toEqual([...family].sort());
      // Reported again with a new helper: only the new one is moved (each move costs the kernel a grace period). The
      // first process, moved out by hand meanwhile, is not written again.
      const first = request.dirs[0]!;
      writeFileSync(path.join(first.hierarchy.mount, 'cgroup.procs'), String(pid));
      const helper = spawn('sleep', ['62'], { stdio: 'ignore' });
      try {
        cgroup.place({ vmm: { role: 'vmm', pid }, helpers: [{ role: 'virtiofsd', pid: helper.pid! }] });
        expect(processesIn(first.dir)).toContain(helper.pid);
        expect(processesIn(first.dir)).not.toContain(pid);
      } finally {
        helper.kill('SIGKILL');
      }
      expect(record!.parents).toEqual(request.dirs.map(({ hierarchy }) => path.join(hierarchy.mount, parent)));
      await removeHostCgroup(record!);
      for (const { dir } of request.dirs) expect(existsSync(dir)).toBe(false);
      // The level hull made above it went too (it was empty); a level another cgroup still sits in would stay.
      for (const { hierarchy } of request.dirs) expect(existsSync(path.join(hierarchy.mount, parent))).toBe(false);
      await exited;
      expect(withDescendants(pid)).toEqual([pid]); // no task dir left: gone
    } finally {
      tree.kill('SIGKILL');
      await removeHostCgroup({ dirs: request.dirs.map((d) => d.dir) }); // idempotent: after a failure above
      for (const { hierarchy } of request.dirs) {
        const dir = path.join(hierarchy.mount, parent);
        if (existsSync(dir)) rmdirSync(dir);
      }
    }
  });
});
