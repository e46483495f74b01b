// The QEMU microvm driver: starts the vsock backend, virtiofsd and QEMU for one sandbox, controls QEMU over QMP, and
// guarantees that when QEMU is gone (for any reason) its helpers and sockets are gone too. Every failure in start()
// undoes what start() did, in reverse order, so a failed boot leaves no process behind.
import { accessSync, constants, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { chooseAcceleration, type AccelerationProbes } from './acceleration.js';
import { createAgentKey, removeAgentKey } from './agent-key.js';
import { captureConsole, consoleFiles } from './console-log.js';
import { GuestCidInUseError, QmpProtocolError, VmRecordError, VmStartError, VmStateError } from './errors.js';
import { tailLines } from './log-tail.js';
import {
  prepareSocketDir,
  qemuPath as defaultQemuPath,
  removeSocketDir,
  sandboxPaths,
  virtiofsdPath as defaultVirtiofsdPath,
  vmmLauncherPath as defaultVmmLauncherPath,
  vsockBackendPath as defaultVsockBackendPath,
  type SandboxPaths,
} from './paths.js';
import { hostTscKhz } from './host-tsc.js';
import { HostProcess, requireExecutable } from './process.js';
import { QmpClient, type QmpEvent } from './qmp.js';
import { buildQemuArgs, canGrow, composeKernelCmdline, type VsockDevice } from './qemu-command.js';
import { readVmRecord, removeVmRecord, writeVmRecord, type VmRecord } from './record.js';
import {
  allocateGuestCid,
  chooseTransport,
  cidRefusedByKernel,
  HybridTransport,
  KernelVsockTransport,
  transportFor,
  type AgentTransport,
  type CidLease,
  type TransportKind,
} from './transport.js';
import type {
  AccelerationChoice,
  Hypervisor,
  HypervisorCapabilities,
  VmConfig,
  VmExit,
  VmProcess,
  VmProcesses,
} from './types.js';
import { endProcessesNaming, endRecordedProcesses, VMM_ROLE } from './vm-processes.js';
import { startVirtiofsd } from './virtiofsd.js';
import { launcherArgs, planQemuJail, systemRoot } from './vmm-launcher.js';
import { allocateVmmUid, VMM_UID_LOCK_DIR_DEFAULT, vmmUidRange, type UidRange, type VmmUidLease } from './vmm-uid.js';
import { describeVcpus, parseRegisters, processAgeSeconds, vcpuThreadSeconds } from './vcpu-report.js';
import { startVsockBackend } from './vsock-backend.js';

/** This driver's name in the registry (hypervisor/registry.ts) and in records. */
export const QEMU_MICROVM = 'qemu-microvm';

/**
 * TCG translation buffer. QEMU's default is 1 GiB, lazily touched: booting the agent image fills ~118 MiB of it.
 * Measured here (agent image, TCG): default → QEMU PSS 345 MiB, ready 3.6–4.3 s; 64 MiB → 276 MiB, 3.9 s;
 * 32 MiB → 241 MiB but 4.6–4.9 s (translation flushes). HULL_TCG_TB_SIZE_MIB overrides (0 = QEMU's default).
 */
export const DEFAULT_TB_SIZE_MIB = 64;
const MIB = 2 ** 20;
/** How long a guest may take to deflate its balloon when the VM grows (256 pages a step; well under 1 s here). */
const GROW_TIMEOUT_MS = 20_000;
const BALLOON_POLL_MS = 100;
/**
 * A guest booted with room to grow sizes its free-page watermarks from all of its RAM, ballooned or not. With THP on,
 * khugepaged raises min_free_kbytes to match, and the per-CPU free lists, which follow the low watermark, then hold
 * ~20 MiB of free pages that page reporting never returns (measured: idle guest RAM 117 → 148 MiB with 512 MiB of
 * headroom, 126 with THP off; docs/density.md).
 */
const GROWABLE_GUEST_OPTIONS = ['transparent_hugepage=never'];

/** Guest CIDs one start tries while the host kernel refuses them (each try starts virtiofsd and QEMU again). */
export const MAX_GUEST_CID_TRIES = 16;

function defaultTbSize(): number {
  const env = Number(process.env['HULL_TCG_TB_SIZE_MIB']);
  return process.env['HULL_TCG_TB_SIZE_MIB'] !== undefined && Number.isInteger(env) && env >= 0 ? env : DEFAULT_TB_SIZE_MIB;
}

export interface QemuMicrovmOptions {
  logger: Logger;
  /** The VM outlives this process: helpers get their own session, stdio goes to files, nothing holds our loop. */
  detached?: boolean;
  /** 'none' boots without a vsock device (tests, or before the backend exists). Default 'auto'. */
  vsock?: 'auto' | TransportKind | 'none';
  /** TCG translation buffer in MiB; undefined → $HULL_TCG_TB_SIZE_MIB or DEFAULT_TB_SIZE_MIB; 0 → QEMU's default. */
  tbSizeMiB?: number;
  qemuPath?: string;
  virtiofsdPath?: string;
  vsockBackendPath?: string;
  virtiofsdSandbox?: 'namespace' | 'chroot';
  /** Bound on each helper's readiness and on QEMU opening QMP. Default 10 s. */
  startTimeoutMs?: number;
  /** SIGTERM → SIGKILL grace for helpers once QEMU is gone. Default 2 s. */
  helperStopMs?: number;
  accelProbes?: AccelerationProbes;
  /** Lock files for kernel vhost-vsock CIDs. Default /run/hull/cids. */
  cidLockDir?: string;
  /** Leases of the VMM uids (vmm-uid.ts). Default /run/hull/uids. */
  uidLockDir?: string;
  /** The uids QEMU and the vsock worker run as, one per VM. Default $HULL_VMM_UID_RANGE or VMM_UID_RANGE_DEFAULT. */
  vmmUidRange?: UidRange;
  /** hull-vmm-launcher (native/vmm-launcher), which confines QEMU and execs it. */
  vmmLauncherPath?: string;
  /** Extra `-M microvm,…` properties. */
  machineOptions?: string[];
  /**
   * Free page reporting (virtio-balloon): freed guest memory goes back to the host (docs/density.md). Default true;
   * $HULL_FREE_PAGE_REPORTING=0 turns it off (A/B measurements).
   */
  freePageReporting?: boolean;
  /** VmOptions.onProcesses: told the processes as each one starts. */
  onProcesses?: (processes: VmProcesses) => void;
}

type State = 'new' | 'starting' | 'running' | 'exited';

/** Bound on reading QEMU's console pipe to its end once QEMU has exited (only QEMU holds its write end). */
const CONSOLE_DRAIN_MS = 1000;

const ARGV_PREFIX = '# argv: ';
/** qemu.log's second line: the launcher's options (vmm-launcher.ts), i.e. how QEMU is confined. */
const JAIL_PREFIX = '# jail: ';

/**
 * QEMU's helpers, by role, in the order they start (they stop in reverse). vm-processes.ts reads records of earlier
 * hull versions into these names.
 */
const HELPER_ROLES = ['vsock-backend', 'virtiofsd'] as const;
type ProcessRole = (typeof HELPER_ROLES)[number] | typeof VMM_ROLE;

export class QemuMicrovm implements Hypervisor {
  readonly accel: AccelerationChoice;
  readonly capabilities: HypervisorCapabilities;
  readonly consolePath: string;
  readonly vmmName = 'QEMU';
  private readonly paths: SandboxPaths;
  private readonly log: Logger;
  private readonly transportKind: TransportKind | 'none';
  private transport: AgentTransport | undefined;
  private guestCid: number;
  private cidLease: CidLease | undefined;
  /** The unprivileged uid/gid of this VM's QEMU and vsock worker, held from start until teardown. */
  private uidLease: VmmUidLease | undefined;
  private state: State = 'new';
  private readonly procs: Partial<Record<ProcessRole, HostProcess>> = {};
  private qmp: QmpClient | undefined;
  private shutdownEvent: QmpEvent | undefined;
  private quitRequested = false;
  private killRequested = false;
  private teardownPromise: Promise<VmExit> | undefined;
  /** Settles when QEMU's stdout (the console) has ended and console.log is closed. */
  private consoleCopied: Promise<void> | undefined;
  private resolveExit!: (exit: VmExit) => void;
  private readonly exitPromise: Promise<VmExit>;

  constructor(
    readonly config: VmConfig,
    private readonly options: QemuMicrovmOptions,
    restored?: { accel: AccelerationChoice; transport: TransportKind | 'none'; guestCid: number },
  ) {
    this.paths = sandboxPaths(config.dir);
    this.consolePath = this.paths.consoleLog;
    this.log = options.logger.child({ component: 'hypervisor', sandbox: config.id });
    this.accel = restored?.accel ?? chooseAcceleration(config.accel, options.accelProbes);
    const vsock = options.vsock ?? 'auto';
    this.transportKind = restored?.transport ?? (vsock === 'none' ? 'none' : chooseTransport(vsock));
    this.guestCid = restored?.guestCid ?? config.guestCid;
    this.capabilities = {
      pause: true,
      hotplug: false,
      sharedFs: 'virtio-fs',
      vsock: this.transportKind === 'vhost-vsock' ? 'vhost-vsock' : 'hybrid',
    };
    this.exitPromise = new Promise((resolve) => (this.resolveExit = resolve));
  }

  /** Reattaches to a VM that an earlier (detached) hull process started in `dir`, from its vmm.json. */
  static async reattach(
    dir: string,
    options: QemuMicrovmOptions,
    record: VmRecord = readVmRecord(sandboxPaths(dir).vmmRecord),
  ): Promise<QemuMicrovm> {
    const vm = new QemuMicrovm(record.config, options, {
      accel: record.accel,
      transport: record.transport,
      guestCid: record.guestCid,
    });
    await vm.adopt(record);
    return vm;
  }

  /**
   * Ends the processes of a VM from their recorded pids alone (crashed monitor, `hull delete`): QEMU first, then its
   * helpers, SIGTERM then SIGKILL. Pids whose start time no longer matches are left alone. With `dir`, the socket
   * directory and vmm.json are removed too.
   */
  static async killRecorded(processes: VmProcesses, dir?: string, graceMs = 2000): Promise<void> {
    await endRecordedProcesses(processes, graceMs);
    if (dir !== undefined) {
      const paths = sandboxPaths(dir);
      // A process started in the instant before its pid went on record (a crash between spawn and record) is on no
      // record, but every process of this VM names its socket dir, unique to the sandbox directory, on its command line.
      await endProcessesNaming(`${paths.socketDir}/`, graceMs);
      removeSocketDir(paths);
      removeVmRecord(paths.vmmRecord);
      removeAgentKey(paths.agentKey);
    }
  }

  async start(): Promise<void> {
    if (this.state !== 'new') throw new VmStateError(`VM ${this.config.id} was already started`);
    this.state = 'starting';
    const started = Date.now();
    this.log.info({ accel: this.accel.accel, reason: this.accel.reason, transport: this.transportKind }, 'starting VM');
    if (this.accel.accel === 'tcg') this.log.warn(this.accel.reason);
    try {
      await this.startProcessesRetryingCid();
      this.state = 'running';
      this.writeRecord();
      this.log.info({ ms: Date.now() - started, pids: this.processes() }, 'VM running');
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'VM start failed; stopping what was started');
      await this.abortStart();
      throw err;
    }
  }

  private async startProcesses(): Promise<void> {
    const { paths, options, config } = this;
    const timeoutMs = options.startTimeoutMs ?? 10_000;
    const detached = options.detached ?? false;
    const qemu = options.qemuPath ?? defaultQemuPath();
    requireExecutable('QEMU', qemu, 'install Debian package qemu-system-x86');
    mkdirSync(paths.dir, { recursive: true });
    prepareSocketDir(paths); // removed by teardown(), which abortStart() runs on any failure from here on
    createAgentKey(paths.agentKey); // a new VM, a new key; removed by teardown() too
    const launcher = options.vmmLauncherPath ?? defaultVmmLauncherPath();
    requireExecutable('hull-vmm-launcher', launcher, 'build it with `make -C native` (or set HULL_VMM_LAUNCHER)');
    // Released by teardown() (a failed start included); owned by this process until the VM's processes hold it.
    const uid = (this.uidLease = allocateVmmUid(options.uidLockDir ?? VMM_UID_LOCK_DIR_DEFAULT, options.vmmUidRange ?? vmmUidRange()));

    let vsock: VsockDevice | undefined;
    if (this.transportKind === 'hybrid') {
      this.procs['vsock-backend'] = await startVsockBackend({
        binary: options.vsockBackendPath ?? defaultVsockBackendPath(),
        socketPath: paths.vhostVsockSock,
        udsPath: paths.vsockSock,
        guestCid: this.guestCid,
        workerId: uid.uid,
        logFile: paths.vsockBackendLog,
        detached,
        timeoutMs,
      });
      uid.setOwners([process.pid, this.procs['vsock-backend'].pid]);
      this.options.onProcesses?.(this.processes());
      this.transport = new HybridTransport(paths.vsockSock);
      vsock = { kind: 'vhost-user', socketPath: paths.vhostVsockSock };
    } else if (this.transportKind === 'vhost-vsock') {
      this.cidLease = allocateGuestCid(options.cidLockDir ?? '/run/hull/cids', Math.max(3, this.guestCid));
      this.guestCid = this.cidLease.cid;
      this.transport = new KernelVsockTransport(this.guestCid);
      vsock = { kind: 'vhost-vsock', guestCid: this.guestCid };
    }

    this.procs.virtiofsd = await startVirtiofsd({
      binary: options.virtiofsdPath ?? defaultVirtiofsdPath(),
      socketPath: paths.virtiofsdSock,
      sharedDir: config.sharedDir,
      logFile: paths.virtiofsdLog,
      detached,
      timeoutMs,
      ...(options.virtiofsdSandbox ? { sandbox: options.virtiofsdSandbox } : {}),
    });
    this.options.onProcesses?.(this.processes());

    const tb = options.tbSizeMiB ?? defaultTbSize();
    // Environment overrides for A/B measurements (bench/run.mjs, guest-image/README.md): HULL_QEMU_MACHINE_OPTIONS
    // (comma list of extra -M microvm properties), HULL_TCG_CPU (-cpu under TCG instead of TCG_CPU_MODEL).
    const machineOptions = options.machineOptions ?? envList('HULL_QEMU_MACHINE_OPTIONS');
    const vhostNet = config.nics?.length ? vhostNetUsable() : false;
    const jail = planQemuJail({
      uid: uid.uid,
      gid: uid.gid,
      paths,
      accel: this.accel.accel,
      kernelPath: config.kernelPath,
      initrdPath: config.initrdPath,
      ...(config.rootImagePath !== undefined ? { rootImagePath: config.rootImagePath } : {}),
      agentKeyPath: paths.agentKey,
      sharedFs: true,
      vsock: vsock?.kind ?? 'none',
      taps: (config.nics ?? []).map((n) => n.tap),
      // The taps are in the pod's namespace (a cold VM's), or created in QEMU's own (a pooled VM's, privateNetns), or
      // else in ours. QEMU itself always runs in a namespace of its own.
      ...(config.netnsPath !== undefined || !config.privateNetns ? { tapNetns: config.netnsPath ?? `/proc/${process.pid}/ns/net` } : {}),
      vhostNet,
      root: systemRoot(qemu),
    });
    const args = buildQemuArgs({
      qemuPath: qemu,
      name: `hull-${config.id}`,
      paths,
      accel: this.accel.accel,
      ...(tb > 0 ? { tbSizeMiB: tb } : {}),
      vcpus: config.vcpus,
      memoryMiB: config.memoryMiB,
      ...(canGrow(config) ? { maxMemoryMiB: config.maxMemoryMiB } : {}),
      kernelPath: config.kernelPath,
      initrdPath: config.initrdPath,
      cmdline: composeKernelCmdline(config.kernelCmdline, this.accel.accel, canGrow(config) ? GROWABLE_GUEST_OPTIONS : [], hostTscKhz()),
      ...(config.rootImagePath !== undefined ? { rootImagePath: config.rootImagePath } : {}),
      sharedFs: true,
      ...(vsock ? { vsock } : {}),
      agentKeyPath: paths.agentKey,
      ...(config.nics?.length ? { nics: config.nics, vhostNet } : {}),
      ...(machineOptions ? { machineOptions } : {}),
      ...(process.env['HULL_TCG_CPU'] ? { tcgCpu: process.env['HULL_TCG_CPU'] } : {}),
      freePageReporting: options.freePageReporting ?? process.env['HULL_FREE_PAGE_REPORTING'] !== '0',
      fds: jail.fds,
    });
    const launcherArgv = launcherArgs(jail.spec, [qemu, ...args]);
    rmSync(paths.qmpSock, { force: true });
    // QEMU's own argv first (bench/floor.mjs reads it back), then how it is confined.
    const jailLine = [launcher, ...launcherArgv.slice(0, launcherArgv.indexOf('--'))].map(shellQuote).join(' ');
    writeFileSync(paths.qemuLog, `${ARGV_PREFIX}${[qemu, ...args].map(shellQuote).join(' ')}\n${JAIL_PREFIX}${jailLine}\n`);
    this.log.debug({ argv: [launcher, ...launcherArgv] }, 'spawning QEMU');
    // This process copies the console for as long as QEMU runs: both hull's monitor and the containerd shim live
    // as long as the VM they boot. Should it die first, QEMU's serial writes fail and are dropped; the guest runs on.
    const consoleCapture = captureConsole(paths.consoleLog, paths.consoleFifo, {
      keepAlive: !detached,
      onError: (err) => this.log.warn({ err: err.message, file: paths.consoleLog }, 'guest console output is dropped from here on'),
    });
    this.consoleCopied = consoleCapture.copied;
    let vmm: HostProcess;
    try {
      // The launcher execs QEMU, so the pid is QEMU's.
      vmm = await HostProcess.spawn({ name: 'QEMU', path: launcher, args: launcherArgv, logFile: paths.qemuLog, detached, stdoutFd: consoleCapture.writeFd });
    } catch (err) {
      consoleCapture.abort();
      throw err;
    } finally {
      consoleCapture.releaseWriteEnd(); // QEMU holds the only copy now: its exit ends the copy
    }
    this.procs.vmm = vmm;
    this.options.onProcesses?.(this.processes());
    this.cidLease?.setOwner(vmm.pid);
    const backend = this.procs['vsock-backend'];
    uid.setOwners([vmm.pid, ...(backend ? [backend.pid] : [])]);

    this.qmp = await this.connectQmp(vmm, timeoutMs);
    const status = await this.qmp.queryStatus();
    if (!status.running) throw new VmStartError(`QEMU started but the VM is ${status.status}`, '', '');
    // Before the guest's balloon driver loads: it reads the target when it probes and inflates from there.
    if (canGrow(this.config)) await this.qmp.execute('balloon', { value: this.config.memoryMiB * MIB });
    // Only now: until here start() undoes a failed start itself, and a start the kernel refused the guest CID of is
    // tried again (startProcessesRetryingCid), which a teardown would end.
    vmm.onExit(() => void this.teardown());
  }

  /**
   * startProcesses(), tried again with the next free guest CID while the host kernel refuses the one QEMU asked for
   * (kernel vhost-vsock: the CID is held outside hull, e.g. by the host itself or another VMM), at most
   * MAX_GUEST_CID_TRIES times.
   */
  private async startProcessesRetryingCid(): Promise<void> {
    const refused: number[] = [];
    for (;;) {
      try {
        await this.startProcesses();
        return;
      } catch (err) {
        if (!(err instanceof GuestCidInUseError)) throw err;
        refused.push(...err.cids);
        if (refused.length >= MAX_GUEST_CID_TRIES) throw new GuestCidInUseError(refused, err.stderrTail);
        this.log.warn({ cid: this.guestCid, refused }, 'the host kernel refused the guest CID (in use outside hull); trying the next one');
        await this.undoRefusedStart();
        this.guestCid = Math.max(...refused) + 1;
      }
    }
  }

  /** After QEMU exited because its guest CID was refused: stops the helpers, gives the CID back; nothing else stays. */
  private async undoRefusedStart(): Promise<void> {
    this.qmp?.close();
    this.qmp = undefined;
    if (this.consoleCopied) await settledWithin(this.consoleCopied, CONSOLE_DRAIN_MS);
    this.consoleCopied = undefined;
    const grace = this.options.helperStopMs ?? 2000;
    for (const role of [...HELPER_ROLES].reverse()) {
      const proc = this.procs[role];
      if (proc && !(await proc.waitFor(200))) await proc.terminate(grace);
      delete this.procs[role];
    }
    if (this.procs.vmm) await this.procs.vmm.forceKill(); // exited already; this only waits for its exit event
    delete this.procs.vmm;
    this.cidLease?.release();
    this.cidLease = undefined;
    this.uidLease?.release(); // its owners are gone: the next try takes a uid afresh
    this.uidLease = undefined;
    this.options.onProcesses?.(this.processes());
  }

  /** Waits for QEMU's QMP socket to accept us, failing at once (with QEMU's last words) if QEMU exits. */
  private async connectQmp(vmm: HostProcess, timeoutMs: number): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    let lastError = '';
    while (Date.now() < deadline) {
      if (vmm.exited) break;
      try {
        const qmp = await QmpClient.connect(this.paths.qmpSock, { timeoutMs: Math.max(100, deadline - Date.now()) });
        this.watchQmp(qmp);
        return qmp;
      } catch (err) {
        lastError = (err as Error).message;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    if (vmm.exited) await new Promise((r) => setTimeout(r, 50)); // let its last stderr lines land
    if (vmm.exited && this.transportKind === 'vhost-vsock' && cidRefusedByKernel(this.stderrTail())) {
      throw new GuestCidInUseError([this.guestCid], this.stderrTail());
    }
    const exit = vmm.exit;
    const why = exit
      ? `QEMU exited during start (${exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`})`
      : `QEMU did not answer on QMP within ${timeoutMs} ms (${lastError})`;
    throw new VmStartError(why, this.stderrTail(), this.consoleTail(10));
  }

  private watchQmp(qmp: QmpClient): void {
    if (this.options.detached) qmp.unref();
    qmp.on('event', (ev: QmpEvent) => {
      this.log.debug({ event: ev.event, data: ev.data }, 'QMP event');
      if (ev.event === 'SHUTDOWN') this.shutdownEvent = ev;
    });
    qmp.on('close', (err: Error | undefined) => {
      // A reset while QEMU exits is normal; a protocol violation is worth a warning.
      if (err instanceof QmpProtocolError) this.log.warn({ err: err.message }, 'QMP connection failed');
      else if (err) this.log.debug({ err: err.message }, 'QMP connection ended');
    });
  }

  /** start() failed: kill QEMU if it runs, then the helpers in reverse order; no process may survive. */
  private async abortStart(): Promise<void> {
    // A QEMU that exited on its own (a bad kernel path, a refused device) crashed; one still running is killed here.
    this.killRequested = !(this.procs.vmm?.exited ?? false);
    this.qmp?.close();
    if (this.procs.vmm) await this.procs.vmm.forceKill();
    await this.teardown();
  }

  /**
   * Runs once, when QEMU has exited (or never started): ends the helpers, removes sockets and the record, and
   * settles wait().
   */
  private teardown(): Promise<VmExit> {
    this.teardownPromise ??= (async () => {
      const vmm = this.procs.vmm;
      if (vmm) await vmm.wait();
      // QEMU is gone, so its stdout ends: the console's last words are on disk before anyone reads why it exited.
      if (this.consoleCopied) await settledWithin(this.consoleCopied, CONSOLE_DRAIN_MS);
      // The SHUTDOWN event is sent before QEMU exits; give the socket a moment to deliver it before judging why.
      if (this.qmp && !this.qmp.isClosed) {
        await Promise.race([this.qmp.closedPromise, new Promise((r) => setTimeout(r, 500))]);
        this.qmp.close();
      }
      const exit = this.exitReason();
      const grace = this.options.helperStopMs ?? 2000;
      // Both normally exit on their own once QEMU disconnects: waited for together, then stopped if they did not.
      await Promise.all(
        HELPER_ROLES.map(async (role) => {
          const proc = this.procs[role];
          if (proc && !(await proc.waitFor(200))) await proc.terminate(grace);
        }),
      );
      removeSocketDir(this.paths);
      this.cidLease?.release();
      this.uidLease?.release();
      removeVmRecord(this.paths.vmmRecord);
      removeAgentKey(this.paths.agentKey);
      this.state = 'exited';
      this.log.info({ ...exit }, 'VM exited');
      this.resolveExit(exit);
      return exit;
    })();
    return this.teardownPromise;
  }

  private exitReason(): VmExit {
    const e = this.procs.vmm?.exit;
    const base = { code: e?.code ?? null, signal: e?.signal ?? null };
    const detail = typeof this.shutdownEvent?.data?.['reason'] === 'string' ? (this.shutdownEvent.data['reason'] as string) : undefined;
    const withDetail = (reason: VmExit['reason'], d = detail): VmExit => (d ? { reason, ...base, detail: d } : { reason, ...base });
    if (this.killRequested) return withDetail('killed');
    if (detail === 'guest-shutdown') return withDetail('shutdown');
    if (detail === 'host-qmp-quit' || (detail === undefined && this.quitRequested)) return withDetail('quit');
    if (detail === 'host-signal') return withDetail('killed');
    if (detail !== undefined) return withDetail('crashed'); // guest-panic, guest-reset (-no-reboot), …
    // No SHUTDOWN event seen (QMP released or never connected): exit code 0 is still an orderly exit.
    if (base.code === 0) return withDetail('shutdown', 'QEMU exited with code 0 (no SHUTDOWN event seen)');
    const how = base.signal ? `QEMU died of ${base.signal}` : base.code !== null ? `QEMU exited with code ${base.code}` : 'QEMU vanished';
    return withDetail('crashed', how);
  }

  async stop(timeoutMs = 10_000): Promise<VmExit> {
    const vmm = this.procs.vmm;
    if (!vmm || this.state === 'new') throw new VmStateError(`VM ${this.config.id} was not started`);
    if (vmm.exited) return this.teardown();
    // Harmless without ACPI support in the guest; a guest that has it powers off on its own.
    await this.qmp?.systemPowerdown().catch(() => undefined);
    if (await vmm.waitFor(timeoutMs)) return this.teardown();
    this.log.warn({ timeoutMs }, 'guest did not power off in time; quitting QEMU');
    this.quitRequested = true;
    await this.qmp?.quit(2000).catch(() => undefined);
    if (await vmm.waitFor(2000)) return this.teardown();
    this.log.warn('QEMU ignored quit; killing it');
    this.killRequested = true;
    await vmm.forceKill();
    return this.teardown();
  }

  async kill(): Promise<VmExit> {
    const vmm = this.procs.vmm;
    if (!vmm) {
      // Never started, or start failed before QEMU: make sure helpers are gone all the same.
      await this.teardown();
      return this.exitPromise;
    }
    if (!vmm.exited) {
      this.killRequested = true;
      // SIGKILL, not QMP quit: nothing of the guest is wanted any more (callers sync it first when it matters), and
      // QEMU's own exit path (device teardown, freeing the TCG cache) cost 150-300 ms of every `hull run` here.
      const dying = vmm.forceKill();
      // The helpers too, at once, instead of each noticing QEMU's end after the kernel has torn down its memory:
      // they serve only this guest, which is being killed.
      for (const role of HELPER_ROLES) this.procs[role]?.signal('SIGKILL');
      await dying;
    }
    return this.teardown();
  }

  wait(): Promise<VmExit> {
    return this.exitPromise;
  }

  async pause(): Promise<void> {
    await this.runningQmp('pause').stop();
  }

  async resume(): Promise<void> {
    await this.runningQmp('resume').cont();
  }

  async setMemory(memoryMiB: number, timeoutMs = GROW_TIMEOUT_MS): Promise<void> {
    const most = Math.max(this.config.memoryMiB, this.config.maxMemoryMiB ?? 0);
    if (memoryMiB > most) throw new VmStateError(`cannot give VM ${this.config.id} ${memoryMiB} MiB: it was booted with at most ${most} MiB`);
    const qmp = this.runningQmp('resize');
    const want = memoryMiB * MIB;
    await qmp.execute('balloon', { value: want });
    // The guest deflates in steps of 256 pages; "actual" is what it has once each step is acknowledged.
    const deadline = Date.now() + timeoutMs;
    let actual = 0;
    for (;;) {
      // QEMU's reply is only compared and printed; a VMM that answers nonsense times out like a guest that never moves.
      const reply = await qmp.execute<{ actual?: unknown }>('query-balloon');
      actual = typeof reply?.actual === 'number' ? reply.actual : 0;
      if (actual >= want) return;
      if (Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, BALLOON_POLL_MS));
    }
    throw new VmStateError(`the guest of VM ${this.config.id} took ${Math.floor(actual / MIB)} of ${memoryMiB} MiB within ${timeoutMs / 1000} s (its balloon did not deflate)`);
  }

  private runningQmp(op: string): QmpClient {
    if (this.state !== 'running' || !this.qmp || this.qmp.isClosed) {
      throw new VmStateError(`cannot ${op} VM ${this.config.id}: it is ${this.state}${this.qmp?.isClosed ? ' (QMP closed)' : ''}`);
    }
    return this.qmp;
  }

  connectVsock(port: number, timeoutMs: number): Promise<Duplex> {
    if (!this.transport) {
      return Promise.reject(new VmStateError(`VM ${this.config.id} has no vsock device (transport ${this.transportKind})`));
    }
    // Fail as soon as the VM is gone instead of retrying a dead socket until the deadline.
    const exited = this.exitPromise.then((exit) => {
      throw new VmStateError(
        `VM ${this.config.id} exited (${exit.reason}${exit.detail ? `: ${exit.detail}` : ''}) before guest vsock port ${port} accepted`,
      );
    });
    const connecting = this.transport.connect(port, timeoutMs);
    // If the VM exits first, a connection that still succeeds later is closed, not leaked.
    return Promise.race([connecting, exited]).catch((err: unknown) => {
      void connecting.then((s) => s.destroy(), () => undefined);
      throw err;
    });
  }

  processes(): VmProcesses {
    const entry = (role: ProcessRole): VmProcess[] => {
      const proc = this.procs[role];
      if (!proc) return [];
      return [proc.startTime === undefined ? { role, pid: proc.pid } : { role, pid: proc.pid, startTime: proc.startTime }];
    };
    const [vmm] = entry(VMM_ROLE);
    return { driver: QEMU_MICROVM, ...(vmm ? { vmm } : {}), helpers: HELPER_ROLES.flatMap(entry) };
  }

  consoleTail(lines = 20): string {
    return tailLines(consoleFiles(this.paths.consoleLog), lines);
  }

  async vcpuReport(timeoutMs = 2000): Promise<string | undefined> {
    const pid = this.procs.vmm?.pid;
    if (pid === undefined || this.procs.vmm?.exited) return undefined;
    let text = '';
    if (this.qmp && !this.qmp.isClosed) {
      try {
        const reply = await this.qmp.execute<unknown>('human-monitor-command', { 'command-line': 'info registers -a' }, timeoutMs);
        if (typeof reply === 'string') text = reply;
      } catch (err) {
        this.log.debug({ err: (err as Error).message }, 'info registers failed');
      }
    }
    return describeVcpus(parseRegisters(text), vcpuThreadSeconds(pid), processAgeSeconds(pid)) || undefined;
  }

  private stderrTail(lines = 10): string {
    // The first two lines of qemu.log are the command lines we wrote; QEMU's stderr (and the launcher's) follows.
    const text = tailLines(this.paths.qemuLog, lines + 2)
      .split('\n')
      .filter((l) => !l.startsWith(ARGV_PREFIX) && !l.startsWith(JAIL_PREFIX))
      .join('\n');
    return text ? `${text}\n(command line and full log: ${this.paths.qemuLog})` : '';
  }

  /** Stops watching without touching the VM, so a detached CLI call can exit. The VM keeps running. */
  release(): void {
    this.qmp?.close();
  }

  private writeRecord(): void {
    const record: VmRecord = {
      version: 1,
      driver: QEMU_MICROVM,
      config: this.config,
      accel: this.accel,
      transport: this.transportKind,
      guestCid: this.guestCid,
      processes: this.processes(),
    };
    writeVmRecord(this.paths.vmmRecord, record);
  }

  private async adopt(record: VmRecord): Promise<void> {
    const { vmm: recordedVmm, helpers = [] } = record.processes;
    for (const p of [...(recordedVmm ? [recordedVmm] : []), ...helpers]) {
      const role = p.role === VMM_ROLE ? VMM_ROLE : HELPER_ROLES.find((r) => r === p.role);
      if (role === undefined) {
        throw new VmRecordError('internal', `VM record in ${this.config.dir} names a QEMU helper hull does not know: ${JSON.stringify(p.role)}`);
      }
      this.procs[role] = HostProcess.adopt(role, p);
    }
    this.transport = transportFor(this.transportKind, this.paths.vsockSock, this.guestCid);
    const vmm = this.procs.vmm;
    if (!vmm) throw new VmRecordError('internal', `VM record in ${this.config.dir} has no QEMU pid`);
    this.state = 'running';
    vmm.onExit(() => void this.teardown());
    vmm.watch(false); // polls the pid (an adopted QEMU is not our child) without keeping this process alive
    if (vmm.exited) return;
    try {
      this.qmp = await QmpClient.connect(this.paths.qmpSock, { timeoutMs: this.options.startTimeoutMs ?? 5000 });
      this.watchQmp(this.qmp);
    } catch (err) {
      // QEMU serves one QMP client at a time; without QMP we can still kill by pid and see exit by polling.
      this.log.warn({ err: (err as Error).message }, 'reattached without QMP');
    }
  }
}

/** Waits for `promise` (which never rejects) at most `ms`, leaving no timer behind. */
async function settledWithin(promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

/** The kernel's vhost-net is there and ours to open (not on these machines: QEMU's user-space virtio-net then). */
function vhostNetUsable(): boolean {
  try {
    accessSync('/dev/vhost-net', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** A comma-separated list from the environment (experiments and benchmarks), undefined when unset or empty. */
function envList(name: string): string[] | undefined {
  const v = process.env[name];
  return v ? v.split(',').filter(Boolean) : undefined;
}

function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

