// A pooled VM under KVM: `hull pool serve` boots it with kernel vhost-vsock, `hull run` claims it and reaches its
// agent over AF_VSOCK from the pool VM's record (docs/pool.md), and the pool drains to nothing on SIGTERM.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PoolStatus } from '../../shim/pool/status.js';
import { expectNoLeaksThenRemove, hull, hullBin, makeBundle, tempDir } from '../helpers/hull.js';
import { hullKvm, jsonLog, KVM_ENV, kvmFacts } from './kvm-helpers.js';
import { requireKvmHost } from './preflight.js';

const work = tempDir('hull-kvm-pool-');
const root = path.join(work, 'root');
const poolLog = path.join(work, 'pool.log');
let pool: ReturnType<typeof spawn> | undefined;

async function status(): Promise<PoolStatus> {
  const r = await hull(['pool', 'status', '--format', 'json'], { root });
  if (r.code !== 0) throw new Error(`hull pool status failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as PoolStatus;
}

async function until(what: string, ok: (s: PoolStatus) => boolean, timeoutMs = 60_000): Promise<PoolStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await status();
    if (ok(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(s)}\n${readFileSync(poolLog, 'utf8').slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(() => requireKvmHost());
afterAll(async () => {
  if (pool && pool.exitCode === null && pool.signalCode === null) {
    pool.kill('SIGTERM');
    await new Promise((r) => pool?.once('exit', r));
  }
  expectNoLeaksThenRemove(root, work, (a, e) => expect(a).toEqual(e));
});

describe('a pooled VM under KVM', () => {
  it('is booted on KVM with an AF_VSOCK CID, claimed by hull run, and serves the container', async () => {
    mkdirSync(root, { recursive: true });
    const err = openSync(poolLog, 'a');
    pool = spawn(hullBin, ['--root', root, '--log-format', 'json', 'pool', 'serve', '--size', '1'], {
      stdio: ['ignore', 'ignore', err],
      env: { ...process.env, ...KVM_ENV },
    });
    closeSync(err);
    const ready = await until('a ready pooled VM', (s) => s.ready >= 1);
    const vm = ready.vms.find((v) => v.state === 'ready');
    expect(vm?.shape?.accel).toBe('kvm');
    const vmDir = path.join(ready.poolDir, 'vms', String(vm?.id));
    const facts = kvmFacts(vmDir);
    expect([facts.accel, facts.transport]).toEqual(['kvm', 'vhost-vsock']);
    expect(facts.argv).toContain(`vhost-vsock-device,guest-cid=${facts.guestCid}`);

    const runLog = path.join(work, 'run.log');
    const bundle = makeBundle(path.join(work, 'b'), ['sh', '-c', 'read l; echo "pooled:$l"; echo e >&2; exit 4']);
    const r = await hullKvm(['run', '--bundle', bundle, 'kvm-pooled'], { root, input: 'x\n', globalArgs: ['--log', runLog, '--log-format', 'json'] });
    expect([r.code, r.stdout, r.stderr]).toEqual([4, 'pooled:x\n', 'e\n']);
    const claimed = jsonLog(runLog).find((l) => l['msg'] === 'pooled VM claimed');
    expect(claimed, `hull run took the pooled VM (its log: ${JSON.stringify(jsonLog(runLog).map((l) => l['msg']))})`).toBeDefined();
    expect(claimed?.['accel']).toBe('kvm');
    // The claimed VM is gone with its container: its directory too.
    expect(existsSync(vmDir)).toBe(false);

    pool.kill('SIGTERM');
    const exit = await new Promise<number | null>((res) => pool?.once('exit', (code) => res(code)));
    expect(exit).toBe(0);
  }, 240_000);
});
