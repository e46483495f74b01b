// How big a VM to give a container: from linux.resources when the spec sets limits (the guest must hold the
// workload's limit plus the guest's own overhead), else small defaults ([vm] vcpus / memory_mib of the config file,
// else the built-in ones below). HULL_VCPUS / HULL_MEMORY_MIB override all of it. A VM that an Update can reach (a
// containerd pod's, a pooled one) may also get room to grow (vm.max_memory_mib, withHeadroom), through the balloon.
import { hullConfig } from '../config/load.js';
import { configuredMaxMemoryMiB } from '../config/values.js';
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
  /** Guest RAM the guest may use now. */
  memoryMiB: number;
  /** The most Update may grow memoryMiB to (the VM's RAM, the rest held by the balloon); absent: it cannot grow. */
  maxMemoryMiB?: number;
}

/**
 * `size` with the configured room to grow, when that is more than its memory. Only for VMs an Update can reach: the
 * CLI has no `update`, and room costs memory and boot CPU (docs/density.md).
 */
export function withHeadroom(size: VmSize): VmSize {
  const { vcpus, memoryMiB } = size;
  const most = configuredMaxMemoryMiB().value;
  return most > memoryMiB ? { vcpus, memoryMiB, maxMemoryMiB: most } : { vcpus, memoryMiB };
}

/** The most memory a VM of `size` can have. */
export const mostMemoryMiB = (size: VmSize): number => Math.max(size.memoryMiB, size.maxMemoryMiB ?? 0);

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
 * The memory a running VM of `size` must grow to for a container limit of `limitBytes` (the limit plus the guest's
 * overhead, as at boot, but no more than the VM can have), or undefined when it has enough already.
 */
export function memoryToGrowTo(limitBytes: number | undefined, size: VmSize): number | undefined {
  if (limitBytes === undefined || limitBytes <= 0) return undefined;
  const want = Math.min(mostMemoryMiB(size), Math.ceil(limitBytes / 2 ** 20) + GUEST_OVERHEAD_MIB);
  return want > size.memoryMiB ? want : undefined;
}

/**
 * Why a running VM of `size` cannot honour new limits, or undefined when it can. A microvm has no memory or CPU
 * hotplug: memory grows only into the headroom it was booted with (the balloon), CPUs not at all; saying so beats a
 * limit the guest can never reach.
 */
export function beyondVm(resources: OciLinuxResources, size: VmSize): string | undefined {
  const limit = resources.memory?.limit;
  const most = mostMemoryMiB(size);
  if (limit !== undefined && limit > most * 2 ** 20) {
    return size.maxMemoryMiB === undefined
      ? `memory limit ${Math.ceil(limit / 2 ** 20)} MiB is more than the pod VM's ${size.memoryMiB} MiB, and it was booted without room to grow (vm.max_memory_mib)`
      : `memory limit ${Math.ceil(limit / 2 ** 20)} MiB is more than the ${most} MiB the pod VM can grow to (vm.max_memory_mib)`;
  }
  const cpu = resources.cpu;
  if (cpu?.quota && cpu.quota > 0 && cpu.period && cpu.period > 0 && cpu.quota / cpu.period > size.vcpus) {
    return `CPU quota of ${(cpu.quota / cpu.period).toFixed(2)} CPUs is more than the pod VM's ${size.vcpus} vCPU(s), and a running VM cannot grow (no CPU hotplug on microvm)`;
  }
  return undefined;
}
