// How a sandbox gets a running VM with its agent answering: the VmFactory seam. The direct factory here creates one
// through the driver registry (hypervisor/registry.ts) and boots it; a pool of pre-booted VMs, or a test's fake,
// is another VmFactory. Booting is all-or-nothing: when a step fails, what was started is stopped and the error says
// why, quoting the guest console. A cold boot first takes one of the host's boot slots (boot-slots.ts) and holds it
// until its agent answers: the agent timeout counts from the boot's start, not from when it queued.
import { existsSync, realpathSync } from 'node:fs';
import type { Logger } from 'pino';
import { AgentUnreachableError } from '../../hypervisor/errors.js';
import { createVm } from '../../hypervisor/registry.js';
import type { Hypervisor, VmConfig, VmNic, VmOptions, VmProcesses } from '../../hypervisor/types.js';
import type { AgentClient } from '../../protocol/agent-client.js';
import { configuredAccel, configuredMaxConcurrentBoots } from '../config/values.js';
import { HullError, oneLine } from '../errors.js';
import { connectAgent } from './agent-connect.js';
import { acquireBootSlot } from './boot-slots.js';
import { findGuestAssets, guestAssetsDir } from './guest-assets.js';
import type { MovedTap } from './network/pod-network.js';
import type { PlannedNic } from './network/plan.js';
import type { VmSize } from './vm-sizing.js';
import { watchProcesses, type ProcessWatch } from './vm-watch.js';

const AGENT_WAIT_MS = Number(process.env.HULL_AGENT_TIMEOUT_MS ?? 90_000);
/** How long a boot may queue for a slot: generous (a burst of 100 boots, a few at a time, under TCG), yet bounded. */
const BOOT_QUEUE_WAIT_MS = Number(process.env.HULL_BOOT_QUEUE_TIMEOUT_MS ?? 600_000);
/** The TCG warning was written to stderr already (bootDirect). */
let tcgWarned = false;

export interface VmBootRequest {
  id: string;
  /** The sandbox directory (sockets, console log, the VMM's record). */
  dir: string;
  /** The host directory shared into the guest over virtio-fs. */
  sharedDir: string;
  size: VmSize;
  logger: Logger;
  /** The VM must outlive this process (create and start in separate CLI calls; the containerd shim). */
  detached: boolean;
  virtiofsdSandbox?: VmOptions['virtiofsdSandbox'];
  /** The pod's network: the VM gets one NIC per planned interface, attached by the factory before the VM uses it. */
  network?: PodNetworkRequest;
  /**
   * A VM for a pool, with NICs whose taps its VMM creates in a network namespace of its own (nothing else in it):
   * they reach a pod when a sandbox claims the VM (PodNetworkRequest.attach with `moved`). Not with `network`.
   */
  spareNics?: VmNic[];
  /** Called as soon as the VM's host processes exist, so they are on record before anything else can fail. */
  onProcesses: (vm: VmProcesses) => void;
  /**
   * Called with the directory the VM lives in once it is known and before the guest can look at its share: a new VM
   * lives in `dir` and this runs before it starts (virtiofsd may pin its view then); a pooled VM lives where the pool
   * booted it, and this runs after the claim. The sandbox shares its containers there.
   */
  prepareShare: (vmDir: string) => void;
}

export interface PodNetworkRequest {
  netnsPath: string;
  nics: PlannedNic[];
  /**
   * Mirrors each interface into its tap in the pod's namespace, all on record first: new taps, or (`moved`, by
   * index) a pooled VM's taps moved in from where they are.
   */
  attach(moved?: MovedTap[]): Promise<void>;
}

export interface BootedVm {
  /** The directory the VM lives in (`dir` of the request, or a pooled VM's). */
  dir: string;
  /** The VM's size, when it is not the one asked for (a pooled VM may be bigger). */
  size?: VmSize;
  hypervisor: Hypervisor;
  /** The MACs of the VM's NICs, by index, when they are not the pod interfaces' (a pooled VM's): the guest sets those. */
  guestMacs?: string[];
  /** Connected to the guest agent, which has answered Health. */
  agent: AgentClient;
}

export interface VmFactory {
  boot(request: VmBootRequest): Promise<BootedVm>;
}

/** Boots a new VM for each request with the driver `driver` (default: the registry's). */
export function directVmFactory(driver?: string): VmFactory {
  return { boot: (request) => bootDirect(request, driver) };
}

async function bootDirect(request: VmBootRequest, driver: string | undefined): Promise<BootedVm> {
  const { logger } = request;
  // Where the image is, decided now (the environment may say so only for this synchronous part: test/helpers/fake-vm.ts);
  // what it holds is read once the slot is ours.
  const guestDir = guestAssetsDir();
  const slots = configuredMaxConcurrentBoots().value;
  // Before anything of the VM exists (share, taps), so a boot that dies queueing has made nothing.
  const slot = await acquireBootSlot({
    slots,
    waitMs: BOOT_QUEUE_WAIT_MS,
    what: `sandbox ${request.id}`,
    onQueued: () => logger.info({ slots }, 'every boot slot is taken: queueing'),
  });
  logger.info({ slot: slot.index, slots, waitedMs: slot.waitedMs }, 'boot slot taken');
  try {
    return await bootInSlot(request, driver, guestDir);
  } finally {
    slot.release();
  }
}

async function bootInSlot(request: VmBootRequest, driver: string | undefined, guestDir: string): Promise<BootedVm> {
  const { id, logger } = request;
  // Read once the slot is ours, not before queueing, and through the symlink resolved once: the manifest (its root's
  // uuid goes on the kernel command line) and the files QEMU opens must be of one build, and a rebuild switches
  // `current` (it did, mid-burst, here).
  const assets = findGuestAssets(existsSync(guestDir) ? realpathSync(guestDir) : guestDir);
  request.prepareShare(request.dir);
  if (request.network) await request.network.attach(); // the taps QEMU opens by name
  const config: VmConfig = {
    id,
    dir: request.dir,
    vcpus: request.size.vcpus,
    memoryMiB: request.size.memoryMiB,
    ...(request.size.maxMemoryMiB === undefined ? {} : { maxMemoryMiB: request.size.maxMemoryMiB }),
    kernelPath: assets.kernelPath,
    initrdPath: assets.initrdPath,
    rootImagePath: assets.rootImagePath,
    kernelCmdline: `${assets.kernelCmdline} hull.sandbox=${id}`,
    sharedDir: request.sharedDir,
    accel: configuredAccel().value,
    guestCid: 3,
    ...(request.network ? { netnsPath: request.network.netnsPath, nics: request.network.nics } : {}),
    ...(request.spareNics?.length ? { privateNetns: true, nics: request.spareNics } : {}),
  };
  const hypervisor = createVm(config, {
    logger,
    detached: request.detached,
    ...(request.virtiofsdSandbox ? { virtiofsdSandbox: request.virtiofsdSandbox } : {}),
    ...(driver ? { driver } : {}),
    onProcesses: request.onProcesses,
  });
  // The TCG fallback is said in one line on stderr when a person may be reading it (a terminal; HULL_WARN_TCG=1 forces
  // it, HULL_QUIET_ACCEL=1 silences it), once per process (a pool boots many VMs); the log has it always.
  const warnTcg = (process.stderr.isTTY || process.env.HULL_WARN_TCG === '1') && !process.env.HULL_QUIET_ACCEL;
  if (hypervisor.accel.accel === 'tcg' && warnTcg && !tcgWarned) {
    tcgWarned = true;
    process.stderr.write(`hull: warning: ${hypervisor.accel.reason}\n`);
  }
  logger.info({ accel: hypervisor.accel.accel, reason: hypervisor.accel.reason }, 'acceleration');
  const started = Date.now();
  let helpers: ProcessWatch | undefined;
  try {
    await hypervisor.start();
    request.onProcesses(hypervisor.processes()); // all of them, for a driver that does not report as it goes
    logger.info({ ms: Date.now() - started, accel: hypervisor.accel.accel }, 'vmm started');
    const connecting = connectAgent(request.dir, { hypervisor, timeoutMs: AGENT_WAIT_MS });
    // A helper that dies while the guest boots (the vsock backend: no agent connection can ever come) fails the boot
    // at once, rather than when the agent wait runs out.
    helpers = watchProcesses(hypervisor.processes().helpers ?? []);
    const agent = await Promise.race([
      connecting,
      hypervisor.wait().then((exit) => {
        // A connection that still succeeds later is closed, not leaked.
        void connecting.then((a) => a.close(), () => undefined);
        throw new HullError('unavailable', `the VM exited during boot (${exit.reason})`);
      }),
      helpers.gone.then((reason) => {
        void connecting.then((a) => a.close(), () => undefined);
        throw new HullError('unavailable', `its helper ${reason}`);
      }),
    ]);
    await agent.health();
    helpers.stop();
    logger.info({ ms: Date.now() - started }, 'agent ready');
    return { dir: request.dir, hypervisor, agent };
  } catch (err) {
    helpers?.stop();
    const tail = hypervisor.consoleTail(8);
    // A guest that never answered: where its vCPUs are, before the VM is gone (a hung boot is rare; this says where).
    const vcpus =
      err instanceof AgentUnreachableError
        ? await hypervisor.vcpuReport?.().catch((e: unknown) => void logger.warn({ err: oneLine(e) }, 'reading the vCPUs of a VM that did not answer'))
        : undefined;
    await hypervisor.kill().catch((e: unknown) => logger.warn({ err: oneLine(e) }, 'killing the VM after a failed boot'));
    const why =
      err instanceof AgentUnreachableError
        ? `the guest agent did not answer within ${err.timeoutMs / 1000} s (is the guest image current? ` +
          `"npm run build" rebuilds it)${vcpus ? `; ${vcpus}` : ''}`
        : oneLine(err);
    throw new HullError(
      'unavailable',
      `sandbox ${id} failed to boot: ${why}; guest console ${hypervisor.consolePath}` + (tail ? ` ends with: ${oneLine(tail)}` : ' is empty'),
      { cause: err },
    );
  }
}
