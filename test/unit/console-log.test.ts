// The capped console writer: rotation keeps at most two files of maxBytes each and always the newest bytes; the tail
// reads across the two; a child's stdout goes through the console FIFO to its end, in paced reads, also when the
// file system fails.
import { closeSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CappedLogFile,
  captureConsole,
  CONSOLE_READ_INTERVAL_MS,
  consoleFiles,
  copyConsole,
  openConsolePipe,
  rotatedPath,
} from '../../hypervisor/console-log.js';
import { tailLines } from '../../hypervisor/log-tail.js';
import { HostProcess } from '../../hypervisor/process.js';

let tmp: string;
let n = 0;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-console-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A fresh directory and the console.log path in it. */
function consolePath(): string {
  const dir = path.join(tmp, `c${n++}`);
  mkdirSync(dir);
  return path.join(dir, 'console.log');
}

/** Deterministic, position-revealing bytes: byte i is i mod 251 (a prime, so no chunk size lines up with it). */
function pattern(from: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (from + i) % 251;
  return b;
}

function sizeOf(file: string): number {
  return existsSync(file) ? statSync(file).size : 0;
}

/** Both files, oldest first, as one buffer. */
function kept(file: string): Buffer {
  return Buffer.concat(consoleFiles(file).map((f) => (existsSync(f) ? readFileSync(f) : Buffer.alloc(0))));
}

describe('CappedLogFile', () => {
  it('rotates at maxBytes, keeps two files, and keeps the newest bytes', () => {
    const file = consolePath();
    const cap = 1000;
    const log = new CappedLogFile(file, cap);
    let total = 0;
    for (const len of [1, 999, 1, 37, 4000, 3, 2500, 777]) {
      log.write(pattern(total, len));
      total += len;
      expect(sizeOf(file)).toBeLessThanOrEqual(cap);
      expect(sizeOf(rotatedPath(file))).toBeLessThanOrEqual(cap);
    }
    log.close();
    expect(log.bytesWritten).toBe(total);
    // The rotated file is always full, and the two together are exactly the stream's end.
    expect(sizeOf(rotatedPath(file))).toBe(cap);
    const all = kept(file);
    expect(all.length).toBe(cap + (total % cap === 0 ? cap : total % cap));
    expect(all.equals(pattern(total - all.length, all.length))).toBe(true);
  });

  it('bounds a single chunk many times the cap', () => {
    const file = consolePath();
    const log = new CappedLogFile(file, 4096);
    log.write(pattern(0, 10 * 4096 + 5));
    log.close();
    expect(sizeOf(file)).toBe(5);
    expect(sizeOf(rotatedPath(file))).toBe(4096);
    expect(kept(file).equals(pattern(10 * 4096 + 5 - 4101, 4101))).toBe(true);
  });

  it('starts empty: an earlier boot leaves neither file behind', () => {
    const file = consolePath();
    writeFileSync(file, 'old boot\n');
    writeFileSync(rotatedPath(file), 'older boot\n');
    const log = new CappedLogFile(file, 100);
    log.close();
    expect(readFileSync(file, 'utf8')).toBe('');
    expect(existsSync(rotatedPath(file))).toBe(false);
  });

  it('refuses a cap that bounds nothing, and writes after close', () => {
    const file = consolePath();
    expect(() => new CappedLogFile(file, 0)).toThrow(RangeError);
    expect(() => new CappedLogFile(file, 1.5)).toThrow(RangeError);
    const log = new CappedLogFile(file, 10);
    log.close();
    expect(() => log.write(Buffer.from('x'))).toThrow(/closed/);
  });
});

describe('tailLines across the rotated console', () => {
  it('joins a line (and a UTF-8 character) split by rotation', () => {
    const file = consolePath();
    const log = new CappedLogFile(file, 16);
    log.write(Buffer.from('first line\nsplit é line\nlast\n')); // é straddles byte 16
    log.close();
    expect(readFileSync(rotatedPath(file)).length).toBe(16);
    expect(tailLines(consoleFiles(file), 2)).toBe('split é line\nlast');
  });

  it('reads only the newest 64 KiB, dropping the partial first line', () => {
    const file = consolePath();
    const line = (i: number): string => `line ${String(i).padStart(6, '0')} ${'x'.repeat(50)}\n`;
    const log = new CappedLogFile(file, 1024 * 1024);
    let text = '';
    for (let i = 0; i < 20_000; i++) text += line(i); // ~1.2 MiB: rotates once
    log.write(Buffer.from(text));
    log.close();
    expect(existsSync(rotatedPath(file))).toBe(true);
    const tail = tailLines(consoleFiles(file), 100_000).split('\n');
    expect(tail.at(-1)).toBe(line(19_999).trimEnd());
    expect(tail[0]).toMatch(/^line \d{6} x{50}$/); // whole, not cut
    expect(tail.join('\n').length).toBeLessThanOrEqual(64 * 1024);
  });

  it('uses the rotated file alone while the current one is missing, and gives "" when both are', () => {
    const file = consolePath();
    writeFileSync(rotatedPath(file), 'before rotation\n');
    expect(tailLines(consoleFiles(file))).toBe('before rotation');
    rmSync(rotatedPath(file));
    expect(tailLines(consoleFiles(file))).toBe('');
  });
});

describe('copying a child’s stdout through the console pipe', () => {
  interface Copy {
    code: number | null;
    /** 'data' events: how often this process woke up to read. */
    reads: number;
    errors: Error[];
    log: CappedLogFile;
  }

  /** Runs `script` under sh with its stdout going through openConsolePipe + copyConsole into `file`. */
  async function copyFrom(script: string, file: string, maxBytes: number, beforeSpawn?: () => void): Promise<Copy> {
    const log = new CappedLogFile(file, maxBytes);
    const pipe = openConsolePipe(`${file}.fifo`);
    expect(existsSync(`${file}.fifo`)).toBe(false); // unlinked as soon as both ends are open
    expect(pipe.reader.readableHighWaterMark).toBe(1); // what bounds Node's buffering while paused
    let reads = 0;
    pipe.reader.on('data', () => reads++);
    const errors: Error[] = [];
    const copied = copyConsole(pipe.reader, log, (e) => errors.push(e));
    beforeSpawn?.();
    let child: HostProcess;
    try {
      child = await HostProcess.spawn({
        name: 'writer',
        path: '/bin/sh',
        args: ['-c', script],
        logFile: path.join(tmp, 'writer-stderr.log'),
        detached: false,
        stdoutFd: pipe.writeFd,
      });
    } finally {
      closeSync(pipe.writeFd);
    }
    const exit = await child.wait();
    await copied;
    return { code: exit.code, reads, errors, log };
  }

  it('copies to the end within the cap, ending with the newest output', async () => {
    const file = consolePath();
    // 17-byte lines, ~3.2 MiB, then END.
    const { code, errors, log } = await copyFrom('yes 0123456789abcdef | head -c 3400000; echo END', file, 256 * 1024);
    expect(code).toBe(0);
    expect(errors).toEqual([]);
    expect(log.bytesWritten).toBe(3_400_000 + 4);
    expect(sizeOf(file)).toBeLessThanOrEqual(256 * 1024);
    expect(sizeOf(rotatedPath(file))).toBe(256 * 1024);
    expect(tailLines(consoleFiles(file), 2)).toBe('0123456789abcdef\nEND');
  });

  it('reads a byte-at-a-time writer (QEMU’s serial port) in a few large reads, losing nothing', async () => {
    const file = consolePath();
    const t0 = Date.now();
    const { code, reads, log } = await copyFrom('dd if=/dev/zero bs=1 count=200000 status=none', file, 1024 * 1024);
    const ms = Date.now() - t0;
    expect(code).toBe(0);
    expect(log.bytesWritten).toBe(200_000);
    // Paced: about one read per interval, not one per write (unpaced, this was one read per ~5 bytes).
    expect(reads).toBeLessThanOrEqual(Math.ceil(ms / CONSOLE_READ_INTERVAL_MS) + 5);
  });

  it('keeps draining after the file system fails, so the writer is never stuck', async () => {
    const file = consolePath();
    // The directory goes before the writer starts: the first rotation cannot rename.
    const { code, errors } = await copyFrom('head -c 1048576 /dev/zero', file, 64 * 1024, () =>
      rmSync(path.dirname(file), { recursive: true }),
    );
    expect(code).toBe(0);
    expect(errors.map((e) => (e as NodeJS.ErrnoException).code)).toEqual(['ENOENT']);
  });

  it('captureConsole: stderr still goes to the process log, and abort() leaves nothing open', async () => {
    const file = consolePath();
    const logFile = path.join(tmp, 'both.log');
    const cap = captureConsole(file, `${file}.fifo`, { keepAlive: true, onError: () => undefined });
    const child = await HostProcess.spawn({
      name: 'both',
      path: '/bin/sh',
      args: ['-c', 'echo to-stdout; echo to-stderr >&2'],
      logFile,
      detached: false,
      stdoutFd: cap.writeFd,
    });
    cap.releaseWriteEnd();
    await child.wait();
    await cap.copied;
    expect(readFileSync(file, 'utf8')).toBe('to-stdout\n');
    expect(readFileSync(logFile, 'utf8')).toBe('to-stderr\n');
    expect(readdirSync(path.dirname(file))).toEqual(['console.log']);

    const never = captureConsole(file, `${file}.fifo`, { keepAlive: true, onError: () => undefined });
    never.abort();
    await never.copied; // settles without a writer ever having opened the pipe
    expect(readdirSync(path.dirname(file))).toEqual(['console.log']);
  });

  it('a FIFO that cannot be made is one clear error, and leaves no file', () => {
    const file = path.join(tmp, 'no-such-dir', 'console.log');
    expect(() => openConsolePipe(`${file}.fifo`)).toThrow(/cannot make the console pipe .*no-such-dir/);
  });
});
