// Guest power-off for DestroySandbox. busybox `poweroff -f` makes QEMU report a guest shutdown; if the kernel
// cannot power off and returns, `reboot -f` ends the VM too (QEMU runs with -no-reboot).
import { spawnSync } from 'node:child_process';
import type { Logger } from 'pino';

const BUSYBOX = '/bin/busybox';

export function syncFilesystems(): void {
  spawnSync(BUSYBOX, ['sync'], { stdio: 'ignore', timeout: 10_000 });
}

export function powerOffMachine(log: Logger): void {
  const r = spawnSync(BUSYBOX, ['poweroff', '-f'], { stdio: 'ignore', timeout: 5_000 });
  log.error({ status: r.status, error: r.error?.message }, 'poweroff -f returned; trying reboot -f');
  spawnSync(BUSYBOX, ['reboot', '-f'], { stdio: 'ignore', timeout: 5_000 });
}
