// One scrape: finds the sandboxes of the runc root and of the containerd shims' root, asks every running one's agent
// for its containers' cgroups in parallel (each bounded by the timeout, so one hung guest cannot hold the scrape),
// reads the root's pool, and formats the lot. Nothing here fails the scrape for one sandbox's sake.
import type { Logger } from 'pino';
import { isAlive } from '../../hypervisor/process.js';
import { formatExposition } from './exposition.js';
import { Families } from './families.js';
import { guestStats, type GuestStatsResult } from './guest-stats.js';
import { addPoolMetrics } from './pool-metrics.js';
import { addSandboxMetrics, type SandboxReading } from './sandbox-metrics.js';
import { scanContainerdRoot, scanRuncRoot, type FoundSandbox, type SandboxScan } from './sandboxes.js';

export interface ScrapeOptions {
  /** The runc CLI's root (--root); its pool is reported too. */
  root: string;
  /** The containerd shims' root (HULL_CONTAINERD_ROOT, shim/containerd/address.ts). */
  containerdRoot: string;
  /** Bound on each sandbox's agent answering. */
  timeoutMs: number;
  logger: Logger;
}

/** Default bound on a sandbox's agent answering a scrape. */
export const GUEST_TIMEOUT_MS = 2_000;

async function readGuest(s: FoundSandbox, timeoutMs: number, logger: Logger): Promise<GuestStatsResult> {
  const vmm = s.record.vm.vmm;
  if (!vmm || !isAlive(vmm)) return { up: false, error: 'its VM does not run' };
  const result = await guestStats(s.dir, s.record, s.containers, timeoutMs);
  if (!result.up) logger.warn({ sandbox: s.id, root: s.root, err: result.error }, 'no guest stats');
  return result;
}

/** The exposition text of one scrape. */
export async function scrape(opts: ScrapeOptions): Promise<string> {
  const started = Date.now();
  const scan: SandboxScan = { sandboxes: [], unreadable: [] };
  scanRuncRoot(opts.root, scan);
  if (opts.containerdRoot !== opts.root) scanContainerdRoot(opts.containerdRoot, scan);
  for (const u of scan.unreadable) opts.logger.warn({ dir: u.dir, err: u.error }, 'unreadable sandbox record');
  const readings: SandboxReading[] = await Promise.all(
    scan.sandboxes.map(async (sandbox) => ({ sandbox, guest: await readGuest(sandbox, opts.timeoutMs, opts.logger) })),
  );
  const f = new Families();
  addSandboxMetrics(f, readings, scan.unreadable);
  addPoolMetrics(f, opts.root);
  const duration = f.declare('hull_scrape_duration_seconds', 'gauge', 'How long this scrape took.');
  duration({}, (Date.now() - started) / 1000);
  return formatExposition(f.list());
}
