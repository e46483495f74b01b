// Where a guest's vCPUs are when it stops answering (a boot that never reaches the agent): how much host CPU each vCPU
// thread has used, and each vCPU's instruction pointer and halted state from QEMU's `info registers -a`. It tells a
// guest spinning (CPU time ≈ wall time) from one waiting for an interrupt that never comes (halted, little CPU), and
// where. The kernel's text sits at its link address (PVH boot skips the decompressor, which is where KASLR happens),
// so a RIP resolves against the System.map of Debian's linux-image-<release>-dbg package (the image's own is a stub).
import { readdirSync, readFileSync } from 'node:fs';
import { parseProcStat } from './process.js';

/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat on Linux (fixed at 100 for user space on x86). */
const CLOCK_TICKS_PER_SECOND = 100;
/** QEMU's monitor output read at most (a few lines per vCPU; a guest cannot make it longer, but stay bounded). */
const MAX_REGISTERS_TEXT = 64 * 1024;
const MAX_VCPUS_REPORTED = 8;

export interface VcpuRegisters {
  cpu: number;
  rip: string;
  halted: boolean;
}

/** The vCPUs in QEMU's `info registers -a` text: "CPU#<n>" headers, then "RIP=<hex> … HLT=<0|1>" (x86). */
export function parseRegisters(text: string): VcpuRegisters[] {
  const found: VcpuRegisters[] = [];
  const sections = text.slice(0, MAX_REGISTERS_TEXT).split(/^CPU#(\d+)\s*$/m);
  // split with a capture group: [before, n, body, n, body, …]; without headers (one vCPU) the whole text is one body.
  const bodies: Array<[number, string]> =
    sections.length > 1 ? Array.from({ length: (sections.length - 1) / 2 }, (_, i) => [Number(sections[2 * i + 1]), sections[2 * i + 2] ?? '']) : [[0, text.slice(0, MAX_REGISTERS_TEXT)]];
  for (const [cpu, body] of bodies) {
    // RIP= in long mode, EIP= before it (a guest stuck in its first instructions).
    const rip = /\b[RE]IP=([0-9a-f]{1,16})\b/i.exec(body)?.[1];
    if (rip === undefined) continue;
    found.push({ cpu, rip: rip.toLowerCase(), halted: /\bHLT=1\b/.test(body) });
  }
  return found.slice(0, MAX_VCPUS_REPORTED);
}

/** utime + stime of one /proc/<pid>/task/<tid>/stat line, in seconds. */
export function cpuSecondsOfStat(stat: string): number | undefined {
  const { utime, stime } = parseProcStat(stat);
  return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / CLOCK_TICKS_PER_SECOND : undefined;
}

/** Seconds since `pid` started (/proc/<pid>/stat starttime against /proc/uptime). */
export function processAgeSeconds(pid: number, procRoot = '/proc'): number | undefined {
  try {
    const started = parseProcStat(readFileSync(`${procRoot}/${pid}/stat`, 'utf8')).starttime / CLOCK_TICKS_PER_SECOND;
    const uptime = Number(readFileSync(`${procRoot}/uptime`, 'utf8').split(' ')[0]);
    return Number.isFinite(started) && Number.isFinite(uptime) ? Math.max(0, uptime - started) : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds used by each vCPU thread of `pid` (QEMU names them "CPU <n>/TCG" or "CPU <n>/KVM" with debug-threads). */
export function vcpuThreadSeconds(pid: number, procRoot = '/proc'): Map<number, number> {
  const seconds = new Map<number, number>();
  let tids: string[];
  try {
    tids = readdirSync(`${procRoot}/${pid}/task`);
  } catch {
    return seconds;
  }
  for (const tid of tids) {
    try {
      const cpu = /^CPU (\d+)\//.exec(readFileSync(`${procRoot}/${pid}/task/${tid}/comm`, 'utf8'))?.[1];
      if (cpu === undefined) continue;
      const s = cpuSecondsOfStat(readFileSync(`${procRoot}/${pid}/task/${tid}/stat`, 'utf8'));
      if (s !== undefined) seconds.set(Number(cpu), s);
    } catch {
      // the thread ended while we looked
    }
  }
  return seconds;
}

/** One phrase per vCPU: "vCPU 0 halted at rip ffffffff81a0c2b1, 3.9 s of host CPU in 96 s". */
export function describeVcpus(registers: VcpuRegisters[], seconds: Map<number, number>, ageSeconds: number | undefined): string {
  const cpus = new Set([...registers.map((r) => r.cpu), ...seconds.keys()]);
  return [...cpus]
    .sort((a, b) => a - b)
    .slice(0, MAX_VCPUS_REPORTED)
    .map((cpu) => {
      const r = registers.find((x) => x.cpu === cpu);
      const s = seconds.get(cpu);
      const where = r ? `${r.halted ? 'halted' : 'running'} at rip ${r.rip}` : 'registers unknown';
      const used = s === undefined ? '' : `, ${s.toFixed(1)} s of host CPU${ageSeconds === undefined ? '' : ` in ${ageSeconds.toFixed(0)} s`}`;
      return `vCPU ${cpu} ${where}${used}`;
    })
    .join('; ');
}
