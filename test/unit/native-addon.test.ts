// hull_native.node: Duplex streams over socket fds (AF_UNIX socketpairs here) and AF_VSOCK listen/connect.
// Builds the addon with `npm run build:addon` when it is missing.
import { execSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { once } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { addonPath, fdStream, getWindowSize, openpty, setWindowSize, socketpair, closeFd, vsockConnect, vsockListen, VMADDR_CID_ANY, type FdStream } from '../../native/addon/index.ts';

const REPO = resolve(import.meta.dirname, '../..');
const ADDON = join(REPO, 'native/addon/build/Release/hull_native.node');

function pair(opts?: Parameters<typeof fdStream>[1]): [FdStream, FdStream] {
  const [a, b] = socketpair();
  return [fdStream(a, opts), fdStream(b, opts)];
}

/** Resolves once the stream has emitted 'close' (or already has). */
function closed(s: FdStream): Promise<unknown> {
  return s.closed ? Promise.resolve() : once(s, 'close');
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Writes `total` random bytes in chunks honouring backpressure; resolves with their sha256. */
async function pump(s: FdStream, total: number, chunk = 256 * 1024): Promise<string> {
  const h = createHash('sha256');
  let left = total;
  while (left > 0) {
    const b = randomBytes(Math.min(chunk, left));
    h.update(b);
    left -= b.length;
    if (!s.write(b)) await once(s, 'drain');
  }
  s.end();
  return h.digest('hex');
}

/** Reads to 'end'; resolves with [bytes, sha256]. */
function drain(s: FdStream): Promise<[number, string]> {
  return new Promise((res, rej) => {
    const h = createHash('sha256');
    let n = 0;
    s.on('data', (d: Buffer) => {
      n += d.length;
      h.update(d);
    });
    s.on('end', () => res([n, h.digest('hex')]));
    s.on('error', rej);
  });
}

describe('hull_native addon', () => {
  beforeAll(() => {
    if (!process.env.HULL_NATIVE_ADDON && !existsSync(ADDON)) execSync('npm run build:addon', { cwd: REPO, stdio: 'pipe' });
  }, 240_000);

  it('loads from the repo build (or HULL_NATIVE_ADDON)', () => {
    expect(existsSync(addonPath())).toBe(true);
  });

  it('moves 50 MB each way at once with integrity', async () => {
    const fds = openFds();
    const [a, b] = pair();
    const size = 50 * 1024 * 1024;
    const [sumA, sumB, [nAtB, gotAtB], [nAtA, gotAtA]] = await Promise.all([pump(a, size), pump(b, size), drain(b), drain(a)]);
    expect(nAtB).toBe(size);
    expect(nAtA).toBe(size);
    expect(gotAtB).toBe(sumA);
    expect(gotAtA).toBe(sumB);
    await Promise.all([closed(a), closed(b)]);
    expect(openFds()).toBe(fds);
  }, 60_000);

  it('applies backpressure to a writer whose reader is slow', async () => {
    const hwm = 64 * 1024;
    const [a, b] = pair({ highWaterMark: hwm });
    // Nobody reads b yet: a must see write() return false after a bounded amount.
    let written = 0;
    const chunk = Buffer.alloc(hwm, 7);
    while (a.write(chunk)) {
      written += chunk.length;
      if (written > 64 * 1024 * 1024) break;
    }
    written += chunk.length;
    expect(written).toBeLessThan(16 * 1024 * 1024); // socket buffers + highWaterMarks, not everything
    expect(a.writableNeedDrain).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    expect(b.readableLength).toBeLessThanOrEqual(hwm); // b does not pull more than its buffer from the fd

    // Now a slow consumer (a pause after every chunk) and a writer that honours 'drain': 8 MB more.
    let got = 0;
    let maxReadable = 0;
    b.on('data', (d: Buffer) => {
      got += d.length;
      maxReadable = Math.max(maxReadable, b.readableLength);
      b.pause();
      setTimeout(() => b.resume(), 1);
    });
    const ended = once(b, 'end');
    let falses = 0;
    let maxWritable = 0;
    for (let i = 0; i < 128; i++) {
      written += chunk.length;
      if (!a.write(chunk)) {
        falses++;
        maxWritable = Math.max(maxWritable, a.writableLength);
        await once(a, 'drain');
      }
    }
    a.end();
    await ended;
    expect(got).toBe(written);
    expect(falses).toBeGreaterThan(10);
    expect(maxWritable).toBeLessThanOrEqual(hwm + chunk.length);
    expect(maxReadable).toBeLessThanOrEqual(2 * hwm);
    a.resume();
    b.end();
    await Promise.all([closed(a), closed(b)]);
  });

  it('half-closes: one side ends, the other sees end and can still answer', async () => {
    const [a, b] = pair();
    const gotAtB: Buffer[] = [];
    b.on('data', (d: Buffer) => gotAtB.push(d));
    a.end('request');
    await once(b, 'end');
    expect(Buffer.concat(gotAtB).toString()).toBe('request');
    expect(b.writable).toBe(true);
    const answer = drain(a);
    b.end('response');
    const [, digest] = await answer;
    expect(digest).toBe(createHash('sha256').update('response').digest('hex'));
    await Promise.all([closed(a), closed(b)]);
  });

  it('propagates destroy as end/close to the peer and closes the fd once', async () => {
    const fds = openFds();
    const [a, b] = pair();
    b.resume();
    const ended = once(b, 'end');
    a.destroy();
    await closed(a);
    await ended;
    b.destroy();
    b.destroy(); // idempotent
    await closed(b);
    expect(openFds()).toBe(fds);
  });

  it('reports a peer reset as ECONNRESET on the reader and EPIPE on the writer', async () => {
    const [a, b] = pair();
    // Data left unread in b's receive queue when b closes makes the kernel reset a.
    a.write('unread data');
    await new Promise((r) => setTimeout(r, 50));
    a.resume();
    const err = once(a, 'error');
    b.destroy();
    const [e] = (await err) as [NodeJS.ErrnoException];
    expect(e.code).toBe('ECONNRESET');
    expect(e.syscall).toBe('read');

    const [c, d] = pair();
    d.destroy();
    await closed(d);
    const werr = once(c, 'error');
    c.write(Buffer.alloc(1024));
    const [we] = (await werr) as [NodeJS.ErrnoException];
    expect(['EPIPE', 'ECONNRESET']).toContain(we.code);
  });

  it('survives the JS side dropping its references (no GC while the fd is open)', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const [x, y] = socketpair();
    let received = 0;
    const done = new Promise<void>((res) => {
      // Only the closure holds the stream; the native side must keep it alive while the fd is open.
      fdStream(y)
        .on('data', (d: Buffer) => (received += d.length))
        .on('end', () => res());
    });
    const w = fdStream(x);
    for (let i = 0; i < 5; i++) {
      gc();
      w.write(Buffer.alloc(100_000));
      await new Promise((r) => setTimeout(r, 20));
    }
    w.end();
    await done;
    gc();
    expect(received).toBe(500_000);
  });

  it('AF_VSOCK: listens and closes, or fails with a clear error where the kernel has no vsock', async () => {
    let server;
    try {
      server = vsockListen(0xfffffffe - 1234, VMADDR_CID_ANY);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      expect(['EAFNOSUPPORT', 'ENODEV', 'EADDRNOTAVAIL']).toContain(e.code);
      expect(e.message).toMatch(/listen .*vsock/);
      return;
    }
    expect(server.address().port).toBe(0xfffffffe - 1234);
    const closed = once(server, 'close');
    server.close();
    await closed;
    // A CID nobody has: a clean rejection with a code, no hang.
    await expect(vsockConnect(0x7fff_fff0, 1024)).rejects.toMatchObject({ code: expect.stringMatching(/^E[A-Z]+$/) });
  });

  it('openpty: a non-blocking CLOEXEC master whose slave is a terminal; output ends with EIO', async () => {
    const pty = openpty();
    expect(pty.slavePath).toMatch(/^\/dev\/pts\/\d+$/);
    const flags = spawnSync('cat', [`/proc/${process.pid}/fdinfo/${pty.master}`]).stdout.toString();
    const oflags = parseInt(/flags:\s+(\d+)/.exec(flags)![1]!, 8);
    expect(oflags & 0o4000).toBe(0o4000); // O_NONBLOCK
    expect(oflags & 0o2000000).toBe(0o2000000); // O_CLOEXEC
    setWindowSize(pty.master, 33, 111);
    expect(getWindowSize(pty.master)).toEqual({ rows: 33, cols: 111 });
    const master = fdStream(pty.master);
    const chunks: Buffer[] = [];
    master.on('data', (c: Buffer) => chunks.push(c));
    const ended = new Promise<void>((res) => master.on('error', () => res()).on('end', () => res()));
    const slave = openSync(pty.slavePath, 'r+');
    const r = spawnSync('sh', ['-c', 'test -t 0 && test -t 1 && stty size && echo done'], { stdio: [slave, slave, slave] });
    closeSync(slave);
    expect(r.status).toBe(0);
    await ended;
    expect(Buffer.concat(chunks).toString()).toBe('33 111\r\ndone\r\n');
    master.destroy();
    await closed(master);
  });

  it('openpty/setWindowSize fail with a code', () => {
    expect(() => openpty('/nonexistent/ptmx')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    const [a, b] = socketpair();
    expect(() => setWindowSize(a, 1, 1)).toThrow(expect.objectContaining({ code: 'ENOTTY' }));
    closeFd(a);
    closeFd(b);
  });
});
