// The pool's records (layout.ts says where each lives): a pooled VM's pool-vm.json, the claim on it, and the serving
// process's serve.lock. Read back with their fields checked, since pids from them get signalled: a record hull cannot
// trust is an error, never a guess.
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from '../../hypervisor/atomic-write.js';
import { procStartTime } from '../../hypervisor/process.js';
import type { Acceleration, VmProcesses } from '../../hypervisor/types.js';
import { parseVmProcesses } from '../../hypervisor/vm-processes.js';
import { HullError } from '../errors.js';
import { poolVmPath } from './layout.js';

/** What a pooled VM is: a sandbox may take it when the VM is at least as big as it needs, of the same image. */
export interface PoolShape {
  vcpus: number;
  memoryMiB: number;
  /** The most its memory can grow to (VmSize.maxMemoryMiB); absent: it cannot grow. */
  maxMemoryMiB?: number;
  /** The guest image's manifest hash (shim/sandbox/guest-assets.ts `hash`). */
  image: string;
  /** The acceleration the VM got (hypervisor.accel.accel); while booting, the one it is expected to get. */
  accel: Acceleration;
  /** How many NICs the VM has (PoolVmRecord.nics): a sandbox with more pod interfaces than that boots cold. */
  nics: number;
}

/** A pooled VM's NIC: its tap, in the VMM's own network namespace until a claimer moves it into the pod's. */
export interface PooledNic {
  tap: string;
  /** The MAC the guest NIC has until the claimer's SetupNetwork gives it the pod interface's. */
  mac: string;
}

/** A process named by pid and start time (hypervisor/process.ts): the start time guards against pid reuse. */
export interface ProcessRef {
  pid: number;
  startTime?: number;
}

/** `<vmdir>/pool-vm.json`. */
export interface PoolVmRecord {
  version: 1;
  id: string;
  /** 'booting' until its agent answered Health; only a 'ready' VM without a claim file may be claimed. */
  state: 'booting' | 'ready';
  shape: PoolShape;
  nics: PooledNic[];
  /** The VM's host processes, written as each one starts: a crash at any point leaves none unrecorded. */
  vm: VmProcesses;
  /**
   * The pool process that booted the VM. A claimer takes only VMs of the pool serving now: what a dead pool left is
   * cleaned by the next one, never handed out (serve.ts says why).
   */
  pool: ProcessRef;
  /** ISO 8601. */
  createdAt: string;
  readyAt?: string;
}

/** `<vmdir>/claim`: who took the VM. */
export interface Claim extends ProcessRef {
  /** ISO 8601. */
  at: string;
  /**
   * The claimer gave the VM up without using it (it was dead, or reaching it failed before the claimer recorded it):
   * the pool powers it off and removes it as if the claimer had died.
   */
  released?: true;
}

/** `<poolDir>/serve.lock`: the serving process and what it serves. */
export interface ServeLock extends ProcessRef {
  /** How many ready VMs the pool keeps. */
  size: number;
  vcpus: number;
  memoryMiB: number;
  nics: number;
  /** ISO 8601. */
  startedAt: string;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;
const isPositive = (v: unknown): v is number => isCount(v) && v > 0;
const isTime = (v: unknown): v is string => typeof v === 'string' && !Number.isNaN(Date.parse(v));

function bad(file: string, what: string): HullError {
  return new HullError('internal', `${file}: ${what}`);
}

function parseProcessRef(v: unknown, file: string, field: string): ProcessRef {
  if (!isObject(v) || !isPositive(v['pid'])) throw bad(file, `${field} has no valid pid`);
  const startTime = v['startTime'];
  if (startTime === undefined) return { pid: v['pid'] };
  if (!isCount(startTime)) throw bad(file, `${field} has an invalid start time`);
  return { pid: v['pid'], startTime };
}

/** Parses JSON text; a file cut short or not JSON is a HullError naming the file. */
function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw bad(file, `not JSON (${(err as Error).message})`);
  }
}

/** Reads a file's text; undefined when it does not exist. */
export function readIfExists(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

const TAP_NAME = /^[A-Za-z0-9_-]{1,15}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** The NICs of a pool record: tap names go to `ip` as words, so they are checked as strictly as hull makes them. */
function parseNics(v: unknown, file: string): PooledNic[] {
  if (!Array.isArray(v) || v.length > 8) throw bad(file, 'no valid NIC list');
  return v.map((n: unknown, i) => {
    if (!isObject(n) || typeof n['tap'] !== 'string' || !TAP_NAME.test(n['tap']) || typeof n['mac'] !== 'string' || !MAC.test(n['mac'])) {
      throw bad(file, `NIC ${i} is not valid`);
    }
    return { tap: n['tap'], mac: n['mac'] };
  });
}

export function parsePoolVm(text: string, file: string): PoolVmRecord {
  const v = parseJson(text, file);
  if (!isObject(v) || v['version'] !== 1) throw bad(file, 'not a version 1 pool VM record');
  const { id, state, shape, createdAt, readyAt } = v;
  if (typeof id !== 'string' || id === '') throw bad(file, 'no id');
  if (state !== 'booting' && state !== 'ready') throw bad(file, `unknown state ${JSON.stringify(state)}`);
  if (!isObject(shape) || !isPositive(shape['vcpus']) || !isPositive(shape['memoryMiB'])) throw bad(file, 'no valid shape');
  if (typeof shape['image'] !== 'string' || (shape['accel'] !== 'kvm' && shape['accel'] !== 'tcg')) throw bad(file, 'no valid shape');
  const most = shape['maxMemoryMiB'];
  if (most !== undefined && !(isPositive(most) && most > shape['memoryMiB'])) throw bad(file, 'no valid shape');
  const nics = parseNics(v['nics'], file);
  if (shape['nics'] !== nics.length) throw bad(file, 'its shape and its NICs disagree');
  if (!isTime(createdAt)) throw bad(file, 'no valid createdAt');
  if (readyAt !== undefined && !isTime(readyAt)) throw bad(file, 'invalid readyAt');
  const record: PoolVmRecord = {
    version: 1,
    id,
    state,
    shape: {
      vcpus: shape['vcpus'],
      memoryMiB: shape['memoryMiB'],
      ...(most === undefined ? {} : { maxMemoryMiB: most }),
      image: shape['image'],
      accel: shape['accel'],
      nics: nics.length,
    },
    nics,
    vm: parseVmProcesses(v['vm'], file),
    pool: parseProcessRef(v['pool'], file, 'pool'),
    createdAt,
  };
  if (readyAt !== undefined) record.readyAt = readyAt;
  return record;
}

/** The pool record of the VM in `dir`; throws when it is missing or cannot be trusted. */
export function readPoolVm(dir: string): PoolVmRecord {
  const file = poolVmPath(dir);
  const text = readIfExists(file);
  if (text === undefined) throw new HullError('not-found', `${file} does not exist`);
  return parsePoolVm(text, file);
}

export function writePoolVm(dir: string, record: PoolVmRecord): void {
  writeFileAtomic(poolVmPath(dir), `${JSON.stringify(record)}\n`, 0o600);
}

export function parseClaim(text: string, file: string): Claim {
  const v = parseJson(text, file);
  if (!isObject(v)) throw bad(file, 'not a claim');
  const claim: Claim = { ...parseProcessRef(v, file, 'the claim'), at: '' };
  if (!isTime(v['at'])) throw bad(file, 'no valid time');
  claim.at = v['at'];
  if (v['released'] === true) claim.released = true;
  return claim;
}

export function parseServeLock(text: string, file: string): ServeLock {
  const v = parseJson(text, file);
  if (!isObject(v)) throw bad(file, 'not a serve lock');
  const ref = parseProcessRef(v, file, 'the lock');
  const { size, vcpus, memoryMiB, nics, startedAt } = v;
  if (!isCount(size) || !isPositive(vcpus) || !isPositive(memoryMiB) || !isCount(nics) || !isTime(startedAt)) throw bad(file, 'no valid pool settings');
  return { ...ref, size, vcpus, memoryMiB, nics, startedAt };
}

let self: ProcessRef | undefined;

/** This process, as records name it. */
export function selfRef(): ProcessRef {
  if (!self) {
    const startTime = procStartTime(process.pid);
    self = startTime === undefined ? { pid: process.pid } : { pid: process.pid, startTime };
  }
  return self;
}

export const sameProcess = (a: ProcessRef, b: ProcessRef): boolean => a.pid === b.pid && a.startTime === b.startTime;
