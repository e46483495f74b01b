// Spawning and ending the VM's host processes. A process is either our child (we get its exit event) or one a
// previous hull process started (detached sandbox): then only its pid and start time are known, and exit is found by
// polling. The start time (from /proc/<pid>/stat) guards against killing an unrelated process that reused the pid.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants, openSync, readFileSync } from 'node:fs';
import { BinaryNotFoundError } from './errors.js';

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RecordedProcess {
  pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot); absent if it could not be read. */
  startTime?: number;
}

/** The fields of /proc/<pid>/stat that hull uses (proc(5)). */
export interface ProcStat {
  /** Field 3: one letter, R running, S sleeping, D disk wait, Z zombie, X dead, T stopped, … */
  state: string;
  /** Fields 14 and 15: CPU time in user and kernel mode, in clock ticks. */
  utime: number;
  stime: number;
  /** Field 22: when the process started, in clock ticks since boot; with the pid, it names one process. */
  starttime: number;
  /** Field 24: resident set size, in pages. */
  rss: number;
}

/** Reads /proc/<pid>/stat; undefined when the process is gone (or was never there). */
export function procStat(pid: number): ProcStat | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    // ENOENT: no such process; ESRCH: it exited while we read.
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return undefined;
    throw err;
  }
  return parseProcStat(stat);
}

/** The fields of one stat line (/proc/<pid>/stat or /proc/<pid>/task/<tid>/stat); a field that is not there is NaN. */
export function parseProcStat(stat: string): ProcStat {
  // comm (field 2) may hold spaces and parentheses: the fields after it start past the last ')', at field 3.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const field = (n: number): number => Number(f[n - 3]);
  return { state: f[0] ?? '', utime: field(14), stime: field(15), starttime: field(22), rss: field(24) };
}

export function procStartTime(pid: number): number | undefined {
  const start = procStat(pid)?.starttime;
  return start !== undefined && Number.isFinite(start) ? start : undefined;
}

/** True while the process exists, is not a zombie, and (if known) has the recorded start time. */
export function isAlive(proc: RecordedProcess): boolean {
  try {
    process.kill(proc.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = procStat(proc.pid);
  if (stat === undefined || stat.state === 'Z' || stat.state === 'X') return false;
  return proc.startTime === undefined || stat.starttime === proc.startTime;
}

export function requireExecutable(binary: string, path: string, remedy: string): void {
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new BinaryNotFoundError(binary, path, remedy);
  }
}

export interface SpawnOptions {
  name: string;
  path: string;
  args: string[];
  /** stderr is appended here, and stdout too unless `stdoutFd`. */
  logFile: string;
  /** The child's stdout instead of the log, e.g. the pipe QEMU's serial console goes to (console-log.ts). */
  stdoutFd?: number;
  /** Own session and process group, not tied to our lifetime (the sandbox outlives the CLI call). */
  detached: boolean;
}

/** How often an adopted process is looked at while it runs, and once its exit is expected. */
const WATCH_POLL_MS = 50;
const EXIT_POLL_MS = 5;

/** One host process of the VM. */
export class HostProcess {
  readonly pid: number;
  readonly startTime: number | undefined;
  private exitInfo: ProcessExit | undefined;
  private exitPromise: Promise<ProcessExit> | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private pollMs = 0;
  private pollKeepAlive = false;
  private readonly exitListeners: Array<(exit: ProcessExit) => void> = [];

  private constructor(
    readonly name: string,
    pid: number,
    startTime: number | undefined,
    private readonly child: ChildProcess | undefined,
  ) {
    this.pid = pid;
    this.startTime = startTime;
    child?.once('exit', (code, signal) => this.settle({ code, signal }));
  }

  static async spawn(opts: SpawnOptions): Promise<HostProcess> {
    const fd = openSync(opts.logFile, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND, 0o600);
    try {
      const child = spawn(opts.path, opts.args, {
        stdio: ['ignore', opts.stdoutFd ?? fd, fd],
        detached: opts.detached,
      });
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', () => resolve());
        child.once('error', (err) => reject(new BinaryNotFoundError(opts.name, opts.path, err.message)));
      });
      if (opts.detached) child.unref();
      const pid = child.pid as number;
      return new HostProcess(opts.name, pid, procStartTime(pid), child);
    } finally {
      closeSync(fd); // the child holds its own copy
    }
  }

  /** A process started by an earlier hull process; it is gone already if the start time does not match. */
  static adopt(name: string, rec: RecordedProcess): HostProcess {
    const proc = new HostProcess(name, rec.pid, rec.startTime, undefined);
    if (!isAlive(rec)) proc.settle({ code: null, signal: null });
    return proc;
  }

  get exited(): boolean {
    return this.exitInfo !== undefined;
  }

  get exit(): ProcessExit | undefined {
    return this.exitInfo;
  }

  record(): RecordedProcess {
    return this.startTime === undefined ? { pid: this.pid } : { pid: this.pid, startTime: this.startTime };
  }

  onExit(listener: (exit: ProcessExit) => void): void {
    if (this.exitInfo) listener(this.exitInfo);
    else this.exitListeners.push(listener);
  }

  /**
   * For an adopted process (not our child), polls the pid so exit listeners fire: every WATCH_POLL_MS while it just
   * runs, every EXIT_POLL_MS once an exit is expected (we signalled it, or wait for it within a bound), where each
   * poll's delay is a delay of teardown. `keepAlive` false lets this process exit meanwhile; a later keepAlive true
   * upgrades the timer.
   */
  watch(keepAlive: boolean, intervalMs = WATCH_POLL_MS): void {
    if (this.child || this.exitInfo) return;
    this.pollKeepAlive ||= keepAlive;
    if (this.pollTimer && this.pollMs <= intervalMs) {
      if (keepAlive) this.pollTimer.ref();
      return;
    }
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollMs = intervalMs;
    this.pollTimer = setInterval(() => {
      if (!isAlive(this.record())) this.settle({ code: null, signal: null });
    }, intervalMs);
    if (!this.pollKeepAlive) this.pollTimer.unref();
  }

  /** Resolves when the process has exited. */
  wait(): Promise<ProcessExit> {
    this.exitPromise ??= new Promise<ProcessExit>((resolve) => this.onExit(resolve));
    this.watch(true);
    return this.exitPromise;
  }

  /** Resolves true if it exited within ms. */
  async waitFor(ms: number): Promise<boolean> {
    if (this.exitInfo) return true;
    this.watch(true, EXIT_POLL_MS);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
    const done = await Promise.race([this.wait().then(() => true as const), timeout]);
    clearTimeout(timer);
    return done;
  }

  signal(sig: NodeJS.Signals): void {
    if (this.exitInfo) return;
    // A pid we did not spawn is only signalled while it is still the same process.
    if (!this.child && !isAlive(this.record())) return;
    try {
      process.kill(this.pid, sig);
    } catch {
      // already gone
    }
    if (sig === 'SIGKILL' || sig === 'SIGTERM') this.watch(false, EXIT_POLL_MS);
  }

  /** SIGTERM, then SIGKILL after graceMs; resolves once it has exited. */
  async terminate(graceMs: number): Promise<ProcessExit> {
    if (!this.exitInfo) {
      this.signal('SIGTERM');
      if (!(await this.waitFor(graceMs))) this.signal('SIGKILL');
    }
    return this.wait();
  }

  async forceKill(): Promise<ProcessExit> {
    this.signal('SIGKILL');
    return this.wait();
  }

  private settle(exit: ProcessExit): void {
    if (this.exitInfo) return;
    this.exitInfo = exit;
    if (this.pollTimer) clearInterval(this.pollTimer);
    for (const l of this.exitListeners.splice(0)) l(exit);
  }
}
