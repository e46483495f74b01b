// The pod's network namespace reaching the VM: read the namespace and plan what QEMU (the taps) and the agent
// (addresses, routes) need, then mirror each usable interface into a tap (a new one, or a pooled VM's moved in).
// Every tap is on record before it exists; detachNetwork() works from that record alone, so any later process
// (delete after a crash) can finish it.
import type { Logger } from 'pino';
import { HullError, oneLine } from '../../errors.js';
import { inspectNamespace } from './inspect.js';
import { mirror, unmirror, type MirrorRecord } from './mirror.js';
import { planNetwork, type NetworkPlan, type PlannedNic } from './plan.js';
import { statQuietly } from './spec-netns.js';

export interface NetworkRecord {
  /** The namespace as a path (the engine's, or /proc/<monitor pid>/ns/net for one hull made). */
  netns: string;
  /** Its nsfs inode: teardown acts only while the path still names this namespace (a pid may be reused). */
  inode: number;
  taps: MirrorRecord[];
}

/** Where a pooled VM's tap is now (its VMM's own network namespace): attach moves it into the pod's. */
export interface MovedTap {
  netns: string;
  tap: string;
}

const inodeOf = (path: string): number | undefined => statQuietly(path)?.ino;

/** Reads the pod's namespace and decides what the VM gets (nothing is changed yet). */
export async function planPodNetwork(netns: string, log: Logger): Promise<NetworkPlan> {
  const plan = planNetwork(await inspectNamespace(netns));
  for (const s of plan.skipped) log.info({ device: s.device, why: s.why }, 'interface not given to the VM');
  return plan;
}

/**
 * Gives each planned interface a tap in the pod's namespace, mirrored both ways: a new tap, or (`moved`, by index) a
 * pooled VM's tap moved in from where it is. Every tap is on record (onRecord) before it is made or moved.
 */
export async function attachNetwork(
  netns: string,
  nics: PlannedNic[],
  log: Logger,
  onRecord: (record: NetworkRecord) => void,
  moved: MovedTap[] = [],
): Promise<void> {
  const started = Date.now();
  if (nics.length === 0) return;
  const inode = inodeOf(netns);
  if (inode === undefined) throw new HullError('failed-precondition', `network namespace ${netns} disappeared`);
  const record: NetworkRecord = { netns, inode, taps: [] };
  try {
    for (const [i, nic] of nics.entries()) {
      await mirror(netns, nic, (entry) => {
        record.taps.push(entry);
        onRecord(record);
      }, moved[i]);
    }
  } catch (err) {
    await detachNetwork(record, log).catch((e: unknown) => log.warn({ err: oneLine(e) }, 'undoing a failed network attach'));
    throw new HullError('failed-precondition', `cannot give the pod's network to the VM: ${oneLine(err)}`, { cause: err });
  }
  const how = moved.length > 0 ? 'pooled VM taps moved in' : 'new taps';
  log.info({ nics: nics.map((n) => `${n.device}→${n.tap} ${n.mac} mtu ${n.mtu}`), how, ms: Date.now() - started }, 'pod network mirrored');
}

/** Removes the taps, filters and qdiscs hull added, if the namespace is still the one recorded. */
export async function detachNetwork(record: NetworkRecord | undefined, log?: Logger): Promise<void> {
  if (!record || record.taps.length === 0) return;
  if (inodeOf(record.netns) !== record.inode) {
    log?.debug({ netns: record.netns }, 'network namespace gone: nothing to remove');
    return;
  }
  const failures: string[] = [];
  for (const entry of [...record.taps].reverse()) {
    try {
      await unmirror(record.netns, entry);
    } catch (err) {
      failures.push(oneLine(err));
    }
  }
  if (failures.length > 0) throw new HullError('internal', `removing hull's taps from ${record.netns}: ${failures.join('; ')}`);
}
