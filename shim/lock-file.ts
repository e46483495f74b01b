// A lock file for read-modify-write cycles of records that several hull processes write (state.json; the pod
// record's delete commands): created O_EXCL holding the owner's pid, taken over when that process is dead.
import { closeSync, openSync, readFileSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { HullError } from './errors.js';
import { isAlive } from '../hypervisor/process.js';

const LOCK_WAIT_MS = 10_000;

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function acquireLock(lockPath: string, what: string): void {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const fd = openSync(lockPath, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder = NaN;
    try {
      holder = Number(readFileSync(lockPath, 'utf8'));
    } catch {
      continue; // released between our open and read
    }
    if (Number.isInteger(holder) && holder > 0 && !isAlive({ pid: holder })) {
      rmSync(lockPath, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new HullError('unavailable', `${what} is locked by process ${holder}`);
    sleepSync(10);
  }
}

/**
 * Runs `fn` holding the lock file `lockPath` (created O_EXCL with our pid; a dead holder's lock is taken over), for
 * read-modify-write cycles that other processes run too. `what` names the locked thing in the timeout error.
 */
export function withLockFile<T>(lockPath: string, what: string, fn: () => T): T {
  acquireLock(lockPath, what);
  try {
    return fn();
  } finally {
    try {
      unlinkSync(lockPath);
    } catch {
      // The dir may have been removed by a concurrent delete --force; nothing is left to unlock.
    }
  }
}

