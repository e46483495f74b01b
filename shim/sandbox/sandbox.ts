// The sandbox core: one VM with its helpers, a share of container roots over virtio-fs, the pod's network and a
// connection to the guest agent — what both front ends (runc/, containerd/) drive. `hull run` is a sandbox of one
// container; a Kubernetes pod is one sandbox with many. Every host resource is written to the sandbox record before
// it exists (record.ts), so teardown.ts can end the sandbox from the record alone, whoever runs it.
import { mkdirSync } from 'node:fs';
import type { Logger } from 'pino';
import { isAlive, procStat } from '../../hypervisor/process.js';
import type { VmExit, VmOptions, VmProcesses } from '../../hypervisor/types.js';
import type { AgentClient } from '../../protocol/agent-client.js';
import { HullError, oneLine } from '../errors.js';
import { connectAgent } from './agent-connect.js';
import { HostCgroup, type HostCgroupRequest } from './cgroups/host-cgroup.js';
import { shareContainer, unshareContainer } from './container-share.js';
import { attachNetwork, planPodNetwork, type NetworkRecord } from './network/pod-network.js';
import { guestRootfs, sharedDir } from './paths.js';
import { vmDirOf, type SandboxRecord, type SandboxRecordStore } from './record.js';
import type { HostBind } from './share-mounts.js';
import { releaseSandbox } from './teardown.js';
import { directVmFactory, type BootedVm, type PodNetworkRequest, type VmFactory } from './vm-factory.js';
import { mostMemoryMiB, type VmSize } from './vm-sizing.js';
import { firstGone, SETTLE_MS, watchProcesses, type ProcessWatch } from './vm-watch.js';

const POWEROFF_WAIT_MS = 3_000;
const CLK_TCK = 100;
const PAGE_SIZE = 4096;

export interface SandboxOptions {
  id: string;
  /** The sandbox directory: the share, sockets, console log. */
  dir: string;
  logger: Logger;
  /** Where the sandbox record lives (the front end's record file). */
  record: SandboxRecordStore;
  /** Where the VM comes from; default: a new one through the driver registry. */
  vms?: VmFactory;
}

export interface SandboxBootOptions {
  size: VmSize;
  /** The VM must outlive this process. */
  detached: boolean;
  /**
   * 'chroot' keeps virtiofsd in our mount namespace, so containers added after boot are seen in the guest; the
   * driver's default ('namespace') pins the share's mounts at boot.
   */
  virtiofsdSandbox?: VmOptions['virtiofsdSandbox'];
  /** A network namespace whose interfaces the VM gets: mirrored into taps before boot (NICs are not hot-plugged). */
  netnsPath?: string;
  /** The host cgroup every process of the VM goes into (cgroups/host-cgroup.ts planHostCgroup); none: the caller's. */
  cgroup?: HostCgroupRequest;
}

/** Host-side accounting of the whole VM (container statistics come from the guest). */
export interface VmUsage {
  /** CPU time of the VMM process, microseconds. */
  cpuUserUsec: number;
  cpuSystemUsec: number;
  /** Resident memory of the VMM process. */
  rssBytes: number;
  /** Guest RAM size. */
  memoryLimitBytes: number;
  vcpus: number;
}

export class Sandbox {
  /**
   * Settles with a one-line reason once the VM is gone: the VMM exited, a helper died or the agent connection was
   * lost (the VM is then stopped, since it can do nothing more), or shutdown() was called. Always settles after the
   * agent is lost, so nothing waits on a dead channel.
   */
  readonly died: Promise<string>;
  private settleDied!: (reason: string) => void;
  private vm: BootedVm | undefined;
  private size: VmSize | undefined;
  private cgroup: HostCgroup | undefined;
  private helperWatch: ProcessWatch | undefined;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  /** Why hull stopped a VM whose VMM still ran (agent lost, helper died). */
  private stoppedBecause: string | undefined;
  /** Containers whose root (and host bind sources) are in the share. */
  private readonly shares = new Set<string>();
  /** Containers added before boot: shared once the VM's directory is known (VmBootRequest.prepareShare). */
  private readonly pending = new Map<string, { hostRootfs: string; binds: HostBind[] }>();
  /** The directory the VM lives in, once known: the sandbox's own, or a pooled VM's. */
  private vmDir: string | undefined;
  private readonly log: Logger;

  constructor(private readonly options: SandboxOptions) {
    this.log = options.logger;
    this.died = new Promise<string>((resolve) => (this.settleDied = resolve));
  }

  get id(): string {
    return this.options.id;
  }

  get dir(): string {
    return this.options.dir;
  }

  get agent(): AgentClient {
    return this.booted().agent;
  }

  /** The VM's host processes as they are now (`{}` before boot). */
  processes(): VmProcesses {
    return this.vm?.hypervisor.processes() ?? {};
  }

  /**
   * Shares a container's root and the host sources its spec binds, each on record first; returns the root's guest
   * path. Before boot the container waits for the VM's directory (a pooled VM's is known only once claimed) and is
   * shared as part of boot; after boot it is shared at once, which the guest sees when the VM was booted with
   * virtiofsdSandbox 'chroot'. Shared once per container.
   */
  addContainer(containerId: string, hostRootfs: string, binds: HostBind[]): string {
    if (this.vmDir === undefined) {
      this.pending.set(containerId, { hostRootfs, binds });
      return guestRootfs(containerId);
    }
    if (this.shares.has(containerId)) return guestRootfs(containerId);
    const guestPath = shareContainer(this.vmDir, this.options.record, containerId, hostRootfs, binds);
    this.shares.add(containerId);
    return guestPath;
  }

  /** Unmounts a container's part of the share and drops it from the record. */
  removeContainer(containerId: string): void {
    this.pending.delete(containerId);
    if (!this.shares.has(containerId) || this.vmDir === undefined) return;
    unshareContainer(this.vmDir, this.options.record, containerId);
    this.shares.delete(containerId);
  }

  /**
   * Mirrors the network namespace's interfaces, boots the VM and configures the guest's network. On failure
   * everything on record is released (the containers added so far included) and the error says why.
   */
  async boot(opts: SandboxBootOptions): Promise<void> {
    if (this.vm || this.stopping) throw new HullError('failed-precondition', `sandbox ${this.id} was already booted`);
    const { record } = this.options;
    try {
      const netnsPath = opts.netnsPath;
      const plan = netnsPath ? await planPodNetwork(netnsPath, this.log) : undefined;
      const nics = plan?.nics ?? [];
      const onRecord = (network: NetworkRecord): void => record.update((r) => void (r.network = network));
      const network: PodNetworkRequest | undefined =
        netnsPath && nics.length > 0 ? { netnsPath, nics, attach: (moved) => attachNetwork(netnsPath, nics, this.log, onRecord, moved) } : undefined;
      // On record before it exists; each process goes in as soon as it is on record (a pooled VM's once claimed).
      const cgroup = (this.cgroup = opts.cgroup
        ? HostCgroup.create(opts.cgroup, opts.size, this.log, (c) => record.update((r) => void (r.cgroup = c)))
        : undefined);
      const bootStarted = Date.now();
      this.vm = await (this.options.vms ?? directVmFactory()).boot({
        id: this.id,
        dir: this.dir,
        sharedDir: sharedDir(this.dir),
        size: opts.size,
        logger: this.log,
        detached: opts.detached,
        ...(opts.virtiofsdSandbox ? { virtiofsdSandbox: opts.virtiofsdSandbox } : {}),
        ...(network ? { network } : {}),
        onProcesses: (vm) => {
          record.update((r) => void (r.vm = vm));
          cgroup?.place(vm);
        },
        prepareShare: (vmDir) => this.shareInto(vmDir),
      });
      this.size = this.vm.size ?? opts.size;
      const { vcpus, memoryMiB } = this.size;
      const booted = { at: new Date().toISOString(), ms: Date.now() - bootStarted, pooled: this.vm.dir !== this.dir, vcpus, memoryMiB };
      record.update((r) => void (r.boot = booted)); // for `hull metrics` (shim/metrics/)
      if (cgroup) {
        if (this.vm.size) cgroup.setLimits(this.vm.size); // a pooled VM may be bigger than asked
        cgroup.place(this.vm.hypervisor.processes()); // what the helpers forked after they went on record
      }
      // A pooled VM with room to grow, claimed for a container that needs more than it has (pool/claim.ts fits).
      if (this.size.memoryMiB < opts.size.memoryMiB) await this.growMemory(opts.size.memoryMiB);
      this.watch(this.vm);
      if (plan && network && plan.guest.interfaces.length > 0) {
        const macs = this.vm.guestMacs;
        const interfaces = plan.guest.interfaces.map((n, i) => (macs?.[i] ? { ...n, guestMac: macs[i] } : n));
        await this.vm.agent.setupNetwork({ ...plan.guest, interfaces });
        this.log.info('guest network configured');
      }
    } catch (err) {
      await this.shutdown().catch((e: unknown) => this.log.warn({ err: oneLine(e) }, 'teardown after a failed boot'));
      throw err;
    }
  }

  /**
   * Gives the guest `memoryMiB` of the VM's RAM (no more than its size's maxMemoryMiB): the host cgroup's bound is
   * raised first, then the balloon deflates. Never shrinks: a lower container limit is the guest cgroup's business.
   */
  async growMemory(memoryMiB: number): Promise<void> {
    const { hypervisor } = this.booted();
    const size = this.size!;
    if (memoryMiB <= size.memoryMiB) return;
    if (!hypervisor.setMemory || memoryMiB > mostMemoryMiB(size)) {
      throw new HullError('failed-precondition', `sandbox ${this.id} cannot grow to ${memoryMiB} MiB: its VM can have at most ${mostMemoryMiB(size)} MiB`);
    }
    const grown: VmSize = { ...size, memoryMiB };
    this.cgroup?.setLimits(grown);
    try {
      await hypervisor.setMemory(memoryMiB);
    } catch (err) {
      this.cgroup?.setLimits(size);
      throw err;
    }
    this.size = grown;
    this.options.record.update((r) => {
      if (r.boot) r.boot.memoryMiB = memoryMiB;
    });
    this.log.info({ from: size.memoryMiB, to: memoryMiB }, 'VM memory grown');
  }

  /** The VM's size now (memory grows with growMemory); undefined before boot. */
  get vmSize(): VmSize | undefined {
    return this.size;
  }

  pause(): Promise<void> {
    return this.booted().hypervisor.pause();
  }

  resume(): Promise<void> {
    return this.booted().hypervisor.resume();
  }

  usage(): VmUsage {
    const vmm = this.processes().vmm;
    const stat = vmm ? procStat(vmm.pid) : undefined;
    return {
      cpuUserUsec: Math.round(((stat?.utime ?? 0) * 1e6) / CLK_TCK),
      cpuSystemUsec: Math.round(((stat?.stime ?? 0) * 1e6) / CLK_TCK),
      rssBytes: (stat?.rss ?? 0) * PAGE_SIZE,
      memoryLimitBytes: (this.size?.memoryMiB ?? 0) * 2 ** 20,
      vcpus: this.size?.vcpus ?? 0,
    };
  }

  /**
   * Powers the guest off (the agent syncs first), makes sure no VM process is left, then releases everything on
   * record (teardown.ts). Idempotent; rejects when something could not be released (it stays on record).
   */
  shutdown(): Promise<void> {
    this.stopping = true;
    this.settleDied(`sandbox ${this.id} was shut down`);
    this.stopped ??= (async () => {
      this.helperWatch?.stop();
      const vm = this.vm;
      if (vm) {
        let synced = false;
        try {
          await Promise.race([vm.agent.destroySandbox().then(() => void (synced = true)), vm.hypervisor.wait()]);
        } catch (err) {
          this.log.debug({ err: oneLine(err) }, 'agent did not confirm power-off');
        }
        vm.agent.close();
        // The agent answers DestroySandbox once its containers are gone and its filesystems synced; a VM serves one
        // sandbox once, so nothing is left worth waiting for the guest's own power-off (a quarter second here).
        const stopping = synced ? vm.hypervisor.kill() : vm.hypervisor.stop(POWEROFF_WAIT_MS);
        await stopping.catch((err: unknown) => this.log.warn({ err: oneLine(err) }, 'stopping the VM'));
      }
      this.shares.clear();
      await releaseSandbox(this.dir, this.options.record, this.log);
      this.log.info('sandbox stopped');
    })();
    return this.stopped;
  }

  /** The VM's directory is known: record it (when it is not ours) and share the containers added so far. */
  private shareInto(vmDir: string): void {
    if (vmDir !== this.dir) this.options.record.update((r) => void (r.vmDir = vmDir));
    this.vmDir = vmDir;
    mkdirSync(sharedDir(vmDir), { recursive: true });
    for (const [containerId, { hostRootfs, binds }] of this.pending) {
      this.pending.delete(containerId);
      this.addContainer(containerId, hostRootfs, binds);
    }
  }

  private booted(): BootedVm {
    if (!this.vm) throw new HullError('failed-precondition', `sandbox ${this.id} has no VM`);
    return this.vm;
  }

  /** Settles `died` on the VMM's exit; stops a VM that lost its agent or a helper. */
  private watch({ hypervisor, agent }: BootedVm): void {
    void hypervisor.wait().then((exit) => {
      if (this.stopping) return;
      const why = this.stoppedBecause ? `, stopped by hull: ${this.stoppedBecause}` : '';
      this.settleDied(`${hypervisor.vmmName} exited (${describeExit(exit)}${why}); guest console ${hypervisor.consolePath}`);
    });
    const stopVm = (because: string): void => {
      // isAlive: a VMM that died but was not reaped yet is a zombie, and counts as gone (its exit is on the way).
      const vmm = hypervisor.processes().vmm;
      if (this.stopping || this.stoppedBecause || !vmm || !isAlive(vmm)) return;
      this.stoppedBecause = because;
      this.log.error({ reason: because }, 'stopping the VM');
      void hypervisor.kill().catch((e: unknown) => this.log.warn({ err: oneLine(e) }, 'kill VM'));
    };
    // A lost connection is most often a dying VM process (the VMM, the vsock backend): named when it is one.
    agent.onClose((err) => {
      setTimeout(() => {
        const helper = firstGone(hypervisor.processes().helpers ?? []);
        stopVm(helper ? `its helper ${helper}` : `the guest agent connection closed (${oneLine(err)})`);
      }, SETTLE_MS);
    });
    this.helperWatch = watchProcesses(hypervisor.processes().helpers ?? []);
    void this.helperWatch.gone.then((reason) => stopVm(`its helper ${reason}`));
  }
}

function describeExit(exit: VmExit): string {
  if (exit.detail) return `${exit.reason}: ${exit.detail}`;
  return exit.signal ? `${exit.reason} by ${exit.signal}` : exit.reason;
}

/** The agent of a sandbox another process owns, reached from its record, and a promise that settles once its VM is gone. */
export interface SandboxConnection {
  agent: AgentClient;
  /** Settles when a recorded VM process is gone or the agent connection closes. */
  gone: Promise<string>;
  close(): void;
}

/** Connects to the agent of a sandbox another process started (`hull start`, `exec`, `kill`), found from its record. */
export async function connectToSandbox(dir: string, record: SandboxRecord): Promise<SandboxConnection> {
  const agent = await connectAgent(vmDirOf(dir, record), { timeoutMs: 10_000 });
  const { vm } = record;
  const processes = [...(vm.vmm ? [vm.vmm] : []), ...(vm.helpers ?? [])];
  const watch = watchProcesses(processes);
  // A lost connection is most often a dying VM process: named when it is one (after SETTLE_MS for it to finish dying).
  const closed = new Promise<string>((resolve) =>
    agent.onClose((err) =>
      setTimeout(() => resolve(firstGone(processes) ?? `the guest agent connection closed (${oneLine(err)})`), SETTLE_MS),
    ),
  );
  return {
    agent,
    gone: Promise.race([watch.gone, closed]),
    close: () => {
      watch.stop();
      agent.close();
    },
  };
}
