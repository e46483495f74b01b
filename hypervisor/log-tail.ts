// The last lines of a log file, for error messages. The console log is written by the guest, so the text is
// untrusted: only the file's tail is read, and control characters (terminal escapes) are replaced.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

const TAIL_BYTES = 64 * 1024;

export function tailLines(file: string, lines = 20): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return '';
  }
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(size, TAIL_BYTES);
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, size - length);
    const text = buf
      .toString('utf8')
      .replace(/\r\n?/g, '\n')
      // eslint-disable-next-line no-control-regex
      // C1 controls too: U+009B is CSI, U+009D OSC, U+0090 DCS, and some terminals honour all of them.
      .replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, '?');
    const all = text.split('\n');
    if (all.at(-1) === '') all.pop();
    if (length < size) all.shift(); // the first line was cut in the middle
    return all.slice(-lines).join('\n');
  } finally {
    closeSync(fd);
  }
}
