// The sandbox core (shim/sandbox/) and the runc front end's `hull run` body (shim/runc/container-runner.ts) with a
// fake VMM driver (test/helpers/fake-vm.ts): real host processes stand for the VMM and its helper, the real guest
// agent runs in this process, and the share's bind mounts are real. What is proven here without a VM: a container
// runs to its own exit status; the VM dying, or one of its helpers dying, ends the container with VM_DIED_STATUS and
// says why; every host resource is on record before it exists, so a crash at any step leaves a record that the one
// teardown (releaseSandbox) can finish; and the supervisor picks the right outcome. Each test checks that nothing of
// it is left: no process, no mount, no directory.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { UnknownDriverError } from '../../hypervisor/errors.js';
import { isAlive } from '../../hypervisor/process.js';
import { createVm, registerDriver } from '../../hypervisor/registry.js';
import type { VmConfig, VmProcess } from '../../hypervisor/types.js';
import { ConnectionClosedError, TtrpcError } from '../../protocol/errors.js';
import { Code } from '../../protocol/ttrpc/codes.js';
import { VM_DIED_STATUS } from '../../shim/exit-status.js';
import { runContainer } from '../../shim/runc/container-runner.js';
import { readState, sandboxDir } from '../../shim/runc/state.js';
import { destroySandbox } from '../../shim/runc/teardown.js';
import { mountPointsUnder } from '../../shim/sandbox/host-mounts.js';
import { rootfsTarget } from '../../shim/sandbox/paths.js';
import { emptySandboxRecord, type SandboxRecord, type SandboxRecordStore } from '../../shim/sandbox/record.js';
import { Sandbox } from '../../shim/sandbox/sandbox.js';
import { superviseProcess } from '../../shim/sandbox/supervisor.js';
import { releaseSandbox } from '../../shim/sandbox/teardown.js';
import type { VmFactory } from '../../shim/sandbox/vm-factory.js';
import { FAKE_HELPER_ROLE, fakeVmDriver, registerFakeDriver, type FakeVm, type RegisteredFakeDriver } from '../helpers/fake-vm.js';
import { makeBundle, processesMentioning } from '../helpers/hull.js';
import { sh } from '../helpers/netns.js';
import { needRoot, prerequisitesMet } from '../helpers/prerequisites.js';

const silent = pino({ enabled: false });
const never = new Promise<never>(() => undefined);

describe('superviseProcess', () => {
  const agent = (waitProcess: () => Promise<{ exitStatus: number; signal: number }>) => ({ waitProcess });
  const later = <T>(ms: number, value: T): Promise<T> => new Promise((r) => setTimeout(() => r(value), ms));

  it('reports the exit status when the process exits first', async () => {
    expect(await superviseProcess(agent(() => Promise.resolve({ exitStatus: 3, signal: 0 })), never, 'c1', '')).toEqual({ kind: 'exited', status: 3 });
    // A status the guest cannot have reported is not passed on as is.
    expect(await superviseProcess(agent(() => Promise.resolve({ exitStatus: 1000, signal: 0 })), never, 'c1', '')).toEqual({ kind: 'exited', status: 255 });
  });

  it('reports the VM gone when that comes first', async () => {
    expect(await superviseProcess(agent(() => never), Promise.resolve('FakeVMM exited (crashed)'), 'c1', '')).toEqual({
      kind: 'vm-gone',
      reason: 'FakeVMM exited (crashed)',
    });
  });

  it('leaves one reaction on the VM promise however many waits it serves, and still tells current and later waits', async () => {
    let goneNow!: (reason: string) => void;
    const vmGone = new Promise<string>((resolve) => (goneNow = resolve));
    const thenCalls = vi.spyOn(vmGone, 'then');
    for (let i = 0; i < 50; i++) {
      expect(await superviseProcess(agent(() => Promise.resolve({ exitStatus: 0, signal: 0 })), vmGone, 'c1', `e${i}`)).toEqual({ kind: 'exited', status: 0 });
    }
    const waiting = ['w1', 'w2'].map((e) => superviseProcess(agent(() => never), vmGone, 'c1', e));
    goneNow('FakeVMM exited (crashed)');
    const gone = { kind: 'vm-gone', reason: 'FakeVMM exited (crashed)' };
    expect(await Promise.all(waiting)).toEqual([gone, gone]);
    expect(await superviseProcess(agent(() => never), vmGone, 'c1', 'late')).toEqual(gone);
    expect(thenCalls).toHaveBeenCalledTimes(1);
  });

  it('waits for the reason the VM is gone when the agent connection closes under the wait', async () => {
    const started = Date.now();
    const outcome = await superviseProcess(
      agent(() => Promise.reject(new ConnectionClosedError('WaitProcess: ttrpc connection closed'))),
      later(50, 'FakeVMM exited (killed by SIGKILL)'),
      'c1',
      '',
    );
    expect(outcome).toEqual({ kind: 'vm-gone', reason: 'FakeVMM exited (killed by SIGKILL)' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(40);
  });

  it('reports the process lost when the agent fails the wait while the VM runs', async () => {
    const failing = agent(() => Promise.reject(new TtrpcError(Code.NotFound, 'process e1 not found')));
    expect(await superviseProcess(failing, never, 'c1', 'e1')).toEqual({ kind: 'lost', reason: 'waiting for process e1 failed: process e1 not found' });
    expect(await superviseProcess(failing, never, 'c1', '')).toMatchObject({ kind: 'lost', reason: expect.stringMatching(/^waiting for process c1 failed/) });
  });
});

describe('registerDriver', () => {
  const config: VmConfig = {
    id: 'r1', dir: '/nonexistent', vcpus: 1, memoryMiB: 256, kernelPath: '/k', initrdPath: '/i', kernelCmdline: '', sharedDir: '/nonexistent', accel: 'auto', guestCid: 3,
  };

  it('plugs a driver in under its name, refuses a name taken, and takes it out again', () => {
    const work = mkdtempSync(path.join(os.tmpdir(), 'hull-core-registry-'));
    try {
      const driver = fakeVmDriver({ workDir: work, name: 'fake-registry' });
      expect(() => createVm(config, { logger: silent, driver: 'fake-registry' })).toThrow(UnknownDriverError);
      const unregister = registerDriver(driver);
      expect(createVm(config, { logger: silent, driver: 'fake-registry' })).toBe(driver.vms[0]);
      expect(() => registerDriver(fakeVmDriver({ workDir: work, name: 'fake-registry' }))).toThrow(
        expect.objectContaining({ kind: 'already-exists', message: 'a VMM driver named "fake-registry" is already registered' }),
      );
      expect(() => registerDriver({ ...driver, name: 'qemu-microvm' })).toThrow(/"qemu-microvm" is already registered/);
      unregister();
      unregister(); // a second call changes nothing
      expect(() => createVm(config, { logger: silent, driver: 'fake-registry' })).toThrow(UnknownDriverError);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});

const missingTool = (tool: string, pkg: string): string | false => !['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(path.join(d, tool))) && `${tool} (apt-get install ${pkg})`;

describe.runIf(
  prerequisitesMet('sandbox core with a fake VM', [needRoot(), !existsSync('/bin/busybox') && 'busybox (apt-get install busybox-static)', missingTool('ip', 'iproute2')]),
)('sandbox core with a fake VM (as root)', () => {
  let work: string;
  let fake: RegisteredFakeDriver;
  /** The container's "long-running process": sleep copied into the work dir, so a leak check finds it by path. */
  let sleepBin: string;
  const netns = `hull-unit-${process.pid}`;
  const netnsPath = `/run/netns/${netns}`;
  const savedSocketDir = process.env['HULL_SOCKET_DIR'];

  beforeAll(() => {
    work = mkdtempSync(path.join(os.tmpdir(), 'hull-core-unit-'));
    process.env['HULL_SOCKET_DIR'] = path.join(work, 's');
    fake = registerFakeDriver({ workDir: work });
    sleepBin = path.join(work, 'bin', 'sleep');
    mkdirSync(path.dirname(sleepBin));
    copyFileSync('/bin/sleep', sleepBin);
    // The container's network namespace (loopback only): runContainer inspects it and mirrors nothing.
    sh('ip', ['netns', 'add', netns]);
  });

  afterAll(async () => {
    // A failed test may have left a fake VM running: end it (and its guest's processes) before anything else.
    await Promise.all(fake?.driver.vms.map((vm) => vm.kill()) ?? []);
    fake?.unregister();
    try {
      sh('ip', ['netns', 'del', netns]);
    } catch {
      // never made
    }
    if (savedSocketDir === undefined) delete process.env['HULL_SOCKET_DIR'];
    else process.env['HULL_SOCKET_DIR'] = savedSocketDir;
    // Never delete through a mount that a failed test left.
    if (work && mountPointsUnder(work).length === 0) rmSync(work, { recursive: true, force: true });
  });

  /** Nothing of the fake VMs or their containers runs, and nothing is mounted below the work dir. */
  async function expectNothingLeft(vms: FakeVm[]): Promise<void> {
    for (const vm of vms) {
      const { vmm, helpers = [] } = vm.processes();
      for (const p of [vmm!, ...helpers]) expect(await gone(p), `${p.role} ${p.pid}`).toBe(true);
    }
    expect(processesMentioning(work)).toEqual([]);
    expect(mountPointsUnder(work)).toEqual([]);
  }

  function runOptions(root: string, id: string, bundleDir: string, logger: Logger, created: unknown[]) {
    return {
      root,
      id,
      bundleDir,
      logger,
      startImmediately: true,
      detached: false,
      vms: fake.factory,
      noHostCgroup: true,
      joinNetwork: () => netnsPath,
      onCreated: (r: unknown) => void created.push(r),
    };
  }

  it('hull run: the container runs to its own exit status, then the VM powers off and everything is released', async () => {
    const root = path.join(work, 'root-a');
    const bundle = makeBundle(path.join(work, 'bundle-a'), ['sh', '-c', 'echo hello from the fake guest; echo to stderr >&2; exit 3']);
    const created: unknown[] = [];
    let recordWhileRunning: SandboxRecord | undefined;
    const options = runOptions(root, 'a1', bundle, silent, created);
    const { result, stdout, stderr } = await withStdio(() =>
      runContainer({
        ...options,
        onCreated: (r) => {
          options.onCreated(r);
          const { vm, mounts } = readState(root, 'a1');
          recordWhileRunning = { vm, mounts };
        },
      }),
    );
    expect(result).toBe(3);
    expect(stdout).toBe('hello from the fake guest\n');
    expect(stderr).toBe('to stderr\n');
    expect(created).toEqual([{ ok: true, pid: process.pid }]);

    // While it ran, the record held the VM's processes (by driver) and the share's mount.
    const vm = fake.driver.vmIn(sandboxDir(root, 'a1'))!;
    expect(recordWhileRunning).toEqual({ vm: vm.processes(), mounts: [rootfsTarget(sandboxDir(root, 'a1'), 'a1')] });
    expect(vm.processes()).toMatchObject({ driver: 'fake', vmm: { role: 'vmm' }, helpers: [{ role: FAKE_HELPER_ROLE }] });

    const state = readState(root, 'a1');
    expect(state).toMatchObject({ status: 'stopped', exitStatus: 3, vm: {}, mounts: [] });
    expect(state.stopReason).toBeUndefined();
    // Ended by the guest's power-off, or by hull once the agent confirmed its sync (Sandbox.shutdown); never crashed.
    expect((await vm.wait()).reason).toMatch(/^(shutdown|quit|killed)$/);
    await expectNothingLeft([vm]);

    // hull delete: the state directory goes.
    await destroySandbox(root, 'a1', 1_000);
    expect(readdirSync(root)).toEqual([]);
  });

  it('hull run: the VM dying under a running container ends it with VM_DIED_STATUS and says so', async () => {
    const root = path.join(work, 'root-b');
    const bundle = makeBundle(path.join(work, 'bundle-b'), [sleepBin, '1000']);
    const log = capturedLog();
    const run = withStdio(() => runContainer(runOptions(root, 'b1', bundle, log.logger, [])));
    await log.seen('container started');
    const vm = fake.driver.vmIn(sandboxDir(root, 'b1'))!;
    await until(() => processesMentioning(sleepBin).length > 0);
    process.kill(vm.vmmProcess.pid, 'SIGKILL');

    const { result, stderr } = await run;
    expect(result).toBe(VM_DIED_STATUS);
    const state = readState(root, 'b1');
    expect(state).toMatchObject({ status: 'stopped', exitStatus: VM_DIED_STATUS, vm: {}, mounts: [] });
    expect(state.stopReason).toMatch(/^the VM died: FakeVMM exited \(crashed by SIGKILL\); guest console /);
    expect(stderr).toContain(`hull: container b1: ${state.stopReason}`);
    await expectNothingLeft([vm]);
    await destroySandbox(root, 'b1', 1_000);
    expect(readdirSync(root)).toEqual([]);
  });

  it('hull run: a helper dying makes the sandbox stop the VM, and the container ends with VM_DIED_STATUS', async () => {
    const root = path.join(work, 'root-c');
    const bundle = makeBundle(path.join(work, 'bundle-c'), [sleepBin, '1000']);
    const log = capturedLog();
    const run = withStdio(() => runContainer(runOptions(root, 'c1', bundle, log.logger, [])));
    await log.seen('container started');
    const vm = fake.driver.vmIn(sandboxDir(root, 'c1'))!;
    await until(() => processesMentioning(sleepBin).length > 0);
    const helper = vm.helperProcess;
    process.kill(helper.pid, 'SIGKILL');

    const { result } = await run;
    expect(result).toBe(VM_DIED_STATUS);
    // hull, not the VMM, ended the VM, and the reason names the helper.
    expect(await vm.wait()).toMatchObject({ reason: 'killed', signal: 'SIGKILL' });
    const state = readState(root, 'c1');
    expect(state).toMatchObject({ status: 'stopped', exitStatus: VM_DIED_STATUS, vm: {}, mounts: [] });
    expect(state.stopReason).toContain(`FakeVMM exited (killed by SIGKILL, stopped by hull: its helper ${FAKE_HELPER_ROLE} (pid ${helper.pid}) is gone)`);
    expect(log.lines.some((l) => l.msg === 'stopping the VM' && String(l.reason).includes(FAKE_HELPER_ROLE))).toBe(true);
    await expectNothingLeft([vm]);
    await destroySandbox(root, 'c1', 1_000);
    expect(readdirSync(root)).toEqual([]);
  });

  describe('every resource is on record before it exists', () => {
    const size = { vcpus: 1, memoryMiB: 256 };

    /** A sandbox directory and a host rootfs (with a file that must survive the release). */
    function fixture(name: string): { dir: string; rootfs: string; store: MemoryStore } {
      const dir = mkdtempSync(path.join(work, `${name}-`));
      const rootfs = mkdtempSync(path.join(work, `${name}-rootfs-`));
      writeFileSync(path.join(rootfs, 'keep'), 'host file');
      return { dir, rootfs, store: memoryStore() };
    }

    async function expectReleased(dir: string, rootfs: string, store: MemoryStore, vms: FakeVm[]): Promise<void> {
      expect(store.read()).toEqual(emptySandboxRecord());
      await expectNothingLeft(vms);
      // The share (and the console log the VM left) are gone; the host's files are untouched.
      expect(readdirSync(dir)).toEqual([]);
      expect(readFileSync(path.join(rootfs, 'keep'), 'utf8')).toBe('host file');
    }

    it('a VM factory that fails once the VM is on record: boot rejects and releases all of it from the record', async () => {
      const { dir, rootfs, store } = fixture('d1');
      let onRecord: SandboxRecord | undefined;
      const crashing: VmFactory = {
        async boot(request) {
          await fake.factory.boot({
            ...request,
            onProcesses: (vm) => {
              request.onProcesses(vm);
              onRecord = store.read();
            },
          });
          throw new Error('the factory failed with the VM running');
        },
      };
      const sandbox = new Sandbox({ id: 'd1', dir, logger: silent, record: store, vms: crashing });
      sandbox.addContainer('d1', rootfs, []);
      await expect(sandbox.boot({ size, detached: false })).rejects.toThrow('the factory failed with the VM running');

      const vm = fake.driver.vmIn(dir)!;
      expect(onRecord).toEqual({ vm: vm.processes(), mounts: [rootfsTarget(dir, 'd1')] });
      expect(await vm.wait()).toMatchObject({ reason: 'crashed', signal: 'SIGTERM' }); // ended from the record
      await expectReleased(dir, rootfs, store, [vm]);
      await expect(sandbox.died).resolves.toBe('sandbox d1 was shut down');
    });

    it.each(['after sharing the container', 'during boot, once the VM is on record', 'after boot'] as const)(
      'a crash %s leaves a record that releaseSandbox finishes',
      async (step) => {
        const { dir, rootfs, store } = fixture('d2');
        let reached!: () => void;
        const onRecord = new Promise<void>((r) => (reached = r));
        // The crash is the Sandbox object dropped where it stands: no shutdown, no catch, only the record remains.
        const hanging: VmFactory = {
          async boot(request) {
            await fake.factory.boot({ ...request, onProcesses: (vm) => (request.onProcesses(vm), reached()) });
            return never;
          },
        };
        // Containers are shared when the VM's directory is known, before the VM starts: crash right there.
        const sharedOnly: VmFactory = {
          async boot(request) {
            request.prepareShare(request.dir);
            reached();
            return never;
          },
        };
        const vms = step === 'after boot' ? fake.factory : step === 'after sharing the container' ? sharedOnly : hanging;
        let sandbox: Sandbox | undefined = new Sandbox({ id: 'd2', dir, logger: silent, record: store, vms });
        sandbox.addContainer('d2', rootfs, []);
        if (step !== 'after boot') {
          void sandbox.boot({ size, detached: false });
          await onRecord;
        } else if (step === 'after boot') {
          await sandbox.boot({ size, detached: false });
        }
        sandbox = undefined;

        const vm = fake.driver.vmIn(dir);
        const record = store.read()!;
        expect(record.mounts).toEqual([rootfsTarget(dir, 'd2')]);
        expect(mountPointsUnder(dir)).toEqual([rootfsTarget(dir, 'd2')]);
        if (step === 'after sharing the container') {
          expect(vm).toBeUndefined();
          expect(record.vm).toEqual({});
        } else {
          expect(record.vm).toEqual(vm!.processes());
          expect(isAlive(vm!.vmmProcess) && isAlive(vm!.helperProcess)).toBe(true);
        }

        await releaseSandbox(dir, store, silent);
        await expectReleased(dir, rootfs, store, vm ? [vm] : []);
      },
    );
  });
});

type MemoryStore = SandboxRecordStore;

/** A sandbox record kept in memory, as a front end's record file would keep it. */
function memoryStore(): MemoryStore {
  let record: SandboxRecord = emptySandboxRecord();
  return {
    read: () => structuredClone(record),
    update(change) {
      const next = structuredClone(record);
      change(next);
      record = next;
    },
  };
}

async function gone(p: VmProcess, ms = 3_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (isAlive(p)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

async function until(check: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${check.toString()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A logger whose lines the test reads, and waits for by message. */
function capturedLog(): { logger: Logger; lines: Array<Record<string, unknown>>; seen(msg: string): Promise<void> } {
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<{ msg: string; resolve: () => void }> = [];
  const logger = pino(
    { level: 'debug' },
    {
      write(line: string) {
        const entry = JSON.parse(line) as Record<string, unknown>;
        lines.push(entry);
        for (const w of waiters.filter((x) => x.msg === entry['msg'])) w.resolve();
      },
    },
  );
  return {
    logger,
    lines,
    seen: (msg) =>
      lines.some((l) => l['msg'] === msg) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ msg, resolve })),
  };
}

/**
 * Runs `fn` with this process's stdio replaced, as the monitor's would be: stdin that nobody types into, stdout and
 * stderr collected. runContainer relays the container's stdio to and from process.std*.
 */
async function withStdio<T>(fn: () => Promise<T>): Promise<{ result: T; stdout: string; stderr: string }> {
  const names = ['stdin', 'stdout', 'stderr'] as const;
  const saved = names.map((n) => [n, Object.getOwnPropertyDescriptor(process, n)!] as const);
  const out = { stdout: '', stderr: '' };
  const sink = (name: 'stdout' | 'stderr'): Writable =>
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        out[name] += chunk.toString();
        cb();
      },
    });
  const replace = { stdin: new PassThrough(), stdout: sink('stdout'), stderr: sink('stderr') };
  for (const n of names) Object.defineProperty(process, n, { configurable: true, enumerable: true, get: () => replace[n] });
  try {
    const result = await fn();
    return { result, ...out };
  } finally {
    for (const [n, d] of saved) Object.defineProperty(process, n, d);
  }
}
