// The pool's side of the VmFactory seam (shim/sandbox/vm-factory.ts): a sandbox whose VM fits a ready pooled VM
// takes that one — claimed once, never given back — and otherwise boots cold through `fallback`, saying why. The
// claimed VM is reattached from its record in the pool's directory, which becomes the sandbox's VM directory: its
// containers are shared into that VM's share after the claim (virtiofsd runs with its chroot sandbox there, so the
// guest sees them), and the sandbox's teardown ends the VM and removes the directory.
import type { Logger } from 'pino';
import { reattachVm } from '../../hypervisor/registry.js';
import { AgentClient } from '../../protocol/agent-client.js';
import { HullError, oneLine } from '../errors.js';
import { findGuestAssets } from '../sandbox/guest-assets.js';
import { AGENT_PORT } from '../sandbox/paths.js';
import type { BootedVm, VmBootRequest, VmFactory } from '../sandbox/vm-factory.js';
import { claimReadyVm, type ClaimedVm } from './claim.js';

/** How long a claimed VM's agent may take to answer: it answered the pool already, so this is short. */
const CLAIMED_AGENT_WAIT_MS = 10_000;

/** Takes VMs from the pool of `root` when one fits, else boots through `fallback`. */
export function pooledVmFactory(root: string, fallback: VmFactory): VmFactory {
  return {
    async boot(request) {
      const why = request.network
        ? 'the sandbox has network interfaces and pooled VMs have no NIC yet'
        : claimOrMiss(root, request);
      if (typeof why === 'string') {
        request.logger.info({ why }, 'no pooled VM: booting one');
        return fallback.boot(request);
      }
      return bootClaimed(request, why);
    },
  };
}

function claimOrMiss(root: string, request: VmBootRequest): string | ClaimedVm {
  const accel = process.env.HULL_ACCEL;
  const claim = claimReadyVm(root, {
    vcpus: request.size.vcpus,
    memoryMiB: request.size.memoryMiB,
    image: findGuestAssets().hash,
    ...(accel === 'kvm' || accel === 'tcg' ? { accel } : {}),
  });
  if ('miss' in claim) return claim.miss;
  // On record at once: a crash from here on leaves the VM to this sandbox's teardown (or the pool's orphan reaper).
  request.onProcesses(claim.record.vm);
  return claim;
}

async function bootClaimed(request: VmBootRequest, { id, dir, record }: ClaimedVm): Promise<BootedVm> {
  const log: Logger = request.logger.child({ pooledVm: id });
  const started = Date.now();
  request.prepareShare(dir);
  const hypervisor = await reattachVm(dir, { logger: log, detached: request.detached });
  try {
    request.onProcesses(hypervisor.processes());
    const agent = new AgentClient(await hypervisor.connectVsock(AGENT_PORT, CLAIMED_AGENT_WAIT_MS));
    await agent.health();
    log.info({ ms: Date.now() - started, accel: hypervisor.accel.accel }, 'pooled VM claimed');
    return { dir, hypervisor, agent, size: { vcpus: record.shape.vcpus, memoryMiB: record.shape.memoryMiB } };
  } catch (err) {
    await hypervisor.kill().catch((e: unknown) => log.warn({ err: oneLine(e) }, 'killing a pooled VM that failed its claim'));
    throw new HullError('unavailable', `pooled VM ${id} did not answer after its claim: ${oneLine(err)}`, { cause: err });
  }
}
