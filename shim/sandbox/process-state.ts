// The lifecycle of a container process (a container's init or an exec), as containerd's pkg/process/init_state.go
// has it: one transition table that every status change goes through, so a move the lifecycle does not have (a
// second start, a stopped process running again) fails loudly where it is attempted instead of leaving a flag that
// disagrees with the rest. Handlers still check first and answer with containerd's own messages; the table is the
// guard underneath them.
import { failedPrecondition } from '../errors.js';

/** runc's statuses ('creating' is the runc CLI's, while `create` is still under way) plus paused. */
export type ProcessStatus = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

/**
 * Where each status may go. No status lists itself: a move to the status a process already has means two callers
 * disagree about it (a second Start), so it is refused; where repeating a request is harmless (Pause on a paused
 * task, as containerd's pausedState does) the caller answers it before moving. A process can stop from any status
 * but stopped: its create fails, a created one is deleted or killed, the VM dies under a running or paused one.
 */
export const TRANSITIONS: ReadonlyMap<ProcessStatus, ReadonlySet<ProcessStatus>> = new Map<ProcessStatus, ReadonlySet<ProcessStatus>>([
  ['creating', new Set<ProcessStatus>(['created', 'stopped'])],
  ['created', new Set<ProcessStatus>(['running', 'stopped'])],
  ['running', new Set<ProcessStatus>(['paused', 'stopped'])],
  ['paused', new Set<ProcessStatus>(['running', 'stopped'])],
  ['stopped', new Set<ProcessStatus>()],
]);

export function canTransition(from: ProcessStatus, to: ProcessStatus): boolean {
  return TRANSITIONS.get(from)?.has(to) === true;
}

/** Throws failed-precondition when the table has no move from `from` to `to`; `what` names the process. */
export function checkTransition(what: string, from: ProcessStatus, to: ProcessStatus): void {
  if (!canTransition(from, to)) throw failedPrecondition(`${what} cannot go from ${from} to ${to}`);
}

/** One process's status: read it with status or is(), change it only with moveTo(). */
export class ProcessState {
  private current: ProcessStatus;

  /** `what` names the process in refusals: "container c1", "process exec1 of container c1". */
  constructor(
    readonly what: string,
    initial: ProcessStatus,
  ) {
    this.current = initial;
  }

  get status(): ProcessStatus {
    return this.current;
  }

  is(...statuses: ProcessStatus[]): boolean {
    return statuses.includes(this.current);
  }

  moveTo(next: ProcessStatus): void {
    checkTransition(this.what, this.current, next);
    this.current = next;
  }
}
