// A kubelet-like CRI client for tests: containerd's runtime.v1 RuntimeService and ImageService over gRPC
// (@grpc/grpc-js) on containerd's main socket, typed for the subset in test/cri/runtime-v1.proto. Field names are the
// proto's in camelCase; int64 values arrive as decimal strings (nanosecond times do not fit a JS number); enums as
// their names.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import { repo } from './hull.js';

const PROTO = path.join(repo, 'test', 'cri', 'runtime-v1.proto');

/** int64 as proto-loader hands it out (longs: String). */
export type Int64 = string;
export type NamespaceMode = 'POD' | 'CONTAINER' | 'NODE' | 'TARGET';
export type ContainerState = 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';
export type PodSandboxState = 'SANDBOX_READY' | 'SANDBOX_NOTREADY';

export interface NamespaceOption {
  network?: NamespaceMode;
  pid?: NamespaceMode;
  ipc?: NamespaceMode;
}

export interface PodSandboxMetadata {
  name: string;
  uid: string;
  namespace: string;
  attempt?: number;
}

export interface PodSandboxConfig {
  metadata: PodSandboxMetadata;
  hostname?: string;
  logDirectory?: string;
  dnsConfig?: { servers?: string[]; searches?: string[]; options?: string[] };
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  linux?: { cgroupParent?: string; securityContext?: { namespaceOptions?: NamespaceOption } };
}

export interface ContainerConfig {
  metadata: { name: string; attempt?: number };
  image: { image: string };
  command?: string[];
  args?: string[];
  workingDir?: string;
  envs?: Array<{ key: string; value: string }>;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Relative to the sandbox's log_directory. */
  logPath?: string;
  /** Keep the container's stdin open (what Attach writes to); `stdinOnce`: close it when the first attach ends. */
  stdin?: boolean;
  stdinOnce?: boolean;
  tty?: boolean;
  linux?: {
    resources?: LinuxContainerResources;
    securityContext?: { namespaceOptions?: NamespaceOption; runAsUser?: { value: number } };
  };
}

/** What the kubelet derives from a container's requests and limits (cpu_period/quota in µs, shares 2…262144). */
export interface LinuxContainerResources {
  cpuPeriod?: number;
  cpuQuota?: number;
  cpuShares?: number;
  memoryLimitInBytes?: number;
  oomScoreAdj?: number;
}

export interface VersionResponse {
  version: string;
  runtimeName: string;
  runtimeVersion: string;
  runtimeApiVersion: string;
}

export interface PodSandboxStatus {
  id: string;
  metadata: PodSandboxMetadata;
  state: PodSandboxState;
  createdAt: Int64;
  network: { ip: string; additionalIps: Array<{ ip: string }> } | null;
  linux: { namespaces: { options: NamespaceOption | null } | null } | null;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  runtimeHandler: string;
}

export interface PodSandbox {
  id: string;
  metadata: PodSandboxMetadata;
  state: PodSandboxState;
  createdAt: Int64;
  labels: Record<string, string>;
  runtimeHandler: string;
}

export interface Container {
  id: string;
  podSandboxId: string;
  metadata: { name: string; attempt: number };
  image: { image: string } | null;
  imageRef: string;
  state: ContainerState;
  createdAt: Int64;
  labels: Record<string, string>;
}

export interface ContainerStatus {
  id: string;
  metadata: { name: string; attempt: number };
  state: ContainerState;
  createdAt: Int64;
  startedAt: Int64;
  finishedAt: Int64;
  exitCode: number;
  image: { image: string } | null;
  imageRef: string;
  reason: string;
  message: string;
  logPath: string;
}

/** Which streams a streaming Exec/Attach carries; with `tty`, stderr must be false (the pty merges it). */
export interface StreamOptions {
  stdin?: boolean;
  stdout?: boolean;
  stderr?: boolean;
  tty?: boolean;
}

export interface ExecSyncResponse {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

interface UInt64Value {
  value: Int64;
}

export interface ContainerStats {
  attributes: { id: string; metadata: { name: string; attempt: number } | null } | null;
  cpu: { timestamp: Int64; usageCoreNanoSeconds: UInt64Value | null } | null;
  memory: {
    timestamp: Int64;
    workingSetBytes: UInt64Value | null;
    availableBytes: UInt64Value | null;
    usageBytes: UInt64Value | null;
  } | null;
}

export interface Image {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  size: Int64;
  uid: { value: Int64 } | null;
  username: string;
}

/** A CRI call that failed: which method, the gRPC status and containerd's message. */
export class CriError extends Error {
  constructor(
    readonly method: string,
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(`CRI ${method} failed: ${grpc.status[code] ?? code}: ${details}`);
    this.name = 'CriError';
  }
}

type Unary = (req: object, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: unknown) => void) => void;

function loadServices(): { runtime: grpc.ServiceClientConstructor; image: grpc.ServiceClientConstructor } {
  const definition = protoLoader.loadSync(PROTO, { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    runtime: { v1: { RuntimeService: grpc.ServiceClientConstructor; ImageService: grpc.ServiceClientConstructor } };
  };
  return { runtime: pkg.runtime.v1.RuntimeService, image: pkg.runtime.v1.ImageService };
}

export class CriClient {
  private readonly runtime: grpc.Client;
  private readonly image: grpc.Client;

  /** `socket`: containerd's main gRPC socket (a path). */
  constructor(
    socket: string,
    private readonly timeoutMs = 120_000,
  ) {
    const { runtime, image } = loadServices();
    const address = `unix://${socket}`;
    this.runtime = new runtime(address, grpc.credentials.createInsecure());
    this.image = new image(address, grpc.credentials.createInsecure());
  }

  close(): void {
    this.runtime.close();
    this.image.close();
  }

  private call<T>(client: grpc.Client, method: string, req: object, timeoutMs = this.timeoutMs): Promise<T> {
    const fn = (client as unknown as Record<string, Unary>)[method];
    if (typeof fn !== 'function') return Promise.reject(new Error(`CRI client has no method ${method}`));
    return new Promise((resolve, reject) => {
      fn.call(client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(new CriError(method, err.code, err.details));
        else resolve(res as T);
      });
    });
  }

  // ---- RuntimeService

  version(): Promise<VersionResponse> {
    return this.call(this.runtime, 'Version', { version: 'v1' });
  }

  async runPodSandbox(config: PodSandboxConfig, runtimeHandler: string): Promise<string> {
    const r = await this.call<{ podSandboxId: string }>(this.runtime, 'RunPodSandbox', { config, runtimeHandler });
    return r.podSandboxId;
  }

  async podSandboxStatus(podSandboxId: string): Promise<PodSandboxStatus> {
    const r = await this.call<{ status: PodSandboxStatus }>(this.runtime, 'PodSandboxStatus', { podSandboxId });
    return r.status;
  }

  async listPodSandbox(filter: { id?: string; labelSelector?: Record<string, string> } = {}): Promise<PodSandbox[]> {
    const r = await this.call<{ items: PodSandbox[] }>(this.runtime, 'ListPodSandbox', { filter });
    return r.items;
  }

  async stopPodSandbox(podSandboxId: string): Promise<void> {
    await this.call(this.runtime, 'StopPodSandbox', { podSandboxId });
  }

  async removePodSandbox(podSandboxId: string): Promise<void> {
    await this.call(this.runtime, 'RemovePodSandbox', { podSandboxId });
  }

  async createContainer(podSandboxId: string, config: ContainerConfig, sandboxConfig: PodSandboxConfig): Promise<string> {
    const r = await this.call<{ containerId: string }>(this.runtime, 'CreateContainer', { podSandboxId, config, sandboxConfig });
    return r.containerId;
  }

  async startContainer(containerId: string): Promise<void> {
    await this.call(this.runtime, 'StartContainer', { containerId });
  }

  /** `timeoutSeconds`: grace period between the stop signal and SIGKILL. */
  async stopContainer(containerId: string, timeoutSeconds: number): Promise<void> {
    await this.call(this.runtime, 'StopContainer', { containerId, timeout: timeoutSeconds });
  }

  async removeContainer(containerId: string): Promise<void> {
    await this.call(this.runtime, 'RemoveContainer', { containerId });
  }

  async listContainers(filter: { id?: string; podSandboxId?: string } = {}): Promise<Container[]> {
    const r = await this.call<{ containers: Container[] }>(this.runtime, 'ListContainers', { filter });
    return r.containers;
  }

  async containerStatus(containerId: string): Promise<ContainerStatus> {
    const r = await this.call<{ status: ContainerStatus }>(this.runtime, 'ContainerStatus', { containerId });
    return r.status;
  }

  /** `timeoutSeconds` 0: no timeout on the runtime's side. */
  execSync(containerId: string, cmd: string[], timeoutSeconds = 0): Promise<ExecSyncResponse> {
    return this.call(this.runtime, 'ExecSync', { containerId, cmd, timeout: timeoutSeconds });
  }

  /** Streaming exec: the answer is a one-time URL on the runtime's stream server (see cri-stream.ts). */
  async exec(containerId: string, cmd: string[], streams: StreamOptions): Promise<string> {
    const r = await this.call<{ url: string }>(this.runtime, 'Exec', { containerId, cmd, ...streams });
    return r.url;
  }

  /** Attach to a running container's init: a one-time URL as for exec. */
  async attach(containerId: string, streams: StreamOptions): Promise<string> {
    const r = await this.call<{ url: string }>(this.runtime, 'Attach', { containerId, ...streams });
    return r.url;
  }

  async containerStats(containerId: string): Promise<ContainerStats> {
    const r = await this.call<{ stats: ContainerStats }>(this.runtime, 'ContainerStats', { containerId });
    return r.stats;
  }

  // ---- ImageService

  async listImages(): Promise<Image[]> {
    const r = await this.call<{ images: Image[] }>(this.image, 'ListImages', {});
    return r.images;
  }

  /** null when the runtime does not have the image (CRI answers an empty response, not an error). */
  async imageStatus(image: string): Promise<Image | null> {
    const r = await this.call<{ image: Image | null }>(this.image, 'ImageStatus', { image: { image } });
    return r.image;
  }
}
