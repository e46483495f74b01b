// Chooses KVM or TCG, and says why in one line (the TCG warning, the log, `hull check`). `/dev/kvm` existing is not
// enough, nor is creating a VM with it: these machines expose a nested PVM /dev/kvm that passes every KVM start-up
// step QEMU takes (open, KVM_GET_API_VERSION, the capabilities QEMU requires, KVM_CREATE_VM, KVM_CREATE_VCPU —
// measured here) and still dies on a stock kernel. So KVM needs all of: no kvm_pvm, vmx or svm in the CPU flags, and
// QEMU's KVM start-up steps passing (native/addon kvm_probe.cc), which catch what the flags cannot: a device this
// user may not open, VT-x held by another hypervisor (KVM_CREATE_VM: EBUSY), a container that denies the ioctls.
import { existsSync, readFileSync } from 'node:fs';
import { kvmProbe as nativeKvmProbe, type KvmProbeResult } from '../native/addon/index.js';
import { KvmUnavailableError, UnknownAccelError } from './errors.js';
import type { Acceleration, AccelerationChoice } from './types.js';

/** What a caller may ask for. */
export type RequestedAccel = 'auto' | Acceleration;
export const ACCEL_CHOICES: readonly RequestedAccel[] = ['auto', 'kvm', 'tcg'];

/** Where the probe looks; tests point the paths at fake files and `kvmProbe` at a fake. */
export interface AccelerationProbes {
  kvmDevice: string;
  cpuinfo: string;
  /** Directory holding kvm_pvm, kvm_intel, kvm_amd when loaded (normally /sys/module). */
  sysModule: string;
  /** QEMU's KVM start-up steps on the device (default: the native addon's). May throw (the addon is missing). */
  kvmProbe?: (device: string) => KvmProbeResult;
}

export const defaultProbes: AccelerationProbes = {
  kvmDevice: '/dev/kvm',
  cpuinfo: '/proc/cpuinfo',
  sysModule: '/sys/module',
};

/**
 * The accelerator asked for by `value` (HULL_ACCEL, or whatever `source` names): unset or empty is `auto`; anything
 * but auto, kvm or tcg is refused with one line naming it, before anything is started.
 */
export function parseAccel(value: string | undefined, source = 'HULL_ACCEL'): RequestedAccel {
  if (value === undefined || value === '') return 'auto';
  const found = ACCEL_CHOICES.find((c) => c === value);
  if (found === undefined) throw new UnknownAccelError(value, source, ACCEL_CHOICES);
  return found;
}

/** HULL_ACCEL, checked. */
export function requestedAccel(env: NodeJS.ProcessEnv = process.env): RequestedAccel {
  return parseAccel(env['HULL_ACCEL'], 'HULL_ACCEL');
}

export interface KvmVerdict {
  usable: boolean;
  /** Why (not) usable, as a clause: "/dev/kvm is a nested PVM (…)". */
  why: string;
}

function cpuVirtFlag(cpuinfo: string): 'vmx' | 'svm' | undefined {
  let text: string;
  try {
    text = readFileSync(cpuinfo, 'utf8');
  } catch {
    return undefined; // no /proc/cpuinfo to read: no evidence of hardware virtualization
  }
  for (const line of text.split('\n')) {
    if (!/^flags\s*:/.test(line)) continue;
    const flags = new Set(line.slice(line.indexOf(':') + 1).trim().split(/\s+/));
    if (flags.has('vmx')) return 'vmx';
    if (flags.has('svm')) return 'svm';
  }
  return undefined;
}

/** The clause for a failed KVM start-up step, or undefined when every step passed. */
function probeFailure(device: string, r: KvmProbeResult): string | undefined {
  const errno = r.code ?? 'no errno';
  switch (r.step) {
    case 'ok':
      return undefined;
    case 'open': {
      const hint = r.code === 'EACCES' || r.code === 'EPERM' ? ': run as root or join the kvm group' : '';
      return `${device} cannot be opened read-write (${errno})${hint}`;
    }
    case 'api-version':
      return `${device} speaks KVM API version ${r.detail ?? '?'}${r.code ? ` (${r.code})` : ''}, not 12 as QEMU requires`;
    case 'extension':
      return `${device} lacks ${r.detail ?? 'a capability'}, which QEMU requires${r.code ? ` (${r.code})` : ''}`;
    case 'create-vm': {
      const hint =
        r.code === 'EBUSY'
          ? ': VT-x/AMD-V is held by another hypervisor'
          : r.code === 'EPERM' || r.code === 'EACCES'
            ? ': the KVM ioctls are denied here (a container or seccomp policy)'
            : '';
      return `KVM_CREATE_VM on ${device} failed (${errno})${hint}`;
    }
    case 'create-vcpu':
      return `KVM_CREATE_VCPU on ${device} failed (${errno})`;
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
  if (!flag) {
    return { usable: false, why: 'the CPU flags in /proc/cpuinfo have no vmx or svm (no hardware virtualization)' };
  }
  let result: KvmProbeResult;
  try {
    result = (probes.kvmProbe ?? nativeKvmProbe)(probes.kvmDevice);
  } catch (err) {
    // The addon is missing or broken: KVM cannot be shown to work, and the message says how to rebuild it.
    return { usable: false, why: `KVM could not be probed: ${(err as Error).message.split('\n')[0]}` };
  }
  const failure = probeFailure(probes.kvmDevice, result);
  if (failure !== undefined) return { usable: false, why: failure };
  const module = mod('kvm_intel') ? 'kvm_intel' : mod('kvm_amd') ? 'kvm_amd' : 'kvm';
  return { usable: true, why: `${probes.kvmDevice} is usable (a test VM and vCPU were created) and the CPU has ${flag} (${module} loaded)` };
}

/**
 * The accelerator for `requested` (checked as parseAccel does; `source` names where it came from) and the one-line reason. `auto` falls back to TCG when
 * KVM is not usable; `kvm` then throws KvmUnavailableError. For `hull check`: chooseAcceleration('auto') is what a VM
 * would get here and why.
 */
export function chooseAcceleration(requested: string, probes: AccelerationProbes = defaultProbes, source = 'HULL_ACCEL'): AccelerationChoice {
  const want = parseAccel(requested, source);
  if (want === 'tcg') return { accel: 'tcg', reason: 'using TCG software emulation: requested' };
  const verdict = probeKvm(probes);
  if (verdict.usable) return { accel: 'kvm', reason: `using KVM: ${verdict.why}` };
  if (want === 'kvm') throw new KvmUnavailableError(verdict.why);
  return { accel: 'tcg', reason: `using TCG software emulation: ${verdict.why}` };
}
