// What the task service needs from a pod's VM, as an interface so the service can be tested with fakes. The real
// one is the core's Sandbox (shim/sandbox/sandbox.ts, made by vm-pod.ts): one VM per pod, container roots shared in
// over virtio-fs.
import type { VmProcesses } from '../../hypervisor/types.js';
import type { AgentClient } from '../../protocol/agent-client.js';
import type { VmUsage } from '../sandbox/sandbox.js';
import type { HostBind } from '../sandbox/share-mounts.js';
import type { VmSize } from '../sandbox/vm-sizing.js';

export type PodAgent = Pick<
  AgentClient,
  | 'createContainer'
  | 'startContainer'
  | 'execProcess'
  | 'signalProcess'
  | 'waitProcess'
  | 'readStdout'
  | 'readStderr'
  | 'writeStdin'
  | 'closeStdin'
  | 'listProcesses'
  | 'removeProcess'
  | 'removeContainer'
  | 'statsContainer'
  | 'updateContainer'
  | 'resizePty'
>;

export type { VmUsage };

export interface PodVm {
  readonly agent: PodAgent;
  /**
   * Makes a host directory visible in the guest as the root of `containerId`, with the host sources its spec binds
   * (shim/sandbox/share-mounts.ts); returns the guest path of the root. removeContainer removes all of it.
   */
  addContainer(containerId: string, hostRootfs: string, binds: HostBind[]): string;
  removeContainer(containerId: string): void;
  pause(): Promise<void>;
  resume(): Promise<void>;
  usage(): VmUsage;
  /** The VM's size now: its memory grows with growMemory, up to maxMemoryMiB. */
  readonly vmSize: VmSize | undefined;
  /** Gives the guest more of the VM's RAM (Update of a limit above it): the balloon deflates. */
  growMemory(memoryMiB: number): Promise<void>;
  /** The VM's host processes: its VMM's pid is the host pid reported for every task of the pod (service.ts). */
  processes(): VmProcesses;
  /**
   * Resolves with a one-line reason once the VM is gone: QEMU exited on its own, or the agent connection was lost
   * (the VM is then useless, so it is stopped), or shutdown() was called. Always settles after the agent is lost.
   */
  readonly died: Promise<string>;
  /** Powers the guest off and removes every host resource of the VM. Idempotent. */
  shutdown(): Promise<void>;
}

export interface BootRequest {
  /** The first container: its root is shared before the VM starts. */
  containerId: string;
  hostRootfs: string;
  /** Its host bind sources, mounted into the share before the VM starts too. */
  binds: HostBind[];
  /** Its OCI spec, for VM sizing and the pod's host cgroup (linux.cgroupsPath). */
  spec: import('../oci-spec.js').OciSpec;
  /** The create request's runc options asked for the systemd cgroup driver (runtime-options.ts). */
  systemdCgroup?: boolean;
}

export interface PodVmFactory {
  boot(req: BootRequest): Promise<PodVm>;
}

/** Mounts containerd asks for (CreateTaskRequest.rootfs), on the host. */
export interface RootfsMounter {
  mount(mounts: MountSpec[], target: string): void;
  unmount(target: string): void;
}

export interface MountSpec {
  type: string;
  source: string;
  target: string;
  options: string[];
}
