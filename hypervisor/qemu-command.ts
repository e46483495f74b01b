// Builds the QEMU command line for one microvm. Pure: no file system, no environment, so it is unit-tested as is.
// Each non-obvious flag carries the measured reason it is there (see shared/reference/platform.md).
import { AGENT_KEY_FW_CFG } from '../protocol/agent-auth.js';
import type { Acceleration, VmNic } from './types.js';
import type { SandboxPaths } from './paths.js';

export type VsockDevice =
  /** Our user-space backend (hull-vsock-backend) on a vhost-user socket. */
  | { kind: 'vhost-user'; socketPath: string }
  /** The host kernel's vhost_vsock; the CID must be unique on the host. */
  | { kind: 'vhost-vsock'; guestCid: number };

export interface QemuCommandSpec {
  qemuPath: string;
  /** Shown by ps/top as the process name (threads too, with debug-threads). */
  name?: string;
  paths: SandboxPaths;
  accel: Acceleration;
  /** TCG translation buffer in MiB; QEMU's default is 1 GiB. Ignored under KVM. */
  tbSizeMiB?: number;
  vcpus: number;
  memoryMiB: number;
  /** Guest RAM QEMU allocates when more than memoryMiB (VmConfig.maxMemoryMiB); the balloon holds the rest. */
  maxMemoryMiB?: number;
  kernelPath: string;
  initrdPath: string;
  /** Full kernel command line (see composeKernelCmdline). */
  cmdline: string;
  rootImagePath?: string;
  /** Attach the virtio-fs device (virtiofsd must listen on paths.virtiofsdSock). */
  sharedFs: boolean;
  vsock?: VsockDevice;
  /**
   * The agent key file (hypervisor/agent-key.ts), given to the guest as fw_cfg file AGENT_KEY_FW_CFG: QEMU reads the
   * file, so only its path is on the command line. The guest reads it from sysfs (the qemu_fw_cfg module).
   */
  agentKeyPath?: string;
  /** virtio-net devices, each on a tap: passed as a descriptor (`fds`), else opened by name in QEMU's namespace. */
  nics?: VmNic[];
  /** The kernel's vhost-net data path for the NICs (only where /dev/vhost-net exists). */
  vhostNet?: boolean;
  /** Extra microvm machine properties, e.g. ['pit=off']. */
  machineOptions?: string[];
  /** `-cpu` under TCG (KVM always uses `host`). Default TCG_CPU_MODEL. */
  tcgCpu?: string;
  /**
   * A virtio-balloon device with free page reporting: the guest tells QEMU which of its pages are free (in blocks of
   * its reporting order, which guest-image/init sets to 4 KiB) and QEMU punches them out of the guest RAM memfd, so
   * memory the guest touched and freed goes back to the host. Needs the guest's virtio_balloon module
   * (guest-image/build.sh). The balloon is inflated only in a VM with maxMemoryMiB (growth headroom).
   */
  freePageReporting?: boolean;
  /**
   * Descriptors QEMU gets from hull-vmm-launcher (vmm-launcher.ts) instead of paths it would open itself: with them
   * QEMU needs no access to the socket directory, to /dev/net/tun or to the taps' network namespace.
   */
  fds?: QemuFds;
}

/** Descriptor numbers in QEMU's process (vmm-launcher.ts planQemuJail assigns them). */
export interface QemuFds {
  /** A listening Unix socket at paths.qmpSock. */
  qmp: number;
  /** Connected to virtiofsd (paths.virtiofsdSock). */
  virtiofs?: number;
  /** Connected to the vsock backend's vhost-user socket. */
  vhostUserVsock?: number;
  /** /dev/vhost-vsock, opened. */
  vhostVsock?: number;
  /** One tap per NIC, in NIC order, and (with vhostNet) one /dev/vhost-net each. */
  taps: number[];
  vhostNet: number[];
}

/**
 * The TCG guest CPU: x86-64-v2 (what current distributions' binaries may assume) plus RDRAND (entropy at boot) and
 * the guest kernel's SMEP/SMAP/UMIP hardening; nothing wider. Measured here (agent image, TCG, interleaved runs):
 * agent ready ~0.2–0.4 s sooner than `max`, whose AVX/AVX2 glibc and V8 pick and TCG emulates slowly. The guest
 * image's start-up snapshot is built on this model (guest-image/build.sh HULL_SNAPSHOT_TCG_CPU must match, or the
 * guest falls back to the slower agent.mjs start).
 */
export const TCG_CPU_MODEL = 'qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+rdrand,+smep,+smap,+umip';

export const SHARED_FS_TAG = 'hullshared';

/**
 * The image's command line plus what hull needs: the console on the serial port, panic → reset (which -no-reboot
 * turns into a QEMU exit, so a panicked guest does not hang), and under TCG the options without which the kernel
 * hangs in TSC calibration (tsc=reliable no_timer_check always; tsc_early_khz when the host's TSC rate is known). Options the image already sets are not repeated.
 */
export function composeKernelCmdline(
  imageCmdline: string,
  accel: Acceleration,
  extra: string[] = [],
  /** Host TSC kHz (host-tsc.ts); under TCG it spares the guest a PIT calibration that fails on a busy host. */
  tscKhz?: number,
): string {
  const words = imageCmdline.split(/\s+/).filter(Boolean);
  const has = (key: string): boolean => words.some((w) => w === key || w.startsWith(`${key}=`));
  const add = (opt: string): void => {
    const key = opt.split('=')[0] ?? opt;
    if (!has(key)) words.push(opt);
  };
  add('console=ttyS0');
  add('panic=-1');
  if (accel === 'tcg') {
    add('tsc=reliable');
    add('no_timer_check');
    if (tscKhz !== undefined) add(`tsc_early_khz=${tscKhz}`);
  }
  for (const opt of extra) add(opt);
  return words.join(' ');
}

export function buildQemuArgs(spec: QemuCommandSpec): string[] {
  const { paths } = spec;
  // A VM that can grow gets its most; the balloon (inflated from boot, qemu.ts) leaves the guest memoryMiB of it.
  const mem = `${Math.max(spec.memoryMiB, spec.maxMemoryMiB ?? 0)}M`;
  const machine = ['microvm', 'memory-backend=mem', 'x-option-roms=off', ...(spec.machineOptions ?? [])];
  const accel = spec.accel === 'tcg' && spec.tbSizeMiB !== undefined ? `tcg,tb-size=${spec.tbSizeMiB}` : spec.accel;
  const args = [
    '-name', `${escapeOpt(spec.name ?? 'hull')},debug-threads=on`,
    '-M', machine.join(','),
    '-accel', accel,
    '-cpu', spec.accel === 'kvm' ? 'host' : (spec.tcgCpu ?? TCG_CPU_MODEL),
    '-smp', String(spec.vcpus),
    '-m', mem,
    // vhost-user backends map guest RAM, so it must be a shareable memfd.
    '-object', `memory-backend-memfd,id=mem,size=${mem},share=on`,
    // microvm's virtio-mmio defaults to legacy virtio, which libvhost-user backends refuse.
    '-global', 'virtio-mmio.force-legacy=false',
    '-nodefaults',
    '-no-user-config',
    // QEMU's seccomp filter (no_new_privs with it): the syscalls of obsolete interfaces, set*id and friends, fork
    // and exec, and scheduler/affinity/priority changes are refused once the VM is set up. The VMM is what a guest
    // escape lands in first; it needs none of them (taps come as descriptors, not from a helper script).
    '-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
    '-nographic',
    '-no-reboot',
    // The console goes to QEMU's stdout, a pipe that hull copies into a size-capped console.log (console-log.ts):
    // a `file` chardev would let the guest grow it without bound. stdin is /dev/null; signal=off keeps QEMU from
    // treating ^C as a signal should it ever be a terminal.
    '-chardev', 'stdio,id=console,signal=off',
    '-serial', 'chardev:console',
    // chardev form rather than `-qmp unix:` so that paths with commas can be escaped.
    '-chardev', `socket,id=qmp,${socketAt(paths.qmpSock, spec.fds?.qmp)},server=on,wait=off`,
    '-mon', 'chardev=qmp,mode=control',
    '-kernel', spec.kernelPath,
    '-initrd', spec.initrdPath,
    '-append', spec.cmdline,
    // Entropy: without it Node's first getrandom() in the guest waits ~1 s for the crng under TCG.
    '-device', 'virtio-rng-device',
  ];
  if (spec.freePageReporting) args.push('-device', 'virtio-balloon-device,free-page-reporting=on');
  else if (canGrow(spec)) args.push('-device', 'virtio-balloon-device');
  if (spec.rootImagePath !== undefined) {
    args.push(
      '-drive', `id=root,file=${escapeOpt(spec.rootImagePath)},format=raw,if=none,read-only=on`,
      '-device', 'virtio-blk-device,drive=root',
    );
  }
  if (spec.sharedFs) {
    args.push(
      '-chardev', `socket,id=fs,${socketAt(paths.virtiofsdSock, spec.fds?.virtiofs)}`,
      '-device', `vhost-user-fs-device,chardev=fs,tag=${SHARED_FS_TAG}`,
    );
  }
  if (spec.agentKeyPath !== undefined) {
    args.push('-fw_cfg', `name=${AGENT_KEY_FW_CFG},file=${escapeOpt(spec.agentKeyPath)}`);
  }
  if (spec.vsock?.kind === 'vhost-user') {
    args.push(
      '-chardev', `socket,id=vsock,${socketAt(spec.vsock.socketPath, spec.fds?.vhostUserVsock)}`,
      '-device', 'vhost-user-vsock-device,chardev=vsock',
    );
  } else if (spec.vsock?.kind === 'vhost-vsock') {
    const vhostFd = spec.fds?.vhostVsock;
    args.push('-device', `vhost-vsock-device,guest-cid=${spec.vsock.guestCid}${vhostFd === undefined ? '' : `,vhostfd=${vhostFd}`}`);
  }
  (spec.nics ?? []).forEach((nic, i) => {
    // The tap exists already (shim/sandbox/network/mirror.ts), or is created by the launcher (a pooled VM's, in
    // QEMU's own network namespace; it goes when QEMU does), which passes it as a descriptor. By name (script=no:
    // QEMU only attaches) without a launcher.
    args.push(
      '-netdev', `tap,id=net${i},${tapBackend(spec, nic, i)}`,
      // host_mtu tells the guest driver the MTU (VIRTIO_NET_F_MTU), and caps it; the agent sets it too.
      '-device', `virtio-net-device,netdev=net${i},mac=${nic.mac}${nic.mtu === undefined ? '' : `,host_mtu=${nic.mtu}`}`,
    );
  });
  return args;
}

/** A socket chardev's address: the descriptor the launcher passed, else the path. */
function socketAt(socketPath: string, fd: number | undefined): string {
  return fd === undefined ? `path=${escapeOpt(socketPath)}` : `fd=${fd}`;
}

/** A tap netdev's backend: the launcher's tap (and vhost-net) descriptors, else the tap by name. */
function tapBackend(spec: QemuCommandSpec, nic: VmNic, i: number): string {
  const tap = spec.fds?.taps[i];
  if (tap === undefined) return `ifname=${escapeOpt(nic.tap)},script=no,downscript=no${spec.vhostNet ? ',vhost=on' : ''}`;
  const vhost = spec.fds?.vhostNet[i];
  return `fd=${tap}${spec.vhostNet && vhost !== undefined ? `,vhost=on,vhostfd=${vhost}` : ''}`;
}

/** QEMU option values are comma-separated; a literal comma in a path is written twice. */
function escapeOpt(value: string): string {
  return value.replaceAll(',', ',,');
}

/** True when the VM gets more RAM than the guest may use at first: the balloon holds the difference. */
export const canGrow = (spec: { memoryMiB: number; maxMemoryMiB?: number }): boolean => (spec.maxMemoryMiB ?? 0) > spec.memoryMiB;
