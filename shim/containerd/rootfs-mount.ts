// Makes the mounts of CreateTaskRequest.rootfs (overlay from the snapshotter, or a bind) on <bundle>/rootfs with
// util-linux mount, as containerd's runc shim does with mount.All. Node has no mount(2).
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { HullError } from '../errors.js';
import { isMounted, unmount } from '../sandbox/host-mounts.js';
import type { MountSpec, RootfsMounter } from './pod.js';

function run(args: string[]): void {
  const r = spawnSync('mount', args, { encoding: 'utf8' });
  if (r.error) throw new HullError('internal', `mount failed to run: ${r.error.message}`);
  if (r.status !== 0) throw new HullError('internal', `mount ${args.join(' ')} failed: ${r.stderr.trim() || `exit ${r.status}`}`);
}

/** mount(8) arguments for one containerd Mount. */
export function mountArgs(m: MountSpec, target: string): string[] {
  const args: string[] = [];
  const options = [...m.options];
  const type = m.type || 'none';
  if (type === 'bind' || options.includes('bind') || options.includes('rbind')) {
    args.push('--bind');
    if (options.includes('rbind')) args[0] = '--rbind';
  } else {
    args.push('-t', type);
  }
  const rest = options.filter((o) => o !== 'bind' && o !== 'rbind');
  if (rest.length > 0) args.push('-o', rest.join(','));
  args.push(m.source, target);
  return args;
}

export const hostRootfsMounter: RootfsMounter = {
  mount(mounts: MountSpec[], target: string): void {
    mkdirSync(target, { recursive: true });
    const made: string[] = [];
    try {
      for (const m of mounts) {
        run(mountArgs(m, target));
        made.push(target);
      }
    } catch (err) {
      for (let i = 0; i < made.length; i++) unmount(target);
      throw err;
    }
  },
  unmount(target: string): void {
    // Stacked mounts (several rootfs entries) come off one at a time.
    for (let i = 0; i < 8 && isMounted(target); i++) unmount(target);
  },
};
