// What is in a pool directory right now, VM by VM, as every reader of it (claimers, `hull pool status`, the server's
// reaper) sees it: each VM's record and claim, and whether the claim's holder still owns the VM.
import { readdirSync } from 'node:fs';
import { isAlive } from '../../hypervisor/process.js';
import { oneLine } from '../errors.js';
import { claimPath, isVmId, poolVmPath, pooledVmDir, vmsDir } from './layout.js';
import { parseClaim, parsePoolVm, readIfExists, type Claim, type PoolVmRecord } from './records.js';

export interface PoolVmEntry {
  id: string;
  dir: string;
  /** Absent while the directory has no record yet (or when it could not be read: recordError says why). */
  record?: PoolVmRecord;
  recordError?: string;
  /** True when the claim file exists: the VM is taken, for good, even when the file could not be read. */
  claimed: boolean;
  claim?: Claim;
  claimError?: string;
}

/** The VM directories in `pool`, by name; none when the pool directory does not exist. */
export function scanPool(pool: string): PoolVmEntry[] {
  let names: string[];
  try {
    names = readdirSync(vmsDir(pool));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names.filter(isVmId).sort().flatMap((id) => {
    const entry = readPoolVmEntry(pooledVmDir(pool, id), id);
    return entry ? [entry] : [];
  });
}

/** One VM directory as scanPool sees it; undefined when it vanished meanwhile. */
export function readPoolVmEntry(dir: string, id: string): PoolVmEntry | undefined {
  const entry: PoolVmEntry = { id, dir, claimed: false };
  // The claim first: a VM seen unclaimed and then found gone was removed by its claimer, not left unaccounted for.
  const claimFile = claimPath(dir);
  let claimText: string | undefined;
  let recordText: string | undefined;
  try {
    claimText = readIfExists(claimFile);
    recordText = readIfExists(poolVmPath(dir));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw err;
  }
  if (claimText !== undefined) {
    entry.claimed = true;
    try {
      entry.claim = parseClaim(claimText, claimFile);
    } catch (err) {
      entry.claimError = oneLine(err);
    }
  }
  if (recordText !== undefined) {
    try {
      entry.record = parsePoolVm(recordText, poolVmPath(dir));
    } catch (err) {
      entry.recordError = oneLine(err);
    }
  } else if (claimText === undefined && !dirExists(dir)) {
    return undefined;
  }
  return entry;
}

function dirExists(dir: string): boolean {
  try {
    readdirSync(dir);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Whose a claimed VM is now. 'in-use': its claimer lives and has not given it up — nothing may touch it. 'orphaned':
 * the claimer died (at any point of its claim: before or after recording the VM in its own record) or released it;
 * the pool powers it off and removes it. A claim file that cannot be read names no process to ask, so it counts as
 * in use: the pool never guesses about a VM that may be someone's.
 */
export function claimOwner(entry: PoolVmEntry): 'unclaimed' | 'in-use' | 'orphaned' {
  if (!entry.claimed) return 'unclaimed';
  const claim = entry.claim;
  if (!claim) return 'in-use';
  return claim.released || !isAlive(claim) ? 'orphaned' : 'in-use';
}
