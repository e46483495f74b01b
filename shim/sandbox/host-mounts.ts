// Host mounts a sandbox makes (the bundle rootfs and the spec's host bind sources, bind-mounted into the virtio-fs
// share). Node has no mount(2), so this uses util-linux mount/umount; each mount is recorded in the state before it
// is made, so teardown can undo it even after a crash.
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { HullError } from '../errors.js';

function run(command: string, args: string[]): void {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.error) throw new HullError('internal', `${command} failed to run: ${result.error.message}`);
  if (result.status !== 0) {
    throw new HullError('internal', `${command} ${args.join(' ')} failed: ${result.stderr.trim() || `exit ${result.status}`}`);
  }
}

export interface BindOptions {
  /** The source is a file: the mount point is an empty file, not a directory. */
  file?: boolean;
  /** rbind: submounts of the source come along. */
  recursive?: boolean;
  /** Read-only on the host too, so a hostile guest cannot write through virtio-fs what the spec made read-only. */
  readonly?: boolean;
}

export function bindMount(source: string, target: string, options: BindOptions = {}): void {
  if (options.file) {
    mkdirSync(path.dirname(target), { recursive: true });
    closeSync(openSync(target, 'a', 0o600));
  } else {
    mkdirSync(target, { recursive: true });
  }
  run('mount', [options.recursive ? '--rbind' : '--bind', source, target]);
  // A private mount does not propagate into other namespaces, so umount here really removes it everywhere.
  run('mount', [options.recursive ? '--make-rprivate' : '--make-private', target]);
  // nosuid,nodev on the host: virtiofsd keeps a guest's chmod/chown (set-uid bits included) and mknod, so what a guest
  // writes into the share must not be a set-uid program or a device node for the host. Inside the VM the guest kernel
  // decides (it honours set-uid there as before). A bind remount sets all of one mount's flags at once and changes
  // that mount only: each mount point (the submounts an rbind brought along too) keeps its own flags plus these.
  const perMount = perMountOptions();
  for (const point of mountPointsUnder(target).reverse()) {
    const flags = new Set([...(perMount.get(point) ?? []), 'nosuid', 'nodev']);
    if (options.readonly) {
      flags.delete('rw');
      flags.add('ro');
    }
    run('mount', ['-o', `remount,bind,${[...flags].join(',')}`, point]);
  }
}

/** The per-mount flags mount(8) takes back in a bind remount; anything else in mountinfo's field 6 is left out. */
const MOUNT_FLAGS = new Set(['ro', 'rw', 'nosuid', 'nodev', 'noexec', 'noatime', 'nodiratime', 'relatime', 'strictatime', 'nosymfollow']);

/** Each mount point's per-mount flags (mountinfo field 6); for a stacked point, the top mount's. */
function perMountOptions(): Map<string, string[]> {
  const options = new Map<string, string[]>();
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const fields = line.split(' ');
    if (fields[4] && fields[5]) options.set(decodeMountPath(fields[4]), fields[5].split(',').filter((o) => MOUNT_FLAGS.has(o)));
  }
  return options;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function decodeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** The decoded mount points of this mount namespace, in mount order (a stacked point appears more than once). */
function mountPoints(): string[] {
  const points: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const field = line.split(' ')[4];
    if (field) points.push(decodeMountPath(field));
  }
  return points;
}

function resolved(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

export function isMounted(target: string): boolean {
  return mountPoints().includes(target);
}

/** Mount points at or below `dir`, deepest first (the order to unmount them in), each once. */
export function mountPointsUnder(dir: string): string[] {
  // mountinfo names mount points by their resolved path.
  const dirs = new Set([dir, resolved(dir)].map((d) => d.replace(/\/+$/, '') || '/'));
  const within = (p: string): boolean => [...dirs].some((d) => p === d || p.startsWith(d === '/' ? d : `${d}/`));
  const under = new Set(mountPoints().filter(within));
  return [...under].sort((a, b) => b.split('/').length - a.split('/').length || b.localeCompare(a));
}

export function unmount(target: string): void {
  if (!isMounted(target)) return;
  const result = spawnSync('umount', [target], { encoding: 'utf8' });
  if (result.status !== 0 && isMounted(target)) run('umount', ['-l', target]);
}

/**
 * Unmounts everything at or below `dir`, recorded or not (a crash may have come between a record and its mount, or
 * a mount may have submounts). Throws if anything is still mounted there: the caller must then not delete `dir`
 * recursively, which would delete through the mount into the host's files.
 */
export function unmountAllUnder(dir: string): void {
  for (const point of mountPointsUnder(dir)) {
    // A stacked mount point comes off one layer at a time.
    for (let i = 0; i < 8 && isMounted(point); i++) unmount(point);
  }
  const left = mountPointsUnder(dir);
  if (left.length > 0) throw new HullError('internal', `still mounted after unmounting, left in place: ${left.join(', ')}`);
}
