import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CgroupManager } from '../../agent/cgroups.js';
import { decodePlanStrings } from '../../agent/plan-encode.js';
import { AgentService, type AgentServiceOptions } from '../../agent/service.js';
import { AgentClient } from '../../protocol/agent-client.js';
import { TtrpcError } from '../../protocol/errors.js';
import { agentService } from '../../protocol/proto.js';
import { Code } from '../../protocol/ttrpc/codes.js';
import { duplexPair } from '../../protocol/ttrpc/duplex-pair.js';
import { TtrpcServer } from '../../protocol/ttrpc/server.js';
import { installFakeContainerInit } from '../helpers/fake-container-init.js';


let tmp: string;
let helperPath: string;
let rootfs: string;
let planDir: string;

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-agent-test-'));
  helperPath = installFakeContainerInit(tmp);
  rootfs = path.join(tmp, 'shared', 'c1', 'rootfs');
  mkdirSync(rootfs, { recursive: true });
  planDir = path.join(tmp, 'plans');
  mkdirSync(planDir);
});

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

interface Harness {
  agent: AgentClient;
  service: AgentService;
  cgroupRoot: string;
  powerOffs: number;
}

const harnesses: Harness[] = [];
afterEach(async () => {
  for (const h of harnesses.splice(0)) {
    // Kill whatever a test left behind.
    await h.service.destroySandbox().catch(() => {});
    h.agent.close();
  }
});

function harness(extra: Partial<AgentServiceOptions> = {}): Harness {
  const cgroupRoot = mkdtempSync(path.join(tmp, 'cgroup-'));
  const h = { powerOffs: 0 } as Harness;
  const service = new AgentService({
    helperPath,
    cgroups: new CgroupManager(cgroupRoot),
    log: pino({ level: 'silent' }),
    powerOff: () => void h.powerOffs++,
    powerOffDelayMs: 1,
    setupTimeoutMs: 10_000,
    ...extra,
  });
  const server = new TtrpcServer();
  server.registerService(agentService(), service.handlers());
  const [a, b] = duplexPair();
  server.serve(b);
  Object.assign(h, { agent: new AgentClient(a), service, cgroupRoot });
  harnesses.push(h);
  return h;
}

function spec(args: string[], extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    ociVersion: '1.0.2',
    process: { args, env: ['HELLO=world'], cwd: '/', user: { uid: 0, gid: 0 } },
    root: { path: 'rootfs' },
    hostname: 'box',
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }] },
    ...extra,
  });
}

async function readAll(read: () => Promise<Buffer>): Promise<string> {
  const parts: Buffer[] = [];
  for (;;) {
    const b = await read();
    if (b.length === 0) return Buffer.concat(parts).toString();
    parts.push(b);
  }
}

const out = (h: Harness, id: string, exec = '') => readAll(() => h.agent.readStdout(id, exec, 1 << 20));
const err = (h: Harness, id: string, exec = '') => readAll(() => h.agent.readStderr(id, exec, 1 << 20));

async function create(h: Harness, id: string, args: string[], opts: { stdin?: boolean; extra?: Record<string, unknown> } = {}) {
  return h.agent.createContainer({ containerId: id, specJson: spec(args, opts.extra), rootfsPath: rootfs, stdin: opts.stdin ?? false });
}

describe('agent service over ttrpc with a fake helper', () => {
  it('answers Health and GuestDetails', async () => {
    const h = harness();
    expect(await h.agent.health()).toEqual({ status: 'SERVING', agentVersion: expect.any(String) });
    const d = await h.agent.guestDetails();
    expect(d.kernelRelease).toBe(os.release());
    expect(d.vcpus).toBeGreaterThan(0);
    expect(d.memoryBytes).toBe(os.totalmem());
    expect(d.uptimeSeconds).toBeGreaterThan(0);
  });

  it("a pooled VM's claim: clock and entropy at once, once; a NIC it could not remove fails the start, not the create", async () => {
    const set: number[] = [];
    const sysRoot = mkdtempSync(path.join(tmp, 'sys-'));
    mkdirSync(path.join(sysRoot, 'class', 'net', 'eth0'), { recursive: true });
    writeFileSync(path.join(sysRoot, 'class', 'net', 'eth0', 'address'), '02:aa:00:00:00:01\n');
    symlinkSync('../../devices/virtio3', path.join(sysRoot, 'class', 'net', 'eth0', 'device')); // no virtio_net driver dir: the unbind fails
    const guestTime = { now: () => 1_800_000_000_000, setRealtimeClock: (ms: number) => void set.push(ms), addEntropy: () => undefined };
    const h = harness({ guestTime, sysRoot });
    const claim = { unixTimeMs: 1_800_000_001_000, entropy: Buffer.alloc(16), unusedMacs: ['02:aa:00:00:00:01'] };
    expect(await h.agent.claim(claim)).toEqual({ clockStepMs: -1000 });
    expect(set).toEqual([1_800_000_001_000]);
    await expect(h.agent.claim(claim)).rejects.toMatchObject({ code: Code.FailedPrecondition, message: 'the VM was claimed already' });
    await create(h, 'c1', ['true']);
    await expect(h.agent.startContainer('c1')).rejects.toThrow(/removing the pooled VM's unused NICs: ENOENT/);
  });

  it('creates, starts, relays output and reports the exit status', async () => {
    const h = harness();
    const { pid } = await create(h, 'c1', ['sh', '-c', 'echo "hello $HELLO"; echo oops >&2; exit 3']);
    expect(pid).toBeGreaterThan(0);
    // The helper got a plan with our args and cgroup.
    const plan = readdirSync(planDir).map((f) => decodePlanStrings(readFileSync(path.join(planDir, f))));
    expect(plan.some((p) => p.includes('echo "hello $HELLO"; echo oops >&2; exit 3') && p.includes(path.join(h.cgroupRoot, 'hull', 'c1')))).toBe(true);
    expect(existsSync(path.join(h.cgroupRoot, 'hull', 'c1'))).toBe(true);

    const outputs = Promise.all([out(h, 'c1'), err(h, 'c1')]);
    expect(await h.agent.startContainer('c1')).toEqual({ pid });
    expect(await h.agent.waitProcess('c1')).toEqual({ exitStatus: 3, signal: 0 });
    expect(await outputs).toEqual(['hello world\n', 'oops\n']);
  });

  it('gives a process.terminal process a pty: stdout carries it, stderr is empty, ResizePty sets its size', async () => {
    const h = harness({ ptmxPaths: () => ['/dev/ptmx'] });
    const script = 'test -t 0 && test -t 1 && test -t 2 && echo isatty; tty; read line; echo "got $line"; stty size; echo err >&2';
    await create(h, 'c1', ['sh', '-c', script], { stdin: true, extra: { process: { args: ['sh', '-c', script], cwd: '/', terminal: true } } });
    await h.agent.resizePty({ containerId: 'c1', execId: '', width: 120, height: 40 }); // before start: applied at start
    const outputs = Promise.all([out(h, 'c1'), err(h, 'c1')]);
    await h.agent.startContainer('c1');
    await h.agent.writeStdin('c1', '', Buffer.from('hi\n'));
    expect(await h.agent.waitProcess('c1')).toEqual({ exitStatus: 0, signal: 0 });
    const [o, e] = await outputs;
    expect(e).toBe('');
    // The terminal echoes what stdin sent, wherever it landed.
    expect(o).toContain('isatty\r\n');
    expect(o).toMatch(/\/dev\/pts\/\d+\r\n/);
    expect(o).toContain('got hi\r\n');
    expect(o).toContain('40 120\r\nerr\r\n');
    await expect(h.agent.resizePty({ containerId: 'c1', execId: 'nope', width: 1, height: 1 })).rejects.toThrow(/not found/);
  });

  it('sizes the pty from process.consoleSize before the process runs, for the init and for an exec (no 0x0 before a ResizePty)', async () => {
    const h = harness({ ptmxPaths: () => ['/dev/ptmx'] });
    const args = ['sh', '-c', 'stty size; sleep 100'];
    await create(h, 'c1', args, { extra: { process: { args, cwd: '/', terminal: true, consoleSize: { height: 27, width: 77 } } } });
    const initOut = out(h, 'c1');
    await h.agent.startContainer('c1');
    const exec = { args: ['stty', 'size'], cwd: '/', terminal: true, consoleSize: { height: 31, width: 99 } };
    await h.agent.execProcess({ containerId: 'c1', execId: 'e1', processJson: JSON.stringify(exec), stdin: false });
    expect(await out(h, 'c1', 'e1')).toBe('31 99\r\n');
    await h.agent.signalProcess('c1', '', 9);
    expect(await initOut).toBe('27 77\r\n');
  });

  it('refuses ResizePty for a process without a terminal', async () => {
    const h = harness();
    await create(h, 'c1', ['sleep', '5']);
    await expect(h.agent.resizePty({ containerId: 'c1', execId: '', width: 80, height: 24 })).rejects.toThrow(/no terminal/);
  });

  it('keeps output for reads after the process exited', async () => {
    const h = harness();
    await create(h, 'c1', ['sh', '-c', 'echo a; echo b']);
    await h.agent.startContainer('c1');
    expect((await h.agent.waitProcess('c1')).exitStatus).toBe(0);
    expect(await out(h, 'c1')).toBe('a\nb\n');
    expect((await h.agent.readStdout('c1', '', 100)).length).toBe(0); // EOF stays EOF
  });

  it('blocks a read until output arrives and caps it at max_len', async () => {
    const h = harness();
    await create(h, 'c1', ['sh', '-c', 'sleep 0.3; echo 0123456789abcdef']);
    await h.agent.startContainer('c1');
    const t0 = Date.now();
    const first = await h.agent.readStdout('c1', '', 4);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(200);
    expect(first.toString()).toBe('0123');
    expect(await out(h, 'c1')).toBe('456789abcdef\n');
  });

  it('applies backpressure instead of losing output beyond the buffer cap', async () => {
    const h = harness({ outputCap: 64 * 1024 });
    const total = 3 * 1024 * 1024;
    await create(h, 'c1', ['sh', '-c', `head -c ${total} /dev/zero; echo done >&2`]);
    await h.agent.startContainer('c1');
    // Nothing is read yet: the workload must block, not exit.
    await new Promise((r) => setTimeout(r, 300));
    const waited = h.agent.waitProcess('c1');
    let exited = false;
    void waited.then(() => (exited = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(exited).toBe(false);
    let got = 0;
    for (;;) {
      const b = await h.agent.readStdout('c1', '', 1 << 20);
      if (b.length === 0) break;
      expect(b.length).toBeLessThanOrEqual(1 << 20);
      got += b.length;
    }
    expect(got).toBe(total);
    expect((await waited).exitStatus).toBe(0);
    expect(await err(h, 'c1')).toBe('done\n');
  });

  it('relays stdin, and refuses it once closed', async () => {
    const h = harness();
    await create(h, 'c1', ['cat'], { stdin: true });
    await h.agent.startContainer('c1');
    await h.agent.writeStdin('c1', '', Buffer.from('abc\n'));
    await h.agent.writeStdin('c1', '', Buffer.from('def\n'));
    await h.agent.closeStdin('c1');
    expect(await out(h, 'c1')).toBe('abc\ndef\n');
    expect((await h.agent.waitProcess('c1')).exitStatus).toBe(0);
    await expect(h.agent.writeStdin('c1', '', Buffer.from('x'))).rejects.toMatchObject({ code: Code.FailedPrecondition });
  });

  it('refuses stdin writes to a process created without stdin', async () => {
    const h = harness();
    await create(h, 'c1', ['sleep', '10']);
    await expect(h.agent.writeStdin('c1', '', Buffer.from('x'))).rejects.toMatchObject({ code: Code.FailedPrecondition });
  });

  it('signals the init process', async () => {
    const h = harness();
    await create(h, 'c1', ['sleep', '100']);
    await h.agent.startContainer('c1');
    await h.agent.signalProcess('c1', '', 15);
    expect(await h.agent.waitProcess('c1')).toEqual({ exitStatus: 143, signal: 0 });
    await expect(h.agent.signalProcess('c1', '', 15)).rejects.toMatchObject({ code: Code.NotFound });
  });

  it('runs execs, lists processes and signals all of them', async () => {
    const h = harness();
    const { pid } = await create(h, 'c1', ['sleep', '100']);
    await h.agent.startContainer('c1');

    const e1 = await h.agent.execProcess({ containerId: 'c1', execId: 'e1', processJson: JSON.stringify({ args: ['sh', '-c', 'echo from-exec; exit 7'], cwd: '/' }), stdin: false });
    expect(e1.pid).toBeGreaterThan(0);
    expect(await out(h, 'c1', 'e1')).toBe('from-exec\n');
    expect(await h.agent.waitProcess('c1', 'e1')).toEqual({ exitStatus: 7, signal: 0 });

    const e2 = await h.agent.execProcess({ containerId: 'c1', execId: 'e2', processJson: JSON.stringify({ args: ['sleep', '100'], cwd: '/' }), stdin: false });
    await expect(
      h.agent.execProcess({ containerId: 'c1', execId: 'e2', processJson: JSON.stringify({ args: ['true'], cwd: '/' }), stdin: false }),
    ).rejects.toMatchObject({ code: Code.AlreadyExists });

    // The fake helper's children register in the cgroup and exec asynchronously: poll briefly.
    let procs = await h.agent.listProcesses('c1');
    for (let i = 0; i < 40 && !procs.every((p) => p.command === 'sleep'); i++) {
      await new Promise((r) => setTimeout(r, 50));
      procs = await h.agent.listProcesses('c1');
    }
    expect(procs).toEqual(
      expect.arrayContaining([
        { pid, execId: '', command: 'sleep' },
        { pid: e2.pid, execId: 'e2', command: 'sleep' },
      ]),
    );
    // Helpers are infrastructure, not container processes.
    expect(procs.every((p) => p.pid === pid || p.pid === e2.pid)).toBe(true);

    // RemoveProcess: refused for a running exec and for init; an exited exec is forgotten (its id can be used again).
    await expect(h.agent.removeProcess('c1', 'e2')).rejects.toMatchObject({ code: Code.FailedPrecondition });
    await expect(h.agent.removeProcess('c1', '')).rejects.toMatchObject({ code: Code.InvalidArgument });
    await h.agent.removeProcess('c1', 'e1');
    await expect(h.agent.waitProcess('c1', 'e1')).rejects.toMatchObject({ code: Code.NotFound });
    await expect(h.agent.removeProcess('c1', 'e1')).rejects.toMatchObject({ code: Code.NotFound });

    await h.agent.signalProcess('c1', '', 9, true);
    expect((await h.agent.waitProcess('c1')).exitStatus).toBe(137);
    expect((await h.agent.waitProcess('c1', 'e2')).exitStatus).toBe(137);
  });

  it('joins a namespace path only of a running container init: the plan carries its pid and nsfs inode', async () => {
    const h = harness();
    const nsSpec = (pid: number, type = 'ipc', file = type) => ({ linux: { namespaces: [{ type: 'mount' }, { type, path: `/proc/${pid}/ns/${file}` }] } });
    const { pid } = await create(h, 'sandbox', ['sleep', '100']);
    // Created, not started: not running yet.
    await expect(create(h, 'early', ['true'], { extra: nsSpec(pid) })).rejects.toMatchObject({
      code: Code.InvalidArgument,
      message: `linux.namespaces[1]: /proc/${pid}/ns/ipc: pid ${pid} is not the init of a running container in this sandbox`,
    });
    await h.agent.startContainer('sandbox');

    await create(h, 'app', ['echo', 'joined-app'], { extra: nsSpec(pid, 'uts') });
    const plan = readdirSync(planDir)
      .map((f) => decodePlanStrings(readFileSync(path.join(planDir, f))))
      .find((p) => p.includes('joined-app'))!;
    const at = plan.indexOf('join_ns');
    expect(plan.slice(at, at + 4)).toEqual(['join_ns', 'uts', String(pid), String(statSync(`/proc/${pid}/ns/uts`).ino)]);
    expect(plan[plan.indexOf('namespaces') + 1]).toBe('mount');

    // Never an exec, the agent itself, or any other process; never a mount namespace.
    const e1 = await h.agent.execProcess({ containerId: 'sandbox', execId: 'e1', processJson: JSON.stringify({ args: ['sleep', '100'], cwd: '/' }), stdin: false });
    for (const other of [e1.pid, process.pid, 1]) {
      await expect(create(h, 'bad', ['true'], { extra: nsSpec(other) })).rejects.toMatchObject({ code: Code.InvalidArgument });
    }
    const mountSpec = { linux: { namespaces: [{ type: 'mount', path: `/proc/${pid}/ns/mnt` }] } };
    await expect(create(h, 'bad', ['true'], { extra: mountSpec })).rejects.toMatchObject({
      code: Code.InvalidArgument,
      message: expect.stringContaining('every container pivots into its own root'),
    });

    // Once the sandbox's init has exited, its pid names nothing.
    await h.agent.signalProcess('sandbox', '', 9, false);
    await h.agent.waitProcess('sandbox');
    await expect(create(h, 'late', ['true'], { extra: nsSpec(pid) })).rejects.toMatchObject({ code: Code.InvalidArgument });
    expect(existsSync(path.join(h.cgroupRoot, 'hull', 'bad'))).toBe(false);
  });

  it("gives every exec the container's seccomp filter (as runc does)", async () => {
    const h = harness();
    const seccomp = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }] };
    await create(h, 'sc', ['sleep', '100'], { extra: { linux: { namespaces: [{ type: 'mount' }, { type: 'uts' }], seccomp } } });
    await h.agent.startContainer('sc');
    await h.agent.execProcess({ containerId: 'sc', execId: 'e1', processJson: JSON.stringify({ args: ['echo', 'exec-under-filter'], cwd: '/' }), stdin: false });
    const plan = readdirSync(planDir)
      .map((f) => decodePlanStrings(readFileSync(path.join(planDir, f))))
      .find((p) => p.includes('exec-under-filter'))!;
    expect(plan[plan.indexOf('mode') + 1]).toBe('exec');
    const at = plan.indexOf('seccomp_syscall');
    expect(at).toBeGreaterThan(0);
    expect(plan.slice(at, at + 3)).toEqual(['seccomp_syscall', 'mkdir', 'errno']);
    await h.agent.signalProcess('sc', '', 9, true);
    await h.agent.waitProcess('sc');
  });

  it('reports a helper setup error as FailedPrecondition and leaves nothing behind', async () => {
    const h = harness();
    const e = await create(h, 'c1', ['__fail_setup']).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(TtrpcError);
    expect(e).toMatchObject({ code: Code.FailedPrecondition, message: expect.stringContaining('mount /proc: Operation not permitted') });
    expect(existsSync(path.join(h.cgroupRoot, 'hull', 'c1'))).toBe(false);
    await expect(h.agent.startContainer('c1')).rejects.toMatchObject({ code: Code.NotFound });
    // The id is free again.
    await create(h, 'c1', ['true']);
  });

  it('fails StartContainer with the exec error, and the process exits 127', async () => {
    const h = harness();
    await create(h, 'c1', ['no-such-binary-hull']);
    await expect(h.agent.startContainer('c1')).rejects.toMatchObject({
      code: Code.FailedPrecondition,
      message: expect.stringContaining('exec no-such-binary-hull'),
    });
    expect((await h.agent.waitProcess('c1')).exitStatus).toBe(127);
  });

  it('fails with Internal when the helper cannot run', async () => {
    const h = harness({ helperPath: path.join(tmp, 'missing-helper') });
    await expect(create(h, 'c1', ['true'])).rejects.toMatchObject({ code: Code.Internal });
  });

  it('maps bad requests to typed codes', async () => {
    const h = harness();
    await expect(h.agent.startContainer('nope')).rejects.toMatchObject({ code: Code.NotFound, message: 'container nope not found' });
    await expect(h.agent.waitProcess('nope')).rejects.toMatchObject({ code: Code.NotFound });
    await expect(create(h, '../evil', ['true'])).rejects.toMatchObject({ code: Code.InvalidArgument });
    await expect(h.agent.createContainer({ containerId: 'c2', specJson: '{not json', rootfsPath: rootfs, stdin: false })).rejects.toMatchObject({
      code: Code.InvalidArgument,
    });
    await expect(create(h, 'c2', [])).rejects.toMatchObject({ code: Code.InvalidArgument, message: expect.stringContaining('args') });
    await expect(create(h, 'c2', ['true'], { extra: { linux: { namespaces: [{ type: 'user' }, { type: 'mount' }, { type: 'uts' }] } } })).rejects.toMatchObject({
      code: Code.InvalidArgument,
      message: expect.stringContaining('uidMappings'),
    });
    await expect(h.agent.createContainer({ containerId: 'c2', specJson: spec(['true']), rootfsPath: '/no/such/rootfs', stdin: false })).rejects.toMatchObject({
      code: Code.InvalidArgument,
    });

    await create(h, 'c1', ['sleep', '100']);
    await expect(create(h, 'c1', ['true'])).rejects.toMatchObject({ code: Code.AlreadyExists });
    await expect(
      h.agent.execProcess({ containerId: 'c1', execId: 'e1', processJson: JSON.stringify({ args: ['true'], cwd: '/' }), stdin: false }),
    ).rejects.toMatchObject({ code: Code.FailedPrecondition }); // not started yet
    await h.agent.startContainer('c1');
    await expect(h.agent.startContainer('c1')).rejects.toMatchObject({ code: Code.FailedPrecondition });
    await expect(h.agent.waitProcess('c1', 'nope')).rejects.toMatchObject({ code: Code.NotFound });
    await expect(
      h.agent.execProcess({ containerId: 'c1', execId: 'e1', processJson: JSON.stringify({ args: ['true'], cwd: 'relative' }), stdin: false }),
    ).rejects.toMatchObject({ code: Code.InvalidArgument });
  });

  it('writes cgroup limits and removes the cgroup with the container', async () => {
    const h = harness();
    await create(h, 'c1', ['sleep', '100'], {
      extra: { hostname: '', linux: { namespaces: [{ type: 'mount' }], resources: { memory: { limit: 268435456, swap: 536870912 }, cpu: { quota: 50000, period: 100000, shares: 1024 }, pids: { limit: 64 } } } },
    });
    const dir = path.join(h.cgroupRoot, 'hull', 'c1');
    const read = (f: string) => readFileSync(path.join(dir, f), 'utf8');
    expect(read('memory.max')).toBe('268435456');
    expect(read('memory.swap.max')).toBe('268435456');
    expect(read('cpu.max')).toBe('50000 100000');
    expect(read('cpu.weight')).toBe('39');
    expect(read('pids.max')).toBe('64');
    await h.agent.startContainer('c1');
    const waited = h.agent.waitProcess('c1');
    await h.agent.removeContainer('c1', 3000);
    expect((await waited).exitStatus).toBe(137);
    expect(existsSync(dir)).toBe(false);
    await expect(h.agent.listProcesses('c1')).rejects.toMatchObject({ code: Code.NotFound });
  });

  it('StatsContainer reads the container cgroup ("max" is 0, flat keyed files become maps)', async () => {
    const h = harness();
    await create(h, 'c1', ['sleep', '100'], { extra: { hostname: '', linux: { namespaces: [{ type: 'mount' }], resources: { pids: { limit: 64 } } } } });
    const dir = path.join(h.cgroupRoot, 'hull', 'c1');
    // A test directory stands in for cgroupfs: write what the kernel would show.
    writeFileSync(path.join(dir, 'memory.current'), '1234567\n');
    writeFileSync(path.join(dir, 'memory.max'), 'max\n');
    writeFileSync(path.join(dir, 'memory.stat'), 'anon 4096\nfile 8192\ninactive_file 100\n');
    writeFileSync(path.join(dir, 'cpu.stat'), 'usage_usec 900\nuser_usec 600\nsystem_usec 300\n');
    writeFileSync(path.join(dir, 'pids.current'), '2\n');
    writeFileSync(path.join(dir, 'memory.events'), 'low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\n');
    const stats = await h.agent.statsContainer('c1');
    expect(stats).toMatchObject({
      memoryCurrent: 1234567,
      memoryMax: 0,
      memorySwapCurrent: 0,
      memoryStat: { anon: 4096, file: 8192, inactive_file: 100 },
      cpuStat: { usage_usec: 900, user_usec: 600, system_usec: 300 },
      pidsCurrent: 2,
      pidsMax: 64,
      memoryEvents: { oom: 1, oom_kill: 1 },
    });
    await expect(h.agent.statsContainer('nope')).rejects.toMatchObject({ code: Code.NotFound });
  });

  it('UpdateContainer writes new limits into the live cgroup, leaves the rest alone', async () => {
    const h = harness();
    await create(h, 'c1', ['sleep', '100'], {
      extra: { hostname: '', linux: { namespaces: [{ type: 'mount' }], resources: { memory: { limit: 268435456 }, pids: { limit: 64 } } } },
    });
    const dir = path.join(h.cgroupRoot, 'hull', 'c1');
    const read = (f: string) => readFileSync(path.join(dir, f), 'utf8');
    await h.agent.startContainer('c1');
    await h.agent.updateContainer({ containerId: 'c1', resourcesJson: JSON.stringify({ memory: { limit: 134217728 }, cpu: { quota: 20000, period: 100000 } }) });
    expect(read('memory.max')).toBe('134217728');
    expect(read('cpu.max')).toBe('20000 100000');
    expect(read('pids.max')).toBe('64');
    await expect(h.agent.updateContainer({ containerId: 'c1', resourcesJson: '[' })).rejects.toMatchObject({ code: Code.InvalidArgument });
    await expect(h.agent.updateContainer({ containerId: 'c1', resourcesJson: '{"cpu":{"period":5}}' })).rejects.toMatchObject({ code: Code.InvalidArgument });
    await expect(h.agent.updateContainer({ containerId: 'nope', resourcesJson: '{}' })).rejects.toMatchObject({ code: Code.NotFound });
  });

  it('removes a container that was created but never started', async () => {
    const h = harness();
    const { pid } = await create(h, 'c1', ['sleep', '100']);
    await h.agent.removeContainer('c1');
    expect(() => process.kill(pid, 0)).toThrow();
    await create(h, 'c1', ['true']); // the id is free again
  });

  it('DestroySandbox kills every container and powers off after replying', async () => {
    const h = harness();
    const { pid } = await create(h, 'c1', ['sleep', '100']);
    await h.agent.startContainer('c1');
    await h.agent.destroySandbox();
    await new Promise((r) => setTimeout(r, 50));
    expect(h.powerOffs).toBe(1);
    expect(() => process.kill(pid, 0)).toThrow();
    await expect(h.agent.startContainer('c1')).rejects.toMatchObject({ code: Code.NotFound });
    await expect(create(h, 'c2', ['true'])).rejects.toMatchObject({ code: Code.FailedPrecondition });
  });

  it('aborts a blocked read when the connection closes', async () => {
    const h = harness();
    await create(h, 'c1', ['sleep', '100']);
    await h.agent.startContainer('c1');
    const pending = h.agent.readStdout('c1', '', 10);
    h.agent.close();
    await expect(pending).rejects.toMatchObject({ code: Code.Unavailable });
  });
});
