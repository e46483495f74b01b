// From a namespace's view (inspect.ts) to what the VM gets: which interfaces are mirrored into it (each through a tap
// of its own), and the addresses, routes and static neighbours the agent configures in the guest. Pure, so it is
// unit-tested with `ip -json` output as input.
//
// Which interfaces reach the VM, by type (docs/networking.md):
//  - mirrored: veth (CNI, podman, Docker), macvlan, macvtap, ipvlan, vlan, a tap (e.g. slirp4netns's), and a plain
//    Ethernet device moved into the namespace (no link kind) — anything Ethernet that carries the pod's traffic;
//  - skipped, with a log line: loopback (the guest has its own), devices that are down, devices that are not
//    Ethernet (tun in L3 mode, wireguard, ipip: no MAC to give the guest NIC), and bridges, bonds, dummies and
//    tunnels (vxlan, geneve, gre): their traffic is the host side's, not the pod's.
import type { IpAddress, NetInterface, NetNeighbor, NetRoute, SetupNetworkRequest } from '../../../protocol/agent-types.js';
import { invalidArgument } from '../../errors.js';
import type { IpLink, IpRoute, NamespaceView } from './inspect.js';

/** microvm has 8 virtio-mmio transports; rng, the root disk, virtio-fs and vsock use four. */
export const MAX_NICS = 4;
/** Prefix of the taps hull makes in the pod's namespace (IFNAMSIZ allows 15 characters). */
export const TAP_PREFIX = 'hulltap';

const MIRRORED_KINDS = new Set(['', 'veth', 'macvlan', 'macvtap', 'ipvlan', 'vlan', 'tun']);
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IFNAME = /^[A-Za-z0-9_.@-]{1,15}$/;

export interface PlannedNic {
  /** The interface in the pod's namespace whose traffic the VM gets. */
  device: string;
  /** The tap hull creates next to it; QEMU's virtio-net backend. */
  tap: string;
  mac: string;
  mtu: number;
}

export interface NetworkPlan {
  nics: PlannedNic[];
  guest: SetupNetworkRequest;
  skipped: Array<{ device: string; why: string }>;
}

function skipReason(link: IpLink): string | undefined {
  const kind = link.linkinfo?.info_kind ?? '';
  if (link.link_type === 'loopback') return 'loopback';
  if (link.ifname.startsWith(TAP_PREFIX)) return 'a tap of hull';
  if (link.link_type !== 'ether') return `not an Ethernet device (link type ${link.link_type ?? 'unknown'})`;
  if (!MIRRORED_KINDS.has(kind)) return `a ${kind} device is not mirrored into the VM`;
  if (!(link.flags ?? []).includes('UP')) return 'down';
  return undefined;
}

function addressesOf(view: NamespaceView, device: string): IpAddress[] {
  const entry = view.addresses.find((a) => a.ifname === device);
  const out: IpAddress[] = [];
  for (const a of entry?.addr_info ?? []) {
    // Link-local addresses the guest kernel makes itself, from the same MAC.
    if (a.scope !== 'global' || a.local === undefined || a.prefixlen === undefined) continue;
    if (a.family === 'inet') out.push({ family: 4, address: a.local, prefixLength: a.prefixlen });
    else if (a.family === 'inet6') out.push({ family: 6, address: a.local, prefixLength: a.prefixlen });
  }
  return out;
}

function routeOf(r: IpRoute, family: 4 | 6): NetRoute | undefined {
  // Routes the guest kernel makes itself when the addresses are added, or learns itself (router advertisements).
  if (r.protocol === 'kernel' || r.protocol === 'ra') return undefined;
  if (r.type !== undefined && r.type !== 'unicast') return undefined;
  if (r.dst === undefined || r.dev === undefined) return undefined;
  const destination = r.dst === 'default' || r.dst.includes('/') ? r.dst : `${r.dst}/${family === 4 ? 32 : 128}`;
  return {
    family,
    destination,
    gateway: r.gateway ?? '',
    device: r.dev,
    scope: r.scope === 'link' || r.scope === 'global' ? r.scope : '',
    metric: r.metric ?? 0,
    source: r.prefsrc ?? '',
  };
}

export function planNetwork(view: NamespaceView): NetworkPlan {
  const nics: PlannedNic[] = [];
  const interfaces: NetInterface[] = [];
  const skipped: NetworkPlan['skipped'] = [];
  for (const link of view.links) {
    const why = skipReason(link);
    if (why !== undefined) {
      if (link.link_type !== 'loopback') skipped.push({ device: link.ifname, why });
      continue;
    }
    const mac = (link.address ?? '').toLowerCase();
    if (!MAC.test(mac)) throw invalidArgument(`interface ${link.ifname} has no usable MAC address (${link.address ?? 'none'})`);
    if (!IFNAME.test(link.ifname)) throw invalidArgument(`interface name ${JSON.stringify(link.ifname)} is not usable in the guest`);
    const mtu = link.mtu ?? 1500;
    if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw invalidArgument(`interface ${link.ifname} has MTU ${mtu}`);
    nics.push({ device: link.ifname, tap: `${TAP_PREFIX}${nics.length}`, mac, mtu });
    interfaces.push({ name: link.ifname, mac, mtu, addresses: addressesOf(view, link.ifname) });
  }
  if (nics.length > MAX_NICS) {
    throw invalidArgument(
      `the network namespace has ${nics.length} interfaces to give the VM (${nics.map((n) => n.device).join(', ')}); ` +
        `a microVM takes at most ${MAX_NICS}`,
    );
  }
  const devices = new Set(nics.map((n) => n.device));
  const routes = [
    ...view.routes4.map((r) => routeOf(r, 4)),
    ...view.routes6.map((r) => routeOf(r, 6)),
  ].filter((r): r is NetRoute => r !== undefined && devices.has(r.device));
  // On-link routes first: a gateway must be reachable before a route can use it.
  routes.sort((a, b) => Number(a.gateway !== '') - Number(b.gateway !== ''));
  const neighbors: NetNeighbor[] = view.neighbors
    .filter((n) => n.dst && n.dev && devices.has(n.dev) && n.lladdr && MAC.test(n.lladdr.toLowerCase()))
    .map((n) => ({ family: n.dst!.includes(':') ? 6 : 4, address: n.dst!, mac: n.lladdr!.toLowerCase(), device: n.dev! }));
  return { nics, guest: { interfaces, routes, neighbors }, skipped };
}
