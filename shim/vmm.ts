// The sandbox manager's view of the VMM layer: which driver to use, and how a later CLI process reaches a VM that an
// earlier one started (from the sandbox directory alone).
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { sandboxPaths } from '../hypervisor/paths.js';
import { QemuMicrovm, type QemuMicrovmOptions } from '../hypervisor/qemu.js';
import { readVmRecord } from '../hypervisor/record.js';
import { HybridTransport, KernelVsockTransport } from '../hypervisor/transport.js';
import type { Hypervisor, VmConfig, VmProcesses } from '../hypervisor/types.js';

export function createHypervisor(
  config: VmConfig,
  logger: Logger,
  detached: boolean,
  extra: Pick<QemuMicrovmOptions, 'virtiofsdSandbox'> = {},
): Hypervisor {
  const accelWarning = (reason: string): void => {
    // Said once per sandbox, in one line, as the issue asks; the log has it too.
    if (!process.env.HULL_QUIET_ACCEL) process.stderr.write(`hull: warning: ${reason}\n`);
  };
  const vm = new QemuMicrovm(config, { logger, detached, ...extra });
  if (vm.accel.accel === 'tcg' && process.env.HULL_WARN_TCG === '1') accelWarning(vm.accel.reason);
  logger.info({ accel: vm.accel.accel, reason: vm.accel.reason }, 'acceleration');
  return vm;
}

export async function connectAgentStream(dir: string, port: number, timeoutMs: number): Promise<Duplex> {
  const record = readVmRecord(sandboxPaths(dir).vmmRecord);
  const transport =
    record.transport === 'vhost-vsock' ? new KernelVsockTransport(record.guestCid) : new HybridTransport(sandboxPaths(dir).vsockSock);
  return transport.connect(port, timeoutMs);
}

export async function killRecordedVm(vm: VmProcesses, dir?: string): Promise<void> {
  await QemuMicrovm.killRecorded(vm, dir);
}
