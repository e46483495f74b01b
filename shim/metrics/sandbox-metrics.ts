// Per sandbox: what its record says (boot time, vCPUs, memory, pooled), what the host sees of its processes (PSS and
// RSS from smaps_rollup, through shim/pool/status.ts memoryOf), and what its guest says of each container's cgroup
// (guest-stats.ts). docs/metrics.md lists every metric.
import { isAlive } from '../../hypervisor/process.js';
import { memoryOf } from '../pool/status.js';
import type { Labels } from './exposition.js';
import type { Families } from './families.js';
import type { GuestStatsResult } from './guest-stats.js';
import type { FoundSandbox, UnreadableRecord } from './sandboxes.js';

export interface SandboxReading {
  sandbox: FoundSandbox;
  guest: GuestStatsResult;
}

interface BootFields {
  at: string;
  ms: number;
  pooled: boolean;
  vcpus: number;
  memoryMiB: number;
}

const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;

/** The record's boot field when it has the shape hull writes (shim/sandbox/record.ts BootRecord); else none. */
function bootOf(s: FoundSandbox): BootFields | undefined {
  const b = s.record.boot as Partial<BootFields> | undefined;
  if (!b || typeof b !== 'object') return undefined;
  return typeof b.at === 'string' && num(b.ms) && typeof b.pooled === 'boolean' && num(b.vcpus) && num(b.memoryMiB) ? (b as BootFields) : undefined;
}

/** Whether the sandbox's VM came from the pool: its boot record says; before that, a VM directory not its own does. */
export const pooledOf = (s: FoundSandbox): boolean => bootOf(s)?.pooled ?? s.record.vmDir !== undefined;

export function sandboxLabels(s: FoundSandbox): Labels {
  return { sandbox: s.id, root: s.root, pooled: String(pooledOf(s)) };
}

/** The VM's recorded processes (VMM first) that are alive now. */
function liveProcesses(s: FoundSandbox): number {
  const { vm } = s.record;
  return [...(vm.vmm ? [vm.vmm] : []), ...(vm.helpers ?? [])].filter((p) => isAlive(p)).length;
}

export function addSandboxMetrics(f: Families, readings: SandboxReading[], unreadable: UnreadableRecord[]): void {
  const info = f.declare('hull_sandbox_info', 'gauge', 'A sandbox (one VM) found from its record; kind is the front end that made it (runc or containerd).');
  const up = f.declare('hull_sandbox_up', 'gauge', "1 when the sandbox's guest agent answered StatsContainer for all its containers within the scrape's timeout, else 0.");
  const running = f.declare('hull_sandbox_vm_running', 'gauge', "1 while the sandbox's VMM process runs, else 0.");
  const processes = f.declare('hull_sandbox_host_processes', 'gauge', 'Host processes of the VM (VMM and helpers) on record and alive.');
  const bootSeconds = f.declare('hull_sandbox_boot_seconds', 'gauge', 'How long the VM took from being asked for to its agent answering (a cold boot, or a pooled VM claimed).');
  const bootTime = f.declare('hull_sandbox_boot_timestamp_seconds', 'gauge', "When the VM's agent first answered, seconds since the epoch.");
  const vcpus = f.declare('hull_sandbox_vcpus', 'gauge', 'vCPUs of the VM.');
  const memory = f.declare('hull_sandbox_memory_bytes', 'gauge', 'RAM of the VM (guest memory size).');
  const pss = f.declare('hull_sandbox_host_pss_bytes', 'gauge', "Host memory of the VM's processes: PSS summed over the VMM and its helpers (smaps_rollup).");
  const rss = f.declare('hull_sandbox_host_rss_bytes', 'gauge', "Host RSS summed over the VM's processes (counts shared pages once per process).");
  const cpu = f.declare('hull_container_cpu_usage_seconds_total', 'counter', "CPU time of the container's guest cgroup (cpu.stat usage_usec).");
  const cpuUser = f.declare('hull_container_cpu_user_seconds_total', 'counter', "User CPU time of the container's guest cgroup (cpu.stat user_usec).");
  const cpuSystem = f.declare('hull_container_cpu_system_seconds_total', 'counter', "System CPU time of the container's guest cgroup (cpu.stat system_usec).");
  const throttled = f.declare('hull_container_cpu_throttled_seconds_total', 'counter', "Time the container's guest cgroup was throttled (cpu.stat throttled_usec).");
  const memUsage = f.declare('hull_container_memory_usage_bytes', 'gauge', "Memory of the container's guest cgroup (memory.current).");
  const memLimit = f.declare('hull_container_memory_limit_bytes', 'gauge', "memory.max of the container's guest cgroup; absent when it has none (the VM's RAM limits it).");
  const ooms = f.declare('hull_container_oom_kills_total', 'counter', "OOM kills in the container's guest cgroup (memory.events oom_kill).");
  const pids = f.declare('hull_container_pids', 'gauge', "Processes in the container's guest cgroup (pids.current).");
  const pidsLimit = f.declare('hull_container_pids_limit', 'gauge', "pids.max of the container's guest cgroup; absent when it has none.");
  const bad = f.declare('hull_unreadable_records', 'gauge', 'Sandbox records under a root that exist but cannot be read (the log of `hull metrics` names them).');

  for (const { sandbox: s, guest } of readings) {
    const labels = sandboxLabels(s);
    info({ ...labels, kind: s.kind }, 1);
    up(labels, guest.up ? 1 : 0);
    running(labels, s.record.vm.vmm && isAlive(s.record.vm.vmm) ? 1 : 0);
    processes(labels, liveProcesses(s));
    const boot = bootOf(s);
    if (boot) {
      bootSeconds(labels, boot.ms / 1000);
      const at = Date.parse(boot.at);
      if (Number.isFinite(at)) bootTime(labels, at / 1000);
      vcpus(labels, boot.vcpus);
      memory(labels, boot.memoryMiB * 2 ** 20);
    }
    const host = memoryOf(s.record.vm);
    if (host.pssBytes !== undefined) pss(labels, host.pssBytes);
    if (host.rssBytes !== undefined) rss(labels, host.rssBytes);
    if (!guest.up) continue;
    for (const [container, c] of guest.containers) {
      const l = { ...labels, container };
      cpu(l, c.cpuUsageUsec / 1e6);
      cpuUser(l, c.cpuUserUsec / 1e6);
      cpuSystem(l, c.cpuSystemUsec / 1e6);
      throttled(l, c.cpuThrottledUsec / 1e6);
      memUsage(l, c.memoryBytes);
      if (c.memoryLimitBytes > 0) memLimit(l, c.memoryLimitBytes);
      ooms(l, c.oomKills);
      pids(l, c.pids);
      if (c.pidsLimit > 0) pidsLimit(l, c.pidsLimit);
    }
  }
  const perRoot = new Map<string, number>();
  for (const u of unreadable) perRoot.set(u.root, (perRoot.get(u.root) ?? 0) + 1);
  for (const [root, n] of perRoot) bad({ root }, n);
}
