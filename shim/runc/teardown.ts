// `hull delete`'s end of a container: the monitor first (it owns the sandbox while it lives), then the core's
// teardown from the sandbox record in state.json, then the state directory.
import { setTimeout as sleep } from 'node:timers/promises';
import { isAlive, type RecordedProcess } from '../../hypervisor/process.js';
import { releaseSandbox } from '../sandbox/teardown.js';
import { monitorOf, readState, removeSandboxDir, sandboxDir, stateRecordStore } from './state.js';

export async function waitForExit(proc: RecordedProcess, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(proc)) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

export async function destroySandbox(root: string, id: string, monitorWaitMs: number): Promise<void> {
  let state;
  try {
    state = readState(root, id);
  } catch {
    removeSandboxDir(root, id);
    return;
  }
  const monitor = monitorOf(state);
  if (state.pid !== process.pid && isAlive(monitor) && !(await waitForExit(monitor, monitorWaitMs))) {
    try {
      process.kill(state.pid, 'SIGKILL');
    } catch {
      // exited in between
    }
    await waitForExit(monitor, 2_000);
  }
  await releaseSandbox(sandboxDir(root, id), stateRecordStore(root, id));
  removeSandboxDir(root, id);
}
