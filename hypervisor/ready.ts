// Bounded waiting for a helper to get ready, failing early (with its log tail) if it exits first; and the start of a
// per-VM helper that serves Unix sockets (virtiofsd, the vsock backend) built on it.
import { rmSync, statSync } from 'node:fs';
import { HelperStartError } from './errors.js';
import { readRange, tailLines } from './log-tail.js';
import { HostProcess, requireExecutable } from './process.js';

export function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** What was appended to a log since `offset` (at most 64 KiB of it: readiness lines come first). */
export function readSince(file: string, offset: number): string {
  return readRange(file, 64 * 1024, () => offset).text;
}

export interface ReadyWait {
  proc: HostProcess;
  logFile: string;
  timeoutMs: number;
  /** Polled every 20 ms. */
  isReady: () => boolean;
  /** For the timeout message, e.g. "its socket to appear". */
  waitingFor: string;
}

export async function waitUntilReady(w: ReadyWait): Promise<void> {
  const deadline = Date.now() + w.timeoutMs;
  for (;;) {
    if (w.isReady()) return;
    if (w.proc.exited) {
      const e = w.proc.exit;
      const how = e?.signal ? `signal ${e.signal}` : `code ${e?.code ?? '?'}`;
      throw new HelperStartError(w.proc.name, `exited (${how}) before ${w.waitingFor}`, tailLines(w.logFile, 15));
    }
    if (Date.now() >= deadline) {
      throw new HelperStartError(w.proc.name, `timed out after ${w.timeoutMs} ms waiting for ${w.waitingFor}`, tailLines(w.logFile, 15));
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface SocketHelper {
  name: string;
  binary: string;
  /** What to do when the binary is missing (for the one-line error). */
  remedy: string;
  args: string[];
  /** Removed before the start (a stale one would look ready) and when the start fails. */
  sockets: string[];
  logFile: string;
  detached: boolean;
  timeoutMs?: number;
  waitingFor: string;
  /** `logSinceStart` reads what the helper has written to its log so far. */
  isReady: (logSinceStart: () => string) => boolean;
}

/** Spawns the helper and waits until it is ready; on failure it is terminated and its sockets removed. */
export async function startSocketHelper(h: SocketHelper): Promise<HostProcess> {
  requireExecutable(h.name, h.binary, h.remedy);
  for (const s of h.sockets) rmSync(s, { force: true });
  const offset = fileSize(h.logFile);
  const proc = await HostProcess.spawn({ name: h.name, path: h.binary, args: h.args, logFile: h.logFile, detached: h.detached });
  try {
    await waitUntilReady({
      proc,
      logFile: h.logFile,
      timeoutMs: h.timeoutMs ?? 5000,
      waitingFor: h.waitingFor,
      isReady: () => h.isReady(() => readSince(h.logFile, offset)),
    });
  } catch (err) {
    await proc.terminate(1000);
    for (const s of h.sockets) rmSync(s, { force: true });
    throw err;
  }
  return proc;
}
