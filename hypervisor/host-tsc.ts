// The host's TSC frequency, handed to TCG guests as `tsc_early_khz=`. Under TCG the guest's RDTSC reads the host's
// TSC, but the guest kernel still calibrates it against the emulated PIT; on a busy host that calibration fails
// ("tsc: Unable to calibrate against PIT … Marking TSC unstable") and the guest then hangs before /init, silently
// with `quiet`. Observed here with three TCG VMs on two cores; telling the kernel the frequency skips calibration.
import { readFileSync } from 'node:fs';

/**
 * kHz, or undefined when it cannot be known reliably. `cpu MHz` in /proc/cpuinfo is the kernel's TSC-derived cpu_khz
 * unless the CPU has APERF/MPERF (then it is the current, varying clock), so it is only trusted with constant_tsc and
 * either tsc_known_freq or no aperfmperf.
 */
export function hostTscKhz(cpuinfo = '/proc/cpuinfo'): number | undefined {
  let text: string;
  try {
    text = readFileSync(cpuinfo, 'utf8');
  } catch {
    return undefined;
  }
  const first = text.split('\n\n')[0] ?? '';
  const flags = new Set((/^flags\s*:(.*)$/m.exec(first)?.[1] ?? '').trim().split(/\s+/));
  const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)$/m.exec(first)?.[1]);
  if (!flags.has('constant_tsc') || !Number.isFinite(mhz) || mhz < 100) return undefined;
  if (!flags.has('tsc_known_freq') && flags.has('aperfmperf')) return undefined;
  return Math.round(mhz * 1000);
}
