// Chooses KVM or TCG. `/dev/kvm` existing is not enough: these machines expose a nested PVM /dev/kvm that runs a
// toy guest but dies on a stock kernel, so KVM needs an openable device, vmx/svm in the CPU flags, and no kvm_pvm.
import { closeSync, constants, existsSync, openSync, readFileSync } from 'node:fs';
import { KvmUnavailableError } from './errors.js';
import type { Acceleration, AccelerationChoice } from './types.js';

/** Paths the probe reads; tests point them at fake files. */
export interface AccelerationProbes {
  kvmDevice: string;
  cpuinfo: string;
  /** Directory holding kvm_pvm, kvm_intel, kvm_amd when loaded (normally /sys/module). */
  sysModule: string;
}

export const defaultProbes: AccelerationProbes = {
  kvmDevice: '/dev/kvm',
  cpuinfo: '/proc/cpuinfo',
  sysModule: '/sys/module',
};

interface KvmVerdict {
  usable: boolean;
  /** Why (not) usable, as a clause: "/dev/kvm is a nested PVM (…)". */
  why: string;
}

function cpuVirtFlag(cpuinfo: string): 'vmx' | 'svm' | undefined {
  let text: string;
  try {
    text = readFileSync(cpuinfo, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    if (!/^flags\s*:/.test(line)) continue;
    const flags = new Set(line.slice(line.indexOf(':') + 1).trim().split(/\s+/));
    if (flags.has('vmx')) return 'vmx';
    if (flags.has('svm')) return 'svm';
  }
  return undefined;
}

function openError(device: string): string | undefined {
  try {
    closeSync(openSync(device, constants.O_RDWR));
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

export function probeKvm(probes: AccelerationProbes = defaultProbes): KvmVerdict {
  const mod = (name: string): boolean => existsSync(`${probes.sysModule}/${name}`);
  const flag = cpuVirtFlag(probes.cpuinfo);
  if (mod('kvm_pvm')) {
    const flags = flag ? `${flag} present` : 'no vmx/svm';
    return { usable: false, why: `${probes.kvmDevice} is a nested PVM (kvm_pvm loaded, ${flags}), which cannot boot a stock kernel` };
  }
  if (!existsSync(probes.kvmDevice)) {
    return { usable: false, why: `${probes.kvmDevice} does not exist (no KVM module loaded)` };
  }
  const code = openError(probes.kvmDevice);
  if (code !== undefined) {
    const hint = code === 'EACCES' || code === 'EPERM' ? ': run as root or join the kvm group' : '';
    return { usable: false, why: `${probes.kvmDevice} cannot be opened read-write (${code})${hint}` };
  }
  if (!flag) {
    return { usable: false, why: 'the CPU flags in /proc/cpuinfo have no vmx or svm (no hardware virtualization)' };
  }
  const module = mod('kvm_intel') ? 'kvm_intel' : mod('kvm_amd') ? 'kvm_amd' : 'kvm';
  return { usable: true, why: `${probes.kvmDevice} is usable and the CPU has ${flag} (${module} loaded)` };
}

export function chooseAcceleration(
  requested: 'auto' | Acceleration,
  probes: AccelerationProbes = defaultProbes,
): AccelerationChoice {
  if (requested === 'tcg') return { accel: 'tcg', reason: 'using TCG software emulation: requested' };
  const verdict = probeKvm(probes);
  if (verdict.usable) return { accel: 'kvm', reason: `using KVM: ${verdict.why}` };
  if (requested === 'kvm') throw new KvmUnavailableError(verdict.why);
  return { accel: 'tcg', reason: `using TCG software emulation: ${verdict.why}` };
}
