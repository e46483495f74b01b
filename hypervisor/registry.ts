// The VMM driver registry: the one place that knows which drivers exist. shim/ creates a VM, reattaches to one,
// reaches its guest or ends it from its record through here, and never names a driver's module. Records name the
// driver that started the VM (vmm.json `driver`, VmProcesses `driver`; absent in records of earlier hull, which are
// QEMU microvm's), so a later hull process handles the VM the way its own driver does.
import type { Duplex } from 'node:stream';
import { HypervisorError, UnknownDriverError } from './errors.js';
import { sandboxPaths } from './paths.js';
import { qemuMicrovmDriver } from './qemu-driver.js';
import { readVmRecord } from './record.js';
import type { Hypervisor, VmConfig, VmDriver, VmOptions, VmProcesses } from './types.js';

const DRIVERS = new Map<string, VmDriver>([[qemuMicrovmDriver.name, qemuMicrovmDriver]]);

/** The driver a caller gets without asking, and the one a record without a driver field was written by. */
const DEFAULT_DRIVER = qemuMicrovmDriver.name;

/** The driver called `name` (undefined: the default); `record` names the record it came from, for the error. */
function driverNamed(name: string | undefined, record?: string): VmDriver {
  const driver = DRIVERS.get(name ?? DEFAULT_DRIVER);
  if (!driver) throw new UnknownDriverError(name ?? DEFAULT_DRIVER, [...DRIVERS.keys()], record);
  return driver;
}

/**
 * Adds a driver (a second VMM, or a test's fake) under its name; a name already taken is refused. Returns the function
 * that removes it again (a no-op once another driver took the name).
 */
export function registerDriver(driver: VmDriver): () => void {
  if (DRIVERS.has(driver.name)) {
    throw new HypervisorError('already-exists', `a VMM driver named "${driver.name}" is already registered`);
  }
  DRIVERS.set(driver.name, driver);
  return () => {
    if (DRIVERS.get(driver.name) === driver) DRIVERS.delete(driver.name);
  };
}

/** A VM of `options.driver` (default qemu-microvm), not started yet. */
export function createVm(config: VmConfig, options: VmOptions): Hypervisor {
  return driverNamed(options.driver).create(config, options);
}

/** The running VM that an earlier hull process started in the sandbox directory `dir`, found from its vmm.json. */
export async function reattachVm(dir: string, options: VmOptions): Promise<Hypervisor> {
  const file = sandboxPaths(dir).vmmRecord;
  const record = readVmRecord(file);
  return driverNamed(record.driver, file).reattach(dir, record, options);
}

/**
 * Ends a VM's processes from a record alone (state.json or pod.json `vm`, vmm.json `processes`), the way the driver
 * that started them does. With `dir` (the sandbox directory), what the VM left there goes too (sockets, vmm.json).
 */
export async function killRecordedVm(processes: VmProcesses, dir?: string): Promise<void> {
  const source = dir === undefined ? "the sandbox's record" : `the record of ${dir}`;
  await driverNamed(processes.driver, source).killRecorded(processes, dir);
}

/** A stream to guest vsock `port` of the VM running in the sandbox directory `dir`, found from its vmm.json. */
export async function connectRecordedVm(dir: string, port: number, timeoutMs: number): Promise<Duplex> {
  const file = sandboxPaths(dir).vmmRecord;
  const record = readVmRecord(file);
  return driverNamed(record.driver, file).connectRecorded(dir, record, port, timeoutMs);
}
