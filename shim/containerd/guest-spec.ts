// The OCI spec as the guest agent receives it. Every container of a pod runs in the pod's one VM, and the task pid
// the shim reports for each of them is a host pid that stands for the pod: its VMM's (as Kata reports its
// hypervisor's). So a CRI namespace path `/proc/<pid>/ns/<type>` whose pid is that VMM pid names the namespace of the
// container CRI means — the pod's sandbox container, whose pid CRI writes into every app container's spec — and is
// rewritten to `/proc/<guest pid of that container's init>/ns/<type>`, which the agent joins (after its own checks).
// Any other path (some other host process) means nothing in the guest: it is dropped, so the container gets a fresh
// namespace there. The network path (the sandbox's host netns `/var/run/netns/cni-…`) is dropped too: its
// interfaces reach the VM (shim/sandbox/network/), and the pod's containers share the guest's network.

/** The file under /proc/<pid>/ns/ that stands for each OCI namespace type. */
const NS_FILE: Readonly<Record<string, string>> = {
  pid: 'pid',
  ipc: 'ipc',
  uts: 'uts',
  cgroup: 'cgroup',
  mount: 'mnt',
  network: 'net',
  user: 'user',
  time: 'time',
};

const PROC_NS_PATH = /^\/proc\/([1-9][0-9]{0,9})\/ns\/([a-z_]+)$/;

export interface GuestSpec {
  specJson: string;
  /** One line each, for the shim log: every namespace path that was dropped, and what the container gets instead. */
  notes: string[];
}

interface NamespaceEntry {
  type?: unknown;
  path?: unknown;
}

/** Whose namespaces a path naming the pod's host pid stands for. */
export interface NamespaceTarget {
  /** The host pid the shim reports for the pod's tasks (the VMM's). */
  hostPid: number;
  /** The guest pid of the init of the container CRI means (the sandbox container's), alive. */
  guestPid: number;
}

/**
 * `target`: the pod's host pid and the guest init it stands for; undefined when the pod has no live container yet
 * (every path is then dropped). A spec without namespace paths is returned byte-identical.
 */
export function adaptSpecForGuest(specJson: string, target: NamespaceTarget | undefined): GuestSpec {
  const spec = JSON.parse(specJson) as { linux?: { namespaces?: unknown } };
  const nss = spec.linux?.namespaces;
  if (!Array.isArray(nss) || !nss.some((n) => hasPath(n))) return { specJson, notes: [] };
  const notes: string[] = [];
  spec.linux!.namespaces = nss.map((n: unknown, i: number) => {
    if (!hasPath(n)) return n;
    const type = String(n.type);
    const at = `linux.namespaces[${i}] (${type})`;
    if (type === 'network') {
      notes.push(`${at}: path ${n.path} dropped: the pod's containers share the guest's network, which the pod namespace's interfaces were given to at boot`);
      return withoutPath(n);
    }
    const guestPath = target ? guestNamespacePath(n.path, type, target) : undefined;
    if (guestPath !== undefined) return { ...n, path: guestPath };
    notes.push(`${at}: path ${n.path} is not a namespace of a live container of this pod: dropped, the container gets a new ${type} namespace in the guest`);
    return withoutPath(n);
  });
  return { specJson: JSON.stringify(spec), notes };
}

function hasPath(n: unknown): n is NamespaceEntry & { path: string } {
  return typeof n === 'object' && n !== null && typeof (n as NamespaceEntry).path === 'string' && (n as NamespaceEntry).path !== '';
}

function withoutPath(n: NamespaceEntry): NamespaceEntry {
  const { path: _dropped, ...rest } = n;
  return rest;
}

/** `/proc/<host pid>/ns/<file of type>` → the same file of the target's guest init; undefined for any other path. */
function guestNamespacePath(nsPath: string, type: string, target: NamespaceTarget): string | undefined {
  const m = PROC_NS_PATH.exec(nsPath);
  const file = NS_FILE[type];
  if (!m || file === undefined || m[2] !== file || Number(m[1]) !== target.hostPid) return undefined;
  return `/proc/${target.guestPid}/ns/${file}`;
}
