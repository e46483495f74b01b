// Typed wrapper around hull_native.node: AF_VSOCK listen/connect and Duplex streams over raw socket fds.
//
// Node/libuv cannot put an AF_VSOCK fd into a net.Socket, so the addon polls the fd with libuv itself and this file
// turns that into a stream.Duplex with backpressure both ways, half-close (`end()` → shutdown(SHUT_WR)) and
// errors that carry `.code` (ECONNRESET, ECONNREFUSED, …) like Node's own sockets.
//
// The .node file is found (first match): $HULL_NATIVE_ADDON, /hull/hull_native.node (the guest image),
// <this file's dir>/build/Release/hull_native.node, and <bundle dir>/../native/addon/build/Release/hull_native.node
// (for dist/*.mjs bundles, where this file's URL is the bundle's). It is loaded on first use, so importing this
// module never fails on a machine without the addon.
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Duplex, type DuplexOptions } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';

export const VMADDR_CID_ANY = 0xffffffff;
export const VMADDR_CID_HYPERVISOR = 0;
export const VMADDR_CID_LOCAL = 1;
export const VMADDR_CID_HOST = 2;
export const VMADDR_PORT_ANY = 0xffffffff;

/** The raw addon surface (index.ts is its only intended user). Fd-producing calls return -errno on failure. */
interface NativeFdHandle {
  readStart(): void;
  readStop(): void;
  /** 0: all written now; 1: pending, cb(0 | -errno) later; <0: -errno now. */
  write(buffers: Buffer[], cb: (result: number) => void): number;
  waitConnected(cb: (result: number) => void): number;
  shutdown(): number;
  close(): void;
  setRef(ref: boolean): void;
}
interface NativeListener {
  start(): void;
  close(): void;
  setRef(ref: boolean): void;
}
interface NativeAddon {
  FdHandle: new (fd: number, onRead: (nread: number, buf?: Buffer) => boolean) => NativeFdHandle;
  Listener: new (fd: number, onConnection: (fdOrErr: number, cid: number, port: number) => void) => NativeListener;
  socketpair(): [number, number] | number;
  vsockListen(port: number, cid: number, backlog: number): number;
  vsockConnect(cid: number, port: number): number;
  vsockLocalAddress(fd: number): [number, number] | number;
  closeFd(fd: number): number;
  openpty(ptmxPath?: string): { master: number; slavePath: string } | number;
  setWindowSize(fd: number, rows: number, cols: number): number;
  getWindowSize(fd: number): [number, number] | number;
  netnsCheck(path: string): number;
  enterNetns(path: string): number;
  unshareNetns(): number;
}

let addon: NativeAddon | undefined;

/** Where the addon would be loaded from (exported for diagnostics and tests). */
export function addonPath(): string {
  const override = process.env.HULL_NATIVE_ADDON;
  if (override) return override;
  const candidates = ['/hull/hull_native.node'];
  try {
    candidates.push(fileURLToPath(new URL('./build/Release/hull_native.node', import.meta.url)));
    candidates.push(fileURLToPath(new URL('../native/addon/build/Release/hull_native.node', import.meta.url)));
  } catch {
    // import.meta.url is not a file: URL (e.g. a data: bundle); only the fixed paths apply.
  }
  return candidates.find((p) => existsSync(p)) ?? candidates[candidates.length > 1 ? 1 : 0];
}

function load(): NativeAddon {
  if (!addon) {
    const path = addonPath();
    try {
      addon = createRequire(import.meta.url)(path) as NativeAddon;
    } catch (err) {
      const e = new Error(
        `hull native addon not loadable from ${path} (build it with \`npm run build:addon\`, or set HULL_NATIVE_ADDON): ` +
          (err as Error).message,
      ) as NodeJS.ErrnoException;
      e.code = 'ERR_HULL_ADDON';
      throw e;
    }
  }
  return addon;
}

function errnoError(negErrno: number, syscall: string, detail?: string): NodeJS.ErrnoException {
  let code: string;
  try {
    code = getSystemErrorName(negErrno);
  } catch {
    code = `E${-negErrno}`;
  }
  const e = new Error(`${syscall} ${code}${detail ? ` ${detail}` : ''}`) as NodeJS.ErrnoException;
  e.code = code;
  e.errno = negErrno;
  e.syscall = syscall;
  return e;
}

export interface FdStreamOptions extends Pick<DuplexOptions, 'highWaterMark' | 'readableHighWaterMark' | 'writableHighWaterMark'> {
  /** Keep the writable side open after the readable side ended (default true, so half-close works both ways). */
  allowHalfOpen?: boolean;
}

/** A Duplex over a connected stream socket fd. It owns the fd: destroy() closes it exactly once. */
export class FdStream extends Duplex {
  /** Peer vsock address, when known (accepted or connected AF_VSOCK sockets). */
  remoteCid?: number;
  remotePort?: number;
  #h: NativeFdHandle | null;
  #inPush = false;
  #readRequested = false;

  /** @internal use fdStream(). */
  constructor(fd: number, options: FdStreamOptions = {}) {
    super({ ...options, allowHalfOpen: options.allowHalfOpen ?? true, decodeStrings: true });
    this.#h = new (load().FdHandle)(fd, (nread, buf) => this.#onRead(nread, buf));
  }

  /** Let the process exit while this stream is open (like net.Socket#unref). */
  unref(): this {
    this.#h?.setRef(false);
    return this;
  }
  ref(): this {
    this.#h?.setRef(true);
    return this;
  }

  /** @internal resolves once a non-blocking connect() has finished. */
  _waitConnected(): Promise<void> {
    return new Promise((resolve, reject) => {
      const h = this.#h;
      if (!h) return reject(errnoError(-9 /* EBADF */, 'connect'));
      h.waitConnected((r) => (r < 0 ? reject(errnoError(r, 'connect')) : resolve()));
    });
  }

  // The native side keeps reading while this returns true. push() may call _read() synchronously (a consumer
  // reading inside 'readable'/'data'); such a request wins over push() returning false, or reading would stall.
  #onRead(nread: number, buf?: Buffer): boolean {
    if (nread > 0 && buf) {
      this.#inPush = true;
      this.#readRequested = false;
      let more: boolean;
      try {
        more = this.push(buf);
      } finally {
        this.#inPush = false;
      }
      return more || this.#readRequested;
    }
    if (nread === 0) {
      this.push(null);
      return false;
    }
    this.destroy(errnoError(nread, 'read'));
    return false;
  }

  override _read(): void {
    if (this.#inPush) this.#readRequested = true;
    else this.#h?.readStart();
  }

  #write(buffers: Buffer[], cb: (err?: Error | null) => void): void {
    const h = this.#h;
    if (!h) return cb(errnoError(-9, 'write'));
    const r = h.write(buffers, (res) => cb(res < 0 ? errnoError(res, 'write') : null));
    if (r === 0) cb(null);
    else if (r < 0) cb(errnoError(r, 'write'));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#write([chunk], cb);
  }

  override _writev(chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>, cb: (err?: Error | null) => void): void {
    this.#write(
      chunks.map((c) => c.chunk),
      cb,
    );
  }

  override _final(cb: (err?: Error | null) => void): void {
    const r = this.#h ? this.#h.shutdown() : 0;
    // ENOTCONN: the peer is already gone; nothing left to shut down.
    cb(r < 0 && getSystemErrorName(r) !== 'ENOTCONN' ? errnoError(r, 'shutdown') : null);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#h?.close();
    this.#h = null;
    cb(err);
  }
}

/** Wraps a connected stream socket fd (AF_UNIX, AF_VSOCK, …); the stream owns the fd from now on. */
export function fdStream(fd: number, options?: FdStreamOptions): FdStream {
  return new FdStream(fd, options);
}

/** An AF_UNIX SOCK_STREAM socketpair (close-on-exec), for tests and for handing one end to a child. */
export function socketpair(): [number, number] {
  const r = load().socketpair();
  if (typeof r === 'number') throw errnoError(r, 'socketpair');
  return r;
}

/** Closes a raw fd that was never wrapped in a stream. */
export function closeFd(fd: number): void {
  const r = load().closeFd(fd);
  if (r < 0) throw errnoError(r, 'close');
}

/** A pseudo-terminal: the master fd (non-blocking, close-on-exec) and the slave's path as its devpts names it. */
export interface Pty {
  master: number;
  slavePath: string;
}

/**
 * Allocates a pty from `ptmxPath` (default /dev/ptmx; e.g. /proc/<pid>/root/dev/pts/ptmx for a container's own
 * devpts instance, whose slave path "/dev/pts/N" is then valid inside that container). Wrap the master with
 * fdStream(); reads end with EIO (an error on the stream) once every slave fd is closed.
 */
export function openpty(ptmxPath?: string): Pty {
  const r = load().openpty(ptmxPath);
  if (typeof r === 'number') throw errnoError(r, 'openpty', ptmxPath ?? '/dev/ptmx');
  return r;
}

/** TIOCSWINSZ on a terminal fd (master or slave): the foreground process group gets SIGWINCH. */
export function setWindowSize(fd: number, rows: number, cols: number): void {
  const r = load().setWindowSize(fd, rows, cols);
  if (r < 0) throw errnoError(r, 'ioctl', 'TIOCSWINSZ');
}

/** Throws (code EINVAL) unless `path` is a network namespace file (nsfs), e.g. /var/run/netns/x or /proc/<pid>/ns/net. */
export function checkNetns(path: string): void {
  const r = load().netnsCheck(path);
  if (r < 0) throw errnoError(r, 'netns', path);
}

/**
 * Moves the calling thread (call it on the main thread: the one children are forked from and /proc/<pid>/ns/net
 * shows) into the network namespace at `path`.
 */
export function enterNetns(path: string): void {
  const r = load().enterNetns(path);
  if (r < 0) throw errnoError(r, 'setns', path);
}

/** Gives the calling (main) thread a network namespace of its own, holding only a loopback device. */
export function unshareNetns(): void {
  const r = load().unshareNetns();
  if (r < 0) throw errnoError(r, 'unshare', 'CLONE_NEWNET');
}

/** TIOCGWINSZ: { rows, cols } of a terminal fd. */
export function getWindowSize(fd: number): { rows: number; cols: number } {
  const r = load().getWindowSize(fd);
  if (typeof r === 'number') throw errnoError(r, 'ioctl', 'TIOCGWINSZ');
  return { rows: r[0], cols: r[1] };
}

export interface VsockServerEvents {
  connection: [FdStream];
  error: [NodeJS.ErrnoException];
  close: [];
}

/**
 * A listening AF_VSOCK socket. Emits 'connection' with an FdStream per accepted connection (remoteCid/remotePort
 * set), 'error' for accept failures (the server keeps listening, pausing 100 ms after such a failure; with no
 * 'error' listener they are dropped), and 'close' after close().
 */
export class VsockServer extends EventEmitter<VsockServerEvents> {
  readonly cid: number;
  readonly port: number;
  #l: NativeListener | null;
  #retry: NodeJS.Timeout | undefined;

  /** @internal use vsockListen(). */
  constructor(fd: number) {
    super();
    const a = load();
    const addr = a.vsockLocalAddress(fd);
    [this.cid, this.port] = typeof addr === 'number' ? [VMADDR_CID_ANY, VMADDR_PORT_ANY] : addr;
    try {
      this.#l = new a.Listener(fd, (r, cid, port) => this.#onConnection(r, cid, port));
    } catch (err) {
      a.closeFd(fd);
      throw err;
    }
  }

  #onConnection(r: number, cid: number, port: number): void {
    if (r < 0) {
      const err = errnoError(r, 'accept');
      this.#retry = setTimeout(() => this.#l?.start(), 100);
      this.#retry.unref();
      if (this.listenerCount('error') > 0) this.emit('error', err);
      return;
    }
    let s: FdStream;
    try {
      s = new FdStream(r);
    } catch (err) {
      load().closeFd(r);
      if (this.listenerCount('error') > 0) this.emit('error', err as NodeJS.ErrnoException);
      return;
    }
    if (cid >= 0) s.remoteCid = cid;
    if (port >= 0) s.remotePort = port;
    this.emit('connection', s);
  }

  address(): { cid: number; port: number } {
    return { cid: this.cid, port: this.port };
  }

  unref(): this {
    this.#l?.setRef(false);
    return this;
  }
  ref(): this {
    this.#l?.setRef(true);
    return this;
  }

  /** Stops listening (open connections stay open). Idempotent. */
  close(cb?: () => void): void {
    if (this.#retry) clearTimeout(this.#retry);
    if (this.#l) {
      this.#l.close();
      this.#l = null;
      process.nextTick(() => this.emit('close'));
    }
    if (cb) process.nextTick(cb);
  }
}

/**
 * Listens on an AF_VSOCK stream port. Throws an Error with .code (EAFNOSUPPORT when the kernel has no vsock
 * transport, EADDRINUSE, EADDRNOTAVAIL for a cid that is not ours, …).
 */
export function vsockListen(port: number, cid: number = VMADDR_CID_ANY, backlog = 128): VsockServer {
  const fd = load().vsockListen(port >>> 0, cid >>> 0, backlog);
  if (fd < 0) throw errnoError(fd, 'listen', `vsock ${cid >>> 0}:${port >>> 0}`);
  return new VsockServer(fd);
}

/** Connects to an AF_VSOCK stream port. Rejects with an Error with .code (ECONNREFUSED, ENODEV, EAFNOSUPPORT, …). */
export async function vsockConnect(cid: number, port: number, options?: FdStreamOptions): Promise<FdStream> {
  const fd = load().vsockConnect(cid >>> 0, port >>> 0);
  if (fd < 0) throw errnoError(fd, 'connect', `vsock ${cid >>> 0}:${port >>> 0}`);
  const s = new FdStream(fd, options);
  try {
    await s._waitConnected();
  } catch (err) {
    s.destroy();
    (err as Error).message += ` vsock ${cid >>> 0}:${port >>> 0}`;
    throw err;
  }
  s.remoteCid = cid >>> 0;
  s.remotePort = port >>> 0;
  return s;
}
