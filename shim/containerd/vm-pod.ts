// The real PodVm: a shim/sandbox/sandbox.ts Sandbox (QEMU microvm + virtiofsd + vsock backend + agent) in the pod's host
// directory. virtiofsd runs with its chroot sandbox so roots shared after boot (later containers of the pod) are
// visible in the guest; every host resource is written to the pod record first, so `delete` can clean up after a
// shim that died.
import { mkdirSync } from 'node:fs';
import type { Logger } from 'pino';
import { isAlive, procStat } from '../../hypervisor/process.js';
import type { VmProcesses } from '../../hypervisor/types.js';
import { HullError, oneLine } from '../errors.js';
import { guestRootfs, releaseContainerShare, releaseMounts, Sandbox } from '../sandbox/sandbox.js';
import { mountHostBinds, type HostBind } from '../sandbox/share-mounts.js';
import { vmSizeFor } from '../sandbox/vm-sizing.js';
import type { BootRequest, PodVm, PodVmFactory, VmUsage } from './pod.js';
import { readPodRecord, updatePodRecord } from './record.js';
import { attachNetwork, detachNetwork } from '../sandbox/network/pod-network.js';
import { requireNetns, specNetwork } from '../sandbox/network/spec-netns.js';

const CLK_TCK = 100;
const PAGE_SIZE = 4096;

/**
 * Shares one container into the pod's share: its root, then the host sources its spec binds, each written to the
 * pod record before it is mounted. Undoes its own work when a step fails. Used before boot (the first container)
 * and after (later ones), so the two paths cannot drift apart.
 */
function shareContainer(dir: string, containerId: string, hostRootfs: string, binds: HostBind[]): void {
  const target = Sandbox.rootfsTarget(dir, containerId);
  updatePodRecord(dir, (r) => void r.mounts.push(target));
  try {
    Sandbox.shareRootfs(dir, containerId, hostRootfs);
    mountHostBinds(dir, containerId, binds, (targets) => updatePodRecord(dir, (r) => void r.mounts.push(...targets)));
  } catch (err) {
    try {
      unshareContainer(dir, containerId);
    } catch (cleanup) {
      throw new HullError('internal', `${oneLine(err)}; undoing its mounts failed too: ${oneLine(cleanup)}`, { cause: err });
    }
    throw err;
  }
}

/** Unmounts and removes a container's part of the share, then drops its mounts from the pod record. */
function unshareContainer(dir: string, containerId: string): void {
  const share = releaseContainerShare(dir, containerId);
  updatePodRecord(dir, (r) => void (r.mounts = r.mounts.filter((m) => m !== share && !m.startsWith(`${share}/`))));
}

/** Removes the taps hull added to the pod's namespace and drops them from the record. */
async function releasePodNetwork(dir: string, log: Logger): Promise<void> {
  try {
    await detachNetwork(readPodRecord(dir)?.network, log);
    updatePodRecord(dir, (r) => void delete r.network);
  } catch (err) {
    log.warn({ err: oneLine(err) }, 'removing the pod network taps');
  }
}

class VmPod implements PodVm {
  readonly died: Promise<string>;
  private settleDied!: (reason: string) => void;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  /** Why the shim stopped a VM whose agent connection was lost while QEMU still ran. */
  private stoppedBecause: string | undefined;
  /** Containers whose root (and host bind sources) are in the share. */
  private readonly shares = new Set<string>();

  constructor(
    private readonly sandbox: Sandbox,
    private readonly dir: string,
    private readonly memoryMiB: number,
    private readonly vcpus: number,
    private readonly log: Logger,
  ) {
    this.died = new Promise<string>((resolve) => (this.settleDied = resolve));
    void sandbox.hypervisor.wait().then((exit) => {
      if (this.stopping) return;
      const how = exit.detail ? `${exit.reason}: ${exit.detail}` : exit.signal ? `${exit.reason} by ${exit.signal}` : exit.reason;
      const why = this.stoppedBecause ? `, stopped by the shim: ${this.stoppedBecause}` : '';
      this.settleDied(`QEMU exited (${how}${why}); guest console ${sandbox.hypervisor.consolePath}`);
    });
    // Without its agent the VM can do nothing more. If QEMU died, its exit is on the way (wait() above); if it
    // still runs (the agent crashed), stop it, so that died always settles and nothing waits on a dead channel.
    sandbox.agent.onClose((err) => {
      // isAlive: a QEMU that died but was not reaped yet is a zombie, and counts as gone.
      const vmm = sandbox.hypervisor.processes().vmm;
      if (this.stopping || !vmm || !isAlive(vmm)) return;
      this.stoppedBecause = `the guest agent connection closed (${oneLine(err)})`;
      log.error({ reason: this.stoppedBecause }, 'stopping the pod VM: its agent is gone');
      void sandbox.hypervisor.kill().catch((e: unknown) => log.warn({ err: oneLine(e) }, 'kill VM'));
    });
  }

  get agent() {
    return this.sandbox.agent;
  }

  /** The first container, shared before boot by VmPodFactory. */
  adoptShare(containerId: string): void {
    this.shares.add(containerId);
  }

  shareRootfs(containerId: string, hostRootfs: string, binds: HostBind[]): string {
    if (!this.shares.has(containerId)) {
      shareContainer(this.dir, containerId, hostRootfs, binds);
      this.shares.add(containerId);
    }
    return guestRootfs(containerId);
  }

  unshareRootfs(containerId: string): void {
    if (!this.shares.has(containerId)) return;
    unshareContainer(this.dir, containerId);
    this.shares.delete(containerId);
  }

  pause(): Promise<void> {
    return this.sandbox.hypervisor.pause();
  }

  resume(): Promise<void> {
    return this.sandbox.hypervisor.resume();
  }

  usage(): VmUsage {
    const vmm = this.sandbox.hypervisor.processes().vmm;
    const stat = vmm ? procStat(vmm.pid) : undefined;
    return {
      cpuUserUsec: Math.round(((stat?.utime ?? 0) * 1e6) / CLK_TCK),
      cpuSystemUsec: Math.round(((stat?.stime ?? 0) * 1e6) / CLK_TCK),
      rssBytes: (stat?.rss ?? 0) * PAGE_SIZE,
      memoryLimitBytes: this.memoryMiB * 2 ** 20,
      vcpus: this.vcpus,
    };
  }

  shutdown(): Promise<void> {
    this.stopping = true;
    this.settleDied('the pod VM was shut down');
    this.stopped ??= (async () => {
      await this.sandbox.shutdown().catch((err: unknown) => this.log.warn({ err: oneLine(err) }, 'sandbox shutdown'));
      releaseMounts(this.dir, readPodRecord(this.dir)?.mounts ?? []);
      await releasePodNetwork(this.dir, this.log);
      this.shares.clear();
      updatePodRecord(this.dir, (r) => {
        r.vm = {};
        r.mounts = [];
      });
      this.log.info('pod VM stopped');
    })();
    return this.stopped;
  }
}

export class VmPodFactory implements PodVmFactory {
  constructor(
    private readonly dir: string,
    private readonly sandboxId: string,
    private readonly log: Logger,
  ) {}

  async boot(req: BootRequest): Promise<PodVm> {
    const network = specNetwork(req.spec);
    if (network.kind === 'path') requireNetns(network.path);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const size = vmSizeFor(req.spec);
    // Shared before virtiofsd starts; later containers (shareRootfs) are seen through its chroot sandbox.
    shareContainer(this.dir, req.containerId, req.hostRootfs, req.binds);
    try {
      // The pod's namespace (CNI's) reaches the VM; a namespace of its own without a path is loopback only.
      const net =
        network.kind === 'path'
          ? await attachNetwork(network.path, this.log, (record) => updatePodRecord(this.dir, (r) => void (r.network = record)))
          : undefined;
      const sandbox = await Sandbox.boot(
        {
          id: this.sandboxId,
          dir: this.dir,
          size,
          logger: this.log,
          detached: true,
          virtiofsdSandbox: 'chroot',
          onResources: ({ vm }: { vm: VmProcesses }) => updatePodRecord(this.dir, (r) => void (r.vm = vm)),
          ...(net && network.kind === 'path' && net.nics.length > 0 ? { network: { netnsPath: network.path, ...net } } : {}),
        },
        [Sandbox.rootfsTarget(this.dir, req.containerId)],
      );
      const pod = new VmPod(sandbox, this.dir, size.memoryMiB, size.vcpus, this.log);
      pod.adoptShare(req.containerId);
      return pod;
    } catch (err) {
      updatePodRecord(this.dir, (r) => void (r.vm = {}));
      unshareContainer(this.dir, req.containerId);
      await releasePodNetwork(this.dir, this.log);
      throw err;
    }
  }
}
