// The host network state that a network test must leave as it found it: iptables (v4 and v6), ip_forward, links,
// network namespace files; a snapshot of it, the difference between two snapshots, and the removal of what CNI's
// portmap plugin leaves behind after its last DEL (its CNI-HOSTPORT-* chains and the jumps to them).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';

/** A failed host command, with its stderr. */
export class HostCommandError extends Error {
  constructor(command: string, detail: string) {
    super(`${command}: ${detail}`);
    this.name = 'HostCommandError';
  }
}

export interface HostNetSnapshot {
  /** iptables-save lines per family, without comments and counters. */
  iptables: { v4: string[]; v6: string[] };
  ipForward: { v4: string; v6: string };
  links: string[];
  netnsFiles: string[];
  netnsDirExisted: boolean;
}

const NETNS_DIR = '/run/netns';

function run(command: string, args: string[], input?: string): string {
  const r = spawnSync(command, args, { encoding: 'utf8', input });
  if (r.error) throw new HostCommandError(command, r.error.message);
  if (r.status !== 0) throw new HostCommandError(`${command} ${args.join(' ')}`, r.stderr.trim() || `exit ${r.status}`);
  return r.stdout;
}

/** `iptables-save` output as comparable lines: no comments, no packet counters. */
export function iptablesLines(family: 'v4' | 'v6'): string[] {
  const out = run(family === 'v4' ? 'iptables-save' : 'ip6tables-save', []);
  return out
    .split('\n')
    .filter((l) => l.length > 0 && !l.startsWith('#'))
    .map((l) => l.replace(/ \[\d+:\d+\]$/, ''));
}

const BUILTIN_CHAIN = /^:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ACCEPT$/;

/** Drops tables that hold nothing but empty built-in chains with an ACCEPT policy: such a table is the same as no
 *  table (iptables-nft creates one on first use and never removes it). */
export function withoutEmptyTables(lines: string[]): string[] {
  const out: string[] = [];
  let table: string[] = [];
  for (const l of lines) {
    if (l.startsWith('*')) table = [l];
    else if (l === 'COMMIT') {
      table.push(l);
      const meaningful = table.filter((t) => !t.startsWith('*') && t !== 'COMMIT' && !BUILTIN_CHAIN.test(t));
      if (meaningful.length > 0) out.push(...table);
      table = [];
    } else table.push(l);
  }
  return out;
}

const readSysctl = (file: string): string => readFileSync(file, 'utf8').trim();

export function links(): string[] {
  return run('ip', ['-o', 'link', 'show'])
    .split('\n')
    .map((l) => l.split(': ')[1]?.split('@')[0] ?? '')
    .filter(Boolean);
}

export function snapshotHostNet(): HostNetSnapshot {
  return {
    iptables: { v4: iptablesLines('v4'), v6: iptablesLines('v6') },
    ipForward: {
      v4: readSysctl('/proc/sys/net/ipv4/ip_forward'),
      v6: readSysctl('/proc/sys/net/ipv6/conf/all/forwarding'),
    },
    links: links(),
    netnsFiles: existsSync(NETNS_DIR) ? readdirSync(NETNS_DIR) : [],
    netnsDirExisted: existsSync(NETNS_DIR),
  };
}

/** iptables lines present now but not in `before`, per family, ignoring empty tables. Only lines for which `ours`
 *  holds count: other engineers' suites (Docker's daemon, say) may change the tables while we run. */
export function addedIptablesLines(before: HostNetSnapshot, ours: (line: string) => boolean): string[] {
  const added: string[] = [];
  for (const family of ['v4', 'v6'] as const) {
    const was = new Set(withoutEmptyTables(before.iptables[family]));
    for (const l of withoutEmptyTables(iptablesLines(family))) {
      if (!was.has(l) && !l.startsWith('*') && l !== 'COMMIT' && !BUILTIN_CHAIN.test(l) && ours(l)) added.push(`${family} ${l}`);
    }
  }
  return added;
}

const PORTMAP_CHAIN = /CNI-HOSTPORT-[A-Z]+/;

/**
 * Removes the chains that CNI's portmap plugin creates on first use and keeps after its last DEL (CNI-HOSTPORT-DNAT,
 * -SETMARK, -MASQ and the jumps to them), when they were not there before the test and hold nothing but what portmap
 * put there for itself. If some container's CNI-DN-* chain still hangs off them, they are left alone. Then, with
 * iptables-nft, a nat table that did not exist before and is empty again is deleted.
 */
export function removePortmapChains(before: HostNetSnapshot): void {
  for (const family of ['v4', 'v6'] as const) {
    const now = iptablesLines(family);
    const was = new Set(before.iptables[family]);
    let table = '';
    const del: string[] = [];
    const chains: string[] = [];
    let busy = false;
    for (const l of now) {
      if (l.startsWith('*')) table = l.slice(1);
      if (table !== 'nat' || was.has(l)) continue;
      const chain = /^:(CNI-HOSTPORT-[A-Z]+) /.exec(l);
      if (chain) chains.push(chain[1]!);
      if (!l.startsWith('-A ')) continue;
      if (/-j CNI-DN-/.test(l)) busy = true;
      else if (PORTMAP_CHAIN.test(l)) del.push(`-D ${l.slice(3)}`);
    }
    if (busy) continue;
    if (del.length > 0 || chains.length > 0) {
      const script = ['*nat', ...del, ...chains.map((c) => `-X ${c}`), 'COMMIT', ''].join('\n');
      run(family === 'v4' ? 'iptables-restore' : 'ip6tables-restore', ['--noflush'], script);
    }
    const natWasThere = before.iptables[family].includes('*nat');
    if (!natWasThere && withoutEmptyTables(iptablesLines(family)).every((l) => l !== '*nat') && nftBacked()) {
      const nft = spawnSync('nft', ['delete', 'table', family === 'v4' ? 'ip' : 'ip6', 'nat'], { encoding: 'utf8' });
      if (nft.error === undefined && nft.status !== 0 && !/No such file/.test(nft.stderr)) {
        throw new HostCommandError('nft delete table nat', nft.stderr.trim());
      }
    }
  }
}

/** Whether iptables here is the nf_tables flavour (and `nft` is on PATH), so a table can be deleted again. */
function nftBacked(): boolean {
  if (spawnSync('sh', ['-c', 'command -v nft']).status !== 0) return false;
  return execFileSync('iptables', ['-V'], { encoding: 'utf8' }).includes('nf_tables');
}
