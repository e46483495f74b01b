// Host-global numbered leases that any number of hull processes allocate without a lock server: guest CIDs
// (guest-cid.ts) and the VMM's uids (vmm-uid.ts). A lease lives under a lock directory (/run/hull/cids,
// /run/hull/uids) shared by every hull process, and is held while any of its owner processes lives.
//
// The lease of number N is the directory `<prefix>-N/` holding exactly one file, `<lease id>`, whose content is one
// line `<pid> <start time>` per owner (/proc/<pid>/stat field 22, so a reused pid is not taken for an owner). Every
// change is one atomic step of the file system, so allocators in any number of processes need no other lock:
// - reserve: a temp directory with the owner file written and complete inside is renamed to `<prefix>-N`. rename(2)
//   of a directory onto an existing non-empty directory fails (ENOTEMPTY/EEXIST), onto an empty one or none it
//   succeeds: a create-with-content that exactly one of any number of racers wins, and no reader sees a half-written
//   owner.
// - take over a stale lease (every owner dead): unlink `<prefix>-N/<its lease id>`, which only ever names that one
//   lease, so it can never remove a live one that replaced it; the directory is then empty, and reserving proceeds.
// - hand over (setOwners): a complete file renamed onto `<prefix>-N/<own lease id>`; release: unlink it, then rmdir.
// A lock directory from an older hull (plain `<prefix>-N` files holding a pid) is still honoured while its pid lives.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { isAlive, procStartTime, type RecordedProcess } from './process.js';

export interface Lease {
  readonly value: number;
  /**
   * Hands the lease to the processes that outlive us (a detached VM's): it is held while any of them lives. Call it
   * while a current owner lives (a lease whose owners all died may have been taken over already).
   */
  setOwners(pids: number[]): void;
  /** Gives the number back. Idempotent; a lease taken over meanwhile (its owners died) is left to its new holder. */
  release(): void;
}

export interface LeaseSpace {
  /** The shared lock directory (created 0700 when missing). */
  lockDir: string;
  /** The name of each lease directory before `-N`, e.g. 'cid'. */
  prefix: string;
  first: number;
  last: number;
  /** What a number is, in messages: 'guest CID', 'VMM uid'. */
  what: string;
  /** Makes the error thrown when nothing is free or a hand-over fails (the caller's typed error). */
  error: (message: string, options?: ErrorOptions) => Error;
}

const LEASE_NAME = /^[0-9a-f]{24}$/;
const TEMP_PREFIX = '.tmp-';

function ownerText(pids: number[]): string {
  return pids
    .map((pid) => {
      const start = procStartTime(pid);
      return start === undefined ? `${pid}\n` : `${pid} ${start}\n`;
    })
    .join('');
}

function parseOwner(line: string): RecordedProcess | undefined {
  const [pid, start] = line.trim().split(/\s+/).map(Number);
  if (pid === undefined || !Number.isInteger(pid) || pid <= 0) return undefined;
  return start !== undefined && Number.isInteger(start) && start >= 0 ? { pid, startTime: start } : { pid };
}

/** The owners a lease file names; none when it holds nothing hull wrote. */
export function parseOwners(text: string): RecordedProcess[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map(parseOwner)
    .filter((o): o is RecordedProcess => o !== undefined);
}

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

/** What holds `<prefix>-N` now. */
type Holder =
  | { kind: 'free' }
  | { kind: 'live' }
  /** It changed while we looked: look again. */
  | { kind: 'changed' }
  /** A lease whose owners are all gone (or unreadable: a lease file always holds a pid, so it was not written by hull). */
  | { kind: 'stale'; leaseFile: string }
  /** An older hull's plain lock file whose pid is dead. */
  | { kind: 'stale-legacy' };

function holderOf(dir: string): Holder {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch (err) {
    if (code(err) === 'ENOENT') return { kind: 'free' };
    if (code(err) !== 'ENOTDIR') throw err;
    return legacyHolder(dir);
  }
  const lease = entries.find((e) => LEASE_NAME.test(e));
  if (lease === undefined) return { kind: 'free' }; // empty: released, or a takeover is under way
  const leaseFile = path.join(dir, lease);
  let text: string;
  try {
    text = readFileSync(leaseFile, 'utf8');
  } catch (err) {
    if (code(err) === 'ENOENT') return { kind: 'changed' };
    throw err;
  }
  return parseOwners(text).some((o) => isAlive(o)) ? { kind: 'live' } : { kind: 'stale', leaseFile };
}

function legacyHolder(file: string): Holder {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    // ENOENT: another allocator removed the stale file; EISDIR: and has reserved the number since.
    if (code(err) === 'ENOENT' || code(err) === 'EISDIR') return { kind: 'changed' };
    throw err;
  }
  const [owner] = parseOwners(text);
  return owner !== undefined && isAlive({ pid: owner.pid }) ? { kind: 'live' } : { kind: 'stale-legacy' };
}

/** Removes temp directories of allocators that died between making one and renaming it (named by their pid). */
function sweepTemps(lockDir: string): void {
  for (const name of readdirSync(lockDir)) {
    if (!name.startsWith(TEMP_PREFIX)) continue;
    const pid = Number(name.slice(TEMP_PREFIX.length).split('-')[0]);
    if (Number.isInteger(pid) && pid > 0 && !isAlive({ pid })) rmSync(path.join(lockDir, name), { recursive: true, force: true });
  }
}

/**
 * Reserves the lowest free number of `space` for `ownerPid` (default: this process). Throws space.error() when every
 * number is held by a live process.
 */
export function allocateLease(space: LeaseSpace, ownerPid = process.pid): Lease {
  const { lockDir, prefix, first, last } = space;
  mkdirSync(lockDir, { recursive: true, mode: 0o700 });
  sweepTemps(lockDir);
  const leaseId = randomBytes(12).toString('hex');
  const temp = path.join(lockDir, `${TEMP_PREFIX}${process.pid}-${leaseId}`);
  mkdirSync(temp, { mode: 0o700 });
  writeFileSync(path.join(temp, leaseId), ownerText([ownerPid]), { mode: 0o600 });
  try {
    for (let n = first; n <= last; n++) {
      const dir = path.join(lockDir, `${prefix}-${n}`);
      // A few passes: each one either reserves, finds a live holder, or clears a stale one and looks again.
      for (let pass = 0; pass < 4; pass++) {
        const holder = holderOf(dir);
        if (holder.kind === 'live') break;
        if (holder.kind === 'changed') continue;
        if (holder.kind === 'stale') {
          rmSync(holder.leaseFile, { force: true }); // names only that lease: a live one that replaced it stays
          continue;
        }
        if (holder.kind === 'stale-legacy') {
          // unlink(2) cannot remove a directory, so this cannot take a lease that replaced the old file.
          try {
            unlinkSync(dir);
          } catch (err) {
            if (code(err) !== 'ENOENT' && code(err) !== 'EISDIR') throw err;
          }
          continue;
        }
        try {
          renameSync(temp, dir);
          return lease(space, dir, leaseId, n);
        } catch (err) {
          // Another allocator got there first (or an older hull's file is there): look again.
          if (!['ENOTEMPTY', 'EEXIST', 'ENOTDIR', 'EISDIR'].includes(code(err) ?? '')) throw err;
        }
      }
    }
  } finally {
    rmSync(temp, { recursive: true, force: true }); // gone already when it became a reservation
  }
  throw space.error(`no free ${space.what} in ${first}..${last} under ${lockDir}: every one is held by a running process`);
}

function lease(space: LeaseSpace, dir: string, leaseId: string, value: number): Lease {
  const file = path.join(dir, leaseId);
  let released = false;
  return {
    value,
    setOwners(pids: number[]): void {
      const who = `process${pids.length === 1 ? '' : 'es'} ${pids.join(', ')}`;
      if (released) throw space.error(`${space.what} ${value} was released; it cannot be handed to ${who}`);
      // Beside the lease directory, not in it: `<prefix>-N` must only ever hold the one lease file.
      const temp = path.join(space.lockDir, `${TEMP_PREFIX}${process.pid}-${leaseId}.owner`);
      writeFileSync(temp, ownerText(pids), { mode: 0o600 });
      try {
        renameSync(temp, file);
      } catch (err) {
        rmSync(temp, { force: true });
        throw space.error(`handing ${space.what} ${value} to ${who} failed: ${(err as Error).message}`, { cause: err });
      }
    },
    release(): void {
      if (released) return;
      released = true;
      rmSync(file, { force: true });
      try {
        rmdirSync(dir);
      } catch (err) {
        // ENOTEMPTY: someone reserved it already; ENOENT: gone already.
        if (code(err) !== 'ENOTEMPTY' && code(err) !== 'EEXIST' && code(err) !== 'ENOENT') throw err;
      }
    },
  };
}
