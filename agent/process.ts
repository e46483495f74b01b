// One run of /hull/hull-container-init and the process it starts (docs/design.md "Container init helper"):
// the plan goes in on fd 3, status lines come back on fd 4 (`pid <n>`, `ready`, `error <msg>`), one byte on fd 5
// lets it exec. The helper stays as the workload's parent and exits with its status, so the helper's exit is the
// process's exit. fd 4 reaching EOF after the start byte, without an error line, means exec succeeded.
// Two steps: spawnHelper() forks the helper, which then blocks reading its plan; new HelperProcess() attaches a plan
// to it. In between may lie a while: the agent keeps one spawned helper as a warm spare (agent/spare-helper.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { PassThrough, type Duplex, type Readable, type Writable } from 'node:stream';
import type { Logger } from 'pino';
import { TtrpcError } from '../protocol/errors.js';
import { Code } from '../protocol/ttrpc/codes.js';
import { fdStream, openpty, setWindowSize, type FdStream, type Pty } from '../native/addon/index.js';
import { HelperError, InternalError, StateError } from './errors.js';
import { kernelDebugFlag } from './logger.js';
import { OutputBuffer } from './output-buffer.js';

export interface ExitStatus {
  /** 0..255; 128+n when a signal ended it. */
  exitStatus: number;
  /** The signal that ended the helper itself (0 when it exited; the helper reports the workload's signal as 128+n). */
  signal: number;
}

export interface HelperOptions {
  helperPath: string;
  plan: Buffer;
  /** false: the process's stdin is /dev/null. */
  stdin: boolean;
  /** "container c1", "exec e1 in c1": for messages. */
  label: string;
  outputCap?: number;
  /** How long setup may take before CreateContainer/ExecProcess gives up. */
  setupTimeoutMs?: number;
  /**
   * process.terminal: the plan has `console -`; at start the agent allocates a pty in the container's own devpts
   * (ptmxPaths, first that opens), sends the slave path after the start byte, and the master carries stdin and
   * stdout (stderr stays empty).
   */
  terminal?: boolean;
  /** The terminal's window size from the start (process.consoleSize); ResizePty changes it. */
  windowSize?: { rows: number; cols: number };
  /** Where to open ptmx for the workload pid; default /proc/<pid>/root/dev/pts/ptmx, then …/dev/ptmx. */
  ptmxPaths?: (workloadPid: number) => string[];
  log: Logger;
}

const MAX_STATUS_LINE = 4096;
/** After the helper exits, how long to wait for its last status lines (the pipe may drain after the exit event). */
const STATUS_GRACE_MS = 200;

export class HelperProcess {
  readonly stdout: OutputBuffer;
  readonly stderr: OutputBuffer;
  readonly exited: Promise<ExitStatus>;
  /** The workload's guest pid (from `pid <n>`); 0 until the helper said it. */
  pid = 0;

  private readonly stdinPipe: Writable | null;
  private stdinClosed: boolean;
  private readonly startPipe: Writable;
  private ready = false;
  private started = false;
  private errorMessage: string | undefined;
  private statusEnded = false;
  private exitResult: ExitStatus | undefined;
  private spawnError: Error | undefined;
  private listeners: Array<() => void> = [];
  /** Terminal processes: what the host reads as stdout / writes as stdin, connected to the master at start. */
  private readonly ptyOut: PassThrough | null = null;
  private readonly ptyIn: PassThrough | null = null;
  private master: FdStream | null = null;
  private masterFd = -1;
  private windowSize: { rows: number; cols: number } | undefined;

  /** hull.debug=1: the helper's `trace <step> <µs>` lines, as ms since the plan was attached (trace_step in native/container-init/util.h). */
  private readonly attachedAt = process.hrtime.bigint();
  private readonly traced: Record<string, number> = {};

  /** The plan written to fd 3: resolves null once the kernel has it, or the error that refused it (a dead helper). */
  private readonly planWritten: Promise<Error | null>;

  /** Attaches a plan to a helper from spawnHelper() (fresh, or a spare still blocked reading fd 3). */
  private constructor(
    private readonly child: ChildProcess,
    private readonly opts: HelperOptions,
  ) {
    // Node types child.stdio as a 5-tuple; with six 'pipe' entries there are six streams.
    const stdio = child.stdio as unknown as Array<Duplex | null>;
    if (opts.terminal) {
      this.windowSize = opts.windowSize;
      this.ptyOut = new PassThrough();
      this.ptyIn = opts.stdin ? new PassThrough() : null;
    }
    // A spare always has a stdin pipe. When the process does not read it (no stdin, or a terminal, whose slave the
    // workload dup2s onto fds 0-2), close it at once: the workload reads EOF, as from the /dev/null of 'ignore'.
    if (stdio[0] && (!opts.stdin || opts.terminal)) stdio[0].destroy();
    this.stdinPipe = opts.stdin ? (this.ptyIn ?? stdio[0]!) : null;
    this.stdinClosed = !opts.stdin;
    this.stdout = new OutputBuffer(this.ptyOut ?? stdio[1]!, opts.outputCap);
    this.stderr = new OutputBuffer(stdio[2]!, opts.outputCap);
    this.startPipe = stdio[5]!;
    const statusPipe: Readable = stdio[4]!;
    // A peer that goes away makes these streams error (EPIPE, ECONNRESET); that is an ordinary end here.
    for (const s of stdio) s?.on('error', () => {});

    this.exited = new Promise<ExitStatus>((resolve) => {
      child.on('exit', (code, sig) => {
        const signo = sig ? (osConstants.signals[sig] ?? 0) : 0;
        this.exitResult = code !== null ? { exitStatus: code & 0xff, signal: 0 } : { exitStatus: 128 + signo, signal: signo };
        this.stdinClosed = true;
        this.notify();
        resolve(this.exitResult);
      });
      child.on('error', (err) => {
        // spawn failed (ENOENT, EACCES): there is no process and there will be no 'exit'.
        if (child.pid !== undefined) return;
        this.spawnError = err;
        this.exitResult = { exitStatus: 127, signal: 0 };
        this.stdinClosed = true;
        this.notify();
        resolve(this.exitResult);
      });
    });

    let partial = '';
    statusPipe.setEncoding('utf8');
    statusPipe.on('data', (text: string) => {
      partial += text;
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        this.onStatusLine(partial.slice(0, nl));
        partial = partial.slice(nl + 1);
      }
      if (partial.length > MAX_STATUS_LINE) partial = partial.slice(0, MAX_STATUS_LINE);
    });
    const endStatus = (): void => {
      if (this.statusEnded) return;
      if (partial) this.onStatusLine(partial);
      partial = '';
      this.statusEnded = true;
      this.notify();
    };
    statusPipe.on('end', endStatus);
    statusPipe.on('close', endStatus);

    const planPipe = stdio[3]!;
    this.planWritten = new Promise((resolve) => planPipe.write(opts.plan, (err) => resolve(err ?? null)));
    planPipe.end();
  }

  /**
   * Runs a helper with this plan and waits until it is set up (`ready`). On failure nothing is left running.
   * `spare`: a helper from spawnHelper() to use instead of spawning one (SpareHelper.take()); when it does not take
   * the plan (it died meanwhile), a fresh helper is spawned, once.
   */
  static async spawn(opts: HelperOptions, spare?: ChildProcess | null): Promise<HelperProcess> {
    if (spare) {
      const proc = new HelperProcess(spare, opts);
      const err = await proc.planWritten;
      if (!err) return proc.setUp();
      opts.log.warn({ process: opts.label, err: err.message }, 'the spare helper did not take its plan; spawning a fresh one');
      proc.kill('SIGKILL');
      proc.destroyStdio();
    }
    const t0 = performance.now();
    const child = spawnHelper(opts.helperPath, opts.stdin && !opts.terminal);
    opts.log.debug({ process: opts.label, ms: Math.round(performance.now() - t0) }, 'helper spawned');
    return new HelperProcess(child, opts).setUp();
  }

  private async setUp(): Promise<HelperProcess> {
    try {
      await this.waitReady();
      return this;
    } catch (err) {
      this.kill('SIGKILL');
      this.destroyStdio();
      throw err;
    }
  }

  get helperPid(): number {
    return this.child.pid ?? 0;
  }

  get running(): boolean {
    return this.exitResult === undefined;
  }

  get exitStatus(): ExitStatus | undefined {
    return this.exitResult;
  }

  get isStarted(): boolean {
    return this.started;
  }

  /** Lets the process exec; resolves once exec happened, rejects with the helper's error if it did not. */
  async start(timeoutMs = 10_000): Promise<void> {
    if (this.started) throw new StateError(`${this.opts.label} was already started`);
    if (!this.running) throw new StateError(`${this.opts.label} has already exited`);
    const slavePath = this.opts.terminal ? this.attachPty() : '';
    this.started = true;
    this.startPipe.end(Buffer.concat([Buffer.from([1]), Buffer.from(slavePath)]));
    const settled = await this.waitUntil(() => this.statusEnded || this.errorMessage !== undefined || !this.running, timeoutMs);
    if (!settled) {
      this.opts.log.warn({ process: this.opts.label }, 'no exec confirmation from the helper yet; assuming it started');
      return;
    }
    if (!this.running && !this.statusEnded) await this.waitUntil(() => this.statusEnded, STATUS_GRACE_MS);
    if (this.errorMessage !== undefined) throw new HelperError(`${this.opts.label}: ${this.errorMessage}`);
  }

  get terminal(): boolean {
    return this.opts.terminal === true;
  }

  /** Sets the terminal's window size (now, or at start when the pty does not exist yet). */
  resize(rows: number, cols: number): void {
    if (!this.opts.terminal) throw new StateError(`${this.opts.label} has no terminal`);
    this.windowSize = { rows, cols };
    if (this.masterFd >= 0) setWindowSize(this.masterFd, rows, cols);
  }

  /** Allocates the pty in the workload's devpts and connects it to ptyIn/ptyOut; returns the slave path. */
  private attachPty(): string {
    const paths = this.opts.ptmxPaths?.(this.pid) ?? [`/proc/${this.pid}/root/dev/pts/ptmx`, `/proc/${this.pid}/root/dev/ptmx`];
    let pty: Pty | undefined;
    let lastErr: Error | undefined;
    for (const p of paths) {
      try {
        pty = openpty(p);
        break;
      } catch (err) {
        lastErr = err as Error;
      }
    }
    if (!pty) throw new HelperError(`${this.opts.label}: cannot allocate a terminal: ${lastErr?.message ?? 'no ptmx path'}`);
    this.masterFd = pty.master;
    if (this.windowSize) setWindowSize(pty.master, this.windowSize.rows, this.windowSize.cols);
    const master = fdStream(pty.master);
    this.master = master;
    const out = this.ptyOut!;
    master.pipe(out);
    // EIO once every slave fd is closed: that is the terminal's EOF.
    master.on('error', () => out.end());
    master.on('close', () => {
      this.masterFd = -1;
      out.end();
    });
    if (this.ptyIn) {
      this.ptyIn.pipe(master, { end: false });
      this.ptyIn.on('error', () => {});
    }
    return pty.slavePath;
  }

  /** Sends a signal to the workload. False when it has exited already. */
  signal(sig: number | NodeJS.Signals): boolean {
    if (!this.running || this.pid <= 0) return false;
    return trySignal(this.pid, sig);
  }

  /** SIGKILLs the workload and the helper (for removal and failed setups). */
  kill(sig: NodeJS.Signals = 'SIGKILL'): void {
    if (!this.running) return;
    if (this.pid > 0) trySignal(this.pid, sig);
    if (this.child.pid !== undefined) trySignal(this.child.pid, sig);
  }

  async writeStdin(data: Buffer, signal?: AbortSignal): Promise<number> {
    if (!this.stdinPipe) throw new StateError(`${this.opts.label} was started without stdin`);
    if (this.stdinClosed) throw new StateError(`stdin of ${this.opts.label} is closed`);
    const pipe = this.stdinPipe;
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => reject(signal!.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      // The callback runs when the kernel took the bytes: waiting for it is the backpressure.
      pipe.write(data, (err) => {
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(new StateError(`stdin of ${this.opts.label}: ${err.message}`));
        else resolve();
      });
    });
    return data.length;
  }

  closeStdin(): void {
    if (!this.stdinPipe || this.stdinClosed) return;
    this.stdinClosed = true;
    this.stdinPipe.end();
  }

  /** Drops the pipes (after removal): pending reads see EOF. */
  destroyStdio(): void {
    for (const s of this.child.stdio as unknown as Array<Duplex | null>) s?.destroy();
    this.ptyIn?.destroy();
    this.master?.destroy();
    this.ptyOut?.end();
  }

  private async waitReady(): Promise<void> {
    // Below the host's default 60 s call deadline, so the host sees this error rather than its own timeout.
    const timeoutMs = this.opts.setupTimeoutMs ?? 45_000;
    const settled = await this.waitUntil(() => this.ready || this.errorMessage !== undefined || !this.running, timeoutMs);
    if (!settled) {
      throw new TtrpcError(Code.DeadlineExceeded, `${this.opts.label}: the container-init helper was not ready within ${timeoutMs} ms`);
    }
    if (this.spawnError) {
      throw new InternalError(`${this.opts.label}: cannot run ${this.opts.helperPath}: ${this.spawnError.message}`, { cause: this.spawnError });
    }
    if (!this.ready && !this.statusEnded) await this.waitUntil(() => this.statusEnded, STATUS_GRACE_MS);
    if (this.errorMessage !== undefined) throw new HelperError(`${this.opts.label}: ${this.errorMessage}`);
    if (!this.ready) {
      const st = this.exitResult!;
      throw new HelperError(`${this.opts.label}: the container-init helper exited (status ${st.exitStatus}) before it was ready`);
    }
    if (this.pid <= 0) throw new HelperError(`${this.opts.label}: the container-init helper said ready without a pid`);
  }

  private onStatusLine(line: string): void {
    const [word, ...rest] = line.split(' ');
    const arg = rest.join(' ');
    if (word === 'pid') {
      const n = Number(arg);
      if (Number.isInteger(n) && n > 0) this.pid = n;
      else this.opts.log.warn({ process: this.opts.label, line }, 'bad pid line from helper');
    } else if (word === 'ready') {
      this.ready = true;
      if (Object.keys(this.traced).length) this.opts.log.debug({ process: this.opts.label, msSincePlan: this.traced }, 'helper steps');
    } else if (word === 'trace') {
      // Both clocks are CLOCK_MONOTONIC (the helper's clock_gettime, Node's hrtime).
      const [step, us] = rest;
      const at = Number(us);
      if (step && Number.isFinite(at)) this.traced[step] = Math.round((at * 1000 - Number(this.attachedAt)) / 1e5) / 10;
    } else if (word === 'error') {
      this.errorMessage ??= arg || 'unknown error';
      this.opts.log.warn({ process: this.opts.label, error: arg }, 'container-init helper failed');
    } else if (line.trim() !== '') {
      this.opts.log.debug({ process: this.opts.label, line }, 'unknown status line from helper');
    }
    this.notify();
  }

  private notify(): void {
    for (const l of this.listeners.splice(0)) l();
  }

  /** Resolves true once pred() holds, false after timeoutMs. */
  private waitUntil(pred: () => boolean, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      if (pred()) return resolve(true);
      const timer = setTimeout(() => {
        this.listeners = this.listeners.filter((l) => l !== check);
        resolve(false);
      }, timeoutMs);
      const check = (): void => {
        if (pred()) {
          clearTimeout(timer);
          resolve(true);
        } else this.listeners.push(check);
      };
      this.listeners.push(check);
    });
  }
}

/**
 * Starts the helper: Node's fork+exec blocks the agent's thread, under TCG for 20-60 ms on a quiet host and 100-250 ms
 * on a busy one. The helper then waits, reading its plan on fd 3 until a HelperProcess writes one. `stdin` false: fd 0
 * is /dev/null instead of a pipe.
 */
export function spawnHelper(helperPath: string, stdin: boolean): ChildProcess {
  const child = spawn(helperPath, [], {
    stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe'],
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...(traceHelpers() ? { HULL_INIT_TRACE: '1' } : {}) },
  });
  // A peer that goes away makes these streams error (EPIPE, ECONNRESET), also before a plan is attached.
  for (const s of child.stdio as unknown as Array<Duplex | null>) s?.on('error', () => {});
  return child;
}

let tracing: boolean | undefined;
/** hull.debug=1 on the guest's command line: helpers report their step timings. Read once, at the first spawn (not at
 * module load: that runs when the start-up snapshot is built). */
function traceHelpers(): boolean {
  tracing ??= kernelDebugFlag();
  return tracing;
}

/** process.kill that treats "no such process" as false instead of throwing. */
export function trySignal(pid: number, sig: number | NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}
