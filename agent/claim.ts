// A pooled VM handed to its sandbox (Claim): it booted before anyone knew whom it would serve, with its wall clock
// from the RTC (whole seconds), an entropy pool of its own and the pool's NICs. The host's clock and random bytes make
// it the sandbox's, and NICs the sandbox has no pod interface for are removed (their virtio device unbound from
// virtio_net), so its containers see the network a runc container would: only what the pod has. The clock is stepped
// only when it is off by more than CLOCK_TOLERANCE_MS: a step is visible to every process that reads the time, and a
// few ms is what the call itself takes.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { ClaimRequest, ClaimResponse } from '../protocol/agent-types.js';
import { InternalError, SpecError } from './errors.js';

export const CLOCK_TOLERANCE_MS = 5;
export const MAX_ENTROPY_BYTES = 512;
const MAX_UNUSED_NICS = 8;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export interface GuestTime {
  setRealtimeClock(unixMs: number): void;
  addEntropy(bytes: Buffer): void;
  now(): number;
}

export interface ClaimOptions {
  time: GuestTime;
  log: Logger;
  /** /sys, or a test's copy. */
  sysRoot?: string;
}

export interface AppliedClaim {
  response: ClaimResponse;
  /**
   * Settles once the unused NICs are gone (unbinding one costs the guest kernel tens of ms under TCG, so it runs
   * while the host goes on creating the container); StartContainer waits for it. Never rejects: a failure is logged
   * and kept in `failure`, and fails the start.
   */
  nicsRemoved: Promise<Error | undefined>;
}

export function applyClaim(req: ClaimRequest, { time, log, sysRoot = '/sys' }: ClaimOptions): AppliedClaim {
  const hostMs = req.unixTimeMs;
  // 2001-09-09 .. 2286: a value outside is not a clock reading.
  if (!Number.isFinite(hostMs) || hostMs < 1e12 || hostMs > 1e13) throw new SpecError(`Claim: unix_time_ms ${hostMs} is not a time`);
  const entropy = Buffer.from(req.entropy ?? []);
  if (entropy.length > MAX_ENTROPY_BYTES) throw new SpecError(`Claim: more than ${MAX_ENTROPY_BYTES} bytes of entropy`);
  const unused = req.unusedMacs ?? [];
  if (unused.length > MAX_UNUSED_NICS || !unused.every((m) => MAC.test(m))) throw new SpecError('Claim: unused_macs is not a list of MACs');
  if (entropy.length > 0) time.addEntropy(entropy);
  const stepMs = time.now() - hostMs;
  if (Math.abs(stepMs) > CLOCK_TOLERANCE_MS) time.setRealtimeClock(hostMs);
  const devices = unused.length > 0 ? findNics(new Set(unused), sysRoot) : [];
  log.info({ clockStepMs: Math.round(stepMs), entropyBytes: entropy.length, removingNics: devices.map((d) => d.name) }, 'claimed by a sandbox');
  const unbind = path.join(sysRoot, 'bus', 'virtio', 'drivers', 'virtio_net', 'unbind');
  const nicsRemoved = (async () => {
    try {
      for (const { device } of devices) await writeFile(unbind, device);
      return undefined;
    } catch (err) {
      log.error({ err: String(err) }, 'removing unused NICs failed');
      return new InternalError(`removing the pooled VM's unused NICs: ${(err as Error).message}`);
    }
  })();
  return { response: { clockStepMs: stepMs }, nicsRemoved };
}

/** The NICs with these MACs and their virtio devices. A MAC no NIC has is an error. */
function findNics(macs: Set<string>, sysRoot: string): Array<{ name: string; device: string }> {
  const classNet = path.join(sysRoot, 'class', 'net');
  const removed: Array<{ name: string; device: string }> = [];
  for (const name of readdirSync(classNet)) {
    let mac: string;
    try {
      mac = readFileSync(path.join(classNet, name, 'address'), 'utf8').trim().toLowerCase();
    } catch {
      continue; // went away while listing
    }
    if (!macs.has(mac)) continue;
    macs.delete(mac);
    removed.push({ name, device: path.basename(readlinkSync(path.join(classNet, name, 'device'))) });
  }
  if (macs.size > 0) throw new SpecError(`Claim: no guest NIC has MAC ${[...macs].join(', ')}`);
  return removed;
}
