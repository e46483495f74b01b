// Holds a process's stdout or stderr until the host pulls it with ReadStdout/ReadStderr. Bounded: when `cap` bytes
// wait unread, the pipe is paused, so the workload blocks on write instead of output being dropped or piling up.
// Everything written before EOF is returned before the empty (EOF) read, even after the process has exited.
import type { Readable } from 'node:stream';

export const DEFAULT_OUTPUT_CAP = 4 << 20;

export class OutputBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  private ended = false;
  private paused = false;
  private waiters: Array<() => void> = [];

  constructor(
    private readonly stream: Readable | null,
    private readonly cap = DEFAULT_OUTPUT_CAP,
  ) {
    if (!stream) {
      this.ended = true;
      return;
    }
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('end', () => this.finish());
    stream.on('close', () => this.finish());
    stream.on('error', () => this.finish());
  }

  get buffered(): number {
    return this.size;
  }

  /** True once the pipe ended and every byte has been read. */
  get drained(): boolean {
    return this.ended && this.size === 0;
  }

  /** Up to maxLen bytes; waits while nothing is buffered and the pipe is open; empty means EOF. */
  async read(maxLen: number, signal?: AbortSignal): Promise<Buffer> {
    for (;;) {
      if (this.size > 0) return this.take(maxLen);
      if (this.ended) return Buffer.alloc(0);
      await this.waitForChange(signal);
    }
  }

  private onData(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (this.size >= this.cap && !this.paused) {
      this.paused = true;
      this.stream?.pause();
    }
    this.wake();
  }

  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    this.wake();
  }

  private take(maxLen: number): Buffer {
    const n = Math.min(Math.max(maxLen, 1), this.size);
    const parts: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const c = this.chunks[0]!;
      if (c.length <= left) {
        parts.push(c);
        this.chunks.shift();
        left -= c.length;
      } else {
        parts.push(c.subarray(0, left));
        this.chunks[0] = c.subarray(left);
        left = 0;
      }
    }
    this.size -= n;
    if (this.paused && this.size < this.cap) {
      this.paused = false;
      this.stream?.resume();
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private waitForChange(signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = (): void => {
        this.waiters = this.waiters.filter((w) => w !== done);
        reject(signal!.reason);
      };
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.waiters.push(done);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
