// Boots real QEMU microvms (TCG here) with virtiofsd and a tiny busybox initramfs built by the test, and checks the
// driver's promises: the guest sees the share, exit is detected with the right reason, and nothing is left behind.
// Needs build/kernel/{vmlinux,modules} (bash guest-image/kernel.sh) or HULL_TEST_KERNEL_DIR with the same layout.
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CONSOLE_FILE_MAX_BYTES, consoleFiles } from '../../hypervisor/console-log.js';
import { AgentUnreachableError, VmStartError } from '../../hypervisor/errors.js';
import { isAlive } from '../../hypervisor/process.js';
import { repoRoot, sandboxPaths, sandboxSockets, vsockBackendPath } from '../../hypervisor/paths.js';
import { QemuMicrovm, type QemuMicrovmOptions } from '../../hypervisor/qemu.js';
import { killRecordedVm, reattachVm } from '../../hypervisor/registry.js';
import type { Hypervisor, VmConfig, VmExit, VmProcesses } from '../../hypervisor/types.js';
import { VMM_UID_RANGE_DEFAULT } from '../../hypervisor/vmm-uid.js';
import { expectVmConfined } from '../helpers/confinement.js';
import { prerequisitesMet } from '../helpers/prerequisites.js';

const kernelDir = process.env['HULL_TEST_KERNEL_DIR'] ?? path.join(repoRoot(), 'build', 'kernel');
const vmlinux = path.join(kernelDir, 'vmlinux');
const haveKernel = existsSync(vmlinux) && existsSync(path.join(kernelDir, 'modules'));
const haveQemu = existsSync('/usr/bin/qemu-system-x86_64') && existsSync('/usr/lib/qemu/virtiofsd');
const haveBackend = existsSync(vsockBackendPath());

const GUEST_MODULES = ['virtio_ring', 'virtio', 'virtio_mmio', 'fuse', 'virtiofs', 'qemu_fw_cfg'];
const VSOCK_MODULES = ['vsock', 'vmw_vsock_virtio_transport_common', 'vmw_vsock_virtio_transport'];

/** How much a flooding guest prints: more than both console files hold, so the host must drop the oldest. */
const FLOOD_BYTES = 3 * CONSOLE_FILE_MAX_BYTES;

// /init: load the transports and virtio-fs, mount the share, write a file, copy the host's file back, copy the agent
// key QEMU gave as a fw_cfg file and its mode in the guest (a test may show the guest its own key), then either
// power off, (hulltest.mode=hang) wait forever, or (hulltest.mode=flood) print FLOOD_BYTES to the console first.
const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /mnt
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in ${[...GUEST_MODULES, ...VSOCK_MODULES].join(' ')}; do
  [ -f /lib/$m.ko ] && insmod /lib/$m.ko
done
mount -t virtiofs hullshared /mnt || echo HULLTEST mount failed
echo guest-was-here > /mnt/from-guest.txt
cat /mnt/from-host.txt > /mnt/echo.txt
key=/sys/firmware/qemu_fw_cfg/by_name/opt/hull/agent-key/raw
cat $key > /mnt/agent-key.txt
stat -c '%a %u' $key > /mnt/agent-key-mode.txt
sync
echo HULLTEST done
grep -q hulltest.mode=hang /proc/cmdline && while :; do sleep 1; done
if grep -q hulltest.mode=flood /proc/cmdline; then
  yes 'HULLTEST flood: a guest that prints forever must not fill host memory' | head -c ${FLOOD_BYTES}
  echo
  echo HULLTEST flood-end
fi
poweroff -f
`;

function findModule(root: string, name: string): string | undefined {
  const stack = [root];
  while (stack.length > 0) {
    const dir = stack.pop() as string;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) stack.push(p);
      else if (entry.name === `${name}.ko`) return p;
    }
  }
  return undefined;
}

function buildInitramfs(work: string): string {
  const root = path.join(work, 'initramfs');
  mkdirSync(path.join(root, 'bin'), { recursive: true });
  mkdirSync(path.join(root, 'lib'), { recursive: true });
  copyFileSync('/bin/busybox', path.join(root, 'bin', 'busybox'));
  chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
  for (const m of [...GUEST_MODULES, ...(haveBackend ? VSOCK_MODULES : [])]) {
    const found = findModule(path.join(kernelDir, 'modules'), m);
    if (!found) throw new Error(`module ${m}.ko not found under ${kernelDir}/modules`);
    copyFileSync(found, path.join(root, 'lib', `${m}.ko`));
  }
  writeFileSync(path.join(root, 'init'), INIT, { mode: 0o755 });
  const out = path.join(work, 'initrd.cpio');
  execFileSync('sh', ['-c', `cd '${root}' && find . | cpio -o -H newc --quiet > '${out}'`]);
  return out;
}

const logger = pino({ level: process.env['HULL_TEST_LOG'] ?? 'silent' });
let work: string;
let initrd: string;
const started: Hypervisor[] = [];

function makeVm(name: string, extra: Partial<VmConfig> = {}, opts: Partial<QemuMicrovmOptions> = {}): QemuMicrovm {
  const dir = path.join(work, name);
  const sharedDir = path.join(dir, 'shared');
  mkdirSync(sharedDir, { recursive: true });
  const config: VmConfig = {
    id: name,
    dir,
    vcpus: 1,
    memoryMiB: 256,
    kernelPath: vmlinux,
    initrdPath: initrd,
    kernelCmdline: '',
    sharedDir,
    accel: 'auto',
    guestCid: 3,
    ...extra,
  };
  const vm = new QemuMicrovm(config, { logger, vsock: haveBackend ? 'hybrid' : 'none', ...opts });
  started.push(vm);
  return vm;
}

function allGone(p: VmProcesses): boolean {
  return [...(p.vmm ? [p.vmm] : []), ...(p.helpers ?? [])].every((proc) => !isAlive(proc));
}

/** The pid of the VM's process in `role` ('vmm' or a helper's), if it has one. */
function pidOf(p: VmProcesses, role: string): number | undefined {
  return role === 'vmm' ? p.vmm?.pid : p.helpers?.find((h) => h.role === role)?.pid;
}

/** Sockets left behind, and the socket directory itself (hypervisor/paths.ts) if it is still there. */
function leftoverSockets(dir: string): string[] {
  const paths = sandboxPaths(dir);
  return [...sandboxSockets(paths), paths.socketDir].filter((s) => existsSync(s));
}

/** vm.wait(), bounded, failing with the console tail so a hung guest explains itself. */
async function waitExit(vm: Hypervisor, timeoutMs: number): Promise<VmExit> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`VM did not exit within ${timeoutMs} ms; console:\n${vm.consoleTail(30)}`)), timeoutMs);
  });
  try {
    return await Promise.race([vm.wait(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function waitForConsole(vm: Hypervisor, marker: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!readFileSync(vm.consolePath, 'utf8').includes(marker)) {
    if (Date.now() > deadline) throw new Error(`console never showed ${marker}:\n${vm.consoleTail(30)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.runIf(
  prerequisitesMet('hypervisor integration', [
    !haveKernel && 'build/kernel (bash guest-image/kernel.sh)',
    !haveQemu && 'qemu-system-x86 and virtiofsd',
    !haveBackend && 'build/native/hull-vsock-backend (make -C native)',
  ]),
)('QemuMicrovm (real QEMU, TCG here)', () => {
  beforeAll(() => {
    work = mkdtempSync(path.join(os.tmpdir(), 'hull-hv-'));
    initrd = buildInitramfs(work);
  });

  afterEach(async () => {
    // Whatever a failed assertion left running goes now: one QEMU at a time on this machine.
    for (const vm of started.splice(0)) await vm.kill().catch(() => undefined);
  });

  afterAll(() => {
    if (work && process.env['HULL_TEST_KEEP'] !== '1') rmSync(work, { recursive: true, force: true });
  });

  it('boots, shares a directory both ways over virtio-fs, and sees the guest power off', async () => {
    const vm = makeVm('share');
    writeFileSync(path.join(vm.config.sharedDir, 'from-host.txt'), 'host-was-here\n');
    const t0 = Date.now();
    await vm.start();
    const procs = vm.processes();
    expect(pidOf(procs, 'vmm')).toBeTypeOf('number');
    expect(pidOf(procs, 'virtiofsd')).toBeTypeOf('number');
    if (haveBackend) expect(pidOf(procs, 'vsock-backend')).toBeTypeOf('number');
    expect(existsSync(sandboxPaths(vm.config.dir).vmmRecord)).toBe(true);
    const hostKey = readFileSync(sandboxPaths(vm.config.dir).agentKey, 'utf8');

    const exit = await waitExit(vm, 60_000);
    logger.info({ ms: Date.now() - t0 }, 'boot to power-off');
    expect(exit.reason, vm.consoleTail(30)).toBe('shutdown');
    expect(exit.detail).toBe('guest-shutdown');
    expect(readFileSync(path.join(vm.config.sharedDir, 'from-guest.txt'), 'utf8')).toBe('guest-was-here\n');
    expect(readFileSync(path.join(vm.config.sharedDir, 'echo.txt'), 'utf8')).toBe('host-was-here\n');
    // The agent key reached the guest through fw_cfg, readable by the guest's root only; the host's copy went with QEMU.
    expect(readFileSync(path.join(vm.config.sharedDir, 'agent-key.txt'), 'utf8')).toBe(hostKey);
    expect(readFileSync(path.join(vm.config.sharedDir, 'agent-key-mode.txt'), 'utf8')).toBe('400 0\n');
    expect(existsSync(sandboxPaths(vm.config.dir).agentKey)).toBe(false);
    expect(vm.consoleTail(50)).toContain('HULLTEST done');
    expect(allGone(procs)).toBe(true);
    expect(leftoverSockets(vm.config.dir)).toEqual([]);
    expect(existsSync(sandboxPaths(vm.config.dir).vmmRecord)).toBe(false);
  });

  it('kill() on a running VM leaves no process and no socket', async () => {
    const vm = makeVm('kill', { kernelCmdline: 'quiet hulltest.mode=hang' });
    await vm.start();
    await waitForConsole(vm, 'HULLTEST done', 60_000);
    await vm.pause();
    await vm.resume();
    // Each host process as docs/confinement.md says: QEMU under the VM's own uid with no capabilities, no_new_privs,
    // its seccomp filter and its own namespaces; the vsock worker under that uid; virtiofsd cut down.
    if (haveBackend) {
      for (const c of expectVmConfined(vm.processes(), VMM_UID_RANGE_DEFAULT)) logger.info(c, 'confinement');
    }
    if (haveBackend) {
      // Nobody listens on the port in this guest: the backend refuses, the client retries, then gives up clearly.
      await expect(vm.connectVsock(1024, 500)).rejects.toBeInstanceOf(AgentUnreachableError);
    }
    const procs = vm.processes();
    const exit = await vm.kill();
    expect(exit.reason).toBe('killed');
    expect(allGone(procs)).toBe(true);
    expect(leftoverSockets(vm.config.dir)).toEqual([]);
    await expect(vm.wait()).resolves.toEqual(exit);
  });

  it('stop() quits a guest that does not power off, within the bound', async () => {
    const vm = makeVm('stop', { kernelCmdline: 'quiet hulltest.mode=hang' });
    await vm.start();
    await waitForConsole(vm, 'HULLTEST done', 60_000);
    const procs = vm.processes();
    const exit = await vm.stop(500);
    expect(exit.reason).toBe('quit');
    expect(allGone(procs)).toBe(true);
    expect(leftoverSockets(vm.config.dir)).toEqual([]);
  });

  it('killRecorded() cleans up a VM from its recorded pids alone', async () => {
    const vm = makeVm('recorded', { kernelCmdline: 'quiet hulltest.mode=hang' });
    await vm.start();
    const procs = vm.processes();
    await killRecordedVm(procs, vm.config.dir); // through the registry, by the driver the record names
    expect(allGone(procs)).toBe(true);
    expect(existsSync(sandboxPaths(vm.config.dir).agentKey)).toBe(false);
    const exit = await vm.wait(); // the owning object notices too
    expect(exit.reason).toBe('killed');
    expect(leftoverSockets(vm.config.dir)).toEqual([]);
  });

  it('a detached VM can be reattached from its directory alone and killed from there', async () => {
    const vm = makeVm('detached', { kernelCmdline: 'hulltest.mode=hang' }, { detached: true });
    await vm.start();
    const procs = vm.processes();
    vm.release(); // what a CLI call does before exiting: QEMU serves one QMP client at a time
    const again = await reattachVm(vm.config.dir, { logger }); // the registry reads the driver from vmm.json
    started.push(again);
    expect(again.processes()).toEqual(procs);
    expect(again.accel).toEqual(vm.accel);
    await waitForConsole(again, 'HULLTEST done', 60_000);
    await again.pause();
    await again.resume();
    const exit = await again.kill();
    expect(exit.reason).toBe('killed');
    expect(allGone(procs)).toBe(true);
    expect(leftoverSockets(vm.config.dir)).toEqual([]);
    expect(existsSync(sandboxPaths(vm.config.dir).vmmRecord)).toBe(false);
    await vm.wait(); // the original object sees its child go too
  });

  it('caps the console of a guest that floods it, keeping the newest output', async () => {
    const vm = makeVm('flood', { kernelCmdline: 'quiet hulltest.mode=flood' });
    const files = consoleFiles(vm.consolePath);
    const sizes = (): number[] => files.map((f) => (existsSync(f) ? statSync(f).size : 0));
    const t0 = Date.now();
    await vm.start();
    const procs = vm.processes();
    let largest = 0;
    const sampler = setInterval(() => (largest = Math.max(largest, ...sizes())), 10);
    let exit: VmExit;
    try {
      exit = await waitExit(vm, 100_000);
    } finally {
      clearInterval(sampler);
    }
    logger.info({ ms: Date.now() - t0, bytes: FLOOD_BYTES }, 'flood to power-off');
    expect(exit.reason, vm.consoleTail(10)).toBe('shutdown');
    // The rotated half is full (3× the cap was printed, so the oldest output is gone), and no file ever passed the cap.
    expect(sizes()[0]).toBe(CONSOLE_FILE_MAX_BYTES);
    expect(Math.max(largest, ...sizes())).toBeLessThanOrEqual(CONSOLE_FILE_MAX_BYTES);
    const tail = vm.consoleTail(20).split('\n');
    expect(tail, tail.join('\n')).toContain('HULLTEST flood-end');
    expect(tail.some((l) => l.startsWith('HULLTEST flood: '))).toBe(true);
    expect(readFileSync(sandboxPaths(vm.config.dir).qemuLog, 'utf8')).not.toContain('HULLTEST');
    expect(allGone(procs)).toBe(true);
    expect(readdirSync(vm.config.dir).sort()).toEqual(
      ['console.log', 'console.log.1', 'qemu.log', 'shared', 'virtiofsd.log', ...(haveBackend ? ['vsock-backend.log'] : [])].sort(),
    );
  });

  it('a bad kernel path gives a clear error and leaves no process', async () => {
    const vm = makeVm('badkernel', { kernelPath: path.join(work, 'no-such-vmlinux') });
    const err = await vm.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(VmStartError);
    expect((err as Error).message).toMatch(/QEMU exited during start/);
    expect((err as Error).message).toMatch(/no-such-vmlinux/);
    expect(allGone(vm.processes())).toBe(true);
    expect(leftoverSockets(vm.config.dir)).toEqual([]);
    const exit = await vm.wait();
    expect(exit.reason).toBe('crashed');
    expect(exit.detail).toMatch(/code 1/);
  });
});
