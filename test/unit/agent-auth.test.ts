// The agent's door check (protocol/agent-auth.ts, agent/host-auth.ts, hypervisor/agent-key.ts) over real Unix
// sockets, as on the hybrid vsock path: the right key gets ttrpc answers (also for requests sent right behind the
// proof); a wrong proof, no proof, a short proof or a bare ttrpc request (a host without the key) is closed with
// nothing but the challenge sent and no handler run; the host refuses a guest that does not open with a challenge.
import { chmodSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readAgentKeyFile, serveProven } from '../../agent/host-auth.js';
import { AgentKeyError, createAgentKey, readAgentKey } from '../../hypervisor/agent-key.js';
import { AgentAuthError, CHALLENGE_BYTES, newAgentKeyText, parseAgentKey, PROOF_BYTES, proveToAgent } from '../../protocol/agent-auth.js';
import { AgentClient } from '../../protocol/agent-client.js';
import { agentService } from '../../protocol/proto.js';
import { duplexPair } from '../../protocol/ttrpc/duplex-pair.js';
import { collectUntilClose, healthRequestFrame } from '../helpers/agent-door.js';
import { TtrpcServer } from '../../protocol/ttrpc/server.js';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-agent-auth-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const KEY = parseAgentKey(newAgentKeyText(), 'test key');
const OTHER_KEY = parseAgentKey(newAgentKeyText(), 'other test key');

interface Agent {
  path: string;
  /** Health calls the agent's handler ran. */
  calls: number;
  /** Why connections were refused, in order. */
  refused: string[];
  /** Settles once `n` connections were refused. */
  refusals(n: number): Promise<void>;
}

const servers: net.Server[] = [];
/** Both ends of every connection, destroyed after each test so that a failing test cannot hold the listener open. */
const sockets: net.Socket[] = [];
afterEach(async () => {
  sockets.splice(0).forEach((s) => s.destroy());
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** An agent on a Unix socket: the door check in front of a ttrpc server with a Health handler. */
async function startAgent(proofTimeoutMs = 2_000): Promise<Agent> {
  const sockPath = path.join(tmp, `agent-${servers.length}-${Date.now()}.sock`);
  const waiters: Array<() => void> = [];
  const agent: Agent = {
    path: sockPath,
    calls: 0,
    refused: [],
    refusals: (n) => new Promise((resolve) => {
      const check = (): void => (agent.refused.length >= n ? resolve() : void waiters.push(check));
      check();
    }),
  };
  const server = new TtrpcServer();
  server.registerService(agentService(), {
    Health: () => {
      agent.calls++;
      return { status: 'SERVING', agentVersion: 'test' };
    },
  });
  const listener = net.createServer((sock) => {
    sockets.push(sock);
    sock.on('error', () => undefined);
    serveProven(sock, KEY, (s) => server.serve(s), (err) => {
      agent.refused.push(err.message);
      waiters.splice(0).forEach((w) => w());
    }, proofTimeoutMs);
  });
  servers.push(listener);
  await new Promise<void>((resolve) => listener.listen(sockPath, resolve));
  return agent;
}

function connect(p: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection({ path: p }, () => resolve(s));
    sockets.push(s);
    s.once('error', reject);
  });
}

describe('agent door check', () => {
  it('serves a host that proves the key, including requests sent right behind the proof', async () => {
    const agent = await startAgent();
    const sock = await connect(agent.path);
    await proveToAgent(sock, KEY, 2_000);
    const client = new AgentClient(sock);
    const answers = await Promise.all([client.health(), client.health()]);
    expect(answers.map((a) => a.status)).toEqual(['SERVING', 'SERVING']);
    expect(agent.calls).toBe(2);
    client.close();
  });

  it('closes a connection that proves another key, with nothing but the challenge sent and nothing served', async () => {
    const agent = await startAgent();
    const sock = await connect(agent.path);
    const received = collectUntilClose(sock);
    await proveToAgent(sock, OTHER_KEY, 2_000); // answers the challenge with the wrong key's proof
    sock.write(await healthRequestFrame());
    expect((await received).length).toBe(CHALLENGE_BYTES);
    await agent.refusals(1);
    expect(agent.refused[0]).toMatch(/does not hold the agent key/);
    expect(agent.calls).toBe(0);
  });

  it('closes a connection that sends a ttrpc request instead of a proof (a host without the key)', async () => {
    const agent = await startAgent();
    const sock = await connect(agent.path);
    const received = collectUntilClose(sock);
    const frame = await healthRequestFrame();
    // Padded to a full proof's length, so the agent judges it rather than waiting for more bytes.
    sock.write(frame.length >= PROOF_BYTES ? frame : Buffer.concat([frame, Buffer.alloc(PROOF_BYTES - frame.length)]));
    expect((await received).length).toBe(CHALLENGE_BYTES);
    await agent.refusals(1);
    expect(agent.calls).toBe(0);
  });

  it('closes a connection that sends no proof within the deadline, or a short one and hangs up', async () => {
    const agent = await startAgent(300);
    const silent = await connect(agent.path);
    const started = Date.now();
    expect((await collectUntilClose(silent)).length).toBe(CHALLENGE_BYTES);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    const short = await connect(agent.path);
    const received = collectUntilClose(short);
    short.end(Buffer.alloc(PROOF_BYTES - 1, 7));
    expect((await received).length).toBe(CHALLENGE_BYTES);
    await agent.refusals(2);
    expect(agent.refused.join('\n')).toMatch(/no proof from the host within 300 ms/);
    expect(agent.refused.join('\n')).toMatch(/ended after 31 of the 32 bytes|closed before/);
    expect(agent.calls).toBe(0);
  });

  it('the host refuses a guest that does not open with a challenge, reading no more than one', async () => {
    const [host, guest] = duplexPair();
    guest.write(Buffer.alloc(4096, 0x41)); // a hostile guest's flood
    const err = await proveToAgent(host, KEY, 1_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentAuthError);
    expect((err as Error).message).toMatch(/did not open with a hull v1 challenge/);
    expect(host.destroyed).toBe(true);
  });

  it('the host gives up on a guest that sends no challenge, and on one that hangs up', async () => {
    const [host] = duplexPair();
    await expect(proveToAgent(host, KEY, 100)).rejects.toThrow(/no challenge from the agent within 100 ms/);
    const [host2, guest2] = duplexPair();
    guest2.end(Buffer.from('HULL'));
    await expect(proveToAgent(host2, KEY, 1_000)).rejects.toThrow(/ended after 4 of the 41 bytes|closed before/);
  });

  it('a proof is good for its own connection only (a fresh challenge each time)', async () => {
    const agent = await startAgent();
    // Record what a host holding the key answers on one connection, then replay it on another.
    const first = await connect(agent.path);
    const proofSeen = new Promise<Buffer>((resolve) => {
      const write = first.write.bind(first) as (chunk: Buffer) => boolean;
      (first as unknown as { write: (c: Buffer) => boolean }).write = (c: Buffer) => {
        resolve(Buffer.from(c));
        return write(c);
      };
    });
    await proveToAgent(first, KEY, 2_000);
    const proof = await proofSeen;
    first.destroy();
    const replay = await connect(agent.path);
    const received = collectUntilClose(replay);
    await new Promise((r) => replay.once('readable', r)); // the new challenge is there
    replay.write(proof);
    expect((await received).length).toBe(CHALLENGE_BYTES);
    await agent.refusals(1);
    expect(agent.calls).toBe(0);
  });
});

describe('agent key files', () => {
  it('the host writes a key only its owner can read, and reads it back', () => {
    const file = path.join(mkdtempSync(path.join(tmp, 'vm-')), 'agent.key');
    createAgentKey(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readAgentKey(file)).toHaveLength(32);
    // The guest reads the same text form (from fw_cfg in a VM, from a file here).
    expect(readAgentKeyFile(file).equals(readAgentKey(file))).toBe(true);
  });

  it('refuses a missing key, one others may read, a symlink, and one that is not a key', () => {
    const dir = mkdtempSync(path.join(tmp, 'vm-'));
    const missing = readErr(path.join(dir, 'agent.key'));
    expect(missing).toBeInstanceOf(AgentKeyError);
    expect((missing as AgentKeyError).kind).toBe('not-found');
    const open = path.join(dir, 'open.key');
    writeFileSync(open, newAgentKeyText());
    chmodSync(open, 0o644);
    expect((readErr(open) as Error).message).toMatch(/only its owner can read/);
    const link = path.join(dir, 'link.key');
    const target = path.join(dir, 'target.key');
    createAgentKey(target);
    symlinkSync(target, link);
    expect(readErr(link)).toBeInstanceOf(AgentKeyError);
    const junk = path.join(dir, 'junk.key');
    writeFileSync(junk, 'x'.repeat(1000), { mode: 0o600 });
    expect((readErr(junk) as Error).message).toMatch(/is not an agent key/);
    expect(() => readAgentKeyFile(path.join(dir, 'none'))).toThrow(/no agent key at/);
  });
});

function readErr(file: string): unknown {
  try {
    readAgentKey(file);
  } catch (err) {
    return err;
  }
  throw new Error(`reading ${file} did not fail`);
}
