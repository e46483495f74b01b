// The pod's record on disk (<pod dir>/pod.json): the shim's pid, the VM's processes and the host mounts, written
// before each resource exists, so the `delete` command can clean up after a shim that died (SIGKILL, OOM).
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../../hypervisor/atomic-write.js';
import { readSandboxFields, type SandboxRecord } from '../sandbox/record.js';
import { withLockFile } from '../lock-file.js';

/** The containerd front end's record (pod.json): the shim, the pod's containers, and the sandbox record. */
export interface PodRecord extends SandboxRecord {
  shimPid: number;
  shimStartTime?: number;
  namespace: string;
  groupId: string;
  /** Containers with their bundles (whose rootfs the shim may have mounted). */
  containers: Array<{ id: string; bundle: string }>;
}

export const POD_RECORD = 'pod.json';

export function readPodRecord(dir: string): PodRecord | undefined {
  const file = path.join(dir, POD_RECORD);
  let record: PodRecord;
  try {
    record = JSON.parse(readFileSync(file, 'utf8')) as PodRecord;
  } catch {
    return undefined;
  }
  return readSandboxFields(record, file);
}

export function writePodRecord(dir: string, record: PodRecord): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileAtomic(path.join(dir, POD_RECORD), JSON.stringify(record, null, 2), 0o600);
}

/**
 * Runs `fn` holding `<pod dir>.lock`, for the `delete` commands: containerd runs one per container of a dead shim, all
 * at once, and each one's read-modify-write of the record would otherwise lose the others'. The lock sits beside the
 * pod dir, so the last delete can remove the dir while holding it.
 */
export function withPodRecordLock<T>(dir: string, fn: () => T): T {
  return withLockFile(`${dir}.lock`, `pod record ${dir}`, fn);
}

/** Read-modify-write; only the shim daemon writes while it lives, so no lock is needed. */
export function updatePodRecord(dir: string, change: (r: PodRecord) => void): PodRecord {
  const r = readPodRecord(dir) ?? { shimPid: 0, namespace: '', groupId: '', vm: {}, mounts: [], containers: [] };
  change(r);
  writePodRecord(dir, r);
  return r;
}
