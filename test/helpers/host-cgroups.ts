// What the integration tests check about a sandbox's host cgroup: where each of the VM's host processes is
// (/proc/<pid>/cgroup, every hierarchy), which cgroup directories exist for a path, and the limit files in them.
import { existsSync, readFileSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { withDescendants } from '../../shim/sandbox/cgroups/cgroupfs.js';
import { detectHierarchies } from '../../shim/sandbox/cgroups/hierarchies.js';

export const hierarchies = detectHierarchies();

interface RecordedVm {
  vmm?: { pid: number };
  helpers?: { pid: number; role: string }[];
}

/** The VM's recorded processes (state.json or pod.json `vm`) and every process below them. */
export function vmProcessTree(vm: RecordedVm): number[] {
  const roots = [...(vm.vmm ? [vm.vmm.pid] : []), ...(vm.helpers ?? []).map((h) => h.pid)];
  return roots.flatMap((pid) => withDescendants(pid));
}

/** A process's cgroup path in each hierarchy, by the hierarchy's controller list ('' for v2), as /proc/<pid>/cgroup says. */
export function cgroupsOf(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').filter(Boolean)) {
    const [, controllers = '', p = ''] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    out[controllers] = p;
  }
  return out;
}

/** The hierarchies (by /proc/<pid>/cgroup key) in which `pid` is not in the cgroup `cgPath`, with where it is instead. */
export function outsideOf(pid: number, cgPath: string): string[] {
  return Object.entries(cgroupsOf(pid))
    .filter(([, p]) => p !== cgPath)
    .map(([h, p]) => `${pid} in ${h || 'v2'}:${p}`);
}

/** The directories of cgroup `cgPath` (absolute below the roots) that exist, in any hierarchy. */
export function existingCgroupDirs(cgPath: string): string[] {
  return hierarchies.map((h) => path.join(h.mount, cgPath)).filter((d) => existsSync(d));
}

/** A control file of cgroup `cgPath` in the hierarchy that has `controller`. */
export function cgroupFile(cgPath: string, controller: string, file: string): string {
  const h = hierarchies.find((x) => x.controllers.includes(controller));
  if (!h) throw new Error(`no hierarchy has ${controller}`);
  return readFileSync(path.join(h.mount, cgPath, file), 'utf8').trim();
}

/** Removes the parents a test's cgroupsPath made (deepest first, each must be empty by now): a leak makes it throw. */
export function removeTestParents(parents: string[]): void {
  for (const parent of parents) {
    for (const dir of existingCgroupDirs(parent)) rmdirSync(dir);
  }
}
