// Starts hull-vsock-backend (native/vsock-backend) for one VM: the vhost-user-vsock device QEMU connects to, and the
// hybrid vsock socket the host connects to. stdout and stderr both go to the log file (not a pipe), so the backend
// keeps running after a detached CLI call exits; readiness is its `READY` line appearing in that file.
import type { HostProcess } from './process.js';
import { startSocketHelper } from './ready.js';

export interface VsockBackendOptions {
  binary: string;
  /** vhost-user socket QEMU connects to. */
  socketPath: string;
  /** Hybrid vsock socket (host-initiated `CONNECT <port>`). */
  udsPath: string;
  guestCid: number;
  /** The uid and gid of the worker (the process that touches guest memory): the sandbox's VMM uid (vmm-uid.ts). */
  workerId?: number;
  logFile: string;
  detached: boolean;
  logLevel?: 0 | 1 | 2 | 3;
  timeoutMs?: number;
}

export function vsockBackendArgs(o: VsockBackendOptions): string[] {
  const args = ['--socket', o.socketPath, '--uds-path', o.udsPath, '--guest-cid', String(o.guestCid)];
  if (o.workerId !== undefined) args.push('--worker-id', String(o.workerId));
  if (o.logLevel !== undefined) args.push('--log-level', String(o.logLevel));
  return args;
}

export function startVsockBackend(o: VsockBackendOptions): Promise<HostProcess> {
  return startSocketHelper({
    name: 'hull-vsock-backend',
    binary: o.binary,
    remedy: 'build it with `make -C native` (or set HULL_VSOCK_BACKEND)',
    args: vsockBackendArgs(o),
    sockets: [o.socketPath, o.udsPath],
    logFile: o.logFile,
    detached: o.detached,
    timeoutMs: o.timeoutMs,
    waitingFor: 'its READY line',
    isReady: (log) => /(^|\n)READY\n/.test(log()),
  });
}
