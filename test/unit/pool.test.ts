// shim/pool/: the claim primitive and the records around it, on fake pool directories (no VMs). The "pool" is this
// test process (its serve.lock), the VMs' processes are this process too (alive) or a pid that has exited (dead).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildSync } from 'esbuild';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { procStartTime } from '../../hypervisor/process.js';
import type { VmProcesses } from '../../hypervisor/types.js';
import { mayBootNow, REFILL_AFTER_CLAIM_MS } from '../../shim/pool/boot-priority.js';
import { claimReadyVm, fits, releaseClaim, takeVm, type ClaimWant } from '../../shim/pool/claim.js';
import { createExclusive, sweepDeadTemps } from '../../shim/pool/exclusive-file.js';
import { claimPath, newPooledNics, newVmId, poolDir, serveLockPath, pooledVmDir, vmsDir } from '../../shim/pool/layout.js';
import { readPoolVm, writePoolVm, type PoolVmRecord, type ProcessRef, type ServeLock } from '../../shim/pool/records.js';
import { claimOwner, readPoolVmEntry } from '../../shim/pool/scan.js';
import { acquireServeLock, releaseServeLock, servingPool } from '../../shim/pool/serve-lock.js';
import { poolStatus } from '../../shim/pool/status.js';

const ROOT = '/run/hull-test-root';
const IMAGE = 'img-a';
const self: ProcessRef = { pid: process.pid, startTime: procStartTime(process.pid) as number };
const live: VmProcesses = {
  driver: 'qemu-microvm',
  vmm: { role: 'vmm', ...self },
  helpers: [{ role: 'virtiofsd', ...self }],
};

/** A pid that existed and has exited. */
function deadPid(): number {
  const pid = spawnSync(process.execPath, ['-e', '']).pid;
  if (!pid) throw new Error('no pid');
  return pid;
}

let tmp: string;
let pool: string;
const savedEnv = process.env['HULL_POOL_DIR'];

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-pool-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
  if (savedEnv === undefined) delete process.env['HULL_POOL_DIR'];
  else process.env['HULL_POOL_DIR'] = savedEnv;
});
beforeEach(() => {
  pool = mkdtempSync(path.join(tmp, 'pool-'));
  process.env['HULL_POOL_DIR'] = pool;
  mkdirSync(vmsDir(pool));
});
afterEach(() => {
  rmSync(pool, { recursive: true, force: true });
});

function serveAs(holder: ProcessRef, size = 2): void {
  const lock: ServeLock = { ...holder, size, vcpus: 1, memoryMiB: 512, nics: 1, startedAt: new Date().toISOString() };
  writeFileSync(serveLockPath(pool), JSON.stringify(lock));
}

interface FakeVm {
  state?: PoolVmRecord['state'];
  vcpus?: number;
  memoryMiB?: number;
  image?: string;
  accel?: 'kvm' | 'tcg';
  nics?: number;
  vm?: VmProcesses;
  pool?: ProcessRef;
  readyAt?: string;
  maxMemoryMiB?: number;
}

function addVm(o: FakeVm = {}): string {
  const id = newVmId();
  const dir = pooledVmDir(pool, id);
  mkdirSync(dir);
  const state = o.state ?? 'ready';
  const record: PoolVmRecord = {
    version: 1,
    id,
    state,
    shape: {
      vcpus: o.vcpus ?? 1,
      memoryMiB: o.memoryMiB ?? 512,
      ...(o.maxMemoryMiB === undefined ? {} : { maxMemoryMiB: o.maxMemoryMiB }),
      image: o.image ?? IMAGE,
      accel: o.accel ?? 'tcg',
      nics: o.nics ?? 0,
    },
    nics: newPooledNics(o.nics ?? 0),
    vm: o.vm ?? live,
    pool: o.pool ?? self,
    createdAt: new Date(Date.now() - 60_000).toISOString(),
  };
  if (state === 'ready') record.readyAt = o.readyAt ?? new Date().toISOString();
  writePoolVm(dir, record);
  return id;
}

const want = (o: Partial<ClaimWant> = {}): ClaimWant => ({ vcpus: 1, memoryMiB: 512, image: IMAGE, nics: 0, ...o });

function claimedId(result: ReturnType<typeof claimReadyVm>): string {
  if ('miss' in result) throw new Error(`expected a claim, got a miss: ${result.miss}`);
  return result.id;
}

function missOf(result: ReturnType<typeof claimReadyVm>): string {
  if (!('miss' in result)) throw new Error(`expected a miss, claimed ${result.id}`);
  return result.miss;
}

describe('pool layout', () => {
  it('puts the pool outside the root, derived from the resolved root alone, unless HULL_POOL_DIR says where', () => {
    expect(poolDir(ROOT)).toBe(pool);
    delete process.env['HULL_POOL_DIR'];
    const dir = poolDir('/run/hull');
    expect(dir).toMatch(/^\/run\/hull\/pool\/[0-9a-f]{16}$/);
    expect(poolDir('/run/hull/')).toBe(dir);
    expect(poolDir('/run/hull2')).not.toBe(dir);
    process.env['HULL_POOL_DIR'] = pool;
  });
});

describe('claimReadyVm', () => {
  it('misses in one line when no live pool serves the root, even with ready VMs there', () => {
    addVm();
    expect(missOf(claimReadyVm(ROOT, want()))).toBe(`no pool serves ${ROOT}`);
    serveAs({ pid: deadPid() });
    expect(missOf(claimReadyVm(ROOT, want()))).toBe(`no pool serves ${ROOT}`);
    rmSync(pool, { recursive: true });
    expect(missOf(claimReadyVm(ROOT, want()))).toBe(`no pool serves ${ROOT}`);
  });

  it("keeps a VM's room to grow through its record; a most not above its memory is no valid shape", () => {
    serveAs(self);
    const id = addVm({ maxMemoryMiB: 2048 });
    const claimed = claimReadyVm(ROOT, want());
    expect(claimedId(claimed)).toBe(id);
    if ('miss' in claimed) return;
    expect(claimed.record.shape).toMatchObject({ memoryMiB: 512, maxMemoryMiB: 2048 });
    const dir = pooledVmDir(pool, addVm({ maxMemoryMiB: 512 }));
    expect(() => readPoolVm(dir)).toThrow(/no valid shape/);
  });

  it('a VM that can grow fits a bigger want; one that needs no growing is taken first; the miss shows the room', () => {
    serveAs(self);
    const growable = addVm({ memoryMiB: 512, maxMemoryMiB: 1024 });
    const big = addVm({ memoryMiB: 1024 });
    expect(claimedId(claimReadyVm(ROOT, want({ memoryMiB: 900 })))).toBe(big); // bigger, but no growing
    expect(claimedId(claimReadyVm(ROOT, want({ memoryMiB: 900 })))).toBe(growable);
    addVm({ memoryMiB: 512, maxMemoryMiB: 1024 });
    expect(missOf(claimReadyVm(ROOT, want({ memoryMiB: 2048 })))).toBe('no ready VM of 1 vCPU/2048 MiB (ready: 1×1 vCPU/512–1024 MiB)');
  });

  it('claims a ready VM once: the claim file names this process, and the next claim misses', () => {
    serveAs(self);
    const id = addVm();
    const claimed = claimReadyVm(ROOT, want());
    expect(claimedId(claimed)).toBe(id);
    if ('miss' in claimed) return;
    expect(claimed.dir).toBe(pooledVmDir(pool, id));
    expect(claimed.record.state).toBe('ready');
    expect(readPoolVm(claimed.dir)).toEqual(claimed.record);
    const claim = JSON.parse(readFileSync(claimPath(claimed.dir), 'utf8')) as Record<string, unknown>;
    expect(claim).toMatchObject({ pid: process.pid, startTime: self.startTime });
    expect(typeof claim['at']).toBe('string');
    expect(missOf(claimReadyVm(ROOT, want()))).toBe('no ready VM (none yet)');
  });

  it('never hands out a booting VM, and says how many boot', () => {
    serveAs(self);
    addVm({ state: 'booting' });
    addVm({ state: 'booting' });
    expect(missOf(claimReadyVm(ROOT, want()))).toBe('no ready VM (2 booting)');
  });

  it('takes a VM at least as big as wanted, the smallest first, then the one ready longest', () => {
    serveAs(self);
    const big = addVm({ vcpus: 2, memoryMiB: 1024, readyAt: '2026-01-01T00:00:00.000Z' });
    const newer = addVm({ readyAt: '2026-01-01T00:00:02.000Z' });
    const older = addVm({ readyAt: '2026-01-01T00:00:01.000Z' });
    expect(claimedId(claimReadyVm(ROOT, want()))).toBe(older);
    expect(claimedId(claimReadyVm(ROOT, want()))).toBe(newer);
    expect(claimedId(claimReadyVm(ROOT, want()))).toBe(big);
  });

  it('gives a sandbox with pod interfaces a VM with as many NICs, and one without the VM with fewest', () => {
    serveAs(self);
    const withNic = addVm({ nics: 1, readyAt: '2026-01-01T00:00:00.000Z' });
    const without = addVm({ nics: 0, readyAt: '2026-01-01T00:00:01.000Z' });
    expect(missOf(claimReadyVm(ROOT, want({ nics: 2 })))).toBe('no ready VM of 1 vCPU/512 MiB/2 NICs (ready: 1×1 vCPU/512 MiB, 1×1 vCPU/512 MiB/1 NIC)');
    expect(claimedId(claimReadyVm(ROOT, want()))).toBe(without);
    const again = addVm({ nics: 0 });
    expect(claimedId(claimReadyVm(ROOT, want({ nics: 1 })))).toBe(withNic);
    expect(missOf(claimReadyVm(ROOT, want({ nics: 1 })))).toBe('no ready VM of 1 vCPU/512 MiB/1 NIC (ready: 1×1 vCPU/512 MiB)');
    expect(claimedId(claimReadyVm(ROOT, want()))).toBe(again);
  });

  it('skips VMs that do not fit and lists what is ready instead', () => {
    serveAs(self);
    addVm({ memoryMiB: 256 });
    addVm({ memoryMiB: 256 });
    addVm({ state: 'booting' });
    expect(missOf(claimReadyVm(ROOT, want()))).toBe('no ready VM of 1 vCPU/512 MiB (1 booting; ready: 2×1 vCPU/256 MiB)');
    addVm({ image: 'img-old' });
    addVm({ accel: 'kvm' });
    expect(missOf(claimReadyVm(ROOT, want({ vcpus: 1, accel: 'tcg' })))).toBe(
      'no ready VM of 1 vCPU/512 MiB (tcg) (1 booting; ready: 2×1 vCPU/256 MiB, 1×1 vCPU/512 MiB (kvm), 1×1 vCPU/512 MiB of guest image img-old)',
    );
  });

  it('matches shapes by image, acceleration when asked, and size at least as big', () => {
    const shape = { vcpus: 2, memoryMiB: 1024, image: IMAGE, accel: 'kvm' as const, nics: 1 };
    expect(fits(shape, want({ vcpus: 2, memoryMiB: 1024 }))).toBe(true);
    expect(fits(shape, want({ vcpus: 1, memoryMiB: 512, accel: 'kvm' }))).toBe(true);
    expect(fits(shape, want({ vcpus: 3 }))).toBe(false);
    expect(fits(shape, want({ memoryMiB: 1025 }))).toBe(false);
    expect(fits(shape, want({ accel: 'tcg' }))).toBe(false);
    expect(fits(shape, want({ image: 'other' }))).toBe(false);
    expect(fits(shape, want({ nics: 1 }))).toBe(true);
    expect(fits(shape, want({ nics: 2 }))).toBe(false);
  });

  it('never hands out what an earlier pool left, claimed or not', () => {
    serveAs(self);
    addVm({ pool: { pid: deadPid() } });
    expect(missOf(claimReadyVm(ROOT, want()))).toBe('no ready VM (none yet)');
  });

  it('skips a VM whose VMM or helper is dead, leaving it unclaimed for the pool to replace', () => {
    serveAs(self);
    const dead = deadPid();
    const noVmm = addVm({ vm: { vmm: { role: 'vmm', pid: dead } } });
    const noHelper = addVm({ vm: { vmm: live.vmm, helpers: [{ role: 'virtiofsd', pid: dead }] } });
    expect(missOf(claimReadyVm(ROOT, want()))).toBe('no ready VM (2 dead, to be replaced)');
    expect(existsSync(claimPath(pooledVmDir(pool, noVmm)))).toBe(false);
    expect(existsSync(claimPath(pooledVmDir(pool, noHelper)))).toBe(false);
  });

  it('gives one VM to exactly one of many claimers racing in separate processes', async () => {
    const bundle = path.join(tmp, 'claim.mjs');
    buildSync({
      entryPoints: [path.resolve(import.meta.dirname, '../../shim/pool/claim.ts')],
      outfile: bundle,
      bundle: true,
      platform: 'node',
      format: 'esm',
      logLevel: 'error',
    });
    serveAs(self, 3);
    const go = path.join(tmp, `go-${path.basename(pool)}`);
    // Every child waits for the go file, then claims at once: the claims land within a millisecond of each other.
    const script = `
      const { existsSync } = await import('node:fs');
      const { claimReadyVm } = await import(${JSON.stringify(bundle)});
      const sleep = new Int32Array(new SharedArrayBuffer(4));
      while (!existsSync(${JSON.stringify(go)})) Atomics.wait(sleep, 0, 0, 1);
      const r = claimReadyVm(${JSON.stringify(ROOT)}, { vcpus: 1, memoryMiB: 512, image: ${JSON.stringify(IMAGE)}, nics: 0 });
      process.stdout.write(JSON.stringify('miss' in r ? { miss: r.miss } : { id: r.id, pid: process.pid }));
    `;
    for (let round = 0; round < 3; round++) {
      rmSync(go, { force: true });
      const ids = [addVm(), addVm(), addVm()];
      const children = Array.from({ length: 8 }, () => {
        const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
          env: { ...process.env, HULL_POOL_DIR: pool },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        return new Promise<{ id?: string; pid?: number; miss?: string }>((resolve, reject) => {
          child.once('error', reject);
          child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`child failed: ${err}`))));
        });
      });
      await new Promise((r) => setTimeout(r, 300)); // let them start and wait
      writeFileSync(go, '');
      const results = await Promise.all(children);
      const winners = results.filter((r) => r.id !== undefined);
      expect(winners.map((r) => r.id).sort()).toEqual([...ids].sort());
      for (const w of winners) {
        const claim = JSON.parse(readFileSync(claimPath(pooledVmDir(pool, w.id as string)), 'utf8')) as { pid: number };
        expect(claim.pid).toBe(w.pid);
      }
      expect(results.filter((r) => r.miss !== undefined)).toHaveLength(5);
      // Nothing but the claims: no temp file of a losing claimer is left behind.
      for (const id of ids) expect(readdirSync(pooledVmDir(pool, id)).sort()).toEqual(['claim', 'pool-vm.json']);
    }
  }, 60_000);
});

describe('claims and orphans', () => {
  it('takes a VM exactly once, and not at all once its directory is gone', () => {
    const dir = pooledVmDir(pool, addVm());
    expect(takeVm(dir)).toBe(true);
    expect(takeVm(dir)).toBe(false);
    rmSync(dir, { recursive: true });
    expect(takeVm(dir)).toBe(false);
  });

  it("tells a live claimer's VM (never touched) from an orphan (its claimer died or gave it up)", () => {
    const id = addVm();
    const dir = pooledVmDir(pool, id);
    const entry = () => {
      const e = readPoolVmEntry(dir, id);
      if (!e) throw new Error('entry vanished');
      return e;
    };
    expect(claimOwner(entry())).toBe('unclaimed');
    writeFileSync(claimPath(dir), JSON.stringify({ ...self, at: new Date().toISOString() }));
    expect(claimOwner(entry())).toBe('in-use');
    // A pid that was reused since is another process: the start time tells.
    writeFileSync(claimPath(dir), JSON.stringify({ pid: process.pid, startTime: (self.startTime ?? 0) + 1, at: new Date().toISOString() }));
    expect(claimOwner(entry())).toBe('orphaned');
    writeFileSync(claimPath(dir), JSON.stringify({ pid: deadPid(), at: new Date().toISOString() }));
    expect(claimOwner(entry())).toBe('orphaned');
    // A claim that names no process cannot be judged: left alone.
    writeFileSync(claimPath(dir), '{"pid":');
    expect(entry().claimError).toMatch(/not JSON/);
    expect(claimOwner(entry())).toBe('in-use');
  });

  it('lets a claimer give a VM it will not use back to the pool, which then counts it an orphan', () => {
    serveAs(self);
    const id = addVm();
    const dir = pooledVmDir(pool, id);
    expect(claimedId(claimReadyVm(ROOT, want()))).toBe(id);
    releaseClaim(dir);
    const entry = readPoolVmEntry(dir, id);
    expect(entry?.claim?.released).toBe(true);
    expect(entry && claimOwner(entry)).toBe('orphaned');
    expect(missOf(claimReadyVm(ROOT, want()))).toBe('no ready VM (none yet)'); // still claimed: never handed out again
  });

  it('reports the pool in status: who serves it, and each VM by state', () => {
    serveAs(self, 3);
    addVm();
    addVm({ state: 'booting' });
    addVm({ pool: { pid: deadPid() } });
    const orphan = pooledVmDir(pool, addVm());
    writeFileSync(claimPath(orphan), JSON.stringify({ pid: deadPid(), at: new Date().toISOString() }));
    const claimed = pooledVmDir(pool, addVm());
    writeFileSync(claimPath(claimed), JSON.stringify({ ...self, at: new Date().toISOString() }));
    const status = poolStatus(ROOT);
    expect(status).toMatchObject({ root: ROOT, poolDir: pool, serving: { pid: process.pid }, size: 3, ready: 1, booting: 1, claimed: 1 });
    expect(status.vms.map((v) => v.state).sort()).toEqual(['booting', 'claimed', 'orphaned', 'ready', 'stale']);
    const ready = status.vms.find((v) => v.state === 'ready');
    expect(ready?.pid).toBe(process.pid);
    expect(ready?.pssBytes).toBeGreaterThan(0);
  });
});

describe('serve.lock', () => {
  const settings = { size: 2, vcpus: 1, memoryMiB: 512, nics: 1, startedAt: new Date().toISOString() };

  it('is taken by one live server; a second is refused in one line; a dead holder is taken over', () => {
    expect(servingPool(pool)).toBeUndefined();
    serveAs({ pid: deadPid() });
    expect(servingPool(pool)).toBeUndefined();
    const lock = acquireServeLock(pool, ROOT, settings);
    expect(lock).toMatchObject({ pid: process.pid, size: 2 });
    expect(servingPool(pool)).toEqual(lock);
    expect(() => acquireServeLock(pool, ROOT, settings)).toThrow(`a pool already serves ${ROOT} (pid ${process.pid}; ${serveLockPath(pool)})`);
    releaseServeLock(pool);
    expect(existsSync(serveLockPath(pool))).toBe(false);
    expect(readdirSync(pool)).toEqual(['vms']); // no temp or stale file left
  });

  it("leaves another server's lock in place on release", () => {
    serveAs({ pid: 1 });
    releaseServeLock(pool);
    expect(existsSync(serveLockPath(pool))).toBe(true);
  });
});

describe('createExclusive', () => {
  it('creates a file whole, once; a dead writer’s temp file is swept, a live one’s kept', () => {
    const file = path.join(pool, 'x');
    expect(createExclusive(file, 'one')).toBe(true);
    expect(createExclusive(file, 'two')).toBe(false);
    expect(readFileSync(file, 'utf8')).toBe('one');
    writeFileSync(path.join(pool, `.claim.${deadPid()}.abcdef.tmp`), '');
    writeFileSync(path.join(pool, `.claim.${process.pid}.abcdef.tmp`), '');
    expect(sweepDeadTemps(pool)).toBe(1);
    expect(readdirSync(pool).sort()).toEqual([`.claim.${process.pid}.abcdef.tmp`, 'vms', 'x']);
  });
});

describe('the refill after a claim', () => {
  it('waits a moment while a ready VM is left (the claimed sandbox is starting), and boots at once when none is', () => {
    const claimedAt = 1_000_000;
    expect(mayBootNow(1, claimedAt + 10, claimedAt)).toBe(false);
    expect(mayBootNow(1, claimedAt + REFILL_AFTER_CLAIM_MS - 1, claimedAt)).toBe(false);
    expect(mayBootNow(1, claimedAt + REFILL_AFTER_CLAIM_MS, claimedAt)).toBe(true);
    expect(mayBootNow(0, claimedAt + 10, claimedAt)).toBe(true);
    expect(mayBootNow(2, Date.now(), 0)).toBe(true); // never claimed: the first fill is not held back
  });
});
