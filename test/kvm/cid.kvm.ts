// Guest CIDs on a host with the kernel's vhost-vsock: a CID held outside hull (here a plain QEMU holding CID 3, or
// the host itself where its own CID is 3, as on many cloud VMs) makes QEMU fail with EADDRINUSE; hull must try the
// next CID and boot (hypervisor/qemu.ts startProcessesRetryingCid), leave the holder alone, and two sandboxes
// created at once must get two CIDs (hypervisor/guest-cid.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAlive } from '../../hypervisor/process.js';
import { qemuPath } from '../../hypervisor/paths.js';
import { expectNoLeaksThenRemove, hull, makeBundle, tempDir } from '../helpers/hull.js';
import { hullKvmDetached, jsonLog, kvmFacts } from './kvm-helpers.js';
import { requireKvmHost } from './preflight.js';

const work = tempDir('hull-kvm-cid-');
const root = path.join(work, 'root');
const HULL_CID_LOCKS = '/run/hull/cids';
let holder: ChildProcess | undefined;
let holderStderr = '';

/** Whether a hull process holds CID `cid` in the shared lock directory (then hull would not even try it). */
function hullHolds(cid: number): boolean {
  const dir = path.join(HULL_CID_LOCKS, `cid-${cid}`);
  if (!existsSync(dir)) return false;
  for (const f of readdirSync(dir)) {
    const [pid, start] = readFileSync(path.join(dir, f), 'utf8').trim().split(' ').map(Number);
    if (pid && isAlive(start === undefined ? { pid } : { pid, startTime: start })) return true;
  }
  return false;
}

beforeAll(() => requireKvmHost());
afterAll(async () => {
  await Promise.all(['kvm-cid', 'kvm-cid-a', 'kvm-cid-b'].map((id) => hull(['delete', '--force', id], { root })));
  if (holder && holder.exitCode === null) {
    holder.kill('SIGKILL');
    await new Promise((r) => holder?.once('exit', r));
  }
  expectNoLeaksThenRemove(root, work, (a, e) => expect(a).toEqual(e));
});

describe('guest CIDs under kernel vhost-vsock', () => {
  it('boots with the next CID when the kernel refuses CID 3 to hull (held by another VM or the host)', async () => {
    expect(hullHolds(3), `another hull sandbox holds CID 3 in ${HULL_CID_LOCKS}: stop it first`).toBe(false);
    // A VM outside hull holding CID 3: paused (-S), no kernel, only the vhost-vsock device.
    holder = spawn(qemuPath(), ['-M', 'microvm', '-accel', 'kvm', '-nodefaults', '-no-user-config', '-display', 'none', '-S', '-device', 'vhost-vsock-device,guest-cid=3'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    holder.stderr?.on('data', (d: Buffer) => (holderStderr += d.toString()));
    await new Promise((r) => setTimeout(r, 1500));
    if (holder.exitCode !== null) {
      // Only acceptable when CID 3 is taken already (the host's own CID): then it is held outside hull all the same.
      expect(holderStderr).toMatch(/unable to set guest cid: Address already in use/);
      console.log('  CID 3 is held on this host already (its own CID?); the holder QEMU was not needed');
    }

    const log = path.join(work, 'cid.log');
    const bundle = makeBundle(path.join(work, 'b'), ['sh', '-c', 'echo up; exec sleep 1000']);
    const created = await hullKvmDetached(['create', '--bundle', bundle, 'kvm-cid'], {
      root,
      stdout: path.join(work, 'cid.out'),
      stderr: path.join(work, 'cid.err'),
      globalArgs: ['--log', log, '--log-format', 'json'],
    });
    expect([created.code, created.stderr]).toEqual([0, '']);
    const facts = kvmFacts(path.join(root, 'kvm-cid'));
    expect(facts.transport).toBe('vhost-vsock');
    expect(facts.guestCid).toBeGreaterThan(3);
    const refused = jsonLog(log).filter((l) => String(l['msg']).startsWith('the host kernel refused the guest CID'));
    expect(refused.map((l) => l['cid'])).toContain(3);
    // It answers over AF_VSOCK on the CID it got.
    expect((await hull(['start', 'kvm-cid'], { root })).code).toBe(0);
    const exec = await hull(['exec', 'kvm-cid', 'echo', 'reached'], { root });
    expect([exec.code, exec.stdout]).toEqual([0, 'reached\n']);
    // The VM that held CID 3 is untouched.
    if (holder.exitCode === null) expect(holder.pid !== undefined && isAlive({ pid: holder.pid })).toBe(true);
    expect((await hull(['delete', '--force', 'kvm-cid'], { root })).code).toBe(0);
    // Its CID is given back.
    expect(hullHolds(facts.guestCid)).toBe(false);
  });

  it('gives two sandboxes created at the same time two CIDs', async () => {
    const bundle = makeBundle(path.join(work, 'two'), ['sh', '-c', 'exec sleep 1000']);
    const results = await Promise.all(
      ['kvm-cid-a', 'kvm-cid-b'].map((id) =>
        hullKvmDetached(['create', '--bundle', bundle, id], { root, stdout: path.join(work, `${id}.out`), stderr: path.join(work, `${id}.err`) }),
      ),
    );
    for (const r of results) expect([r.code, r.stderr]).toEqual([0, '']);
    const [a, b] = ['kvm-cid-a', 'kvm-cid-b'].map((id) => kvmFacts(path.join(root, id)).guestCid);
    expect(a).not.toBe(b);
    for (const id of ['kvm-cid-a', 'kvm-cid-b']) expect((await hull(['delete', '--force', id], { root })).code).toBe(0);
  });
});
