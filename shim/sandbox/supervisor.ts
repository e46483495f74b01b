// The one supervisor: a process in the guest ends either by its own exit, which the agent reports, or because its VM
// went away (the VMM or a helper died, or the agent connection was lost), and whichever comes first decides. Both
// front ends use it for every process they wait on: the runc CLI's container and exec, the containerd shim's tasks.
import type { AgentClient } from '../../protocol/agent-client.js';
import { ConnectionClosedError } from '../../protocol/errors.js';
import { HullError, oneLine } from '../errors.js';
import { exitStatusFromGuest } from '../guest-values.js';

export type ProcessOutcome =
  /** The process exited with this status (128+n for signal n). */
  | { kind: 'exited'; status: number }
  /** The VM is gone; `reason` says how. */
  | { kind: 'vm-gone'; reason: string }
  /** The agent refused or failed the wait while the VM still ran. */
  | { kind: 'lost'; reason: string };

/**
 * Waits for process `execId` ('' for the init) of container `containerId`. `vmGone` settles with a reason once the
 * VM is gone and must settle whenever the agent connection closes (Sandbox.died does; watchRecordedVm for a process
 * that only has the record), so this never waits on a dead channel.
 */
export async function superviseProcess(
  agent: Pick<AgentClient, 'waitProcess'>,
  vmGone: Promise<string>,
  containerId: string,
  execId: string,
): Promise<ProcessOutcome> {
  const gone = onceGone(vmGone);
  try {
    return await Promise.race([
      agent.waitProcess(containerId, execId).then((r): ProcessOutcome => ({ kind: 'exited', status: exitStatusFromGuest(r.exitStatus) })),
      gone.settled.then((reason): ProcessOutcome => ({ kind: 'vm-gone', reason })),
    ]);
  } catch (err) {
    if (err instanceof ConnectionClosedError) return { kind: 'vm-gone', reason: await vmGone };
    return { kind: 'lost', reason: `waiting for process ${execId || containerId} failed: ${oneLine(err)}` };
  } finally {
    gone.unsubscribe();
  }
}

/*
 * `vmGone.then(…)` in every wait would leave one reaction on the VM's long-lived promise per process until the VM
 * dies: a pod that serves an exec probe every few seconds would hold them by the hundred thousand. One reaction per
 * `vmGone` fans out to the waits current at the time instead, each of which unsubscribes when it ends.
 */
interface Waiter {
  resolve: (reason: string) => void;
  reject: (err: unknown) => void;
}

interface GoneFanOut {
  waiters: Set<Waiter>;
  /** How vmGone settled, once it has: later waits settle at once. */
  outcome?: { reason: string } | { error: unknown };
}

const fanOuts = new WeakMap<Promise<string>, GoneFanOut>();

function onceGone(vmGone: Promise<string>): { settled: Promise<string>; unsubscribe: () => void } {
  let fan = fanOuts.get(vmGone);
  if (!fan) {
    const created: GoneFanOut = { waiters: new Set() };
    fanOuts.set(vmGone, created);
    const settle = (outcome: NonNullable<GoneFanOut['outcome']>): void => {
      created.outcome = outcome;
      for (const w of created.waiters) {
        if ('reason' in outcome) w.resolve(outcome.reason);
        else w.reject(outcome.error);
      }
      created.waiters.clear();
    };
    vmGone.then(
      (reason) => settle({ reason }),
      (error: unknown) => settle({ error }),
    );
    fan = created;
  }
  const { waiters, outcome } = fan;
  if (outcome) {
    return { settled: 'reason' in outcome ? Promise.resolve(outcome.reason) : Promise.reject(outcome.error), unsubscribe: () => undefined };
  }
  let waiter: Waiter | undefined;
  const settled = new Promise<string>((resolve, reject) => {
    waiter = { resolve, reject };
    waiters.add(waiter);
  });
  return { settled, unsubscribe: () => void waiters.delete(waiter!) };
}

/** How long a call that lost its agent connection waits for the VM's death to be known, to say why (vmGone). */
export const VM_LOSS_EXPLAIN_MS = 3_000;

/**
 * The error to report for an agent call that failed: when it failed because the connection closed (the VM died
 * under it), one line saying that `what` lost its VM and why, once `vmGone` knows (a few seconds at most), rather
 * than the ttrpc method and "connection closed"; any other error as it is.
 */
export async function explainVmLoss(err: unknown, vmGone: Promise<string>, what: string, waitMs = VM_LOSS_EXPLAIN_MS): Promise<unknown> {
  if (!(err instanceof ConnectionClosedError)) return err;
  let timer: NodeJS.Timeout | undefined;
  const reason = await Promise.race([
    vmGone,
    new Promise<string>((resolve) => (timer = setTimeout(() => resolve(`the guest agent connection closed (${oneLine(err)})`), waitMs))),
  ]);
  clearTimeout(timer);
  return new HullError('unavailable', `${what}: the VM died: ${reason}`, { cause: err });
}
