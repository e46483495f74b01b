// Interleavings of hypervisor/lease.ts's allocator with another one that are too narrow to hit on purpose with real
// processes (guest-cid.test.ts races real ones): node:fs is wrapped so that the other allocator's step lands exactly
// between two of ours.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { allocateLease } from '../../hypervisor/lease.js';

/** Runs once, at the allocator's next readdir of this path, before the readdir's result is handed back. */
const beforeReaddir = new Map<string, () => void>();

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const readdirSync = ((p: fs.PathLike, ...rest: unknown[]) => {
    const key = String(p);
    const step = beforeReaddir.get(key);
    beforeReaddir.delete(key);
    // The readdir happened first (its result is taken now), the other allocator's step right after it.
    let result: unknown;
    let error: unknown;
    try {
      result = (real.readdirSync as (...a: unknown[]) => unknown)(p, ...rest);
    } catch (err) {
      error = err;
    }
    step?.();
    if (error !== undefined) throw error;
    return result;
  }) as typeof real.readdirSync;
  return { ...real, default: { ...real, readdirSync }, readdirSync };
});

/** Above any pid_max: kill(2) says ESRCH, so an owner with this pid is dead. */
const DEAD_PID = 2_000_000_000;
let tmp: string;
let seq = 0;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hull-lease-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const space = (lockDir: string) => ({ lockDir, prefix: 'n', first: 3, last: 9, what: 'number', error: (m: string) => new Error(m) });

describe('allocateLease against another allocator in between', () => {
  it("moves on when an older hull's stale file becomes another allocator's reservation between its readdir and its read", () => {
    const lockDir = path.join(tmp, `legacy-${seq++}`);
    fs.mkdirSync(lockDir);
    const contested = path.join(lockDir, 'n-3');
    fs.writeFileSync(contested, `${DEAD_PID}\n`);
    // The other allocator: clears the stale file and renames its complete reservation onto the name.
    beforeReaddir.set(contested, () => {
      fs.unlinkSync(contested);
      fs.mkdirSync(contested);
      fs.writeFileSync(path.join(contested, 'b'.repeat(24)), `${process.pid}\n`);
    });
    const lease = allocateLease(space(lockDir));
    expect(beforeReaddir.size).toBe(0); // the step ran
    expect(lease.value).toBe(4);
    expect(fs.readdirSync(contested)).toEqual(['b'.repeat(24)]); // the other's reservation is untouched
    lease.release();
    expect(fs.readdirSync(lockDir).sort()).toEqual(['n-3']);
  });

  it("moves on when another allocator releases and a third reserves between its readdir and its read of the lease", () => {
    const lockDir = path.join(tmp, `lease-${seq++}`);
    const contested = path.join(lockDir, 'n-3');
    fs.mkdirSync(contested, { recursive: true });
    fs.writeFileSync(path.join(contested, 'a'.repeat(24)), `${process.pid}\n`);
    beforeReaddir.set(contested, () => {
      fs.rmSync(path.join(contested, 'a'.repeat(24)));
      fs.writeFileSync(path.join(contested, 'c'.repeat(24)), `${process.pid}\n`);
    });
    const lease = allocateLease(space(lockDir));
    expect(lease.value).toBe(4);
    expect(fs.readdirSync(contested)).toEqual(['c'.repeat(24)]);
    lease.release();
  });
});
