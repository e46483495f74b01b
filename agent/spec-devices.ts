// linux.devices (runtime-spec config-linux.md "Devices"): the nodes the helper makes in the container's root
// (native/container-init/devices.c), checked here. linux.resources.devices (the device cgroup) is not enforced: on
// cgroup v2 that takes an eBPF program (runc's devicefilter), which the helper does not load yet; see devicesWarning.
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

/**
 * linux.resources.devices: checked for shape and reported as not enforced (a warning in the agent log). The VM holds
 * only virtio devices, and the container sees only the nodes its spec makes; the cgroup rule would in addition stop a
 * root workload with CAP_MKNOD from making and opening other nodes of the guest.
 */
export function devicesWarning(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  const rules = arrMax(value, 'linux.resources.devices', MAX_DEVICES);
  if (rules.length === 0) return undefined;
  rules.forEach((r, i) => asObject(r, `linux.resources.devices[${i}]`));
  return `linux.resources.devices (${rules.length} rules) not enforced: the guest's cgroup v2 device filter (eBPF) is not implemented`;
}
