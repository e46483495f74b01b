// The one teardown: ends a sandbox from its record alone — the VM's processes (by the driver that started them), then
// the taps in its network namespace, then the share's mounts, then its host cgroup — clearing each from the record
// once it is gone. Any process can run it: the owner after a clean stop, a failed boot, `hull delete` or the shim's
// `delete` after a crash.
// A step that fails stays on record for the next attempt, and the error says which.
import { rmSync } from 'node:fs';
import type { Logger } from 'pino';
import { removeSocketDir, sandboxPaths } from '../../hypervisor/paths.js';
import { killRecordedVm } from '../../hypervisor/registry.js';
import { HullError, oneLine } from '../errors.js';
import { releaseShare } from './container-share.js';
import { unmountAllUnder } from './host-mounts.js';
import { detachNetwork } from './network/pod-network.js';
import { vmDirOf, type SandboxRecordStore } from './record.js';
import { removeHostCgroup } from './cgroups/host-cgroup.js';

export async function releaseSandbox(dir: string, store: SandboxRecordStore, log?: Logger): Promise<void> {
  const failures: string[] = [];
  const record = store.read();
  if (!record) return;
  const vmDir = vmDirOf(dir, record);
  try {
    await killRecordedVm(record.vm, vmDir);
    store.update((r) => {
      r.vm = {};
      delete r.boot; // it described the VM that is gone
    });
  } catch (err) {
    failures.push(`ending the VM: ${oneLine(err)}`);
  }
  try {
    await detachNetwork(record.network, log);
    store.update((r) => void delete r.network);
  } catch (err) {
    failures.push(`removing the network taps: ${oneLine(err)}`);
  }
  try {
    releaseShare(vmDir, record.mounts);
    store.update((r) => void (r.mounts = []));
  } catch (err) {
    failures.push(`unmounting the share: ${oneLine(err)}`);
  }
  // After the VM: its cgroup is empty then, or holds only what the record missed (killed on removal).
  if (record.cgroup && failures.length === 0) {
    try {
      await removeHostCgroup(record.cgroup);
      store.update((r) => void delete r.cgroup);
    } catch (err) {
      failures.push(`removing the host cgroup: ${oneLine(err)}`);
    }
  }
  if (vmDir !== dir && failures.length === 0) {
    // A pooled VM's directory: nothing in it is in use any more.
    try {
      removeSandboxDirectory(vmDir);
      store.update((r) => void delete r.vmDir);
    } catch (err) {
      failures.push(`removing ${vmDir}: ${oneLine(err)}`);
    }
  }
  if (failures.length > 0) throw new HullError('internal', `tearing down sandbox ${dir}: ${failures.join('; ')} (kept on record)`);
}

/**
 * Removes a sandbox directory and its socket dir (hypervisor/paths.ts). Whatever is still mounted below it (a record
 * lost in a crash) is unmounted first, and if that fails nothing is removed: a recursive delete would go through the
 * mount into the host's files.
 */
export function removeSandboxDirectory(dir: string): void {
  unmountAllUnder(dir);
  rmSync(dir, { recursive: true, force: true });
  removeSocketDir(sandboxPaths(dir));
}
