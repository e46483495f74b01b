// What the OCI spec asks of the container's network, decided before anything exists:
//  - a `network` namespace with a path (CNI through containerd, podman's network, another container's): that
//    namespace's interfaces reach the VM;
//  - a `network` entry without a path: a namespace of its own (hull makes one; loopback only unless a hook adds
//    interfaces to it, as Docker's prestart hook does);
//  - no `network` entry: the host's network. A VM cannot join the host's network stack, so that is refused.
import { checkNetns } from '../../native/addon/index.js';
import { invalidArgument } from '../errors.js';
import type { OciSpec } from '../oci-spec.js';

export type SpecNetwork = { kind: 'path'; path: string } | { kind: 'new' };

export const HOST_NETWORK_REFUSAL =
  'the spec keeps the host network namespace (no "network" entry in linux.namespaces, e.g. --network host): ' +
  'a container in a VM cannot join the host network; give it a network namespace of its own';

export function specNetwork(spec: Pick<OciSpec, 'linux'>): SpecNetwork {
  const entry = spec.linux?.namespaces?.find((n) => n.type === 'network');
  if (!entry) throw invalidArgument(HOST_NETWORK_REFUSAL);
  if (entry.path === undefined || entry.path === '') return { kind: 'new' };
  if (typeof entry.path !== 'string' || !entry.path.startsWith('/')) {
    throw invalidArgument(`linux.namespaces network path ${JSON.stringify(entry.path)} is not an absolute path`);
  }
  return { kind: 'path', path: entry.path };
}

/** Throws one line naming the path unless it is a network namespace that exists. */
export function requireNetns(path: string): void {
  try {
    checkNetns(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw invalidArgument(`network namespace ${path} does not exist`);
    if (code === 'EINVAL') throw invalidArgument(`${path} is not a network namespace`);
    throw invalidArgument(`network namespace ${path} cannot be opened: ${(err as Error).message}`);
  }
}
