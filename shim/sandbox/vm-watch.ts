// Notices a VM's host processes dying when nothing else would tell: a helper (virtiofsd, the vsock backend) is not
// the VMM's child, so the VMM keeps running without it; and a process that only has the VM's record (`hull exec`)
// has no child to wait for at all. Polls /proc with each process's start time, so a reused pid counts as gone.
import { isAlive } from '../../hypervisor/process.js';
import type { VmProcess } from '../../hypervisor/types.js';

const POLL_MS = 250;

export interface ProcessWatch {
  /** Resolves with a one-line reason once one of the processes is gone. */
  readonly gone: Promise<string>;
  stop(): void;
}

/** How long after a lost agent connection the VM's processes are looked at, so a helper or VMM that was killed (and
 *  whose sockets closed first) has finished dying and can be named as the cause. */
export const SETTLE_MS = 150;

/** A one-line reason naming the first of `processes` that is gone; undefined while all live. */
export function firstGone(processes: VmProcess[]): string | undefined {
  const dead = processes.find((p) => !isAlive(p));
  return dead ? `${dead.role} (pid ${dead.pid}) is gone` : undefined;
}

export function watchProcesses(processes: VmProcess[], intervalMs = POLL_MS): ProcessWatch {
  let timer: NodeJS.Timeout | undefined;
  const gone = new Promise<string>((resolve) => {
    const check = (): boolean => {
      const reason = firstGone(processes);
      if (reason === undefined) return false;
      resolve(reason);
      return true;
    };
    if (check() || processes.length === 0) return;
    timer = setInterval(() => {
      if (check()) clearInterval(timer);
    }, intervalMs);
    timer.unref(); // never what keeps a process alive
  });
  return { gone, stop: () => clearInterval(timer) };
}
