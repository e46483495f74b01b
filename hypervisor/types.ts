// The seam between the sandbox manager and a VMM driver. QEMU microvm is the first driver; Cloud Hypervisor or
// Firecracker can be added behind the same interface without touching shim/.
import type { Duplex } from 'node:stream';

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
  memoryMiB: number;
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
   * The pod's network namespace (a path): QEMU runs in it, where it opens the NICs' taps by name. Absent: the
   * caller's namespace.
   */
  netnsPath?: string;
  /** One virtio-net device each, backed by a tap in netnsPath, with the pod interface's MAC and MTU. */
  nics?: VmNic[];
}

export interface VmNic {
  tap: string;
  mac: string;
  mtu: number;
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

/** Host processes that belong to one VM, for leak checks, memory accounting and crash recovery. */
export interface VmProcesses {
  vmm?: number;
  virtiofsd?: number;
  vsockBackend?: number;
  /**
   * Start time of each process (field 22 of /proc/<pid>/stat), so a later cleanup never signals an unrelated
   * process that reused a recorded pid. Optional: without it the pid alone is trusted.
   */
  startTimes?: { vmm?: number; virtiofsd?: number; vsockBackend?: number };
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
  /** The last lines of the guest console, for error messages. */
  consoleTail(lines?: number): string;
  readonly consolePath: string;
}
