// How a sandbox gets a running VM with its agent answering: the VmFactory seam. The direct factory here creates one
// through the driver registry (hypervisor/registry.ts) and boots it; a pool of pre-booted VMs, or a test's fake,
// is another VmFactory. Booting is all-or-nothing: when a step fails, what was started is stopped and the error says
// why, quoting the guest console.
import type { Logger } from 'pino';
import { AgentUnreachableError } from '../../hypervisor/errors.js';
import { createVm } from '../../hypervisor/registry.js';
import type { Hypervisor, VmConfig, VmNic, VmOptions, VmProcesses } from '../../hypervisor/types.js';
import { AgentClient } from '../../protocol/agent-client.js';
import { HullError, oneLine } from '../errors.js';
import { findGuestAssets } from './guest-assets.js';
import { AGENT_PORT } from './paths.js';
import type { VmSize } from './vm-sizing.js';

const AGENT_WAIT_MS = Number(process.env.HULL_AGENT_TIMEOUT_MS ?? 90_000);

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
  /** The VMM runs in this network namespace with one NIC per tap. */
  network?: { netnsPath: string; nics: VmNic[] };
  /** Called as soon as the VM's host processes exist, so they are on record before anything else can fail. */
  onProcesses: (vm: VmProcesses) => void;
  /**
   * Called with the directory the VM lives in once it is known and before the guest can look at its share: a new VM
   * lives in `dir` and this runs before it starts (virtiofsd may pin its view then); a pooled VM lives where the pool
   * booted it, and this runs after the claim. The sandbox shares its containers there.
   */
  prepareShare: (vmDir: string) => void;
}

export interface BootedVm {
  /** The directory the VM lives in (`dir` of the request, or a pooled VM's). */
  dir: string;
  /** The VM's size, when it is not the one asked for (a pooled VM may be bigger). */
  size?: VmSize;
  hypervisor: Hypervisor;
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
  const { id, logger } = request;
  const assets = findGuestAssets();
  request.prepareShare(request.dir);
  const config: VmConfig = {
    id,
    dir: request.dir,
    vcpus: request.size.vcpus,
    memoryMiB: request.size.memoryMiB,
    kernelPath: assets.kernelPath,
    initrdPath: assets.initrdPath,
    rootImagePath: assets.rootImagePath,
    kernelCmdline: `${assets.kernelCmdline} hull.sandbox=${id}`,
    sharedDir: request.sharedDir,
    accel: (process.env.HULL_ACCEL as VmConfig['accel'] | undefined) ?? 'auto',
    guestCid: 3,
    ...(request.network ? { netnsPath: request.network.netnsPath, nics: request.network.nics } : {}),
  };
  const hypervisor = createVm(config, {
    logger,
    detached: request.detached,
    ...(request.virtiofsdSandbox ? { virtiofsdSandbox: request.virtiofsdSandbox } : {}),
    ...(driver ? { driver } : {}),
    onProcesses: request.onProcesses,
  });
  // Said on stderr when HULL_WARN_TCG asks for it, in one line; the log has it always.
  if (hypervisor.accel.accel === 'tcg' && process.env.HULL_WARN_TCG === '1' && !process.env.HULL_QUIET_ACCEL) {
    process.stderr.write(`hull: warning: ${hypervisor.accel.reason}\n`);
  }
  logger.info({ accel: hypervisor.accel.accel, reason: hypervisor.accel.reason }, 'acceleration');
  const started = Date.now();
  try {
    await hypervisor.start();
    request.onProcesses(hypervisor.processes()); // all of them, for a driver that does not report as it goes
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
    return { dir: request.dir, hypervisor, agent };
  } catch (err) {
    const tail = hypervisor.consoleTail(8);
    await hypervisor.kill().catch((e: unknown) => logger.warn({ err: oneLine(e) }, 'killing the VM after a failed boot'));
    const why =
      err instanceof AgentUnreachableError
        ? `the guest agent did not answer within ${err.timeoutMs / 1000} s (is the guest image current? ` +
          `"npm run build" rebuilds it)`
        : oneLine(err);
    throw new HullError(
      'unavailable',
      `sandbox ${id} failed to boot: ${why}; guest console ${hypervisor.consolePath}` + (tail ? ` ends with: ${oneLine(tail)}` : ' is empty'),
      { cause: err },
    );
  }
}
