// The pod's sandbox for the task service: a shim/sandbox/ Sandbox whose record is the pod record (pod.json), so the
// `delete` command can finish it after a shim that died. The first container is shared before boot; virtiofsd runs
// with its chroot sandbox so later containers of the pod, shared after boot, are visible in the guest.
import type { Logger } from 'pino';
import { requireNetns, specNetwork } from '../sandbox/network/spec-netns.js';
import type { SandboxRecordStore } from '../sandbox/record.js';
import { DEFAULT_ROOT } from '../sandbox/paths.js';
import { Sandbox } from '../sandbox/sandbox.js';
import { directVmFactory, type VmFactory } from '../sandbox/vm-factory.js';
import { pooledVmFactory } from '../pool/pooled-vm-factory.js';
import { vmSizeFor } from '../sandbox/vm-sizing.js';
import type { BootRequest, PodVm, PodVmFactory } from './pod.js';
import { readPodRecord, updatePodRecord } from './record.js';

/** The sandbox record inside pod.json; only the shim daemon writes it while it lives. */
export const podRecordStore = (dir: string): SandboxRecordStore => ({
  read: () => readPodRecord(dir),
  update: (change) => void updatePodRecord(dir, change),
});

/**
 * The root whose pool (`hull pool serve --root …`) the shim takes VMs from: $HULL_POOL_ROOT, else the hull CLI's
 * default root, so `hull pool serve` with no --root serves containerd's pods too.
 */
const shimPoolRoot = (): string => process.env.HULL_POOL_ROOT ?? DEFAULT_ROOT;

export class VmPodFactory implements PodVmFactory {
  constructor(
    private readonly dir: string,
    private readonly sandboxId: string,
    private readonly log: Logger,
    private readonly vms?: VmFactory,
  ) {}

  async boot(req: BootRequest): Promise<PodVm> {
    const network = specNetwork(req.spec);
    if (network.kind === 'path') requireNetns(network.path);
    const sandbox = new Sandbox({
      id: this.sandboxId,
      dir: this.dir,
      logger: this.log,
      record: podRecordStore(this.dir),
      vms: this.vms ?? pooledVmFactory(shimPoolRoot(), directVmFactory()),
    });
    sandbox.addContainer(req.containerId, req.hostRootfs, req.binds);
    // The pod's namespace (CNI's) reaches the VM; a namespace of its own without a path is loopback only.
    await sandbox.boot({
      size: vmSizeFor(req.spec),
      detached: true,
      virtiofsdSandbox: 'chroot',
      ...(network.kind === 'path' ? { netnsPath: network.path } : {}),
    });
    return sandbox;
  }
}
