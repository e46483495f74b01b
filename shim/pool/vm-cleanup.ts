// How the pool ends a VM it took back: powered off through its agent when it is its own child and still running, or
// from its record alone when it is what a dead pool or a dead claimer left; then its directory goes (unmounting
// whatever a claimer left mounted in its share first).
import type { Logger } from 'pino';
import { killRecordedVm } from '../../hypervisor/registry.js';
import type { Hypervisor } from '../../hypervisor/types.js';
import { oneLine } from '../errors.js';
import { connectAgent } from '../sandbox/agent-connect.js';
import { removeSandboxDirectory } from '../sandbox/teardown.js';
import type { PoolVmRecord } from './records.js';

/** Bounds on a pooled VM's power-off: it runs no container, so there is nothing to wait for beyond the guest's sync. */
const AGENT_CONNECT_MS = 2_000;
const POWEROFF_CALL_MS = 3_000;
const POWEROFF_WAIT_MS = 3_000;

/** Powers a running VM off the way Sandbox.shutdown does: the agent first (it syncs), then the VMM is stopped. */
export async function powerOff(hypervisor: Hypervisor, vmDir: string, log: Logger): Promise<void> {
  try {
    const agent = await connectAgent(vmDir, { hypervisor, timeoutMs: AGENT_CONNECT_MS });
    try {
      await Promise.race([agent.destroySandbox({ timeoutMs: POWEROFF_CALL_MS }), hypervisor.wait()]);
    } finally {
      agent.close();
    }
  } catch (err) {
    log.warn({ err: oneLine(err) }, 'the agent did not confirm power-off; stopping the VMM');
  }
  await hypervisor.stop(POWEROFF_WAIT_MS);
}

/**
 * Ends what a VM's record names (a pid whose start time changed is left alone) and removes its directory and socket
 * dir. Without a record (a directory a crash left before its record was written) only the directory goes.
 */
export async function discardVmDir(dir: string, record: PoolVmRecord | undefined): Promise<void> {
  if (record) await killRecordedVm(record.vm, dir);
  removeSandboxDirectory(dir);
}
