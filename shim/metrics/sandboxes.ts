// Which sandboxes a host has, found from their records alone: the runc CLI's state dirs under its root
// (<root>/<id>/state.json, shim/runc/state.ts) and the containerd shims' pod dirs (<containerd root>/<digest>/pod.json,
// shim/containerd/record.ts). A directory without a record is not a sandbox (yet, or any more): the pool's and the
// containerd root's own directories sit under the default root, and a `create` writes its dir before its record.
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { readPodRecord } from '../containerd/record.js';
import { errorKind, oneLine } from '../errors.js';
import { listIds, readState, sandboxDir } from '../runc/state.js';
import type { SandboxRecord } from '../sandbox/record.js';

export type SandboxKind = 'runc' | 'containerd';

export interface FoundSandbox {
  kind: SandboxKind;
  /** The root it was found under (a label of its series). */
  root: string;
  /** The container id (runc) or the pod's grouping id (containerd). */
  id: string;
  dir: string;
  record: SandboxRecord;
  /** The ids of its containers in the guest: the runc container itself, or the pod's. */
  containers: string[];
}

/** A record that exists but cannot be read: counted, so a scrape says so without failing. */
export interface UnreadableRecord {
  root: string;
  dir: string;
  error: string;
}

export interface SandboxScan {
  sandboxes: FoundSandbox[];
  unreadable: UnreadableRecord[];
}

/** The runc CLI's sandboxes under `root`. */
export function scanRuncRoot(root: string, into: SandboxScan): void {
  for (const id of listIds(root)) {
    try {
      const state = readState(root, id);
      into.sandboxes.push({ kind: 'runc', root, id, dir: sandboxDir(root, id), record: state, containers: [state.id] });
    } catch (err) {
      if (errorKind(err) === 'not-found') continue; // no state.json: not a container's directory
      into.unreadable.push({ root, dir: sandboxDir(root, id), error: oneLine(err) });
    }
  }
}

/** The containerd shims' pods under `root` (HULL_CONTAINERD_ROOT's directory); none when it does not exist. */
export function scanContainerdRoot(root: string, into: SandboxScan): void {
  let names: string[];
  try {
    names = readdirSync(root, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const name of names) {
    const dir = path.join(root, name);
    try {
      const pod = readPodRecord(dir);
      if (!pod) continue; // no pod.json (readPodRecord cannot tell a half-written one apart): not a pod yet
      const containers = (Array.isArray(pod.containers) ? pod.containers : []).map((c) => c.id);
      into.sandboxes.push({ kind: 'containerd', root, id: pod.groupId || name, dir, record: pod, containers });
    } catch (err) {
      into.unreadable.push({ root, dir, error: oneLine(err) });
    }
  }
}
