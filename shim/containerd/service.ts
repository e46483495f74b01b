// containerd.task.v2.Task for hull: one service per pod owns every container of the pod behind one map, and one VM.
// The first Create boots the VM; later containers of the pod join it; deleting the last one stops it.
// Ordering rules from containerd's runc shim: a lock held across Start (and taken by every exit) makes TaskStart go
// out before the TaskExit of the same process; TaskExit is published only after the process's output has been
// written to its FIFOs. Errors become ttrpc codes at the edge (handlers()), with containerd's messages.
// The pid reported for every process of the pod (Create, Start, State, Delete, Connect, the task events) is a host pid
// that stands for it: the pod VMM's, as Kata reports its hypervisor's. A guest pid would name some unrelated host
// process to whoever trusts it (`kill <task pid>` in containerd's CRI tests, an operator); killing the VMM ends the
// pod like any VM death. Guest pids stay inside: namespace paths (guest-spec.ts) and Pids (the processes in the guest).
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { TtrpcError } from '../../protocol/errors.js';
import { Code, type CodeValue } from '../../protocol/ttrpc/codes.js';
import type { Handler } from '../../protocol/ttrpc/server.js';
import { loadBundle } from '../bundle.js';
import { hooksOf } from '../hooks.js';
import { errorKind, HullError, oneLine, type HullErrorKind } from '../errors.js';
import { VM_DIED_STATUS } from '../exit-status.js';
import { pidFromGuest } from '../guest-values.js';
import type { OciLinuxResources } from '../oci-spec.js';
import { ProcessState } from '../sandbox/process-state.js';
import { planHostBinds } from '../sandbox/share-mounts.js';
import { pumpInput, pumpOutput, STDIO_CHUNK } from '../sandbox/stdio-relay.js';
import { superviseProcess } from '../sandbox/supervisor.js';
import { beyondVm, memoryToGrowTo } from '../sandbox/vm-sizing.js';
import { Topic, type EventSink } from './events.js';
import { adaptSpecForGuest, type NamespaceTarget } from './guest-spec.js';
import { systemdCgroupRequested } from './runtime-options.js';
import { metricsFromGuest, oomKillsFromGuest } from './metrics.js';
import type { MountSpec, PodAgent, PodVm, PodVmFactory, RootfsMounter } from './pod.js';
import { TaskStatus, packAny, toTimestamp, type AnyMessage, type Timestamp } from './protos.js';
import type { IoOpener, ProcessIo, StdioPaths } from './stdio.js';

export { VM_DIED_STATUS };
/** How long, after a process exited, its output may still take to reach the FIFOs before TaskExit goes out anyway. */
const OUTPUT_DRAIN_MS = 5000;
export const SHIM_VERSION = 'hull-0.1.0';

interface Proc {
  containerId: string;
  /** '' for the container's init. */
  execId: string;
  /** The host pid reported for it: the pod VMM's, once the process exists in the guest (0 before). */
  pid: number;
  /** Its pid in the guest (0 before it exists there). */
  guestPid: number;
  /** created → running → stopped (created → stopped when it never started); the init also running ↔ paused. */
  state: ProcessState;
  exitStatus: number;
  exitedAt?: Date;
  stdio: StdioPaths;
  io?: ProcessIo;
  /** OCI process JSON (execs). */
  processJson?: string;
  exited: Promise<void>;
  markExited: () => void;
  inputStarted: boolean;
  /** CloseIO{stdin} arrived (possibly before Start opened the exec's stdio). */
  stdinCloseRequested: boolean;
  /** ResizePty of an exec before its Start: applied once the agent has started it. */
  pendingSize?: { width: number; height: number };
}

interface Container {
  id: string;
  bundle: string;
  init: Proc;
  execs: Map<string, Proc>;
  /** <bundle>/rootfs when we mounted containerd's rootfs mounts there. */
  mountedRootfs?: string;
  shared: boolean;
  /** OOM kills of its guest cgroup already reported with TaskOOM. */
  oomKills: number;
}

export interface TaskServiceOptions {
  namespace: string;
  log: Logger;
  events: EventSink;
  vms: PodVmFactory;
  mounter: RootfsMounter;
  openIo: IoOpener;
  /** Called once Shutdown decided the shim should exit. */
  onShutdown: () => void;
  /** Called whenever the set of containers changes (for the on-disk record the delete command reads). */
  onContainersChanged?: (containers: Array<{ id: string; bundle: string }>) => void;
}

export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  async run<T>(fn: () => Promise<T> | T): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

function newProc(containerId: string, execId: string, stdio: StdioPaths): Proc {
  let markExited!: () => void;
  const exited = new Promise<void>((r) => (markExited = r));
  return {
    containerId,
    execId,
    pid: 0,
    guestPid: 0,
    state: new ProcessState(execId ? `process ${execId} of container ${containerId}` : `container ${containerId}`, 'created'),
    exitStatus: 0,
    stdio,
    exited,
    markExited,
    inputStarted: false,
    stdinCloseRequested: false,
  };
}

const notCreated = (): TtrpcError => new TtrpcError(Code.NotFound, 'container not created');

/** CRI's annotation on each container of a pod: the sandbox (pause) container's id. */
const CRI_SANDBOX_ID = 'io.kubernetes.cri.sandbox-id';

/** The host pid reported for the pod's processes: its VMM's (0 when the VM reports none). */
const hostPidOf = (vm: PodVm): number => vm.processes().vmm?.pid ?? 0;

export class TaskService {
  private readonly containers = new Map<string, Container>();
  private readonly creating = new Set<string>();
  /** Held across Start and by every exit: TaskStart always precedes TaskExit. */
  private readonly startLock = new Mutex();
  /** Serializes VM boot and teardown. */
  private readonly podLock = new Mutex();
  private vm: PodVm | undefined;
  private vmDeadReason: string | undefined;
  private shuttingDown = false;
  private readonly log: Logger;

  constructor(private readonly opts: TaskServiceOptions) {
    this.log = opts.log;
  }

  handlers(): Record<string, Handler> {
    const wrap =
      (name: string, fn: (req: any) => unknown): Handler =>
      async (req: any) => {
        try {
          return await fn(req);
        } catch (err) {
          const mapped = toTtrpcError(err);
          if (mapped.code === Code.Unknown || mapped.code === Code.Internal) this.log.error({ method: name, err: oneLine(err) }, 'request failed');
          else this.log.debug({ method: name, err: mapped.message }, 'request refused');
          throw mapped;
        }
      };
    return {
      State: wrap('State', (r) => this.state(r)),
      Create: wrap('Create', (r) => this.create(r)),
      Start: wrap('Start', (r) => this.start(r)),
      Delete: wrap('Delete', (r) => this.delete(r)),
      Pids: wrap('Pids', (r) => this.pids(r)),
      Pause: wrap('Pause', (r) => this.pause(r)),
      Resume: wrap('Resume', (r) => this.resume(r)),
      Checkpoint: wrap('Checkpoint', () => {
        throw new TtrpcError(Code.Unimplemented, 'checkpoint is not supported by hull');
      }),
      Kill: wrap('Kill', (r) => this.kill(r)),
      Exec: wrap('Exec', (r) => this.exec(r)),
      ResizePty: wrap('ResizePty', (r) => this.resizePty(r)),
      CloseIO: wrap('CloseIO', (r) => this.closeIO(r)),
      Update: wrap('Update', (r) => this.update(r)),
      Wait: wrap('Wait', (r) => this.wait(r)),
      Stats: wrap('Stats', (r) => this.stats(r)),
      Connect: wrap('Connect', (r) => this.connect(r)),
      Shutdown: wrap('Shutdown', (r) => this.shutdown(r)),
    };
  }

  get containerCount(): number {
    return this.containers.size;
  }

  // ---- lookups

  private container(id: string): Container {
    const c = this.containers.get(id);
    if (!c) throw notCreated();
    return c;
  }

  private proc(id: string, execId: string): { c: Container; p: Proc } {
    const c = this.container(id);
    if (!execId) return { c, p: c.init };
    const p = c.execs.get(execId);
    if (!p) throw new TtrpcError(Code.NotFound, `process ${execId} does not exist`);
    return { c, p };
  }

  /**
   * Whose namespaces a spec's `/proc/<pod host pid>/ns/…` paths name: the container the CRI sandbox-id annotation
   * names when it is a live container of this pod (CRI writes the sandbox container's pid), else the pod's first
   * live container. Undefined when there is none (the paths are then dropped).
   */
  private namespaceTarget(vm: PodVm, annotations: Record<string, string> | undefined): NamespaceTarget | undefined {
    const hostPid = hostPidOf(vm);
    const live = [...this.containers.values()].filter((c) => !c.init.state.is('stopped') && c.init.guestPid > 0);
    const named = annotations?.[CRI_SANDBOX_ID];
    const target = live.find((c) => c.id === named) ?? live[0];
    return target && hostPid > 0 ? { hostPid, guestPid: target.init.guestPid } : undefined;
  }

  private notifyContainers(): void {
    this.opts.onContainersChanged?.([...this.containers.values()].map((c) => ({ id: c.id, bundle: c.bundle })));
  }

  // ---- RPCs

  async create(req: {
    id: string;
    bundle: string;
    rootfs: MountSpec[];
    terminal: boolean;
    stdin: string;
    stdout: string;
    stderr: string;
    checkpoint: string;
    options?: AnyMessage | null;
  }): Promise<{ pid: number }> {
    const { id } = req;
    if (!id) throw new TtrpcError(Code.InvalidArgument, 'container id is empty');
    if (this.containers.has(id) || this.creating.has(id)) throw new TtrpcError(Code.AlreadyExists, `container ${id}: already exists`);
    if (req.checkpoint) throw new TtrpcError(Code.Unimplemented, 'restoring from a checkpoint is not supported by hull');
    if (this.shuttingDown) throw new TtrpcError(Code.FailedPrecondition, 'the shim is shutting down');
    this.creating.add(id);
    const log = this.log.child({ container: id });
    const stdio: StdioPaths = { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal };
    const c: Container = { id, bundle: req.bundle, init: newProc(id, '', stdio), execs: new Map(), shared: false, oomKills: 0 };
    let vm: PodVm | undefined;
    try {
      const rootfsDir = path.join(req.bundle, 'rootfs');
      if (req.rootfs.length > 0) {
        this.opts.mounter.mount(req.rootfs, rootfsDir);
        c.mountedRootfs = rootfsDir;
      }
      const bundle = loadBundle(req.bundle, { requireProcess: true });
      const hostHooks = Object.keys(hooksOf(bundle.spec)).filter((kind) => kind !== 'startContainer');
      if (hostHooks.length) log.warn({ hooks: hostHooks }, 'the containerd shim does not run OCI hooks on the host yet (docs/hooks.md)');
      const hostBinds = planHostBinds(bundle.specJson, id, bundle.dir);
      c.init.io = await this.opts.openIo(stdio, { containerId: id, namespace: this.opts.namespace });
      const booted = await this.podLock.run(async () => {
        if (this.vmDeadReason) throw new HullError('unavailable', `the pod's VM died: ${this.vmDeadReason}`);
        if (!this.vm) {
          log.info('booting the pod VM');
          const started = Date.now();
          this.vm = await this.opts.vms.boot({
            containerId: id,
            hostRootfs: bundle.rootfs,
            binds: hostBinds.binds,
            spec: bundle.spec,
            systemdCgroup: systemdCgroupRequested(req.options),
          });
          const booted = this.vm;
          log.info({ ms: Date.now() - started }, 'pod VM ready');
          void booted.died.then((reason) => this.onVmDied(booted, reason));
          return { vm: booted, guestRootfs: booted.addContainer(id, bundle.rootfs, hostBinds.binds) };
        }
        return { vm: this.vm, guestRootfs: this.vm.addContainer(id, bundle.rootfs, hostBinds.binds) };
      });
      vm = booted.vm;
      c.shared = true;
      const guestSpec = adaptSpecForGuest(hostBinds.specJson, this.namespaceTarget(vm, bundle.spec.annotations));
      for (const note of guestSpec.notes) log.info(note);
      const { pid } = await vm.agent.createContainer({
        containerId: id,
        specJson: guestSpec.specJson,
        rootfsPath: booted.guestRootfs,
        stdin: Boolean(req.stdin),
        bundle: bundle.dir,
      });
      c.init.guestPid = pidFromGuest(pid);
      c.init.pid = hostPidOf(vm);
      this.containers.set(id, c);
      this.notifyContainers();
      this.watch(vm, c, c.init);
      this.opts.events.publish(Topic.create, {
        containerId: id,
        bundle: req.bundle,
        rootfs: req.rootfs,
        io: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
        checkpoint: req.checkpoint,
        pid: c.init.pid,
      });
      log.info({ pid: c.init.pid, guestPid: c.init.guestPid }, 'container created');
      return { pid: c.init.pid };
    } catch (err) {
      log.error({ err: oneLine(err) }, 'create failed');
      await this.releaseContainer(c, vm).catch((e: unknown) => log.warn({ err: oneLine(e) }, 'cleanup after failed create'));
      throw err;
    } finally {
      this.creating.delete(id);
    }
  }

  async start(req: { id: string; execId: string }): Promise<{ pid: number }> {
    const { c, p } = this.proc(req.id, req.execId);
    const vm = this.liveVm();
    return this.startLock.run(async () => {
      if (!p.state.is('created')) throw new TtrpcError(Code.FailedPrecondition, `process ${req.execId || req.id} was already started`);
      if (!p.execId) {
        const { pid } = await vm.agent.startContainer(c.id);
        p.guestPid = pidFromGuest(pid) || p.guestPid;
        p.state.moveTo('running');
        this.opts.events.publish(Topic.start, { containerId: c.id, pid: p.pid });
      } else {
        try {
          p.io = await this.opts.openIo(p.stdio, { containerId: c.id, namespace: this.opts.namespace });
          if (p.stdinCloseRequested) p.io.closeStdin();
          const { pid } = await vm.agent.execProcess({
            containerId: c.id,
            execId: p.execId,
            processJson: p.processJson ?? '{}',
            stdin: Boolean(p.stdio.stdin),
          });
          p.guestPid = pidFromGuest(pid);
          p.pid = hostPidOf(vm);
          if (p.pendingSize) {
            const size = p.pendingSize;
            await vm.agent
              .resizePty({ containerId: c.id, execId: p.execId, ...size })
              .catch((err: unknown) => this.log.debug({ err: oneLine(err) }, 'resize after exec start'));
          }
        } catch (err) {
          await p.io?.close().catch(() => undefined);
          p.io = undefined;
          throw err;
        }
        p.state.moveTo('running');
        this.watch(vm, c, p);
        this.opts.events.publish(Topic.execStarted, { containerId: c.id, execId: p.execId, pid: p.pid });
      }
      this.log.info({ container: c.id, exec: p.execId || undefined, pid: p.pid, guestPid: p.guestPid }, 'process started');
      return { pid: p.pid };
    });
  }

  /** Relays the process's stdio, waits for its exit (or the VM's death), then publishes TaskExit. */
  private watch(vm: PodVm, c: Container, p: Proc): void {
    const agent = vm.agent;
    const io = p.io!;
    const outputs = Promise.all([
      pumpOutput(() => agent.readStdout(c.id, p.execId, STDIO_CHUNK), io.stdout),
      pumpOutput(() => agent.readStderr(c.id, p.execId, STDIO_CHUNK), io.stderr),
    ]).catch((err: unknown) => this.log.debug({ container: c.id, exec: p.execId, err: oneLine(err) }, 'output relay ended'));
    if (io.stdin && !p.inputStarted) {
      p.inputStarted = true;
      const input = pumpInput(
        io.stdin,
        (data) => agent.writeStdin(c.id, p.execId, data),
        () => agent.closeStdin(c.id, p.execId),
      );
      input.done.catch((err: unknown) => this.log.debug({ container: c.id, err: oneLine(err) }, 'stdin relay ended'));
    }
    void (async () => {
      const outcome = await superviseProcess(agent, vm.died, c.id, p.execId);
      const status = outcome.kind === 'exited' ? outcome.status : VM_DIED_STATUS;
      const vmDied = outcome.kind === 'vm-gone' ? outcome.reason : undefined;
      if (outcome.kind === 'lost') this.log.error({ container: c.id, exec: p.execId || undefined }, outcome.reason);
      if (vmDied === undefined) {
        await Promise.race([outputs, sleep(OUTPUT_DRAIN_MS)]);
        await this.reportOom(agent, c);
      } else {
        this.log.error(
          { container: c.id, exec: p.execId || undefined, reason: vmDied },
          `process ${p.execId || c.id} stopped because the VM died: ${vmDied}`,
        );
      }
      await io.close().catch(() => undefined);
      await this.startLock.run(() => {
        p.state.moveTo('stopped');
        p.exitStatus = status < 0 ? VM_DIED_STATUS : status;
        p.exitedAt = new Date();
        this.opts.events.publish(Topic.exit, {
          containerId: c.id,
          id: p.execId || c.id,
          pid: p.pid,
          exitStatus: p.exitStatus,
          exitedAt: toTimestamp(p.exitedAt),
        });
      });
      this.log.info({ container: c.id, exec: p.execId || undefined, exitStatus: p.exitStatus }, 'process exited');
      p.markExited();
    })();
  }

  /**
   * TaskOOM when the container's guest cgroup counted new OOM kills (memory.events oom_kill), published before the
   * TaskExit it explains: CRI turns it into the container's `OOMKilled` reason.
   */
  private async reportOom(agent: PodAgent, c: Container): Promise<void> {
    let kills: number;
    try {
      kills = oomKillsFromGuest(await agent.statsContainer(c.id));
    } catch (err) {
      this.log.warn({ container: c.id, err: oneLine(err) }, 'cannot read the OOM count of the container');
      return;
    }
    if (kills <= c.oomKills) return;
    c.oomKills = kills;
    this.log.warn({ container: c.id, oomKills: kills }, 'the guest killed a process of the container: out of memory');
    this.opts.events.publish(Topic.oom, { containerId: c.id });
  }

  private onVmDied(vm: PodVm, reason: string): void {
    if (this.vm !== vm) return;
    this.vmDeadReason = reason;
    this.log.error({ reason }, `the pod VM died: ${reason}`);
  }

  private liveVm(): PodVm {
    if (!this.vm) throw new TtrpcError(Code.FailedPrecondition, 'the pod has no VM');
    if (this.vmDeadReason) throw new TtrpcError(Code.FailedPrecondition, `the pod's VM died: ${this.vmDeadReason}`);
    return this.vm;
  }

  async delete(req: { id: string; execId: string }): Promise<{ pid: number; exitStatus: number; exitedAt?: Timestamp }> {
    const { c, p } = this.proc(req.id, req.execId);
    if (p.execId) {
      if (p.state.is('running')) throw new TtrpcError(Code.FailedPrecondition, `cannot delete running exec ${p.execId}`);
      c.execs.delete(p.execId);
      await p.io?.close().catch(() => undefined);
      if (this.vm && !this.vmDeadReason) {
        // The agent keeps an exited exec until told: without this, every exec of a long-lived pod stays in the guest.
        await this.vm.agent
          .removeProcess(c.id, p.execId)
          .catch((err: unknown) => this.log.warn({ err: oneLine(err), exec: p.execId }, 'forget the exec in the agent'));
      }
      return this.exitInfo(p);
    }
    // A paused task is a running one to containerd (its process is alive, only frozen).
    if (p.state.is('running', 'paused')) throw new TtrpcError(Code.FailedPrecondition, `cannot delete running task ${c.id}`);
    if (p.state.is('created') && this.vm && !this.vmDeadReason) {
      // A created, never started task is killed (runc's `delete` does the same).
      await this.vm.agent.removeContainer(c.id).catch((err: unknown) => this.log.warn({ err: oneLine(err) }, 'remove created container'));
      await Promise.race([p.exited, sleep(5000)]);
    }
    this.containers.delete(c.id);
    this.notifyContainers();
    await this.releaseContainer(c, this.vm);
    const info = this.exitInfo(p);
    this.opts.events.publish(Topic.delete, { containerId: c.id, pid: p.pid, exitStatus: p.exitStatus, exitedAt: info.exitedAt, id: c.id });
    this.log.info({ container: c.id }, 'container deleted');
    return info;
  }

  private exitInfo(p: Proc): { pid: number; exitStatus: number; exitedAt?: Timestamp } {
    return { pid: p.pid, exitStatus: p.exitStatus, ...(p.exitedAt ? { exitedAt: toTimestamp(p.exitedAt) } : {}) };
  }

  /** Frees what a container holds on the host and in the guest; stops the VM when no container is left. */
  private async releaseContainer(c: Container, vm: PodVm | undefined): Promise<void> {
    for (const e of c.execs.values()) await e.io?.close().catch(() => undefined);
    if (c.init.state.is('created', 'stopped')) await c.init.io?.close().catch(() => undefined);
    if (vm && !this.vmDeadReason && this.containers.size > 0) {
      await vm.agent.removeContainer(c.id).catch((err: unknown) => this.log.debug({ err: oneLine(err) }, 'remove container'));
    }
    if (vm && c.shared) {
      try {
        vm.removeContainer(c.id);
      } catch (err) {
        this.log.warn({ err: oneLine(err) }, 'unshare rootfs');
      }
    }
    await this.podLock.run(async () => {
      const othersCreating = [...this.creating].some((id) => id !== c.id);
      if (this.vm && this.containers.size === 0 && !othersCreating) {
        const old = this.vm;
        this.vm = undefined;
        this.vmDeadReason = undefined;
        this.log.info('last container gone: stopping the pod VM');
        await old.shutdown().catch((err: unknown) => this.log.warn({ err: oneLine(err) }, 'VM shutdown'));
      }
    });
    if (c.mountedRootfs) {
      try {
        this.opts.mounter.unmount(c.mountedRootfs);
      } catch (err) {
        this.log.warn({ err: oneLine(err) }, 'unmount rootfs');
      }
    }
  }

  state(req: { id: string; execId: string }): object {
    const { c, p } = this.proc(req.id, req.execId);
    let status: number = TaskStatus.UNKNOWN;
    if (p.state.is('created')) status = TaskStatus.CREATED;
    // Pausing freezes the whole container, so a running exec of a paused container is reported paused too.
    else if (p.state.is('paused') || (p.state.is('running') && c.init.state.is('paused'))) status = TaskStatus.PAUSED;
    else if (p.state.is('running')) status = TaskStatus.RUNNING;
    else status = TaskStatus.STOPPED;
    return {
      id: p.execId || c.id,
      bundle: c.bundle,
      pid: p.pid,
      status,
      stdin: p.stdio.stdin,
      stdout: p.stdio.stdout,
      stderr: p.stdio.stderr,
      terminal: p.stdio.terminal,
      exitStatus: p.exitStatus,
      ...(p.exitedAt ? { exitedAt: toTimestamp(p.exitedAt) } : {}),
      execId: p.execId,
    };
  }

  async pids(req: { id: string }): Promise<{ processes: Array<{ pid: number }> }> {
    const c = this.container(req.id);
    if (c.init.state.is('stopped') || !this.vm || this.vmDeadReason) return { processes: [] };
    const list = await this.vm.agent.listProcesses(c.id);
    return { processes: list.map((p) => ({ pid: pidFromGuest(p.pid) })) };
  }

  private checkPausable(c: Container): PodVm {
    const vm = this.liveVm();
    const others = [...this.containers.values()].filter((o) => o !== c && !o.init.state.is('stopped'));
    if (others.length > 0) {
      throw new TtrpcError(Code.Unimplemented, 'pausing one container of a multi-container pod is not supported by hull yet');
    }
    return vm;
  }

  async pause(req: { id: string }): Promise<object> {
    const c = this.container(req.id);
    // Pause of a paused task is a no-op, as in containerd: answered here, since the table has no paused → paused.
    if (c.init.state.is('paused')) return {};
    if (!c.init.state.is('running')) throw new TtrpcError(Code.FailedPrecondition, `task ${c.id} is not running`);
    const vm = this.checkPausable(c);
    await vm.pause();
    // While the VM paused, another Pause may have won (a no-op, as above) or the task may have stopped: the VM must
    // not stay frozen with nothing recorded as paused, and the move below refuses the stopped task.
    if (c.init.state.is('paused')) return {};
    if (!c.init.state.is('running')) await vm.resume();
    c.init.state.moveTo('paused');
    this.opts.events.publish(Topic.paused, { containerId: c.id });
    return {};
  }

  async resume(req: { id: string }): Promise<object> {
    const c = this.container(req.id);
    if (!c.init.state.is('paused')) throw new TtrpcError(Code.FailedPrecondition, `task ${c.id} is not paused`);
    await this.liveVm().resume();
    c.init.state.moveTo('running');
    this.opts.events.publish(Topic.resumed, { containerId: c.id });
    return {};
  }

  async kill(req: { id: string; execId: string; signal: number; all: boolean }): Promise<object> {
    const { c, p } = this.proc(req.id, req.execId);
    if (p.state.is('stopped')) throw new TtrpcError(Code.NotFound, 'process already finished');
    if (p.execId && p.state.is('created')) throw new TtrpcError(Code.FailedPrecondition, `exec ${p.execId} was not started`);
    const vm = this.liveVm();
    if (c.init.state.is('paused') && (req.signal === 9 || req.signal === 15)) {
      // A paused VM cannot deliver the signal; runc thaws a frozen cgroup for SIGKILL too.
      await vm.resume();
      // A concurrent Resume or Kill may have recorded the thaw already; the signal goes out either way.
      if (c.init.state.is('paused')) {
        c.init.state.moveTo('running');
        this.opts.events.publish(Topic.resumed, { containerId: c.id });
      }
    }
    await vm.agent.signalProcess(c.id, p.execId, req.signal, req.all);
    return {};
  }

  exec(req: { id: string; execId: string; terminal: boolean; stdin: string; stdout: string; stderr: string; spec?: AnyMessage | null }): object {
    const c = this.container(req.id);
    if (!req.execId) throw new TtrpcError(Code.InvalidArgument, 'exec id is empty');
    if (c.execs.has(req.execId)) throw new TtrpcError(Code.AlreadyExists, `id ${req.execId}: already exists`);
    // A paused container still counts as running here: Exec only records the process, Start runs it.
    if (!c.init.state.is('running', 'paused')) throw new TtrpcError(Code.FailedPrecondition, `container ${c.id} must be running to exec`);
    const value = req.spec?.value;
    if (!value || value.length === 0) throw new TtrpcError(Code.InvalidArgument, 'exec spec is missing');
    const processJson = Buffer.from(value).toString('utf8');
    try {
      JSON.parse(processJson);
    } catch {
      throw new TtrpcError(Code.InvalidArgument, `exec spec (${req.spec?.typeUrl}) is not JSON`);
    }
    const p = newProc(c.id, req.execId, { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal });
    p.processJson = processJson;
    c.execs.set(req.execId, p);
    this.opts.events.publish(Topic.execAdded, { containerId: c.id, execId: req.execId });
    return {};
  }

  /** The pty lives in the guest (the agent's, for process.terminal): the agent sets its window size. */
  async resizePty(req: { id: string; execId: string; width: number; height: number }): Promise<object> {
    const { c, p } = this.proc(req.id, req.execId);
    if (!p.stdio.terminal) throw new TtrpcError(Code.FailedPrecondition, `process ${req.execId || req.id} has no terminal`);
    if (p.state.is('stopped')) return {};
    if (p.execId && p.state.is('created')) {
      p.pendingSize = { width: req.width, height: req.height }; // the agent has no such exec until Start
      return {};
    }
    await this.liveVm().agent.resizePty({ containerId: c.id, execId: p.execId, width: req.width, height: req.height });
    return {};
  }

  closeIO(req: { id: string; execId: string; stdin: boolean }): object {
    const { p } = this.proc(req.id, req.execId);
    if (req.stdin) {
      p.stdinCloseRequested = true;
      p.io?.closeStdin();
    }
    return {};
  }

  async wait(req: { id: string; execId: string }): Promise<{ exitStatus: number; exitedAt?: Timestamp }> {
    const { p } = this.proc(req.id, req.execId);
    await p.exited;
    return { exitStatus: p.exitStatus, ...(p.exitedAt ? { exitedAt: toTimestamp(p.exitedAt) } : {}) };
  }

  /** The container's guest cgroup (memory, CPU, pids), as io.containerd.cgroups.v2.Metrics. */
  async stats(req: { id: string }): Promise<{ stats: AnyMessage }> {
    const c = this.container(req.id);
    const vm = this.liveVm();
    const guest = await vm.agent.statsContainer(c.id);
    return { stats: packAny('io.containerd.cgroups.v2.Metrics', metricsFromGuest(guest, vm.usage().memoryLimitBytes)) };
  }

  /** Update{resources}: LinuxResources (JSON) applied to the container's cgroup in the guest. The VM keeps its size:
   *  limits beyond it are refused (FailedPrecondition) rather than accepted and never reached. */
  async update(req: { id: string; resources?: AnyMessage | null }): Promise<object> {
    const c = this.container(req.id);
    const value = req.resources?.value;
    if (!value || value.length === 0) throw new TtrpcError(Code.InvalidArgument, 'update: resources are missing');
    const resourcesJson = Buffer.from(value).toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(resourcesJson);
    } catch {
      throw new TtrpcError(Code.InvalidArgument, `update: resources (${req.resources?.typeUrl}) are not JSON`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new TtrpcError(Code.InvalidArgument, 'update: resources must be a LinuxResources object');
    }
    if (c.init.state.is('stopped')) throw new TtrpcError(Code.FailedPrecondition, `task ${c.id} is not running`);
    const vm = this.liveVm();
    const size = vm.vmSize;
    if (!size) throw new TtrpcError(Code.FailedPrecondition, `update ${c.id}: the pod VM has not booted`);
    const resources = parsed as OciLinuxResources;
    const tooBig = beyondVm(resources, size);
    if (tooBig) throw new TtrpcError(Code.FailedPrecondition, `update ${c.id}: ${tooBig}; nothing was changed`);
    // A limit above the guest's memory: the VM grows into its headroom first, so the guest can reach the limit.
    const grow = memoryToGrowTo(resources.memory?.limit, size);
    if (grow !== undefined) await vm.growMemory(grow);
    await vm.agent.updateContainer({ containerId: c.id, resourcesJson });
    this.log.info({ container: c.id, resources: parsed }, 'resources updated');
    return {};
  }

  connect(req: { id: string }): object {
    const c = this.containers.get(req.id);
    return { shimPid: process.pid, taskPid: c?.init.pid ?? 0, version: SHIM_VERSION };
  }

  async shutdown(req: { now: boolean }): Promise<object> {
    if (this.containers.size > 0 && !req.now) return {};
    if (this.creating.size > 0 && !req.now) return {};
    this.shuttingDown = true;
    await this.podLock.run(async () => {
      if (this.vm) {
        const vm = this.vm;
        this.vm = undefined;
        await vm.shutdown().catch(() => undefined);
      }
    });
    await this.opts.events.flush();
    setImmediate(() => this.opts.onShutdown());
    return {};
  }

  /** SIGTERM or a fatal error in the daemon: stop the VM so nothing outlives the shim. */
  async emergencyStop(): Promise<void> {
    this.shuttingDown = true;
    const vm = this.vm;
    this.vm = undefined;
    await vm?.shutdown().catch(() => undefined);
    for (const c of this.containers.values()) {
      if (c.mountedRootfs) {
        try {
          this.opts.mounter.unmount(c.mountedRootfs);
        } catch {
          // best effort; the delete command retries
        }
      }
    }
  }
}

const KIND_CODES: Record<HullErrorKind, CodeValue> = {
  'invalid-argument': Code.InvalidArgument,
  'not-found': Code.NotFound,
  'already-exists': Code.AlreadyExists,
  'failed-precondition': Code.FailedPrecondition,
  unavailable: Code.Unavailable,
  internal: Code.Internal,
};

/** The wire form of any error: its kind (HullError's, or the VMM layer's HypervisorError's) picks the code. */
export function toTtrpcError(err: unknown): TtrpcError {
  if (err instanceof TtrpcError) return err;
  const kind = errorKind(err);
  return new TtrpcError(kind === undefined ? Code.Unknown : KIND_CODES[kind], oneLine(err));
}
