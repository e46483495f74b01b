// How the host reaches a guest vsock port. With the host kernel's vhost_vsock: AF_VSOCK through the native addon
// (and the guest CID must be unique on the host). Without it (these machines): the hybrid vsock Unix socket served by
// hull-vsock-backend, which needs no native code on the host. connectHybridVsock works from the socket path alone,
// so a later CLI process can reach a running sandbox.
import { closeSync, constants, openSync } from 'node:fs';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { AgentUnreachableError, HybridVsockProtocolError, VsockAddonError } from './errors.js';

export type TransportKind = 'hybrid' | 'vhost-vsock';

export interface AgentTransport {
  readonly kind: TransportKind;
  connect(port: number, timeoutMs: number): Promise<Duplex>;
}

/** Kernel vhost-vsock only if the device can really be opened (root, module loaded). */
export function vhostVsockUsable(device = '/dev/vhost-vsock'): boolean {
  try {
    closeSync(openSync(device, constants.O_RDWR));
    return true;
  } catch {
    return false;
  }
}

export function chooseTransport(requested: 'auto' | TransportKind = 'auto', device = '/dev/vhost-vsock'): TransportKind {
  if (requested !== 'auto') return requested;
  return vhostVsockUsable(device) ? 'vhost-vsock' : 'hybrid';
}

// ---------------------------------------------------------------------------------------------------------------
// Hybrid vsock (Firecracker's protocol): `CONNECT <port>\n` → `OK <n>\n`. The backend closes the connection when
// the guest has no listener yet, so closing before the OK line means "retry".

const MAX_REPLY = 32;
const RETRY_MS = 20;

class RetryableError extends Error {}
/** The attempt ran out of the overall deadline rather than failing on its own. */
class DeadlineCutError extends RetryableError {}

export async function connectHybridVsock(udsPath: string, port: number, timeoutMs: number): Promise<net.Socket> {
  if (!Number.isInteger(port) || port < 0 || port > 0xffffffff) {
    throw new RangeError(`vsock port must be a u32, got ${port}`);
  }
  return connectWithRetry(udsPath, port, timeoutMs, (budgetMs) => attemptHybrid(udsPath, port, budgetMs), (err) => {
    if (!(err instanceof RetryableError)) throw err;
    return err.message;
  });
}

/**
 * Calls `attempt` every RETRY_MS until it connects or the deadline passes (the guest is still booting, or its
 * agent does not listen yet). `retryable` returns why an error is worth another try, or rethrows it.
 */
async function connectWithRetry<T>(
  target: string,
  port: number,
  timeoutMs: number,
  attempt: (budgetMs: number) => Promise<T>,
  retryable: (err: unknown) => string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let attempts = 0;
  let lastError = 'no attempt made';
  for (;;) {
    attempts++;
    try {
      return await attempt(Math.max(1, deadline - Date.now()));
    } catch (err) {
      const why = retryable(err);
      // An attempt the deadline cut short says less than the one before it: keep both.
      lastError = err instanceof DeadlineCutError && attempts > 1 ? `${lastError}; then ${why}` : why;
    }
    if (Date.now() + RETRY_MS >= deadline) {
      throw new AgentUnreachableError(target, port, timeoutMs, attempts, lastError);
    }
    await new Promise((r) => setTimeout(r, RETRY_MS));
  }
}

function attemptHybrid(udsPath: string, port: number, budgetMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ path: udsPath });
    let reply = Buffer.alloc(0);
    let settled = false;
    const finish = (err: Error | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('error', onError);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      if (err) {
        socket.destroy();
        reject(err);
      } else {
        resolve(socket);
      }
    };
    const timer = setTimeout(() => finish(new DeadlineCutError(`no reply to CONNECT ${port} within the deadline`)), budgetMs);
    const onError = (err: NodeJS.ErrnoException): void =>
      // ENOENT/ECONNREFUSED: the backend is not listening (yet); ECONNRESET/EPIPE: it dropped us. All retryable.
      finish(new RetryableError(`${err.code ?? 'error'}: ${err.message}`));
    const onEnd = (): void => finish(new RetryableError('the backend closed the connection (guest not listening yet)'));
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while (!settled && (chunk = socket.read() as Buffer | null) !== null) {
        reply = Buffer.concat([reply, chunk]);
        const nl = reply.indexOf(0x0a);
        if (nl < 0) {
          if (reply.length > MAX_REPLY) {
            finish(new HybridVsockProtocolError(`hybrid vsock reply from ${udsPath} exceeds ${MAX_REPLY} bytes without a newline`));
          }
          continue;
        }
        if (nl + 1 > MAX_REPLY) {
          finish(new HybridVsockProtocolError(`hybrid vsock reply from ${udsPath} exceeds ${MAX_REPLY} bytes`));
          return;
        }
        const line = reply.subarray(0, nl).toString('latin1');
        if (!line.startsWith('OK ')) {
          finish(new HybridVsockProtocolError(`hybrid vsock backend at ${udsPath} answered ${JSON.stringify(line)}, not "OK <port>"`));
          return;
        }
        const rest = reply.subarray(nl + 1);
        finish(undefined);
        // Bytes the guest sent right after accepting belong to the caller's stream.
        if (rest.length > 0) socket.unshift(rest);
        return;
      }
    };
    socket.once('connect', () => socket.write(`CONNECT ${port}\n`));
    socket.on('readable', onReadable);
    socket.on('error', onError);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
  });
}

export class HybridTransport implements AgentTransport {
  readonly kind = 'hybrid' as const;
  constructor(readonly udsPath: string) {}
  connect(port: number, timeoutMs: number): Promise<Duplex> {
    return connectHybridVsock(this.udsPath, port, timeoutMs);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Kernel AF_VSOCK through the addon (native/addon). Loaded lazily so hosts without the addon still work (hybrid).

type VsockAddon = Pick<typeof import('../native/addon/index.js'), 'vsockConnect'>;

// Dynamic so that hosts without vhost_vsock never touch the addon; the module itself loads the .node file lazily.
async function loadAddon(): Promise<VsockAddon> {
  try {
    return await import('../native/addon/index.js');
  } catch (err) {
    throw new VsockAddonError(`AF_VSOCK needs the native addon (npm run build:addon): ${(err as Error).message}`, {
      cause: err,
    });
  }
}

export class KernelVsockTransport implements AgentTransport {
  readonly kind = 'vhost-vsock' as const;
  constructor(readonly guestCid: number) {}

  async connect(port: number, timeoutMs: number): Promise<Duplex> {
    const addon = await loadAddon();
    return connectWithRetry(
      `AF_VSOCK cid ${this.guestCid}`,
      port,
      timeoutMs,
      async () => addon.vsockConnect(this.guestCid, port),
      (err) => {
        // A socket errno (ECONNRESET/ECONNREFUSED until the guest listens) is retried. A missing or broken addon
        // (NativeAddonError, code ERR_HULL_ADDON), a kernel without AF_VSOCK, or anything else fails at once: no
        // retry can fix it, and 90 s of retries would look like a slow guest.
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ERR_HULL_ADDON') throw new VsockAddonError((err as Error).message, { cause: err });
        if (code === undefined || !/^E[A-Z0-9]+$/.test(code) || code === 'EAFNOSUPPORT') {
          throw new VsockAddonError(`AF_VSOCK connect to cid ${this.guestCid} port ${port} failed: ${(err as Error).message}`, { cause: err });
        }
        return (err as Error).message;
      },
    );
  }
}

/**
 * The transport a VM's recorded kind names: the hybrid socket at `udsPath`, or AF_VSOCK to `guestCid`; undefined when
 * the VM has no vsock device.
 */
export function transportFor(kind: TransportKind | 'none', udsPath: string, guestCid: number): AgentTransport | undefined {
  if (kind === 'hybrid') return new HybridTransport(udsPath);
  if (kind === 'vhost-vsock') return new KernelVsockTransport(guestCid);
  return undefined;
}

// Guest CIDs for kernel vhost-vsock: guest-cid.ts (re-exported here, where callers have always found them).
export { allocateGuestCid, cidRefusedByKernel, type CidLease } from './guest-cid.js';
