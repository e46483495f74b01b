// Starts Debian's C virtiofsd (qemu-system-common 7.2) for one VM. It serves exactly one vhost-user connection and
// exits when QEMU disconnects. It does not remove its socket, so the caller does. Options checked with --help: the
// sandbox is `-o sandbox=namespace|chroot` (there is no --sandbox flag in this version), and
// --thread-pool-size=1 keeps one worker thread per VM instead of a pool.
//
// Confinement (docs/confinement.md): it stays root, since it serves the container's files with their owners, and
// sandboxes itself (namespaces + pivot_root into the share, a seccomp filter, capabilities cut to what file serving
// needs). Of those it keeps, -o modcaps drops CAP_MKNOD (a guest could otherwise create device nodes on the host's
// file system) and CAP_SETFCAP (extended attributes are off: no file capabilities to set). It is started through
// util-linux setpriv (which execs it: the pid stays virtiofsd's) with a bounding set of only what it keeps plus what
// its own sandboxing needs, no inheritable capabilities and no_new_privs: this 7.2 virtiofsd starts a thread (QEMU's
// call_rcu) before it drops capabilities and installs its filter, and that thread never gets either; the bounding
// set is what limits it.
import { existsSync } from 'node:fs';
import { requireExecutable, type HostProcess } from './process.js';
import { startSocketHelper } from './ready.js';
import { systemTool } from './system-tool.js';

export interface VirtiofsdOptions {
  binary: string;
  socketPath: string;
  sharedDir: string;
  logFile: string;
  detached: boolean;
  /** namespace needs CAP_SYS_ADMIN; chroot works inside a container. */
  sandbox?: 'namespace' | 'chroot';
  cache?: 'auto' | 'always' | 'none';
  timeoutMs?: number;
}

export function virtiofsdArgs(o: VirtiofsdOptions): string[] {
  return [
    `--socket-path=${o.socketPath}`,
    '-o', `source=${o.sharedDir}`,
    '-o', `cache=${o.cache ?? 'auto'}`,
    '-o', `sandbox=${o.sandbox ?? 'namespace'}`,
    '-o', 'modcaps=-mknod:-setfcap',
    '--thread-pool-size=1',
  ];
}

/** What virtiofsd keeps for serving files (its default set less the modcaps drops above). */
const SERVING_CAPS = ['chown', 'dac_override', 'fowner', 'fsetid', 'setgid', 'setuid'];

/** setpriv's options: the bounding set of what it keeps and what its sandbox needs to set up, nothing inheritable. */
export function virtiofsdPrivileges(sandbox: VirtiofsdOptions['sandbox'] = 'namespace'): string[] {
  // namespace: unshare, mount, pivot_root; chroot: chroot. setpcap: it drops its own bounding set.
  const setup = sandbox === 'chroot' ? ['sys_chroot', 'setpcap'] : ['sys_admin', 'setpcap'];
  return [`--bounding-set=-all,${[...SERVING_CAPS, ...setup].map((c) => `+${c}`).join(',')}`, '--inh-caps=-all', '--no-new-privs'];
}

// Printed after listen(): from then on QEMU's connect succeeds. Probing by connecting would use up its one connection.
const LISTENING = 'Waiting for vhost-user socket connection';

export async function startVirtiofsd(o: VirtiofsdOptions): Promise<HostProcess> {
  let socketSeenAt: number | undefined;
  requireExecutable('virtiofsd', o.binary, 'install Debian package qemu-system-common');
  return startSocketHelper({
    name: 'virtiofsd',
    binary: systemTool('setpriv', 'util-linux'),
    remedy: 'install Debian package util-linux',
    args: [...virtiofsdPrivileges(o.sandbox), '--', o.binary, ...virtiofsdArgs(o)],
    sockets: [o.socketPath],
    logFile: o.logFile,
    detached: o.detached,
    timeoutMs: o.timeoutMs,
    waitingFor: `its socket ${o.socketPath}`,
    isReady: (log) => {
      if (!existsSync(o.socketPath)) return false;
      if (log().includes(LISTENING)) return true;
      // Another build may not print the line: a socket that exists for 100 ms is listening by then.
      socketSeenAt ??= Date.now();
      return Date.now() - socketSeenAt > 100;
    },
  });
}
