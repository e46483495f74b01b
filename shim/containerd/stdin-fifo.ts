// A process's stdin FIFO, read the way containerd's clients expect:
// - The open is a blocking O_RDONLY open on libuv's thread pool that completes when the client opens its writer, so
//   EOF means "the client closed stdin", never "the client has not opened it yet" (ctr closes its writer after its
//   last write; when that happens before Create/Exec returned, it never sends CloseIO at all).
// - CloseIO{stdin} means "the client has written all it will write" (ctr and CRI call it after their last write
//   returned) but the client may still hold its writer open. Whatever is in the FIFO at that moment is still read —
//   synchronously, from the non-blocking fd, until EAGAIN — and only then does the process see EOF. Dropping the
//   unread bytes here was the flaky `ctr task exec` with piped stdin: the CloseIO often overtook the data.
// - destroy(): the process is gone; the rest is dropped.
// A pending open holds one libuv thread-pool thread until the client opens its writer or the process ends; the daemon
// runs with a larger pool for that reason (start.ts). It must always be freeable: Node joins the pool's threads at
// exit, so one left in open(2) keeps the shim from ever exiting. A client may remove the FIFO without having opened
// it (ctr after a failed Start), so the way to the FIFO is kept as an fd of our own (see `handle`).
import { closeSync, constants, openSync, readSync } from 'node:fs';
import fs from 'node:fs';
import net from 'node:net';
import { PassThrough } from 'node:stream';

const DRAIN_CHUNK = 64 * 1024;

export class StdinFifo {
  /** What the process should read; ends at the client's EOF or after CloseIO's drain. */
  readonly stream = new PassThrough();
  private sock: net.Socket | undefined;
  private fd: number | undefined;
  private opening = true;
  /** Our own writer, held until a pending open has returned (see unblockOpen). */
  private unblocker: number | undefined;
  /** A reader of our own, never read from, held while the open is pending: /proc/self/fd/<handle> reaches the FIFO
   *  even after its path is gone. (A reader does not satisfy the pending reader open, and takes no data.) */
  private handle: number | undefined;
  private closeRequested = false;
  private destroyed = false;

  constructor(fifoPath: string) {
    try {
      this.handle = openSync(fifoPath, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch {
      this.opening = false;
      this.stream.end(); // no FIFO: no stdin
      return;
    }
    // fs.open, not fs.promises.open: a FileHandle would close its fd when garbage-collected, under the net.Socket.
    fs.open(fifoPath, constants.O_RDONLY, (err, fd) => this.opened(err, fd));
  }

  private opened(err: NodeJS.ErrnoException | null, fd: number): void {
    this.opening = false;
    for (const own of [this.unblocker, this.handle]) if (own !== undefined) closeSync(own);
    this.unblocker = undefined;
    this.handle = undefined;
    if (err) {
      this.stream.end();
      return;
    }
    if (this.destroyed) {
      closeSync(fd);
      return;
    }
    // The socket makes the fd non-blocking, which the CloseIO drain relies on.
    const sock = new net.Socket({ fd, readable: true, writable: false });
    this.sock = sock;
    this.fd = fd;
    sock.on('error', () => this.endOnce());
    sock.pipe(this.stream);
    if (this.closeRequested) this.drainAndEnd();
  }

  /** CloseIO{stdin}: deliver what the client already wrote, then EOF. */
  requestClose(): void {
    if (this.closeRequested || this.destroyed) return;
    this.closeRequested = true;
    if (this.sock) this.drainAndEnd();
    else if (this.opening) this.unblockOpen(); // opened() drains once the open returns
  }

  /** The process is gone: stop reading, drop the rest. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    if (this.opening) this.unblockOpen();
    this.sock?.destroy();
    this.sock = undefined;
    this.stream.destroy();
  }

  /**
   * A writer of our own lets a pending reader open return. It stays open until the open has returned: the thread-pool
   * thread may not have entered open(2) yet, and a writer that came and went before then would not wake it.
   */
  private unblockOpen(): void {
    if (this.unblocker !== undefined || this.handle === undefined) return;
    // Write-only and non-blocking: succeeds because our handle is a reader.
    this.unblocker = openSync(`/proc/self/fd/${this.handle}`, constants.O_WRONLY | constants.O_NONBLOCK);
  }

  private drainAndEnd(): void {
    const sock = this.sock;
    const fd = this.fd;
    if (!sock || fd === undefined) return;
    this.sock = undefined;
    sock.unpipe(this.stream);
    // First what the socket has read but not yet passed on, then what is still in the pipe.
    for (let chunk = sock.read() as Buffer | null; chunk !== null; chunk = sock.read() as Buffer | null) this.stream.write(chunk);
    const buf = Buffer.allocUnsafe(DRAIN_CHUNK);
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch {
        break; // EAGAIN: the pipe is empty (a client writer is still open)
      }
      if (n === 0) break; // EOF: no writer left
      this.stream.write(Buffer.from(buf.subarray(0, n)));
    }
    sock.destroy();
    this.endOnce();
  }

  private endOnce(): void {
    if (!this.stream.writableEnded) this.stream.end();
  }
}
