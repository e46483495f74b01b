// One container in the guest: its init process, its execs, its cgroup. State follows the init process:
// created (helper waiting for the start byte) → running → stopped (init exited).
import type { Cgroup } from './cgroups.js';
import { NotFoundError } from './errors.js';
import type { HelperProcess } from './process.js';
import type { PlanSeccomp } from './spec-seccomp.js';
import type { StartHooks } from './start-hooks.js';

export type ContainerState = 'created' | 'running' | 'stopped';

export class Container {
  readonly execs = new Map<string, HelperProcess>();
  /** Exec ids being set up, so a concurrent ExecProcess with the same id is refused. */
  readonly pendingExecs = new Set<string>();
  /** Set while RemoveContainer runs, so concurrent removals share one attempt. */
  removing: Promise<void> | undefined;
  /** The spec's startContainer hooks, run by StartContainer before the init execs (agent/start-hooks.ts). */
  startHooks: StartHooks | undefined;
  /** Set while StartContainer runs (its hooks take time), so a second one is refused. */
  starting = false;

  constructor(
    readonly id: string,
    readonly init: HelperProcess,
    readonly cgroup: Cgroup | null,
    /** The container's seccomp filter: every exec gets it too (as with runc). */
    readonly seccomp?: PlanSeccomp,
  ) {}

  get state(): ContainerState {
    if (!this.init.running) return 'stopped';
    return this.init.isStarted ? 'running' : 'created';
  }

  /** The init process for execId '', else the exec; NotFound otherwise. */
  process(execId: string): HelperProcess {
    if (execId === '') return this.init;
    const p = this.execs.get(execId);
    if (!p) throw new NotFoundError(`exec ${execId} not found in container ${this.id}`);
    return p;
  }

  processes(): HelperProcess[] {
    return [this.init, ...this.execs.values()];
  }

  /** Pids of the helpers themselves: infrastructure, not part of what the container runs. */
  helperPids(): Set<number> {
    return new Set(this.processes().map((p) => p.helperPid).filter((p) => p > 0));
  }

  /** The exec id that started a workload pid ('' for init), if the agent started it. */
  execIdOf(pid: number): string | undefined {
    if (this.init.pid === pid) return '';
    for (const [id, p] of this.execs) if (p.pid === pid) return id;
    return undefined;
  }

  /**
   * Every process of the container except the helpers: from the cgroup when there is one (this includes children
   * the workload forked), else the workload pids the agent knows are still running.
   */
  workloadPids(): number[] {
    const helpers = this.helperPids();
    if (this.cgroup) return this.cgroup.pids().filter((p) => !helpers.has(p));
    return this.processes()
      .filter((p) => p.running && p.pid > 0)
      .map((p) => p.pid);
  }
}
