// The agent's warm spare helper (agent/spare-helper.ts): CreateContainer/ExecProcess take a helper spawned ahead of
// need instead of paying Node's fork+exec in their critical path. Same fake helper as agent-service.test.ts.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CgroupManager } from '../../agent/cgroups.js';
import { AgentService, type AgentServiceOptions } from '../../agent/service.js';
import { AgentClient } from '../../protocol/agent-client.js';
import { agentService } from '../../protocol/proto.js';
import { Code } from '../../protocol/ttrpc/codes.js';
import { duplexPair } from '../../protocol/ttrpc/duplex-pair.js';
import { TtrpcServer } from '../../protocol/ttrpc/server.js';
import { installFakeContainerInit } from '../helpers/fake-container-init.js';


let tmp: string;
let helperPath: string;
let rootfs: string;

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-spare-test-'));
  helperPath = installFakeContainerInit(tmp);
  rootfs = path.join(tmp, 'shared', 'c1', 'rootfs');
  mkdirSync(rootfs, { recursive: true });
});

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

interface Harness {
  agent: AgentClient;
  service: AgentService;
  /** The service's log lines (JSON). */
  logs: Array<{ msg: string; [k: string]: unknown }>;
}

const harnesses: Harness[] = [];
afterEach(async () => {
  for (const h of harnesses.splice(0)) {
    await h.service.destroySandbox().catch(() => {});
    h.agent.close();
  }
});

function harness(extra: Partial<AgentServiceOptions> = {}): Harness {
  const logs: Harness['logs'] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Harness['logs'][number]);
      cb();
    },
  });
  const service = new AgentService({
    helperPath,
    cgroups: new CgroupManager(mkdtempSync(path.join(tmp, 'cgroup-'))),
    log: pino({ level: 'debug' }, sink),
    powerOff: () => {},
    powerOffDelayMs: 1,
    setupTimeoutMs: 10_000,
    spareHelper: true,
    spareHelperIdleMs: 50,
    ...extra,
  });
  const server = new TtrpcServer();
  server.registerService(agentService(), service.handlers());
  const [a, b] = duplexPair();
  server.serve(b);
  const h = { agent: new AgentClient(a), service, logs };
  harnesses.push(h);
  return h;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function spec(args: string[], process: Record<string, unknown> = {}): string {
  return JSON.stringify({
    ociVersion: '1.0.2',
    process: { args, env: ['HELLO=world'], cwd: '/', user: { uid: 0, gid: 0 }, ...process },
    root: { path: 'rootfs' },
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }] },
  });
}

const createReq = (id: string, args: string[], stdin = false, process: Record<string, unknown> = {}) => ({
  containerId: id,
  specJson: spec(args, process),
  rootfsPath: rootfs,
  stdin,
});

/** Waits until the service has a live spare and returns its pid. */
async function spare(h: Harness, not = 0): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const pid = h.service.spareHelperPid;
    if (pid > 0 && pid !== not) return pid;
    await sleep(10);
  }
  throw new Error('no spare helper appeared');
}

/** The parent of a workload pid: its helper. */
function parentOf(pid: number): number {
  return Number(/^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 200 && alive(pid); i++) await sleep(10);
  return !alive(pid);
}

async function readAll(read: () => Promise<Buffer>): Promise<string> {
  const parts: Buffer[] = [];
  for (;;) {
    const b = await read();
    if (b.length === 0) return Buffer.concat(parts).toString();
    parts.push(b);
  }
}

describe('warm spare helper', () => {
  it('is spawned once the calls pause, not while they keep coming; none without the option', async () => {
    const h = harness({ spareHelperIdleMs: 400 });
    expect(h.service.spareHelperPid).toBe(0);
    await h.agent.health();
    for (let i = 0; i < 10; i++) {
      await sleep(50);
      await h.agent.health();
      expect(h.service.spareHelperPid).toBe(0);
    }
    const pid = await spare(h);
    expect(alive(pid)).toBe(true);
    await h.agent.health(); // one spare, not one per call
    await sleep(300);
    expect(h.service.spareHelperPid).toBe(pid);

    const off = harness({ spareHelper: false });
    await off.agent.health();
    await sleep(200);
    expect(off.service.spareHelperPid).toBe(0);
  });

  it('CreateContainer takes the spare, and a new spare follows', async () => {
    const h = harness();
    await h.agent.health();
    const before = await spare(h);
    const { pid } = await h.agent.createContainer(createReq('c1', ['sh', '-c', 'echo "hello $HELLO"']));
    // The workload's helper is the process that was spawned before the request.
    expect(parentOf(pid)).toBe(before);
    const next = await spare(h, before);
    expect(next).not.toBe(before);
    expect(alive(next)).toBe(true);

    const out = readAll(() => h.agent.readStdout('c1', '', 1 << 20));
    await h.agent.startContainer('c1');
    expect(await h.agent.waitProcess('c1')).toEqual({ exitStatus: 0, signal: 0 });
    expect(await out).toBe('hello world\n');
  });

  it('ExecProcess takes the spare too', async () => {
    const h = harness();
    await h.agent.health();
    await spare(h);
    await h.agent.createContainer(createReq('c1', ['sleep', '100']));
    await h.agent.startContainer('c1');
    const before = await spare(h);
    const processJson = JSON.stringify({ args: ['sleep', '100'], cwd: '/' });
    const e1 = await h.agent.execProcess({ containerId: 'c1', execId: 'e1', processJson, stdin: false });
    expect(parentOf(e1.pid)).toBe(before);
    await spare(h, before);
  });

  it('without stdin the workload reads EOF from the spare\'s fd 0 (as from /dev/null); with stdin it gets the pipe', async () => {
    const h = harness();
    await h.agent.health();
    await spare(h);
    // `cat` would block forever on an open pipe.
    await h.agent.createContainer(createReq('c1', ['sh', '-c', 'cat; echo "eof $?"']));
    const out = readAll(() => h.agent.readStdout('c1', '', 1 << 20));
    await h.agent.startContainer('c1');
    expect(await h.agent.waitProcess('c1')).toEqual({ exitStatus: 0, signal: 0 });
    expect(await out).toBe('eof 0\n');
    await expect(h.agent.writeStdin('c1', '', Buffer.from('x'))).rejects.toMatchObject({ code: Code.FailedPrecondition });

    const e = { containerId: 'c2', execId: 'e1' };
    await spare(h);
    await h.agent.createContainer(createReq('c2', ['sleep', '100']));
    await h.agent.startContainer('c2');
    await spare(h);
    await h.agent.execProcess({ ...e, processJson: JSON.stringify({ args: ['sh', '-c', 'cat; echo "eof $?"'], cwd: '/' }), stdin: false });
    expect(await readAll(() => h.agent.readStdout('c2', 'e1', 1 << 20))).toBe('eof 0\n');

    await spare(h);
    await h.agent.execProcess({ ...e, execId: 'e2', processJson: JSON.stringify({ args: ['cat'], cwd: '/' }), stdin: true });
    await h.agent.writeStdin('c2', 'e2', Buffer.from('via stdin\n'));
    await h.agent.closeStdin('c2', 'e2');
    expect(await readAll(() => h.agent.readStdout('c2', 'e2', 1 << 20))).toBe('via stdin\n');
    expect((await h.agent.waitProcess('c2', 'e2')).exitStatus).toBe(0);
  });

  it('gives a terminal process its pty from a spare', async () => {
    const h = harness({ ptmxPaths: () => ['/dev/ptmx'] });
    await h.agent.health();
    await spare(h);
    const script = 'test -t 0 && test -t 1 && test -t 2 && echo isatty; read line; echo "got $line"';
    await h.agent.createContainer(createReq('c1', ['sh', '-c', script], true, { terminal: true }));
    const out = Promise.all([readAll(() => h.agent.readStdout('c1', '', 1 << 20)), readAll(() => h.agent.readStderr('c1', '', 1 << 20))]);
    await h.agent.startContainer('c1');
    await h.agent.writeStdin('c1', '', Buffer.from('hi\n'));
    expect(await h.agent.waitProcess('c1')).toEqual({ exitStatus: 0, signal: 0 });
    const [o, e] = await out;
    expect(o).toContain('isatty\r\n');
    expect(o).toContain('got hi\r\n');
    expect(e).toBe('');
  });

  it('does not hand out a spare that died: a fresh helper runs the request, and a new spare follows', async () => {
    const h = harness();
    await h.agent.health();
    const dead = await spare(h);
    process.kill(dead, 'SIGKILL');
    expect(await gone(dead)).toBe(true); // reaped: the agent has seen its exit
    const { pid } = await h.agent.createContainer(createReq('c1', ['sleep', '100']));
    expect(parentOf(pid)).not.toBe(dead);
    expect(h.logs.some((l) => l.msg === 'the spare helper died; spawning a fresh one')).toBe(true);
    await spare(h, dead);
  });

  it('falls back to a fresh helper once when the spare died before the agent noticed (its plan pipe is closed)', async () => {
    const h = harness();
    await h.agent.health();
    const dead = await spare(h);
    // The fake helper (bash) reads its plan with a `cat` child: that one must go too, or it would take the plan.
    process.kill(dead, 'SIGSTOP');
    const children = readFileSync(`/proc/${dead}/task/${dead}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
    for (const c of children) process.kill(c, 'SIGKILL');
    process.kill(dead, 'SIGKILL');
    // Wait until every fd of theirs is closed (zombies or gone) without giving the event loop a turn: the agent has
    // not seen the exit yet, so the spare still looks alive.
    const closed = (pid: number) => {
      try {
        return /\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      } catch {
        return true;
      }
    };
    const deadline = Date.now() + 5000;
    while (![dead, ...children].every(closed) && Date.now() < deadline);
    expect(h.service.spareHelperPid).toBe(dead);
    const { pid } = await h.service.createContainer(createReq('c1', ['sleep', '100']));
    expect(parentOf(pid)).not.toBe(dead);
    expect(h.logs.some((l) => l.msg === 'the spare helper did not take its plan; spawning a fresh one')).toBe(true);
    await h.agent.health(); // the create above bypassed the RPC layer, which tells the spare about calls
    await spare(h, dead);
  });

  it('reports Internal when the helper cannot run at all', async () => {
    const h = harness({ helperPath: path.join(tmp, 'missing-helper') });
    await h.agent.health();
    await sleep(200);
    expect(h.service.spareHelperPid).toBe(0);
    await expect(h.agent.createContainer(createReq('c1', ['true']))).rejects.toMatchObject({ code: Code.Internal });
    // One failed attempt, then no more spares.
    await sleep(200);
    expect(h.logs.filter((l) => l.msg === 'cannot spawn a spare helper; no more spares')).toHaveLength(1);
  });

  it('DestroySandbox kills the spare and spawns no other', async () => {
    const h = harness();
    await h.agent.health();
    await spare(h);
    await h.agent.createContainer(createReq('c1', ['sleep', '100']));
    const pid = await spare(h);
    await h.agent.destroySandbox();
    expect(await gone(pid)).toBe(true);
    await h.agent.health();
    await sleep(200);
    expect(h.service.spareHelperPid).toBe(0);
  });

  it('close() (the agent stopping) kills the spare', async () => {
    const h = harness();
    await h.agent.health();
    const pid = await spare(h);
    await h.service.close();
    expect(await gone(pid)).toBe(true);
    expect(h.service.spareHelperPid).toBe(0);
  });
});
