// The host's cgroup hierarchies as this process sees them: from /proc/self/mountinfo (where each is mounted, which
// controllers it has) and /proc/self/cgroup (our own cgroup in each). Three layouts exist: v1 (one hierarchy per
// controller or group of controllers: memory, cpu,cpuacct, pids, … and name=systemd), hybrid (v1 plus an empty v2
// "unified" mount, as on these machines), and pure v2 (one cgroup2 mount whose cgroup.controllers lists them). The
// parsers take text, so tests can describe any host; detectHierarchies() reads this one.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { HullError } from '../../errors.js';

export interface Hierarchy {
  /** Where it is mounted, e.g. /sys/fs/cgroup/memory or /sys/fs/cgroup (pure v2). */
  mount: string;
  version: 1 | 2;
  /** v1: the controllers of the mount (`name=systemd` for a named one); v2: what its root's cgroup.controllers lists. */
  controllers: string[];
  /** This process's cgroup in it, relative to the mount's root ("/" at the top). */
  own: string;
}

/** The v1 controllers the kernel knows; other super options of a cgroup mount are mount options. */
const V1_CONTROLLERS = new Set([
  'cpuset', 'cpu', 'cpuacct', 'blkio', 'io', 'memory', 'devices', 'freezer', 'net_cls', 'net_prio', 'perf_event',
  'hugetlb', 'pids', 'rdma', 'misc',
]);

interface CgroupMount {
  mount: string;
  /** The mount's root inside its hierarchy ("/" unless a sub-tree was bind-mounted). */
  root: string;
  version: 1 | 2;
  controllers: string[];
}

/** Unescapes mountinfo's octal escapes (\040 for a space). */
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** The cgroup mounts in mountinfo text, the first of each hierarchy. */
export function parseCgroupMounts(mountinfo: string): CgroupMount[] {
  const found: CgroupMount[] = [];
  const seen = new Set<string>();
  for (const line of mountinfo.split('\n')) {
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const fields = line.slice(0, dash).split(' ');
    const [fstype, , superOptions = ''] = line.slice(dash + 3).split(' ');
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    const root = unescape(fields[3] ?? '/');
    const mount = unescape(fields[4] ?? '');
    if (!mount.startsWith('/')) continue;
    const version = fstype === 'cgroup2' ? 2 : 1;
    const controllers =
      version === 2 ? [] : superOptions.split(',').filter((o) => V1_CONTROLLERS.has(o) || o.startsWith('name='));
    if (version === 1 && controllers.length === 0) continue;
    const key = version === 2 ? 'v2' : [...controllers].sort().join(',');
    if (seen.has(key)) continue;
    seen.add(key);
    found.push({ mount, root, version, controllers });
  }
  return found;
}

/** /proc/self/cgroup text → our cgroup path by hierarchy key (sorted controller list; "v2" for the unified one). */
export function parseOwnCgroups(procCgroup: string): Map<string, string> {
  const own = new Map<string, string>();
  for (const line of procCgroup.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const [, id, list = '', cgPath = '/'] = m;
    const key = id === '0' && list === '' ? 'v2' : list.split(',').sort().join(',');
    own.set(key, cgPath);
  }
  return own;
}

/**
 * The hierarchies a sandbox's cgroup goes into: every v1 hierarchy and the v2 one (on a hybrid host the processes join
 * it too, as runc and systemd do). `v2Controllers` reads a v2 mount's cgroup.controllers (tests pass a fake).
 */
export function hierarchiesFrom(mountinfo: string, procCgroup: string, v2Controllers: (mount: string) => string[]): Hierarchy[] {
  const own = parseOwnCgroups(procCgroup);
  const out: Hierarchy[] = [];
  for (const m of parseCgroupMounts(mountinfo)) {
    const key = m.version === 2 ? 'v2' : [...m.controllers].sort().join(',');
    const ownPath = own.get(key);
    if (ownPath === undefined) continue; // mounted, but not a hierarchy of our namespace's view
    const rel = m.root === '/' ? ownPath : ownPath === m.root ? '/' : ownPath.startsWith(`${m.root}/`) ? ownPath.slice(m.root.length) : undefined;
    if (rel === undefined) continue; // our cgroup is outside what this mount shows
    out.push({
      mount: m.mount,
      version: m.version,
      controllers: m.version === 2 ? v2Controllers(m.mount) : m.controllers,
      own: path.posix.normalize(rel),
    });
  }
  return out;
}

/** This host's hierarchies; fails when there is none (no cgroupfs mounted). */
export function detectHierarchies(): Hierarchy[] {
  const found = hierarchiesFrom(readFileSync('/proc/self/mountinfo', 'utf8'), readFileSync('/proc/self/cgroup', 'utf8'), (mount) =>
    readFileSync(path.join(mount, 'cgroup.controllers'), 'utf8').split(/\s+/).filter(Boolean),
  );
  if (found.length === 0) throw new HullError('failed-precondition', 'no cgroup hierarchy is mounted on this host (/proc/self/mountinfo lists none)');
  return found;
}

/** The layout, for messages and logs. */
export function layoutOf(hierarchies: Hierarchy[]): 'v1' | 'hybrid' | 'v2' {
  const v1 = hierarchies.some((h) => h.version === 1);
  const v2 = hierarchies.some((h) => h.version === 2);
  return v1 && v2 ? 'hybrid' : v1 ? 'v1' : 'v2';
}

/** The hierarchy that holds controller `name` (v1: the mount that has it; v2: the unified one when it lists it). */
export function hierarchyWith(hierarchies: Hierarchy[], name: string): Hierarchy | undefined {
  return hierarchies.find((h) => h.controllers.includes(name));
}
