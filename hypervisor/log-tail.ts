// The last lines of a log file, for error messages. The console log is written by the guest, so the text is
// untrusted: only the file's tail is read, and control characters (terminal escapes) are replaced.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

const TAIL_BYTES = 64 * 1024;

/**
 * Reads at most `maxBytes` of a file, starting at `from(size)`; '' when it cannot be read. Never more than asked:
 * these files can be written by the guest.
 */
export function readRange(file: string, maxBytes: number, from: (size: number) => number): { text: string; start: number; size: number } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return { text: '', start: 0, size: 0 };
  }
  try {
    const size = fstatSync(fd).size;
    const start = Math.max(0, Math.min(from(size), size));
    const buf = Buffer.alloc(Math.min(maxBytes, size - start));
    const n = readSync(fd, buf, 0, buf.length, start);
    return { text: buf.subarray(0, n).toString('utf8'), start, size };
  } finally {
    closeSync(fd);
  }
}

export function tailLines(file: string, lines = 20): string {
  const { text: raw, start } = readRange(file, TAIL_BYTES, (size) => size - TAIL_BYTES);
  const text = raw
    .replace(/\r\n?/g, '\n')
    // C1 controls too: U+009B is CSI, U+009D OSC, U+0090 DCS, and some terminals honour all of them.
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, '?');
  const all = text.split('\n');
  if (all.at(-1) === '') all.pop();
  if (start > 0) all.shift(); // the first line was cut in the middle
  return all.slice(-lines).join('\n');
}
