// hypervisor/acceleration.ts: which accelerator a VM gets and the one line that says why. The host's files are fakes
// (cpuinfo, /sys/module, the device) and so are the KVM ioctl results, to cover hosts this machine is not; the native
// probe itself runs for real against this host's /dev/kvm (a nested PVM: it passes every ioctl step, and the choice
// must stay TCG) and against files that are no KVM device.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chooseAcceleration, defaultProbes, parseAccel, requestedAccel, type AccelerationProbes } from '../../hypervisor/acceleration.js';
import { KvmUnavailableError, UnknownAccelError } from '../../hypervisor/errors.js';
import { kvmProbe, NativeAddonError, type KvmProbeResult } from '../../native/addon/index.js';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-accel-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const ok = (): KvmProbeResult => ({ step: 'ok' });

function host(opts: { kvm?: boolean; flags: string; modules: string[]; probe?: (device: string) => KvmProbeResult }): AccelerationProbes {
  const dir = mkdtempSync(path.join(tmp, 'host-'));
  const sysModule = path.join(dir, 'module');
  mkdirSync(sysModule);
  for (const m of opts.modules) mkdirSync(path.join(sysModule, m));
  writeFileSync(path.join(dir, 'cpuinfo'), `processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: ${opts.flags}\n\n`);
  if (opts.kvm !== false) writeFileSync(path.join(dir, 'kvm'), '');
  return { kvmDevice: path.join(dir, 'kvm'), cpuinfo: path.join(dir, 'cpuinfo'), sysModule, kvmProbe: opts.probe ?? ok };
}
const intel = (probe?: (device: string) => KvmProbeResult): AccelerationProbes =>
  host({ flags: 'fpu vmx sse2', modules: ['kvm', 'kvm_intel'], ...(probe ? { probe } : {}) });
const pvm = (): AccelerationProbes => host({ flags: 'fpu vme de pse tsc msr hypervisor', modules: ['kvm', 'kvm_pvm'] });

describe('chooseAcceleration', () => {
  it('picks TCG on a nested PVM host and says why, even though every KVM ioctl passes there', () => {
    const probes = pvm();
    expect(chooseAcceleration('auto', probes)).toEqual({
      accel: 'tcg',
      reason: `using TCG software emulation: ${probes.kvmDevice} is a nested PVM (kvm_pvm loaded, no vmx/svm), which cannot boot a stock kernel`,
    });
  });

  it('picks KVM with vmx, kvm_intel and QEMU’s KVM start-up steps passing', () => {
    const choice = chooseAcceleration('auto', intel());
    expect(choice.accel).toBe('kvm');
    expect(choice.reason).toMatch(/^using KVM: .* usable \(a test VM and vCPU were created\) and the CPU has vmx \(kvm_intel loaded\)$/);
  });

  it('picks KVM with svm and kvm_amd', () => {
    expect(chooseAcceleration('kvm', host({ flags: 'fpu svm', modules: ['kvm', 'kvm_amd'] })).accel).toBe('kvm');
  });

  it('refuses forced KVM on a PVM host with a typed error naming why and the way out', () => {
    expect(() => chooseAcceleration('kvm', pvm())).toThrow(KvmUnavailableError);
    expect(() => chooseAcceleration('kvm', pvm())).toThrow(/nested PVM.*; set HULL_ACCEL=auto or tcg$/);
  });

  it('does not take KVM from /dev/kvm alone (no vmx/svm)', () => {
    const choice = chooseAcceleration('auto', host({ flags: 'fpu sse2 hypervisor', modules: ['kvm'] }));
    expect(choice.accel).toBe('tcg');
    expect(choice.reason).toMatch(/no vmx or svm/);
  });

  it('says when /dev/kvm is missing', () => {
    const choice = chooseAcceleration('auto', host({ kvm: false, flags: 'vmx', modules: [] }));
    expect(choice).toMatchObject({ accel: 'tcg' });
    expect(choice.reason).toMatch(/does not exist/);
  });

  it('honours an explicit tcg without probing', () => {
    const probes = intel(() => {
      throw new Error('probed');
    });
    expect(chooseAcceleration('tcg', probes)).toEqual({ accel: 'tcg', reason: 'using TCG software emulation: requested' });
  });

  // Hosts with vmx and kvm_intel where QEMU would still fail: each falls back (auto) or is refused (kvm), saying why.
  it.each([
    [{ step: 'open', code: 'EACCES' }, /cannot be opened read-write \(EACCES\): run as root or join the kvm group$/],
    [{ step: 'api-version', detail: '11' }, /speaks KVM API version 11, not 12 as QEMU requires$/],
    [{ step: 'extension', detail: 'KVM_CAP_EXT_CPUID' }, /lacks KVM_CAP_EXT_CPUID, which QEMU requires$/],
    [{ step: 'create-vm', code: 'EBUSY' }, /KVM_CREATE_VM on .* failed \(EBUSY\): VT-x\/AMD-V is held by another hypervisor$/],
    [{ step: 'create-vm', code: 'EPERM' }, /KVM_CREATE_VM on .* failed \(EPERM\): the KVM ioctls are denied here/],
    [{ step: 'create-vcpu', code: 'ENOMEM' }, /KVM_CREATE_VCPU on .* failed \(ENOMEM\)$/],
  ] as Array<[KvmProbeResult, RegExp]>)('falls back to TCG when the probe stops at %o', (result, why) => {
    const probes = intel(() => result);
    const choice = chooseAcceleration('auto', probes);
    expect(choice.accel).toBe('tcg');
    expect(choice.reason).toMatch(why);
    expect(choice.reason).not.toMatch(/\n/);
    expect(() => chooseAcceleration('kvm', probes)).toThrow(KvmUnavailableError);
  });

  it('falls back to TCG, saying how to rebuild it, when the addon that probes is missing', () => {
    const probes = intel(() => {
      throw new NativeAddonError('/x/hull_native.node', 'is missing');
    });
    const choice = chooseAcceleration('auto', probes);
    expect(choice.accel).toBe('tcg');
    expect(choice.reason).toBe(
      'using TCG software emulation: KVM could not be probed: hull native addon /x/hull_native.node is missing: rebuild it with `npm run build:addon` (or set HULL_NATIVE_ADDON)',
    );
  });

  it('refuses an unknown accelerator with one line naming it and the allowed ones, before probing', () => {
    const probes = intel(() => {
      throw new Error('probed');
    });
    expect(() => chooseAcceleration('kvmm', probes)).toThrow(UnknownAccelError);
    expect(() => chooseAcceleration('kvmm', probes)).toThrow(/^HULL_ACCEL="kvmm" is not an accelerator hull knows; use one of: auto, kvm, tcg$/);
    expect(() => chooseAcceleration('KVM', probes)).toThrow(UnknownAccelError);
  });
});

describe('HULL_ACCEL', () => {
  it('is auto when unset or empty, and exactly one of auto, kvm, tcg otherwise', () => {
    expect(requestedAccel({})).toBe('auto');
    expect(requestedAccel({ HULL_ACCEL: '' })).toBe('auto');
    for (const v of ['auto', 'kvm', 'tcg']) expect(requestedAccel({ HULL_ACCEL: v })).toBe(v);
    for (const v of ['kvm ', 'Tcg', 'hvf', 'on']) {
      expect(() => requestedAccel({ HULL_ACCEL: v })).toThrow(UnknownAccelError);
    }
    const err = (() => {
      try {
        parseAccel('xen', 'accel');
      } catch (e) {
        return e as UnknownAccelError;
      }
      return undefined;
    })();
    expect(err).toMatchObject({ kind: 'invalid-argument', value: 'xen', source: 'accel' });
  });
});

describe('the KVM probe of the native addon (real ioctls)', () => {
  it('reports a device that does not exist, and a file that is no KVM device, by the step that failed', () => {
    expect(kvmProbe(path.join(tmp, 'no-such-kvm'))).toEqual({ step: 'open', code: 'ENOENT' });
    expect(kvmProbe('/dev/null')).toEqual({ step: 'api-version', code: 'ENOTTY', detail: '-1' });
  });

  it('keeps this host on TCG: its /dev/kvm is a nested PVM (it creates VMs, but cannot boot a stock kernel)', (ctx) => {
    if (!existsSync('/sys/module/kvm_pvm')) ctx.skip(); // another host: what it gets is decided by the cases above
    if (existsSync(defaultProbes.kvmDevice) && process.getuid?.() === 0) {
      // Measured here: every KVM start-up step QEMU takes passes on the PVM device. So they cannot decide alone.
      expect(kvmProbe(defaultProbes.kvmDevice)).toEqual({ step: 'ok' });
    }
    const choice = chooseAcceleration('auto');
    expect(choice.accel).toBe('tcg');
    expect(choice.reason).toMatch(/nested PVM \(kvm_pvm loaded, no vmx\/svm\)/);
    expect(() => chooseAcceleration('kvm')).toThrow(KvmUnavailableError);
  });
});
