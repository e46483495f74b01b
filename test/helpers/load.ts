// What the load tests measure: host processes' own memory (RssAnon from /proc/<pid>/status: not the guest RAM that
// QEMU and virtiofsd map shared, which the VM's size bounds, nor file pages), sampled over time,
// and whether a series of samples grows (last third's median against the first third's). Used by load.test.ts.
import { readFileSync } from 'node:fs';

export const MiB = 2 ** 20;

/** A process's anonymous resident memory in bytes, or undefined once it is gone. */
export function rssOf(pid: number): number | undefined {
  try {
    const m = /^RssAnon:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** How much the last third of `samples` (median) exceeds the first third (median); needs at least three samples. */
export function growth(samples: number[]): number {
  if (samples.length < 3) throw new Error(`need at least 3 samples for a trend, got ${samples.length}`);
  const third = Math.floor(samples.length / 3);
  return median(samples.slice(-third)) - median(samples.slice(0, third));
}

export const mib = (bytes: number): string => `${(bytes / MiB).toFixed(1)}`;

/**
 * Samples the RSS of named processes every `everyMs` until stopped; keeps each one's first sample and peak. A name's
 * pid is looked up on every tick (`pids`), so processes that appear late (a VM still booting) are picked up.
 */
export class RssSampler {
  readonly first = new Map<string, number>();
  readonly peak = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pids: () => Record<string, number | undefined>, everyMs = 100) {
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
  }

  sample(): void {
    for (const [name, pid] of Object.entries(this.pids())) {
      const rss = pid === undefined ? undefined : rssOf(pid);
      if (rss === undefined) continue;
      if (!this.first.has(name)) this.first.set(name, rss);
      this.peak.set(name, Math.max(rss, this.peak.get(name) ?? 0));
    }
  }

  /** Takes the current sample as each process's first (e.g. once a process has finished starting). */
  rebase(): void {
    this.first.clear();
    this.peak.clear();
    this.sample();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Per name: first and peak RSS in MiB, and the peak's rise over the first sample. */
  report(): Record<string, { firstMiB: string; peakMiB: string; riseMiB: string }> {
    const out: Record<string, { firstMiB: string; peakMiB: string; riseMiB: string }> = {};
    for (const [name, first] of this.first) {
      const peak = this.peak.get(name)!;
      out[name] = { firstMiB: mib(first), peakMiB: mib(peak), riseMiB: mib(peak - first) };
    }
    return out;
  }

  rise(name: string): number {
    const first = this.first.get(name);
    if (first === undefined) throw new Error(`no sample of ${name}`);
    return this.peak.get(name)! - first;
  }
}
