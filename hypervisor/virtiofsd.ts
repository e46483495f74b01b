// Starts Debian's C virtiofsd (qemu-system-common 7.2) for one VM. It serves exactly one vhost-user connection and
// exits when QEMU disconnects. It does not remove its socket, so the caller does. Options checked with --help: the
// sandbox is `-o sandbox=namespace|chroot` (there is no --sandbox flag in this version), and
// --thread-pool-size=1 keeps one worker thread per VM instead of a pool.
import { existsSync, rmSync } from 'node:fs';
import { HostProcess, requireExecutable } from './process.js';
import { fileSize, readSince, waitUntilReady } from './ready.js';

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

export async function startVirtiofsd(o: VirtiofsdOptions): Promise<HostProcess> {
  requireExecutable('virtiofsd', o.binary, 'install Debian package qemu-system-common');
  rmSync(o.socketPath, { force: true });
  const offset = fileSize(o.logFile);
  const proc = await HostProcess.spawn({
    name: 'virtiofsd',
    path: o.binary,
    args: virtiofsdArgs(o),
    logFile: o.logFile,
    detached: o.detached,
  });
  let socketSeenAt: number | undefined;
  try {
    await waitUntilReady({
      proc,
      logFile: o.logFile,
      timeoutMs: o.timeoutMs ?? 5000,
      waitingFor: `its socket ${o.socketPath}`,
      isReady: () => {
        if (!existsSync(o.socketPath)) return false;
        if (readSince(o.logFile, offset).includes(LISTENING)) return true;
        // Another build may not print the line: a socket that exists for 100 ms is listening by then.
        socketSeenAt ??= Date.now();
        return Date.now() - socketSeenAt > 100;
      },
    });
  } catch (err) {
    await proc.terminate(1000);
    rmSync(o.socketPath, { force: true });
    throw err;
  }
  return proc;
}
