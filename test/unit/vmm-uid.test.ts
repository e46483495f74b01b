// The VMM uid range and its leases (hypervisor/vmm-uid.ts on hypervisor/lease.ts): parsing $HULL_VMM_UID_RANGE, the
// lowest free uid, a lease held while any of its owners lives (QEMU or the vsock backend), and no uid given twice when
// several processes allocate at once.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildSync } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VmmUidAllocationError, VmmUidRangeError } from '../../hypervisor/errors.js';
import { procStartTime } from '../../hypervisor/process.js';
import { allocateVmmUid, parseUidRange, VMM_UID_RANGE_DEFAULT, vmmUidRange } from '../../hypervisor/vmm-uid.js';

const DEAD_PID = 2_000_000_000; // above any pid_max
const RANGE = { first: 200_000, last: 200_009 };
let tmp: string;
let seq = 0;
const fresh = (): string => path.join(tmp, `uids-${seq++}`);

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-uid-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function plant(dir: string, uid: number, owners: string): void {
  mkdirSync(path.join(dir, `uid-${uid}`), { recursive: true });
  writeFileSync(path.join(dir, `uid-${uid}`, 'b'.repeat(24)), owners);
}

describe('the VMM uid range', () => {
  it('defaults to 65536 ids from 1000000000 and takes FIRST-LAST from $HULL_VMM_UID_RANGE', () => {
    expect(VMM_UID_RANGE_DEFAULT).toEqual({ first: 1_000_000_000, last: 1_000_065_535 });
    expect(vmmUidRange({})).toEqual(VMM_UID_RANGE_DEFAULT);
    expect(vmmUidRange({ HULL_VMM_UID_RANGE: '' })).toEqual(VMM_UID_RANGE_DEFAULT);
    expect(vmmUidRange({ HULL_VMM_UID_RANGE: '300000-300099' })).toEqual({ first: 300_000, last: 300_099 });
    expect(parseUidRange(' 70000 - 70000 ')).toEqual({ first: 70_000, last: 70_000 });
  });

  for (const bad of ['1000', '5-4', 'a-b', '1000000000-', '-5', '70000-99999999999', '100-200', '0-70000', '65534-70000']) {
    it(`refuses ${JSON.stringify(bad)} in one line`, () => {
      expect(() => parseUidRange(bad)).toThrow(VmmUidRangeError);
      expect(() => parseUidRange(bad)).toThrow(/^\$HULL_VMM_UID_RANGE is .*(FIRST-LAST|within 65536\.\.4294967294)[^\n]*$/);
    });
  }
});

describe('allocateVmmUid', () => {
  it('gives the lowest free uid (gid the same), skips live leases and gives it back on release', () => {
    const dir = fresh();
    const a = allocateVmmUid(dir, RANGE);
    const b = allocateVmmUid(dir, RANGE);
    expect([a.uid, a.gid, b.uid]).toEqual([200_000, 200_000, 200_001]);
    a.release();
    a.release();
    expect(allocateVmmUid(dir, RANGE).uid).toBe(200_000);
  });

  it('holds a uid while any of its owners lives, and takes it over once all are gone', () => {
    const dir = fresh();
    const me = `${process.pid} ${procStartTime(process.pid)}`;
    plant(dir, 200_000, `${DEAD_PID}\n${me}\n`); // QEMU gone, the vsock backend (here: us) still running
    plant(dir, 200_001, `${DEAD_PID}\n${DEAD_PID + 1}\n`); // both gone
    plant(dir, 200_002, `${process.pid} ${(procStartTime(process.pid) ?? 0) + 1}\n`); // our pid, another start: reused
    expect([allocateVmmUid(dir, RANGE).uid, allocateVmmUid(dir, RANGE).uid, allocateVmmUid(dir, RANGE).uid]).toEqual([200_001, 200_002, 200_003]);
  });

  it('hands the lease to the VM’s processes: the lease file names each of them', () => {
    const dir = fresh();
    const lease = allocateVmmUid(dir, RANGE);
    lease.setOwners([process.pid, process.ppid]);
    const [file] = readdirSync(path.join(dir, 'uid-200000'));
    expect(readFileSync(path.join(dir, 'uid-200000', file as string), 'utf8')).toBe(
      `${process.pid} ${procStartTime(process.pid)}\n${process.ppid} ${procStartTime(process.ppid)}\n`,
    );
    lease.release();
    expect(() => lease.setOwners([process.pid])).toThrow(/VMM uid 200000 was released/);
  });

  it('says so in one line when every uid of the range is held', () => {
    const dir = fresh();
    const range = { first: 200_000, last: 200_001 };
    allocateVmmUid(dir, range);
    allocateVmmUid(dir, range);
    expect(() => allocateVmmUid(dir, range)).toThrow(VmmUidAllocationError);
    expect(() => allocateVmmUid(dir, range)).toThrow(/^no free VMM uid in 200000\.\.200001 under .*: every one is held by a running process$/);
  });

  it('never gives one uid to two of 8 processes allocating 4 each at the same moment', async () => {
    const bundle = path.join(tmp, 'vmm-uid.mjs');
    buildSync({ entryPoints: [path.resolve(import.meta.dirname, '../../hypervisor/vmm-uid.ts')], outfile: bundle, bundle: true, platform: 'node', format: 'esm', logLevel: 'error' });
    const dir = fresh();
    const startAt = Date.now() + 1000;
    const script =
      `import { allocateVmmUid } from ${JSON.stringify(bundle)};\n` +
      `while (Date.now() < ${startAt}) {}\n` +
      `const l = [0, 1, 2, 3].map(() => allocateVmmUid(${JSON.stringify(dir)}, { first: 300000, last: 300099 }));\n` +
      `process.stdout.write(JSON.stringify(l.map((x) => x.uid)) + '\\n');\n` +
      `await new Promise((r) => process.stdin.on('end', r).resume());\n`;
    const children = Array.from({ length: 8 }, () => spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'pipe'] }));
    const outs = await Promise.all(
      children.map(
        (c) =>
          new Promise<string>((resolve, reject) => {
            let out = '';
            let err = '';
            c.stderr?.on('data', (d: Buffer) => (err += d.toString()));
            c.stdout?.on('data', (d: Buffer) => {
              out += d.toString();
              if (out.includes('\n')) resolve(out);
            });
            c.once('exit', (code) => reject(new Error(`worker exited ${code}: ${err}`)));
          }),
      ),
    );
    for (const c of children) c.stdin?.end(); // all hold their leases until every one has printed
    const uids = outs.flatMap((o) => JSON.parse(o) as number[]);
    expect(new Set(uids).size).toBe(32);
    expect(Math.max(...uids)).toBe(300_031);
  }, 30_000);
});
