// Persistent state of one container/sandbox under <root>/<id>/. Lives longer than any single CLI call: `create` in
// one process, `start` in the next. Writes are atomic (temp file + rename) and read-modify-write cycles hold a
// per-sandbox lock so the monitor and a CLI call never lose each other's update.
import { mkdirSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../../hypervisor/atomic-write.js';
import { alreadyExists, HullError, notFound } from '../errors.js';
import { withLockFile } from '../lock-file.js';
import type { OciHooks } from '../hooks.js';
import type { RecordedProcess } from '../../hypervisor/process.js';
import { checkTransition, type ProcessStatus } from '../sandbox/process-state.js';
import { readSandboxFields, type SandboxRecord, type SandboxRecordStore } from '../sandbox/record.js';
import { removeSandboxDirectory } from '../sandbox/teardown.js';

/** The process lifecycle of shim/sandbox/process-state.ts, less paused: the runc front end has no pause command. */
export type ContainerStatus = Exclude<ProcessStatus, 'paused'>;

/** The runc front end's record (state.json): the OCI state, the monitor, the hooks, and the sandbox record. */
export interface ContainerState extends SandboxRecord {
  ociVersion: string;
  id: string;
  bundle: string;
  rootfs: string;
  status: ContainerStatus;
  /** Host pid that stands for the container: the monitor, which exits with the container's status. */
  pid: number;
  /** The monitor's start time (/proc/<pid>/stat), so a later call never mistakes a reused pid for it. */
  pidStartTime?: number;
  /** pid of the container's init inside the guest. */
  guestPid?: number;
  annotations: Record<string, string>;
  created: string;
  owner: string;
  exitStatus?: number;
  exitedAt?: string;
  /** Why the container stopped when it was not its own exit (VM died, boot failed). */
  stopReason?: string;
  /** The spec's hooks that run after create (config.json is read once, at create): shim/runc/lifecycle-hooks.ts. */
  hooks?: RecordedHooks;
}

/** startContainer (its timeouts bound the host's StartContainer call), poststart and poststop. */
export type RecordedHooks = Pick<OciHooks, 'startContainer' | 'poststart' | 'poststop'>;

const STATE_FILE = 'state.json';
const LOCK_FILE = 'state.lock';

export function sandboxDir(root: string, id: string): string {
  return path.join(root, id);
}

/** Creates the sandbox dir; a second create of the same id fails, which is how duplicates are detected. */
export function createSandboxDir(root: string, id: string): string {
  mkdirSync(root, { recursive: true, mode: 0o711 });
  const dir = sandboxDir(root, id);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw alreadyExists(`container ${id} already exists`);
    throw err;
  }
  return dir;
}

/** Removes the container's sandbox directory (shim/sandbox/teardown.ts removeSandboxDirectory). */
export function removeSandboxDir(root: string, id: string): void {
  removeSandboxDirectory(sandboxDir(root, id));
}

export function readState(root: string, id: string): ContainerState {
  let text: string;
  try {
    text = readFileSync(path.join(sandboxDir(root, id), STATE_FILE), 'utf8');
  } catch {
    throw notFound(`container ${id} does not exist`);
  }
  let state: ContainerState;
  try {
    state = JSON.parse(text) as ContainerState;
  } catch (err) {
    throw new HullError('internal', `state of container ${id} is corrupt: ${(err as Error).message}`);
  }
  return readSandboxFields(state, `state of container ${id}`);
}

export function writeState(root: string, state: ContainerState): void {
  writeFileAtomic(path.join(sandboxDir(root, state.id), STATE_FILE), JSON.stringify(state, null, 2), 0o600);
}

/** Read-modify-write under the sandbox lock. Returns the state written. */
export function updateState(root: string, id: string, change: (state: ContainerState) => void): ContainerState {
  return withLockFile(path.join(sandboxDir(root, id), LOCK_FILE), `container ${id}`, () => {
    const state = readState(root, id);
    change(state);
    writeState(root, state);
    return state;
  });
}

export function listIds(root: string): string[] {
  try {
    return readdirSync(root, { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name)
      .sort();
  } catch {
    return [];
  }
}


/**
 * Moves the recorded status through the lifecycle's table (inside an updateState callback): a move it does not have
 * (a second start racing the first, a start after the monitor recorded the exit) is refused, not written.
 */
export function moveStatus(state: ContainerState, next: ContainerStatus): void {
  checkTransition(`container ${state.id}`, state.status, next);
  state.status = next;
}

/** The monitor as a recorded process: pid plus start time, so a reused pid is never taken for it. */
export function monitorOf(state: ContainerState): RecordedProcess {
  return state.pidStartTime === undefined ? { pid: state.pid } : { pid: state.pid, startTime: state.pidStartTime };
}

/** The state, or undefined once there is none (deleted, or a failed create removed it). */
export function readStateQuietly(root: string, id: string): ContainerState | undefined {
  try {
    return readState(root, id);
  } catch {
    return undefined;
  }
}

/** The sandbox record inside state.json, updated under the state lock (the monitor and CLI calls both write it). */
export const stateRecordStore = (root: string, id: string): SandboxRecordStore => ({
  read: () => readStateQuietly(root, id),
  update: (change) => void updateState(root, id, change),
});
