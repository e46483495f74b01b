// Bounded waiting for a helper to get ready, failing early (with its log tail) if it exits first.
import { statSync } from 'node:fs';
import { HelperStartError } from './errors.js';
import { readRange, tailLines } from './log-tail.js';
import type { HostProcess } from './process.js';

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
