// A fake VMM driver for unit tests of the sandbox core (shim/sandbox/) and both front ends without QEMU or a guest
// image. What the core watches is real: the "VMM" and its one "helper" are real host processes (`sleep`, renamed so
// a leak check finds them by the sandbox directory in their command line), so liveness polling, SIGKILL and
// killRecorded from a record behave as they do with QEMU. The "guest" is the real agent (agent/service.ts) served in
// this process over an in-memory stream, with the fake container-init (test/unit/fixtures/fake-container-init.sh)
// running containers' processes on the host without isolation, and a temp directory as its cgroup root.
//
// The guest ends the way a VM's does: power-off (DestroySandbox) makes the VMM exit; when the VMM exits for any
// reason, the agent's connections drop, every container process dies and the helper is stopped, and only then does
// wait() resolve. virtio-fs is played by rewriting the share's guest paths (/run/hull/shared/…) to the host
// directory they come from, in CreateContainer's rootfs and spec mounts.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import pino, { type Logger } from 'pino';
import { CgroupManager } from '../../agent/cgroups.js';
import { GuestNetwork } from '../../agent/network.js';
import { serveProven } from '../../agent/host-auth.js';
import { AgentService } from '../../agent/service.js';
import { createAgentKey, readAgentKey, removeAgentKey } from '../../hypervisor/agent-key.js';
import { VmStateError } from '../../hypervisor/errors.js';
import { sandboxPaths } from '../../hypervisor/paths.js';
import { HostProcess, type ProcessExit } from '../../hypervisor/process.js';
import { registerDriver } from '../../hypervisor/registry.js';
import type {
  AccelerationChoice,
  Hypervisor,
  HypervisorCapabilities,
  VmConfig,
  VmDriver,
  VmExit,
  VmOptions,
  VmProcess,
  VmProcesses,
} from '../../hypervisor/types.js';
import { endRecordedProcesses, VMM_ROLE } from '../../hypervisor/vm-processes.js';
import type * as T from '../../protocol/agent-types.js';
import { agentService } from '../../protocol/proto.js';
import { duplexPair } from '../../protocol/ttrpc/duplex-pair.js';
import { TtrpcServer, type Handler } from '../../protocol/ttrpc/server.js';
import { AGENT_PORT, GUEST_SHARED_DIR } from '../../shim/sandbox/paths.js';
import { directVmFactory, type VmFactory } from '../../shim/sandbox/vm-factory.js';
import { installFakeContainerInit } from './fake-container-init.js';

export const FAKE_DRIVER = 'fake';
/** The fake helper's role in VmProcesses. */
export const FAKE_HELPER_ROLE = 'fake-helper';

const GRACE_MS = 2_000;

export interface FakeVmDriverOptions {
  /** A test's temp directory: the fake keeps its guest side (container-init copy, cgroup roots, guest image) here. */
  workDir: string;
  /** The driver's name in the registry (default 'fake'). */
  name?: string;
  /** The agent's log (default: silent). */
  logger?: Logger;
}

export interface FakeVmDriver extends VmDriver {
  /** Every VM this driver created, oldest first. */
  readonly vms: FakeVm[];
  /** The VM of sandbox directory `dir` (the latest, if there were several). */
  vmIn(dir: string): FakeVm | undefined;
}

/** A fake driver, not registered (registerFakeDriver registers one). */
export function fakeVmDriver(options: FakeVmDriverOptions): FakeVmDriver {
  const name = options.name ?? FAKE_DRIVER;
  const guest = path.join(options.workDir, 'fake-guest');
  mkdirSync(guest, { recursive: true });
  // Copied so the executable bit does not depend on how the repo was checked out.
  const helperPath = installFakeContainerInit(guest);
  const vms: FakeVm[] = [];
  return {
    name,
    vms,
    vmIn: (dir) => vms.filter((vm) => vm.config.dir === dir).at(-1),
    create(config, vmOptions) {
      const vm = new FakeVm(name, config, vmOptions, { helperPath, cgroupRoot: mkdtempSync(path.join(guest, 'cgroup-')), logger: options.logger });
      vms.push(vm);
      return vm;
    },
    reattach: () => Promise.reject(new VmStateError('reattaching is not supported by the fake VMM driver')),
    async killRecorded(processes, dir) {
      await endRecordedProcesses(processes, GRACE_MS);
      if (dir !== undefined) {
        rmSync(sandboxPaths(dir).consoleLog, { force: true });
        removeAgentKey(sandboxPaths(dir).agentKey);
      }
    },
    connectRecorded: () => Promise.reject(new VmStateError('connecting from a record is not supported by the fake VMM driver')),
  };
}

export interface RegisteredFakeDriver {
  driver: FakeVmDriver;
  /** Boots VMs of this driver through the real direct factory (shim/sandbox/vm-factory.ts). */
  factory: VmFactory;
  unregister(): void;
}

/** Registers a fake driver (hypervisor/registry.ts); call unregister() when the suite is done. */
export function registerFakeDriver(options: FakeVmDriverOptions): RegisteredFakeDriver {
  const driver = fakeVmDriver(options);
  const unregister = registerDriver(driver);
  return { driver, factory: fakeVmFactory(options.workDir, driver.name), unregister };
}

/**
 * directVmFactory(driver) — the real boot path: create through the registry, start, record the processes, connect
 * to the agent and ask Health — with a placeholder guest image, since the fake boots no kernel. The direct factory
 * looks for the image before its first await, so HULL_GUEST_DIR is set only for that synchronous part of boot().
 */
export function fakeVmFactory(workDir: string, driver = FAKE_DRIVER): VmFactory {
  const guestDir = path.join(workDir, 'fake-guest', 'image');
  mkdirSync(guestDir, { recursive: true });
  writeFileSync(
    path.join(guestDir, 'manifest.json'),
    JSON.stringify({ hash: 'fake', kernelRelease: 'fake', format: 'initramfs', kernelCmdline: 'console=ttyS0' }),
  );
  const direct = directVmFactory(driver);
  return {
    boot(request) {
      const saved = process.env['HULL_GUEST_DIR'];
      process.env['HULL_GUEST_DIR'] = guestDir;
      try {
        return direct.boot(request);
      } finally {
        if (saved === undefined) delete process.env['HULL_GUEST_DIR'];
        else process.env['HULL_GUEST_DIR'] = saved;
      }
    },
  };
}

interface GuestSide {
  helperPath: string;
  cgroupRoot: string;
  logger: Logger | undefined;
}

type State = 'new' | 'running' | 'exited';

/** One fake VM: two host processes and an in-process agent. */
export class FakeVm implements Hypervisor {
  readonly capabilities: HypervisorCapabilities = { pause: true, hotplug: false, sharedFs: 'virtio-fs', vsock: 'hybrid' };
  readonly accel: AccelerationChoice = { accel: 'kvm', reason: 'the fake VMM boots no kernel' };
  readonly vmmName = 'FakeVMM';
  readonly consolePath: string;
  /** The agent serving this VM's vsock port (for tests that look inside the guest). */
  readonly service: AgentService;
  private state: State = 'new';
  private vmm: HostProcess | undefined;
  private helper: HostProcess | undefined;
  private readonly server = new TtrpcServer();
  private agentKey: Buffer | undefined;
  private why: VmExit['reason'] | undefined;
  private poweredOff = false;
  private readonly exit: Promise<VmExit>;
  private settle!: (exit: VmExit) => void;

  constructor(
    private readonly driver: string,
    readonly config: VmConfig,
    private readonly options: VmOptions,
    guest: GuestSide,
  ) {
    this.consolePath = sandboxPaths(config.dir).consoleLog;
    this.exit = new Promise((resolve) => (this.settle = resolve));
    const log = guest.logger ?? pino({ enabled: false });
    this.service = new AgentService({
      helperPath: guest.helperPath,
      cgroups: new CgroupManager(guest.cgroupRoot),
      log,
      powerOff: () => this.powerOff(),
      powerOffDelayMs: 1,
      setupTimeoutMs: 10_000,
      // The guest's network would be the host's here: any SetupNetwork fails instead of touching it.
      network: new GuestNetwork({
        log,
        nicWaitMs: 0,
        runScript: () => Promise.reject(new Error('the fake VM has no guest network')),
      }),
    });
    this.server.registerService(agentService(), this.guestHandlers(config.sharedDir));
  }

  /** The VMM process (the test kills it to make the VM die). */
  get vmmProcess(): VmProcess {
    return this.recorded(VMM_ROLE, this.need(this.vmm));
  }

  /** The helper process (the test kills it to make a helper die). */
  get helperProcess(): VmProcess {
    return this.recorded(FAKE_HELPER_ROLE, this.need(this.helper));
  }

  async start(): Promise<void> {
    if (this.state !== 'new') throw new VmStateError(`VM ${this.config.id} was already started`);
    this.state = 'running';
    writeFileSync(this.consolePath, `fake guest of sandbox ${this.config.id} booted\n`, { flag: 'a' });
    // As a real driver does: a new key in the VM's directory, which the guest agent asks each connection to prove.
    createAgentKey(sandboxPaths(this.config.dir).agentKey);
    this.agentKey = readAgentKey(sandboxPaths(this.config.dir).agentKey);
    // Named after the sandbox directory, so a leak check finds them by it; exec keeps pid and start time.
    const spawn = (role: string): Promise<HostProcess> =>
      HostProcess.spawn({
        name: role,
        path: '/bin/bash',
        args: ['-c', 'exec -a "$0" sleep 1000', `hull-${role} ${this.config.dir}`],
        logFile: this.consolePath,
        detached: false,
      });
    this.helper = await spawn(FAKE_HELPER_ROLE);
    this.vmm = await spawn('fake-vmm');
    this.vmm.onExit((exit) => void this.vmmExited(exit));
    this.options.logger.debug({ pids: this.processes() }, 'fake VM running');
  }

  async stop(timeoutMs = 3_000): Promise<VmExit> {
    if (this.state === 'new') return { reason: 'quit', code: null, signal: null };
    const vmm = this.need(this.vmm);
    if (!(await vmm.waitFor(timeoutMs))) {
      this.why ??= 'quit';
      vmm.signal('SIGKILL');
    }
    return this.exit;
  }

  async kill(): Promise<VmExit> {
    if (this.state === 'new') return { reason: 'killed', code: null, signal: null };
    this.why ??= 'killed';
    this.need(this.vmm).signal('SIGKILL');
    this.need(this.helper).signal('SIGKILL');
    return this.exit;
  }

  wait(): Promise<VmExit> {
    return this.exit;
  }

  async pause(): Promise<void> {
    this.need(this.vmm).signal('SIGSTOP');
  }

  async resume(): Promise<void> {
    this.need(this.vmm).signal('SIGCONT');
  }

  async connectVsock(port: number): Promise<Duplex> {
    if (this.state !== 'running') throw new VmStateError(`the fake VM ${this.config.id} is not running`);
    if (port !== AGENT_PORT) throw new VmStateError(`nothing listens on guest vsock port ${port} of the fake VM`);
    const [host, guest] = duplexPair();
    serveProven(guest, this.need(this.agentKey), (s) => this.server.serve(s), () => undefined);
    return host;
  }

  processes(): VmProcesses {
    return {
      driver: this.driver,
      ...(this.vmm ? { vmm: this.recorded(VMM_ROLE, this.vmm) } : {}),
      helpers: this.helper ? [this.recorded(FAKE_HELPER_ROLE, this.helper)] : [],
    };
  }

  /** Nothing to let go of: the fake has no control connection. */
  release(): void {}

  consoleTail(lines = 20): string {
    try {
      return readFileSync(this.consolePath, 'utf8').split('\n').filter(Boolean).slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  /** The agent's DestroySandbox ends with this: the guest powers off, so the VMM exits. */
  private powerOff(): void {
    if (this.state !== 'running') return; // the VM died first: nothing left to power off
    this.poweredOff = true;
    this.why ??= 'shutdown';
    this.vmm?.signal('SIGKILL');
  }

  /** Whatever ended the VMM, the guest goes with it: connections drop, its processes die, the helper stops. */
  private async vmmExited(exit: ProcessExit): Promise<void> {
    this.state = 'exited';
    this.server.close();
    if (!this.poweredOff) {
      this.poweredOff = true;
      await this.service.destroySandbox().catch(() => undefined);
    }
    await this.helper?.terminate(GRACE_MS);
    removeAgentKey(sandboxPaths(this.config.dir).agentKey);
    this.settle({ reason: this.why ?? 'crashed', code: exit.code, signal: exit.signal });
  }

  /** The agent's handlers, with the share's guest paths mapped to the host directory they are shared from. */
  private guestHandlers(hostShare: string): Record<string, Handler> {
    const handlers = this.service.handlers();
    const toHost = (p: string): string =>
      p === GUEST_SHARED_DIR || p.startsWith(`${GUEST_SHARED_DIR}/`) ? hostShare + p.slice(GUEST_SHARED_DIR.length) : p;
    const create = handlers['CreateContainer']!;
    handlers['CreateContainer'] = (req: T.CreateContainerRequest, ctx) => {
      const spec = JSON.parse(req.specJson) as { mounts?: Array<{ source?: string }> };
      for (const m of spec.mounts ?? []) if (typeof m.source === 'string') m.source = toHost(m.source);
      return create({ ...req, rootfsPath: toHost(req.rootfsPath), specJson: JSON.stringify(spec) }, ctx);
    };
    return handlers;
  }

  private recorded(role: string, proc: HostProcess): VmProcess {
    return proc.startTime === undefined ? { role, pid: proc.pid } : { role, pid: proc.pid, startTime: proc.startTime };
  }

  private need<T>(thing: T | undefined): T {
    if (!thing) throw new VmStateError(`the fake VM ${this.config.id} was not started`);
    return thing;
  }
}
