// How big a VM to give a container: from linux.resources when the spec sets limits (the guest must hold the
// workload's limit plus the guest's own overhead), else small defaults ([vm] vcpus / memory_mib of the config file,
// else the built-in ones below). HULL_VCPUS / HULL_MEMORY_MIB override all of it.
import { hullConfig } from '../config/load.js';
import { invalidArgument } from '../errors.js';
import type { OciLinuxResources, OciSpec } from '../oci-spec.js';

export const DEFAULT_VCPUS = 1;
export const DEFAULT_MEMORY_MIB = 512;
/** Kernel, agent (Node) and page cache of the guest on top of the container's own limit. */
export const GUEST_OVERHEAD_MIB = 256;
const MAX_VCPUS = 64;

function envNumber(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw invalidArgument(`${name}="${raw}" must be a positive integer`);
  return value;
}

export interface VmSize {
  vcpus: number;
  memoryMiB: number;
}

export function vmSizeFor(spec: OciSpec): VmSize {
  const resources = spec.linux?.resources;
  const defaults = hullConfig().values.vm;
  let vcpus = defaults.vcpus ?? DEFAULT_VCPUS;
  const cpu = resources?.cpu;
  if (cpu?.quota && cpu.quota > 0 && cpu.period && cpu.period > 0) {
    vcpus = Math.min(MAX_VCPUS, Math.max(1, Math.ceil(cpu.quota / cpu.period)));
  }
  let memoryMiB = defaults.memory_mib ?? DEFAULT_MEMORY_MIB;
  const limit = resources?.memory?.limit;
  if (limit && limit > 0) memoryMiB = Math.max(memoryMiB, Math.ceil(limit / 2 ** 20) + GUEST_OVERHEAD_MIB);
  return { vcpus: envNumber('HULL_VCPUS') ?? vcpus, memoryMiB: envNumber('HULL_MEMORY_MIB') ?? memoryMiB };
}

/**
 * Why a running VM of `size` cannot honour new limits, or undefined when it can. A microvm has no memory or CPU
 * hotplug, so a limit above what the VM was booted with cannot be met by growing it; saying so beats a limit the
 * guest can never reach.
 */
export function beyondVm(resources: OciLinuxResources, size: VmSize): string | undefined {
  const limit = resources.memory?.limit;
  if (limit !== undefined && limit > size.memoryMiB * 2 ** 20) {
    return `memory limit ${Math.ceil(limit / 2 ** 20)} MiB is more than the pod VM's ${size.memoryMiB} MiB, and a running VM cannot grow (no memory hotplug on microvm)`;
  }
  const cpu = resources.cpu;
  if (cpu?.quota && cpu.quota > 0 && cpu.period && cpu.period > 0 && cpu.quota / cpu.period > size.vcpus) {
    return `CPU quota of ${(cpu.quota / cpu.period).toFixed(2)} CPUs is more than the pod VM's ${size.vcpus} vCPU(s), and a running VM cannot grow (no CPU hotplug on microvm)`;
  }
  return undefined;
}
