// Drives the real `hull` CLI (bin/hull → dist/hull.mjs) as a user would, and checks what it leaves behind.
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const hullBin = path.join(repo, 'bin', 'hull');

export interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface HullOptions {
  root: string;
  input?: string;
  env?: Record<string, string>;
  globalArgs?: string[];
  /** Sends hull `signal` once its stdout shows `ready`: for checking that hull passes the signals it gets on to the
   *  container (as `runc run` does) instead of dying of them. */
  signalWhen?: { ready: string; signal: NodeJS.Signals };
}

export function hull(args: string[], options: HullOptions): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(hullBin, ['--root', options.root, ...(options.globalArgs ?? []), ...args], {
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let signalled = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      if (options.signalWhen && !signalled && stdout.includes(options.signalWhen.ready)) {
        signalled = true;
        child.kill(options.signalWhen.signal);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

/**
 * Runs a command that leaves a process behind holding its stdio (create, exec --detach), the way conmon or
 * runtime-tools do: stdout/stderr go to files, and we wait for the CLI process itself to exit.
 */
export function hullDetached(args: string[], options: HullOptions & { stdout: string; stderr: string }): Promise<Result> {
  return new Promise((resolve, reject) => {
    const out = openSync(options.stdout, 'a');
    const err = openSync(options.stderr, 'a');
    const before = existsSync(options.stderr) ? readFileSync(options.stderr, 'utf8').length : 0;
    const child = spawn(hullBin, ['--root', options.root, ...(options.globalArgs ?? []), ...args], {
      env: { ...process.env, ...options.env },
      stdio: ['ignore', out, err],
    });
    closeSync(out);
    closeSync(err);
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      resolve({ code, signal, stdout: '', stderr: readFileSync(options.stderr, 'utf8').slice(before) }),
    );
  });
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A busybox bundle (scripts/make-bundle.mjs) with its config edited by `edit`. */
export function makeBundle(dir: string, args: string[], edit?: (spec: Record<string, any>) => void): string {
  execFileSync(process.execPath, [path.join(repo, 'scripts', 'make-bundle.mjs'), dir, ...args]);
  if (edit) {
    const file = path.join(dir, 'config.json');
    const spec = JSON.parse(readFileSync(file, 'utf8')) as Record<string, any>;
    edit(spec);
    writeFileSync(file, JSON.stringify(spec, null, 2));
  }
  return dir;
}

/** Processes whose command line mentions `marker` (a test's private root), other than ourselves. */
export function processesMentioning(marker: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmdline.includes(marker)) found.push(`${entry}: ${cmdline.trim()}`);
    } catch {
      // exited while we looked
    }
  }
  return found;
}

export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((mountPoint) => mountPoint.startsWith(dir));
}

/** Everything hull could leak for a root: processes, mounts, and state directories. */
export function leaks(root: string): { processes: string[]; mounts: string[]; stateDirs: string[] } {
  return {
    processes: processesMentioning(root),
    mounts: mountsUnder(root),
    stateDirs: existsSync(root) ? readdirSync(root) : [],
  };
}

export const noLeaks = { processes: [], mounts: [], stateDirs: [] };

/**
 * The end-of-file leak check: nothing of `root` may remain. The work dir is removed only when that holds, so a
 * leaked bind mount is never deleted through (and stays visible for debugging).
 */
export function expectNoLeaksThenRemove(root: string, work: string, expectEqual: (actual: unknown, expected: unknown) => void): void {
  const found = leaks(root);
  expectEqual(found, noLeaks);
  rmSync(work, { recursive: true, force: true });
}
