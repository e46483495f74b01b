// The host-wide boot slots (shim/sandbox/boot-slots.ts) between real processes: exclusive while held, at most N holders
// at once, freed by the kernel when a holder is killed with SIGKILL, nothing left by a waiter that is killed or
// aborted, a bounded wait that fails with a typed error, and a holder in another network namespace (as `hull run` is)
// still contends for the host's slots. Each test uses a scope of its own, so real boots on this host are not touched.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildSync } from 'esbuild';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { addonPath } from '../../native/addon/index.js';
import { acquireBootSlot, BootQueueTimeoutError, slotName, type BootSlot } from '../../shim/sandbox/boot-slots.js';
import { needRoot, prerequisitesMet } from '../helpers/prerequisites.js';

const dir = mkdtempSync(path.join(tmpdir(), 'hull-boot-slots-'));
const bundle = path.join(dir, 'boot-slots.mjs');
const children = new Set<ChildProcess>();
let scopeSeq = 0;
const newScope = (): string => `test-${process.pid}-${scopeSeq++}`;

/** The abstract names of `scope` bound in this (the host's) network namespace (/proc/net/unix shows them as @name). */
function boundNames(scope: string): string[] {
  const lines = readFileSync('/proc/self/net/unix', 'utf8').split('\n');
  return lines.map((l) => l.trim().split(/\s+/)[7] ?? '').filter((n) => n.startsWith(`@hull-boot-slot-${scope}-`))
    .map((n) => n.replace(/@+$/, '')) // Node binds abstract names padded with NULs to the whole sun_path
    .sort();
}

/**
 * A process that takes a slot of `scope` (after unsharing its network namespace when `ownNetns`), writes
 * `held <index> <netns inode> <ms since epoch>`, holds it for `holdMs` (forever when undefined), then writes `released <ms>`.
 */
function holder(scope: string, slots: number, opts: { holdMs?: number; ownNetns?: boolean } = {}): { child: ChildProcess; lines: string[]; line: (prefix: string) => Promise<string> } {
  const script = `
    const { acquireBootSlot } = await import(${JSON.stringify(bundle)});
    const { statSync } = await import('node:fs');
    if (${opts.ownNetns === true}) {
      const { unshareNetns } = await import(${JSON.stringify(bundle)});
      unshareNetns();
    }
    const slot = await acquireBootSlot({ slots: ${slots}, waitMs: 60000, scope: ${JSON.stringify(scope)}, pollMs: 20 });
    process.stdout.write('held ' + slot.index + ' ' + statSync('/proc/thread-self/ns/net').ino + ' ' + Date.now() + '\\n');
    const hold = ${opts.holdMs ?? -1};
    if (hold >= 0) setTimeout(() => { process.stdout.write('released ' + Date.now() + '\\n'); slot.release(); }, hold);
    else setInterval(() => undefined, 1 << 30);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, HULL_NATIVE_ADDON: addonPath() },
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const lines: string[] = [];
  let stderr = '';
  let buffered = '';
  const waiters: (() => void)[] = [];
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buffered += d;
    const parts = buffered.split('\n');
    buffered = parts.pop()!;
    lines.push(...parts);
    for (const w of waiters.splice(0)) w();
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const line = (prefix: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const found = lines.find((l) => l.startsWith(prefix));
        if (found !== undefined) resolve(found);
        else if (child.exitCode !== null || child.signalCode !== null) reject(new Error(`holder exited (${child.exitCode ?? child.signalCode}): ${stderr}`));
        else waiters.push(check);
      };
      child.once('exit', () => setImmediate(check));
      check();
    });
  return { child, lines, line };
}

const exited = (child: ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));

describe.runIf(prerequisitesMet('boot slots', [needRoot()]))('host-wide boot slots', () => {
  const held: BootSlot[] = [];

  beforeAll(() => {
    // The bundle also exports unshareNetns, for the holder that boots from a namespace of its own.
    const entry = path.join(dir, 'entry.ts');
    const src = path.resolve('shim/sandbox/boot-slots.ts');
    const addon = path.resolve('native/addon/index.ts');
    writeFileSync(entry, `export * from ${JSON.stringify(src)};\nexport { unshareNetns } from ${JSON.stringify(addon)};\n`);
    buildSync({ entryPoints: [entry], outfile: bundle, bundle: true, platform: 'node', format: 'esm', logLevel: 'error' });
  });

  afterEach(async () => {
    for (const s of held.splice(0)) s.release();
    for (const c of children) c.kill('SIGKILL');
    await Promise.all([...children].map(exited));
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('holds at most N at once in one process; a full set times out in one typed line; a release lets the next in', async () => {
    const scope = newScope();
    held.push(await acquireBootSlot({ slots: 2, waitMs: 1000, scope }), await acquireBootSlot({ slots: 2, waitMs: 1000, scope }));
    expect(held.map((s) => s.index).sort()).toEqual([0, 1]);
    expect(boundNames(scope)).toEqual([`@hull-boot-slot-${scope}-0`, `@hull-boot-slot-${scope}-1`]);
    const t0 = Date.now();
    let queued = 0;
    const err = await acquireBootSlot({ slots: 2, waitMs: 300, scope, what: 'sandbox x', pollMs: 20, onQueued: () => queued++ }).catch((e: unknown) => e);
    expect(queued).toBe(1);
    expect(err).toBeInstanceOf(BootQueueTimeoutError);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    expect((err as Error).message).toMatch(/^sandbox x could not boot: no VM boot slot freed within \d+ s: 2 boot\(s\) at a time \(vm\.max_concurrent_boots\)/);
    const waiting = acquireBootSlot({ slots: 2, waitMs: 5000, scope, pollMs: 20 });
    held[1]!.release();
    held[1]!.release(); // idempotent
    const next = await waiting;
    held.push(next);
    expect(next.index).toBe(held[1]!.index);
    expect(boundNames(scope)).toHaveLength(2);
  });

  it('a name bound by a process of another uid (a squatter) is not a slot: the search steps past it', async () => {
    const scope = newScope();
    const names = [0, 1].map((i) => slotName(scope, i)); // JSON keeps the leading NUL as \u0000
    const script = `const net = await import('node:net');
      for (const n of ${JSON.stringify(names)}) await new Promise((r) => net.createServer().listen({ path: n }, r));
      process.stdout.write('squatting\\n'); setInterval(() => undefined, 1 << 30);`;
    const squatter = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'], uid: 65534, gid: 65534 });
    children.add(squatter);
    await new Promise((r) => squatter.stdout!.once('data', r));
    expect(boundNames(scope)).toEqual([`@hull-boot-slot-${scope}-0`, `@hull-boot-slot-${scope}-1`]);
    held.push(await acquireBootSlot({ slots: 2, waitMs: 1000, scope }), await acquireBootSlot({ slots: 2, waitMs: 1000, scope }));
    expect(held.map((s) => s.index).sort()).toEqual([2, 3]);
    // Two of our own hold the two slots now: the third waits, as without the squatter.
    const err = await acquireBootSlot({ slots: 2, waitMs: 200, scope, pollMs: 20 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BootQueueTimeoutError);
  });

  it('between processes: six holders of two slots never overlap more than two at a time', async () => {
    const scope = newScope();
    const holders = Array.from({ length: 6 }, () => holder(scope, 2, { holdMs: 150 }));
    await Promise.all(holders.map((h) => exited(h.child)));
    const events = holders.flatMap((h) => {
      const [, , , at] = h.lines.find((l) => l.startsWith('held'))!.split(' ');
      const released = h.lines.find((l) => l.startsWith('released'))!.split(' ')[1];
      return [{ at: Number(at), d: +1 }, { at: Number(released), d: -1 }];
    });
    // Releases first at equal times: a slot freed and taken in the same millisecond is not an overlap.
    events.sort((a, b) => a.at - b.at || a.d - b.d);
    let now = 0;
    let most = 0;
    for (const e of events) most = Math.max(most, (now += e.d));
    expect(most).toBe(2);
    expect(boundNames(scope)).toEqual([]);
  });

  it('a holder killed with SIGKILL frees its slot at once; a waiter killed while waiting leaves nothing', async () => {
    const scope = newScope();
    const h = holder(scope, 1);
    await h.line('held 0');
    await expect(acquireBootSlot({ slots: 1, waitMs: 200, scope })).rejects.toBeInstanceOf(BootQueueTimeoutError);
    const waiter = holder(scope, 1); // queues behind h
    const waiting = acquireBootSlot({ slots: 1, waitMs: 10_000, scope, pollMs: 20 });
    h.child.kill('SIGKILL');
    await exited(h.child);
    // Either the waiter process or this one gets it; kill the waiter process whether it holds it or waits.
    waiter.child.kill('SIGKILL');
    await exited(waiter.child);
    const slot = await waiting;
    held.push(slot);
    expect(boundNames(scope)).toEqual([`@hull-boot-slot-${scope}-0`]);
    slot.release();
    await new Promise((r) => setImmediate(r));
    expect(boundNames(scope)).toEqual([]);
  });

  it('a waiter that is aborted rejects with the reason and holds nothing', async () => {
    const scope = newScope();
    held.push(await acquireBootSlot({ slots: 1, waitMs: 1000, scope }));
    const abort = new AbortController();
    const waiting = acquireBootSlot({ slots: 1, waitMs: 10_000, scope, signal: abort.signal, pollMs: 20 });
    setTimeout(() => abort.abort(new Error('cancelled')), 100);
    await expect(waiting).rejects.toThrow('cancelled');
    held.splice(0).forEach((s) => s.release());
    await new Promise((r) => setImmediate(r));
    expect(boundNames(scope)).toEqual([]);
  });

  it('a holder in a network namespace of its own (as hull run boots) takes the host namespace’s slot and stays in its own', async () => {
    const scope = newScope();
    const h = holder(scope, 1, { ownNetns: true });
    const [, index, netnsIno] = (await h.line('held')).split(' ');
    expect(index).toBe('0');
    expect(Number(netnsIno)).not.toBe(statSync('/proc/self/ns/net').ino); // back in its own namespace after binding
    expect(boundNames(scope)).toEqual([`@hull-boot-slot-${scope}-0`]);
    await expect(acquireBootSlot({ slots: 1, waitMs: 200, scope })).rejects.toBeInstanceOf(BootQueueTimeoutError);
    h.child.kill('SIGKILL');
    await exited(h.child);
    held.push(await acquireBootSlot({ slots: 1, waitMs: 2000, scope, pollMs: 20 }));
  });
});
