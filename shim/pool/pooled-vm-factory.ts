// The pool's side of the VmFactory seam (shim/sandbox/vm-factory.ts): a sandbox whose VM fits a ready pooled VM
// takes that one — claimed once, never given back — and otherwise boots cold through `fallback`, saying why. A
// claimed VM gets the pod's network through its NICs' taps moved into the pod's namespace, and the host's clock and
// entropy (the agent's Claim). The
// claimed VM is reattached from its record in the pool's directory, which becomes the sandbox's VM directory: its
// containers are shared into that VM's share after the claim (virtiofsd runs with its chroot sandbox there, so the
// guest sees them), and the sandbox's teardown ends the VM and removes the directory.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { configuredAccel } from '../config/values.js';
import { reattachVm } from '../../hypervisor/registry.js';
import type { Hypervisor } from '../../hypervisor/types.js';
import type { AgentClient } from '../../protocol/agent-client.js';
import { HullError, oneLine } from '../errors.js';
import { findGuestAssets } from '../sandbox/guest-assets.js';
import { connectAgent as connectVmAgent } from '../sandbox/agent-connect.js';
import type { BootedVm, VmBootRequest, VmFactory } from '../sandbox/vm-factory.js';
import { claimReadyVm, type ClaimedVm } from './claim.js';

/** Host entropy credited to a claimed guest: a full reseed of its kernel's pool (256 bits) twice over. */
const CLAIM_ENTROPY_BYTES = 64;

/**
 * The pod's interfaces reach the claimed VM through its NICs' taps, moved from the VMM's own network namespace into
 * the pod's. The VMM is alive (claimReadyVm checked it, start time included), so /proc/<pid>/ns/net is its namespace.
 */
async function moveTapsIn(request: VmBootRequest, record: ClaimedVm['record']): Promise<void> {
  if (!request.network) return;
  const vmm = record.vm.vmm;
  if (!vmm) throw new HullError('internal', `pooled VM ${record.id} has no VMM on record`);
  await request.network.attach(record.nics.map((n) => ({ netns: `/proc/${vmm.pid}/ns/net`, tap: n.tap })));
}

/** The claimed VM's agent, past the handshake; its first call is Claim (no Health first: Claim answers as well). */
function connectAgent(dir: string, hypervisor: Hypervisor): Promise<AgentClient> {
  return connectVmAgent(dir, { hypervisor, timeoutMs: CLAIMED_AGENT_WAIT_MS });
}

/** How long a claimed VM's agent may take to answer: it answered the pool already, so this is short. */
const CLAIMED_AGENT_WAIT_MS = 10_000;

/** Takes VMs from the pool of `root` when one fits, else boots through `fallback`. */
export function pooledVmFactory(root: string, fallback: VmFactory): VmFactory {
  return {
    async boot(request) {
      const why = claimOrMiss(root, request);
      if (typeof why === 'string') {
        request.logger.info({ why }, 'no pooled VM: booting one');
        return fallback.boot(request);
      }
      return bootClaimed(request, why);
    },
  };
}

function claimOrMiss(root: string, request: VmBootRequest): string | ClaimedVm {
  const accel = configuredAccel().value; // a value hull does not know fails here, in one line, before anything is claimed
  const claim = claimReadyVm(root, {
    vcpus: request.size.vcpus,
    memoryMiB: request.size.memoryMiB,
    image: findGuestAssets().hash,
    ...(accel === 'kvm' || accel === 'tcg' ? { accel } : {}),
    nics: request.network?.nics.length ?? 0,
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
    // The host's network work and the guest's answer overlap; either failing fails the claim.
    const [connected, moved] = await Promise.allSettled([connectAgent(dir, hypervisor), moveTapsIn(request, record)]);
    if (moved.status === 'rejected') {
      if (connected.status === 'fulfilled') connected.value.close();
      throw moved.reason;
    }
    if (connected.status === 'rejected') throw connected.reason;
    const agent = connected.value;
    // NICs beyond the pod's interfaces go from the guest: its containers see only what the pod has.
    const unusedMacs = record.nics.slice(request.network?.nics.length ?? 0).map((n) => n.mac);
    const { clockStepMs } = await agent.claim({ unixTimeMs: Date.now(), entropy: randomBytes(CLAIM_ENTROPY_BYTES), unusedMacs });
    log.info({ ms: Date.now() - started, accel: hypervisor.accel.accel, clockStepMs: Math.round(clockStepMs) }, 'pooled VM claimed');
    const guestMacs = record.nics.map((n) => n.mac);
    const { vcpus, memoryMiB, maxMemoryMiB } = record.shape;
    const size = { vcpus, memoryMiB, ...(maxMemoryMiB === undefined ? {} : { maxMemoryMiB }) };
    return { dir, hypervisor, agent, size, ...(request.network ? { guestMacs } : {}) };
  } catch (err) {
    await hypervisor.kill().catch((e: unknown) => log.warn({ err: oneLine(e) }, 'killing a pooled VM that failed its claim'));
    throw new HullError('unavailable', `pooled VM ${id} did not answer after its claim: ${oneLine(err)}`, { cause: err });
  }
}
