// The last lines of a log file, for error messages. The console log is written by the guest, so the text is
// untrusted: only the file's tail is read, and control characters (terminal escapes) are replaced.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

const TAIL_BYTES = 64 * 1024;

/** The bytes of one read: where it started in the file, and the file's size then. */
interface ByteRange {
  bytes: Buffer;
  start: number;
  size: number;
}

function readBytes(file: string, maxBytes: number, from: (size: number) => number): ByteRange {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return { bytes: Buffer.alloc(0), start: 0, size: 0 };
  }
  try {
    const size = fstatSync(fd).size;
    const start = Math.max(0, Math.min(from(size), size));
    const buf = Buffer.alloc(Math.max(0, Math.min(maxBytes, size - start)));
    const n = readSync(fd, buf, 0, buf.length, start);
    return { bytes: buf.subarray(0, n), start, size };
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads at most `maxBytes` of a file, starting at `from(size)`; '' when it cannot be read. Never more than asked:
 * these files can be written by the guest.
 */
export function readRange(file: string, maxBytes: number, from: (size: number) => number): { text: string; start: number; size: number } {
  const { bytes, start, size } = readBytes(file, maxBytes, from);
  return { text: bytes.toString('utf8'), start, size };
}

/**
 * The last `maxBytes` of a log kept in several files, oldest first (a rotated `console.log.1`, then `console.log`):
 * the newest file's end, then as much of the older ones as fits. `cut` says the first line may be partial. While
 * the log rotates the result may miss or repeat a piece; it is for error messages, not a record.
 */
function readTail(files: readonly string[], maxBytes: number): { bytes: Buffer; cut: boolean } {
  const parts: Buffer[] = [];
  let budget = maxBytes;
  let cut = false;
  for (let i = files.length - 1; i >= 0; i--) {
    // With the budget spent this still looks: a non-empty older file means the first line may be partial.
    const want = budget;
    const { bytes, start } = readBytes(files[i] as string, want, (size) => size - want);
    parts.unshift(bytes);
    budget -= bytes.length;
    if (start > 0) {
      cut = true;
      break;
    }
  }
  // Joined as bytes: a rotation can split a UTF-8 sequence, and the halves must meet before decoding.
  return { bytes: Buffer.concat(parts), cut };
}

/** The last `lines` lines of a log: one file, or its rotated parts oldest first. */
export function tailLines(files: string | readonly string[], lines = 20): string {
  const { bytes, cut } = readTail(typeof files === 'string' ? [files] : files, TAIL_BYTES);
  const text = bytes
    .toString('utf8')
    .replace(/\r\n?/g, '\n')
    // C1 controls too: U+009B is CSI, U+009D OSC, U+0090 DCS, and some terminals honour all of them.
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, '?');
  const all = text.split('\n');
  if (all.at(-1) === '') all.pop();
  if (cut) all.shift(); // the first line was cut in the middle
  return all.slice(-lines).join('\n');
}
