// Reads a container's cgroup v2 accounting for StatsContainer: single-value files (memory.current, pids.max, …; "max"
// becomes 0) and flat keyed files (memory.stat, cpu.stat, memory.events). A file the kernel does not have reads as
// 0 or as an empty map, so the host gets what this kernel offers.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { StatsContainerResponse } from '../protocol/agent-types.js';

function read(dir: string, file: string): string | undefined {
  try {
    return readFileSync(path.join(dir, file), 'utf8');
  } catch {
    return undefined;
  }
}

function toCount(text: string): number {
  const n = Number(text);
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

/** One number; "max" (no limit) and anything unreadable are 0. */
export function readValue(dir: string, file: string): number {
  const text = read(dir, file)?.trim();
  return text === undefined || text === 'max' ? 0 : toCount(text);
}

/** "key value" lines → map. */
export function readFlatKeyed(dir: string, file: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of (read(dir, file) ?? '').split('\n')) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined) out[key] = toCount(value);
  }
  return out;
}

export function readCgroupStats(dir: string): StatsContainerResponse {
  return {
    memoryCurrent: readValue(dir, 'memory.current'),
    memoryMax: readValue(dir, 'memory.max'),
    memorySwapCurrent: readValue(dir, 'memory.swap.current'),
    memorySwapMax: readValue(dir, 'memory.swap.max'),
    memoryStat: readFlatKeyed(dir, 'memory.stat'),
    cpuStat: readFlatKeyed(dir, 'cpu.stat'),
    pidsCurrent: readValue(dir, 'pids.current'),
    pidsMax: readValue(dir, 'pids.max'),
    memoryEvents: readFlatKeyed(dir, 'memory.events'),
  };
}
