// The sandbox record: every host resource a sandbox holds, written before the resource exists, so that whatever
// process finds it later (a `delete` after a crash) can end the sandbox from it alone (teardown.ts). Each front end
// keeps it inside its own record file — state.json for the runc CLI, pod.json for the containerd shim — next to
// its own fields; the core reads and writes it only through a SandboxRecordStore.
import type { VmProcesses } from '../../hypervisor/types.js';
import { parseVmProcesses } from '../../hypervisor/vm-processes.js';
import { HullError } from '../errors.js';
import type { NetworkRecord } from './network/pod-network.js';
import { parseHostCgroupRecord, type HostCgroupRecord } from './cgroups/host-cgroup.js';

export interface SandboxRecord {
  /** The VM's host processes (VMM and helpers) with their driver; `{}` before boot and after teardown. */
  vm: VmProcesses;
  /** Host paths mounted into the sandbox's share (container roots, host bind sources), unmounted on teardown. */
  mounts: string[];
  /** The taps, filters and qdiscs hull added to the sandbox's network namespace (network/pod-network.ts). */
  network?: NetworkRecord;
  /**
   * The directory the VM lives in (its share, sockets, console) when it is not the sandbox's own: a VM taken from a
   * pool (shim/pool/) was booted in the pool's directory. Teardown removes it once the VM and its mounts are gone.
   */
  vmDir?: string;
  /** The sandbox's host cgroup (cgroups/host-cgroup.ts), removed on teardown once the VM's processes are gone. */
  cgroup?: HostCgroupRecord;
  /** How the VM came up, once it has (informational: `hull metrics` reports it; nothing is released from it). */
  boot?: BootRecord;
}

/** The VM's boot as the sandbox saw it: when it was ready, how long it took, its size, and whether the pool gave it. */
export interface BootRecord {
  /** ISO time the agent answered. */
  at: string;
  /** From asking for a VM to its agent answering: a cold boot, or a pooled VM's claim. */
  ms: number;
  pooled: boolean;
  vcpus: number;
  memoryMiB: number;
}

/** Where a front end keeps the sandbox record. `update` is a read-modify-write that no other writer can interleave. */
export interface SandboxRecordStore {
  /** The record as it is now; undefined when there is none (any more). */
  read(): SandboxRecord | undefined;
  update(change: (record: SandboxRecord) => void): void;
}

/** A record with nothing in it yet. */
export const emptySandboxRecord = (): SandboxRecord => ({ vm: {}, mounts: [] });

/**
 * Brings the sandbox fields of a record just parsed from `source` into today's shape: earlier hull wrote the VM's
 * processes in another shape, and a record without mounts has none. Throws when the VM's processes cannot be trusted.
 */
export function readSandboxFields<T extends SandboxRecord>(record: T, source: string): T {
  record.vm = parseVmProcesses(record.vm, source);
  if (!Array.isArray(record.mounts)) record.mounts = [];
  const cgroup = parseHostCgroupRecord(record.cgroup, source);
  if (cgroup) record.cgroup = cgroup;
  if (record.vmDir !== undefined && (typeof record.vmDir !== 'string' || !record.vmDir.startsWith('/'))) {
    throw new HullError('internal', `${source}: vmDir is not an absolute path`);
  }
  return record;
}

/** Where the sandbox's VM lives: its own directory unless the record names another. */
export const vmDirOf = (dir: string, record: SandboxRecord | undefined): string => record?.vmDir ?? dir;
