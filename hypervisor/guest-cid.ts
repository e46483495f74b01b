// Guest CIDs for the kernel's vhost-vsock are host-global. hull reserves one per VM under a lock directory (default
// /run/hull/cids) shared by every hull process, so that two sandboxes never ask the kernel for the same CID; what
// the kernel gives to others (the host's own CID on a cloud VM, libvirt's and Kata's guests) only the kernel knows,
// so QEMU's refusal of a CID is recognised here (cidRefusedByKernel) and the driver retries with the next one.
//
// The reservation of CID N is a lease (lease.ts): the directory `cid-N/` holding one lease file that names its owner
// processes; how it stays race-free between processes without a lock is said there.
import { CidAllocationError } from './errors.js';
import { allocateLease } from './lease.js';

/** The lowest CID a guest may have (0–2 are the hypervisor, local and host). */
export const FIRST_GUEST_CID = 3;
/** hull allocates in 3..0xffff; the kernel allows up to 2^32-2, but nothing needs more VMs on one host. */
export const LAST_GUEST_CID = 0xffff;

export interface CidLease {
  readonly cid: number;
  /**
   * Hands the lease to the process that outlives us (QEMU of a detached sandbox): it is held while that one lives.
   * Call it while the current owner lives (a lease whose owner died may have been taken over already).
   */
  setOwner(pid: number): void;
  /** Gives the CID back. Idempotent; a lease taken over meanwhile (its owner died) is left to its new holder. */
  release(): void;
}

/**
 * Reserves the lowest free CID in first..last under `lockDir` for `ownerPid` (default: this process). Throws
 * CidAllocationError when every CID there is held by a live process.
 */
export function allocateGuestCid(lockDir: string, first = FIRST_GUEST_CID, last = LAST_GUEST_CID, ownerPid = process.pid): CidLease {
  if (!Number.isInteger(first) || !Number.isInteger(last) || first < FIRST_GUEST_CID || last > 0xfffffffe || first > last) {
    throw new RangeError(`guest CID range ${first}..${last} is not within ${FIRST_GUEST_CID}..${0xfffffffe}`);
  }
  const lease = allocateLease(
    { lockDir, prefix: 'cid', first, last, what: 'guest CID', error: (message, options) => new CidAllocationError(message, options) },
    ownerPid,
  );
  return { cid: lease.value, setOwner: (pid) => lease.setOwners([pid]), release: () => lease.release() };
}

/**
 * QEMU's words (hw/virtio/vhost-vsock.c, QEMU 7.2) when the kernel refuses the CID because something on the host
 * holds it already (VHOST_VSOCK_SET_GUEST_CID → EADDRINUSE): "vhost-vsock: unable to set guest cid: Address already
 * in use". Any other refusal (EINVAL, a missing /dev/vhost-vsock) is not worth another CID.
 */
export function cidRefusedByKernel(qemuStderr: string): boolean {
  return /vhost-vsock: unable to set guest cid: Address already in use/.test(qemuStderr);
}
