// One warm hull-container-init, spawned ahead of need. Under TCG, Node's fork+exec of the helper blocks the agent
// for 20-60 ms on a quiet host (the first spawn of the agent's life is the slow one) and 100-250 ms on a busy one,
// and CreateContainer/ExecProcess used to pay it in their critical path. A spare is spawned with every pipe (fd 0
// too) and sits blocked reading its still-empty plan on fd 3: nothing about it depends on the request (argv [],
// env { PATH }, the agent's cwd), so a create or exec takes it and attaches its plan (HelperProcess.spawn).
//
// When: spawn() blocks the agent's only thread for the whole fork, so a spare is spawned only once the calls have
// paused for idleMs (every call's arrival and completion counts, see activity()). Spawned right after a reply, it
// would hold up the host's next call instead (StartContainer right after CreateContainer, the exec's output and
// exit right after ExecProcess), and in a one-container sandbox it is never used. So the first create of a cold
// sandbox (Health, then at once CreateContainer) spawns its helper as before; a pooled VM, a pod's next container,
// a later exec find a spare.
// If the agent goes away, the spare's plan pipe reaches EOF with no plan, and the helper exits by itself.
import type { ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import { spawnHelper, trySignal } from './process.js';

/** How long the calls must pause before a spare is spawned. */
export const SPARE_IDLE_MS = 500;

export class SpareHelper {
  private child: ChildProcess | null = null;
  /** Set by DestroySandbox, or when the helper cannot be spawned at all (then every call spawns its own, and fails). */
  private closed = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly helperPath: string,
    private readonly log: Logger,
    private readonly idleMs = SPARE_IDLE_MS,
  ) {}

  /** The spare's pid, or 0 when there is none (for tests and logs). */
  get pid(): number {
    return this.child && isAlive(this.child) ? this.child.pid! : 0;
  }

  /** A call arrived or completed: while there is no live spare, spawn one once the calls pause for idleMs. */
  activity(): void {
    if (this.closed || this.pid > 0) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refill(), this.idleMs);
    this.timer.unref();
  }

  /** Hands out the spare, if it is still alive (null otherwise: spawn a fresh one). */
  take(): ChildProcess | null {
    const child = this.child;
    this.child = null;
    if (!child) return null;
    if (isAlive(child)) return child;
    if (child.pid !== undefined) {
      this.log.warn({ pid: child.pid, exitCode: child.exitCode, signal: child.signalCode }, 'the spare helper died; spawning a fresh one');
    }
    return null;
  }

  /** Kills the spare and spawns no more; resolves once it has exited (at most 1 s). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    const child = this.child;
    this.child = null;
    if (!child || !isAlive(child)) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    trySignal(child.pid!, 'SIGKILL');
    for (const s of child.stdio) s?.destroy();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise<void>((resolve) => (timer = setTimeout(resolve, 1000)))]);
    clearTimeout(timer);
  }

  private refill(): void {
    if (this.closed || this.pid > 0) return;
    const t0 = performance.now();
    let child: ChildProcess;
    try {
      child = spawnHelper(this.helperPath, true);
    } catch (err) {
      // spawn() throws for some errors (EMFILE, EAGAIN): no spare, the next call spawns its helper itself.
      this.log.warn({ err: (err as Error).message }, 'cannot spawn a spare helper');
      return;
    }
    // spawn failures (ENOENT, EACCES) come as 'error' without a pid: take() then finds no live spare.
    child.on('error', (err) => {
      if (child.pid !== undefined) return;
      this.log.warn({ err: err.message }, 'cannot spawn a spare helper; no more spares');
      this.closed = true;
    });
    this.child = child;
    if (child.pid !== undefined) this.log.debug({ pid: child.pid, ms: Math.round(performance.now() - t0) }, 'spare helper spawned');
  }
}

/** Spawned and not exited (the 'exit' event may still be pending: writing its plan then fails, see HelperProcess). */
function isAlive(child: ChildProcess): boolean {
  return child.pid !== undefined && child.exitCode === null && child.signalCode === null;
}
