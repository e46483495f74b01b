// Host bind sources of a spec: which mounts count, how their sources are rewritten to guest paths of the share, what
// is refused (shim/sandbox/share-mounts.ts); and, as root, the real mounts made into a share and their release.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isMounted, mountPointsUnder } from '../../shim/sandbox/host-mounts.js';
import { releaseContainerShare, releaseShare } from '../../shim/sandbox/container-share.js';
import { containerShare, hostMountTarget, sharedDir } from '../../shim/sandbox/paths.js';
import { mountHostBinds, planHostBinds, type InspectSource, type SourceInfo } from '../../shim/sandbox/share-mounts.js';
import { needRoot, prerequisitesMet } from '../helpers/prerequisites.js';

const HOST: Record<string, SourceInfo> = {
  '/etc/hosts': { real: '/etc/hosts', kind: 'file' },
  '/var/lib/data': { real: '/var/lib/data', kind: 'directory' },
  '/run/link-to-proc': { real: '/proc/self/mounts', kind: 'file' },
  '/run/app.sock': { real: '/run/app.sock', kind: 'other' },
  '/srv/link': { real: '/srv/real', kind: 'directory' },
  '/bundle/data': { real: '/bundle/data', kind: 'directory' },
};
const inspect: InspectSource = (p) => HOST[p];

const spec = (mounts: unknown[]): string =>
  JSON.stringify({ ociVersion: '1.0.2', root: { path: 'rootfs' }, process: { args: ['sh'], cwd: '/' }, mounts });

const plan = (mounts: unknown[]) => planHostBinds(spec(mounts), 'c1', '/bundle', inspect);
const mountsOf = (json: string) => (JSON.parse(json) as { mounts: Array<{ source: string }> }).mounts;

describe('planHostBinds', () => {
  it('leaves a spec without host binds byte-identical', () => {
    const json = spec([
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid'] },
      { destination: '/null2', type: 'bind', source: '/dev/null', options: ['bind'] },
    ]);
    const result = planHostBinds(json, 'c1', '/bundle', inspect);
    expect(result.binds).toEqual([]);
    expect(result.specJson).toBe(json);
  });

  it('rewrites file and directory binds to the guest path of their mount point, keeping everything else', () => {
    const result = plan([
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/etc/hosts', type: 'bind', source: '/etc/hosts', options: ['rbind', 'ro'] },
      { destination: '/data', type: 'none', source: '/var/lib/data', options: ['bind', 'rw'] },
      { destination: '/srv', source: '/srv/link', options: ['rbind', 'ro', 'rw'] },
      { destination: '/zero', type: 'bind', source: '/dev/zero' },
    ]);
    expect(result.binds).toEqual([
      { index: 1, source: '/etc/hosts', file: true, recursive: true, readonly: true },
      { index: 2, source: '/var/lib/data', file: false, recursive: false, readonly: false },
      // The resolved path is what gets mounted; the last of ro/rw wins.
      { index: 3, source: '/srv/real', file: false, recursive: true, readonly: false },
    ]);
    const mounts = JSON.parse(result.specJson).mounts as Array<Record<string, unknown>>;
    expect(mounts.map((m) => m.source)).toEqual([
      'proc',
      '/run/hull/shared/c1/mounts/1',
      '/run/hull/shared/c1/mounts/2',
      '/run/hull/shared/c1/mounts/3',
      '/dev/zero',
    ]);
    expect(mounts[1]).toEqual({ destination: '/etc/hosts', type: 'bind', source: '/run/hull/shared/c1/mounts/1', options: ['rbind', 'ro'] });
    expect(JSON.parse(result.specJson).process).toEqual(JSON.parse(spec([])).process);
  });

  it('resolves a relative source against the bundle directory (runtime-spec)', () => {
    expect(plan([{ destination: '/d', type: 'bind', source: 'data' }]).binds).toEqual([
      { index: 0, source: '/bundle/data', file: false, recursive: false, readonly: false },
    ]);
  });

  it.each([
    ['a relative source that is not in the bundle', { destination: '/x', type: 'bind', source: 'rootfs/x' }, /mounts\[0\] \(\/x\): bind source "rootfs\/x" does not exist/],
    ['a missing source', { destination: '/x', type: 'bind', source: '/nope' }, /mounts\[0\] \(\/x\): bind source "\/nope" does not exist/],
    ['no source at all', { destination: '/x', options: ['rbind'] }, /mounts\[0\] \(\/x\): bind source "" is empty/],
    ['the host /proc', { destination: '/x', type: 'bind', source: '/proc/1/root' }, /bind source "\/proc\/1\/root" is under the host's \/proc, \/sys or \/dev/],
    ['the host /sys', { destination: '/x', type: 'bind', source: '/sys' }, /is under the host's \/proc, \/sys or \/dev/],
    ['a host /dev node that is not a harmless one', { destination: '/dev/shm', type: 'bind', source: '/dev/shm' }, /"\/dev\/shm" is under the host's/],
    ['/dev/../proc spelled out', { destination: '/x', type: 'bind', source: '/dev/../proc' }, /is under the host's/],
    ['a symlink into /proc', { destination: '/x', type: 'bind', source: '/run/link-to-proc' }, /resolves to \/proc\/self\/mounts, under the host's/],
    ['a socket', { destination: '/x.sock', type: 'bind', source: '/run/app.sock' }, /is neither a file nor a directory/],
  ])('refuses %s with one line naming the mount', (_name, mount, pattern) => {
    let message = '';
    try {
      plan([mount]);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(pattern);
    expect(message).toMatch(/^config\.json: mounts\[0\]/);
    expect(message).not.toContain('\n');
  });
});

describe.runIf(prerequisitesMet('mountHostBinds (real mounts)', [needRoot()]))('mountHostBinds (real mounts, as root)', () => {
  const work = mkdtempSync(path.join(os.tmpdir(), 'hull-share-unit-'));
  afterAll(() => {
    // Never delete through a mount that a failed test left.
    if (mountPointsUnder(work).length === 0) rmSync(work, { recursive: true, force: true });
  });

  it('mounts a file read-only and a directory read-write into the share, records first, and releases it all', () => {
    const dir = path.join(work, 'sandbox');
    const hostFile = path.join(work, 'hosts');
    const hostDir = path.join(work, 'data');
    writeFileSync(hostFile, '10.0.0.1 example\n');
    mkdirSync(hostDir);
    const { binds, specJson } = planHostBinds(
      spec([
        { destination: '/etc/hosts', type: 'bind', source: hostFile, options: ['rbind', 'ro'] },
        { destination: '/data', type: 'bind', source: hostDir, options: ['rbind', 'rw'] },
      ]),
      'c1',
      '/bundle',
    );
    expect(mountsOf(specJson).map((m) => m.source)).toEqual(['/run/hull/shared/c1/mounts/0', '/run/hull/shared/c1/mounts/1']);
    const recorded: string[] = [];
    mountHostBinds(dir, 'c1', binds, (targets) => {
      // On record before anything is mounted.
      expect(targets.some(isMounted)).toBe(false);
      recorded.push(...targets);
    });
    const [fileTarget, dirTarget] = [hostMountTarget(dir, 'c1', 0), hostMountTarget(dir, 'c1', 1)];
    expect(recorded).toEqual([fileTarget, dirTarget]);
    expect(readFileSync(fileTarget!, 'utf8')).toBe('10.0.0.1 example\n');
    expect(() => writeFileSync(fileTarget!, 'x')).toThrow(/EROFS/);
    writeFileSync(path.join(dirTarget!, 'from-share'), 'hi');
    expect(readFileSync(path.join(hostDir, 'from-share'), 'utf8')).toBe('hi');

    releaseContainerShare(dir, 'c1');
    expect(mountPointsUnder(dir)).toEqual([]);
    expect(existsSync(containerShare(dir, 'c1'))).toBe(false);
    // The host's files are untouched by the release.
    expect(readFileSync(hostFile, 'utf8')).toBe('10.0.0.1 example\n');
    expect(readFileSync(path.join(hostDir, 'from-share'), 'utf8')).toBe('hi');
  });

  it('releaseMounts also unmounts what was never recorded before it removes the share', () => {
    const dir = path.join(work, 'sandbox2');
    const hostDir = path.join(work, 'data2');
    mkdirSync(hostDir);
    writeFileSync(path.join(hostDir, 'keep'), 'keep');
    const { binds } = planHostBinds(spec([{ destination: '/d', type: 'bind', source: hostDir }]), 'c2', '/bundle');
    mountHostBinds(dir, 'c2', binds, () => undefined);
    expect(mountPointsUnder(dir)).toHaveLength(1);
    releaseShare(dir, []);
    expect(mountPointsUnder(dir)).toEqual([]);
    expect(existsSync(sharedDir(dir))).toBe(false);
    expect(readFileSync(path.join(hostDir, 'keep'), 'utf8')).toBe('keep');
  });

  it('refuses a source inside the sandbox directory before recording or mounting anything', () => {
    const dir = path.join(work, 'sandbox3');
    mkdirSync(dir);
    const { binds } = planHostBinds(spec([{ destination: '/d', type: 'bind', source: dir }]), 'c3', '/bundle');
    const recorded: string[] = [];
    expect(() => mountHostBinds(dir, 'c3', binds, (t) => recorded.push(...t))).toThrow(/mounts\[0\]: bind source .* is inside the sandbox directory/);
    expect(recorded).toEqual([]);
    expect(mountPointsUnder(dir)).toEqual([]);
  });
});
