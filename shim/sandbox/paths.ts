// Where a sandbox's share lives, on the host (below the sandbox directory) and in the guest (virtio-fs mount), and the
// guest vsock port of its agent. One container's part of the share is <share>/<container id>/: its root at rootfs/,
// the host source of its spec's mounts[n] at mounts/<n>/.
import path from 'node:path';

export const AGENT_PORT = 1024;

/** Guest path of the virtio-fs share. */
export const GUEST_SHARED_DIR = '/run/hull/shared';
export const guestRootfs = (containerId: string): string => `${GUEST_SHARED_DIR}/${containerId}/rootfs`;
/** Guest path of the host bind source that a container's spec mounts[n] names (see share-mounts.ts). */
export const guestHostMount = (containerId: string, n: number): string => `${GUEST_SHARED_DIR}/${containerId}/mounts/${n}`;

/** The host directory exported to the guest over virtio-fs. */
export const sharedDir = (dir: string): string => path.join(dir, 'shared');
/** One container's directory in the share: its rootfs and its host bind sources are mounted below it. */
export const containerShare = (dir: string, containerId: string): string => path.join(sharedDir(dir), containerId);
/** Where a container's rootfs is bind-mounted inside the share (recorded before the mount is made). */
export const rootfsTarget = (dir: string, containerId: string): string => path.join(containerShare(dir, containerId), 'rootfs');
/** Where the host source of the container's spec mounts[n] is bind-mounted inside the share. */
export const hostMountTarget = (dir: string, containerId: string, n: number): string =>
  path.join(containerShare(dir, containerId), 'mounts', String(n));

/** The hull CLI's default --root: state directories of its containers, and the root the shim's pool serves. */
export const DEFAULT_ROOT = '/run/hull';
