// hull's VM pool for the benchmarks (docs/pool.md): `hull --root R pool serve --size N` as a child in its own process
// group (a terminal's Ctrl-C does not reach it; the bench stops it with SIGTERM, and the pool powers its VMs off),
// `pool status --format json`, waiting for it to be full, and telling from a log whether a sandbox took a pooled VM.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { sleep } from './lib.mjs';

/** The log lines of shim/pool/pooled-vm-factory.ts: a sandbox took a pooled VM, or booted its own (with `why`). */
export const CLAIMED = 'pooled VM claimed';
export const MISSED = 'no pooled VM: booting one';

/**
 * Whether the sandbox(es) whose log lines are `text` took a pooled VM: { pooled: true } or { pooled: false, why }
 * (why from the JSON log line, or the text line), or { pooled: undefined } when the log has neither line.
 */
export function poolOutcome(text) {
  const lines = text.split('\n');
  const missed = lines.filter((l) => l.includes(MISSED));
  const claimed = lines.filter((l) => l.includes(CLAIMED));
  if (missed.length === 0 && claimed.length === 0) return { pooled: undefined, why: 'the log says neither claimed nor booted' };
  if (missed.length === 0) return { pooled: true };
  const why = missed.map((l) => /"why":"((?:[^"\\]|\\.)*)"/.exec(l)?.[1] ?? /why[=:]\s*"?([^"}]*)/.exec(l)?.[1] ?? '?');
  return { pooled: false, why: why.join('; ') };
}

/** A log file read from `offset` on: what one step added to a log that several steps write (containerd's). */
export function logSince(file, offset) {
  try {
    const buf = readFileSync(file);
    return { text: buf.subarray(offset).toString('utf8'), end: buf.length };
  } catch {
    return { text: '', end: offset };
  }
}

/**
 * Starts `hull --root root pool serve --size size`, its stderr (the pool's log) into `logFile`. Returns
 * { pid, size, status(), waitFull(timeoutMs), stop() }.
 */
export function startPool({ hull, root, size, logFile, env = process.env }) {
  const fd = openSync(logFile, 'a');
  const child = spawn(hull, ['--root', root, 'pool', 'serve', '--size', String(size)], {
    env,
    stdio: ['ignore', fd, fd],
    detached: true,
  });
  closeSync(fd);
  let exit;
  child.on('exit', (code, signal) => (exit = { code, signal }));
  child.on('error', (err) => (exit = { error: err.message }));
  const alive = () => exit === undefined;
  const tail = () => {
    try {
      return readFileSync(logFile, 'utf8').split('\n').slice(-8).join('\n');
    } catch {
      return '';
    }
  };

  /** `pool status --format json` ({ serving, size, ready, booting, claimed, vms }), or undefined if it failed. */
  const status = () => {
    const r = spawnSync(hull, ['--root', root, 'pool', 'status', '--format', 'json'], { env, encoding: 'utf8', timeout: 30_000 });
    try {
      return r.status === 0 ? JSON.parse(r.stdout) : undefined;
    } catch {
      return undefined;
    }
  };

  /**
   * Waits until the pool holds `size` ready VMs and boots none (so no pool boot overlaps what is timed next); throws
   * if the pool died or did not fill within `timeoutMs`. Returns the last status.
   */
  const waitFull = async (timeoutMs = 180_000) => {
    const deadline = Date.now() + timeoutMs;
    let last;
    for (;;) {
      if (!alive()) throw new Error(`hull pool serve exited (${JSON.stringify(exit)}):\n${tail()}`);
      last = status();
      if (last?.serving && last.ready >= size && last.booting === 0) return last;
      if (Date.now() > deadline) {
        throw new Error(`the pool did not fill in ${timeoutMs / 1000} s (ready ${last?.ready}, booting ${last?.booting}):\n${tail()}`);
      }
      await sleep(500);
    }
  };

  /** SIGTERM (the pool powers its VMs off and exits), SIGKILL after 60 s. */
  const stop = async () => {
    if (!alive() || child.pid === undefined) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const killer = setTimeout(() => {
      process.stderr.write('bench: hull pool serve did not exit 60 s after SIGTERM: SIGKILL\n');
      child.kill('SIGKILL');
    }, 60_000);
    await exited;
    clearTimeout(killer);
  };

  return { pid: child.pid, size, status, waitFull, stop, alive };
}
