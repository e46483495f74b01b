// Guest CID reservations (hypervisor/guest-cid.ts) and the driver's retry when the host kernel refuses a CID
// (hypervisor/qemu.ts). Real files and real processes: allocators race in separate node processes; the retry runs
// QemuMicrovm against a fake QEMU (test/unit/fixtures/fake-qemu-vsock.mjs) that fails as QEMU 7.2 does when
// vhost-vsock answers EADDRINUSE, since no host here has vhost_vsock (test/kvm/ runs the real thing).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildSync } from 'esbuild';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CidAllocationError, GuestCidInUseError, VmStartError } from '../../hypervisor/errors.js';
import { allocateGuestCid, cidRefusedByKernel } from '../../hypervisor/guest-cid.js';
import { sandboxPaths } from '../../hypervisor/paths.js';
import { isAlive, procStartTime } from '../../hypervisor/process.js';
import { MAX_GUEST_CID_TRIES, QemuMicrovm } from '../../hypervisor/qemu.js';
import { fakeVmConfig } from '../helpers/vm-config.js';

const HERE = import.meta.dirname;
const GUEST_CID = path.resolve(HERE, '../../hypervisor/guest-cid.ts');
const FAKE_QEMU = path.join(HERE, 'fixtures/fake-qemu-vsock.mjs');
const FAKE_VIRTIOFSD = path.join(HERE, 'fixtures/fake-virtiofsd.mjs');
/** The fake QEMU is not confined: a stand-in launcher execs it (the real one is tested in vmm-launcher.test.ts). */
const FAKE_VMM_LAUNCHER = path.join(HERE, 'fixtures/fake-vmm-launcher.sh');
/** Above any pid_max: kill(2) says ESRCH, so an owner with this pid is dead. */
const DEAD_PID = 2_000_000_000;

let tmp: string;
let seq = 0;
const savedSocketDir = process.env['HULL_SOCKET_DIR'];

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-cid-'));
  process.env['HULL_SOCKET_DIR'] = path.join(tmp, 's');
});
afterAll(() => {
  if (savedSocketDir === undefined) delete process.env['HULL_SOCKET_DIR'];
  else process.env['HULL_SOCKET_DIR'] = savedSocketDir;
  rmSync(tmp, { recursive: true, force: true });
});

const freshDir = (name: string): string => path.join(tmp, `${name}-${seq++}`);

/** The reservations under `lockDir`: CID → the owner file's `pid [start]` text. */
function reservations(lockDir: string): Map<number, string> {
  const held = new Map<number, string>();
  for (const name of readdirSync(lockDir)) {
    const m = /^cid-(\d+)$/.exec(name);
    if (!m) continue;
    const files = readdirSync(path.join(lockDir, name));
    if (files.length === 0) continue;
    expect(files).toHaveLength(1); // a reservation is one lease file, never two
    held.set(Number(m[1]), readFileSync(path.join(lockDir, name, files[0] as string), 'utf8').trim());
  }
  return held;
}

/** A lease file as another hull process would have left it, owned by `pid`. */
function plantLease(lockDir: string, cid: number, owner: string): void {
  mkdirSync(path.join(lockDir, `cid-${cid}`), { recursive: true });
  writeFileSync(path.join(lockDir, `cid-${cid}`, 'a'.repeat(24)), `${owner}\n`);
}

describe('allocateGuestCid in one process', () => {
  it('reserves the lowest free CID, gives it back on release, and skips live holders', () => {
    const dir = freshDir('basic');
    const a = allocateGuestCid(dir);
    const b = allocateGuestCid(dir);
    expect([a.cid, b.cid]).toEqual([3, 4]);
    expect(reservations(dir).get(3)).toBe(`${process.pid} ${procStartTime(process.pid)}`);
    a.release();
    a.release(); // idempotent
    expect(existsSync(path.join(dir, 'cid-3'))).toBe(false);
    expect(allocateGuestCid(dir).cid).toBe(3);
    expect(allocateGuestCid(dir, 10).cid).toBe(10);
  });

  it('takes over a reservation whose owner is dead, or whose pid now names another process', () => {
    const dir = freshDir('stale');
    plantLease(dir, 3, `${DEAD_PID}`);
    // Our own pid with another start time: the pid was reused, the owner is gone.
    plantLease(dir, 4, `${process.pid} ${(procStartTime(process.pid) ?? 0) + 1}`);
    plantLease(dir, 5, 'not a pid');
    plantLease(dir, 6, `${process.pid}`); // live
    expect([allocateGuestCid(dir).cid, allocateGuestCid(dir).cid, allocateGuestCid(dir).cid, allocateGuestCid(dir).cid]).toEqual([3, 4, 5, 7]);
    expect(reservations(dir).get(6)).toBe(`${process.pid}`);
  });

  it("honours an older hull's plain lock file while its pid lives, and takes it over once it is dead", () => {
    const dir = freshDir('legacy');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'cid-3'), `${process.pid}\n`);
    writeFileSync(path.join(dir, 'cid-4'), `${DEAD_PID}\n`);
    expect(allocateGuestCid(dir).cid).toBe(4);
    expect(readFileSync(path.join(dir, 'cid-3'), 'utf8')).toBe(`${process.pid}\n`);
  });

  it('hands a lease to another process, which holds it until it exits', async () => {
    const dir = freshDir('owner');
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    const pid = child.pid as number;
    const lease = allocateGuestCid(dir);
    lease.setOwner(pid);
    expect(reservations(dir).get(lease.cid)).toBe(`${pid} ${procStartTime(pid)}`);
    expect(allocateGuestCid(dir).cid).toBe(lease.cid + 1);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const next = allocateGuestCid(dir);
    expect(next.cid).toBe(lease.cid); // taken over: its owner is gone
    lease.release(); // the old holder's release leaves the new lease alone
    expect(reservations(dir).get(next.cid)).toBe(`${process.pid} ${procStartTime(process.pid)}`);
  });

  it('fails with CidAllocationError when every CID of the range is held, and refuses a range outside 3..2^32-2', () => {
    const dir = freshDir('full');
    allocateGuestCid(dir, 3, 4);
    allocateGuestCid(dir, 3, 4);
    expect(() => allocateGuestCid(dir, 3, 4)).toThrow(CidAllocationError);
    expect(() => allocateGuestCid(dir, 3, 4)).toThrow(/no free guest CID in 3\.\.4/);
    expect(() => allocateGuestCid(dir, 2, 4)).toThrow(RangeError);
    expect(() => allocateGuestCid(dir, 5, 4)).toThrow(RangeError);
    expect(readdirSync(dir).filter((n) => n.startsWith('.tmp-'))).toEqual([]); // no temp directory left behind
  });

  it('sweeps the temp directory of an allocator that died before it could reserve', () => {
    const dir = freshDir('sweep');
    mkdirSync(path.join(dir, `.tmp-${DEAD_PID}-${'b'.repeat(24)}`), { recursive: true });
    allocateGuestCid(dir);
    expect(readdirSync(dir)).toEqual(['cid-3']);
  });

  it("recognises QEMU's words for a CID the kernel refused, and only those", () => {
    expect(
      cidRefusedByKernel(
        'qemu-system-x86_64: -device vhost-vsock-device,guest-cid=3: vhost-vsock: unable to set guest cid: Address already in use',
      ),
    ).toBe(true);
    expect(cidRefusedByKernel('qemu-system-x86_64: -device vhost-vsock-device,guest-cid=3: vhost-vsock: failed to open vhost device: No such file or directory')).toBe(false);
    expect(cidRefusedByKernel('vhost-vsock: unable to set guest cid: Invalid argument')).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('allocateGuestCid across processes', () => {
  let bundle: string;

  beforeAll(() => {
    // guest-cid.ts as plain JavaScript, so child processes of plain node can run it.
    bundle = path.join(tmp, 'guest-cid.mjs');
    buildSync({ entryPoints: [GUEST_CID], outfile: bundle, bundle: true, platform: 'node', format: 'esm', logLevel: 'error' });
  });

  /** Runs `body` (the source of an async function of (alloc, args)) in `n` node processes; resolves with their stdout. */
  function workers(n: number, body: string, args: unknown): Promise<Array<{ code: number | null; out: string; err: string; pid: number }>> {
    const script = path.join(tmp, `worker-${seq++}.mjs`);
    writeFileSync(
      script,
      `import { allocateGuestCid } from ${JSON.stringify(bundle)};\n` +
        `const args = JSON.parse(process.argv[2]);\n` +
        // Every worker waits for the same moment, so the allocations really overlap.
        `while (Date.now() < args.startAt) {}\n` +
        `await (${body})(allocateGuestCid, args);\n`,
    );
    const startAt = Date.now() + 1500;
    // A worker that holds its leases prints a line, then waits for its stdin to close: all of them are closed once
    // every worker has printed (or exited), so the leases of all are held at one time.
    let printed = 0;
    const children = Array.from({ length: n }, (_, i) =>
      spawn(process.execPath, [script, JSON.stringify({ ...(args as object), startAt, index: i })], { stdio: ['pipe', 'pipe', 'pipe'] }),
    );
    const onePrinted = (): void => {
      if (++printed === n) for (const c of children) c.stdin?.end();
    };
    return Promise.all(
      children.map((child) => {
        let out = '';
        let err = '';
        let counted = false;
        const count = (): void => {
          if (!counted) {
            counted = true;
            onePrinted();
          }
        };
        child.stdout?.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('\n')) count();
        });
        child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
        child.stdin?.on('error', () => undefined);
        return new Promise<{ code: number | null; out: string; err: string; pid: number }>((resolve) =>
          child.once('close', (code) => {
            count();
            resolve({ code, out, err, pid: child.pid as number });
          }),
        );
      }),
    );
  }

  it('gives every one of 12 processes × 8 concurrent allocations its own CID, also where stale leases are taken over', async () => {
    const dir = freshDir('many');
    for (let cid = 3; cid < 40; cid += 2) plantLease(dir, cid, `${DEAD_PID}`); // stale: everyone races to take these
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'cid-4'), `${DEAD_PID}\n`); // an older hull's stale file
    const lockDir = dir;
    const results = await workers(
      12,
      `async (alloc, a) => {
        const leases = [];
        for (let i = 0; i < 8; i++) leases.push(alloc(a.dir));
        // Still holding all of them: what the lock directory says must be ours.
        process.stdout.write(JSON.stringify(leases.map((l) => l.cid)) + '\\n');
        await new Promise((r) => process.stdin.on('end', r).resume());
        for (const l of leases) l.release();
      }`,
      { dir: lockDir },
    );
    for (const r of results) expect(r, r.err).toMatchObject({ code: 0 });
    const cids = results.flatMap((r) => JSON.parse(r.out.split('\n')[0] as string) as number[]);
    expect(cids).toHaveLength(96);
    expect(new Set(cids).size).toBe(96);
    expect(Math.max(...cids)).toBe(98); // 3..98: no CID skipped, none given twice
    // Every lease was released: no reservation, no temp directory, is left.
    expect(reservations(lockDir).size).toBe(0);
    expect(readdirSync(lockDir).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
  }, 60_000);

  it('never lets two processes hold one CID while 8 of them allocate, release and abandon leases on 4 CIDs', async () => {
    const dir = freshDir('churn');
    const held = path.join(tmp, `held-${seq++}`);
    mkdirSync(held);
    const results = await workers(
      8,
      `async (alloc, a) => {
        const fs = await import('node:fs');
        let got = 0, full = 0;
        for (let i = 0; i < 150; i++) {
          let lease;
          try {
            // Every fifth lease names a dead owner and is abandoned: the others take it over as they race.
            lease = alloc(a.dir, 3, 6, i % 5 === 4 ? ${DEAD_PID} : process.pid);
          } catch (err) {
            if (!/no free guest CID/.test(err.message)) throw err;
            full++;
            continue;
          }
          if (i % 5 === 4) continue;
          got++;
          // A marker only one holder of a CID can create: a second concurrent holder fails here.
          try {
            fs.writeFileSync(a.held + '/' + lease.cid, String(process.pid), { flag: 'wx' });
          } catch (err) {
            process.stdout.write('VIOLATION cid ' + lease.cid + ' held by ' + fs.readFileSync(a.held + '/' + lease.cid, 'utf8') + '\\n');
            process.exit(2);
          }
          for (let t = Date.now() + 1; Date.now() < t; ) {}
          fs.unlinkSync(a.held + '/' + lease.cid);
          lease.release();
        }
        process.stdout.write(JSON.stringify({ got, full }) + '\\n');
      }`,
      { dir, held },
    );
    for (const r of results) {
      expect(r.out).not.toMatch(/VIOLATION/);
      expect(r, r.err).toMatchObject({ code: 0 });
    }
    const got = results.map((r) => (JSON.parse(r.out.split('\n')[0] as string) as { got: number }).got);
    expect(got.reduce((a, b) => a + b, 0)).toBeGreaterThan(100); // the race really ran
    // Left: at most the abandoned (stale) leases, each still one file per CID.
    for (const owner of reservations(dir).values()) expect(owner).toBe(`${DEAD_PID}`);
  }, 120_000);
});

// ---------------------------------------------------------------------------------------------------------------
describe('QemuMicrovm with kernel vhost-vsock: a CID the kernel refuses', () => {
  interface Run {
    vm: QemuMicrovm;
    lockDir: string;
    dir: string;
    qemuStarts: () => Array<{ cid: number; pid: number }>;
    virtiofsdPids: () => number[];
  }

  function vmWithRefused(refused: number[]): Run {
    const name = `vm-${seq++}`;
    const dir = path.join(tmp, name);
    const lockDir = path.join(tmp, `${name}-cids`);
    const qemuLog = path.join(tmp, `${name}-qemu-starts`);
    const virtiofsdLog = path.join(tmp, `${name}-virtiofsd-starts`);
    mkdirSync(path.join(dir, 'shared'), { recursive: true });
    process.env['FAKE_QEMU_REFUSED_CIDS'] = refused.join(',');
    process.env['FAKE_QEMU_STARTS'] = qemuLog;
    process.env['FAKE_VIRTIOFSD_STARTS'] = virtiofsdLog;
    const lines = (f: string): string[] => (existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n').filter(Boolean) : []);
    const vm = new QemuMicrovm(
      fakeVmConfig(name, dir),
      {
        logger: pino({ level: 'silent' }),
        vsock: 'vhost-vsock',
        qemuPath: FAKE_QEMU,
        vmmLauncherPath: FAKE_VMM_LAUNCHER,
        virtiofsdPath: FAKE_VIRTIOFSD,
        cidLockDir: lockDir,
        startTimeoutMs: 10_000,
        helperStopMs: 1000,
      },
    );
    return {
      vm,
      lockDir,
      dir,
      qemuStarts: () =>
        lines(qemuLog).map((l) => {
          const [cid, pid] = l.split(' ').map(Number);
          return { cid: cid as number, pid: pid as number };
        }),
      virtiofsdPids: () => lines(virtiofsdLog).map(Number),
    };
  }

  it('tries the next CID, and the VM runs with the first one the kernel accepts; no earlier try leaves anything', async () => {
    const run = vmWithRefused([3, 4]);
    plantLease(run.lockDir, 5, `${process.pid}`); // held by another hull sandbox: not even tried
    await run.vm.start();
    try {
      expect(run.qemuStarts().map((s) => s.cid)).toEqual([3, 4, 6]);
      const [q3, q4, q6] = run.qemuStarts();
      expect(run.vm.processes().vmm?.pid).toBe(q6?.pid);
      expect([q3, q4].map((q) => isAlive({ pid: q?.pid as number }))).toEqual([false, false]);
      // One virtiofsd per try; only the last one runs.
      const vfs = run.virtiofsdPids();
      expect(vfs).toHaveLength(3);
      expect(vfs.map((pid) => isAlive({ pid }))).toEqual([false, false, true]);
      // The refused CIDs are not reserved; 6 is, by QEMU.
      const held = reservations(run.lockDir);
      expect([...held.keys()].sort()).toEqual([5, 6]);
      expect(held.get(6)).toMatch(new RegExp(`^${q6?.pid} `));
      const record = JSON.parse(readFileSync(sandboxPaths(run.dir).vmmRecord, 'utf8')) as { guestCid: number };
      expect(record.guestCid).toBe(6);
    } finally {
      await run.vm.kill();
    }
    expect(reservations(run.lockDir).has(6)).toBe(false);
    expect(run.virtiofsdPids().map((pid) => isAlive({ pid }))).toEqual([false, false, false]);
  }, 60_000);

  it(`gives up after ${MAX_GUEST_CID_TRIES} refused CIDs with one error naming them, leaving nothing behind`, async () => {
    const refused = Array.from({ length: MAX_GUEST_CID_TRIES + 2 }, (_, i) => 3 + i);
    const run = vmWithRefused(refused);
    const err = await run.vm.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GuestCidInUseError);
    expect((err as GuestCidInUseError).cids).toEqual(refused.slice(0, MAX_GUEST_CID_TRIES));
    expect((err as Error).message.split('\n')[0]).toMatch(/refused guest CIDs 3, 4, .*, 18 for vhost-vsock \(EADDRINUSE/);
    expect((err as Error).message).toMatch(/unable to set guest cid: Address already in use/);
    await run.vm.wait();
    expect(run.qemuStarts()).toHaveLength(MAX_GUEST_CID_TRIES);
    expect(reservations(run.lockDir).size).toBe(0);
    expect(run.virtiofsdPids().filter((pid) => isAlive({ pid }))).toEqual([]);
    expect(existsSync(sandboxPaths(run.dir).socketDir)).toBe(false);
    expect(existsSync(sandboxPaths(run.dir).vmmRecord)).toBe(false);
  }, 120_000);

  it('does not retry any other failure of the vhost-vsock device', async () => {
    const run = vmWithRefused([]);
    process.env['FAKE_QEMU_FAIL'] = 'vhost-vsock: unable to set guest cid: Invalid argument';
    try {
      const err = await run.vm.start().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(VmStartError);
      expect((err as Error).message).toMatch(/QEMU exited during start \(code 1\)[^]*Invalid argument/);
    } finally {
      delete process.env['FAKE_QEMU_FAIL'];
    }
    await run.vm.wait();
    expect(run.qemuStarts()).toHaveLength(1);
    expect(reservations(run.lockDir).size).toBe(0);
  }, 60_000);
});
