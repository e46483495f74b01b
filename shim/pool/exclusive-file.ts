// Creating a file only if it does not exist yet, with its whole content at once. The content goes to a temp file of
// a name no other writer uses, which is then hard-linked to the target: link(2) fails with EEXIST as O_EXCL does, so
// of writers racing for one name exactly one wins, and a reader never sees the target empty or half written. A
// writer killed before the link leaves the target untouched, only its temp file, which sweepDeadTemps removes.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, readdirSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { isAlive } from '../../hypervisor/process.js';

/** `.<name>.<pid>.<hex>.tmp`: the same shape as hypervisor/atomic-write.ts's temp files, so one sweep finds both. */
const TEMP = /^\.(.+)\.(\d+)\.[0-9a-f]+\.tmp$/;

/**
 * Creates `file` holding `text` when no file of that name exists: true if this call created it, false if it existed
 * already. Errors other than EEXIST are thrown (ENOENT: the directory is gone).
 */
export function createExclusive(file: string, text: string, mode = 0o600): boolean {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(temp, 'wx', mode);
  try {
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    linkSync(temp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    rmSync(temp, { force: true });
  }
}

/** Removes the temp files in `dir` whose writer (the pid in their name) is dead; returns how many. */
export function sweepDeadTemps(dir: string): number {
  let removed = 0;
  for (const name of readdirSync(dir)) {
    const m = TEMP.exec(name);
    if (!m || isAlive({ pid: Number(m[2]) })) continue;
    try {
      unlinkSync(path.join(dir, name));
      removed++;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return removed;
}
