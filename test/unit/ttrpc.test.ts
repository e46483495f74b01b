import { once } from 'node:events';
import os from 'node:os';
import type { Duplex } from 'node:stream';
import protobuf from 'protobufjs';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentClient } from '../../protocol/agent-client.js';
import type * as T from '../../protocol/agent-types.js';
import { ConnectionClosedError, TtrpcError } from '../../protocol/errors.js';
import { agentService } from '../../protocol/proto.js';
import { TtrpcClient } from '../../protocol/ttrpc/client.js';
import { Code } from '../../protocol/ttrpc/codes.js';
import { duplexPair } from '../../protocol/ttrpc/duplex-pair.js';
import { decodeResponse, encodeRequest } from '../../protocol/ttrpc/envelope.js';
import {
  decodeHeader,
  encodeFrame,
  FrameReader,
  HEADER_LENGTH,
  MESSAGE_LENGTH_MAX,
  MessageType,
  type Frame,
} from '../../protocol/ttrpc/frame.js';
import { TtrpcServer, type CallContext, type Handler } from '../../protocol/ttrpc/server.js';

const root = protobuf.parse(`
syntax = "proto3";
package test.v1;
service Echo {
  rpc Say(Msg) returns (Msg);
  rpc Fail(Msg) returns (Msg);
}
message Msg { string text = 1; int64 n = 2; bytes blob = 3; }
`).root;
const Msg = root.lookupType('test.v1.Msg');
const EchoService = root.lookupService('test.v1.Echo');

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function setup(handlers: Record<string, Handler>): { client: TtrpcClient; server: TtrpcServer; clientEnd: Duplex; serverEnd: Duplex } {
  const [clientEnd, serverEnd] = duplexPair();
  const server = new TtrpcServer();
  server.registerService(EchoService, handlers);
  server.serve(serverEnd);
  const client = new TtrpcClient(clientEnd);
  cleanups.push(() => {
    client.close();
    server.close();
  });
  return { client, server, clientEnd, serverEnd };
}

const say = (client: TtrpcClient, req: object, opts = {}) =>
  client.call<{ text: string; n: number; blob: Buffer }>('test.v1.Echo', 'Say', Msg, Msg, req, opts);

/** Sends raw frames to a server and collects the Response frames it writes back. */
function rawPeer(): { send: (f: Frame) => void; frames: Frame[]; next: () => Promise<Frame>; server: TtrpcServer; end: Duplex } {
  const [end, serverEnd] = duplexPair();
  const server = new TtrpcServer();
  server.registerService(EchoService, { Say: (r: { text: string }) => ({ text: r.text }) });
  server.serve(serverEnd);
  const reader = new FrameReader();
  const frames: Frame[] = [];
  end.on('data', (c: Buffer) => {
    for (const ev of reader.push(c)) if (ev.kind === 'frame') frames.push(ev.frame);
  });
  cleanups.push(() => end.destroy());
  return {
    send: (f) => end.write(encodeFrame(f)),
    frames,
    next: async () => {
      while (frames.length === 0) await once(end, 'data');
      return frames.shift()!;
    },
    server,
    end,
  };
}

describe('frames', () => {
  const frame = (streamId: number, text: string): Frame => ({ streamId, type: MessageType.Request, flags: 0, data: Buffer.from(text) });

  it('encodes the 10-byte big-endian header', () => {
    const buf = encodeFrame({ streamId: 0x01020304, type: 2, flags: 5, data: Buffer.from('abc') });
    expect(buf.subarray(0, HEADER_LENGTH).toString('hex')).toBe('00000003' + '01020304' + '02' + '05');
    expect(decodeHeader(buf)).toEqual({ length: 3, streamId: 0x01020304, type: 2, flags: 5 });
    expect(buf.subarray(HEADER_LENGTH).toString()).toBe('abc');
  });

  it('decodes frames split into single bytes', () => {
    const wire = Buffer.concat([encodeFrame(frame(1, 'hello')), encodeFrame(frame(3, '')), encodeFrame(frame(5, 'world!'))]);
    const reader = new FrameReader();
    const got: Frame[] = [];
    for (const b of wire) for (const ev of reader.push(Buffer.from([b]))) if (ev.kind === 'frame') got.push(ev.frame);
    expect(got.map((f) => [f.streamId, f.data.toString()])).toEqual([
      [1, 'hello'],
      [3, ''],
      [5, 'world!'],
    ]);
    expect(reader.pendingBytes).toBe(0);
  });

  it('decodes coalesced frames and a frame split across chunks', () => {
    const wire = Buffer.concat([encodeFrame(frame(1, 'a'.repeat(100))), encodeFrame(frame(3, 'b'.repeat(50)))]);
    const reader = new FrameReader();
    const first = reader.push(wire.subarray(0, 130));
    const second = reader.push(wire.subarray(130));
    expect(first).toHaveLength(1);
    expect(second).toHaveLength(1);
    expect(second[0]!.kind === 'frame' && second[0].frame.data.toString()).toBe('b'.repeat(50));
  });

  it('refuses to encode an oversize frame', () => {
    expect(() => encodeFrame({ streamId: 1, type: 1, flags: 0, data: Buffer.alloc(MESSAGE_LENGTH_MAX + 1) })).toThrow(/exceeds/);
  });

  it('skips an oversize frame without buffering it, then reads the next frame', () => {
    const reader = new FrameReader(1024);
    const header = Buffer.alloc(HEADER_LENGTH);
    header.writeUInt32BE(0xfffffff0, 0); // a hostile length: must not be allocated
    header.writeUInt32BE(7, 4);
    header.writeUInt8(MessageType.Request, 8);
    const evs = reader.push(header);
    expect(evs).toEqual([{ kind: 'oversize', header: { length: 0xfffffff0, streamId: 7, type: 1, flags: 0 } }]);
    reader.push(Buffer.alloc(64 * 1024));
    expect(reader.pendingBytes).toBe(0);

    const small = new FrameReader(8);
    const wire = Buffer.concat([encodeFrame(frame(1, 'x'.repeat(20))), encodeFrame(frame(3, 'ok'))]);
    const out = small.push(wire);
    expect(out.map((e) => e.kind)).toEqual(['oversize', 'frame']);
  });
});

describe('ttrpc server and client', () => {
  it('round-trips a call with int64 and bytes', async () => {
    const { client } = setup({ Say: (r: { text: string; n: number; blob: Buffer }) => ({ text: r.text.toUpperCase(), n: r.n + 1, blob: r.blob }) });
    const res = await say(client, { text: 'hi', n: 2 ** 40, blob: Buffer.from([1, 2, 3]) });
    expect(res.text).toBe('HI');
    expect(res.n).toBe(2 ** 40 + 1);
    expect(Buffer.isBuffer(res.blob)).toBe(true);
    expect([...res.blob]).toEqual([1, 2, 3]);
  });

  it('uses odd stream ids starting at 1', async () => {
    const [clientEnd, serverEnd] = duplexPair();
    const reader = new FrameReader();
    const ids: number[] = [];
    serverEnd.on('data', (c: Buffer) => {
      for (const ev of reader.push(c)) if (ev.kind === 'frame') ids.push(ev.frame.streamId);
    });
    const client = new TtrpcClient(clientEnd);
    for (let i = 0; i < 3; i++) void say(client, { text: 'x' }).catch(() => {});
    await new Promise((r) => setImmediate(r));
    expect(ids).toEqual([1, 3, 5]);
    client.close();
  });

  it('answers unknown services and methods with Unimplemented', async () => {
    const { client } = setup({ Say: () => ({}) });
    await expect(client.call('test.v1.Nope', 'Say', Msg, Msg, {})).rejects.toMatchObject({ code: 12, message: 'service test.v1.Nope' });
    await expect(client.call('test.v1.Echo', 'Shout', Msg, Msg, {})).rejects.toMatchObject({ code: 12, message: 'method Shout' });
    // Fail is in the service but has no handler: also Unimplemented.
    await expect(client.call('test.v1.Echo', 'Fail', Msg, Msg, {})).rejects.toMatchObject({ code: Code.Unimplemented });
  });

  it('maps handler errors to status codes', async () => {
    const { client } = setup({
      Say: (r: { text: string }) => {
        if (r.text === 'typed') throw new TtrpcError(Code.NotFound, 'container x not found');
        throw new Error('boom');
      },
    });
    const typed = await say(client, { text: 'typed' }).catch((e: unknown) => e);
    expect(typed).toBeInstanceOf(TtrpcError);
    expect(typed).toMatchObject({ code: Code.NotFound, message: 'container x not found' });
    await expect(say(client, { text: 'plain' })).rejects.toMatchObject({ code: Code.Unknown, message: 'boom' });
  });

  it('runs calls concurrently and matches out-of-order replies', async () => {
    const { client } = setup({
      Say: async (r: { text: string; n: number }) => {
        await new Promise((res) => setTimeout(res, r.n));
        return { text: r.text };
      },
    });
    const order: string[] = [];
    const calls = [
      say(client, { text: 'slow', n: 60 }).then((r) => order.push(r.text)),
      say(client, { text: 'mid', n: 30 }).then((r) => order.push(r.text)),
      say(client, { text: 'fast', n: 1 }).then((r) => order.push(r.text)),
    ];
    await Promise.all(calls);
    expect(order).toEqual(['fast', 'mid', 'slow']);
  });

  it('times out a call, sends timeout_nano, and ignores the late reply', async () => {
    let seen: CallContext | undefined;
    let aborted = false;
    const { client } = setup({
      Say: async (r: { text: string }, ctx: CallContext) => {
        seen = ctx;
        ctx.signal.addEventListener('abort', () => (aborted = true));
        if (r.text === 'hang') await new Promise((res) => setTimeout(res, 100));
        return { text: r.text };
      },
    });
    const err = await say(client, { text: 'hang' }, { timeoutMs: 20 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: Code.DeadlineExceeded });
    expect(seen?.deadline).toBeGreaterThan(Date.now() - 1000);
    await new Promise((res) => setTimeout(res, 120));
    expect(aborted).toBe(true); // the server-side deadline fired too
    expect((await say(client, { text: 'next' })).text).toBe('next');
  });

  it('passes metadata with lower-cased keys', async () => {
    let md: Record<string, string[]> = {};
    const { client } = setup({ Say: (_r: unknown, ctx: CallContext) => ((md = ctx.metadata), {}) });
    await say(client, {}, { metadata: { 'Containerd-Namespace-Ttrpc': 'k8s.io', multi: ['a', 'b'] } });
    expect(md).toEqual({ 'containerd-namespace-ttrpc': ['k8s.io'], multi: ['a', 'b'] });
  });

  it('rejects pending calls when the connection closes, and aborts handlers', async () => {
    let signal: AbortSignal | undefined;
    const { client, serverEnd } = setup({
      Say: (_r: unknown, ctx: CallContext) => {
        signal = ctx.signal;
        return new Promise(() => {});
      },
    });
    const p1 = say(client, {});
    const p2 = say(client, {});
    await new Promise((r) => setTimeout(r, 10));
    serverEnd.destroy();
    for (const p of [p1, p2]) {
      const err = await p.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectionClosedError);
      expect(err).toMatchObject({ code: Code.Unavailable });
    }
    expect(signal?.aborted).toBe(true);
    expect(client.closed).toBe(true);
    await expect(say(client, {})).rejects.toBeInstanceOf(ConnectionClosedError);
  });

  it('treats an oversize reply as a connection error', async () => {
    const [clientEnd, serverEnd] = duplexPair();
    const client = new TtrpcClient(clientEnd, { maxFrameLength: 64 });
    serverEnd.on('data', () => {
      serverEnd.write(encodeFrame({ streamId: 1, type: MessageType.Response, flags: 0, data: Buffer.alloc(100) }));
    });
    await expect(say(client, {})).rejects.toBeInstanceOf(ConnectionClosedError);
    expect(client.closed).toBe(true);
  });

  it('answers an even stream id with InvalidArgument', async () => {
    const peer = rawPeer();
    const data = encodeRequest({ service: 'test.v1.Echo', method: 'Say', payload: Buffer.alloc(0), timeoutNano: 0, metadata: [] });
    peer.send({ streamId: 2, type: MessageType.Request, flags: 0, data });
    const f = await peer.next();
    expect(f.streamId).toBe(2);
    expect(f.type).toBe(MessageType.Response);
    expect(decodeResponse(f.data).status).toEqual({ code: Code.InvalidArgument, message: 'StreamID must be odd' });
  });

  it('answers an oversize request with ResourceExhausted and keeps serving', async () => {
    const peer = rawPeer();
    const header = Buffer.alloc(HEADER_LENGTH);
    header.writeUInt32BE(MESSAGE_LENGTH_MAX + 1, 0);
    header.writeUInt32BE(9, 4);
    header.writeUInt8(MessageType.Request, 8);
    peer.end.write(header);
    for (let left = MESSAGE_LENGTH_MAX + 1; left > 0; left -= 1 << 20) peer.end.write(Buffer.alloc(Math.min(left, 1 << 20)));
    const f = await peer.next();
    expect(f.streamId).toBe(9);
    expect(decodeResponse(f.data).status?.code).toBe(Code.ResourceExhausted);

    const payload = Buffer.from(Msg.encode(Msg.fromObject({ text: 'still here' })).finish());
    peer.send({ streamId: 11, type: MessageType.Request, flags: 0, data: encodeRequest({ service: 'test.v1.Echo', method: 'Say', payload, timeoutNano: 0, metadata: [] }) });
    const g = await peer.next();
    const res = decodeResponse(g.data);
    expect(res.status?.code ?? 0).toBe(0);
    expect(Msg.toObject(Msg.decode(res.payload))).toEqual({ text: 'still here' });
  });

  it('answers an undecodable envelope with InvalidArgument', async () => {
    const peer = rawPeer();
    peer.send({ streamId: 1, type: MessageType.Request, flags: 0, data: Buffer.from([0xff, 0xff, 0xff]) });
    expect(decodeResponse((await peer.next()).data).status?.code).toBe(Code.InvalidArgument);
  });

  it('ignores non-request frame types', async () => {
    const peer = rawPeer();
    peer.send({ streamId: 1, type: MessageType.Data, flags: 0, data: Buffer.from('x') });
    const payload = Buffer.alloc(0);
    peer.send({ streamId: 3, type: MessageType.Request, flags: 0, data: encodeRequest({ service: 'test.v1.Echo', method: 'Say', payload, timeoutNano: 0, metadata: [] }) });
    expect((await peer.next()).streamId).toBe(3);
  });
});

describe('agent API round trip', () => {
  it('carries every Agent RPC through AgentClient and the server', async () => {
    const seen: Record<string, unknown> = {};
    const rec = <R>(name: string, res: R) => (req: unknown) => {
      seen[name] = req;
      return res;
    };
    const handlers: Record<string, Handler> = {
      Health: rec('Health', { status: 'SERVING', agentVersion: '0.1.0' }),
      GuestDetails: rec('GuestDetails', { kernelRelease: '6.1.0', vcpus: 2, memoryBytes: 2 ** 33, agentVersion: '0.1.0', uptimeSeconds: 1.5 }),
      CreateContainer: rec('CreateContainer', { pid: 42 }),
      StartContainer: rec('StartContainer', { pid: 42 }),
      ExecProcess: rec('ExecProcess', { pid: 43 }),
      SignalProcess: rec('SignalProcess', {}),
      WaitProcess: rec('WaitProcess', { exitStatus: 137, signal: 9 }),
      WriteStdin: rec('WriteStdin', { len: 3 }),
      CloseStdin: rec('CloseStdin', {}),
      ReadStdout: rec('ReadStdout', { data: Buffer.from('out') }),
      ReadStderr: rec('ReadStderr', { data: Buffer.alloc(0) }),
      ListProcesses: rec('ListProcesses', { processes: [{ pid: 42, execId: '', command: 'sh' }, { pid: 43, execId: 'e1', command: 'sleep' }] }),
      RemoveProcess: rec('RemoveProcess', {}),
      RemoveContainer: rec('RemoveContainer', {}),
      DestroySandbox: rec('DestroySandbox', {}),
      StatsContainer: rec('StatsContainer', {
        memoryCurrent: 2 ** 33,
        memoryMax: 0,
        memorySwapCurrent: 0,
        memorySwapMax: 0,
        memoryStat: { anon: 4096, inactive_file: 12 },
        cpuStat: { usage_usec: 900 },
        pidsCurrent: 2,
        pidsMax: 64,
        memoryEvents: { oom_kill: 1 },
      }),
      UpdateContainer: rec('UpdateContainer', {}),
      ResizePty: rec('ResizePty', {}),
      SetupNetwork: rec('SetupNetwork', {}),
      Claim: rec('Claim', { clockStepMs: -740.5 }),
    };
    expect(Object.keys(handlers).sort()).toEqual(Object.keys(agentService().methods).sort());

    const [a, b] = duplexPair();
    const server = new TtrpcServer();
    server.registerService(agentService(), handlers);
    server.serve(b);
    const agent = new AgentClient(a);
    cleanups.push(() => agent.close());

    expect(await agent.health()).toEqual({ status: 'SERVING', agentVersion: '0.1.0' });
    expect(await agent.guestDetails()).toEqual({ kernelRelease: '6.1.0', vcpus: 2, memoryBytes: 2 ** 33, agentVersion: '0.1.0', uptimeSeconds: 1.5 });
    const create: T.CreateContainerRequest = { containerId: 'c1', specJson: '{}', rootfsPath: '/run/hull/shared/c1/rootfs', stdin: true, bundle: '/bundles/c1' };
    expect(await agent.createContainer(create)).toEqual({ pid: 42 });
    // The host's hostname goes with every create (a container in the host's UTS namespace sees it).
    expect(seen.CreateContainer).toEqual({ ...create, hostHostname: os.hostname() });
    await agent.createContainer({ ...create, hostHostname: 'node-1' });
    expect(seen.CreateContainer).toEqual({ ...create, hostHostname: 'node-1' });
    expect(await agent.startContainer('c1')).toEqual({ pid: 42 });
    expect(seen.StartContainer).toEqual({ containerId: 'c1' });
    expect(await agent.execProcess({ containerId: 'c1', execId: 'e1', processJson: '{"args":["ls"]}', stdin: false })).toEqual({ pid: 43 });
    await agent.signalProcess('c1', 'e1', 15, true);
    expect(seen.SignalProcess).toEqual({ containerId: 'c1', execId: 'e1', signal: 15, all: true });
    expect(await agent.waitProcess('c1', 'e1')).toEqual({ exitStatus: 137, signal: 9 });
    await agent.writeStdin('c1', '', Buffer.from('abc'));
    expect(seen.WriteStdin).toMatchObject({ containerId: 'c1', execId: '' });
    expect((seen.WriteStdin as { data: Buffer }).data.toString()).toBe('abc');
    await agent.closeStdin('c1');
    expect(seen.CloseStdin).toEqual({ containerId: 'c1', execId: '' });
    expect((await agent.readStdout('c1', '', 1024)).toString()).toBe('out');
    expect(seen.ReadStdout).toEqual({ containerId: 'c1', execId: '', maxLen: 1024 });
    expect((await agent.readStderr('c1', '', 1024)).length).toBe(0);
    expect(await agent.listProcesses('c1')).toEqual([
      { pid: 42, execId: '', command: 'sh' },
      { pid: 43, execId: 'e1', command: 'sleep' },
    ]);
    await agent.removeProcess('c1', 'e1');
    expect(seen.RemoveProcess).toEqual({ containerId: 'c1', execId: 'e1' });
    await agent.removeContainer('c1', 500);
    expect(seen.RemoveContainer).toEqual({ containerId: 'c1', timeoutMs: 500 });
    await agent.resizePty({ containerId: 'c1', execId: 'e1', width: 132, height: 43 });
    expect(seen.ResizePty).toEqual({ containerId: 'c1', execId: 'e1', width: 132, height: 43 });
    await agent.destroySandbox();
    expect(seen.DestroySandbox).toEqual({});
    expect(await agent.statsContainer('c1')).toEqual({
      memoryCurrent: 2 ** 33,
      memoryMax: 0,
      memorySwapCurrent: 0,
      memorySwapMax: 0,
      memoryStat: { anon: 4096, inactive_file: 12 },
      cpuStat: { usage_usec: 900 },
      pidsCurrent: 2,
      pidsMax: 64,
      memoryEvents: { oom_kill: 1 },
    });
    expect(seen.StatsContainer).toEqual({ containerId: 'c1' });
    await agent.updateContainer({ containerId: 'c1', resourcesJson: '{"pids":{"limit":10}}' });
    expect(seen.UpdateContainer).toEqual({ containerId: 'c1', resourcesJson: '{"pids":{"limit":10}}' });
    const network = {
      interfaces: [{ name: 'eth0', mac: '0a:58:0a:63:4d:05', mtu: 1450, addresses: [{ family: 6 as const, address: 'fd99::5', prefixLength: 64 }] }],
      routes: [{ family: 4 as const, destination: 'default', gateway: '10.99.77.1', device: 'eth0', scope: '', metric: 7, source: '' }],
      neighbors: [{ family: 4 as const, address: '10.99.77.9', mac: '02:00:00:00:00:09', device: 'eth0' }],
    };
    await agent.setupNetwork(network);
    // proto3: an absent string arrives as '' (agent/network-check.ts reads '' as "no guest MAC").
    expect(seen.SetupNetwork).toEqual({ ...network, interfaces: [{ ...network.interfaces[0]!, guestMac: '' }] });
    const pooled = { ...network, interfaces: [{ ...network.interfaces[0]!, guestMac: '02:5e:00:00:00:01' }] };
    await agent.setupNetwork(pooled);
    expect(seen.SetupNetwork).toEqual(pooled);
    const claim = { unixTimeMs: 1796546186804.25, entropy: Buffer.from([1, 2, 3, 255]), unusedMacs: ['02:5e:00:00:00:02'] };
    expect(await agent.claim(claim)).toEqual({ clockStepMs: -740.5 });
    expect(seen.Claim).toEqual(claim);
  });

  it('surfaces agent error codes as TtrpcError', async () => {
    const [a, b] = duplexPair();
    const server = new TtrpcServer();
    server.registerService(agentService(), {
      StartContainer: (r: T.ContainerRef) => {
        throw new TtrpcError(Code.NotFound, `container ${r.containerId} not found`);
      },
    });
    server.serve(b);
    const agent = new AgentClient(a);
    cleanups.push(() => agent.close());
    await expect(agent.startContainer('zz')).rejects.toMatchObject({ code: Code.NotFound, message: 'container zz not found' });
    await expect(agent.health()).rejects.toMatchObject({ code: Code.Unimplemented, message: 'method Health' });
  });
});
