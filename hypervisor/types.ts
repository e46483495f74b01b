// The seam between the sandbox manager and a VMM driver. QEMU microvm is the first driver; Cloud Hypervisor or
// Firecracker can be added behind the same interfaces (Hypervisor for one VM, VmDriver for the registry,
// hypervisor/registry.ts) without touching shim/.
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { VmRecord } from './record.js';

export type Acceleration = 'kvm' | 'tcg';

export interface AccelerationChoice {
  accel: Acceleration;
  /** One line saying why this choice was made (shown as a warning when it is TCG). */
  reason: string;
}

export interface VmConfig {
  /** Sandbox id, used in names and log lines. */
  id: string;
  /** Per-sandbox directory on the host: sockets, console log, shared dir live here. */
  dir: string;
  vcpus: number;
  /** Guest RAM the guest may use. */
  memoryMiB: number;
  /**
   * Guest RAM the VM is given, when more than memoryMiB: the balloon holds the rest from boot (untouched, so the host
   * does not pay for it) until setMemory() gives it to the guest. Absent: the VM cannot grow.
   */
  maxMemoryMiB?: number;
  kernelPath: string;
  initrdPath: string;
  /** Optional read-only root image on virtio-blk (erofs). */
  rootImagePath?: string;
  kernelCmdline: string;
  /** Host directory exported over virtio-fs with tag `hullshared`. */
  sharedDir: string;
  accel: 'auto' | Acceleration;
  guestCid: number;
  /**
   * The pod's network namespace (a path), where the NICs' taps are: the VMM's launcher opens them there and hands them
   * to QEMU, which itself always runs in an empty network namespace of its own (docs/confinement.md). Absent: the
   * caller's namespace.
   */
  netnsPath?: string;
  /**
   * The NICs' taps are created in QEMU's own network namespace (nothing else is in it): a pooled VM's, moved into a
   * pod's namespace when it is claimed. Not with netnsPath.
   */
  privateNetns?: boolean;
  /** One virtio-net device each, backed by a tap (where: netnsPath, privateNetns), with the pod interface's MAC and MTU. */
  nics?: VmNic[];
}

export interface VmNic {
  tap: string;
  mac: string;
  /** Given to the guest driver as the most it may use (VIRTIO_NET_F_MTU); absent: up to 65535 (a pooled VM's NIC). */
  mtu?: number;
}

export interface VmExit {
  /** How QEMU ended: 'shutdown' (guest powered off), 'quit' (we asked), 'crashed' (died on its own), 'killed'. */
  reason: 'shutdown' | 'quit' | 'crashed' | 'killed';
  code: number | null;
  signal: NodeJS.Signals | null;
  /** QEMU's own word for it when known (QMP SHUTDOWN reason such as 'guest-shutdown', 'guest-panic'), for logs. */
  detail?: string;
}

export interface HypervisorCapabilities {
  pause: boolean;
  hotplug: boolean;
  sharedFs: 'virtio-fs';
  vsock: 'hybrid' | 'vhost-vsock';
}

/** One host process of a VM: the VMM itself, or one of its helpers. */
export interface VmProcess {
  /** What it is to the driver: 'vmm' for the VMM, a name of the driver's choosing for a helper ('virtiofsd', …). */
  role: string;
  pid: number;
  /**
   * Field 22 of /proc/<pid>/stat, so a later cleanup never signals an unrelated process that reused a recorded pid.
   * Absent when it could not be read: then the pid alone is trusted.
   */
  startTime?: number;
}

/**
 * Host processes that belong to one VM, for leak checks, memory accounting and crash recovery. `{}` means none (yet,
 * or any more). Records written before drivers and helper lists are read into this shape (hypervisor/vm-processes.ts).
 */
export interface VmProcesses {
  /** The driver that started them (hypervisor/registry.ts); absent: 'qemu-microvm', the first and default driver. */
  driver?: string;
  /** The VMM (role 'vmm'): the VM lives as long as it does. */
  vmm?: VmProcess;
  /** The VMM's helpers, in the order they started (they are ended in reverse, after the VMM). */
  helpers?: VmProcess[];
}

export interface Hypervisor {
  readonly capabilities: HypervisorCapabilities;
  readonly accel: AccelerationChoice;
  /** Starts helpers (vsock backend, virtiofsd) and QEMU; resolves once QMP answers and the VM runs. */
  start(): Promise<void>;
  /**
   * Graceful: the caller has already asked the guest (agent) to power off; this waits up to timeoutMs for QEMU to
   * exit, then QMP quit, then SIGKILL. Always leaves no process.
   */
  stop(timeoutMs?: number): Promise<VmExit>;
  /** Forced stop: quit over QMP, then SIGKILL every helper. */
  kill(): Promise<VmExit>;
  /** Resolves when QEMU has exited (for any reason) and every helper has been stopped. */
  wait(): Promise<VmExit>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Opens a stream to a guest vsock port (host-initiated). Rejects if the guest does not accept. */
  connectVsock(port: number, timeoutMs: number): Promise<Duplex>;
  processes(): VmProcesses;
  /**
   * Stops managing the VM without touching it, so another process can reattach to it (a detached CLI call exiting; a
   * pool handing a VM to its claimer): the control connection closes, the VM keeps running.
   */
  release(): void;
  /** The last lines of the guest console, for error messages. */
  consoleTail(lines?: number): string;
  /**
   * Where the guest's vCPUs are (host CPU used, instruction pointer, halted), for the error of a guest that stopped
   * answering; undefined when unknown. Optional: a driver without it reports the console only.
   */
  vcpuReport?(timeoutMs?: number): Promise<string | undefined>;
  /**
   * Lets the guest use `memoryMiB` of its RAM (up to VmConfig.maxMemoryMiB) and resolves once it has taken it: the
   * balloon deflates. Optional: a driver without it cannot grow a VM.
   */
  setMemory?(memoryMiB: number, timeoutMs?: number): Promise<void>;
  readonly consolePath: string;
  /** The VMM's name for messages ('QEMU'). */
  readonly vmmName: string;
}

/** What the sandbox manager tells any driver about a VM it creates or reattaches to. */
export interface VmOptions {
  logger: Logger;
  /** The VM outlives this process: helpers get their own session, stdio goes to files, nothing holds our loop. */
  detached?: boolean;
  /**
   * virtiofsd's sandbox. 'chroot' keeps virtiofsd in our mount namespace, so directories shared after boot are seen
   * in the guest; 'namespace' (the default) pins the share's mounts at boot.
   */
  virtiofsdSandbox?: 'namespace' | 'chroot';
  /** The driver to create the VM with (hypervisor/registry.ts); default 'qemu-microvm'. Reattaching reads the record's. */
  driver?: string;
  /**
   * Told the VM's processes each time one more has started, while start() is still under way, so a caller can put
   * each on record the moment it exists: a crash during a slow start then leaves nothing no record names.
   */
  onProcesses?: (processes: VmProcesses) => void;
}

/**
 * One VMM driver as the registry (hypervisor/registry.ts) sees it: everything a hull process needs to do with a VM of
 * this driver, whether it started the VM itself or finds it from its record (vmm.json) after another process did.
 */
export interface VmDriver {
  readonly name: string;
  /** A VM not started yet (Hypervisor.start boots it). */
  create(config: VmConfig, options: VmOptions): Hypervisor;
  /** The running VM that `record` (read from `dir`) describes. */
  reattach(dir: string, record: VmRecord, options: VmOptions): Promise<Hypervisor>;
  /** Ends the VM's processes from the record alone; with `dir`, removes what the VM left in it too. */
  killRecorded(processes: VmProcesses, dir: string | undefined): Promise<void>;
  /** A stream to a guest vsock port of the VM that `record` describes, over the transport it chose at start. */
  connectRecorded(dir: string, record: VmRecord, port: number, timeoutMs: number): Promise<Duplex>;
}
