// A sandbox's host cgroup: the cgroup that linux.cgroupsPath names (path.ts), in every hierarchy of the host
// (hierarchies.ts), holding every host process of the VM — QEMU, virtiofsd and its child, the vsock backend's broker
// and worker — under limits derived from the VM's size and the spec (limits.ts). Planned (and checked) before
// anything exists, put on the sandbox record before it is created, placed into as each process starts, and removed
// from the record alone at teardown (teardown.ts), after the VM's processes are gone.
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { VmProcesses } from '../../../hypervisor/types.js';
import { HullError } from '../../errors.js';
import type { OciLinuxResources, OciSpec } from '../../oci-spec.js';
import type { VmSize } from '../vm-sizing.js';
import { checkCgroupDir, createCgroupDir, moveProcess, removeCgroupDir, removeIfEmpty, withDescendants, writeCgroupFile } from './cgroupfs.js';
import { detectHierarchies, layoutOf, type Hierarchy } from './hierarchies.js';
import { hostLimits, limitWrites, type HostLimits } from './limits.js';
import { cgroupLocation, type CgroupLocation } from './path.js';

/** On the sandbox record: the sandbox's cgroup directory in each hierarchy (created or joined; removed at teardown). */
export interface HostCgroupRecord {
  dirs: string[];
  /**
   * The levels above `dirs` that did not exist and hull made for this cgroup (`/<namespace>` of containerd's
   * `/<namespace>/<id>`): removed at teardown once empty, so a sandbox leaves no cgroup behind. A level another sandbox
   * still uses is not empty, and stays.
   */
  parents?: string[];
}

/** Where the sandbox's cgroup goes and what bounds it, checked against the host but not created yet. */
export interface HostCgroupRequest {
  location: CgroupLocation;
  dirs: { hierarchy: Hierarchy; dir: string }[];
  /** The spec's linux.resources the CPU limits come from. */
  resources: OciLinuxResources | undefined;
}

/**
 * Plans container `id`'s host cgroup from its spec: where it goes in each hierarchy, checked (every existing part a
 * directory, the cgroup itself empty) without creating anything, so a bad cgroupsPath fails before anything exists.
 */
export function planHostCgroup(
  spec: OciSpec,
  id: string,
  opts: { systemd: boolean; resources?: OciLinuxResources | undefined; hierarchies?: Hierarchy[] },
): HostCgroupRequest {
  const raw = spec.linux?.['cgroupsPath'];
  if (raw !== undefined && typeof raw !== 'string') throw new HullError('invalid-argument', 'linux.cgroupsPath must be a string');
  const location = cgroupLocation(raw, id, opts.systemd);
  const hierarchies = opts.hierarchies ?? detectHierarchies();
  const dirs = hierarchies.map((hierarchy) => ({ hierarchy, dir: cgroupDirIn(hierarchy, location) }));
  for (const { hierarchy, dir } of dirs) checkCgroupDir(hierarchy.mount, dir, location.source);
  return { location, dirs, resources: 'resources' in opts ? opts.resources : spec.linux?.resources };
}

/**
 * The cgroup's directory in one hierarchy. A relative path is below our own cgroup — on v2 below its parent, as runc
 * does, since our own cgroup holds processes and so cannot enable controllers for a child.
 */
export function cgroupDirIn(hierarchy: Hierarchy, location: CgroupLocation): string {
  const base = !location.relative ? '/' : hierarchy.version === 2 ? path.posix.dirname(hierarchy.own) : hierarchy.own;
  return path.join(hierarchy.mount, base, ...location.segments);
}

/** The sandbox's cgroup once created: limits can be set and processes placed. */
export class HostCgroup {
  private constructor(
    private readonly request: HostCgroupRequest,
    private readonly log: Logger,
  ) {}

  /**
   * Puts the cgroup on record (`onRecord`), then creates it in every hierarchy and sets the limits for a VM of `size`.
   * On failure what was created stays on record, for the sandbox's teardown to remove.
   */
  static create(request: HostCgroupRequest, size: VmSize, log: Logger, onRecord: (record: HostCgroupRecord) => void): HostCgroup {
    const parents = request.dirs.flatMap(({ hierarchy, dir }) => missingLevels(hierarchy.mount, path.dirname(dir)));
    onRecord({ dirs: request.dirs.map((d) => d.dir), ...(parents.length > 0 ? { parents } : {}) });
    for (const { hierarchy, dir } of request.dirs) createCgroupDir(hierarchy.mount, dir, hierarchy.version, hierarchy.controllers);
    const cgroup = new HostCgroup(request, log);
    cgroup.setLimits(size);
    log.info(
      { cgroup: request.location.source, form: request.location.form, layout: layoutOf(request.dirs.map((d) => d.hierarchy)) },
      'host cgroup created',
    );
    return cgroup;
  }

  /** Sets the limits for a VM of `size` (again, when a pooled VM turned out bigger than asked). */
  setLimits(size: VmSize): HostLimits {
    const limits = hostLimits(size, this.request.resources);
    const { writes, missing } = limitWrites(limits, this.request.dirs.map((d) => d.hierarchy));
    if (missing.length > 0) this.log.warn({ missing }, 'the host has no cgroup controller for these limits; they are not set on the host');
    for (const w of writes) writeCgroupFile(this.dirOf(w.hierarchy), w.file, w.value);
    this.log.debug({ limits }, 'host cgroup limits');
    return limits;
  }

  /** Pids moved in already: the VM's processes are reported more than once as they appear (a pooled VM's three times). */
  private readonly placed = new Set<number>();

  /**
   * Moves the VM's processes, and every process below each of them, into the cgroup in every hierarchy; once each.
   * Each move takes the kernel's cgroup write lock (an RCU grace period, ~1 ms here), and a pooled VM's claim paid
   * ~20 ms moving the same processes again. A process forked by one already placed is inside by inheritance.
   */
  place(vm: VmProcesses): void {
    const roots = [...(vm.vmm ? [vm.vmm.pid] : []), ...(vm.helpers ?? []).map((h) => h.pid)];
    for (const pid of roots.flatMap((p) => withDescendants(p))) {
      if (this.placed.has(pid)) continue;
      for (const { dir } of this.request.dirs) moveProcess(dir, pid);
      this.placed.add(pid);
    }
  }

  private dirOf(hierarchy: Hierarchy): string {
    const found = this.request.dirs.find((d) => d.hierarchy === hierarchy);
    if (!found) throw new HullError('internal', `no cgroup directory planned in ${hierarchy.mount}`);
    return found.dir;
  }
}

/**
 * Removes a sandbox's cgroup from its record alone, killing whatever is still inside. Refuses a recorded directory that
 * is not strictly inside one of the host's hierarchies: the record must never make hull remove a hierarchy's root
 * or anything else.
 */
export async function removeHostCgroup(record: HostCgroupRecord, hierarchies: Hierarchy[] = detectHierarchies()): Promise<void> {
  const parents = record.parents ?? [];
  for (const dir of [...record.dirs, ...parents]) {
    const inside = hierarchies.some((h) => dir.startsWith(`${h.mount}/`) && path.normalize(dir) === dir);
    if (!inside) throw new HullError('internal', `the recorded cgroup ${dir} is not inside a cgroup hierarchy of this host`);
  }
  for (const dir of record.dirs) await removeCgroupDir(dir);
  // Deepest first; one that another sandbox's cgroup sits in (or that went already) is left to it.
  for (const dir of [...parents].sort((a, b) => b.length - a.length)) removeIfEmpty(dir);
}

/** The levels of `dir` below `mount` that do not exist yet, top first. */
function missingLevels(mount: string, dir: string): string[] {
  const missing: string[] = [];
  for (let at = dir; at.startsWith(`${mount}/`) && !existsSync(at); at = path.dirname(at)) missing.unshift(at);
  return missing;
}

/** Reads the record's cgroup field; undefined when there is none. */
export function parseHostCgroupRecord(value: unknown, source: string): HostCgroupRecord | undefined {
  if (value === undefined) return undefined;
  const dirs = (value as { dirs?: unknown } | null)?.dirs;
  if (!Array.isArray(dirs) || !dirs.every((d): d is string => typeof d === 'string' && d.startsWith('/') && !d.split('/').includes('..'))) {
    throw new HullError('internal', `${source}: the host cgroup's dirs are not a list of absolute paths`);
  }
  const parents = (value as { parents?: unknown }).parents;
  if (parents === undefined) return { dirs };
  if (!Array.isArray(parents) || !parents.every((d): d is string => typeof d === 'string' && d.startsWith('/') && !d.split('/').includes('..'))) {
    throw new HullError('internal', `${source}: the host cgroup's parents are not a list of absolute paths`);
  }
  return { dirs, parents };
}
