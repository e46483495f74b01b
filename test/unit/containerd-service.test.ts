// The containerd task service (shim/containerd/service.ts) over a real ttrpc connection, against a fake pod VM and
// agent: wire encoding with containerd's field numbers, containerd's error codes, event order (TaskStart before
// TaskExit, output delivered before TaskExit), exec, pause, stats, the VM dying, and the VM's lifetime. Every pid the
// service reports is the fake VMM's host pid (VMM_PID); guest pids (100, 101, …) only reach namespace paths.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { QmpClosedError, QmpCommandError, VmStateError } from '../../hypervisor/errors.js';
import { ConnectionClosedError, TtrpcError } from '../../protocol/errors.js';
import { TtrpcClient } from '../../protocol/ttrpc/client.js';
import { Code } from '../../protocol/ttrpc/codes.js';
import { duplexPair } from '../../protocol/ttrpc/duplex-pair.js';
import { TtrpcServer } from '../../protocol/ttrpc/server.js';
import type { EventSink } from '../../shim/containerd/events.js';
import type { PodAgent, PodVm, PodVmFactory, RootfsMounter } from '../../shim/containerd/pod.js';
import { decode, TASK_SERVICE, taskService, TaskStatus } from '../../shim/containerd/protos.js';
import { TaskService, VM_DIED_STATUS } from '../../shim/containerd/service.js';
import type { IoOpener } from '../../shim/containerd/stdio.js';
import type { VmSize } from '../../shim/sandbox/vm-sizing.js';
import { makeBundle } from '../helpers/hull.js';

class Deferred<T> {
  resolve!: (v: T) => void;
  reject!: (e: unknown) => void;
  promise = new Promise<T>((res, rej) => {
    this.resolve = res;
    this.reject = rej;
  });
}

interface FakeProc {
  out: Buffer[];
  err: Buffer[];
  ended: boolean;
  wake: Array<() => void>;
  exit: Deferred<{ exitStatus: number; signal: number }>;
  stdin: Buffer[];
  stdinClosed: boolean;
}

class FakeAgent implements PodAgent {
  procs = new Map<string, FakeProc>();
  signals: Array<[string, string, number, boolean]> = [];
  updates: Array<{ containerId: string; resourcesJson: string }> = [];
  removed: string[] = [];
  private nextPid = 100;
  /** The spec of each container as the agent got it. */
  specs = new Map<string, string>();

  key(c: string, e: string): string {
    return `${c}/${e}`;
  }
  add(c: string, e: string): FakeProc {
    const p: FakeProc = { out: [], err: [], ended: false, wake: [], exit: new Deferred(), stdin: [], stdinClosed: false };
    this.procs.set(this.key(c, e), p);
    return p;
  }
  proc(c: string, e = ''): FakeProc {
    const p = this.procs.get(this.key(c, e));
    if (!p) throw new TtrpcError(Code.NotFound, `no process ${c}/${e}`);
    return p;
  }
  /** The process writes, then exits (its pipes close after the last write). */
  finish(c: string, e: string, status: number, out = '', err = ''): void {
    const p = this.proc(c, e);
    if (out) p.out.push(Buffer.from(out));
    if (err) p.err.push(Buffer.from(err));
    p.ended = true;
    for (const w of p.wake.splice(0)) w();
    p.exit.resolve({ exitStatus: status, signal: 0 });
  }

  async createContainer(req: { containerId: string; specJson: string }) {
    this.specs.set(req.containerId, req.specJson);
    this.add(req.containerId, '');
    return { pid: this.nextPid++ };
  }
  async startContainer(_id: string) {
    return { pid: 0 };
  }
  async execProcess(req: { containerId: string; execId: string }) {
    this.add(req.containerId, req.execId);
    return { pid: this.nextPid++ };
  }
  async signalProcess(c: string, e: string, signal: number, all = false) {
    this.signals.push([c, e, signal, all]);
    if (signal === 9) this.finish(c, e, 137);
  }
  waitProcess(c: string, e = '') {
    return this.proc(c, e).exit.promise;
  }
  private async read(which: 'out' | 'err', c: string, e: string): Promise<Buffer> {
    const p = this.proc(c, e);
    for (;;) {
      const chunk = p[which].shift();
      if (chunk) return chunk;
      if (p.ended) return Buffer.alloc(0);
      await new Promise<void>((r) => p.wake.push(r));
    }
  }
  readStdout(c: string, e: string) {
    return this.read('out', c, e);
  }
  readStderr(c: string, e: string) {
    return this.read('err', c, e);
  }
  async writeStdin(c: string, e: string, data: Buffer) {
    this.proc(c, e).stdin.push(data);
  }
  async closeStdin(c: string, e = '') {
    this.proc(c, e).stdinClosed = true;
  }
  /** Execs the shim told the agent to forget, as "container/exec". */
  forgotten: string[] = [];
  async removeProcess(c: string, e: string) {
    this.forgotten.push(this.key(c, e));
    this.procs.delete(this.key(c, e));
  }
  async listProcesses(c: string) {
    return [{ pid: 100, execId: '', command: `init of ${c}` }];
  }
  async statsContainer(_c: string) {
    return {
      memoryCurrent: 1000,
      memoryMax: 0,
      memorySwapCurrent: 0,
      memorySwapMax: 0,
      memoryStat: { anon: 600, file: 300, inactive_file: 100, workingset_refault_anon: 2, workingset_refault_file: 3, bogus: 9 },
      cpuStat: { usage_usec: 7, user_usec: 3, system_usec: 4 },
      pidsCurrent: 1,
      pidsMax: 64,
      memoryEvents: { oom_kill: this.oomKills },
    };
  }
  /** memory.events oom_kill of every container's cgroup. */
  oomKills = 0;
  async updateContainer(req: { containerId: string; resourcesJson: string }) {
    this.updates.push(req);
  }
  resizes: Array<{ containerId: string; execId: string; width: number; height: number }> = [];
  async resizePty(req: { containerId: string; execId: string; width: number; height: number }) {
    this.resizes.push(req);
  }
  async removeContainer(c: string) {
    this.removed.push(c);
    const p = this.procs.get(this.key(c, ''));
    if (p && !p.ended) this.finish(c, '', 137);
  }
}

/** The fake pod VMM's host pid: what the service reports for every process of the pod. */
const VMM_PID = 4242;

class FakeVm implements PodVm {
  agent = new FakeAgent();
  shared = new Set<string>();
  paused = false;
  /** What the VMM answers pause and resume with, when it fails. */
  vmmError: Error | undefined;
  shutdowns = 0;
  private dying = new Deferred<string>();
  died = this.dying.promise;
  addContainer(id: string) {
    this.shared.add(id);
    return `/run/hull/shared/${id}/rootfs`;
  }
  removeContainer(id: string) {
    this.shared.delete(id);
  }
  async pause() {
    if (this.vmmError) throw this.vmmError;
    this.paused = true;
  }
  async resume() {
    if (this.vmmError) throw this.vmmError;
    this.paused = false;
  }
  processes() {
    return { vmm: { role: 'vmm', pid: VMM_PID } };
  }
  vmSize: VmSize | undefined = { vcpus: 1, memoryMiB: 512 };
  /** growMemory calls, in order, each with the agent updates made before it. */
  grown: Array<{ memoryMiB: number; updatesBefore: number }> = [];
  async growMemory(memoryMiB: number) {
    this.grown.push({ memoryMiB, updatesBefore: this.agent.updates.length });
    this.vmSize = { ...this.vmSize!, memoryMiB };
  }
  usage() {
    return { cpuUserUsec: 3, cpuSystemUsec: 4, rssBytes: 1000, memoryLimitBytes: (this.vmSize?.memoryMiB ?? 0) * 2 ** 20, vcpus: 1 };
  }
  kill(reason: string) {
    this.dying.resolve(reason);
  }
  async shutdown() {
    this.shutdowns++;
  }
}

interface Recorded {
  topic: string;
  event: any;
  /** What the container's stdout FIFO had received when the event was published. */
  stdoutSoFar: string;
}

let dir: string;
let vms: FakeVm[];
let events: Recorded[];
let outputs: Map<string, { out: string; err: string }>;
let client: TtrpcClient;
let service: TaskService;
let shutdownCalled: boolean;
let mounts: string[];

function call<T = any>(method: string, request: object): Promise<T> {
  const m = taskService().methods[method]!;
  return client.call<T>(TASK_SERVICE, method, m.resolvedRequestType!, m.resolvedResponseType!, request, { timeoutMs: 5000 });
}

async function callError(method: string, request: object): Promise<TtrpcError> {
  try {
    await call(method, request);
  } catch (err) {
    return err as TtrpcError;
  }
  throw new Error(`${method} succeeded`);
}

function bundle(name: string, annotations: Record<string, string> = {}): string {
  return makeBundle(path.join(dir, name), ['sh'], (spec) => {
    spec.annotations = annotations;
  });
}

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'hull-cd-unit-'));
  vms = [];
  events = [];
  outputs = new Map();
  shutdownCalled = false;
  mounts = [];
  const sink: EventSink = {
    publish(topic, event: any) {
      const key = `${event.containerId}/${event.execId ?? (topic === '/tasks/exit' && event.id !== event.containerId ? event.id : '')}`;
      events.push({ topic, event, stdoutSoFar: outputs.get(key)?.out ?? '' });
    },
    flush: async () => undefined,
    close: () => undefined,
  };
  const factory: PodVmFactory = {
    async boot() {
      const vm = new FakeVm();
      vms.push(vm);
      return vm;
    },
  };
  const mounter: RootfsMounter = {
    mount: (_m, target) => void mounts.push(`+${target}`),
    unmount: (target) => void mounts.push(`-${target}`),
  };
  const openIo: IoOpener = async (paths, ctx) => {
    const key = `${ctx.containerId}/${paths.stdout.includes('exec-') ? paths.stdout.split('exec-')[1] : ''}`;
    const rec = { out: '', err: '' };
    outputs.set(key, rec);
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    stdout.on('data', (d: Buffer) => (rec.out += d.toString()));
    stderr.on('data', (d: Buffer) => (rec.err += d.toString()));
    const stdin = paths.stdin ? new PassThrough() : null;
    return { stdin, stdout, stderr, closeStdin: () => stdin?.end(), close: async () => undefined };
  };
  service = new TaskService({
    namespace: 'test',
    log: pino({ enabled: false }),
    events: sink,
    vms: factory,
    mounter,
    openIo,
    onShutdown: () => (shutdownCalled = true),
  });
  const server = new TtrpcServer();
  server.registerService(taskService(), service.handlers());
  const [a, b] = duplexPair();
  server.serve(a);
  client = new TtrpcClient(b);
});

afterEach(() => {
  client.close();
  rmSync(dir, { recursive: true, force: true });
});

const stdio = (id: string) => ({ stdin: '', stdout: `/fifo/${id}-stdout`, stderr: `/fifo/${id}-stderr`, terminal: false });

describe('task lifecycle', () => {
  test('create, start, output, exit, wait, delete; the VM lives exactly as long as its containers', async () => {
    const b = bundle('c1');
    const created = await call('Create', {
      id: 'c1',
      bundle: b,
      rootfs: [{ type: 'overlay', source: 'overlay', options: ['lowerdir=/l'] }],
      ...stdio('c1'),
    });
    expect(created.pid).toBe(VMM_PID);
    expect(vms).toHaveLength(1);
    expect(mounts).toEqual([`+${b}/rootfs`]);
    expect(vms[0]!.shared.has('c1')).toBe(true);
    expect((await call('State', { id: 'c1' })).status).toBe(TaskStatus.CREATED);

    const started = await call('Start', { id: 'c1' });
    expect(started.pid).toBe(VMM_PID);
    const state = await call('State', { id: 'c1' });
    expect(state).toMatchObject({ id: 'c1', bundle: b, pid: VMM_PID, status: TaskStatus.RUNNING, stdout: '/fifo/c1-stdout' });

    const waiting = call('Wait', { id: 'c1' });
    vms[0]!.agent.finish('c1', '', 3, 'hello\n', 'oops\n');
    const waited = await waiting;
    expect(waited.exitStatus).toBe(3);
    expect(waited.exitedAt.seconds).toBeGreaterThan(0);
    expect(outputs.get('c1/')).toEqual({ out: 'hello\n', err: 'oops\n' });
    const stopped = await call('State', { id: 'c1' });
    expect(stopped).toMatchObject({ status: TaskStatus.STOPPED, exitStatus: 3 });

    const deleted = await call('Delete', { id: 'c1' });
    expect(deleted).toMatchObject({ pid: VMM_PID, exitStatus: 3 });
    expect(vms[0]!.shutdowns).toBe(1);
    expect(vms[0]!.shared.size).toBe(0);
    expect(mounts).toEqual([`+${b}/rootfs`, `-${b}/rootfs`]);

    expect(events.map((e) => e.topic)).toEqual(['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete']);
    const exit = events.find((e) => e.topic === '/tasks/exit')!;
    expect(exit.event).toMatchObject({ containerId: 'c1', id: 'c1', pid: VMM_PID, exitStatus: 3 });
    // TaskExit went out only after the output reached the FIFO.
    expect(exit.stdoutSoFar).toBe('hello\n');
    expect(events[0]!.event).toMatchObject({ containerId: 'c1', bundle: b, pid: VMM_PID, io: { stdout: '/fifo/c1-stdout' } });

    expect((await callError('State', { id: 'c1' })).code).toBe(Code.NotFound);
    await call('Shutdown', { id: 'c1' });
    await until(() => shutdownCalled);
  });

  test('CRI namespace paths name the pod VMM pid: mapped to the guest init of the sandbox container', async () => {
    const sandbox = await call('Create', { id: 'sb', bundle: bundle('sb', { 'io.kubernetes.cri.container-type': 'sandbox' }), ...stdio('sb') });
    await call('Start', { id: 'sb' });
    expect(sandbox.pid).toBe(VMM_PID);
    await call('Create', { id: 'other', bundle: bundle('other'), ...stdio('other') }); // guest pid 101, not named below
    const annotations = { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': 'sb' };
    const app = makeBundle(path.join(dir, 'app'), ['sh'], (spec) => {
      spec.annotations = annotations;
      spec.linux.namespaces = [
        { type: 'pid', path: `/proc/${VMM_PID}/ns/pid` },
        { type: 'ipc', path: `/proc/${VMM_PID}/ns/ipc` },
        { type: 'uts', path: '/proc/100/ns/uts' }, // a guest pid: on the host, some other process
        { type: 'mount' },
      ];
    });
    expect((await call('Create', { id: 'app', bundle: app, ...stdio('app') })).pid).toBe(VMM_PID);
    const sent = JSON.parse(vms[0]!.agent.specs.get('app')!) as { linux: { namespaces: unknown } };
    expect(sent.linux.namespaces).toEqual([
      { type: 'pid', path: '/proc/100/ns/pid' },
      { type: 'ipc', path: '/proc/100/ns/ipc' },
      { type: 'uts' },
      { type: 'mount' },
    ]);
    for (const id of ['app', 'other', 'sb']) {
      await call('Kill', { id, signal: 9 }).catch(() => undefined);
      if (id === 'sb') await call('Wait', { id });
      await call('Delete', { id });
    }
  });

  test("containerd's error codes", async () => {
    const notFound = await callError('State', { id: 'nope' });
    expect(notFound.code).toBe(Code.NotFound);
    expect(notFound.message).toBe('container not created');
    expect((await callError('Start', { id: 'nope' })).code).toBe(Code.NotFound);
    expect((await callError('Checkpoint', { id: 'nope' })).code).toBe(Code.Unimplemented);
    expect((await callError('Update', { id: 'nope' })).code).toBe(Code.NotFound);

    await call('Create', { id: 'c2', bundle: bundle('c2'), ...stdio('c2') });
    expect((await callError('Create', { id: 'c2', bundle: bundle('c2b'), ...stdio('c2') })).code).toBe(Code.AlreadyExists);
    expect((await callError('Exec', { id: 'c2', execId: 'e', spec: { typeUrl: 'x', value: Buffer.from('{}') } })).code).toBe(
      Code.FailedPrecondition,
    );
    await call('Start', { id: 'c2' });
    expect((await callError('Start', { id: 'c2' })).code).toBe(Code.FailedPrecondition);
    expect((await callError('Delete', { id: 'c2' })).code).toBe(Code.FailedPrecondition);
    await call('Kill', { id: 'c2', signal: 9 });
    await call('Wait', { id: 'c2' });
    const finished = await callError('Kill', { id: 'c2', signal: 15 });
    expect(finished.code).toBe(Code.NotFound);
    expect(finished.message).toBe('process already finished');
    expect((await call('State', { id: 'c2' })).exitStatus).toBe(137);
    // Connect works for known and unknown ids.
    expect(await call('Connect', { id: 'c2' })).toMatchObject({ shimPid: process.pid, taskPid: VMM_PID });
    expect(await call('Connect', { id: 'other' })).toMatchObject({ shimPid: process.pid, taskPid: 0 });
    // Shutdown is a no-op while containers remain.
    await call('Shutdown', { id: 'c2' });
    expect(shutdownCalled).toBe(false);
    await call('Delete', { id: 'c2' });
  });

  test('exec: added, started, output, exit by exec id, duplicate ids refused', async () => {
    await call('Create', { id: 'c3', bundle: bundle('c3'), ...stdio('c3') });
    await call('Start', { id: 'c3' });
    const spec = { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from(JSON.stringify({ args: ['ls'], cwd: '/' })) };
    await call('Exec', { id: 'c3', execId: 'e1', stdout: '/fifo/exec-e1', stderr: '', spec });
    expect((await callError('Exec', { id: 'c3', execId: 'e1', spec })).code).toBe(Code.AlreadyExists);
    expect((await call('State', { id: 'c3', execId: 'e1' })).status).toBe(TaskStatus.CREATED);
    const { pid } = await call('Start', { id: 'c3', execId: 'e1' });
    expect(pid).toBe(VMM_PID);
    const waiting = call('Wait', { id: 'c3', execId: 'e1' });
    vms[0]!.agent.finish('c3', 'e1', 0, 'listing\n');
    expect((await waiting).exitStatus).toBe(0);
    expect(outputs.get('c3/e1')!.out).toBe('listing\n');
    expect(vms[0]!.agent.forgotten).toEqual([]);
    expect(await call('Delete', { id: 'c3', execId: 'e1' })).toMatchObject({ pid: VMM_PID, exitStatus: 0 });
    expect(vms[0]!.agent.forgotten).toEqual(['c3/e1']);
    const topics = events.map((e) => e.topic);
    expect(topics).toEqual(['/tasks/create', '/tasks/start', '/tasks/exec-added', '/tasks/exec-started', '/tasks/exit']);
    expect(events[3]!.event).toMatchObject({ containerId: 'c3', execId: 'e1', pid: VMM_PID });
    expect(events[4]!.event).toMatchObject({ containerId: 'c3', id: 'e1', pid: VMM_PID });
    // the container is still running
    expect((await call('State', { id: 'c3' })).status).toBe(TaskStatus.RUNNING);
    expect(vms[0]!.shutdowns).toBe(0);
  });

  test('TaskOOM before the TaskExit of a process whose container counted a new OOM kill; not again for the same kill', async () => {
    await call('Create', { id: 'oom1', bundle: bundle('oom1'), ...stdio('oom1') });
    await call('Start', { id: 'oom1' });
    const spec = { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from(JSON.stringify({ args: ['tail', '/dev/zero'], cwd: '/' })) };
    await call('Exec', { id: 'oom1', execId: 'e1', stdout: '/fifo/oom1-e1', stderr: '', spec });
    await call('Start', { id: 'oom1', execId: 'e1' });
    vms[0]!.agent.oomKills = 1;
    vms[0]!.agent.finish('oom1', 'e1', 137);
    await call('Wait', { id: 'oom1', execId: 'e1' });
    vms[0]!.agent.finish('oom1', '', 0);
    await call('Wait', { id: 'oom1' });
    const topics = events.map((e) => e.topic).filter((t) => t === '/tasks/oom' || t === '/tasks/exit');
    expect(topics).toEqual(['/tasks/oom', '/tasks/exit', '/tasks/exit']);
    expect(events.find((e) => e.topic === '/tasks/oom')!.event).toEqual({ containerId: 'oom1' });
  });

  test('a VMM failure reaches containerd with the code of the kind it was raised with', async () => {
    await call('Create', { id: 'c11', bundle: bundle('c11'), ...stdio('c11') });
    await call('Start', { id: 'c11' });
    const cases: Array<[Error, number]> = [
      [new QmpCommandError('stop', 'DeviceNotActive', 'not now'), Code.FailedPrecondition],
      [new QmpCommandError('stop', 'GenericError', 'broken'), Code.Internal],
      [new QmpClosedError('QMP connection closed before stop'), Code.Unavailable],
      [new VmStateError('cannot pause VM x: it is exited'), Code.FailedPrecondition],
      [new Error('no kind'), Code.Unknown],
    ];
    for (const [error, code] of cases) {
      vms[0]!.vmmError = error;
      const refused = await callError('Pause', { id: 'c11' });
      expect([refused.code, refused.message]).toEqual([code, error.message]);
    }
    vms[0]!.vmmError = undefined;
  });

  test('pause, resume, pids and stats', async () => {
    await call('Create', { id: 'c4', bundle: bundle('c4'), ...stdio('c4') });
    await call('Start', { id: 'c4' });
    await call('Pause', { id: 'c4' });
    expect(vms[0]!.paused).toBe(true);
    expect((await call('State', { id: 'c4' })).status).toBe(TaskStatus.PAUSED);
    await call('Resume', { id: 'c4' });
    expect((await call('State', { id: 'c4' })).status).toBe(TaskStatus.RUNNING);
    expect((await call('Pids', { id: 'c4' })).processes.map((p: { pid: number }) => p.pid)).toEqual([100]);
    vms[0]!.agent.oomKills = 1;
    const stats = await call('Stats', { id: 'c4' });
    expect(stats.stats.typeUrl).toBe('io.containerd.cgroups.v2.Metrics');
    // The guest cgroup's numbers; no memory limit in the guest → the VM's RAM is the limit; unknown keys dropped.
    expect(decode('io.containerd.cgroups.v2.Metrics', stats.stats.value)).toMatchObject({
      pids: { current: 1, limit: 64 },
      cpu: { usageUsec: 7, userUsec: 3, systemUsec: 4 },
      memory: { usage: 1000, usageLimit: 512 * 2 ** 20, anon: 600, file: 300, inactiveFile: 100, workingsetRefault: 5 },
      memoryEvents: { oomKill: 1 },
    });
    expect(events.map((e) => e.topic)).toContain('/tasks/paused');
    expect(events.map((e) => e.topic)).toContain('/tasks/resumed');
  });

  test('pids and exit statuses the guest reports are clamped before they reach containerd', async () => {
    await call('Create', { id: 'c10', bundle: bundle('c10'), ...stdio('c10') });
    await call('Start', { id: 'c10' });
    const agent = vms[0]!.agent;
    agent.listProcesses = async () => [
      { pid: 2 ** 32 - 1, execId: '', command: 'x' },
      { pid: 0, execId: '', command: 'y' },
      { pid: 7, execId: '', command: 'z' },
    ];
    expect((await call('Pids', { id: 'c10' })).processes.map((p: { pid: number }) => p.pid)).toEqual([0, 0, 7]);
    const waiting = call('Wait', { id: 'c10' });
    agent.finish('c10', '', 70_000);
    expect((await waiting).exitStatus).toBe(255);
  });

  test('ResizePty goes to the agent for terminal processes (an exec not started yet gets it at Start)', async () => {
    await call('Create', { id: 'c9', bundle: bundle('c9'), ...stdio('c9'), terminal: true });
    await call('Start', { id: 'c9' });
    await call('ResizePty', { id: 'c9', width: 100, height: 30 });
    const spec = { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from(JSON.stringify({ args: ['sh'], terminal: true })) };
    await call('Exec', { id: 'c9', execId: 'e1', stdout: '/fifo/exec-e1', stderr: '', terminal: true, spec });
    await call('ResizePty', { id: 'c9', execId: 'e1', width: 80, height: 24 });
    expect(vms[0]!.agent.resizes).toEqual([{ containerId: 'c9', execId: '', width: 100, height: 30 }]);
    await call('Start', { id: 'c9', execId: 'e1' });
    expect(vms[0]!.agent.resizes).toEqual([
      { containerId: 'c9', execId: '', width: 100, height: 30 },
      { containerId: 'c9', execId: 'e1', width: 80, height: 24 },
    ]);
    await call('Create', { id: 'c10', bundle: bundle('c10'), ...stdio('c10') });
    expect((await callError('ResizePty', { id: 'c10', width: 1, height: 1 })).code).toBe(Code.FailedPrecondition);
  });

  test('Update hands LinuxResources (JSON) to the guest; bad or missing resources are InvalidArgument', async () => {
    await call('Create', { id: 'c8', bundle: bundle('c8'), ...stdio('c8') });
    await call('Start', { id: 'c8' });
    const typeUrl = 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources';
    const resources = { memory: { limit: 67108864 }, cpu: { quota: 20000, period: 100000 } };
    await call('Update', { id: 'c8', resources: { typeUrl, value: Buffer.from(JSON.stringify(resources)) } });
    expect(vms[0]!.agent.updates).toEqual([{ containerId: 'c8', resourcesJson: JSON.stringify(resources) }]);
    expect((await callError('Update', { id: 'c8' })).code).toBe(Code.InvalidArgument);
    expect((await callError('Update', { id: 'c8', resources: { typeUrl, value: Buffer.from('[1]') } })).code).toBe(Code.InvalidArgument);
    expect((await callError('Update', { id: 'c8', resources: { typeUrl, value: Buffer.from('{') } })).code).toBe(Code.InvalidArgument);
    // The VM (512 MiB, 1 vCPU here, booted without headroom) cannot grow: limits beyond it are refused, and nothing
    // reaches the guest.
    const tooBig = [
      [{ memory: { limit: 1024 * 2 ** 20 } }, /1024 MiB is more than the pod VM's 512 MiB, and it was booted without room to grow \(vm.max_memory_mib\)/],
      [{ cpu: { quota: 200000, period: 100000 } }, /2.00 CPUs is more than the pod VM's 1 vCPU\(s\), and a running VM cannot grow/],
    ] as const;
    for (const [resources, message] of tooBig) {
      const err = await callError('Update', { id: 'c8', resources: { typeUrl, value: Buffer.from(JSON.stringify(resources)) } });
      expect(err.code).toBe(Code.FailedPrecondition);
      expect(err.message).toMatch(message);
    }
    expect(vms[0]!.agent.updates).toHaveLength(1);
    expect(vms[0]!.grown).toEqual([]);
  });

  test("Update above the VM's memory grows it into its headroom before the guest gets the limit, up to the most", async () => {
    await call('Create', { id: 'g1', bundle: bundle('g1'), ...stdio('g1') });
    await call('Start', { id: 'g1' });
    const vm = vms[0]!;
    vm.vmSize = { vcpus: 1, memoryMiB: 512, maxMemoryMiB: 1024 };
    const typeUrl = 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources';
    const update = (limitMiB: number) => ({ id: 'g1', resources: { typeUrl, value: Buffer.from(JSON.stringify({ memory: { limit: limitMiB * 2 ** 20 } })) } });
    await call('Update', update(200)); // 200 + the guest's 256 fit in 512: no growth
    expect(vm.grown).toEqual([]);
    await call('Update', update(600)); // 600 + 256 = 856
    expect(vm.grown).toEqual([{ memoryMiB: 856, updatesBefore: 1 }]);
    await call('Update', update(800)); // 1056 is more than the VM can have: it grows to its most, 1024
    expect(vm.grown.at(-1)).toEqual({ memoryMiB: 1024, updatesBefore: 2 });
    const err = await callError('Update', update(2048));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.message).toMatch(/2048 MiB is more than the 1024 MiB the pod VM can grow to \(vm.max_memory_mib\); nothing was changed/);
    expect(vm.agent.updates).toHaveLength(3);
    expect(vm.grown).toHaveLength(2);
  });

  test('containers of one pod share the VM; the last delete stops it', async () => {
    await call('Create', { id: 'sandbox', bundle: bundle('s', { 'io.kubernetes.cri.sandbox-id': 'sandbox' }), ...stdio('sandbox') });
    await call('Start', { id: 'sandbox' });
    await call('Create', { id: 'app', bundle: bundle('a', { 'io.kubernetes.cri.sandbox-id': 'sandbox' }), ...stdio('app') });
    expect(vms).toHaveLength(1);
    expect([...vms[0]!.shared].sort()).toEqual(['app', 'sandbox']);
    // pausing one container of a two-container pod would pause both
    expect((await callError('Pause', { id: 'sandbox' })).code).toBe(Code.Unimplemented);
    await call('Delete', { id: 'app' }); // created, never started: killed and removed
    expect(vms[0]!.agent.removed).toContain('app');
    expect(vms[0]!.shutdowns).toBe(0);
    await call('Kill', { id: 'sandbox', signal: 9 });
    await call('Wait', { id: 'sandbox' });
    await call('Delete', { id: 'sandbox' });
    expect(vms[0]!.shutdowns).toBe(1);
  });

  test('the VM dying stops every process with a non-zero status', async () => {
    await call('Create', { id: 'c5', bundle: bundle('c5'), ...stdio('c5') });
    await call('Start', { id: 'c5' });
    const spec = { typeUrl: 't', value: Buffer.from('{"args":["sleep","9"],"cwd":"/"}') };
    await call('Exec', { id: 'c5', execId: 'e', spec });
    await call('Start', { id: 'c5', execId: 'e' });
    vms[0]!.kill('QEMU exited (crashed)');
    const [init, exec] = await Promise.all([call('Wait', { id: 'c5' }), call('Wait', { id: 'c5', execId: 'e' })]);
    expect(init.exitStatus).toBe(VM_DIED_STATUS);
    expect(exec.exitStatus).toBe(VM_DIED_STATUS);
    const exits = events.filter((e) => e.topic === '/tasks/exit');
    expect(exits.map((e) => e.event.id).sort()).toEqual(['c5', 'e']);
    await call('Delete', { id: 'c5', execId: 'e' });
    await call('Delete', { id: 'c5' });
    expect(vms[0]!.shutdowns).toBe(1);
  });

  test('CloseIO that arrives before the exec was started still closes its stdin once it runs', async () => {
    await call('Create', { id: 'c7', bundle: bundle('c7'), ...stdio('c7') });
    await call('Start', { id: 'c7' });
    const spec = { typeUrl: 't', value: Buffer.from('{"args":["cat"],"cwd":"/"}') };
    await call('Exec', { id: 'c7', execId: 'in', spec, ...stdio('exec-in'), stdin: '/fifo/exec-in-stdin' });
    await call('CloseIO', { id: 'c7', execId: 'in', stdin: true });
    await call('Start', { id: 'c7', execId: 'in' });
    const agent = vms[0]!.agent;
    await until(() => agent.proc('c7', 'in').stdinClosed);
  });

  test('a lost agent connection ends the process only once the VM is known to be dead, however long that takes', async () => {
    await call('Create', { id: 'c9', bundle: bundle('c9'), ...stdio('c9') });
    await call('Start', { id: 'c9' });
    vms[0]!.agent.proc('c9').exit.reject(new ConnectionClosedError('ttrpc connection closed by peer'));
    await new Promise((r) => setTimeout(r, 1200)); // QEMU's exit takes a while to be seen (helpers are stopped first)
    expect(events.filter((e) => e.topic === '/tasks/exit')).toEqual([]);
    vms[0]!.kill('QEMU exited (crashed: QEMU died of SIGKILL)');
    expect((await call('Wait', { id: 'c9' })).exitStatus).toBe(VM_DIED_STATUS);
  });

  test('TaskStart is published before the TaskExit of a process that exits at once', async () => {
    await call('Create', { id: 'c6', bundle: bundle('c6'), ...stdio('c6') });
    const agent = vms[0]!.agent;
    const realStart = agent.startContainer.bind(agent);
    agent.startContainer = async (id: string) => {
      agent.finish(id, '', 0); // exits while Start is still in flight
      await new Promise((r) => setTimeout(r, 20));
      return realStart(id);
    };
    await call('Start', { id: 'c6' });
    await call('Wait', { id: 'c6' });
    const topics = events.map((e) => e.topic);
    expect(topics.indexOf('/tasks/start')).toBeLessThan(topics.indexOf('/tasks/exit'));
  });
});
