// What the OCI spec asks of the container's network, decided before anything exists:
//  - a `network` namespace with a path (CNI through containerd, podman's network, another container's): that
//    namespace's interfaces reach the VM;
//  - a `network` entry without a path: a namespace of its own (hull makes one; loopback only unless a hook adds
//    interfaces to it, as Docker's prestart hook does);
//  - no `network` entry: the host's network. A VM cannot join the host's network stack, so that is refused.
import { statSync, type Stats } from 'node:fs';
import { checkNetns } from '../../../native/addon/index.js';
import { invalidArgument } from '../../errors.js';
import type { OciSpec } from '../../oci-spec.js';

export type SpecNetwork = { kind: 'path'; path: string } | { kind: 'new' };

const CANNOT_JOIN_HOST = 'a container in a VM cannot join the host network; give it a network namespace of its own';

export const HOST_NETWORK_REFUSAL =
  `the spec keeps the host network namespace (no "network" entry in linux.namespaces, e.g. --network host): ${CANNOT_JOIN_HOST}`;

export function specNetwork(spec: Pick<OciSpec, 'linux'>): SpecNetwork {
  const entry = spec.linux?.namespaces?.find((n) => n.type === 'network');
  if (!entry) throw invalidArgument(HOST_NETWORK_REFUSAL);
  if (entry.path === undefined || entry.path === '') return { kind: 'new' };
  if (typeof entry.path !== 'string' || !entry.path.startsWith('/')) {
    throw invalidArgument(`linux.namespaces network path ${JSON.stringify(entry.path)} is not an absolute path`);
  }
  return { kind: 'path', path: entry.path };
}

/**
 * Throws one line naming the path unless it is a network namespace that exists and is not the host's: Docker's
 * `--network host` names the host's own namespace by path (<exec-root>/netns/default), and mirroring the host's
 * interfaces into a VM would hand it the host's traffic. "The host's" is this process's namespace (the runtime's:
 * call this before joining the container's) and that of PID 1.
 */
export function requireNetns(path: string): void {
  try {
    checkNetns(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw invalidArgument(`network namespace ${path} does not exist`);
    if (code === 'EINVAL') throw invalidArgument(`${path} is not a network namespace`);
    throw invalidArgument(`network namespace ${path} cannot be opened: ${(err as Error).message}`);
  }
  const target = statSync(path);
  for (const host of ['/proc/self/ns/net', '/proc/1/ns/net']) {
    const h = statQuietly(host);
    if (h && h.ino === target.ino && h.dev === target.dev) throw invalidArgument(`network namespace ${path} is the host's (e.g. --network host): ${CANNOT_JOIN_HOST}`);
  }
}

/** stat(2), or undefined when the path is gone or unreadable (PID 1's namespace may be closed to us). */
export function statQuietly(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}
