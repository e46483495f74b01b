// The one way the host reaches a VM's guest agent: a stream to its vsock port (through the Hypervisor object that
// runs or reattached the VM, or from the VM's record alone), the door check the agent asks of every connection (the
// VM's agent key, read from the VM's directory, protocol/agent-auth.ts), then the ttrpc client. Every caller — boot,
// a pooled VM's claim, the pool's power-off, `hull start`/`exec`/`kill` — comes through here, so no caller can reach
// the agent without the proof, and the proof is written once.
import type { Duplex } from 'node:stream';
import { readAgentKey } from '../../hypervisor/agent-key.js';
import { sandboxPaths } from '../../hypervisor/paths.js';
import { connectRecordedVm } from '../../hypervisor/registry.js';
import type { Hypervisor } from '../../hypervisor/types.js';
import { proveToAgent } from '../../protocol/agent-auth.js';
import { AgentClient, type AgentClientOptions } from '../../protocol/agent-client.js';
import { AGENT_PORT } from './paths.js';

/** Bound on the agent's challenge arriving once the connection is open: it sends it as soon as it accepts. */
export const AGENT_CHALLENGE_MS = 10_000;

export interface AgentConnectOptions extends AgentClientOptions {
  /** The VM's Hypervisor object; absent: the VM is found from its record (vmm.json) in `vmDir`. */
  hypervisor?: Hypervisor;
  /** Bound on the agent's vsock port accepting (the guest may still be booting). */
  timeoutMs: number;
}

/**
 * A client of the agent of the VM that lives in `vmDir`, which has accepted this host side's proof of the VM's agent
 * key. Rejects with the transport's error (AgentUnreachableError, …), an AgentKeyError (no key in `vmDir`) or an
 * AgentAuthError (the guest closed the connection or broke the handshake).
 */
export async function connectAgent(vmDir: string, options: AgentConnectOptions): Promise<AgentClient> {
  const { hypervisor, timeoutMs, ...clientOptions } = options;
  const key = readAgentKey(sandboxPaths(vmDir).agentKey); // first: no key, no point in waiting for the guest
  const stream: Duplex = hypervisor ? await hypervisor.connectVsock(AGENT_PORT, timeoutMs) : await connectRecordedVm(vmDir, AGENT_PORT, timeoutMs);
  await proveToAgent(stream, key, AGENT_CHALLENGE_MS);
  return new AgentClient(stream, clientOptions);
}
