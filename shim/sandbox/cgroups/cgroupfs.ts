// The cgroupfs operations a sandbox's cgroup needs, each failing with a HullError that names the file: create a
// cgroup level by level (v1 cpuset levels get their parent's cpus and mems, v2 parents get the controllers enabled
// for their children), write a limit, move a process (and its descendants) in, and remove a cgroup once whatever is
// left in it has been killed. Paths are absolute directories inside a mounted hierarchy; nothing here chooses them.
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { HullError } from '../../errors.js';

const errnoOf = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | undefined)?.code;
const reason = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Controllers a v2 parent enables for its children so the sandbox's cgroup can hold its limits. */
const V2_CONTROLLERS = ['cpu', 'memory', 'pids'];

export function writeCgroupFile(dir: string, file: string, value: string): void {
  try {
    writeFileSync(path.join(dir, file), value);
  } catch (err) {
    throw new HullError('internal', `cannot write "${value}" to ${path.join(dir, file)}: ${reason(err)}`, { cause: err });
  }
}

function readCgroupFile(dir: string, file: string): string {
  return readFileSync(path.join(dir, file), 'utf8').trim();
}

/**
 * Checks that `dir` can be the sandbox's cgroup without creating anything: every part of it below `mount` that exists
 * is a directory, and the cgroup itself, if it exists, has no process in it. Throws a one-line invalid-argument error.
 */
export function checkCgroupDir(mount: string, dir: string, source: string): void {
  let at = mount;
  for (const segment of path.relative(mount, dir).split('/')) {
    at = path.join(at, segment);
    let isDir: boolean;
    try {
      isDir = lstatSync(at).isDirectory();
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return;
      throw new HullError('internal', `cgroupsPath "${source}": cannot look at ${at}: ${reason(err)}`, { cause: err });
    }
    if (!isDir) throw new HullError('invalid-argument', `cgroupsPath "${source}": ${at} exists and is not a cgroup directory`);
  }
  const procs = processesIn(dir);
  if (procs.length > 0) {
    throw new HullError('failed-precondition', `cgroupsPath "${source}": cgroup ${dir} is in use (it holds process ${procs.slice(0, 5).join(', ')})`);
  }
}

/**
 * Creates `dir` and any missing parent below `mount`, one level at a time. v1 cpuset levels are given their parent's
 * cpus and mems (an empty cpuset takes no process); on v2 every level above `dir` enables the controllers it has for
 * its children. Returns the levels it created, top first.
 */
export function createCgroupDir(mount: string, dir: string, version: 1 | 2, controllers: string[]): string[] {
  // A parent that another sandbox's teardown removed between our mkdirs (it was empty then): made again.
  for (let attempt = 1; ; attempt++) {
    try {
      return createLevels(mount, dir, version, controllers);
    } catch (err) {
      if (!(err instanceof ParentGoneError) || attempt >= 3) throw err instanceof ParentGoneError ? err.original : err;
    }
  }
}

class ParentGoneError extends Error {
  constructor(readonly original: HullError) {
    super(original.message);
  }
}

/** Removes the cgroup `dir` if it holds no process and no cgroup (another sandbox's may be in it); gone is fine. */
export function removeIfEmpty(dir: string): void {
  try {
    rmdirSync(dir);
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'ENOENT' || code === 'EBUSY' || code === 'ENOTEMPTY') return;
    throw new HullError('internal', `cannot remove cgroup ${dir}: ${reason(err)}`, { cause: err });
  }
}

function createLevels(mount: string, dir: string, version: 1 | 2, controllers: string[]): string[] {
  const created: string[] = [];
  let at = mount;
  const segments = path.relative(mount, dir).split('/');
  for (const segment of segments) {
    const parent = at;
    at = path.join(at, segment);
    if (version === 2) enableV2Controllers(parent);
    try {
      mkdirSync(at);
      created.push(at);
    } catch (err) {
      const code = errnoOf(err);
      const failure = new HullError('internal', `cannot create cgroup ${at}: ${reason(err)}`, { cause: err });
      if (code === 'ENOENT') throw new ParentGoneError(failure);
      if (code !== 'EEXIST') throw failure;
      if (!lstatSync(at).isDirectory()) throw new HullError('invalid-argument', `${at} exists and is not a cgroup directory`);
    }
    if (version === 1 && controllers.includes('cpuset')) inheritCpuset(parent, at);
  }
  return created;
}

function inheritCpuset(parent: string, child: string): void {
  for (const file of ['cpuset.cpus', 'cpuset.mems']) {
    if (readCgroupFile(child, file) !== '') continue;
    writeCgroupFile(child, file, readCgroupFile(parent, file));
  }
}

function enableV2Controllers(dir: string): void {
  const available = readCgroupFile(dir, 'cgroup.controllers').split(/\s+/);
  const enabled = new Set(readCgroupFile(dir, 'cgroup.subtree_control').split(/\s+/));
  const wanted = V2_CONTROLLERS.filter((c) => available.includes(c) && !enabled.has(c));
  if (wanted.length > 0) writeCgroupFile(dir, 'cgroup.subtree_control', wanted.map((c) => `+${c}`).join(' '));
}

/** The pids in a cgroup; none when it does not exist. */
export function processesIn(dir: string): number[] {
  let text: string;
  try {
    text = readFileSync(path.join(dir, 'cgroup.procs'), 'utf8');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return [];
    throw new HullError('internal', `cannot read ${path.join(dir, 'cgroup.procs')}: ${reason(err)}`, { cause: err });
  }
  return text.split('\n').filter(Boolean).map(Number);
}

/** `pid` and every process below it (each thread's children), parents first; a process that exits meanwhile is skipped. */
export function withDescendants(pid: number, proc = '/proc'): number[] {
  const out: number[] = [];
  const visit = (p: number): void => {
    if (out.includes(p)) return;
    out.push(p);
    let tasks: string[];
    try {
      tasks = readdirSync(path.join(proc, String(p), 'task'));
    } catch {
      return; // gone: nothing below it either
    }
    for (const tid of tasks) {
      let children = '';
      try {
        children = readFileSync(path.join(proc, String(p), 'task', tid, 'children'), 'utf8');
      } catch {
        continue; // the thread ended while we looked
      }
      for (const child of children.split(/\s+/).filter(Boolean)) visit(Number(child));
    }
  };
  visit(pid);
  return out;
}

/** Moves process `pid` (all its threads) into the cgroup `dir`. False when the process is gone already. */
export function moveProcess(dir: string, pid: number): boolean {
  try {
    writeFileSync(path.join(dir, 'cgroup.procs'), String(pid));
    return true;
  } catch (err) {
    if (errnoOf(err) === 'ESRCH') return false;
    throw new HullError('internal', `cannot move process ${pid} into cgroup ${dir}: ${reason(err)}`, { cause: err });
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Removes the cgroup `dir` and any cgroup below it. A process still inside (a helper's child the record did not name)
 * is killed first: the cgroup was the sandbox's alone. Gone already is fine. Rejects when it stays busy past waitMs.
 */
export async function removeCgroupDir(dir: string, waitMs = 3_000): Promise<void> {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) await removeCgroupDir(path.join(dir, entry.name), waitMs);
  }
  const deadline = Date.now() + waitMs;
  for (;;) {
    for (const pid of processesIn(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (err) {
        if (errnoOf(err) !== 'ESRCH') throw new HullError('internal', `cannot kill process ${pid} left in cgroup ${dir}: ${reason(err)}`, { cause: err });
      }
    }
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || Date.now() > deadline) {
        throw new HullError('internal', `cannot remove cgroup ${dir}: ${reason(err)} (processes in it: ${processesIn(dir).join(', ') || 'none'})`, { cause: err });
      }
    }
    await sleep(50);
  }
}
