// Network namespaces a test makes for itself (`ip netns`), on subnets it owns: a pod namespace with a veth to a peer
// namespace that plays the rest of the network (a server the container fetches from, a client that reaches the
// pod's address). Nothing is routed, NATed or forwarded off this machine; every namespace goes at the end.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export function sh(cmd: string, args: string[], timeoutMs = 30_000): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
}

export function ipIn(ns: string, args: string[]): string {
  return sh('ip', ['-n', ns, ...args]);
}

/** What a namespace holds, for before/after comparisons: links (name, kind, MAC, MTU), qdiscs, and ingress filters. */
export function namespaceSnapshot(ns: string): { links: string[]; qdiscs: string[]; filters: string[] } {
  const links = (JSON.parse(ipIn(ns, ['-json', '-details', 'link', 'show'])) as Array<{ ifname: string; address?: string; mtu?: number; linkinfo?: { info_kind?: string } }>)
    .map((l) => `${l.ifname} ${l.linkinfo?.info_kind ?? '-'} ${l.address ?? '-'} ${l.mtu ?? '-'}`);
  const qdiscs = sh('tc', ['-n', ns, 'qdisc', 'show']).trim().split('\n').filter(Boolean);
  const filters = links.flatMap((l) => {
    const dev = l.split(' ')[0]!;
    try {
      return sh('tc', ['-n', ns, 'filter', 'show', 'dev', dev, 'ingress']).trim().split('\n').filter(Boolean).map((f) => `${dev}: ${f}`);
    } catch {
      return [];
    }
  });
  return { links, qdiscs, filters };
}

export interface PodWithPeer {
  pod: string;
  peer: string;
  podPath: string;
  /** Stops the peer's server and deletes both namespaces. */
  remove(): void;
}

export interface PodWithPeerOptions {
  suffix: string;
  podMac: string;
  mtu: number;
  pod4: string;
  peer4: string;
  pod6: string;
  peer6: string;
  prefix4: number;
  prefix6: number;
  /** busybox httpd in the peer namespace serves this directory on port 8080. */
  peerWww: string;
  peerPage: string;
}

/** A pod namespace (eth0: the pod's addresses, default routes via the peer) and a peer namespace serving a page. */
export function podWithPeer(o: PodWithPeerOptions): PodWithPeer {
  const pod = `hullt-pod-${o.suffix}`;
  const peer = `hullt-peer-${o.suffix}`;
  let server: ChildProcess | undefined;
  const remove = (): void => {
    server?.kill('SIGKILL');
    for (const ns of [pod, peer]) {
      try {
        sh('ip', ['netns', 'del', ns]);
      } catch {
        // not made
      }
    }
  };
  try {
    sh('ip', ['netns', 'add', pod]);
    sh('ip', ['netns', 'add', peer]);
    ipIn(pod, ['link', 'add', 'name', 'eth0', 'address', o.podMac, 'mtu', String(o.mtu), 'type', 'veth', 'peer', 'name', 'veth0', 'netns', peer]);
    for (const [ns, dev, a4, a6] of [[pod, 'eth0', o.pod4, o.pod6], [peer, 'veth0', o.peer4, o.peer6]] as const) {
      ipIn(ns, ['link', 'set', 'lo', 'up']);
      ipIn(ns, ['link', 'set', dev, 'mtu', String(o.mtu), 'up']);
      ipIn(ns, ['addr', 'add', `${a4}/${o.prefix4}`, 'dev', dev]);
      ipIn(ns, ['addr', 'add', `${a6}/${o.prefix6}`, 'dev', dev, 'nodad']);
    }
    ipIn(pod, ['route', 'add', 'default', 'via', o.peer4]);
    ipIn(pod, ['-6', 'route', 'add', 'default', 'via', o.peer6]);
    mkdirSync(o.peerWww, { recursive: true });
    writeFileSync(path.join(o.peerWww, 'index.html'), o.peerPage);
    server = spawn('ip', ['netns', 'exec', peer, 'busybox', 'httpd', '-f', '-p', '8080', '-h', o.peerWww], { stdio: 'ignore' });
  } catch (err) {
    remove();
    throw err;
  }
  return { pod, peer, podPath: `/run/netns/${pod}`, remove };
}

/**
 * busybox wget run in namespace `ns`, bounded in tries and time (each try 5 s: busybox 1.35's own `wget -T`
 * segfaults); its output, or the last error.
 */
export async function fetchIn(ns: string, url: string, tries = 20): Promise<string> {
  let last = '';
  for (let i = 0; i < tries; i++) {
    try {
      return sh('ip', ['netns', 'exec', ns, 'busybox', 'wget', '-q', '-O', '-', url], 5000);
    } catch (err) {
      last = (err as { stderr?: string }).stderr ?? String(err);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new Error(`wget ${url} in ${ns} failed ${tries} times: ${last}`);
}
