// Host mounts a sandbox makes (the bundle rootfs bind-mounted into the virtio-fs share). Node has no mount(2), so
// this uses util-linux mount/umount; each mount is recorded in the state before it is made, so teardown can undo it
// even after a crash.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { HullError } from './errors.js';

function run(command: string, args: string[]): void {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.error) throw new HullError('internal', `${command} failed to run: ${result.error.message}`);
  if (result.status !== 0) {
    throw new HullError('internal', `${command} ${args.join(' ')} failed: ${result.stderr.trim() || `exit ${result.status}`}`);
  }
}

export function bindMount(source: string, target: string): void {
  mkdirSync(target, { recursive: true });
  run('mount', ['--bind', source, target]);
  // A private mount does not propagate into other namespaces, so umount here really removes it everywhere.
  run('mount', ['--make-private', target]);
}

/** The decoded mount points of this mount namespace. */
function mountPoints(): Set<string> {
  const points = new Set<string>();
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const field = line.split(' ')[4];
    if (field) points.add(field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8))));
  }
  return points;
}

export function isMounted(target: string): boolean {
  return mountPoints().has(target);
}

export function unmount(target: string): void {
  if (!isMounted(target)) return;
  const result = spawnSync('umount', [target], { encoding: 'utf8' });
  if (result.status !== 0 && isMounted(target)) run('umount', ['-l', target]);
}
