// The stdin FIFO of a containerd process (shim/containerd/stdin-fifo.ts) against real FIFOs, with the client behaving
// like ctr: open the writer, write, then CloseIO at once — before the shim's loop had a chance to read — and close the
// writer after. The process must see every byte, then EOF. Also: EOF without CloseIO, CloseIO before the client ever
// opened the FIFO, and the process going away while the open is still pending.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, rmSync } from 'node:fs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { StdinFifo } from '../../shim/containerd/stdin-fifo.js';

let dir: string;
let fifo: string;

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'hull-stdin-'));
  fifo = path.join(dir, 'stdin');
  execFileSync('mkfifo', [fifo]);
});

afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** The client's writer: a blocking open (like containerd's fifo package) that completes once the shim reads. */
function openWriter(): Promise<number> {
  return new Promise((resolve, reject) => fs.open(fifo, constants.O_WRONLY, (err, fd) => (err ? reject(err) : resolve(fd))));
}

function write(fd: number, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    let off = 0;
    const more = (): void =>
      fs.write(fd, data, off, data.length - off, null, (err, n) => {
        if (err) return reject(err);
        off += n;
        if (off < data.length) more();
        else resolve();
      });
    more();
  });
}

async function collect(s: StdinFifo): Promise<string> {
  let text = '';
  for await (const chunk of s.stream) text += (chunk as Buffer).toString();
  return text;
}

test('CloseIO right after the last write: every byte arrives, then EOF, though the client keeps its writer open', async () => {
  for (let round = 0; round < 20; round++) {
    const s = new StdinFifo(fifo);
    const got = collect(s);
    const w = await openWriter();
    await write(w, Buffer.from(`piped in ${round}\n`));
    s.requestClose(); // no turn of the loop in between: the bytes are still in the pipe
    expect(await got).toBe(`piped in ${round}\n`);
    closeSync(w);
  }
});

test('CloseIO racing the open: the data the client wrote is still read', async () => {
  const s = new StdinFifo(fifo);
  const got = collect(s);
  // The client opens and writes from another process, then the shim hears CloseIO before its open callback ran.
  execFileSync('sh', ['-c', `printf 'early bytes' > '${fifo}'`]);
  s.requestClose();
  expect(await got).toBe('early bytes');
});

test('more than a pipe buffer, written before CloseIO, arrives whole', async () => {
  const s = new StdinFifo(fifo);
  const got = collect(s);
  const w = await openWriter();
  const data = Buffer.alloc(300 * 1024, 'x');
  await write(w, data);
  s.requestClose();
  expect((await got).length).toBe(data.length);
  closeSync(w);
});

test('the client closing its writer without CloseIO is EOF', async () => {
  const s = new StdinFifo(fifo);
  const got = collect(s);
  const w = await openWriter();
  await write(w, Buffer.from('twelve bytes'));
  closeSync(w);
  expect(await got).toBe('twelve bytes');
});

// Repeated: the thread-pool open may not have reached open(2) yet when CloseIO or destroy comes (that once hung).
test('CloseIO before the client opened the FIFO: EOF at once, the pending open is released', async () => {
  for (let round = 0; round < 30; round++) {
    const s = new StdinFifo(fifo);
    const got = collect(s);
    s.requestClose();
    expect(await got).toBe('');
  }
});

test('destroy while the open is pending frees it (the process is gone)', async () => {
  for (let round = 0; round < 30; round++) {
    const s = new StdinFifo(fifo);
    s.destroy();
    expect(s.stream.destroyed).toBe(true);
  }
  await new Promise((r) => setTimeout(r, 50));
  // No reader is left (no open stuck in the thread pool): a non-blocking writer open fails with ENXIO.
  expect(() => fs.openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK)).toThrow(/ENXIO/);
});

test('the process going away after the client removed the FIFO still frees the pending open (the shim could not exit)', async () => {
  // Each pending open holds a libuv thread-pool thread, and Node joins those threads at exit: a shim whose client
  // removed its FIFOs without ever opening them (ctr after a failed Start) hung in process.exit. Four of them take
  // the whole default pool, so a file read afterwards only completes if every open was freed.
  const fifos = ['a', 'b', 'c', 'd'].map((n) => {
    const p = path.join(dir, n);
    execFileSync('mkfifo', [p]);
    return p;
  });
  const pending = fifos.map((p) => new StdinFifo(p));
  await new Promise((r) => setTimeout(r, 100)); // the opens are blocked in open(2) by now
  for (const p of fifos) rmSync(p);
  for (const s of pending) s.destroy();
  const read = fs.promises.readFile(fifo.replace(/stdin$/, ''), { encoding: 'utf8' }).catch(() => 'read done');
  const outcome = await Promise.race([read.then(() => 'freed'), new Promise((r) => setTimeout(() => r('stuck'), 5000))]);
  expect(outcome).toBe('freed');
});
