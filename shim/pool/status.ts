// `hull pool status`: what the pool of a root holds right now, read from its directory alone (layout.ts), with each
// VM's host memory (PSS of its VMM and helpers, so shared pages are not counted once per VM).
import { readFileSync } from 'node:fs';
import { isAlive } from '../../hypervisor/process.js';
import type { VmProcess, VmProcesses } from '../../hypervisor/types.js';
import { invalidArgument, oneLine } from '../errors.js';
import { poolDir } from './layout.js';
import { sameProcess, type PoolShape } from './records.js';
import { claimOwner, scanPool } from './scan.js';
import { servingPool } from './serve-lock.js';

/**
 * booting, ready: the serving pool's, unclaimed. claimed: a live claimer's. orphaned: its claimer died or gave it up;
 * stale: left unclaimed by a pool that no longer serves — the (next) serving pool removes both. unknown: its record
 * cannot be read.
 */
export type PoolVmState = 'booting' | 'ready' | 'claimed' | 'orphaned' | 'stale' | 'unknown';

export interface PoolVmStatus {
  id: string;
  state: PoolVmState;
  shape?: PoolShape;
  /** The VMM's pid, while it runs. */
  pid?: number;
  /** The claimer's pid (claimed and orphaned VMs). */
  claimedBy?: number;
  /** Summed over the VMM and its helpers, from /proc/<pid>/smaps_rollup. */
  rssBytes?: number;
  pssBytes?: number;
  /** Why the state is 'unknown' (a record that cannot be read). */
  error?: string;
}

export interface PoolStatus {
  root: string;
  poolDir: string;
  serving: { pid: number } | null;
  /** The serving pool's target number of ready VMs. */
  size?: number;
  ready: number;
  booting: number;
  claimed: number;
  vms: PoolVmStatus[];
}

export function poolStatus(root: string): PoolStatus {
  const pool = poolDir(root);
  const server = servingPool(pool);
  const vms = scanPool(pool).map((entry): PoolVmStatus => {
    const owner = claimOwner(entry);
    const servedNow = entry.record !== undefined && server !== undefined && sameProcess(entry.record.pool, server);
    const state: PoolVmState =
      owner === 'in-use'
        ? 'claimed'
        : owner === 'orphaned'
          ? 'orphaned'
          : !entry.record
            ? 'unknown'
            : servedNow
              ? entry.record.state
              : 'stale';
    const status: PoolVmStatus = { id: entry.id, state };
    if (entry.record) {
      status.shape = entry.record.shape;
      const vmm = entry.record.vm.vmm;
      if (vmm && isAlive(vmm)) status.pid = vmm.pid;
      Object.assign(status, memoryOf(entry.record.vm));
    }
    if (entry.claim) status.claimedBy = entry.claim.pid;
    const error = entry.recordError ?? entry.claimError;
    if (error) status.error = error;
    return status;
  });
  const count = (s: PoolVmState): number => vms.filter((vm) => vm.state === s).length;
  return {
    root,
    poolDir: pool,
    serving: server ? { pid: server.pid } : null,
    ...(server ? { size: server.size } : {}),
    ready: count('ready'),
    booting: count('booting'),
    claimed: count('claimed'),
    vms,
  };
}

/** RSS and PSS of the VM's live processes, from smaps_rollup (kB there); nothing when none runs. Also `hull metrics`'. */
export function memoryOf(vm: VmProcesses): { rssBytes?: number; pssBytes?: number } {
  const procs: VmProcess[] = [...(vm.vmm ? [vm.vmm] : []), ...(vm.helpers ?? [])].filter((p) => isAlive(p));
  let rss = 0;
  let pss = 0;
  let read = 0;
  for (const p of procs) {
    const rollup = smapsRollup(p.pid);
    if (!rollup) continue;
    rss += rollup.rss;
    pss += rollup.pss;
    read++;
  }
  return read === 0 ? {} : { rssBytes: rss, pssBytes: pss };
}

function smapsRollup(pid: number): { rss: number; pss: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return undefined; // exited meanwhile
    throw err;
  }
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { rss: kb('Rss'), pss: kb('Pss') };
}

const mib = (bytes: number | undefined): string => (bytes === undefined ? '-' : `${(bytes / 2 ** 20).toFixed(0)} MiB`);

function formatTable(s: PoolStatus): string {
  const serving = s.serving ? `served by pid ${s.serving.pid}, size ${s.size}` : 'not served';
  const head = `pool of ${s.root} (${s.poolDir}): ${serving}; ${s.ready} ready, ${s.booting} booting, ${s.claimed} claimed`;
  const rows = s.vms.map((vm) =>
    [
      vm.id.padEnd(17),
      vm.state.padEnd(10),
      (vm.shape ? `${vm.shape.vcpus} vCPU/${vm.shape.memoryMiB} MiB/${vm.shape.nics} NIC ${vm.shape.accel}` : '-').padEnd(28),
      String(vm.pid ?? '-').padEnd(10),
      mib(vm.pssBytes).padEnd(10),
      vm.claimedBy !== undefined ? `claimed by ${vm.claimedBy}` : vm.error ? oneLine(vm.error) : '',
    ].join('').trimEnd(),
  );
  const header = ['ID'.padEnd(17), 'STATE'.padEnd(10), 'SHAPE'.padEnd(28), 'VMM PID'.padEnd(10), 'PSS'.padEnd(10)].join('').trimEnd();
  return [head, ...(rows.length ? [header, ...rows] : [])].join('\n');
}

/** The `hull pool status` command: prints the pool's status as a table or JSON. */
export function printPoolStatus(root: string, format: string): number {
  if (format !== 'table' && format !== 'json') throw invalidArgument(`invalid format "${format}": use table or json`);
  const status = poolStatus(root);
  process.stdout.write(`${format === 'json' ? JSON.stringify(status) : formatTable(status)}\n`);
  return 0;
}
