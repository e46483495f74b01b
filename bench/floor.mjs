// The boot floor of the benchmarks: the same QEMU, kernel, flags and accelerator as hull, booting a trivial initramfs
// whose /init powers off at once. The figure is the wall time from QEMU's spawn to its exit after that power-off: the
// kernel's boot up to running /init, plus QEMU's start and exit — what no hull VM can go below.
//
// Where the QEMU command line comes from: hull itself. A hull sandbox is booted once (`hull create`; no container
// runs) and the command line hull wrote as the first line of <sandbox dir>/qemu.log (hypervisor/qemu.ts writes
// "# argv: " and the shell-quoted argv there before it spawns QEMU) is read back, then the sandbox deleted. So every
// flag hull passes — accelerator (KVM or TCG, tb-size), -cpu, -M microvm properties (x-option-roms=off, …), memory,
// kernel command line (tsc_early_khz…), devices — is the floor's too, including what HULL_TCG_CPU,
// HULL_QEMU_MACHINE_OPTIONS, HULL_ACCEL or HULL_GUEST_DIR change, with nothing copied here that could drift. This was
// chosen over importing buildQemuArgs: dist/ has no bundle of hypervisor/qemu-command.ts alone, and the argv hull
// composes at run time (accelerator probe, host TSC, sizing) is what is compared, not a re-composition of it.
// What the floor drops, because those need their back ends running: QMP (its socket lives in hull's socket dir;
// nothing talks to it), the virtio-fs and vhost-user/vhost vsock devices (virtiofsd, hull-vsock-backend, a unique
// CID), NICs (taps), and the agent key (-fw_cfg: its file goes with the probe sandbox). What it replaces: -initrd (the trivial initramfs) and -name. The console stays on QEMU's
// stdout, as hull has it (a pipe this process reads).
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { timed } from './lib.mjs';

const ARGV_PREFIX = '# argv: ';

/** Splits a command line as hypervisor/qemu.ts's shellQuote writes it: bare words and '…' with '\'' escapes. */
export function shellWords(line) {
  const words = [];
  let word;
  let i = 0;
  while (i < line.length) {
    const c = line[i];
    if (c === ' ') {
      if (word !== undefined) words.push(word);
      word = undefined;
      i++;
    } else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unterminated quote in ${line}`);
      word = (word ?? '') + line.slice(i + 1, end);
      i = end + 1;
    } else if (c === '\\') {
      word = (word ?? '') + line[i + 1];
      i += 2;
    } else {
      word = (word ?? '') + c;
      i++;
    }
  }
  if (word !== undefined) words.push(word);
  return words;
}

/**
 * Boots one hull sandbox of `bundle` under `root` (no pool serving it, so hull boots its own VM exactly as a cold
 * `hull run` does), reads the QEMU argv hull wrote, and deletes the sandbox. Throws with the reason when it cannot.
 */
export function hullQemuArgv({ hull, root, bundle, env = process.env }) {
  const id = 'floor-probe';
  try {
    // stdout and stderr not pipes: the sandbox's monitor, which create leaves running, would hold them open.
    const err = path.join(path.dirname(root), 'floor-probe.err');
    const fd = openSync(err, 'w');
    let created;
    try {
      created = spawnSync(hull, ['--root', root, 'create', '--bundle', bundle, id], { env, stdio: ['ignore', 'ignore', fd], timeout: 120_000 });
    } finally {
      closeSync(fd);
    }
    if (created.status !== 0) {
      throw new Error(`hull create (to read hull's QEMU command line) failed (${created.status ?? created.signal ?? created.error?.message}): ${readFileSync(err, 'utf8').trim()}`);
    }
    let vmDir = path.join(root, id);
    try {
      vmDir = JSON.parse(readFileSync(path.join(root, id, 'state.json'), 'utf8')).vmDir ?? vmDir;
    } catch {
      // the sandbox directory is the VM's
    }
    const first = readFileSync(path.join(vmDir, 'qemu.log'), 'utf8').split('\n')[0];
    if (!first.startsWith(ARGV_PREFIX)) throw new Error(`${vmDir}/qemu.log does not start with "${ARGV_PREFIX}" (hypervisor/qemu.ts changed?)`);
    return shellWords(first.slice(ARGV_PREFIX.length));
  } finally {
    spawnSync(hull, ['--root', root, 'delete', '--force', id], { env, stdio: 'ignore', timeout: 120_000 });
  }
}

/** Value of `-opt` in an argv (the first). */
const optValue = (argv, opt) => argv[argv.indexOf(opt) + 1];

/** The floor's argv from hull's: back-end devices dropped, the initramfs and name replaced (see the top comment). */
export function floorArgv(hullArgv, initrd) {
  const [qemu, ...args] = hullArgv;
  const pairs = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i].startsWith('-') && i + 1 < args.length && !args[i + 1].startsWith('-')) {
      pairs.push([args[i], args[i + 1]]);
      i++;
    } else {
      pairs.push([args[i]]);
    }
  }
  const socketChardevs = new Set(
    pairs.filter(([o, v]) => o === '-chardev' && v?.startsWith('socket,')).map(([, v]) => /(?:^|,)id=([^,]+)/.exec(v)?.[1]),
  );
  const usesDropped = (v) => [...socketChardevs].some((id) => new RegExp(`(?:^|,)chardev=${id}(?:,|$)`).test(v));
  const dropped = [];
  const kept = pairs.flatMap(([o, v]) => {
    const drop =
      (o === '-chardev' && socketChardevs.has(/(?:^|,)id=([^,]+)/.exec(v ?? '')?.[1])) ||
      ((o === '-mon' || o === '-device') && usesDropped(v ?? '')) ||
      (o === '-device' && /^(vhost-vsock-device|vhost-user-|virtio-net-device)/.test(v ?? '')) ||
      o === '-netdev' ||
      o === '-fw_cfg'; // the agent key: its file goes with the probe sandbox, and the floor's /init needs none
    if (drop) {
      dropped.push(`${o} ${v.split(',').slice(0, 2).join(',')}`);
      return [];
    }
    if (o === '-initrd') return [o, initrd];
    if (o === '-name') return [o, 'hull-floor,debug-threads=on'];
    return v === undefined ? [o] : [o, v];
  });
  for (const need of ['-kernel', '-initrd', '-append', '-accel']) {
    if (!kept.includes(need)) throw new Error(`hull's QEMU argv has no ${need}: cannot make the floor from it`);
  }
  return { argv: [qemu, ...kept], dropped, accel: optValue(kept, '-accel'), cpu: optValue(kept, '-cpu') };
}

/** A newc initramfs whose /init (and rdinit=, if the command line names another) powers off at once. */
export function buildFloorInitramfs(work, cmdline) {
  const dir = path.join(work, 'floor');
  mkdirSync(path.join(dir, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', path.join(dir, 'bin', 'busybox'));
  const inits = new Set(['/init', /(?:^|\s)rdinit=(\S+)/.exec(cmdline ?? '')?.[1]].filter(Boolean));
  for (const init of inits) {
    const file = path.join(dir, init);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, '#!/bin/busybox sh\n/bin/busybox poweroff -f\n');
    chmodSync(file, 0o755);
  }
  const image = path.join(work, 'floor.cpio');
  execFileSync('sh', ['-c', 'cd "$1" && find . | cpio -o -H newc --quiet > "$2"', 'sh', dir, image]);
  if (!existsSync(image)) throw new Error('cpio made no floor initramfs');
  return image;
}

/** One floor boot: QEMU spawn to exit, ms. The console (QEMU's stdout) is read and dropped. */
export function floorRun(argv) {
  return timed(argv[0], argv.slice(1), { timeout: 120_000, maxBuffer: 64 << 20 });
}
