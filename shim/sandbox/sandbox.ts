// One sandbox = one microVM with its helpers, the container rootfs shared in over virtio-fs, and a ttrpc
// connection to the guest agent. Booting is all-or-nothing: when any step fails, what was started is stopped and
// the error says why, quoting the guest console.
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { AgentUnreachableError } from '../../hypervisor/errors.js';
import { connectRecordedVm } from '../../hypervisor/registry.js';
import type { Hypervisor, VmConfig, VmNic } from '../../hypervisor/types.js';
import { AgentClient, type SetupNetworkRequest } from '../../protocol/agent-client.js';
import { HullError, oneLine } from '../errors.js';
import { findGuestAssets } from './guest-assets.js';
import { bindMount, unmount, unmountAllUnder } from './host-mounts.js';
import { createHypervisor } from './vmm.js';
import type { VmSize } from './vm-sizing.js';

export const AGENT_PORT = 1024;
/** Guest path of the virtio-fs share, and of one container's root inside it. */
export const GUEST_SHARED_DIR = '/run/hull/shared';
export const guestRootfs = (containerId: string): string => `${GUEST_SHARED_DIR}/${containerId}/rootfs`;
/** Guest path of the host bind source that a container's spec mounts[n] names (see shim/sandbox/share-mounts.ts). */
export const guestHostMount = (containerId: string, n: number): string => `${GUEST_SHARED_DIR}/${containerId}/mounts/${n}`;

const AGENT_WAIT_MS = Number(process.env.HULL_AGENT_TIMEOUT_MS ?? 90_000);
const POWEROFF_WAIT_MS = 3_000;

export interface SandboxOptions {
  id: string;
  dir: string;
  size: VmSize;
  logger: Logger;
  /** The VM must outlive this process (create/start in separate CLI calls). */
  detached: boolean;
  /** Called as soon as host resources exist, so they are on record before anything can fail. */
  onResources: (resources: { mounts: string[]; vm: ReturnType<Hypervisor['processes']> }) => void;
  /**
   * virtiofsd's sandbox. 'chroot' keeps virtiofsd in our mount namespace, so roots shared after boot
   * (Sandbox.shareRootfs into a running sandbox: later containers of a pod) are visible in the guest. Default: the
   * driver's ('namespace'), which pins the share's mounts at boot.
   */
  virtiofsdSandbox?: 'namespace' | 'chroot';
  /** The pod's network (shim/sandbox/network/): QEMU runs in netnsPath with a NIC per tap; the agent configures the guest. */
  network?: SandboxNetwork;
}

export interface SandboxNetwork {
  netnsPath: string;
  nics: VmNic[];
  guest: SetupNetworkRequest;
}

export class Sandbox {
  private constructor(
    readonly id: string,
    readonly dir: string,
    readonly hypervisor: Hypervisor,
    readonly agent: AgentClient,
    private readonly logger: Logger,
  ) {}

  static sharedDir(dir: string): string {
    return path.join(dir, 'shared');
  }

  /** One container's directory in the share: its rootfs and its host bind sources are mounted below it. */
  static containerShare(dir: string, containerId: string): string {
    return path.join(Sandbox.sharedDir(dir), containerId);
  }

  /** Where a container's rootfs is bind-mounted inside the share (recorded before the mount is made). */
  static rootfsTarget(dir: string, containerId: string): string {
    return path.join(Sandbox.containerShare(dir, containerId), 'rootfs');
  }

  /** Where the host source of the container's spec mounts[n] is bind-mounted inside the share. */
  static hostMountTarget(dir: string, containerId: string, n: number): string {
    return path.join(Sandbox.containerShare(dir, containerId), 'mounts', String(n));
  }

  /** Bind-mounts the container rootfs into the share; must happen before virtiofsd starts (it pins its view). */
  static shareRootfs(dir: string, containerId: string, hostRootfs: string): string {
    const target = Sandbox.rootfsTarget(dir, containerId);
    bindMount(hostRootfs, target);
    return target;
  }

  static async boot(options: SandboxOptions, mounts: string[]): Promise<Sandbox> {
    const { id, dir, size, logger } = options;
    const assets = findGuestAssets();
    const sharedDir = Sandbox.sharedDir(dir);
    mkdirSync(sharedDir, { recursive: true });
    const config: VmConfig = {
      id,
      dir,
      vcpus: size.vcpus,
      memoryMiB: size.memoryMiB,
      kernelPath: assets.kernelPath,
      initrdPath: assets.initrdPath,
      rootImagePath: assets.rootImagePath,
      kernelCmdline: `${assets.kernelCmdline} hull.sandbox=${id}`,
      sharedDir,
      accel: (process.env.HULL_ACCEL as VmConfig['accel'] | undefined) ?? 'auto',
      guestCid: 3,
      ...(options.network ? { netnsPath: options.network.netnsPath, nics: options.network.nics } : {}),
    };
    const hypervisor = createHypervisor(
      config,
      logger,
      options.detached,
      options.virtiofsdSandbox ? { virtiofsdSandbox: options.virtiofsdSandbox } : {},
    );
    const started = Date.now();
    try {
      await hypervisor.start();
      options.onResources({ mounts, vm: hypervisor.processes() });
      logger.info({ ms: Date.now() - started, accel: hypervisor.accel.accel }, 'vmm started');
      const stream = await Promise.race([
        hypervisor.connectVsock(AGENT_PORT, AGENT_WAIT_MS),
        hypervisor.wait().then((exit) => {
          throw new HullError('unavailable', `the VM exited during boot (${exit.reason})`);
        }),
      ]);
      const agent = new AgentClient(stream);
      await agent.health();
      logger.info({ ms: Date.now() - started }, 'agent ready');
      if (options.network && options.network.guest.interfaces.length > 0) {
        await agent.setupNetwork(options.network.guest);
        logger.info({ ms: Date.now() - started }, 'guest network configured');
      }
      return new Sandbox(id, dir, hypervisor, agent, logger);
    } catch (err) {
      const tail = hypervisor.consoleTail(8);
      await hypervisor.kill().catch(() => undefined);
      const why =
        err instanceof AgentUnreachableError
          ? `the guest agent did not answer within ${err.timeoutMs / 1000} s (is the guest image current? ` +
            `"npm run build" rebuilds it)`
          : oneLine(err);
      throw new HullError(
        'unavailable',
        `sandbox ${id} failed to boot: ${why}; guest console ${hypervisor.consolePath}` +
          (tail ? ` ends with: ${oneLine(tail)}` : ' is empty'),
        { cause: err },
      );
    }
  }

  /** Powers the guest off (the agent syncs first), then makes sure no VM process is left. */
  async shutdown(): Promise<void> {
    const exited = this.hypervisor.wait();
    try {
      await Promise.race([this.agent.destroySandbox(), exited]);
    } catch (err) {
      this.logger.debug({ err: oneLine(err) }, 'agent did not confirm power-off');
    }
    this.agent.close();
    await this.hypervisor.stop(POWEROFF_WAIT_MS);
  }
}

/** Connects to the agent of a sandbox another process started. */
export async function connectToSandbox(dir: string): Promise<AgentClient> {
  const stream = await connectRecordedVm(dir, AGENT_PORT, 10_000);
  return new AgentClient(stream);
}

/**
 * Removes the host side of a sandbox's share: each recorded mount, then whatever else is still mounted below the
 * share (never deleted through), then the directories.
 */
export function releaseMounts(dir: string, mounts: string[]): void {
  for (const target of mounts) unmount(target);
  const shared = Sandbox.sharedDir(dir);
  unmountAllUnder(shared);
  rmSync(shared, { recursive: true, force: true });
}

/**
 * Removes one container's part of the share (its rootfs and host bind mounts), recorded or not. Returns the
 * directory it removed, so the caller can drop every record below it.
 */
export function releaseContainerShare(dir: string, containerId: string): string {
  const share = Sandbox.containerShare(dir, containerId);
  unmountAllUnder(share);
  rmSync(share, { recursive: true, force: true });
  return share;
}
