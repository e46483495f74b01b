// The OCI spec as the guest agent receives it. Every container of a pod runs in the pod's one VM and the task pids
// the shim reports are guest pids, so a CRI namespace path `/proc/<pid>/ns/<type>` whose pid is a live container init
// of this pod names that container's namespace inside the guest: it is kept, and the agent joins it (after its own
// checks). Any other path (some host process) means nothing in the guest: it is dropped, so the container gets a
// fresh namespace there. The network path (the sandbox's host netns `/var/run/netns/cni-…`) is dropped too: its
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

/**
 * `liveInitPids`: guest pids of this pod's container inits that have not exited. A spec without namespace paths is
 * returned byte-identical.
 */
export function adaptSpecForGuest(specJson: string, liveInitPids: ReadonlySet<number>): GuestSpec {
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
    if (namesLiveInit(n.path, type, liveInitPids)) return n;
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

/** `/proc/<pid>/ns/<file>` with the file of `type` and a pid in `liveInitPids`. */
function namesLiveInit(nsPath: string, type: string, liveInitPids: ReadonlySet<number>): boolean {
  const m = PROC_NS_PATH.exec(nsPath);
  if (!m || NS_FILE[type] === undefined || m[2] !== NS_FILE[type]) return false;
  return liveInitPids.has(Number(m[1]));
}
