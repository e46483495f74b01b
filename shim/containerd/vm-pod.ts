// The pod's sandbox for the task service: a shim/sandbox/ Sandbox whose record is the pod record (pod.json), so the
// `delete` command can finish it after a shim that died. The first container is shared before boot; virtiofsd runs
// with its chroot sandbox so later containers of the pod, shared after boot, are visible in the guest.
import type { Logger } from 'pino';
import { requireNetns, specNetwork } from '../sandbox/network/spec-netns.js';
import type { SandboxRecordStore } from '../sandbox/record.js';
import { configuredRoot } from '../config/values.js';
import { Sandbox } from '../sandbox/sandbox.js';
import { directVmFactory, type VmFactory } from '../sandbox/vm-factory.js';
import { pooledVmFactory } from '../pool/pooled-vm-factory.js';
import { vmSizeFor, withHeadroom } from '../sandbox/vm-sizing.js';
import { planHostCgroup, type HostCgroupRequest } from '../sandbox/cgroups/host-cgroup.js';
import { looksLikeSystemdPath } from '../sandbox/cgroups/path.js';
import type { OciLinuxResources } from '../oci-spec.js';
import type { BootRequest, PodVm, PodVmFactory } from './pod.js';
import { readPodRecord, updatePodRecord } from './record.js';

/** The sandbox record inside pod.json; only the shim daemon writes it while it lives. */
export const podRecordStore = (dir: string): SandboxRecordStore => ({
  read: () => readPodRecord(dir),
  update: (change) => void updatePodRecord(dir, change),
});

/**
 * The root whose pool (`hull pool serve --root …`) the shim takes VMs from: $HULL_POOL_ROOT, else the hull CLI's
 * default root (paths.root of the config file, else /run/hull), so `hull pool serve` with no --root serves
 * containerd's pods too.
 */
const shimPoolRoot = (): string => process.env.HULL_POOL_ROOT ?? configuredRoot().value;

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
    const cgroup = podCgroup(req, this.sandboxId);
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
      size: withHeadroom(vmSizeFor(req.spec)),
      detached: true,
      virtiofsdSandbox: 'chroot',
      ...(network.kind === 'path' ? { netnsPath: network.path } : {}),
      cgroup,
    });
    return sandbox;
  }
}

/** containerd's CRI plugin marks the pod's sandbox (pause) container with this annotation. */
const CRI_CONTAINER_TYPE = 'io.kubernetes.cri.container-type';

/**
 * The pod VM's host cgroup: the one the first container's cgroupsPath names — under CRI the sandbox (pause)
 * container's, inside the kubelet's pod cgroup. Later containers' cgroupsPaths are not used on the host: the whole VM
 * stays in the pod's cgroup (Kata's sandbox_cgroup_only) and the guest enforces each container's limits. The pause
 * container's cpu.shares (containerd gives it 2) is not the pod's weight — the kubelet's pod cgroup, the parent,
 * holds that — so a CRI sandbox's shares are left out. The systemd form: asked for in runc's options, or the path's
 * own shape (CRI writes `<slice>:cri-containerd:<id>` when the kubelet's cgroup parent is a slice).
 */
function podCgroup(req: BootRequest, podId: string): HostCgroupRequest {
  const cgroupsPath = req.spec.linux?.['cgroupsPath'];
  const systemd = req.systemdCgroup === true || (typeof cgroupsPath === 'string' && looksLikeSystemdPath(cgroupsPath));
  let resources: OciLinuxResources | undefined = req.spec.linux?.resources;
  if (req.spec.annotations?.[CRI_CONTAINER_TYPE] === 'sandbox' && resources?.cpu?.shares !== undefined) {
    const { shares: _shares, ...cpu } = resources.cpu;
    resources = { ...resources, cpu };
  }
  return planHostCgroup(req.spec, podId, { systemd, resources });
}
