// Unit tests of the host CLI's parsing and state handling (no VM).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { loadBundle } from '../../shim/bundle.js';
import { validateId } from '../../shim/ids.js';
import { writePidFile } from '../../shim/runc/pid-file.js';
import { parseSignal } from '../../shim/runc/signals.js';
import { createSandboxDir, listIds, readState, updateState, writeState, type ContainerState } from '../../shim/runc/state.js';
import { currentStatus, ociState } from '../../shim/runc/status.js';
import { pumpInput, pumpOutput } from '../../shim/sandbox/stdio-relay.js';
import { vmSizeFor, DEFAULT_MEMORY_MIB } from '../../shim/sandbox/vm-sizing.js';

const made: string[] = [];
const tmp = (): string => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hull-unit-'));
  made.push(dir);
  return dir;
};
afterAll(() => made.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

function bundle(spec: unknown, withRootfs = true): string {
  const dir = tmp();
  if (withRootfs) mkdirSync(path.join(dir, 'rootfs'));
  writeFileSync(path.join(dir, 'config.json'), typeof spec === 'string' ? spec : JSON.stringify(spec));
  return dir;
}

const validSpec = () => ({
  ociVersion: '1.0.2',
  root: { path: 'rootfs' },
  process: { args: ['sh'], cwd: '/', user: { uid: 0, gid: 0 } },
});

describe('loadBundle', () => {
  it('accepts a valid bundle and resolves the rootfs', () => {
    const dir = bundle(validSpec());
    const loaded = loadBundle(dir, { requireProcess: true });
    expect(loaded.rootfs).toBe(path.join(dir, 'rootfs'));
    expect(loaded.spec.process?.args).toEqual(['sh']);
  });

  it.each([
    ['not JSON', '{', /is not valid JSON/],
    ['missing ociVersion', { ...validSpec(), ociVersion: undefined }, /field \/ is missing ociVersion/],
    ['empty args', { ...validSpec(), process: { ...validSpec().process, args: [] } }, /field \/process\/args must NOT have fewer than 1 items/],
    ['uid not a number', { ...validSpec(), process: { ...validSpec().process, user: { uid: 'x', gid: 0 } } }, /field \/process\/user\/uid must be integer/],
    ['unsupported version', { ...validSpec(), ociVersion: '0.9' }, /unsupported ociVersion "0\.9"/],
    ['relative cwd', { ...validSpec(), process: { ...validSpec().process, cwd: 'x' } }, /process\.cwd "x" must be an absolute path/],
    ['escaping root', { ...validSpec(), root: { path: '../x' } }, /escapes the bundle/],
    ['relative mount', { ...validSpec(), mounts: [{ destination: 'proc' }] }, /mounts\[0\]\.destination "proc"/],
    ['dotdot mount', { ...validSpec(), mounts: [{ destination: '/a/../b' }] }, /mounts\[0\]\.destination/],
  ])('rejects %s with a one-line message', (_name, spec, pattern) => {
    expect(() => loadBundle(bundle(spec), { requireProcess: true })).toThrow(pattern);
  });

  it('names a missing rootfs and a missing process', () => {
    expect(() => loadBundle(bundle(validSpec(), false), { requireProcess: true })).toThrow(/rootfs .* does not exist/);
    const { process: _p, ...noProcess } = validSpec();
    expect(() => loadBundle(bundle(noProcess), { requireProcess: true })).toThrow(/field \/process is required/);
  });
});

describe('ids and signals', () => {
  it('validates ids like runc', () => {
    expect(validateId('a-b_c.1')).toBe('a-b_c.1');
    for (const bad of ['', 'a/b', 'a b', '..', 'x'.repeat(65), 'é']) expect(() => validateId(bad)).toThrow(/container id/);
  });

  it('parses numbers, names and SIG-prefixed names', () => {
    expect(parseSignal(undefined)).toBe(15);
    expect(parseSignal('9')).toBe(9);
    expect(parseSignal('KILL')).toBe(9);
    expect(parseSignal('sigusr1')).toBe(10);
    expect(parseSignal('SIGHUP')).toBe(1);
    expect(() => parseSignal('NOPE')).toThrow(/invalid signal "NOPE"/);
    expect(() => parseSignal('0')).toThrow(/invalid signal/);
  });
});

describe('state store', () => {
  const sample = (id: string, pid: number): ContainerState => ({
    ociVersion: '1.0.2', id, bundle: '/b', rootfs: '/b/rootfs', status: 'created', pid, annotations: {},
    created: new Date(0).toISOString(), owner: 'root', vm: {}, mounts: [],
  });

  it('creates, detects duplicates, updates atomically and lists', () => {
    const root = tmp();
    createSandboxDir(root, 'one');
    expect(() => createSandboxDir(root, 'one')).toThrow(/container one already exists/);
    writeState(root, sample('one', process.pid));
    updateState(root, 'one', (s) => void (s.status = 'running'));
    expect(readState(root, 'one').status).toBe('running');
    expect(listIds(root)).toEqual(['one']);
    expect(() => readState(root, 'two')).toThrow(/container two does not exist/);
  });

  it('reports a container whose monitor is gone as stopped, with pid 0', () => {
    const dead = sample('x', 2 ** 22 + 12345);
    expect(currentStatus(dead)).toBe('stopped');
    expect(ociState(dead)).toMatchObject({ status: 'stopped', pid: 0 });
    const alive = sample('y', process.pid);
    expect(ociState(alive)).toMatchObject({ status: 'created', pid: process.pid });
    // A live process that reused the monitor's pid is not the monitor: its start time differs.
    const reused = { ...sample('z', process.pid), pidStartTime: 1 };
    expect(currentStatus(reused)).toBe('stopped');
  });

  it('writes pid files with no newline', () => {
    const file = path.join(tmp(), 'p.pid');
    writePidFile(file, 1234);
    expect(readFileSync(file, 'utf8')).toBe('1234');
  });
});

describe('vm sizing', () => {
  it('defaults, and grows with linux.resources', () => {
    expect(vmSizeFor({ ociVersion: '1.0.2', root: { path: 'r' } })).toEqual({ vcpus: 1, memoryMiB: DEFAULT_MEMORY_MIB });
    const big = vmSizeFor({
      ociVersion: '1.0.2',
      root: { path: 'r' },
      linux: { resources: { memory: { limit: 1024 * 2 ** 20 }, cpu: { quota: 250000, period: 100000 } } },
    });
    expect(big).toEqual({ vcpus: 3, memoryMiB: 1024 + 256 });
  });
});

describe('stdio relay', () => {
  it('copies output until an empty read and feeds input in chunks, then closes', async () => {
    const chunks = [Buffer.from('a'), Buffer.from('bc'), Buffer.alloc(0)];
    let written = '';
    const out = new Writable({ write: (c: Buffer, _e, done) => ((written += c.toString()), done()) });
    await pumpOutput(async () => chunks.shift() ?? Buffer.alloc(0), out);
    expect(written).toBe('abc');

    const input = new PassThrough();
    const received: string[] = [];
    let closed = false;
    const pump = pumpInput(input, async (d) => void received.push(d.toString()), async () => void (closed = true));
    input.end('hello');
    await pump.done;
    expect(received.join('')).toBe('hello');
    expect(closed).toBe(true);
  });
});

describe('values from the guest', async () => {
  const { exitStatusFromGuest, printableFromGuest, pidFromGuest } = await import('../../shim/guest-values.js');
  it('clamps exit statuses and pids, and defuses terminal escapes', () => {
    expect(exitStatusFromGuest(7)).toBe(7);
    for (const bad of [-1, 256, 1.5, '3', undefined, 2 ** 40]) expect(exitStatusFromGuest(bad)).toBe(255);
    expect(pidFromGuest(42)).toBe(42);
    expect(pidFromGuest(-1)).toBe(0);
    expect(printableFromGuest('sleep\u001b[2Jx')).toBe('sleep?[2Jx');
    expect(printableFromGuest('a'.repeat(1000))).toHaveLength(256);
  });
});

describe('oneLine', async () => {
  const { oneLine, ONE_LINE_MAX } = await import('../../shim/errors.js');
  it('joins lines, defuses terminal escapes a guest put in an error, and caps the length', () => {
    expect(oneLine(new Error('a\n  b\r\nc'))).toBe('a | b | c');
    expect(oneLine(new Error('bad \u001b]0;pwned\u0007 \u009b2J\rx'))).toBe('bad ?]0;pwned? ?2J?x');
    const long = oneLine(new Error('x'.repeat(ONE_LINE_MAX * 2)));
    expect(long.length).toBe(ONE_LINE_MAX + 1);
  });
});

describe('logging', async () => {
  const { createLogger } = await import('../../shim/log.js');
  it('writes --log files synchronously, as JSON or as text lines', () => {
    const dir = tmp();
    const json = path.join(dir, 'log.json');
    createLogger({ file: json, format: 'json', debug: false }).error('boom');
    // go-runc reads the last error line's msg from a JSON log.
    expect(JSON.parse(readFileSync(json, 'utf8').trim())).toMatchObject({ level: 'error', msg: 'boom' });
    const text = path.join(dir, 'log.txt');
    createLogger({ file: text, format: 'text', debug: false }).warn({ id: 'x' }, 'careful');
    expect(readFileSync(text, 'utf8')).toMatch(/^time="[^"]+" level=warn msg="careful" \{"id":"x"\}\n$/);
  });
});
