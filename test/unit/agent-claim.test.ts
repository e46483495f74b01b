// The guest side of a pooled VM's claim (agent/claim.ts), with a fake clock, entropy pool and sysfs: the step is
// taken only beyond the tolerance, entropy is passed on whole, unused NICs are unbound from virtio_net, and values that
// are not a time, too much entropy or MACs no NIC has are refused.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { applyClaim, CLOCK_TOLERANCE_MS, MAX_ENTROPY_BYTES, type GuestTime } from '../../agent/claim.js';
import type { ClaimRequest } from '../../protocol/agent-types.js';

const log = pino({ level: 'silent' });
const tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-claim-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function fakeTime(nowMs: number): GuestTime & { set: number[]; added: Buffer[] } {
  const set: number[] = [];
  const added: Buffer[] = [];
  return { set, added, now: () => nowMs, setRealtimeClock: (ms) => void set.push(ms), addEntropy: (b) => void added.push(Buffer.from(b)) };
}

/** A /sys with NICs (name → [MAC, virtio device]) and virtio_net's unbind file. */
function fakeSys(nics: Record<string, [string, string]>): { root: string; unbound: () => string } {
  const root = mkdtempSync(path.join(tmp, 'sys-'));
  const driver = path.join(root, 'bus', 'virtio', 'drivers', 'virtio_net');
  mkdirSync(driver, { recursive: true });
  writeFileSync(path.join(driver, 'unbind'), '');
  for (const [name, [mac, device]] of Object.entries(nics)) {
    mkdirSync(path.join(root, 'devices', device), { recursive: true });
    mkdirSync(path.join(root, 'class', 'net', name), { recursive: true });
    writeFileSync(path.join(root, 'class', 'net', name, 'address'), `${mac}\n`);
    symlinkSync(path.join(root, 'devices', device), path.join(root, 'class', 'net', name, 'device'));
  }
  return { root, unbound: () => readFileSync(path.join(driver, 'unbind'), 'utf8') };
}

describe('applyClaim', () => {
  const host = Date.parse('2026-12-06T09:00:00.000Z');
  const claim = (o: Partial<ClaimRequest> = {}): ClaimRequest => ({ unixTimeMs: host, entropy: Buffer.alloc(0), unusedMacs: [], ...o });

  it('steps a guest clock that is off (the RTC gave it whole seconds) and credits the entropy', () => {
    const time = fakeTime(host - 740);
    const entropy = Buffer.alloc(64, 7);
    expect(applyClaim(claim({ entropy }), { time, log }).response).toEqual({ clockStepMs: -740 });
    expect(time.set).toEqual([host]);
    expect(time.added).toEqual([entropy]);
  });

  it('leaves a clock within the tolerance alone', () => {
    const time = fakeTime(host + CLOCK_TOLERANCE_MS);
    expect(applyClaim(claim(), { time, log }).response.clockStepMs).toBe(CLOCK_TOLERANCE_MS);
    expect([time.set, time.added]).toEqual([[], []]);
  });

  it('unbinds the NICs the sandbox has no interface for, and only those', async () => {
    const sys = fakeSys({ eth0: ['02:aa:00:00:00:01', 'virtio3'], eth1: ['02:aa:00:00:00:02', 'virtio4'] });
    const applied = applyClaim(claim({ unusedMacs: ['02:aa:00:00:00:02'] }), { time: fakeTime(host), log, sysRoot: sys.root });
    expect(await applied.nicsRemoved).toBeUndefined();
    expect(sys.unbound()).toBe('virtio4');
  });

  it('keeps a failed unbind as the error StartContainer gets', async () => {
    const sys = fakeSys({ eth0: ['02:aa:00:00:00:01', 'virtio3'] });
    rmSync(path.join(sys.root, 'bus'), { recursive: true });
    const applied = applyClaim(claim({ unusedMacs: ['02:aa:00:00:00:01'] }), { time: fakeTime(host), log, sysRoot: sys.root });
    expect((await applied.nicsRemoved)?.message).toMatch(/^removing the pooled VM's unused NICs: ENOENT/);
  });

  it.each([
    [{ unixTimeMs: 0 }, /unix_time_ms 0 is not a time/],
    [{ unixTimeMs: Number.NaN }, /is not a time/],
    [{ entropy: Buffer.alloc(MAX_ENTROPY_BYTES + 1) }, /more than 512 bytes of entropy/],
    [{ unusedMacs: ['eth0'] }, /unused_macs is not a list of MACs/],
  ])('refuses %#, changing nothing', (patch, message) => {
    const time = fakeTime(host - 5000);
    expect(() => applyClaim(claim({ entropy: Buffer.alloc(8), ...patch }), { time, log })).toThrow(message);
    expect([time.set, time.added]).toEqual([[], []]);
  });

  it('says which MAC no NIC has', () => {
    const sys = fakeSys({ eth0: ['02:aa:00:00:00:01', 'virtio3'] });
    expect(() => applyClaim(claim({ unusedMacs: ['02:aa:00:00:00:09'] }), { time: fakeTime(host), log, sysRoot: sys.root })).toThrow(
      'Claim: no guest NIC has MAC 02:aa:00:00:00:09',
    );
    expect(sys.unbound()).toBe('');
  });
});
