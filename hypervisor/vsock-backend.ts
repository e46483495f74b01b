// Starts hull-vsock-backend (native/vsock-backend) for one VM: the vhost-user-vsock device QEMU connects to, and the
// hybrid vsock socket the host connects to. stdout and stderr both go to the log file (not a pipe), so the backend
// keeps running after a detached CLI call exits; readiness is its `READY` line appearing in that file.
import { rmSync } from 'node:fs';
import { HostProcess, requireExecutable } from './process.js';
import { fileSize, readSince, waitUntilReady } from './ready.js';

export interface VsockBackendOptions {
  binary: string;
  /** vhost-user socket QEMU connects to. */
  socketPath: string;
  /** Hybrid vsock socket (host-initiated `CONNECT <port>`). */
  udsPath: string;
  guestCid: number;
  logFile: string;
  detached: boolean;
  logLevel?: 0 | 1 | 2 | 3;
  timeoutMs?: number;
}

export function vsockBackendArgs(o: VsockBackendOptions): string[] {
  const args = ['--socket', o.socketPath, '--uds-path', o.udsPath, '--guest-cid', String(o.guestCid)];
  if (o.logLevel !== undefined) args.push('--log-level', String(o.logLevel));
  return args;
}

export async function startVsockBackend(o: VsockBackendOptions): Promise<HostProcess> {
  requireExecutable('hull-vsock-backend', o.binary, 'build it with `make -C native` (or set HULL_VSOCK_BACKEND)');
  rmSync(o.socketPath, { force: true });
  rmSync(o.udsPath, { force: true });
  const offset = fileSize(o.logFile);
  const proc = await HostProcess.spawn({
    name: 'hull-vsock-backend',
    path: o.binary,
    args: vsockBackendArgs(o),
    logFile: o.logFile,
    detached: o.detached,
  });
  try {
    await waitUntilReady({
      proc,
      logFile: o.logFile,
      timeoutMs: o.timeoutMs ?? 5000,
      waitingFor: 'its READY line',
      isReady: () => /(^|\n)READY\n/.test(readSince(o.logFile, offset)),
    });
  } catch (err) {
    await proc.terminate(1000);
    rmSync(o.socketPath, { force: true });
    rmSync(o.udsPath, { force: true });
    throw err;
  }
  return proc;
}
