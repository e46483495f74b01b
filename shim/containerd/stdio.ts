// A process's stdio as containerd hands it to the shim: FIFO paths (no scheme, or fifo://), file:///path (stdout and
// stderr appended to one file, its directories created) or binary:///path?args (a logging binary that reads fds 3 and
// 4 and closes fd 5 once ready; containerd 1.6 pkg/process NewBinaryIO is the contract). An empty path means the
// stream is absent.
//
// FIFOs are opened so that Node's loop never blocks: stdout/stderr O_RDWR (we are our own extra reader, like the runc
// shim's extra O_RDONLY handle, so a client that goes away cannot make the open or the writes fail); stdin as
// stdin-fifo.ts describes (CloseIO delivers what the client wrote before it, then EOF).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { constants, createWriteStream, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import net from 'node:net';
import { Writable, type Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { StdinFifo } from './stdin-fifo.js';

export interface StdioPaths {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

export interface ProcessIo {
  stdin: Readable | null;
  stdout: Writable;
  stderr: Writable;
  /** CloseIO{stdin}: the process sees EOF once the client's data is drained. */
  closeStdin(): void;
  /** Flushes and closes everything (after the process exited and its output was relayed). */
  close(): Promise<void>;
}

export interface IoContext {
  containerId: string;
  namespace: string;
}

export type IoOpener = (paths: StdioPaths, ctx: IoContext) => Promise<ProcessIo>;

/** Discards what it is given: for a stream containerd did not ask for (the guest's pipe must still be drained). */
export function nullWritable(): Writable {
  return new Writable({ write: (_c, _e, cb) => cb() });
}

function schemeOf(uri: string): { scheme: string; path: string; query: URLSearchParams } {
  const m = /^([a-z][a-z0-9+.-]*):\/\//i.exec(uri);
  if (!m) return { scheme: 'fifo', path: uri, query: new URLSearchParams() };
  const url = new URL(uri);
  return { scheme: m[1]!.toLowerCase(), path: decodeURIComponent(url.pathname), query: url.searchParams };
}

function isFifo(p: string): boolean {
  try {
    return statSync(p).isFIFO();
  } catch {
    return false;
  }
}

function openOutputPath(p: string): Writable {
  if (isFifo(p)) {
    const fd = openSync(p, constants.O_RDWR | constants.O_NONBLOCK);
    const sock = new net.Socket({ fd, readable: false, writable: true });
    sock.on('error', () => undefined); // a reader that went away: output is dropped, the process is not harmed
    return sock;
  }
  const stream = createWriteStream(p, { flags: 'a' });
  stream.on('error', () => undefined);
  return stream;
}

/** file:// output: like containerd, the directories are created and the file opened (0644, append) up front, so a
 *  path that cannot be written fails the request instead of losing the output. */
function openLogFile(p: string): Writable {
  mkdirSync(dirname(p), { recursive: true, mode: 0o755 });
  const fd = openSync(p, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o644);
  const stream = createWriteStream('', { fd });
  stream.on('error', () => undefined);
  return stream;
}

interface Closer {
  stream: Writable;
}

async function endStream(s: Writable): Promise<void> {
  if (s.destroyed || s.writableFinished) return;
  const done = Promise.race([once(s, 'finish').catch(() => undefined), once(s, 'close').catch(() => undefined), sleep(2000)]);
  s.end();
  await done;
  s.destroy();
}

class OpenedIo implements ProcessIo {
  stdinFifo: StdinFifo | undefined;
  stdout: Writable = nullWritable();
  stderr: Writable = nullWritable();
  loggers: ChildProcess[] = [];
  extra: Closer[] = [];

  get stdin(): Readable | null {
    return this.stdinFifo?.stream ?? null;
  }

  closeStdin(): void {
    this.stdinFifo?.requestClose();
  }

  async close(): Promise<void> {
    this.stdinFifo?.destroy();
    const outs = new Set([this.stdout, this.stderr, ...this.extra.map((e) => e.stream)]);
    await Promise.all([...outs].map((s) => endStream(s)));
    await Promise.all(this.loggers.map((child) => stopLogger(child)));
  }
}

const LOGGER_EOF_GRACE_MS = 1000;
const LOGGER_TERM_GRACE_MS = 10_000;

/** A logging binary has its fds 3 and 4 at EOF: it may exit by itself; then, as containerd does, SIGTERM (so it
 *  can flush), and SIGKILL if it is still there after the grace containerd gives (its 12 s, less our wait for EOF). */
async function stopLogger(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit').then(() => true, () => true);
  const exitsWithin = async (ms: number): Promise<boolean> => {
    const timer = new AbortController(); // so a logger that is gone leaves no timer behind
    try {
      return await Promise.race([exited, sleep(ms, false, { signal: timer.signal }).catch(() => false)]);
    } finally {
      timer.abort();
    }
  };
  if (await exitsWithin(LOGGER_EOF_GRACE_MS)) return;
  child.kill('SIGTERM');
  if (await exitsWithin(LOGGER_TERM_GRACE_MS)) return;
  child.kill('SIGKILL');
}

async function startLoggingBinary(path: string, query: URLSearchParams, ctx: IoContext, io: OpenedIo): Promise<void> {
  // As containerd's NewBinaryCmd: each query key, then its first value (even when empty); the environment is only
  // the container's id and namespace (the shim's own, with containerd's addresses, is not handed on).
  const args: string[] = [];
  for (const key of new Set(query.keys())) args.push(key, query.get(key) ?? '');
  const child = spawn(path, args, {
    env: { CONTAINER_ID: ctx.containerId, CONTAINER_NAMESPACE: ctx.namespace },
    stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe', 'pipe'],
    detached: true,
  });
  child.unref();
  const failed = once(child, 'error').then(([err]) => {
    throw new Error(`logging binary ${path}: ${(err as Error).message}`);
  });
  const pipes = child.stdio as unknown as net.Socket[];
  const ready = pipes[5]!;
  const readyDone = new Promise<void>((resolve) => {
    ready.on('data', () => resolve());
    ready.on('end', () => resolve());
    ready.on('close', () => resolve());
    ready.on('error', () => resolve());
  });
  const timeout = sleep(10_000).then(() => {
    throw new Error(`logging binary ${path} did not signal ready within 10 s`);
  });
  try {
    await Promise.race([readyDone, failed, timeout]);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  ready.destroy();
  io.loggers.push(child);
  io.stdout = pipes[3]!;
  io.stderr = pipes[4]!;
  io.stdout.on('error', () => undefined);
  io.stderr.on('error', () => undefined);
}

/** Opens the stdio containerd gave for one process. With a terminal the guest's pty output is stdout and its stderr
 *  is empty (the stderr FIFO is not opened; the empty stream goes to stdout). */
export const openProcessIo: IoOpener = async (paths, ctx) => {
  const io = new OpenedIo();
  try {
    if (paths.stdin) {
      const { scheme, path } = schemeOf(paths.stdin);
      if (scheme !== 'fifo') throw new Error(`stdin ${paths.stdin}: only FIFOs are supported for stdin`);
      io.stdinFifo = new StdinFifo(path);
    }
    const out = paths.stdout ? schemeOf(paths.stdout) : undefined;
    if (out?.scheme === 'binary') {
      await startLoggingBinary(out.path, out.query, ctx, io);
    } else if (out?.scheme === 'file') {
      const stream = openLogFile(out.path);
      io.stdout = stream;
      io.stderr = stream;
    } else {
      if (out) {
        if (out.scheme !== 'fifo') throw new Error(`stdout ${paths.stdout}: unsupported scheme ${out.scheme}`);
        io.stdout = openOutputPath(out.path);
      }
      if (paths.terminal) {
        io.stderr = io.stdout;
      } else if (paths.stderr) {
        const err = schemeOf(paths.stderr);
        if (err.scheme !== 'fifo' && err.scheme !== 'file') throw new Error(`stderr ${paths.stderr}: unsupported scheme ${err.scheme}`);
        io.stderr = err.scheme === 'file' ? openLogFile(err.path) : openOutputPath(err.path);
      }
    }
    return io;
  } catch (err) {
    await io.close().catch(() => undefined);
    throw err;
  }
};
