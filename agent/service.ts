// The hull.agent.v1.Agent service: owns the guest's containers and turns each RPC into helper runs, cgroup
// operations and stdio buffer reads. Errors are typed (agent/errors.ts) and become ttrpc codes unchanged.
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import type * as T from '../protocol/agent-types.js';
import { TtrpcError } from '../protocol/errors.js';
import { Code } from '../protocol/ttrpc/codes.js';
import type { CallContext, Handler } from '../protocol/ttrpc/server.js';
import { addEntropy, setRealtimeClock } from '../native/addon/index.js';
import { readCgroupStats } from './cgroup-stats.js';
import { applyClaim, type GuestTime } from './claim.js';
import { limitsFor, type CgroupManager, type Cgroup } from './cgroups.js';
import { Container } from './container.js';
import { AlreadyExistsError, InternalError, NotFoundError, SpecError, StateError } from './errors.js';
import type { OciLinuxResources, OciSpec } from './oci.js';
import { encodePlan } from './plan-encode.js';
import { GuestNetwork } from './network.js';
import { HelperProcess, trySignal, type HelperOptions } from './process.js';
import { SpareHelper } from './spare-helper.js';
import { computeCreatePlan, computeExecPlan, type JoinableNamespace } from './spec-plan.js';
import { runStartContainerHooks, startContainerHooksFrom, type StartHooks } from './start-hooks.js';
import { AGENT_VERSION } from './version.js';

/** ReadStdout/ReadStderr never return more than this, whatever max_len asks (well under the 4 MiB frame cap). */
export const MAX_READ = 1 << 20;
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export interface AgentServiceOptions {
  /** Path of hull-container-init (/hull/hull-container-init in the guest). */
  helperPath: string;
  /** null: no cgroups (limits are refused with a warning, ListProcesses uses known pids only). */
  cgroups: CgroupManager | null;
  log: Logger;
  /** Runs after DestroySandbox has replied and everything was killed and synced. */
  powerOff: () => void | Promise<void>;
  /** Flushes guest filesystems before power-off. */
  sync?: () => void;
  powerOffDelayMs?: number;
  /** Per-stream buffer of unread output before the pipe is paused. */
  outputCap?: number;
  setupTimeoutMs?: number;
  startTimeoutMs?: number;
  /** RemoveContainer's wait when the request says 0. */
  removeTimeoutMs?: number;
  /** For bind sources (fs.realpathSync by default). */
  realpath?: (p: string) => string;
  procRoot?: string;
  /** Where a terminal process's pty is opened (see HelperOptions.ptmxPaths); tests point it at the host's. */
  ptmxPaths?: (workloadPid: number) => string[];
  /** Applies SetupNetwork; default: the guest's own (busybox ip). */
  network?: GuestNetwork;
  /**
   * Keep one helper spawned ahead of need, for the next CreateContainer/ExecProcess (agent/spare-helper.ts): spawning
   * one costs 20-250 ms under TCG. Spawned once the calls pause for spareHelperIdleMs. Default false (start.ts: true).
   */
  spareHelper?: boolean;
  /** Default SPARE_IDLE_MS (tests shorten it). */
  spareHelperIdleMs?: number;
  /** The guest's clock and entropy pool, for Claim; default: the kernel's (native addon). */
  guestTime?: GuestTime;
  /** /sys, where Claim finds and unbinds NICs; tests point it at a copy. */
  sysRoot?: string;
}

const KERNEL_TIME: GuestTime = { setRealtimeClock, addEntropy, now: () => Date.now() };

export class AgentService {
  private readonly containers = new Map<string, Container>();
  private readonly creating = new Set<string>();
  private destroying = false;
  private readonly network: GuestNetwork;
  private readonly spare: SpareHelper | null;
  /** Set by Claim: settles with an error (or none) once the NICs the sandbox does not use are gone. */
  private claimed: Promise<Error | undefined> | undefined;

  constructor(private readonly opts: AgentServiceOptions) {
    this.network = opts.network ?? new GuestNetwork({ log: opts.log.child({ component: 'network' }) });
    this.spare = opts.spareHelper ? new SpareHelper(opts.helperPath, opts.log.child({ component: 'spare-helper' }), opts.spareHelperIdleMs) : null;
  }

  /** The spare helper's pid, 0 when there is none (tests). */
  get spareHelperPid(): number {
    return this.spare?.pid ?? 0;
  }

  /** Kills the spare helper (the agent is stopping; DestroySandbox does this itself). */
  async close(): Promise<void> {
    await this.spare?.close();
  }

  /** Handlers keyed by the RPC names of agent.proto, for TtrpcServer.registerService. */
  handlers(): Record<string, Handler> {
    const handlers = this.rpcHandlers();
    const spare = this.spare;
    if (!spare) return handlers;
    // The spare is spawned when the calls pause: each call's arrival and completion tell it (agent/spare-helper.ts).
    const watched = Object.entries(handlers).map(([name, handler]): [string, Handler] => [
      name,
      async (request, ctx) => {
        spare.activity();
        try {
          return await handler(request, ctx);
        } finally {
          spare.activity();
        }
      },
    ]);
    return Object.fromEntries(watched);
  }

  private rpcHandlers(): Record<string, Handler> {
    return {
      Health: () => this.health(),
      GuestDetails: () => this.guestDetails(),
      CreateContainer: (r: T.CreateContainerRequest) => this.createContainer(r),
      StartContainer: (r: T.ContainerRef) => this.startContainer(r),
      ExecProcess: (r: T.ExecProcessRequest) => this.execProcess(r),
      SignalProcess: (r: T.SignalProcessRequest) => this.signalProcess(r),
      WaitProcess: (r: T.ProcessRef, ctx: CallContext) => this.waitProcess(r, ctx.signal),
      WriteStdin: (r: T.WriteStdinRequest, ctx: CallContext) => this.writeStdin(r, ctx.signal),
      CloseStdin: (r: T.ProcessRef) => this.closeStdin(r),
      ReadStdout: (r: T.ReadStreamRequest, ctx: CallContext) => this.readStream(r, 'stdout', ctx.signal),
      ReadStderr: (r: T.ReadStreamRequest, ctx: CallContext) => this.readStream(r, 'stderr', ctx.signal),
      ListProcesses: (r: T.ContainerRef) => this.listProcesses(r),
      RemoveProcess: (r: T.ProcessRef) => this.removeProcess(r),
      RemoveContainer: (r: T.RemoveContainerRequest) => this.removeContainer(r),
      DestroySandbox: () => this.destroySandbox(),
      StatsContainer: (r: T.ContainerRef) => this.statsContainer(r),
      UpdateContainer: (r: T.UpdateContainerRequest) => this.updateContainer(r),
      ResizePty: (r: T.ResizePtyRequest) => this.resizePty(r),
      SetupNetwork: async (r: T.SetupNetworkRequest) => {
        await this.network.setup(r);
        return {};
      },
      Claim: (r: T.ClaimRequest) => this.claim(r),
    };
  }

  health(): T.HealthResponse {
    return { status: 'SERVING', agentVersion: AGENT_VERSION };
  }

  guestDetails(): T.GuestDetailsResponse {
    return {
      kernelRelease: os.release(),
      vcpus: os.availableParallelism(),
      memoryBytes: os.totalmem(),
      agentVersion: AGENT_VERSION,
      uptimeSeconds: os.uptime(),
    };
  }

  async createContainer(req: T.CreateContainerRequest): Promise<T.CreateContainerResponse> {
    const t0 = performance.now();
    const id = checkId(req.containerId, 'container id');
    if (this.destroying) throw new StateError('the sandbox is being destroyed');
    if (this.containers.has(id) || this.creating.has(id)) throw new AlreadyExistsError(`container ${id} already exists`);
    this.creating.add(id);
    const log = this.opts.log.child({ container: id });
    let cgroup: Cgroup | null = null;
    try {
      const spec = parseJson(req.specJson, 'spec_json') as OciSpec;
      const cgroupPath = this.opts.cgroups?.pathFor(id);
      const { plan, warnings } = computeCreatePlan({
        spec,
        rootfsPath: req.rootfsPath,
        cgroupPath,
        resolvePath: this.opts.realpath ?? realpathSync,
        containerNamespace: (pid, type) => this.containerNamespace(pid, type),
        ...(req.hostHostname ? { hostHostname: req.hostHostname } : {}),
      });
      const limits = limitsFor(spec.linux?.resources);
      const startHooks = startContainerHooksFrom(spec);
      if (!existsSync(plan.rootfs!)) throw new SpecError(`rootfs ${plan.rootfs} does not exist in the guest`);
      for (const w of warnings) log.warn(w);

      const planned = performance.now();
      if (this.opts.cgroups) {
        const made = this.opts.cgroups.create(id, limits);
        cgroup = made.cgroup;
        for (const w of made.warnings) log.warn(w);
      } else if (Object.keys(limits).length) {
        log.warn('linux.resources ignored: no cgroup hierarchy');
      }

      const cgroupMade = performance.now();
      const init = await this.runHelper({
        plan: encodePlan(plan),
        stdin: req.stdin,
        terminal: plan.terminal === true,
        windowSize: plan.consoleSize,
        ptmxPaths: this.opts.ptmxPaths,
        label: `container ${id}`,
        outputCap: this.opts.outputCap,
        setupTimeoutMs: this.opts.setupTimeoutMs,
        log,
      });
      const container = new Container(id, init, cgroup, plan.seccomp);
      if (startHooks.length) {
        container.startHooks = {
          hooks: startHooks,
          process: spec.process,
          // The host's bundle (runc's state); without one, the container's directory in the share stands for it.
          state: { ociVersion: spec.ociVersion ?? '', id, bundle: req.bundle || path.posix.dirname(req.rootfsPath), annotations: spec.annotations },
        };
      }
      this.containers.set(id, container);
      void init.exited.then((st) => log.info(st, 'container init exited'));
      const ms = (a: number, b: number): number => Math.round(b - a);
      log.info({ pid: init.pid, ms: ms(t0, performance.now()), planMs: ms(t0, planned), cgroupMs: ms(planned, cgroupMade) }, 'container created');
      return { pid: init.pid };
    } catch (err) {
      try {
        cgroup?.remove();
      } catch (e) {
        log.warn({ err: (e as Error).message }, 'cannot remove the cgroup of a failed create');
      }
      throw err;
    } finally {
      this.creating.delete(id);
    }
  }

  /** A helper set up with this plan: the spare when there is one, else a fresh one (HelperProcess.spawn). */
  private runHelper(opts: Omit<HelperOptions, 'helperPath'>): Promise<HelperProcess> {
    return HelperProcess.spawn({ ...opts, helperPath: this.opts.helperPath }, this.spare?.take());
  }

  /** A pooled VM handed to its sandbox (agent/claim.ts); once only. */
  claim(req: T.ClaimRequest): T.ClaimResponse {
    if (this.claimed) throw new StateError('the VM was claimed already');
    const applied = applyClaim(req, { time: this.opts.guestTime ?? KERNEL_TIME, log: this.opts.log, ...(this.opts.sysRoot ? { sysRoot: this.opts.sysRoot } : {}) });
    this.claimed = applied.nicsRemoved;
    return applied.response;
  }

  async startContainer(req: T.ContainerRef): Promise<T.StartResponse> {
    const c = this.get(req.containerId);
    if (c.state !== 'created') throw new StateError(`container ${c.id} is ${c.state}, not created`);
    if (c.starting) throw new StateError(`container ${c.id} is already being started`);
    c.starting = true;
    try {
      await this.network.ready(); // the pod's network before any of its workload
      const claimFailure = await this.claimed; // and only the pod's NICs
      if (claimFailure) throw claimFailure;
      if (c.startHooks) await this.runStartHooks(c, c.startHooks);
      await c.init.start(this.opts.startTimeoutMs);
    } finally {
      c.starting = false;
    }
    return { pid: c.init.pid };
  }

  /** startContainer hooks, in the container before its init execs; a failure stops the container (runtime-spec). */
  private async runStartHooks(c: Container, hooks: StartHooks): Promise<void> {
    try {
      await runStartContainerHooks({
        ...hooks,
        initPid: c.init.pid,
        cgroupPath: c.cgroup?.path,
        ...(c.seccomp ? { seccomp: c.seccomp } : {}),
        helperPath: this.opts.helperPath,
        setupTimeoutMs: this.opts.setupTimeoutMs,
        startTimeoutMs: this.opts.startTimeoutMs,
        procRoot: this.opts.procRoot,
        log: this.opts.log.child({ container: c.id }),
      });
    } catch (err) {
      this.opts.log.warn({ container: c.id, err: (err as Error).message }, 'startContainer hook failed; stopping the container');
      c.init.kill('SIGKILL');
      throw err;
    }
  }

  async execProcess(req: T.ExecProcessRequest): Promise<T.StartResponse> {
    const t0 = performance.now();
    const c = this.get(req.containerId);
    const execId = checkId(req.execId, 'exec id');
    if (c.state !== 'running') throw new StateError(`container ${c.id} is ${c.state}, not running`);
    if (c.execs.has(execId) || c.pendingExecs.has(execId)) throw new AlreadyExistsError(`exec ${execId} already exists in container ${c.id}`);
    const processSpec = parseJson(req.processJson, 'process_json');
    const { plan, warnings } = computeExecPlan({
      process: processSpec,
      joinPid: c.init.pid,
      cgroupPath: c.cgroup?.path,
      ...(c.seccomp ? { seccomp: c.seccomp } : {}),
    });
    const log = this.opts.log.child({ container: c.id, exec: execId });
    for (const w of warnings) log.warn(w);

    c.pendingExecs.add(execId);
    try {
      const proc = await this.runHelper({
        plan: encodePlan(plan),
        stdin: req.stdin,
        terminal: plan.terminal === true,
        windowSize: plan.consoleSize,
        ptmxPaths: this.opts.ptmxPaths,
        label: `exec ${execId} in container ${c.id}`,
        outputCap: this.opts.outputCap,
        setupTimeoutMs: this.opts.setupTimeoutMs,
        log,
      });
      try {
        await proc.start(this.opts.startTimeoutMs);
      } catch (err) {
        proc.kill();
        proc.destroyStdio();
        throw err;
      }
      c.execs.set(execId, proc);
      void proc.exited.then((st) => log.debug(st, 'exec exited'));
      log.debug({ pid: proc.pid, ms: Math.round(performance.now() - t0) }, 'exec started');
      return { pid: proc.pid };
    } finally {
      c.pendingExecs.delete(execId);
    }
  }

  signalProcess(req: T.SignalProcessRequest): T.Empty {
    const c = this.get(req.containerId);
    const sig = req.signal;
    if (!Number.isInteger(sig) || sig < 0 || sig > 64) throw new SpecError(`signal ${sig} is not a Linux signal number`);
    if (req.all) {
      for (const pid of c.workloadPids()) trySignal(pid, sig);
      return {};
    }
    const p = c.process(req.execId);
    if (!p.signal(sig)) throw new NotFoundError(`process ${req.execId || 'init'} of container ${c.id} has already finished`);
    return {};
  }

  async waitProcess(req: T.ProcessRef, signal: AbortSignal): Promise<T.WaitProcessResponse> {
    const p = this.get(req.containerId).process(req.execId);
    return raceAbort(p.exited, signal);
  }

  async writeStdin(req: T.WriteStdinRequest, signal: AbortSignal): Promise<T.WriteStdinResponse> {
    const p = this.get(req.containerId).process(req.execId);
    return { len: await p.writeStdin(req.data, signal) };
  }

  closeStdin(req: T.ProcessRef): T.Empty {
    this.get(req.containerId).process(req.execId).closeStdin();
    return {};
  }

  async readStream(req: T.ReadStreamRequest, which: 'stdout' | 'stderr', signal: AbortSignal): Promise<T.ReadStreamResponse> {
    const p = this.get(req.containerId).process(req.execId);
    const max = req.maxLen > 0 ? Math.min(req.maxLen, MAX_READ) : MAX_READ;
    return { data: await p[which].read(max, signal) };
  }

  listProcesses(req: T.ContainerRef): T.ListProcessesResponse {
    const c = this.get(req.containerId);
    const procRoot = this.opts.procRoot ?? '/proc';
    const processes: T.ProcessInfo[] = [];
    for (const pid of c.workloadPids()) {
      let command: string;
      try {
        command = readFileSync(path.join(procRoot, String(pid), 'comm'), 'utf8').trim();
      } catch {
        continue; // exited since the cgroup was read
      }
      processes.push({ pid, execId: c.execIdOf(pid) ?? '', command });
    }
    return { processes };
  }

  statsContainer(req: T.ContainerRef): T.StatsContainerResponse {
    const c = this.get(req.containerId);
    if (!c.cgroup) throw new StateError(`container ${c.id} has no cgroup: no statistics`);
    return readCgroupStats(c.cgroup.path);
  }

  resizePty(req: T.ResizePtyRequest): T.Empty {
    const p = this.get(req.containerId).process(req.execId);
    if (!p.terminal) throw new StateError(`process ${req.execId || 'init'} of container ${req.containerId} has no terminal`);
    if (req.width > 0xffff || req.height > 0xffff) throw new SpecError(`window size ${req.width}x${req.height} is too large`);
    p.resize(req.height, req.width);
    return {};
  }

  updateContainer(req: T.UpdateContainerRequest): T.Empty {
    const c = this.get(req.containerId);
    if (c.state === 'stopped') throw new StateError(`container ${c.id} is stopped`);
    if (!c.cgroup) throw new StateError(`container ${c.id} has no cgroup: its resources cannot be updated`);
    const resources = parseJson(req.resourcesJson, 'resources_json');
    if (typeof resources !== 'object' || resources === null || Array.isArray(resources)) {
      throw new SpecError('resources_json must be a LinuxResources object');
    }
    const limits = limitsFor(resources as OciLinuxResources);
    const log = this.opts.log.child({ container: c.id });
    for (const w of c.cgroup.apply(limits)) log.warn(w);
    log.info({ limits }, 'resources updated');
    return {};
  }

  removeProcess(req: T.ProcessRef): T.Empty {
    const c = this.get(req.containerId);
    if (req.execId === '') throw new SpecError(`the init process of container ${c.id} goes with the container (RemoveContainer)`);
    const p = c.process(req.execId);
    if (p.running) throw new StateError(`exec ${req.execId} in container ${c.id} is still running`);
    p.destroyStdio();
    c.execs.delete(req.execId);
    return {};
  }

  async removeContainer(req: T.RemoveContainerRequest): Promise<T.Empty> {
    const c = this.get(req.containerId);
    c.removing ??= this.remove(c, req.timeoutMs > 0 ? req.timeoutMs : (this.opts.removeTimeoutMs ?? 5000)).finally(() => {
      c.removing = undefined;
    });
    await c.removing;
    return {};
  }

  /** Kills every container, syncs, replies, then powers off (after a short delay so the reply leaves the guest). */
  async destroySandbox(): Promise<T.Empty> {
    this.destroying = true;
    const log = this.opts.log;
    await Promise.all([
      this.spare?.close(),
      ...[...this.containers.values()].map((c) =>
        this.remove(c, 2000).catch((err: unknown) => log.warn({ container: c.id, err: (err as Error).message }, 'kill on destroy')),
      ),
    ]);
    try {
      this.opts.sync?.();
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'sync failed');
    }
    log.info('powering off');
    setTimeout(() => {
      Promise.resolve()
        .then(() => this.opts.powerOff())
        .catch((err: unknown) => log.error({ err: (err as Error).message }, 'power-off failed'));
    }, this.opts.powerOffDelayMs ?? 100);
    return {};
  }

  /**
   * SIGKILLs the workload processes first, so each helper reaps its child and exits itself (a helper killed first
   * would leave its child to the agent, which as PID 1 under Node cannot reap strangers); helpers left after half
   * the timeout are killed too. Then the cgroup goes.
   */
  private async remove(c: Container, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const procs = c.processes();
    const allExited = Promise.all(procs.map((p) => p.exited));
    const killWorkloads = (): void => {
      for (const p of procs) if (p.running && p.pid > 0) trySignal(p.pid, 'SIGKILL');
      for (const pid of c.workloadPids()) trySignal(pid, 'SIGKILL');
    };
    killWorkloads();
    const half = Math.max(50, Math.floor(timeoutMs / 2));
    if (!(await settlesWithin(allExited, half))) {
      killWorkloads();
      for (const p of procs) p.kill('SIGKILL');
      c.cgroup?.killAll();
    }
    if (!(await settlesWithin(allExited, Math.max(0, deadline - Date.now())))) {
      throw new TtrpcError(Code.DeadlineExceeded, `container ${c.id}: processes still running ${timeoutMs} ms after SIGKILL`);
    }
    for (const p of procs) p.destroyStdio();
    if (c.cgroup) await removeCgroup(c.cgroup, deadline);
    this.containers.delete(c.id);
    this.opts.log.info({ container: c.id }, 'container removed');
  }

  /**
   * For namespace paths in CreateContainer: the nsfs inode of namespace `type` of pid, when pid is the init of a running
   * container of this agent (undefined otherwise). The workload stays its helper's child until the helper reaps it,
   * so a parent check after the stat makes sure the inode is that container's, not a process's that reused the pid.
   */
  private containerNamespace(pid: number, type: JoinableNamespace): number | undefined {
    const c = [...this.containers.values()].find((x) => x.init.pid === pid);
    if (!c || c.state !== 'running') return undefined;
    const procDir = path.join(this.opts.procRoot ?? '/proc', String(pid));
    try {
      const inode = statSync(path.join(procDir, 'ns', type)).ino;
      const ppid = /^PPid:\s+(\d+)$/m.exec(readFileSync(path.join(procDir, 'status'), 'utf8'))?.[1];
      return Number(ppid) === c.init.helperPid ? inode : undefined;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ESRCH') return undefined; // exited since the state check
      throw new InternalError(`cannot read the ${type} namespace of pid ${pid}: ${(err as Error).message}`, { cause: err });
    }
  }

  private get(containerId: string): Container {
    const c = this.containers.get(containerId);
    if (!c) throw new NotFoundError(`container ${containerId} not found`);
    return c;
  }
}

function checkId(id: string, what: string): string {
  if (!ID_PATTERN.test(id)) throw new SpecError(`${what} "${id}" must be 1-128 of [A-Za-z0-9_.-], starting alphanumeric`);
  return id;
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new SpecError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

function raceAbort<V>(p: Promise<V>, signal: AbortSignal): Promise<V> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<V>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
  const done = p.then(() => true);
  const result = await Promise.race([done, timeout]);
  clearTimeout(timer);
  return result;
}

/** rmdir fails with EBUSY until the kernel has finished tearing the processes down; retry until the deadline. */
async function removeCgroup(cgroup: Cgroup, deadline: number): Promise<void> {
  for (;;) {
    try {
      cgroup.remove();
      return;
    } catch (err) {
      if (Date.now() >= deadline) {
        throw new TtrpcError(Code.Internal, `cannot remove cgroup ${cgroup.path}: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
