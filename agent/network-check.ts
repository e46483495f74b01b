// Validates a SetupNetworkRequest before anything in the guest is changed: names, MACs, addresses and routes have
// the shapes the kernel takes, and the counts are bounded. Every value later goes to busybox `ip` as one argv entry
// (no shell), so this is about clear errors, not quoting.
import net from 'node:net';
import type { IpAddress, NetInterface, NetNeighbor, NetRoute, SetupNetworkRequest } from '../protocol/agent-types.js';
import { SpecError } from './errors.js';

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const LIMITS = { interfaces: 8, addresses: 32, routes: 256, neighbors: 256 };

function family(value: number, at: string): 4 | 6 {
  if (value !== 4 && value !== 6) throw new SpecError(`${at}: family ${value} is neither 4 nor 6`);
  return value;
}

function ip(value: string, fam: 4 | 6, at: string): string {
  if (net.isIP(value) !== fam) throw new SpecError(`${at}: ${JSON.stringify(value.slice(0, 64))} is not an IPv${fam} address`);
  return value;
}

function prefix(value: number, fam: 4 | 6, at: string): number {
  if (!Number.isInteger(value) || value < 0 || value > (fam === 4 ? 32 : 128)) throw new SpecError(`${at}: prefix length ${value}`);
  return value;
}

function address(a: IpAddress, at: string): IpAddress {
  const fam = family(a.family, at);
  return { family: fam, address: ip(a.address, fam, at), prefixLength: prefix(a.prefixLength, fam, at) };
}

function iface(n: NetInterface, at: string): NetInterface {
  if (!IFNAME.test(n.name) || n.name === 'lo') throw new SpecError(`${at}: ${JSON.stringify(n.name.slice(0, 32))} is not a usable interface name`);
  if (!MAC.test(n.mac)) throw new SpecError(`${at}: MAC ${JSON.stringify(n.mac.slice(0, 32))}`);
  if (!Number.isInteger(n.mtu) || n.mtu < 68 || n.mtu > 65535) throw new SpecError(`${at}: MTU ${n.mtu}`);
  if (n.addresses.length > LIMITS.addresses) throw new SpecError(`${at}: more than ${LIMITS.addresses} addresses`);
  // Absent on the wire is '': the NIC has the interface's MAC already.
  const guestMac = n.guestMac === n.mac ? '' : (n.guestMac ?? '');
  if (guestMac !== '' && !MAC.test(guestMac)) throw new SpecError(`${at}: guest MAC ${JSON.stringify(guestMac.slice(0, 32))}`);
  const { guestMac: _given, ...rest } = n;
  return { ...rest, ...(guestMac ? { guestMac } : {}), addresses: n.addresses.map((a, i) => address(a, `${at}.addresses[${i}]`)) };
}

function route(r: NetRoute, devices: Set<string>, at: string): NetRoute {
  const fam = family(r.family, at);
  if (r.destination !== 'default') {
    const [addr, len, extra] = r.destination.split('/');
    if (addr === undefined || len === undefined || extra !== undefined) throw new SpecError(`${at}: destination ${JSON.stringify(r.destination.slice(0, 64))}`);
    ip(addr, fam, at);
    prefix(Number(len), fam, at);
  }
  if (r.gateway !== '') ip(r.gateway, fam, at);
  if (r.source !== '') ip(r.source, fam, at);
  if (!devices.has(r.device)) throw new SpecError(`${at}: device ${JSON.stringify(r.device.slice(0, 32))} is not one of the interfaces`);
  if (!['', 'link', 'global'].includes(r.scope)) throw new SpecError(`${at}: scope ${JSON.stringify(r.scope.slice(0, 16))}`);
  if (!Number.isInteger(r.metric) || r.metric < 0 || r.metric > 0xffffffff) throw new SpecError(`${at}: metric ${r.metric}`);
  return { ...r, family: fam };
}

function neighbor(n: NetNeighbor, devices: Set<string>, at: string): NetNeighbor {
  const fam = family(n.family, at);
  ip(n.address, fam, at);
  if (!MAC.test(n.mac)) throw new SpecError(`${at}: MAC ${JSON.stringify(n.mac.slice(0, 32))}`);
  if (!devices.has(n.device)) throw new SpecError(`${at}: device ${JSON.stringify(n.device.slice(0, 32))} is not one of the interfaces`);
  return { ...n, family: fam };
}

export function checkNetworkRequest(req: SetupNetworkRequest): SetupNetworkRequest {
  for (const [key, max] of Object.entries(LIMITS) as Array<[keyof typeof LIMITS, number]>) {
    if (key !== 'addresses' && req[key].length > max) throw new SpecError(`SetupNetwork: more than ${max} ${key}`);
  }
  const interfaces = req.interfaces.map((n, i) => iface(n, `interfaces[${i}]`));
  const names = new Set(interfaces.map((n) => n.name));
  if (names.size !== interfaces.length) throw new SpecError('SetupNetwork: two interfaces have the same name');
  if (new Set(interfaces.map((n) => n.mac)).size !== interfaces.length) throw new SpecError('SetupNetwork: two interfaces have the same MAC');
  const current = interfaces.map((n) => n.guestMac ?? n.mac);
  if (new Set(current).size !== interfaces.length) throw new SpecError('SetupNetwork: two interfaces name the same guest NIC');
  return {
    interfaces,
    routes: req.routes.map((r, i) => route(r, names, `routes[${i}]`)),
    neighbors: req.neighbors.map((n, i) => neighbor(n, names, `neighbors[${i}]`)),
  };
}
