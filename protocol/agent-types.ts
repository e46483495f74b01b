// Plain TypeScript shapes of the hull.agent.v1 messages (protocol/proto/agent.proto), as protobufjs produces and
// accepts them: camelCase names, 64-bit integers as numbers, bytes as Buffer, absent fields at their defaults.
// Shared by the host's AgentClient and the guest's service so both sides agree at compile time.

export type Empty = Record<string, never>;

export interface HealthResponse {
  status: string;
  agentVersion: string;
}

export interface GuestDetailsResponse {
  kernelRelease: string;
  vcpus: number;
  memoryBytes: number;
  agentVersion: string;
  uptimeSeconds: number;
}

export interface ContainerRef {
  containerId: string;
}

export interface ProcessRef {
  containerId: string;
  /** Empty for the container's init process. */
  execId: string;
}

export interface CreateContainerRequest {
  containerId: string;
  /** The OCI runtime spec (config.json) as JSON text. */
  specJson: string;
  /** Guest directory holding the container root. */
  rootfsPath: string;
  /** false: the process's stdin is /dev/null. */
  stdin: boolean;
  /** Host bundle directory, for the startContainer hooks' state; empty: the container's directory in the share. */
  bundle?: string;
  /** The node's hostname, for a container that keeps the host's UTS namespace; AgentClient fills in os.hostname(). */
  hostHostname?: string;
}

export interface PidResponse {
  pid: number;
}
export type CreateContainerResponse = PidResponse;
export type StartResponse = PidResponse;

export interface ExecProcessRequest {
  containerId: string;
  execId: string;
  /** An OCI "process" object as JSON text. */
  processJson: string;
  stdin: boolean;
}

export interface SignalProcessRequest {
  containerId: string;
  execId: string;
  signal: number;
  all: boolean;
}

export interface WaitProcessResponse {
  /** 0..255; a signal n is reported as 128+n. */
  exitStatus: number;
  /** The signal that ended the helper itself, 0 otherwise (see agent/process.ts). */
  signal: number;
}

export interface WriteStdinRequest {
  containerId: string;
  execId: string;
  data: Buffer;
}
export interface WriteStdinResponse {
  len: number;
}

export interface ReadStreamRequest {
  containerId: string;
  execId: string;
  maxLen: number;
}
export interface ReadStreamResponse {
  /** Empty means EOF. */
  data: Buffer;
}

export interface ProcessInfo {
  pid: number;
  execId: string;
  command: string;
}
export interface ListProcessesResponse {
  processes: ProcessInfo[];
}

export interface RemoveContainerRequest {
  containerId: string;
  timeoutMs: number;
}

export interface ResizePtyRequest {
  containerId: string;
  /** Empty for the container's init process. */
  execId: string;
  /** Columns. */
  width: number;
  /** Rows. */
  height: number;
}

export interface UpdateContainerRequest {
  containerId: string;
  /** An OCI LinuxResources object as JSON text. */
  resourcesJson: string;
}

export interface StatsContainerResponse {
  memoryCurrent: number;
  /** 0: no limit. */
  memoryMax: number;
  memorySwapCurrent: number;
  /** 0: no limit. */
  memorySwapMax: number;
  memoryStat: Record<string, number>;
  cpuStat: Record<string, number>;
  pidsCurrent: number;
  /** 0: no limit. */
  pidsMax: number;
  memoryEvents: Record<string, number>;
}

export interface IpAddress {
  family: 4 | 6;
  address: string;
  prefixLength: number;
}

export interface NetInterface {
  /** The interface's name in the pod's network namespace; the guest NIC gets it. */
  name: string;
  mac: string;
  mtu: number;
  addresses: IpAddress[];
  /** The guest NIC's MAC now, when it is not `mac` (a pooled VM's NIC): the guest finds the NIC by it and sets `mac`. */
  guestMac?: string;
}

export interface NetRoute {
  family: 4 | 6;
  /** "default" or a CIDR. */
  destination: string;
  /** Empty: on-link. */
  gateway: string;
  device: string;
  /** "link", "global", or empty. */
  scope: string;
  metric: number;
  /** Preferred source address, or empty. */
  source: string;
}

export interface NetNeighbor {
  family: 4 | 6;
  address: string;
  mac: string;
  device: string;
}

/** What the guest's network is made of: the pod namespace's interfaces that reach the VM, their routes and neighbours. */
export interface SetupNetworkRequest {
  interfaces: NetInterface[];
  routes: NetRoute[];
  neighbors: NetNeighbor[];
}

/** A pooled VM handed to its sandbox: the host's clock and entropy (Claim). */
export interface ClaimRequest {
  unixTimeMs: number;
  entropy: Buffer;
  /** The MACs of NICs the sandbox has no pod interface for: the guest unbinds their driver, so no container sees them. */
  unusedMacs: string[];
}

export interface ClaimResponse {
  /** Guest minus host before the guest clock was stepped, in ms. */
  clockStepMs: number;
}
