// The guest serial console on the host. QEMU writes it to its stdout, a FIFO this process reads; the bytes go into
// console.log, which is rotated to console.log.1 when full. The guest may print forever and the sandbox directory is
// usually on /run (tmpfs: host RAM), so the files are bounded, and what is kept is the newest output: what explains
// a crash. Writes are synchronous and reads paced: Node holds at most one chunk, and a guest that prints faster than
// we read fills the pipe, then QEMU's serial port waits (the guest is throttled, nothing is buffered without bound).
// A rotating-file library was not used: they buffer asynchronously, which is what must not happen here.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync, renameSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { Socket, type SocketConstructorOpts } from 'node:net';
import type { DuplexOptions, Readable } from 'node:stream';
import { HypervisorError } from './errors.js';

/**
 * Each console file is cut at this size, and there are two of them, so one sandbox's console costs at most 2 MiB of
 * host RAM. 1 MiB is thousands of lines of kernel log: far more than an error message quotes (log-tail.ts reads
 * the last 64 KiB), enough for a person to read the boot that led to a crash.
 */
export const CONSOLE_FILE_MAX_BYTES = 1024 * 1024;

/**
 * Pause between reads of the console pipe. QEMU's serial port writes one byte per write(2); read as they come, that
 * was one wake-up of this process per ~5 bytes (measured, 3 MiB flood under TCG: 586k reads, 6.3 s of our CPU, and
 * the flood took 21–24 s). Paced, a read takes what piled up (a pipe holds 64 KiB): at most 100 reads a second, a
 * ceiling of ~6 MiB/s, and the same flood took 5.5 s with 0.5 s of our CPU.
 */
export const CONSOLE_READ_INTERVAL_MS = 10;

/** Where the older half of the console goes on rotation. */
export function rotatedPath(file: string): string {
  return `${file}.1`;
}

/** The console files, oldest first: what a tail reads across. */
export function consoleFiles(file: string): string[] {
  return [rotatedPath(file), file];
}

// O_NOFOLLOW: the directory is ours, but a symlink planted there must not redirect guest bytes elsewhere.
const OPEN_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;

/** A log file that never grows past maxBytes: when full, it becomes `<file>.1` (replacing the older one). */
export class CappedLogFile {
  private fd: number | undefined;
  private size = 0;
  /** Bytes accepted since open, across rotations. */
  private written = 0;

  /** Starts empty: this boot's output only (an earlier boot's rotated half is removed too). */
  constructor(
    readonly path: string,
    readonly maxBytes = CONSOLE_FILE_MAX_BYTES,
  ) {
    if (!Number.isInteger(maxBytes) || maxBytes <= 0) throw new RangeError(`maxBytes must be a positive integer, got ${maxBytes}`);
    rmSync(rotatedPath(path), { force: true });
    this.fd = openSync(path, OPEN_FLAGS, 0o600);
  }

  get bytesWritten(): number {
    return this.written;
  }

  /** Appends all of `chunk`, rotating as often as it takes; throws (and stays closed) if the file system fails. */
  write(chunk: Uint8Array): void {
    let rest = chunk;
    while (rest.length > 0) {
      if (this.fd === undefined) throw new Error(`${this.path} is closed`);
      if (this.size >= this.maxBytes) this.rotate();
      const n = Math.min(rest.length, this.maxBytes - this.size);
      this.writeAll(rest.subarray(0, n));
      this.size += n;
      this.written += n;
      rest = rest.subarray(n);
    }
  }

  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    closeSync(fd);
  }

  private writeAll(bytes: Uint8Array): void {
    let off = 0;
    try {
      while (off < bytes.length) off += writeSync(this.fd as number, bytes, off, bytes.length - off);
    } catch (err) {
      this.close();
      throw err;
    }
  }

  private rotate(): void {
    // Rename, then reopen: console.log is always the newest output (or, for a moment, missing).
    try {
      renameSync(this.path, rotatedPath(this.path));
      this.close();
      this.fd = openSync(this.path, OPEN_FLAGS, 0o600);
      this.size = 0;
    } catch (err) {
      this.close();
      throw err;
    }
  }
}

export interface ConsolePipe {
  /** The read end, for copyConsole. Holds at most one read's worth (readableHighWaterMark 1) while paused. */
  reader: Socket;
  /** The write end, for the child's stdout; the caller closes it once the child has it. */
  writeFd: number;
}

/**
 * A FIFO rather than the socketpair Node gives a child for stdio ('pipe'): a socket buffer is full after ~280
 * one-byte writes (each costs a whole skb), so QEMU's byte-at-a-time console could not pile up between paced reads;
 * a pipe merges them into 64 KiB. Node cannot call pipe(2), so the FIFO is made at `fifoPath`, opened at both ends,
 * and unlinked at once: nothing stays in the directory.
 */
export function openConsolePipe(fifoPath: string): ConsolePipe {
  rmSync(fifoPath, { force: true });
  try {
    execFileSync('mkfifo', ['-m', '600', '--', fifoPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    throw new HypervisorError('internal', `cannot make the console pipe ${fifoPath}: ${stderr || (err as Error).message}`, { cause: err });
  }
  let readFd: number | undefined;
  try {
    // Non-blocking: there is no writer yet. The write end then opens at once, as a reader exists.
    readFd = openSync(fifoPath, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
    const writeFd = openSync(fifoPath, constants.O_WRONLY | constants.O_NOFOLLOW);
    // net.Socket hands its options to stream.Duplex, whose readableHighWaterMark @types/node does not list here.
    const options: SocketConstructorOpts & DuplexOptions = { fd: readFd, readable: true, writable: false, readableHighWaterMark: 1 };
    const reader = new Socket(options);
    return { reader, writeFd };
  } catch (err) {
    if (readFd !== undefined) closeSync(readFd);
    throw new HypervisorError('internal', `cannot open the console pipe ${fifoPath}: ${(err as Error).message}`, { cause: err });
  } finally {
    unlinkSync(fifoPath);
  }
}

/**
 * Copies `source` (QEMU's stdout) into `file` until it ends, one read every CONSOLE_READ_INTERVAL_MS at most. If the
 * file cannot be written (disk full, directory removed), `onError` is told once and the rest is read and dropped,
 * so the guest is never stalled by our problem. Resolves when the source has ended or closed; the file is closed
 * then.
 */
export function copyConsole(source: Readable, file: CappedLogFile, onError: (err: Error) => void): Promise<void> {
  let failed = false;
  source.on('data', (chunk: Buffer) => {
    // Not unref'd: it runs only while output flows, and it lets the last reads happen before an exit.
    source.pause();
    setTimeout(() => source.resume(), CONSOLE_READ_INTERVAL_MS);
    if (failed) return;
    try {
      file.write(chunk);
    } catch (err) {
      failed = true;
      file.close();
      onError(err as Error);
    }
  });
  return new Promise<void>((resolve) => {
    const done = (): void => {
      file.close();
      resolve();
    };
    source.once('end', done);
    source.once('close', done);
    // A read error ends the copy; 'close' follows it.
    source.once('error', (err: Error) => {
      if (!failed) onError(err);
      failed = true;
    });
  });
}

/** A console being copied: the child's stdout goes to `writeFd`, the bytes to a CappedLogFile. */
export interface ConsoleCapture {
  /** For the child's stdout. */
  writeFd: number;
  /** Settles once the child's output has ended (all copies of writeFd closed) and the log is closed. */
  copied: Promise<void>;
  /** Closes our copy of writeFd; call once the child has its own (or will never get it). */
  releaseWriteEnd(): void;
  /** Stops copying at once (the child was never started). */
  abort(): void;
}

/**
 * Starts copying a console into `logPath` (truncated; rotated half removed). `keepAlive` false: the pipe does not
 * keep this process running (a detached VM outlives it).
 */
export function captureConsole(
  logPath: string,
  fifoPath: string,
  options: { keepAlive: boolean; onError: (err: Error) => void; maxBytes?: number },
): ConsoleCapture {
  const file = new CappedLogFile(logPath, options.maxBytes);
  let pipe: ConsolePipe;
  try {
    pipe = openConsolePipe(fifoPath);
  } catch (err) {
    file.close();
    throw err;
  }
  if (!options.keepAlive) pipe.reader.unref();
  const copied = copyConsole(pipe.reader, file, options.onError);
  let writeFd: number | undefined = pipe.writeFd;
  const releaseWriteEnd = (): void => {
    if (writeFd === undefined) return;
    closeSync(writeFd);
    writeFd = undefined;
  };
  return {
    writeFd: pipe.writeFd,
    copied,
    releaseWriteEnd,
    abort: () => {
      releaseWriteEnd();
      pipe.reader.destroy();
    },
  };
}
