// How QEMU is confined (docs/confinement.md): hull spawns hull-vmm-launcher (native/vmm-launcher), which does as root
// what QEMU must not be able to do itself — listen and connect on hull's sockets, open taps and device files — then
// puts QEMU into its own mount, network, IPC and UTS namespaces whose root holds only what it reads, drops to the
// sandbox's uid (vmm-uid.ts) with no capabilities and no_new_privs, and execs QEMU, which keeps the pid. QEMU then
// installs its own seccomp filter (-sandbox, qemu-command.ts).
//
// This module decides what the new root holds and which descriptor QEMU gets at which number, and writes the
// launcher's command line: pure but for systemRoot(), which reads how the host lays out /usr.
import { lstatSync, readlinkSync } from 'node:fs';
import type { SandboxPaths } from './paths.js';
import type { QemuFds } from './qemu-command.js';
import type { Acceleration } from './types.js';

/** Resource limits of QEMU (soft = hard). NPROC counts the tasks of the sandbox's uid: QEMU's threads, the vsock worker. */
export const VMM_RLIMITS = { NOFILE: 4096, NPROC: 512, CORE: 0 } as const;
export type RlimitName = 'NOFILE' | 'NPROC' | 'CORE' | 'MEMLOCK' | 'FSIZE' | 'MSGQUEUE' | 'LOCKS' | 'SIGPENDING' | 'RTPRIO';

/**
 * QEMU's whole environment is this one variable (nothing of hull's reaches it): its socket dir, by which a QEMU not yet
 * on record is still found (vm-processes.ts endProcessesNaming), as its helpers are by the socket paths they are given.
 */
export const VM_MARKER_ENV = 'HULL_VM_SOCKETS';

/** A descriptor the launcher opens and QEMU gets at `fd` (a path, or a tap's name). */
export interface PassedFd {
  what: string;
  fd: number;
}

/** What the launcher does; each field is one of its options (native/vmm-launcher/main.c). */
export interface LaunchSpec {
  uid: number;
  gid: number;
  /** An existing root-owned directory: the mount point of QEMU's root in its own mount namespace. */
  jailDir: string;
  /** Bound read-only and executable at the same path (QEMU, its libraries, modules, firmware). */
  execPaths: string[];
  /** Bound read-only, noexec, at the same path (kernel, initrd, root image, the loader's cache). */
  readOnly: string[];
  symlinks: Array<{ path: string; target: string }>;
  /** Copied in at the same path, readable by the uid only (files the host keeps 0600, e.g. the agent key). */
  copies: string[];
  /** Character devices recreated in QEMU's /dev, owned by the uid (/dev/kvm). */
  devices: string[];
  /** Where the taps are (the pod's network namespace); absent: created in QEMU's own (a pooled VM's). */
  tapNetns?: string;
  taps: PassedFd[];
  listens: PassedFd[];
  connects: PassedFd[];
  opens: PassedFd[];
  rlimits: Partial<Record<RlimitName, number>>;
  /** QEMU's environment, all of it. */
  env: Record<string, string>;
}

/** The launcher's argv (without its own path): its options, `--`, then QEMU's argv (QEMU's path first). */
export function launcherArgs(spec: LaunchSpec, qemuArgv: string[]): string[] {
  const args = ['--uid', String(spec.uid), '--gid', String(spec.gid), '--jail', spec.jailDir];
  const each = (opt: string, values: string[]): void => values.forEach((v) => args.push(opt, v));
  each('--ro-exec', spec.execPaths);
  each('--ro', spec.readOnly);
  each('--symlink', spec.symlinks.map((s) => `${s.path}=${s.target}`));
  each('--copy', spec.copies);
  each('--dev', spec.devices);
  if (spec.tapNetns !== undefined) args.push('--tap-netns', spec.tapNetns);
  const passed = (list: PassedFd[]): string[] => list.map((p) => `${p.what}=${p.fd}`);
  each('--tap', passed(spec.taps));
  each('--listen', passed(spec.listens));
  each('--connect', passed(spec.connects));
  each('--open', passed(spec.opens));
  each('--rlimit', Object.entries(spec.rlimits).map(([name, value]) => `${name}=${value}`));
  each('--env', Object.entries(spec.env).map(([name, value]) => `${name}=${value}`));
  return [...args, '--', ...qemuArgv];
}

/** What of the host's own tree QEMU needs to run: /usr, and what the top level links into it (or holds itself). */
export interface SystemRoot {
  execPaths: string[];
  readOnly: string[];
  symlinks: Array<{ path: string; target: string }>;
}

/** Top-level entries a dynamically linked QEMU may need: merged-/usr hosts have them as symlinks into /usr. */
const LIBRARY_TOP = ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];

/** Reads the host's layout: /usr always; each LIBRARY_TOP entry as the symlink it is, or bound when a directory. */
export function systemRoot(qemuPath: string): SystemRoot {
  const root: SystemRoot = { execPaths: ['/usr'], readOnly: [], symlinks: [] };
  for (const top of LIBRARY_TOP) {
    let st;
    try {
      st = lstatSync(top);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    if (st.isSymbolicLink()) root.symlinks.push({ path: top, target: readlinkSync(top) });
    else if (st.isDirectory()) root.execPaths.push(top);
  }
  // The dynamic loader's cache: without it, libraries in directories named only by /etc/ld.so.conf.d are not found.
  try {
    if (lstatSync('/etc/ld.so.cache').isFile()) root.readOnly.push('/etc/ld.so.cache');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  // A QEMU outside those ($HULL_QEMU pointing at a build elsewhere) is bound by itself.
  if (!root.execPaths.some((dir) => qemuPath.startsWith(`${dir}/`))) root.execPaths.push(qemuPath);
  return root;
}

export interface QemuJailInput {
  uid: number;
  gid: number;
  paths: SandboxPaths;
  accel: Acceleration;
  kernelPath: string;
  initrdPath: string;
  rootImagePath?: string;
  agentKeyPath?: string;
  /** QEMU's virtio-fs device, connected to virtiofsd at paths.virtiofsdSock. */
  sharedFs: boolean;
  vsock: 'vhost-user' | 'vhost-vsock' | 'none';
  /** Tap names, in NIC order. */
  taps: string[];
  /** The namespace the taps are in (the pod's); absent: QEMU's own, where they are created. */
  tapNetns?: string;
  /** Each NIC gets a /dev/vhost-net descriptor too. */
  vhostNet: boolean;
  root: SystemRoot;
}

/**
 * The launch of one QEMU: what its root holds, and its descriptors, numbered from 3 in a fixed order (QMP, virtio-fs,
 * vsock, then per NIC its tap and vhost-net) so that QEMU's command line (`fds`) and the launcher's agree.
 */
export function planQemuJail(i: QemuJailInput): { spec: LaunchSpec; fds: QemuFds } {
  let next = 3;
  const take = (): number => next++;
  const spec: LaunchSpec = {
    uid: i.uid,
    gid: i.gid,
    jailDir: i.paths.socketDir,
    execPaths: [...i.root.execPaths],
    readOnly: [...i.root.readOnly, i.kernelPath, i.initrdPath, ...(i.rootImagePath !== undefined ? [i.rootImagePath] : [])],
    symlinks: [...i.root.symlinks],
    copies: i.agentKeyPath !== undefined ? [i.agentKeyPath] : [],
    // /dev/null: QEMU probes file locking on it at start ("Failed to open /dev/null for OFD lock probing" without).
    devices: ['/dev/null', ...(i.accel === 'kvm' ? ['/dev/kvm'] : [])],
    ...(i.tapNetns !== undefined && i.taps.length > 0 ? { tapNetns: i.tapNetns } : {}),
    taps: [],
    listens: [],
    connects: [],
    opens: [],
    rlimits: { ...VMM_RLIMITS },
    env: { [VM_MARKER_ENV]: `${i.paths.socketDir}/` },
  };
  const fds: QemuFds = { qmp: take(), taps: [], vhostNet: [] };
  spec.listens.push({ what: i.paths.qmpSock, fd: fds.qmp });
  if (i.sharedFs) {
    fds.virtiofs = take();
    spec.connects.push({ what: i.paths.virtiofsdSock, fd: fds.virtiofs });
  }
  if (i.vsock === 'vhost-user') {
    fds.vhostUserVsock = take();
    spec.connects.push({ what: i.paths.vhostVsockSock, fd: fds.vhostUserVsock });
  } else if (i.vsock === 'vhost-vsock') {
    fds.vhostVsock = take();
    spec.opens.push({ what: '/dev/vhost-vsock', fd: fds.vhostVsock });
  }
  for (const tap of i.taps) {
    const fd = take();
    fds.taps.push(fd);
    spec.taps.push({ what: tap, fd });
    if (i.vhostNet) {
      const vhost = take();
      fds.vhostNet.push(vhost);
      spec.opens.push({ what: '/dev/vhost-net', fd: vhost });
    }
  }
  return { spec, fds };
}
