// Boot, exec and stdio under KVM with the kernel's vhost-vsock: `hull run` and the create/start/exec/delete
// lifecycle, and whether the guest image's V8 start-up snapshot (built under TCG's CPU model) is taken under KVM's
// `-cpu host` or /init falls back to agent.mjs, with the time the agent took to answer either way.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectNoLeaksThenRemove, hull, makeBundle, tempDir } from '../helpers/hull.js';
import { hullKvm, hullKvmDetached, jsonLog, kvmFacts } from './kvm-helpers.js';
import { requireKvmHost } from './preflight.js';

const work = tempDir('hull-kvm-boot-');
const root = path.join(work, 'root');

beforeAll(() => requireKvmHost());
afterAll(async () => {
  await hull(['delete', '--force', 'kvm-life'], { root });
  expectNoLeaksThenRemove(root, work, (a, e) => expect(a).toEqual(e));
});

describe('boot under KVM with kernel vhost-vsock', () => {
  it('hull run: stdin in, stdout and stderr apart, the exit code out; the guest runs on KVM', async () => {
    const bundle = makeBundle(path.join(work, 'run'), ['sh', '-c', 'read line; echo "got:$line"; echo to-stderr >&2; grep -q hypervisor /proc/cpuinfo && echo virtualized; exit 7']);
    const r = await hullKvm(['run', '--bundle', bundle, 'kvm-run'], { root, input: 'hello\n' });
    expect(r.stderr).toBe('to-stderr\n');
    expect(r.stdout).toBe('got:hello\nvirtualized\n');
    expect(r.code).toBe(7);
  });

  it('create/start/exec/delete: the VM records KVM and an AF_VSOCK CID, QEMU got -accel kvm and vhost-vsock-device', async () => {
    const bundle = makeBundle(path.join(work, 'life'), ['sh', '-c', 'echo started; exec sleep 1000']);
    const log = path.join(work, 'life.log');
    const stdio = { stdout: path.join(work, 'life.out'), stderr: path.join(work, 'life.err') };
    const created = await hullKvmDetached(['create', '--bundle', bundle, 'kvm-life'], {
      root,
      ...stdio,
      globalArgs: ['--log', log, '--log-format', 'json'],
    });
    expect([created.code, created.stderr]).toEqual([0, '']);
    const facts = kvmFacts(path.join(root, 'kvm-life'));
    expect(facts.accel).toBe('kvm');
    expect(facts.transport).toBe('vhost-vsock');
    expect(facts.guestCid).toBeGreaterThanOrEqual(3);
    expect(facts.argv).toMatch(/ -accel kvm /);
    expect(facts.argv).toMatch(/ -cpu host /);
    expect(facts.argv).toContain(`vhost-vsock-device,guest-cid=${facts.guestCid}`);
    expect(facts.argv).not.toContain('vhost-user-vsock-device');

    expect((await hullKvm(['start', 'kvm-life'], { root })).code).toBe(0);
    // A later CLI process reaches the agent over AF_VSOCK from the record alone.
    const exec = await hullKvm(['exec', 'kvm-life', 'sh', '-c', 'read l; echo "exec:$l"; echo e >&2; exit 5'], { root, input: 'via-vsock\n' });
    expect([exec.code, exec.stdout, exec.stderr]).toEqual([5, 'exec:via-vsock\n', 'e\n']);
    expect(readFileSync(stdio.stdout, 'utf8')).toContain('started');

    // The V8 start-up snapshot: taken, or the fallback, and how long the agent took either way.
    const consoleLog = readFileSync(path.join(root, 'kvm-life', 'console.log'), 'utf8');
    const fellBack = /start-up snapshot was built on a CPU with other features/.test(consoleLog);
    const ready = jsonLog(log).find((l) => l['msg'] === 'agent ready');
    expect(ready, 'hull logs "agent ready" with the boot time').toBeDefined();
    const ms = Number(ready?.['ms']);
    console.log(`  V8 start-up snapshot under KVM: ${fellBack ? 'refused (CPU differs); agent.mjs fallback' : 'taken'}; agent ready ${ms} ms after the VMM started`);
    // Under KVM a cold boot to the agent is far below TCG's ~4 s here; 10 s leaves room for a loaded runner.
    expect(ms).toBeLessThan(10_000);

    const del = await hullKvm(['delete', '--force', 'kvm-life'], { root });
    expect(del.code).toBe(0);
  });
});
