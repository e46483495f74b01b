// Starts Debian's C virtiofsd (qemu-system-common 7.2) for one VM. It serves exactly one vhost-user connection and
// exits when QEMU disconnects. It does not remove its socket, so the caller does. Options checked with --help: the
// sandbox is `-o sandbox=namespace|chroot` (there is no --sandbox flag in this version), and
// --thread-pool-size=1 keeps one worker thread per VM instead of a pool.
import { existsSync } from 'node:fs';
import type { HostProcess } from './process.js';
import { startSocketHelper } from './ready.js';

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
    '--thread-pool-size=1',
  ];
}

// Printed after listen(): from then on QEMU's connect succeeds. Probing by connecting would use up its one connection.
const LISTENING = 'Waiting for vhost-user socket connection';

export function startVirtiofsd(o: VirtiofsdOptions): Promise<HostProcess> {
  let socketSeenAt: number | undefined;
  return startSocketHelper({
    name: 'virtiofsd',
    binary: o.binary,
    remedy: 'install Debian package qemu-system-common',
    args: virtiofsdArgs(o),
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
