// Removes everything a sandbox left on the host, from its recorded state alone: the monitor, the VM processes,
// the mounts and the state directory. Used by delete, and after failures.
import { setTimeout as sleep } from 'node:timers/promises';
import { releaseMounts } from '../sandbox/sandbox.js';
import { isAlive, type RecordedProcess } from '../../hypervisor/process.js';
import { monitorOf, readState, removeSandboxDir, sandboxDir } from './state.js';
import { killRecordedVm } from '../../hypervisor/registry.js';
import { detachNetwork } from '../sandbox/network/pod-network.js';

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
  const latest = readState(root, id);
  await killRecordedVm(latest.vm);
  await detachNetwork(latest.network);
  releaseMounts(sandboxDir(root, id), latest.mounts);
  removeSandboxDir(root, id);
}
