// The pod's network namespace reaching the VM: read the namespace, mirror each usable interface into a tap, and
// hand back what QEMU (the taps) and the agent (addresses, routes) need. Every tap is on record before it exists;
// detachNetwork() works from that record alone, so any later process (delete after a crash) can finish it.
import type { Logger } from 'pino';
import type { SetupNetworkRequest } from '../../../protocol/agent-types.js';
import { HullError, oneLine } from '../../errors.js';
import { inspectNamespace } from './inspect.js';
import { mirror, unmirror, type MirrorRecord } from './mirror.js';
import { planNetwork, type PlannedNic } from './plan.js';
import { statQuietly } from './spec-netns.js';

export interface NetworkRecord {
  /** The namespace as a path (the engine's, or /proc/<monitor pid>/ns/net for one hull made). */
  netns: string;
  /** Its nsfs inode: teardown acts only while the path still names this namespace (a pid may be reused). */
  inode: number;
  taps: MirrorRecord[];
}

export interface AttachedNetwork {
  nics: PlannedNic[];
  guest: SetupNetworkRequest;
}

const inodeOf = (path: string): number | undefined => statQuietly(path)?.ino;

export async function attachNetwork(
  netns: string,
  log: Logger,
  onRecord: (record: NetworkRecord) => void,
): Promise<AttachedNetwork> {
  const started = Date.now();
  const plan = planNetwork(await inspectNamespace(netns));
  for (const s of plan.skipped) log.info({ device: s.device, why: s.why }, 'interface not given to the VM');
  if (plan.nics.length === 0) return { nics: [], guest: plan.guest };
  const inode = inodeOf(netns);
  if (inode === undefined) throw new HullError('failed-precondition', `network namespace ${netns} disappeared`);
  const record: NetworkRecord = { netns, inode, taps: [] };
  try {
    for (const nic of plan.nics) {
      await mirror(netns, nic, (entry) => {
        record.taps.push(entry);
        onRecord(record);
      });
    }
  } catch (err) {
    await detachNetwork(record, log).catch((e: unknown) => log.warn({ err: oneLine(e) }, 'undoing a failed network attach'));
    throw new HullError('failed-precondition', `cannot give the pod's network to the VM: ${oneLine(err)}`, { cause: err });
  }
  log.info({ nics: plan.nics.map((n) => `${n.device}→${n.tap} ${n.mac} mtu ${n.mtu}`), ms: Date.now() - started }, 'pod network mirrored');
  return { nics: plan.nics, guest: plan.guest };
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
