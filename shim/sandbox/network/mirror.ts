// Kata's "tcfilter" model: next to each pod interface a tap, and an ingress qdisc with a u32 match-all filter whose
// mirred action redirects every frame to the other device, both ways. QEMU's virtio-net backend is the tap, so the
// guest NIC (with the interface's MAC) sends and receives exactly what the pod interface would. No host process
// copies packets. Each step is on record before it is made, and removal takes away only what hull added: the tap,
// our filter, and the ingress qdisc only when hull created it (an engine's own qdisc and filters stay).
import { inNetns, NetnsCommandError } from './netns-exec.js';
import type { PlannedNic } from './plan.js';

/** Priority of hull's filters: an unusual number, so an engine's own filters on the same qdisc are never touched. */
export const FILTER_PRIO = '49913';

export interface MirrorRecord {
  tap: string;
  device: string;
  /** hull added the device's ingress qdisc (remove it); false: it was there, remove only hull's filter. */
  ownQdisc: boolean;
  /** The qdisc the filter hangs from: 'ingress' (parent ffff:) or 'clsact' (its ingress hook). */
  qdiscKind: 'ingress' | 'clsact';
}

function parent(kind: MirrorRecord['qdiscKind']): string {
  return kind === 'clsact' ? 'ingress' : 'parent ffff:';
}

function redirect(from: string, to: string, kind: MirrorRecord['qdiscKind']): string {
  return `filter add dev ${from} ${parent(kind)} prio ${FILTER_PRIO} protocol all u32 match u8 0 0 action mirred egress redirect dev ${to}`;
}

async function ingressQdisc(netns: string, device: string): Promise<'ingress' | 'clsact' | undefined> {
  const out = await inNetns(netns, 'tc', ['-json', 'qdisc', 'show', 'dev', device, 'ingress']);
  const list = (out.trim() ? JSON.parse(out) : []) as Array<{ kind?: string }>;
  const kind = list.find((q) => q.kind === 'ingress' || q.kind === 'clsact')?.kind;
  return kind === 'ingress' || kind === 'clsact' ? kind : undefined;
}

/**
 * Creates the tap for `nic` — or moves in `from`, a pooled VM's tap from its VMM's namespace, renamed on the way —
 * and the redirects both ways; `onRecord` gets the entry before anything is made.
 */
export async function mirror(
  netns: string,
  nic: PlannedNic,
  onRecord: (entry: MirrorRecord) => void,
  from?: { netns: string; tap: string },
): Promise<void> {
  const existing = await ingressQdisc(netns, nic.device);
  const entry: MirrorRecord = { tap: nic.tap, device: nic.device, ownQdisc: existing === undefined, qdiscKind: existing ?? 'ingress' };
  onRecord(entry);
  if (from) {
    // Renamed where it is (its new name may not exist there), then moved; the VMM keeps its open tap all along.
    const move = [`link set dev ${from.tap} name ${nic.tap}`, `link set dev ${nic.tap} netns ${netns}`, ''];
    await inNetns(from.netns, 'ip', ['-batch', '-'], move.join('\n'));
  }
  // addrgenmode none: the tap is a wire, not a host of the pod network (no IPv6 link-local address of its own).
  const ip = [
    ...(from ? [] : [`tuntap add dev ${nic.tap} mode tap`]),
    `link set dev ${nic.tap} addrgenmode none`,
    `link set dev ${nic.tap} mtu ${nic.mtu} up`,
    '',
  ];
  await inNetns(netns, 'ip', ['-batch', '-'], ip.join('\n'));
  const tc = [
    ...(entry.ownQdisc ? [`qdisc add dev ${nic.device} ingress`] : []),
    redirect(nic.device, nic.tap, entry.qdiscKind),
    `qdisc add dev ${nic.tap} ingress`,
    redirect(nic.tap, nic.device, 'ingress'),
    '',
  ];
  await inNetns(netns, 'tc', ['-batch', '-'], tc.join('\n'));
}

/** What iproute2 says when the thing to delete is already gone: fine, teardown may run twice. */
const GONE = /cannot find|no such|not found|does not exist|invalid handle|cannot delete qdisc with handle of zero/i;

async function removeIfPresent(netns: string, tool: 'ip' | 'tc', args: string[]): Promise<void> {
  try {
    await inNetns(netns, tool, args);
  } catch (err) {
    if (err instanceof NetnsCommandError && GONE.test(err.stderr)) return;
    throw err;
  }
}

/** Removes what mirror() added for one entry: hull's filter (or hull's whole ingress qdisc), then the tap. */
export async function unmirror(netns: string, entry: MirrorRecord): Promise<void> {
  if (entry.ownQdisc) {
    await removeIfPresent(netns, 'tc', ['qdisc', 'del', 'dev', entry.device, 'ingress']);
  } else {
    await removeIfPresent(netns, 'tc', ['filter', 'del', 'dev', entry.device, ...parent(entry.qdiscKind).split(' '), 'prio', FILTER_PRIO]);
  }
  // Deleting the tap drops its own qdisc and filter with it.
  await removeIfPresent(netns, 'ip', ['link', 'del', 'dev', entry.tap]);
}
