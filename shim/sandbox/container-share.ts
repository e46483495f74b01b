// One container's part of the sandbox's share: its root and the host sources its spec binds, each on record before
// it is mounted. Used before boot (the first container) and after (later containers of a pod), so the two paths
// cannot drift apart.
import { rmSync } from 'node:fs';
import { HullError, oneLine } from '../errors.js';
import { bindMount, unmount, unmountAllUnder } from './host-mounts.js';
import { containerShare, guestRootfs, rootfsTarget, sharedDir } from './paths.js';
import type { SandboxRecordStore } from './record.js';
import { mountHostBinds, type HostBind } from './share-mounts.js';

/** Shares a container into sandbox `dir`; undoes its own work when a step fails. Returns the root's guest path. */
export function shareContainer(dir: string, store: SandboxRecordStore, containerId: string, hostRootfs: string, binds: HostBind[]): string {
  const target = rootfsTarget(dir, containerId);
  store.update((r) => void r.mounts.push(target));
  try {
    bindMount(hostRootfs, target);
    mountHostBinds(dir, containerId, binds, (targets) => store.update((r) => void r.mounts.push(...targets)));
  } catch (err) {
    try {
      unshareContainer(dir, store, containerId);
    } catch (cleanup) {
      throw new HullError('internal', `${oneLine(err)}; undoing its mounts failed too: ${oneLine(cleanup)}`, { cause: err });
    }
    throw err;
  }
  return guestRootfs(containerId);
}

/** Unmounts and removes a container's part of the share, recorded or not, then drops its mounts from the record. */
export function unshareContainer(dir: string, store: SandboxRecordStore, containerId: string): void {
  const share = releaseContainerShare(dir, containerId);
  store.update((r) => void (r.mounts = r.mounts.filter((m) => m !== share && !m.startsWith(`${share}/`))));
}

/** Removes one container's part of the share, recorded or not; returns the directory it removed. */
export function releaseContainerShare(dir: string, containerId: string): string {
  const share = containerShare(dir, containerId);
  unmountAllUnder(share);
  rmSync(share, { recursive: true, force: true });
  return share;
}

/**
 * Removes the host side of a sandbox's share: each recorded mount, then whatever else is still mounted below the
 * share (never deleted through), then the directories.
 */
export function releaseShare(dir: string, mounts: string[]): void {
  for (const target of mounts) unmount(target);
  const shared = sharedDir(dir);
  unmountAllUnder(shared);
  rmSync(shared, { recursive: true, force: true });
}
