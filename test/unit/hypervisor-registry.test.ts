// Unit tests of the VMM driver registry (hypervisor/registry.ts) and of the VM's recorded processes
// (hypervisor/vm-processes.ts): records written by earlier hull versions (no driver field, QEMU's processes as fixed
// fields in state.json, pod.json and vmm.json) are still read, reached and ended; a record naming a driver this hull
// does not have is one clear error and nothing is signalled. No QEMU: `sleep` stands in for the VM's processes and a
// Unix socket for the vsock backend.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { UnknownDriverError, VmRecordError, VmStateError, type HypervisorError } from '../../hypervisor/errors.js';
import { prepareSocketDir, sandboxPaths } from '../../hypervisor/paths.js';
import { isAlive, procStartTime } from '../../hypervisor/process.js';
import { readVmRecord } from '../../hypervisor/record.js';
import { connectRecordedVm, createVm, killRecordedVm, reattachVm } from '../../hypervisor/registry.js';
import type { VmConfig } from '../../hypervisor/types.js';
import { parseVmProcesses } from '../../hypervisor/vm-processes.js';
import { readPodRecord } from '../../shim/containerd/record.js';
import { errorKind, HullError } from '../../shim/errors.js';
import { createSandboxDir, readState } from '../../shim/runc/state.js';

const logger = pino({ enabled: false });
let tmp: string;
const savedSocketDir = process.env['HULL_SOCKET_DIR'];
const children: ChildProcess[] = [];
const servers: net.Server[] = [];

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-registry-'));
  process.env['HULL_SOCKET_DIR'] = path.join(tmp, 's');
});
afterEach(async () => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  for (const s of servers.splice(0)) await new Promise<void>((r) => s.close(() => r()));
});
afterAll(() => {
  if (savedSocketDir === undefined) delete process.env['HULL_SOCKET_DIR'];
  else process.env['HULL_SOCKET_DIR'] = savedSocketDir;
  rmSync(tmp, { recursive: true, force: true });
});

let seq = 0;
const freshDir = (): string => mkdtempSync(path.join(tmp, `sb${seq++}-`));

/** A live process to stand for one of the VM's, with its start time. */
async function sleeper(): Promise<{ pid: number; startTime: number }> {
  const child = spawn('/bin/sleep', ['30'], { stdio: 'ignore' });
  children.push(child);
  await new Promise((r) => child.once('spawn', r));
  const pid = child.pid as number;
  return { pid, startTime: procStartTime(pid) as number };
}

async function gone(pid: number, ms = 3000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (isAlive({ pid })) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** vmm.json as hull wrote it before drivers: no driver field, QEMU's processes as fixed fields. */
function oldVmRecord(dir: string, processes: object, transport = 'hybrid'): string {
  const file = sandboxPaths(dir).vmmRecord;
  const config = { id: 'old', dir, vcpus: 1, memoryMiB: 256, kernelPath: '/k', initrdPath: '/i', kernelCmdline: '', sharedDir: dir, accel: 'auto', guestCid: 3 };
  const record = { version: 1, config, accel: { accel: 'tcg', reason: 'test' }, transport, guestCid: 3, processes };
  writeFileSync(file, JSON.stringify(record));
  return file;
}

async function rejection(p: Promise<unknown>): Promise<HypervisorError> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err as HypervisorError,
  );
}

describe('recorded VM processes', () => {
  const OLD = { vmm: 10, virtiofsd: 11, vsockBackend: 12, startTimes: { vmm: 5, virtiofsd: 6 } };
  const NEW = {
    vmm: { role: 'vmm', pid: 10, startTime: 5 },
    helpers: [
      { role: 'vsock-backend', pid: 12 },
      { role: 'virtiofsd', pid: 11, startTime: 6 },
    ],
  };

  it('reads the shape of earlier hull as the VMM and a list of helpers in start order; today’s shape as it is', () => {
    expect(parseVmProcesses(OLD, 'test')).toEqual(NEW);
    expect(parseVmProcesses({ vmm: 10 }, 'test')).toEqual({ vmm: { role: 'vmm', pid: 10 } });
    expect(parseVmProcesses({}, 'test')).toEqual({});
    expect(parseVmProcesses(undefined, 'test')).toEqual({});
    const today = { driver: 'qemu-microvm', ...NEW };
    expect(parseVmProcesses(JSON.parse(JSON.stringify(today)), 'test')).toEqual(today);
  });

  it('reads old state.json, pod.json and vmm.json records into today’s shape', () => {
    const root = freshDir();
    const dir = createSandboxDir(root, 'c1');
    writeFileSync(path.join(dir, 'state.json'), JSON.stringify({ id: 'c1', status: 'running', pid: 1, vm: OLD, mounts: [] }));
    expect(readState(root, 'c1').vm).toEqual(NEW);

    const podDir = freshDir();
    writeFileSync(path.join(podDir, 'pod.json'), JSON.stringify({ shimPid: 1, namespace: 'n', groupId: 'g', vm: OLD, mounts: [], containers: [] }));
    expect(readPodRecord(podDir)?.vm).toEqual(NEW);

    const vmDir = freshDir();
    const record = readVmRecord(oldVmRecord(vmDir, OLD));
    expect(record.driver).toBeUndefined(); // the registry reads that as qemu-microvm
    expect(record.processes).toEqual(NEW);
  });

  it('refuses processes it cannot trust, naming the record', () => {
    for (const bad of [{ vmm: '10' }, { vmm: -1 }, { vmm: { pid: 10 } }, { helpers: [{ role: 'x', pid: 1.5 }] }, { helpers: {} }, [1]]) {
      const err = (() => {
        try {
          parseVmProcesses(bad, 'pod.json');
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err, JSON.stringify(bad)).toBeInstanceOf(VmRecordError);
      expect((err as VmRecordError).kind).toBe('internal');
      expect((err as Error).message).toMatch(/^pod\.json/);
    }
  });
});

describe('driver registry', () => {
  it('ends the processes of a record from before drivers (state.json of a sandbox the previous hull started)', async () => {
    const vmm = await sleeper();
    const helper = await sleeper();
    const stranger = await sleeper(); // its recorded start time does not match: some other process by now
    const root = freshDir();
    const dir = createSandboxDir(root, 'c2');
    const vm = {
      vmm: vmm.pid,
      virtiofsd: helper.pid,
      vsockBackend: stranger.pid,
      startTimes: { vmm: vmm.startTime, virtiofsd: helper.startTime, vsockBackend: stranger.startTime + 1 },
    };
    writeFileSync(path.join(dir, 'state.json'), JSON.stringify({ id: 'c2', status: 'running', pid: 1, vm, mounts: [] }));
    await killRecordedVm(readState(root, 'c2').vm);
    expect(await gone(vmm.pid)).toBe(true);
    expect(await gone(helper.pid)).toBe(true);
    expect(isAlive(stranger)).toBe(true);
  });

  it('removes what the VM left in the sandbox directory when given it', async () => {
    const dir = freshDir();
    const paths = sandboxPaths(dir);
    prepareSocketDir(paths);
    oldVmRecord(dir, {});
    await killRecordedVm({ driver: 'qemu-microvm' }, dir);
    expect([paths.socketDir, paths.vmmRecord].filter((p) => existsSync(p))).toEqual([]);
  });

  it('says in one error that a record names a driver this hull does not have, and signals nothing', async () => {
    const dir = freshDir();
    const vmm = await sleeper();
    const file = sandboxPaths(dir).vmmRecord;
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(oldVmRecord(dir, { vmm: vmm.pid }), 'utf8')), driver: 'firecracker' }));
    for (const err of [
      await rejection(reattachVm(dir, { logger })),
      await rejection(connectRecordedVm(dir, 1024, 100)),
      await rejection(killRecordedVm({ driver: 'firecracker', vmm: { role: 'vmm', pid: vmm.pid } }, dir)),
    ]) {
      expect(err).toBeInstanceOf(UnknownDriverError);
      expect(err.kind).toBe('failed-precondition');
      expect(err.message).toMatch(/^unknown VMM driver "firecracker" in .*; this hull has: qemu-microvm$/);
      expect(err.message).not.toContain('\n');
    }
    expect(isAlive(vmm)).toBe(true);

    const config = { id: 'x', dir, vcpus: 1, memoryMiB: 64, kernelPath: '/k', initrdPath: '/i', kernelCmdline: '', sharedDir: dir, accel: 'tcg', guestCid: 3 } satisfies VmConfig;
    const asked = (() => {
      try {
        createVm(config, { logger, driver: 'nope' });
      } catch (e) {
        return e as HypervisorError;
      }
      return undefined;
    })();
    expect(asked).toBeInstanceOf(UnknownDriverError);
    expect(asked?.kind).toBe('invalid-argument');
    expect(asked?.message).toBe('unknown VMM driver "nope"; this hull has: qemu-microvm');
  });

  it('reaches a VM recorded before drivers over the transport its record names', async () => {
    const dir = freshDir();
    const paths = sandboxPaths(dir);
    prepareSocketDir(paths);
    oldVmRecord(dir, { vmm: 1 });
    // The vsock backend's hybrid socket: `CONNECT <port>` → `OK <port>`, then an echo of the guest's port.
    const server = net.createServer((s) => {
      s.once('data', (d) => {
        expect(d.toString()).toBe('CONNECT 1024\n');
        s.write('OK 1024\n');
        s.pipe(s);
      });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(paths.vsockSock, r));
    const stream = await connectRecordedVm(dir, 1024, 2000);
    const echoed = new Promise<string>((r) => stream.once('data', (d: Buffer) => r(d.toString())));
    stream.write('ping');
    expect(await echoed).toBe('ping');
    stream.destroy();

    const none = freshDir();
    oldVmRecord(none, { vmm: 1 }, 'none');
    const err = await rejection(connectRecordedVm(none, 1024, 100));
    expect(err).toBeInstanceOf(VmStateError);
    expect(err.kind).toBe('failed-precondition');
  });

  it('a missing vmm.json is not-found', async () => {
    const err = await rejection(connectRecordedVm(freshDir(), 1024, 100));
    expect(err).toBeInstanceOf(VmRecordError);
    expect(err.kind).toBe('not-found');
  });
});

describe('error kinds at the edges', () => {
  it('takes the kind of a HullError or a HypervisorError, and none of any other error', () => {
    expect(errorKind(new HullError('not-found', 'x'))).toBe('not-found');
    expect(errorKind(new VmStateError('x'))).toBe('failed-precondition');
    expect(errorKind(new Error('x'))).toBeUndefined();
    expect(errorKind('x')).toBeUndefined();
  });
});
