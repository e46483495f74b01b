// Where a shim listens. Containers of one pod share a shim (and so a VM): the grouping id is the CRI sandbox id when
// the bundle has one, else the container id. The socket is unix:///run/containerd/s/<sha256 hex of
// address/namespace/group>, the scheme containerd's own shims use, and always fits in sun_path (106 bytes).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';

export const SOCKET_DIR = '/run/containerd/s';
export const SANDBOX_ID_ANNOTATION = 'io.kubernetes.cri.sandbox-id';
export const GROUP_ANNOTATION = 'io.containerd.hull.v2.group';
const MAX_SOCKET_PATH = 106;

export function groupIdFrom(annotations: Record<string, string> | undefined, id: string): string {
  return annotations?.[GROUP_ANNOTATION] || annotations?.[SANDBOX_ID_ANNOTATION] || id;
}

/** The grouping id for the bundle in `bundleDir` (its config.json annotations); the id when there is none. */
export function groupIdForBundle(bundleDir: string, id: string): string {
  try {
    const spec = JSON.parse(readFileSync(path.join(bundleDir, 'config.json'), 'utf8')) as { annotations?: Record<string, string> };
    return groupIdFrom(spec.annotations, id);
  } catch {
    return id;
  }
}

export function socketAddress(containerdAddress: string, namespace: string, groupId: string, dir = SOCKET_DIR): string {
  // path.join like Go's filepath.Join: cleans doubled or trailing slashes.
  const digest = createHash('sha256').update(path.join(containerdAddress, namespace, groupId)).digest('hex');
  const socketPath = path.join(dir, digest);
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
    throw new Error(`shim socket path ${socketPath} is longer than ${MAX_SOCKET_PATH} bytes`);
  }
  return `unix://${socketPath}`;
}

/** The filesystem path of a unix:// address; abstract sockets (no scheme) are not used by hull. */
export function socketPath(address: string): string {
  if (!address.startsWith('unix://')) throw new Error(`shim address ${address} is not a unix:// socket`);
  return address.slice('unix://'.length);
}

/** Host directory of a pod's VM: short, so the VM's socket paths stay within sun_path. */
export function sandboxDirFor(root: string, namespace: string, groupId: string): string {
  const digest = createHash('sha256').update(`${namespace}/${groupId}`).digest('hex').slice(0, 20);
  return path.join(root, digest);
}

export const DEFAULT_HULL_CONTAINERD_ROOT = '/run/hull/containerd';

/** Where the shims keep their pod directories (HULL_CONTAINERD_ROOT overrides). */
export function hullContainerdRoot(): string {
  return process.env.HULL_CONTAINERD_ROOT || DEFAULT_HULL_CONTAINERD_ROOT;
}

/** The fd on which a starting daemon tells `start` it serves (its value: the fd number). */
export const READY_FD_ENV = 'HULL_SHIM_READY_FD';
