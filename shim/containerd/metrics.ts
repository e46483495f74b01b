// StatsResponse.stats for a container: io.containerd.cgroups.v2.Metrics built from the guest's cgroup accounting
// (the agent's StatsContainer). The numbers come from the guest, which is untrusted: only known keys are copied, each
// clamped to a non-negative safe integer. A container without a memory limit is limited by the VM's RAM, which is
// what usage_limit then says (CRI computes available bytes from it).
import type { StatsContainerResponse } from '../../protocol/agent-types.js';

/** memory.stat keys of the kernel, in containerd's MemoryStat (fields 1–31, same names). */
const MEMORY_STAT_KEYS = [
  'anon', 'file', 'kernel_stack', 'slab', 'sock', 'shmem', 'file_mapped', 'file_dirty', 'file_writeback', 'anon_thp',
  'inactive_anon', 'active_anon', 'inactive_file', 'active_file', 'unevictable', 'slab_reclaimable',
  'slab_unreclaimable', 'pgfault', 'pgmajfault', 'workingset_refault', 'workingset_activate', 'workingset_nodereclaim',
  'pgrefill', 'pgscan', 'pgsteal', 'pgactivate', 'pgdeactivate', 'pglazyfree', 'pglazyfreed', 'thp_fault_alloc',
  'thp_collapse_alloc',
] as const;

const CPU_STAT_KEYS = ['usage_usec', 'user_usec', 'system_usec', 'nr_periods', 'nr_throttled', 'throttled_usec'] as const;
const MEMORY_EVENT_KEYS = ['low', 'high', 'max', 'oom', 'oom_kill'] as const;

const camel = (key: string): string => key.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());

function count(v: unknown): number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0;
}

function pick(from: Record<string, number> | undefined, keys: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of keys) out[camel(k)] = count(from?.[k]);
  return out;
}

export function metricsFromGuest(s: StatsContainerResponse, vmMemoryBytes: number): object {
  const stat = s.memoryStat ?? {};
  const memory = pick(stat, MEMORY_STAT_KEYS);
  // Kernels since 5.9 split the workingset counters by LRU; containerd's field is their sum.
  for (const k of ['workingset_refault', 'workingset_activate'] as const) {
    if (stat[k] === undefined) memory[camel(k)] = count(stat[`${k}_anon`]) + count(stat[`${k}_file`]);
  }
  const memoryMax = count(s.memoryMax);
  return {
    pids: { current: count(s.pidsCurrent), limit: count(s.pidsMax) },
    cpu: pick(s.cpuStat, CPU_STAT_KEYS),
    memory: {
      ...memory,
      usage: count(s.memoryCurrent),
      usageLimit: memoryMax > 0 && memoryMax < vmMemoryBytes ? memoryMax : vmMemoryBytes,
      swapUsage: count(s.memorySwapCurrent),
      swapLimit: count(s.memorySwapMax),
    },
    memoryEvents: pick(s.memoryEvents, MEMORY_EVENT_KEYS),
  };
}

/** memory.events oom_kill of the container's guest cgroup: OOM kills so far (0 when the guest sends nonsense). */
export function oomKillsFromGuest(s: StatsContainerResponse): number {
  return count(s.memoryEvents?.['oom_kill']);
}
