// The QEMU microvm driver as the registry (hypervisor/registry.ts) sees it: the driver-neutral options become
// QemuMicrovm's, and a VM found from its record is reached over the vsock transport chosen when it started (the
// backend's hybrid socket, or AF_VSOCK to its CID).
import type { Duplex } from 'node:stream';
import { VmStateError } from './errors.js';
import { sandboxPaths } from './paths.js';
import { QEMU_MICROVM, QemuMicrovm, type QemuMicrovmOptions } from './qemu.js';
import { transportFor } from './transport.js';
import type { VmDriver, VmOptions } from './types.js';

function qemuOptions(options: VmOptions): QemuMicrovmOptions {
  return {
    logger: options.logger,
    ...(options.detached !== undefined ? { detached: options.detached } : {}),
    ...(options.virtiofsdSandbox ? { virtiofsdSandbox: options.virtiofsdSandbox } : {}),
    ...(options.onProcesses ? { onProcesses: options.onProcesses } : {}),
  };
}

export const qemuMicrovmDriver: VmDriver = {
  name: QEMU_MICROVM,
  create: (config, options) => new QemuMicrovm(config, qemuOptions(options)),
  reattach: (dir, record, options) => QemuMicrovm.reattach(dir, qemuOptions(options), record),
  killRecorded: (processes, dir) => QemuMicrovm.killRecorded(processes, dir),
  connectRecorded(dir, record, port, timeoutMs): Promise<Duplex> {
    const transport = transportFor(record.transport, sandboxPaths(dir).vsockSock, record.guestCid);
    if (!transport) {
      return Promise.reject(new VmStateError(`the VM in ${dir} has no vsock device (transport ${record.transport})`));
    }
    return transport.connect(port, timeoutMs);
  },
};
