// The sandbox manager's view of the VMM layer when it boots a VM: the driver registry (hypervisor/registry.ts) makes
// the VM, and the acceleration it chose is logged here, and said on stderr when HULL_WARN_TCG asks for it.
import type { Logger } from 'pino';
import { createVm } from '../../hypervisor/registry.js';
import type { Hypervisor, VmConfig, VmOptions } from '../../hypervisor/types.js';

export function createHypervisor(
  config: VmConfig,
  logger: Logger,
  detached: boolean,
  extra: Pick<VmOptions, 'virtiofsdSandbox'> = {},
): Hypervisor {
  const accelWarning = (reason: string): void => {
    // Said once per sandbox, in one line, as the issue asks; the log has it too.
    if (!process.env.HULL_QUIET_ACCEL) process.stderr.write(`hull: warning: ${reason}\n`);
  };
  const vm = createVm(config, { logger, detached, ...extra });
  if (vm.accel.accel === 'tcg' && process.env.HULL_WARN_TCG === '1') accelWarning(vm.accel.reason);
  logger.info({ accel: vm.accel.accel, reason: vm.accel.reason }, 'acceleration');
  return vm;
}
