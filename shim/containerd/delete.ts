// `containerd-shim-hull-v2 … delete`: containerd runs it when it cannot reach the shim (it died, or `start`
// failed). It cleans up what the pod record says the dead shim left for this container — the VM and its helpers,
// the share mounts (its root and host bind sources), <bundle>/rootfs — and prints a protobuf DeleteResponse (exit
// 137, now) on stdout.
import { rmSync } from 'node:fs';
import path from 'node:path';
import { isAlive } from '../../hypervisor/process.js';
import { oneLine } from '../errors.js';
import { releaseContainerShare, releaseShare } from '../sandbox/container-share.js';
import type { SandboxRecordStore } from '../sandbox/record.js';
import { releaseSandbox, removeSandboxDirectory } from '../sandbox/teardown.js';
import { groupIdForBundle, sandboxDirFor, socketAddress, socketPath } from './address.js';
import type { ShimFlags } from './flags.js';
import { encode, toTimestamp } from './protos.js';
import { readPodRecord, withPodRecordLock, writePodRecord } from './record.js';
import { hostRootfsMounter } from './rootfs-mount.js';

export const DELETE_EXIT_STATUS = 137;

export interface DeleteResult {
  response: Buffer;
  warnings: string[];
}

export async function deleteShim(flags: ShimFlags, root: string): Promise<DeleteResult> {
  const warnings: string[] = [];
  const bundle = flags.bundle || process.cwd();
  const groupId = groupIdForBundle(bundle, flags.id);
  const dir = sandboxDirFor(root, flags.namespace, groupId);
  const record = readPodRecord(dir);
  const shimAlive =
    record !== undefined &&
    record.shimPid > 0 &&
    record.shimPid !== process.pid &&
    isAlive(record.shimStartTime === undefined ? { pid: record.shimPid } : { pid: record.shimPid, startTime: record.shimStartTime });

  if (record && !shimAlive) {
    // The shim is gone: nothing else can use this pod's VM any more. The one teardown ends it from the record — the
    // VM, its taps, every share mount; the deletes of the pod's other containers, running at once, find less to do.
    try {
      await releaseSandbox(dir, lockedPodRecordStore(dir));
    } catch (err) {
      warnings.push(`ending pod ${groupId}: ${oneLine(err)}`);
    }
  } else {
    // The live shim owns the record; only this container's part of the share goes (recorded or not).
    try {
      releaseContainerShare(dir, flags.id);
    } catch (err) {
      warnings.push(`unmounting the share of ${flags.id}: ${oneLine(err)}`);
    }
  }
  try {
    hostRootfsMounter.unmount(path.join(bundle, 'rootfs'));
  } catch (err) {
    warnings.push(`unmounting ${bundle}/rootfs: ${oneLine(err)}`);
  }
  if (!shimAlive) {
    // The dead shim's socket file stays behind (it could not remove it); a later `start` would replace it anyway.
    try {
      rmSync(socketPath(socketAddress(flags.address, flags.namespace, groupId)), { force: true });
    } catch (err) {
      warnings.push(`removing the shim socket: ${oneLine(err)}`);
    }
  }
  if (record && !shimAlive) {
    // The deletes of the pod's other containers run at the same time: re-read the record under the lock.
    try {
      withPodRecordLock(dir, () => {
        const current = readPodRecord(dir);
        if (!current) return; // another delete removed the pod
        current.containers = current.containers.filter((c) => c.id !== flags.id);
        if (current.containers.length === 0) {
          try {
            releaseShare(dir, current.mounts);
            removeSandboxDirectory(dir);
          } catch (err) {
            warnings.push(`removing ${dir}: ${oneLine(err)}`);
          }
        } else {
          writePodRecord(dir, current);
        }
      });
    } catch (err) {
      warnings.push(`updating the record of pod ${groupId}: ${oneLine(err)}`);
    }
  }
  const response = encode('containerd.task.v2.DeleteResponse', {
    pid: 0,
    exitStatus: DELETE_EXIT_STATUS,
    exitedAt: toTimestamp(new Date()),
  });
  return { response, warnings };
}

/**
 * The sandbox record inside pod.json for the `delete` commands, which run at once, one per container: each update
 * holds the pod record's lock, and none recreates a record another delete removed.
 */
function lockedPodRecordStore(dir: string): SandboxRecordStore {
  return {
    read: () => readPodRecord(dir),
    update: (change) =>
      withPodRecordLock(dir, () => {
        const current = readPodRecord(dir);
        if (!current) return;
        change(current);
        writePodRecord(dir, current);
      }),
  };
}
