// Taking a ready VM from the pool that serves a root: the primitive the sandbox core's VmFactory uses before it
// reattaches to the VM (hypervisor/registry.ts reattachVm). Synchronous and race-free between processes: the claim
// file is created exclusively (exclusive-file.ts), so of any number of claimers — the pool itself among them, when it
// powers a VM off — exactly one takes a VM, and a VM is taken once, for good.
//
// This module stays on the lower floor (hypervisor/ and shim/ basics only): shim/sandbox/ imports it.
import { writeFileAtomic } from '../../hypervisor/atomic-write.js';
import { isAlive } from '../../hypervisor/process.js';
import type { Acceleration, VmProcesses } from '../../hypervisor/types.js';
import { oneLine } from '../errors.js';
import { mostMemoryMiB } from '../sandbox/vm-sizing.js';
import { createExclusive } from './exclusive-file.js';
import { claimPath, poolDir } from './layout.js';
import { parseClaim, readIfExists, readPoolVm, sameProcess, selfRef, type Claim, type PoolShape, type PoolVmRecord, type ServeLock } from './records.js';
import { scanPool, type PoolVmEntry } from './scan.js';
import { servingPool } from './serve-lock.js';

export { readPoolVm, type PoolVmRecord };

/** What a sandbox needs of a VM. */
export interface ClaimWant {
  vcpus: number;
  memoryMiB: number;
  /** The guest image's manifest hash (findGuestAssets().hash). */
  image: string;
  /** Absent: either. */
  accel?: Acceleration;
  /** The pod interfaces the sandbox gives its VM, one NIC each. */
  nics: number;
}

export interface ClaimedVm {
  id: string;
  /** The VM's directory: reattach there, record it as the sandbox's vmDir, remove it at teardown. */
  dir: string;
  record: PoolVmRecord;
}

/**
 * A VM fits when it runs the same guest image (and acceleration, if asked for) and is at least as big, or can grow
 * its memory that far (room to grow, vm.max_memory_mib: the claimer grows it); a container is free to use less than
 * its VM has.
 */
export function fits(shape: PoolShape, want: ClaimWant): boolean {
  return (
    shape.image === want.image &&
    (want.accel === undefined || shape.accel === want.accel) &&
    shape.vcpus >= want.vcpus &&
    mostMemoryMiB(shape) >= want.memoryMiB &&
    shape.nics >= want.nics
  );
}

/** True while every process of the VM runs: a VM missing its VMM or a helper is of no use to anyone. */
export function vmAlive(vm: VmProcesses): boolean {
  return vm.vmm !== undefined && isAlive(vm.vmm) && (vm.helpers ?? []).every((h) => isAlive(h));
}

/**
 * Takes the VM in `dir` for this process: true if the claim file was created by this call, false if the VM was
 * taken already (or is gone). Takes any VM, whatever its state: callers check that first.
 */
export function takeVm(dir: string): boolean {
  const claim: Claim = { ...selfRef(), at: new Date().toISOString() };
  try {
    return createExclusive(claimPath(dir), `${JSON.stringify(claim)}\n`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false; // the VM's directory is gone
    throw err;
  }
}

/**
 * Gives up a VM this process claimed but will not use (it was dead, or reaching it failed before the VM went on the
 * sandbox's record): the claim stays, so nobody else takes it, and says `released`, so the pool powers the VM off
 * and removes it. A claim that is not this process's is left alone.
 */
export function releaseClaim(dir: string): void {
  const file = claimPath(dir);
  const text = readIfExists(file);
  if (text === undefined) return;
  const claim = parseClaim(text, file);
  if (!sameProcess(claim, selfRef()) || claim.released) return;
  writeFileAtomic(file, `${JSON.stringify({ ...claim, released: true } satisfies Claim)}\n`, 0o600);
}

const sizeText = (s: { vcpus: number; memoryMiB: number; maxMemoryMiB?: number; nics: number }): string =>
  `${s.vcpus} vCPU/${s.memoryMiB}${s.maxMemoryMiB === undefined ? '' : `–${s.maxMemoryMiB}`} MiB${s.nics === 0 ? '' : `/${s.nics} NIC${s.nics === 1 ? '' : 's'}`}`;

/** A shape as a miss reason shows it: what differs from what was wanted is spelled out. */
function shapeText(shape: PoolShape, want: ClaimWant): string {
  let text = sizeText(shape);
  if (shape.image !== want.image) text += ` of guest image ${shape.image}`;
  if (want.accel !== undefined && shape.accel !== want.accel) text += ` (${shape.accel})`;
  return text;
}

const readyTime = (r: PoolVmRecord): number => Date.parse(r.readyAt ?? r.createdAt);

/**
 * Claims a ready VM of the pool serving `root` that fits `want` (the smallest that fits, oldest first), or says in
 * one line why there is none. Only VMs booted by the pool serving now are handed out. On success the caller owns the
 * VM: it records it, and its teardown kills it and removes `dir`.
 */
export function claimReadyVm(root: string, want: ClaimWant): ClaimedVm | { miss: string } {
  const pool = poolDir(root);
  let server: ServeLock | undefined;
  try {
    server = servingPool(pool);
  } catch (err) {
    return { miss: `the pool's lock cannot be read: ${oneLine(err)}` };
  }
  if (!server) return { miss: `no pool serves ${root}` };
  const serving = server;

  let entries: PoolVmEntry[];
  try {
    entries = scanPool(pool);
  } catch (err) {
    return { miss: `the pool directory ${pool} cannot be read: ${oneLine(err)}` };
  }
  const ours = entries.filter((e) => !e.claimed && e.record && sameProcess(e.record.pool, serving));
  const booting = ours.filter((e) => e.record?.state === 'booting').length;
  const ready = ours.flatMap((e) => (e.record?.state === 'ready' ? [{ ...e, record: e.record }] : []));
  const candidates = ready.filter((e) => fits(e.record.shape, want));
  // One that needs no growing first (growing costs the claim a balloon deflation), then the smallest, then the oldest.
  const grows = (shape: PoolShape): number => (shape.memoryMiB >= want.memoryMiB ? 0 : 1);
  candidates.sort(
    (a, b) =>
      grows(a.record.shape) - grows(b.record.shape) ||
      a.record.shape.vcpus - b.record.shape.vcpus ||
      a.record.shape.memoryMiB - b.record.shape.memoryMiB ||
      a.record.shape.nics - b.record.shape.nics ||
      readyTime(a.record) - readyTime(b.record),
  );

  let dead = 0;
  let raced = 0;
  for (const { id, dir, record } of candidates) {
    if (!vmAlive(record.vm)) {
      dead++; // the pool replaces it
      continue;
    }
    if (!takeVm(dir)) {
      raced++;
      continue;
    }
    if (!vmAlive(record.vm)) {
      // Died between the look and the claim: ours now, so hand it back to the pool to clean.
      releaseClaim(dir);
      dead++;
      continue;
    }
    return { id, dir, record };
  }

  const parts: string[] = [];
  if (booting > 0) parts.push(`${booting} booting`);
  const unfit = ready.filter((e) => !fits(e.record.shape, want));
  if (unfit.length > 0) {
    const counts = new Map<string, number>();
    for (const e of unfit) {
      const text = shapeText(e.record.shape, want);
      counts.set(text, (counts.get(text) ?? 0) + 1);
    }
    const listed = [...counts].sort(([a, n], [b, m]) => m - n || (a < b ? -1 : 1)); // most first, then by name
    parts.push(`ready: ${listed.map(([text, n]) => `${n}×${text}`).join(', ')}`);
  }
  if (raced > 0) parts.push(`${raced} claimed by others meanwhile`);
  if (dead > 0) parts.push(`${dead} dead, to be replaced`);
  if (parts.length === 0) parts.push(serving.size === 0 ? 'the pool keeps none' : 'none yet');
  const of = unfit.length > 0 ? ` of ${sizeText(want)}${want.accel ? ` (${want.accel})` : ''}` : '';
  return { miss: `no ready VM${of} (${parts.join('; ')})` };
}
