// Typed wrapper around hull_native.node: AF_VSOCK listen/connect and Duplex streams over raw socket fds.
//
// Node/libuv cannot put an AF_VSOCK fd into a net.Socket, so the addon polls the fd with libuv itself and this file
// turns that into a stream.Duplex with backpressure both ways, half-close (`end()` → shutdown(SHUT_WR)) and
// errors that carry `.code` (ECONNRESET, ECONNREFUSED, …) like Node's own sockets.
//
// The .node file is found (first match): $HULL_NATIVE_ADDON, /hull/hull_native.node (the guest image),
// <this file's dir>/build/Release/hull_native.node, and <bundle dir>/../native/addon/build/Release/hull_native.node
// (for dist/*.mjs bundles, where this file's URL is the bundle's). It is loaded on first use, so importing this
// module never fails on a machine without the addon; a use then throws NativeAddonError, one line naming the file
// and `npm run build:addon`.
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
/** Sets the system's wall clock (CLOCK_REALTIME) to `unixMs` (the guest agent, at a pooled VM's claim). */
export function setRealtimeClock(unixMs: number): void {
  const r = load().setRealtimeClock(unixMs);
  if (r < 0) throw errnoError(r, 'clock_settime', String(unixMs));
}

/** Mixes `bytes` (at most 512) into the kernel's entropy pool and credits them (RNDADDENTROPY). */
export function addEntropy(bytes: Buffer): void {
  const r = load().addEntropy(bytes);
  if (r < 0) throw errnoError(r, 'RNDADDENTROPY', `${bytes.length} bytes`);
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
  /** Absent from an addon built before the KVM probe existed. */
  kvmProbe?: (device: string) => { step: string; errno: number; detail: string };
  setRealtimeClock(unixMs: number): number;
  addEntropy(bytes: Buffer): number;
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

/**
 * The addon could not be loaded, or lacks a function this hull needs (built from an older checkout). One line,
 * naming the file and how to rebuild it; `code` ERR_HULL_ADDON, so callers never take it for a socket errno.
 */
export class NativeAddonError extends Error {
  readonly code = 'ERR_HULL_ADDON';
  constructor(
    readonly path: string,
    readonly problem: string,
    options?: { cause?: unknown },
  ) {
    super(`hull native addon ${path} ${problem}: rebuild it with \`npm run build:addon\` (or set HULL_NATIVE_ADDON)`, options);
    this.name = 'NativeAddonError';
  }
}

function load(): NativeAddon {
  if (!addon) {
    const path = addonPath();
    if (!existsSync(path)) throw new NativeAddonError(path, 'is missing');
    try {
      addon = createRequire(import.meta.url)(path) as NativeAddon;
    } catch (err) {
      // dlopen's reason (wrong ELF, undefined symbol, another Node ABI) is its first line; Node appends a require stack.
      const reason = ((err as Error).message ?? String(err)).split('\n')[0]?.trim() ?? '';
      throw new NativeAddonError(path, `cannot be loaded (${reason})`, { cause: err });
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

/** Where the KVM probe stopped: "ok", or the first of QEMU's KVM start-up steps that failed (kvm_probe.h). */
export type KvmProbeStep = 'ok' | 'open' | 'api-version' | 'extension' | 'create-vm' | 'create-vcpu';

export interface KvmProbeResult {
  step: KvmProbeStep;
  /** The errno name of the failed step (EACCES, EBUSY, …); absent when it did not fail with an errno. */
  code?: string;
  /** "api-version": the version the kernel reported; "extension": the missing capability's name. */
  detail?: string;
}

const KVM_PROBE_STEPS: readonly string[] = ['ok', 'open', 'api-version', 'extension', 'create-vm', 'create-vcpu'];

/**
 * Opens `device` read-write and creates a VM and a vCPU with the KVM ioctls, as QEMU does when it starts with
 * `-accel kvm`; every fd is closed again. Throws NativeAddonError when the addon cannot do it.
 */
export function kvmProbe(device = '/dev/kvm'): KvmProbeResult {
  const probe = load().kvmProbe;
  if (typeof probe !== 'function') throw new NativeAddonError(addonPath(), 'has no kvmProbe (it predates the KVM probe)');
  const r = probe(device);
  if (!KVM_PROBE_STEPS.includes(r.step)) throw new Error(`kvmProbe returned an unknown step ${JSON.stringify(r.step)}`);
  const result: KvmProbeResult = { step: r.step as KvmProbeStep };
  if (r.errno > 0) result.code = errnoName(r.errno);
  if (r.detail) result.detail = r.detail;
  return result;
}

function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `E${errno}`;
  }
}
