// Reads a network namespace as `ip -json` prints it: links, addresses, routes and permanent neighbours. Only the
// fields hull uses are typed; plan.ts turns this view into what the VM gets.
import { inNetns } from './netns-exec.js';

export interface IpLink {
  ifname: string;
  flags?: string[];
  mtu?: number;
  link_type?: string;
  address?: string;
  linkinfo?: { info_kind?: string };
}

export interface IpAddrInfo {
  family?: string;
  local?: string;
  prefixlen?: number;
  scope?: string;
}

export interface IpAddr {
  ifname: string;
  addr_info?: IpAddrInfo[];
}

export interface IpRoute {
  dst?: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
  metric?: number;
  prefsrc?: string;
  type?: string;
}

export interface IpNeighbor {
  dst?: string;
  dev?: string;
  lladdr?: string;
  state?: string[];
}

export interface NamespaceView {
  links: IpLink[];
  addresses: IpAddr[];
  routes4: IpRoute[];
  routes6: IpRoute[];
  neighbors: IpNeighbor[];
}

function parseArray<T>(text: string, what: string): T[] {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  const value: unknown = JSON.parse(trimmed);
  if (!Array.isArray(value)) throw new Error(`ip -json ${what} did not print an array`);
  return value as T[];
}

export async function inspectNamespace(netnsPath: string): Promise<NamespaceView> {
  const [links, addresses, routes4, routes6, neighbors] = await Promise.all([
    inNetns(netnsPath, 'ip', ['-json', '-details', 'link', 'show']),
    inNetns(netnsPath, 'ip', ['-json', 'address', 'show']),
    inNetns(netnsPath, 'ip', ['-json', '-4', 'route', 'show', 'table', 'main']),
    inNetns(netnsPath, 'ip', ['-json', '-6', 'route', 'show', 'table', 'main']),
    inNetns(netnsPath, 'ip', ['-json', 'neighbor', 'show', 'nud', 'permanent']),
  ]);
  return {
    links: parseArray<IpLink>(links, 'link'),
    addresses: parseArray<IpAddr>(addresses, 'address'),
    routes4: parseArray<IpRoute>(routes4, 'route'),
    routes6: parseArray<IpRoute>(routes6, '-6 route'),
    neighbors: parseArray<IpNeighbor>(neighbors, 'neighbor'),
  };
}
