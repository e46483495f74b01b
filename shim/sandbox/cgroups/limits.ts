// The host limits of a sandbox's cgroup, derived from the VM's size and the spec's linux.resources, and the files
// that carry them on v1 and on v2. The host cgroup bounds the whole VM — guest RAM, the VMM and its helpers — while
// the guest's own cgroups (agent/) keep enforcing the container's limits inside it.
//
// memory  = guest RAM + VMM_MEMORY_OVERHEAD_MIB (+ the page array of a VM's room to grow, which its guest touches at
//           boot). Always set: the VM can never need more, whatever the spec says. Raised when the VM grows.
// cpu     = the spec's quota + VMM_CPU_OVERHEAD of a CPU (in the spec's period) when it sets a quota; none otherwise.
//           shares (v1 cpu.shares; v2 cpu.weight, runc's conversion) as the spec says, when it says.
// pids    = HOST_PIDS_BASE + vCPUs: the VMM's threads and the helpers, not the workload's (its processes live in the
//           guest and take no host pid).
import type { OciLinuxResources } from '../../oci-spec.js';
import { mostMemoryMiB, type VmSize } from '../vm-sizing.js';
import type { Hierarchy } from './hierarchies.js';

/**
 * What QEMU and its helpers hold beyond guest RAM: QEMU's own heap and the TCG translation cache (64 MiB,
 * hypervisor/qemu.ts), virtiofsd, the vsock backend's broker and worker, and the page cache their reads charge to the
 * cgroup. Measured here (TCG, 512 MiB guest): see docs/cgroups.md; set with headroom.
 */
export const VMM_MEMORY_OVERHEAD_MIB = 192;
/** The VMM's I/O threads, virtiofsd and the vsock worker, on top of the vCPUs' share: a quarter of a CPU. */
export const VMM_CPU_OVERHEAD = 0.25;
/**
 * Host tasks of one VM: QEMU's main, RCU and vCPU threads and its worker pool (up to 64 threads), virtiofsd (two
 * processes, one worker thread each: --thread-pool-size=1) and the vsock broker and worker — about 80 at most.
 */
export const HOST_PIDS_BASE = 128;
/** The guest kernel's `struct page` per 4 KiB page: 64 bytes, 1/64 of the RAM it describes, touched at boot. */
const PAGE_ARRAY_FRACTION = 64;

export interface HostLimits {
  memoryBytes: number;
  /** CFS quota and period, microseconds; absent: no quota. */
  cpu?: { quotaUs: number; periodUs: number };
  /** v1 cpu.shares (2–262144); absent: the default. */
  cpuShares?: number;
  pidsMax: number;
}

const MIB = 2 ** 20;
const DEFAULT_PERIOD_US = 100_000;

/** The limits for a VM of `size` running a container with `resources` (its spec's linux.resources). */
export function hostLimits(size: VmSize, resources: OciLinuxResources | undefined): HostLimits {
  const roomPageArrayMiB = Math.ceil((mostMemoryMiB(size) - size.memoryMiB) / PAGE_ARRAY_FRACTION);
  const limits: HostLimits = { memoryBytes: (size.memoryMiB + VMM_MEMORY_OVERHEAD_MIB + roomPageArrayMiB) * MIB, pidsMax: HOST_PIDS_BASE + size.vcpus };
  const cpu = resources?.cpu;
  if (cpu?.quota !== undefined && cpu.quota > 0) {
    const periodUs = cpu.period !== undefined && cpu.period > 0 ? cpu.period : DEFAULT_PERIOD_US;
    limits.cpu = { quotaUs: Math.round(cpu.quota + periodUs * VMM_CPU_OVERHEAD), periodUs };
  }
  if (cpu?.shares !== undefined && cpu.shares > 0) limits.cpuShares = Math.min(262_144, Math.max(2, cpu.shares));
  return limits;
}

/** runc's cpu.shares → cpu.weight: [2, 262144] onto [1, 10000]. */
export const sharesToWeight = (shares: number): number => Math.floor(1 + ((shares - 2) * 9999) / 262_142);

/** One file to write in a hierarchy's cgroup. */
export interface LimitWrite {
  hierarchy: Hierarchy;
  file: string;
  value: string;
}

/**
 * The writes that set `limits` in the given hierarchies, in order (v1 period before quota). A controller that no
 * hierarchy has is reported in `missing`, so the caller can say which limit the host cannot hold.
 */
export function limitWrites(limits: HostLimits, hierarchies: Hierarchy[]): { writes: LimitWrite[]; missing: string[] } {
  const writes: LimitWrite[] = [];
  const missing: string[] = [];
  const find = (controller: string) => hierarchies.find((h) => h.controllers.includes(controller));
  const memory = find('memory');
  if (!memory) missing.push('memory');
  else writes.push({ hierarchy: memory, file: memory.version === 1 ? 'memory.limit_in_bytes' : 'memory.max', value: String(limits.memoryBytes) });
  const cpu = find('cpu');
  if (limits.cpu || limits.cpuShares !== undefined) {
    if (!cpu) missing.push('cpu');
    else if (cpu.version === 1) {
      if (limits.cpu) {
        writes.push({ hierarchy: cpu, file: 'cpu.cfs_period_us', value: String(limits.cpu.periodUs) });
        writes.push({ hierarchy: cpu, file: 'cpu.cfs_quota_us', value: String(limits.cpu.quotaUs) });
      }
      if (limits.cpuShares !== undefined) writes.push({ hierarchy: cpu, file: 'cpu.shares', value: String(limits.cpuShares) });
    } else {
      if (limits.cpu) writes.push({ hierarchy: cpu, file: 'cpu.max', value: `${limits.cpu.quotaUs} ${limits.cpu.periodUs}` });
      if (limits.cpuShares !== undefined) writes.push({ hierarchy: cpu, file: 'cpu.weight', value: String(sharesToWeight(limits.cpuShares)) });
    }
  }
  const pids = find('pids');
  if (!pids) missing.push('pids');
  else writes.push({ hierarchy: pids, file: 'pids.max', value: String(limits.pidsMax) });
  return { writes, missing };
}
