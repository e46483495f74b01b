// A process's stdin FIFO, read the way containerd's clients expect:
// - The FIFO is opened at once, as a non-blocking reader, and read through libuv's epoll. A FIFO whose writer has not
//   opened yet reports nothing (Linux reports HUP to a reader only when a writer came after that reader opened), so
//   EOF means "the client closed stdin", never "the client has not opened it yet"; a client that opened, wrote and
//   closed before we started reading (ctr closes its writer after its last write; when that happens before
//   Create/Exec returned, it never sends CloseIO at all) still gets its bytes and its EOF. (A blocking open on
//   libuv's thread pool, as before, hung forever when the client's writer came and went before the pool thread
//   entered open(2): ctr run --rm … wc -c, about one run in three.)
// - CloseIO{stdin} means "the client has written all it will write" (ctr and CRI call it after their last write
//   returned) but the client may still hold its writer open. Whatever is in the FIFO at that moment is still read —
//   synchronously, from the non-blocking fd, until EAGAIN — and only then does the process see EOF. Dropping the
//   unread bytes here was the flaky `ctr task exec` with piped stdin: the CloseIO often overtook the data.
// - destroy(): the process is gone; the rest is dropped.
import { constants, openSync, readSync } from 'node:fs';
import net from 'node:net';
import { PassThrough } from 'node:stream';

const DRAIN_CHUNK = 64 * 1024;

export class StdinFifo {
  /** What the process should read; ends at the client's EOF or after CloseIO's drain. */
  readonly stream = new PassThrough();
  private sock: net.Socket | undefined;
  private fd: number | undefined;
  private closeRequested = false;
  private destroyed = false;

  constructor(fifoPath: string) {
    let fd: number;
    try {
      fd = openSync(fifoPath, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch {
      this.stream.end(); // no FIFO: no stdin
      return;
    }
    // The socket owns the fd from here on (destroy() closes it).
    const sock = new net.Socket({ fd, readable: true, writable: false });
    this.sock = sock;
    this.fd = fd;
    sock.on('error', () => this.endOnce());
    sock.pipe(this.stream);
  }

  /** CloseIO{stdin}: deliver what the client already wrote, then EOF. */
  requestClose(): void {
    if (this.closeRequested || this.destroyed) return;
    this.closeRequested = true;
    this.drainAndEnd();
  }

  /** The process is gone: stop reading, drop the rest. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.sock?.destroy();
    this.sock = undefined;
    this.stream.destroy();
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
      if (n === 0) break; // EOF: no writer left (or none yet: CloseIO says nothing more will come)
      this.stream.write(Buffer.from(buf.subarray(0, n)));
    }
    sock.destroy();
    this.endOnce();
  }

  private endOnce(): void {
    if (!this.stream.writableEnded) this.stream.end();
  }
}
