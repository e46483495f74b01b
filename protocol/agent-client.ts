// Typed client of the guest agent (hull.agent.v1.Agent over ttrpc). The host's sandbox manager owns one per VM.
// Replies come from the guest, which is untrusted: the ttrpc layer caps frame sizes, and values are used as data only.
import os from 'node:os';
import type { Duplex } from 'node:stream';
import type * as T from './agent-types.js';
import { agentService, AGENT_SERVICE, methodTypes } from './proto.js';
import { TtrpcClient, type CallOptions } from './ttrpc/client.js';
import { asBuffer } from './ttrpc/envelope.js';

export type { CallOptions } from './ttrpc/client.js';
export type * from './agent-types.js';

export interface AgentClientOptions {
  /** Deadline for calls that should answer promptly (everything but wait, reads and stdin writes). Default 60 s. */
  defaultTimeoutMs?: number;
}

/** Calls that block on the workload (by design, like Kata's WaitProcess) get no deadline unless the caller sets one. */
const UNBOUNDED = new Set(['WaitProcess', 'ReadStdout', 'ReadStderr', 'WriteStdin']);

export class AgentClient {
  private readonly ttrpc: TtrpcClient;
  private readonly service = agentService();
  private readonly defaultTimeoutMs: number;

  constructor(stream: Duplex, options: AgentClientOptions = {}) {
    this.ttrpc = new TtrpcClient(stream);
    this.defaultTimeoutMs = options.defaultTimeoutMs ?? 60_000;
  }

  get closed(): boolean {
    return this.ttrpc.closed;
  }

  /** Runs once when the connection ends (the VM died, or close() was called). */
  onClose(listener: (err: Error) => void): void {
    this.ttrpc.onClose(listener);
  }

  close(): void {
    this.ttrpc.close();
  }

  health(opts?: CallOptions): Promise<T.HealthResponse> {
    return this.call('Health', {}, opts);
  }

  guestDetails(opts?: CallOptions): Promise<T.GuestDetailsResponse> {
    return this.call('GuestDetails', {}, opts);
  }

  /** The host's hostname goes with every create (both front ends): the guest cannot know the node's name. */
  createContainer(req: T.CreateContainerRequest, opts?: CallOptions): Promise<T.CreateContainerResponse> {
    return this.call('CreateContainer', { ...req, hostHostname: req.hostHostname ?? os.hostname() }, opts);
  }

  startContainer(containerId: string, opts?: CallOptions): Promise<T.StartResponse> {
    return this.call('StartContainer', { containerId }, opts);
  }

  execProcess(req: T.ExecProcessRequest, opts?: CallOptions): Promise<T.StartResponse> {
    return this.call('ExecProcess', req, opts);
  }

  /** Signals the init (execId '') or an exec; `all` signals every process of the container. */
  async signalProcess(containerId: string, execId: string, signal: number, all = false, opts?: CallOptions): Promise<void> {
    await this.call('SignalProcess', { containerId, execId, signal, all }, opts);
  }

  waitProcess(containerId: string, execId = '', opts?: CallOptions): Promise<T.WaitProcessResponse> {
    return this.call('WaitProcess', { containerId, execId }, opts);
  }

  /** Resolves once the agent has written all of `data` to the pipe (it waits while the pipe is full). */
  async writeStdin(containerId: string, execId: string, data: Buffer, opts?: CallOptions): Promise<void> {
    await this.call<T.WriteStdinResponse>('WriteStdin', { containerId, execId, data }, opts);
  }

  async closeStdin(containerId: string, execId = '', opts?: CallOptions): Promise<void> {
    await this.call('CloseStdin', { containerId, execId }, opts);
  }

  /** Up to maxLen bytes (the agent caps it at 1 MiB); waits for output; an empty Buffer means EOF. */
  async readStdout(containerId: string, execId: string, maxLen: number, opts?: CallOptions): Promise<Buffer> {
    const res = await this.call<T.ReadStreamResponse>('ReadStdout', { containerId, execId, maxLen }, opts);
    return asBuffer(res.data);
  }

  async readStderr(containerId: string, execId: string, maxLen: number, opts?: CallOptions): Promise<Buffer> {
    const res = await this.call<T.ReadStreamResponse>('ReadStderr', { containerId, execId, maxLen }, opts);
    return asBuffer(res.data);
  }

  async listProcesses(containerId: string, opts?: CallOptions): Promise<T.ProcessInfo[]> {
    const res = await this.call<T.ListProcessesResponse>('ListProcesses', { containerId }, opts);
    return res.processes;
  }

  /** Forgets an exited exec in the agent (its status and any unread output). */
  async removeProcess(containerId: string, execId: string, opts?: CallOptions): Promise<void> {
    await this.call('RemoveProcess', { containerId, execId }, opts);
  }

  /** SIGKILLs every process of the container, waits up to timeoutMs (agent default when 0), frees its cgroup. */
  async removeContainer(containerId: string, timeoutMs = 0, opts?: CallOptions): Promise<void> {
    await this.call('RemoveContainer', { containerId, timeoutMs }, opts);
  }

  /** cgroup v2 accounting of the container (memory, CPU, pids), as the guest kernel reports it. */
  statsContainer(containerId: string, opts?: CallOptions): Promise<T.StatsContainerResponse> {
    return this.call('StatsContainer', { containerId }, opts);
  }

  /** Applies OCI linux.resources (JSON) to the container's cgroup in the guest. */
  async updateContainer(req: T.UpdateContainerRequest, opts?: CallOptions): Promise<void> {
    await this.call('UpdateContainer', req, opts);
  }

  /** Sets the window size of the process's terminal (the process must have been started with process.terminal). */
  async resizePty(req: T.ResizePtyRequest, opts?: CallOptions): Promise<void> {
    await this.call('ResizePty', req, opts);
  }

  /** Configures the guest's NICs, routes and neighbours (once, before the first container). */
  async setupNetwork(req: T.SetupNetworkRequest, opts?: CallOptions): Promise<void> {
    await this.call('SetupNetwork', req, opts);
  }

  /** Hands a pooled VM to its sandbox: sets the guest clock and credits host entropy; says how far the clock moved. */
  claim(req: T.ClaimRequest, opts?: CallOptions): Promise<T.ClaimResponse> {
    return this.call('Claim', req, opts);
  }

  /** The agent kills every container, syncs and powers the guest off after replying. */
  async destroySandbox(opts?: CallOptions): Promise<void> {
    await this.call('DestroySandbox', {}, opts);
  }

  private call<Res>(method: string, request: object, opts: CallOptions = {}): Promise<Res> {
    const { requestType, responseType } = methodTypes(this.service, method);
    const timeoutMs = opts.timeoutMs ?? (UNBOUNDED.has(method) ? 0 : this.defaultTimeoutMs);
    return this.ttrpc.call<Res>(AGENT_SERVICE, method, requestType, responseType, request, { ...opts, timeoutMs });
  }
}
