// The guest cgroup accounting of a sandbox's containers, asked of its agent (StatsContainer) over a connection of the
// scrape's own, through the agent-key handshake of shim/sandbox/agent-connect.ts. Everything is bounded by one
// deadline: a sandbox whose agent does not answer in time is reported down, never waited on. The numbers come from
// the guest, which is untrusted: only known keys are read, each a non-negative safe integer or 0.
import type { AgentClient, StatsContainerResponse } from '../../protocol/agent-client.js';
import { HullError, oneLine } from '../errors.js';
import { connectAgent } from '../sandbox/agent-connect.js';
import { vmDirOf, type SandboxRecord } from '../sandbox/record.js';

/** One container's guest cgroup, as the metrics report it. */
export interface GuestCgroupStats {
  cpuUsageUsec: number;
  cpuUserUsec: number;
  cpuSystemUsec: number;
  cpuThrottledUsec: number;
  memoryBytes: number;
  /** 0: no limit. */
  memoryLimitBytes: number;
  oomKills: number;
  pids: number;
  /** 0: no limit. */
  pidsLimit: number;
}

export type GuestStatsResult = { up: true; containers: Map<string, GuestCgroupStats> } | { up: false; error: string };

const count = (v: unknown): number => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0);

export function fromGuest(s: StatsContainerResponse): GuestCgroupStats {
  return {
    cpuUsageUsec: count(s.cpuStat?.['usage_usec']),
    cpuUserUsec: count(s.cpuStat?.['user_usec']),
    cpuSystemUsec: count(s.cpuStat?.['system_usec']),
    cpuThrottledUsec: count(s.cpuStat?.['throttled_usec']),
    memoryBytes: count(s.memoryCurrent),
    memoryLimitBytes: count(s.memoryMax),
    oomKills: count(s.memoryEvents?.['oom_kill']),
    pids: count(s.pidsCurrent),
    pidsLimit: count(s.pidsMax),
  };
}

/**
 * StatsContainer for each of `containers` of the sandbox in `dir`, all within `timeoutMs`. Down (with the reason) when
 * the agent cannot be reached, or any call fails or is late; the connection is closed either way, a late one too.
 */
export async function guestStats(dir: string, record: SandboxRecord, containers: string[], timeoutMs: number): Promise<GuestStatsResult> {
  const deadline = Date.now() + timeoutMs;
  const connecting = connectAgent(vmDirOf(dir, record), { timeoutMs, defaultTimeoutMs: timeoutMs });
  let agent: AgentClient | undefined;
  try {
    agent = await withDeadline(connecting, deadline, 'connecting to the agent');
    const client = agent;
    const left = (): number => Math.max(1, deadline - Date.now());
    const answers = await withDeadline(
      Promise.all(containers.map(async (id) => [id, fromGuest(await client.statsContainer(id, { timeoutMs: left() }))] as const)),
      deadline,
      'StatsContainer',
    );
    return { up: true, containers: new Map(answers) };
  } catch (err) {
    if (!agent) void connecting.then((a) => a.close(), () => undefined); // a connection that comes late is not leaked
    return { up: false, error: oneLine(err) };
  } finally {
    agent?.close();
  }
}

/** `p`, or a rejection once `deadline` (ms since the epoch) has passed. */
function withDeadline<T>(p: Promise<T>, deadline: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new HullError('unavailable', `${what} took longer than the scrape's timeout`)), Math.max(0, deadline - Date.now()));
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
