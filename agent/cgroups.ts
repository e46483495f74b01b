// Per-container cgroup v2 directories under <root>/hull/<containerId> (root is /sys/fs/cgroup in the guest; tests
// pass a temp dir). The helper joins the directory itself (plan key `cgroup`) before forking, so every process of
// the container — init, execs and their children — is accounted and limited here.
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { SpecError } from './errors.js';
import type { OciLinuxResources } from './oci.js';

const CGROUP2_SUPER_MAGIC = 0x63677270;
const CONTROLLERS = ['cpu', 'memory', 'pids'] as const;

/** cgroup v2 file name → value, computed from linux.resources. */
export type CgroupLimits = Record<string, string>;

/** runc's ConvertMemorySwapToCgroupV2Value: OCI swap is memory+swap; v2's memory.swap.max is swap alone. */
export function swapMaxFor(swap: number, memory: number): number | null {
  if (memory === -1 && swap === 0) return -1;
  if (swap === -1) return -1;
  if (swap === 0) return null;
  if (memory === 0 || memory === -1) throw new SpecError('linux.resources.memory.swap needs a memory limit');
  if (memory < 0) throw new SpecError(`linux.resources.memory.limit ${memory} is invalid`);
  if (swap < memory) throw new SpecError('linux.resources.memory.swap (memory+swap) must be at least the memory limit');
  return swap - memory;
}

/** runc's ConvertCPUSharesToCgroupV2Value: shares 2..262144 → weight 1..10000. */
export function cpuWeightFor(shares: number): number {
  const s = Math.min(Math.max(shares, 2), 262144);
  return 1 + Math.floor(((s - 2) * 9999) / 262142);
}

const num = (v: unknown, at: string): number => {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new SpecError(`linux.resources.${at} must be an integer`);
  return v;
};
const maxOr = (v: number): string => (v < 0 ? 'max' : String(v));

export function limitsFor(resources: OciLinuxResources | undefined): CgroupLimits {
  const out: CgroupLimits = {};
  if (!resources) return out;
  const { memory, cpu, pids } = resources;
  if (memory) {
    const limit = memory.limit === undefined ? 0 : num(memory.limit, 'memory.limit');
    if (limit !== 0) out['memory.max'] = maxOr(limit);
    if (memory.reservation !== undefined && num(memory.reservation, 'memory.reservation') > 0) {
      out['memory.low'] = String(memory.reservation);
    }
    const swap = swapMaxFor(memory.swap === undefined ? 0 : num(memory.swap, 'memory.swap'), limit);
    if (swap !== null) out['memory.swap.max'] = maxOr(swap);
  }
  if (cpu) {
    const period = cpu.period === undefined || cpu.period === 0 ? 100000 : num(cpu.period, 'cpu.period');
    if (period < 1000 || period > 1000000) throw new SpecError('linux.resources.cpu.period must be 1000..1000000 µs');
    if (cpu.quota !== undefined && cpu.quota !== 0) {
      const quota = num(cpu.quota, 'cpu.quota');
      out['cpu.max'] = `${maxOr(quota)} ${period}`;
    } else if (cpu.period !== undefined && cpu.period !== 0) {
      out['cpu.max'] = `max ${period}`;
    }
    if (cpu.shares !== undefined && num(cpu.shares, 'cpu.shares') !== 0) out['cpu.weight'] = String(cpuWeightFor(cpu.shares));
  }
  if (pids?.limit !== undefined && num(pids.limit, 'pids.limit') !== 0) out['pids.max'] = maxOr(pids.limit);
  return out;
}

export class CgroupManager {
  constructor(readonly root = '/sys/fs/cgroup') {}

  /** Whether root is a usable cgroup v2 hierarchy (or a test directory standing in for one). */
  available(): boolean {
    return existsSync(this.root);
  }

  pathFor(containerId: string): string {
    return path.join(this.root, 'hull', containerId);
  }

  /** Makes the container's directory and writes its limits. Returns warnings for limits that could not apply. */
  create(containerId: string, limits: CgroupLimits): { cgroup: Cgroup; warnings: string[] } {
    const warnings: string[] = [];
    const parent = path.join(this.root, 'hull');
    mkdirSync(parent, { recursive: true });
    // Controllers must be enabled on every ancestor for the files to exist in the leaf.
    for (const dir of [this.root, parent]) {
      for (const c of CONTROLLERS) {
        try {
          writeFileSync(path.join(dir, 'cgroup.subtree_control'), `+${c}`);
        } catch (err) {
          warnings.push(`cannot enable the ${c} controller in ${dir}: ${(err as Error).message}`);
        }
      }
    }
    const dir = this.pathFor(containerId);
    mkdirSync(dir);
    const realFs = this.isRealCgroupFs();
    const cgroup = new Cgroup(dir, realFs);
    for (const [file, value] of Object.entries(limits)) {
      const target = path.join(dir, file);
      // On cgroupfs a missing file means the kernel lacks that knob (e.g. no swap accounting): warn, go on.
      if (realFs && !existsSync(target)) {
        warnings.push(`${file} is not available in this kernel; ${file}=${value} ignored`);
        continue;
      }
      try {
        writeFileSync(target, value);
      } catch (err) {
        cgroup.remove();
        throw new SpecError(`cannot set ${file}=${value} for container ${containerId}: ${(err as Error).message}`);
      }
    }
    return { cgroup, warnings };
  }

  private isRealCgroupFs(): boolean {
    try {
      return statfsSync(this.root).type === CGROUP2_SUPER_MAGIC;
    } catch {
      return false;
    }
  }
}

export class Cgroup {
  constructor(
    readonly path: string,
    private readonly realFs: boolean,
  ) {}

  /** Pids of every process in the cgroup (helpers included). */
  pids(): number[] {
    let text: string;
    try {
      text = readFileSync(path.join(this.path, 'cgroup.procs'), 'utf8');
    } catch {
      return [];
    }
    return text
      .split('\n')
      .map((l) => Number(l.trim()))
      .filter((n) => Number.isInteger(n) && n > 0);
  }

  /**
   * Writes limits into a live cgroup (UpdateContainer). A knob this kernel lacks is skipped with a warning, as at
   * create; a value the kernel refuses is an error naming the file.
   */
  apply(limits: CgroupLimits): string[] {
    const warnings: string[] = [];
    for (const [file, value] of Object.entries(limits)) {
      const target = path.join(this.path, file);
      if (this.realFs && !existsSync(target)) {
        warnings.push(`${file} is not available in this kernel; ${file}=${value} ignored`);
        continue;
      }
      try {
        writeFileSync(target, value);
      } catch (err) {
        throw new SpecError(`cannot set ${file}=${value}: ${(err as Error).message}`);
      }
    }
    return warnings;
  }

  /** Kills everything in the cgroup at once where the kernel has cgroup.kill (5.14+). Returns false otherwise. */
  killAll(): boolean {
    if (!this.realFs) return false;
    try {
      writeFileSync(path.join(this.path, 'cgroup.kill'), '1');
      return true;
    } catch {
      return false;
    }
  }

  /** rmdir on cgroupfs (fails with EBUSY while processes remain); plain recursive removal on a test directory. */
  remove(): void {
    if (!existsSync(this.path)) return;
    if (this.realFs) rmdirSync(this.path);
    else rmSync(this.path, { recursive: true, force: true });
  }
}
