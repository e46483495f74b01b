// The unprivileged uid each sandbox's VMM runs as (its gid is the same number): taken from a configured range, one per
// live sandbox, never shared (hypervisor/vmm-launcher.ts confines QEMU under it; the vsock backend's worker gets it
// too). A uid is a lease (lease.ts) under /run/hull/uids, held while any process of the sandbox that runs as it (or
// that will start one) lives, so two hull processes never hand one uid to two live sandboxes.
//
// The range: $HULL_VMM_UID_RANGE as `FIRST-LAST` (inclusive), default VMM_UID_RANGE_DEFAULT, a block of 65536 ids far
// above the host's users, /etc/subuid's usual ranges (100000…) and nobody (65534). Choose another block if the host
// uses that one.
import { VmmUidAllocationError, VmmUidRangeError } from './errors.js';
import { allocateLease } from './lease.js';

export interface UidRange {
  first: number;
  last: number;
}

export const VMM_UID_RANGE_DEFAULT: UidRange = { first: 1_000_000_000, last: 1_000_065_535 };
export const VMM_UID_LOCK_DIR_DEFAULT = '/run/hull/uids';
export const VMM_UID_RANGE_ENV = 'HULL_VMM_UID_RANGE';

/** Below this are the host's own users and groups (and nobody/nogroup): never a VMM's. */
const LOWEST_VMM_UID = 65536;
/** (uid_t)-1 means "unchanged" to set*id(2); the range ends below it. */
const HIGHEST_VMM_UID = 0xfffffffe;

/** Parses `FIRST-LAST`; throws VmmUidRangeError (one line naming `source`) when it is not a usable range. */
export function parseUidRange(text: string, source = `$${VMM_UID_RANGE_ENV}`): UidRange {
  const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(text);
  const first = Number(m?.[1]);
  const last = Number(m?.[2]);
  if (!m || !Number.isSafeInteger(first) || !Number.isSafeInteger(last) || first > last) {
    throw new VmmUidRangeError(`${source} is ${JSON.stringify(text)}: expected FIRST-LAST, e.g. 1000000000-1000065535`);
  }
  if (first < LOWEST_VMM_UID || last > HIGHEST_VMM_UID) {
    throw new VmmUidRangeError(`${source} is ${text}: VMM uids must lie within ${LOWEST_VMM_UID}..${HIGHEST_VMM_UID} (below are the host's own users)`);
  }
  return { first, last };
}

/** The range in force: $HULL_VMM_UID_RANGE when set, else the default. */
export function vmmUidRange(env: NodeJS.ProcessEnv = process.env): UidRange {
  const text = env[VMM_UID_RANGE_ENV];
  return text === undefined || text === '' ? VMM_UID_RANGE_DEFAULT : parseUidRange(text);
}

export interface VmmUidLease {
  readonly uid: number;
  readonly gid: number;
  /** The sandbox's processes that hold the uid from now on (the VMM, the vsock backend): see Lease.setOwners. */
  setOwners(pids: number[]): void;
  release(): void;
}

/** Reserves the lowest free uid of `range` under `lockDir` for `ownerPid` (default: this process). */
export function allocateVmmUid(lockDir = VMM_UID_LOCK_DIR_DEFAULT, range = vmmUidRange(), ownerPid = process.pid): VmmUidLease {
  const lease = allocateLease(
    {
      lockDir,
      prefix: 'uid',
      first: range.first,
      last: range.last,
      what: 'VMM uid',
      error: (message, options) => new VmmUidAllocationError(message, options),
    },
    ownerPid,
  );
  return { uid: lease.value, gid: lease.value, setOwners: (pids) => lease.setOwners(pids), release: () => lease.release() };
}
