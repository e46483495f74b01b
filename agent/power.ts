// Guest power-off for DestroySandbox. busybox `poweroff -f` makes QEMU report a guest shutdown; if the kernel
// cannot power off and returns, `reboot -f` ends the VM too (QEMU runs with -no-reboot).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';

const BUSYBOX = '/bin/busybox';

/**
 * Writes dirty pages back before power-off: only what the page cache holds dirty needs it (the virtio-fs share is
 * write-through — virtiofsd runs without writeback — so only pages of shared writable mmaps can be dirty there; the
 * root image is read-only, tmpfs has nothing to write back). With nothing dirty, no sync: a sync also asks virtiofsd
 * for a syncfs of the host file system (FUSE_SYNCFS), 50-70 ms here, a durability runc does not give either.
 */
export function syncFilesystems(meminfo = '/proc/meminfo'): boolean {
  if (dirtyKiB(meminfo) === 0) return false;
  spawnSync(BUSYBOX, ['sync'], { stdio: 'ignore', timeout: 10_000 });
  return true;
}

/** Dirty + Writeback from /proc/meminfo, in KiB; undefined when it cannot be read (then sync to be safe). */
export function dirtyKiB(meminfo = '/proc/meminfo'): number | undefined {
  let text: string;
  try {
    text = readFileSync(meminfo, 'utf8');
  } catch {
    return undefined;
  }
  const field = (name: string): number | undefined => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const dirty = field('Dirty');
  const writeback = field('Writeback');
  return dirty === undefined || writeback === undefined ? undefined : dirty + writeback;
}

export function powerOffMachine(log: Logger): void {
  const r = spawnSync(BUSYBOX, ['poweroff', '-f'], { stdio: 'ignore', timeout: 5_000 });
  log.error({ status: r.status, error: r.error?.message }, 'poweroff -f returned; trying reboot -f');
  spawnSync(BUSYBOX, ['reboot', '-f'], { stdio: 'ignore', timeout: 5_000 });
}
