// linux.devices (runtime-spec config-linux.md "Devices"): the nodes the helper makes in the container's root
// (native/container-init/devices.c), checked here; and linux.resources.devices (the device cgroup), reduced the way
// runc reduces it to the rules of its cgroup v2 eBPF filter, which the helper attaches to the container's cgroup
// (native/container-init/devfilter.c).
import path from 'node:path';
import { SpecError } from './errors.js';
import { arrMax, asObject, id, str } from './spec-fields.js';

export type DeviceType = 'c' | 'b' | 'p' | 'u';

export interface PlanDevice {
  /** Absolute path in the container, normalized, without "..". */
  path: string;
  /** c: character, u: unbuffered character (also S_IFCHR), b: block, p: FIFO. */
  type: DeviceType;
  major: number;
  minor: number;
  /** Permission bits (0..07777); the spec's file type bits are dropped, as runc does. */
  mode: number;
  uid: number;
  gid: number;
}

const MAX_DEVICES = 1024;
const MAX_PATH_BYTES = 4095;
/** Linux dev_t: 12-bit major, 20-bit minor (MINORBITS). */
const MAX_MAJOR = 0xfff;
const MAX_MINOR = 0xfffff;
/** runc's default when fileMode is absent. */
const DEFAULT_MODE = 0o666;
const S_IFMT = 0o170000;

/** linux.devices: one node each; a path listed twice is refused (runc would make the second over the first). */
export function devicesFrom(value: unknown): PlanDevice[] {
  if (value === undefined || value === null) return [];
  const seen = new Set<string>();
  return arrMax(value, 'linux.devices', MAX_DEVICES).map((d, i) => {
    const at = `linux.devices[${i}]`;
    const o = asObject(d, at);
    const raw = str(o.path, `${at}.path`);
    if (!path.posix.isAbsolute(raw) || raw.split('/').includes('..') || Buffer.byteLength(raw) > MAX_PATH_BYTES) {
      throw new SpecError(`${at}.path "${raw.slice(0, 200)}" must be an absolute path without ".." (at most ${MAX_PATH_BYTES} bytes)`);
    }
    const devPath = path.posix.normalize(raw);
    if (devPath === '/') throw new SpecError(`${at}.path must name a file, not /`);
    if (seen.has(devPath)) throw new SpecError(`${at}: ${devPath} is listed twice`);
    seen.add(devPath);
    const type = str(o.type, `${at}.type`);
    if (type !== 'c' && type !== 'b' && type !== 'p' && type !== 'u') throw new SpecError(`${at}.type "${type.slice(0, 16)}" must be c, b, u or p`);
    const number = (v: unknown, name: string, max: number): number => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw new SpecError(`${at}.${name} must be an integer 0..${max}`);
      return v;
    };
    // A FIFO has no device number (runc ignores major and minor there).
    const major = type === 'p' ? 0 : number(o.major, 'major', MAX_MAJOR);
    const minor = type === 'p' ? 0 : number(o.minor, 'minor', MAX_MINOR);
    const fileMode = o.fileMode === undefined || o.fileMode === null ? DEFAULT_MODE : number(o.fileMode, 'fileMode', 0xffffffff);
    const mode = (fileMode & ~S_IFMT) & 0o7777;
    const uid = o.uid === undefined || o.uid === null ? 0 : id(o.uid, `${at}.uid`);
    const gid = o.gid === undefined || o.gid === null ? 0 : id(o.gid, `${at}.gid`);
    return { path: devPath, type, major, minor, mode, uid, gid };
  });
}

/** One exception of the device cgroup: type, numbers (-1: any) and a non-empty subset of "rwm" in that order. */
export interface PlanDeviceRule {
  type: 'c' | 'b';
  major: number;
  minor: number;
  access: string;
}

/**
 * linux.resources.devices in runc's clean form: the default for devices no exception names, and exceptions that all
 * take the other action (so their order does not matter). The helper turns it into an eBPF program on the
 * container's cgroup (native/container-init/devfilter.c).
 */
export interface PlanDeviceCgroup {
  defaultAllow: boolean;
  rules: PlanDeviceRule[];
}

/** Bounds the helper keeps too (PLAN_MAX_DEVCG_RULES): the spec's rules, and the clean rules they come to. */
const MAX_RULES = 1024;
const MAX_CLEAN_RULES = 2048;
/** bpf_cgroup_dev_ctx holds u32 numbers. */
const MAX_RULE_NUMBER = 0xffffffff;

/**
 * runc's AllowedDevices (libcontainer/specconv): appended after the spec's rules for every container, so an engine
 * that sends none (or a deny-all first, as containerd's CRI does) still gets the default nodes, ptys and mknod. A
 * default whose path the spec's linux.devices lists again is left out, as runc does.
 */
const RUNC_ALLOWED: ReadonlyArray<{ path?: string; rule: SpecRule }> = [
  { rule: { allow: true, type: 'c', major: -1, minor: -1, access: 'm' } },
  { rule: { allow: true, type: 'b', major: -1, minor: -1, access: 'm' } },
  { path: '/dev/null', rule: { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' } },
  { path: '/dev/random', rule: { allow: true, type: 'c', major: 1, minor: 8, access: 'rwm' } },
  { path: '/dev/full', rule: { allow: true, type: 'c', major: 1, minor: 7, access: 'rwm' } },
  { path: '/dev/tty', rule: { allow: true, type: 'c', major: 5, minor: 0, access: 'rwm' } },
  { path: '/dev/zero', rule: { allow: true, type: 'c', major: 1, minor: 5, access: 'rwm' } },
  { path: '/dev/urandom', rule: { allow: true, type: 'c', major: 1, minor: 9, access: 'rwm' } },
  { rule: { allow: true, type: 'c', major: 136, minor: -1, access: 'rwm' } }, // /dev/pts/*
  { rule: { allow: true, type: 'c', major: 5, minor: 2, access: 'rwm' } }, // /dev/ptmx
  { rule: { allow: true, type: 'c', major: 10, minor: 200, access: 'rwm' } }, // /dev/net/tun, kept by runc for old users
];

interface SpecRule {
  allow: boolean;
  type: 'a' | 'c' | 'b';
  major: number;
  minor: number;
  /** Letters of "rwm", each once, in that order. */
  access: string;
}

const ACCESS_ORDER = 'rwm';
const accessSet = (a: string): Set<string> => new Set(a);
const accessString = (s: Set<string>): string => [...ACCESS_ORDER].filter((c) => s.has(c)).join('');

function specRule(value: unknown, i: number): SpecRule {
  const at = `linux.resources.devices[${i}]`;
  const o = asObject(value, at);
  if (typeof o.allow !== 'boolean') throw new SpecError(`${at}.allow must be true or false`);
  const type = o.type === undefined || o.type === null || o.type === '' ? 'a' : str(o.type, `${at}.type`);
  if (type !== 'a' && type !== 'c' && type !== 'b') throw new SpecError(`${at}.type "${type.slice(0, 16)}" must be a, c or b`);
  const number = (v: unknown, name: string): number => {
    if (v === undefined || v === null) return -1;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < -1 || v > MAX_RULE_NUMBER) {
      throw new SpecError(`${at}.${name} must be an integer 0..${MAX_RULE_NUMBER} (or -1 or absent: any)`);
    }
    return v;
  };
  const major = number(o.major, 'major');
  const minor = number(o.minor, 'minor');
  // runc refuses an empty access ("device access at N field cannot be empty") and letters other than r, w, m.
  const access = o.access === undefined || o.access === null ? '' : str(o.access, `${at}.access`);
  if (access === '' || ![...access].every((c) => ACCESS_ORDER.includes(c))) {
    throw new SpecError(`${at}.access "${access.slice(0, 16)}" must be letters of "rwm"`);
  }
  return { allow: o.allow, type, major, minor, access: accessString(accessSet(access)) };
}

/**
 * runc's device cgroup emulator (opencontainers/cgroups devices_emulator.go), which its cgroup v2 filter is built
 * from so that v1 and v2 behave the same: the state starts as deny-all; a rule of type "a" resets it to allow-all or
 * deny-all whatever its numbers and access; any other rule adds an exception when its action differs from the default
 * and takes access away from the exception with exactly its type and numbers otherwise. Taking access from a device
 * that a wildcard exception covers ("punching a hole") is refused, as runc does.
 */
class DeviceCgroupEmulator {
  defaultAllow = false;
  /** "type major minor" → access letters. */
  readonly exceptions = new Map<string, Set<string>>();

  apply(r: SpecRule, at: string): void {
    if (r.type === 'a') {
      this.defaultAllow = r.allow;
      this.exceptions.clear();
      return;
    }
    const key = (major: number, minor: number): string => `${r.type} ${major} ${minor}`;
    const own = key(r.major, r.minor);
    if (r.allow !== this.defaultAllow) {
      const perms = this.exceptions.get(own) ?? new Set<string>();
      for (const c of r.access) perms.add(c);
      this.exceptions.set(own, perms);
      return;
    }
    for (const wider of [key(-1, r.minor), key(r.major, -1), key(-1, -1)]) {
      if (wider === own) continue;
      const perms = this.exceptions.get(wider);
      if (perms && [...r.access].some((c) => perms.has(c))) {
        const [t, ma, mi] = wider.split(' ');
        const show = (n: string): string => (n === '-1' ? '*' : n);
        throw new SpecError(
          `${at} (${r.type} ${show(String(r.major))}:${show(String(r.minor))} ${r.access}) cannot change the access of part of what the earlier ` +
            `rule ${t} ${show(ma!)}:${show(mi!)} ${accessString(perms)} covers (runc's device cgroup refuses it too)`,
        );
      }
    }
    const perms = this.exceptions.get(own);
    if (!perms) return;
    for (const c of r.access) perms.delete(c);
    if (perms.size === 0) this.exceptions.delete(own);
  }

  result(): PlanDeviceCgroup {
    const rules = [...this.exceptions].map(([k, perms]) => {
      const [type, major, minor] = k.split(' ');
      return { type: type as 'c' | 'b', major: Number(major), minor: Number(minor), access: accessString(perms) };
    });
    // runc's order (major, minor, type): any order gives the same answer, this one keeps the plan stable. Not
    // localeCompare: its first call builds an ICU collator, ~200 ms of every container create under TCG.
    rules.sort((a, b) => a.major - b.major || a.minor - b.minor || (a.type < b.type ? -1 : a.type > b.type ? 1 : 0));
    return { defaultAllow: this.defaultAllow, rules };
  }
}

/**
 * linux.resources.devices with runc's defaults appended (see RUNC_ALLOWED), reduced to the filter the helper loads.
 * devices: the container's linux.devices, whose paths drop the default rule of the same path.
 */
export function deviceCgroupFrom(value: unknown, devices: readonly PlanDevice[]): PlanDeviceCgroup {
  const specRules = value === undefined || value === null ? [] : arrMax(value, 'linux.resources.devices', MAX_RULES);
  const emu = new DeviceCgroupEmulator();
  specRules.forEach((r, i) => emu.apply(specRule(r, i), `linux.resources.devices[${i}]`));
  const specPaths = new Set(devices.map((d) => d.path));
  for (const d of RUNC_ALLOWED) {
    if (d.path === undefined || !specPaths.has(d.path)) emu.apply(d.rule, `the default device rule for ${d.path ?? 'mknod'}`);
  }
  const result = emu.result();
  if (result.rules.length > MAX_CLEAN_RULES) throw new SpecError(`linux.resources.devices comes to ${result.rules.length} exceptions; at most ${MAX_CLEAN_RULES} are supported`);
  return result;
}
