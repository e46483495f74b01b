// Replaces a file in one step, so that a reader (a later hull call, the monitor, containerd, conmon) sees either the
// old content or the new, never a part of it, even while other processes write the same file: the data goes to a
// temp file of a name no other writer uses, in the target's own directory (same filesystem, so the rename is
// atomic), and is then renamed over the target. A failed write removes its temp file. No fsync: these are run-time
// records (of processes that a power loss ends too), normally on tmpfs (/run/hull); on a disk root the fsyncs cost
// tens of ms of every `hull run` and bought nothing a reader after a crash can use.
// It lives in hypervisor/ (the lower floor) so that both hypervisor/ and shim/ can use it.
import { randomBytes } from 'node:crypto';
import { closeSync, fchmodSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** The write failed and so did removing its temp file; `cause` is the write's error, `cleanupErrors` the rest. */
export class AtomicWriteError extends Error {
  constructor(
    readonly file: string,
    readonly temp: string,
    cause: unknown,
    readonly cleanupErrors: unknown[],
  ) {
    super(
      `writing ${file} failed: ${messageOf(cause)}; removing its temp file ${temp} failed too: ` +
        cleanupErrors.map(messageOf).join('; '),
      { cause },
    );
    this.name = new.target.name;
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** `.<name>.<pid>.<random>.tmp` beside the target: hidden, and unique to this write even among threads of one pid. */
function tempPathFor(file: string): string {
  const name = `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  return path.join(path.dirname(file), name);
}

/**
 * Writes `data` to `file` atomically (see above), with exactly `mode` (the umask does not apply). Errors are the
 * file system's own (ENOENT for a missing directory, EISDIR for a directory at `file`, ...), or an AtomicWriteError
 * when the temp file could not be removed after one.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, mode: number): void {
  const target = path.resolve(file);
  const temp = tempPathFor(target);
  let fd: number | undefined;
  let created = false;
  try {
    fd = openSync(temp, 'wx', mode);
    created = true;
    fchmodSync(fd, mode);
    writeFileSync(fd, data);
    const open = fd;
    fd = undefined;
    closeSync(open);
    renameSync(temp, target);
  } catch (err) {
    const cleanupErrors: unknown[] = [];
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch (closeErr) {
        cleanupErrors.push(closeErr);
      }
    }
    if (created) {
      try {
        rmSync(temp, { force: true });
      } catch (rmErr) {
        cleanupErrors.push(rmErr);
      }
    }
    if (cleanupErrors.length > 0) throw new AtomicWriteError(target, temp, err, cleanupErrors);
    throw err;
  }
}
