// serve.lock: one serving process per pool directory. Created exclusively (exclusive-file.ts) holding the server's
// pid, start time and settings; a dead holder's lock (a pool killed with -9) is taken over, a live one refuses the
// second server in one line.
import { randomBytes } from 'node:crypto';
import { linkSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import { isAlive } from '../../hypervisor/process.js';
import { HullError } from '../errors.js';
import { createExclusive } from './exclusive-file.js';
import { serveLockPath } from './layout.js';
import { parseServeLock, readIfExists, sameProcess, selfRef, type ServeLock } from './records.js';

/** The lock of the pool serving `pool` now, or undefined when none does (no lock, or its holder is dead). */
export function servingPool(pool: string): ServeLock | undefined {
  const file = serveLockPath(pool);
  const text = readIfExists(file);
  if (text === undefined) return undefined;
  const lock = parseServeLock(text, file);
  return isAlive(lock) ? lock : undefined;
}

/** Takes serve.lock of `pool` for this process with `settings`; throws when a live pool holds it. */
export function acquireServeLock(pool: string, root: string, settings: Omit<ServeLock, 'pid' | 'startTime'>): ServeLock {
  const file = serveLockPath(pool);
  const lock: ServeLock = { ...selfRef(), ...settings };
  const text = `${JSON.stringify(lock)}\n`;
  for (let attempt = 0; attempt < 10; attempt++) {
    if (createExclusive(file, text)) return lock;
    const held = readIfExists(file);
    if (held === undefined) continue; // released between our try and our read
    const holder = parseServeLock(held, file);
    if (isAlive(holder)) throw new HullError('already-exists', `a pool already serves ${root} (pid ${holder.pid}; ${file})`);
    takeOver(file, held);
  }
  throw new HullError('unavailable', `could not take ${file}: other processes keep taking it`);
}

/**
 * Moves a dead holder's lock out of the way. Moved aside and checked rather than deleted: a second server that took
 * the same dead lock over first has put its own in place since we read it, and deleting that would let both serve.
 */
function takeOver(file: string, judgedDead: string): void {
  const aside = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.stale`;
  try {
    renameSync(file, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else moved it
    throw err;
  }
  try {
    if (readFileSync(aside, 'utf8') !== judgedDead) {
      // A live server's fresh lock: put it back (if a third one was quicker still, its lock stays and ours loses).
      try {
        linkSync(aside, file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
  } finally {
    unlinkSync(aside);
  }
}

/** Removes serve.lock of `pool` if this process holds it. */
export function releaseServeLock(pool: string): void {
  const file = serveLockPath(pool);
  const text = readIfExists(file);
  if (text === undefined) return;
  if (!sameProcess(parseServeLock(text, file), selfRef())) return;
  unlinkSync(file);
}
