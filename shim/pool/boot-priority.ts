// A pool boots its replacement VMs right after a claim, while the claimer's container starts: under TCG a boot keeps
// a host CPU busy for seconds and, on a small host, takes it from the very sandbox the pool exists to speed up. So a
// pooled VM boots niced (every thread of its processes) and is given normal priority once it is ready. Threads
// inherit the nice value of the thread that creates them, so QEMU's vCPU threads created later boot niced too.
import { readdirSync } from 'node:fs';
import os from 'node:os';
import type { VmProcesses } from '../../hypervisor/types.js';

/** The nice value of a booting pooled VM: the weight of a normal task is about ten times its own. */
export const BOOT_NICE = 10;
export const READY_NICE = 0;

/** Sets the nice value of every thread of the VM's processes; a process or thread gone meanwhile is skipped. */
export function setVmNice(processes: VmProcesses, nice: number): void {
  for (const p of [...(processes.vmm ? [processes.vmm] : []), ...(processes.helpers ?? [])]) {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${p.pid}/task`);
    } catch {
      continue; // exited
    }
    for (const tid of tids) {
      try {
        os.setPriority(Number(tid), nice);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
  }
}

/**
 * After a claim, how long the pool waits before booting the replacement while it still holds a ready VM: the claimer's
 * container is being created and started meanwhile, and a boot under TCG takes a whole host CPU (niced or not, on a
 * small host it slows the very sandbox that was claimed). With no ready VM left the pool boots at once: the next
 * claimer would otherwise boot cold.
 */
export const REFILL_AFTER_CLAIM_MS = 1000;

/** Whether the pool may start a boot now, `ready` VMs in hand, the last claim noticed at `lastClaimAt` (ms). */
export function mayBootNow(ready: number, now: number, lastClaimAt: number): boolean {
  return ready === 0 || now - lastClaimAt >= REFILL_AFTER_CLAIM_MS;
}
