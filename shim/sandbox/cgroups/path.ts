// Where a sandbox's host cgroup is, from the OCI spec's linux.cgroupsPath, in the two forms runc knows: a cgroupfs
// path (absolute: below each hierarchy's root; relative: below this process's own cgroup) and, with the systemd cgroup
// driver, `slice:prefix:name`, which names the scope `prefix-name.scope` inside the slice `slice` (expanded the way
// systemd nests slices: `a-b.slice` is /a.slice/a-b.slice). Only parsing here: nothing is read or created.
//
// Stricter than runc, which cleans `..` away: a path that tries to climb out of the hierarchy is refused, as is one
// that names a hierarchy's root (the VM's cgroup is removed at delete).
import { invalidArgument } from '../../errors.js';

/** A cgroup named the same way in every hierarchy: segments below a hierarchy's root, or below our own cgroup. */
export interface CgroupLocation {
  /** Below this process's own cgroup in each hierarchy (a relative cgroupfs path), else below the hierarchy's root. */
  relative: boolean;
  /** Path segments, each a plain directory name. Never empty. */
  segments: string[];
  /** How it was named, for messages and the record. */
  form: 'cgroupfs' | 'systemd';
  /** The spec's text (or the default's), for messages. */
  source: string;
}

/** runc's scope prefix for its default systemd unit is "runc"; hull names its own. */
export const DEFAULT_SCOPE_PREFIX = 'hull';
const DEFAULT_SLICE = 'system.slice';
const MAX_SEGMENT = 255;

/**
 * The host cgroup of container `id`: its spec's cgroupsPath, or runc's default when there is none — the cgroupfs path
 * `<id>` relative to our own cgroup, or with systemd the scope `hull-<id>.scope` in system.slice.
 */
export function cgroupLocation(cgroupsPath: string | undefined, id: string, systemd: boolean): CgroupLocation {
  if (cgroupsPath === undefined || cgroupsPath === '') {
    return systemd ? systemdLocation(`:${DEFAULT_SCOPE_PREFIX}:${id}`) : cgroupfsLocation(id);
  }
  return systemd ? systemdLocation(cgroupsPath) : cgroupfsLocation(cgroupsPath);
}

/** A cgroupfs path: `/a/b` below each hierarchy's root, `a/b` below our own cgroup. */
export function cgroupfsLocation(text: string): CgroupLocation {
  const relative = !text.startsWith('/');
  const segments = text.split('/').filter((s) => s !== '' && s !== '.');
  for (const s of segments) checkSegment(s, text);
  if (segments.length === 0) throw invalidArgument(`cgroupsPath "${printable(text)}" names the root cgroup; give the container a cgroup of its own`);
  return { relative, segments, form: 'cgroupfs', source: text };
}

/** The systemd form `slice:prefix:name` (runc's --systemd-cgroup), mapped to the cgroupfs path systemd would use. */
export function systemdLocation(text: string): CgroupLocation {
  const parts = text.split(':');
  if (parts.length !== 3) {
    throw invalidArgument(`cgroupsPath "${printable(text)}" is not of the form "slice:prefix:name" that the systemd cgroup driver expects`);
  }
  const [slice, prefix, name] = parts as [string, string, string];
  const segments = expandSlice(slice === '' ? DEFAULT_SLICE : slice, text);
  if (name === '') throw invalidArgument(`cgroupsPath "${printable(text)}" has no name (slice:prefix:name)`);
  if (prefix.includes('/')) throw invalidArgument(`cgroupsPath "${printable(text)}": the prefix must not contain "/"`);
  const unit = name.endsWith('.slice') ? name : prefix === '' ? `${name}.scope` : `${prefix}-${name}.scope`;
  checkSegment(unit, text);
  return { relative: false, segments: [...segments, unit], form: 'systemd', source: text };
}

/**
 * systemd's nesting of slices: `a-b-c.slice` is /a.slice/a-b.slice/a-b-c.slice, `-.slice` the root. A dash may not
 * start or end the name, nor come twice in a row; no "/" anywhere (runc's ExpandSlice refuses the same).
 */
export function expandSlice(slice: string, source = slice): string[] {
  const bad = (why: string) => invalidArgument(`cgroupsPath "${printable(source)}": slice "${printable(slice)}" ${why}`);
  if (!slice.endsWith('.slice') || slice.length === '.slice'.length) throw bad('is not a systemd slice name (name.slice)');
  if (slice.includes('/')) throw bad('must not contain "/"');
  if (slice === '-.slice') return [];
  const base = slice.slice(0, -'.slice'.length);
  const parts = base.split('-');
  if (parts.some((p) => p === '')) throw bad('has an empty component (a leading, trailing or doubled "-")');
  const segments: string[] = [];
  let prefix = '';
  for (const part of parts) {
    prefix = prefix === '' ? part : `${prefix}-${part}`;
    segments.push(`${prefix}.slice`);
  }
  for (const s of segments) checkSegment(s, source);
  return segments;
}

/**
 * The systemd form in a path that came without a flag (the containerd shim): containerd's CRI plugin writes
 * `<parent>.slice:cri-containerd:<id>` exactly when the kubelet's cgroup parent is a systemd slice.
 */
export function looksLikeSystemdPath(text: string | undefined): boolean {
  return text !== undefined && /^[^/:]*\.slice:[^/:]*:[^/:]+$/.test(text);
}

function checkSegment(segment: string, source: string): void {
  if (segment === '..') throw invalidArgument(`cgroupsPath "${printable(source)}" must not contain ".." (it would leave the cgroup hierarchy)`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(segment)) throw invalidArgument(`cgroupsPath "${printable(source)}" contains a control character`);
  if (segment.length > MAX_SEGMENT) throw invalidArgument(`cgroupsPath "${printable(source)}" has a component longer than ${MAX_SEGMENT} bytes`);
}

// eslint-disable-next-line no-control-regex
const printable = (s: string): string => (s.length > 200 ? `${s.slice(0, 200)}…` : s).replace(/[\u0000-\u001f\u007f]/g, '?');
