// `containerd-shim-hull-v2 … delete` after the pod's shim died: containerd runs one delete per container of that shim,
// all at once (one per closed task connection). Each must leave the pod record right for the others, and the last
// one must remove the pod directory. Runs against a temp root: no VM, no real pod.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { isAlive, procStartTime } from '../../hypervisor/process.js';
import { SANDBOX_ID_ANNOTATION, sandboxDirFor } from '../../shim/containerd/address.js';
import { deleteShim } from '../../shim/containerd/delete.js';
import type { ShimFlags } from '../../shim/containerd/flags.js';
import { readPodRecord, writePodRecord } from '../../shim/containerd/record.js';

const NS = 'k8s.io';
const POD = 'pod1';
let tmp: string;
let root: string;
let podDir: string;

/** A pid that no longer runs: the shim that died. */
const deadPid = (): number => spawnSync('true').pid!;

function bundleFor(id: string): string {
  const bundle = path.join(tmp, 'bundles', id);
  mkdirSync(bundle, { recursive: true });
  writeFileSync(path.join(bundle, 'config.json'), JSON.stringify({ annotations: { [SANDBOX_ID_ANNOTATION]: POD } }));
  return bundle;
}

const flagsFor = (id: string): ShimFlags => ({
  namespace: NS,
  address: path.join(tmp, 'containerd.sock'),
  publishBinary: '',
  id,
  bundle: bundleFor(id),
  socket: '',
  debug: false,
  version: false,
  action: 'delete',
  rest: [],
});

function writeDeadPod(ids: string[]): void {
  writePodRecord(podDir, {
    shimPid: deadPid(),
    namespace: NS,
    groupId: POD,
    vm: {},
    mounts: [],
    containers: ids.map((id) => ({ id, bundle: bundleFor(id) })),
  });
}

beforeEach(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-delete-'));
  root = path.join(tmp, 'root');
  podDir = sandboxDirFor(root, NS, POD);
});

afterEach(() => rmSync(tmp, { recursive: true, force: true }));

test('one delete of two: the record keeps the other container', async () => {
  writeDeadPod([POD, 'c1']);
  await deleteShim(flagsFor('c1'), root);
  expect(readPodRecord(podDir)?.containers.map((c) => c.id)).toEqual([POD]);
});

test('deletes of every container of a dead shim, run at once: none loses the others\' update, the pod dir goes', async () => {
  const ids = [POD, 'c1', 'c2'];
  writeDeadPod(ids);
  const results = await Promise.all(ids.map((id) => deleteShim(flagsFor(id), root)));
  for (const r of results) expect(r.response.length).toBeGreaterThan(0);
  expect(existsSync(podDir)).toBe(false);
  expect(existsSync(root) ? readdirSync(root) : []).toEqual([]); // no lock file left either
});

test('a pod record written by the previous hull (the VM\'s processes as fixed fields) still gets its VM ended', async () => {
  const child = spawn('/bin/sleep', ['30'], { stdio: 'ignore' });
  await new Promise((r) => child.once('spawn', r));
  const vmm = { pid: child.pid as number, startTime: procStartTime(child.pid as number) as number };
  const exited = new Promise((r) => child.once('exit', r));
  try {
    writeDeadPod([POD]);
    const file = path.join(podDir, 'pod.json');
    const record = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    writeFileSync(file, JSON.stringify({ ...record, vm: { vmm: vmm.pid, startTimes: { vmm: vmm.startTime } } }));
    const result = await deleteShim(flagsFor(POD), root);
    expect(result.warnings).toEqual([]);
    await exited;
    expect(isAlive(vmm)).toBe(false);
    expect(existsSync(podDir)).toBe(false);
  } finally {
    child.kill('SIGKILL');
  }
});
