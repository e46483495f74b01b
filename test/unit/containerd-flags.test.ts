// The containerd shim's command line (Go flag syntax), socket addressing and rootfs mount arguments.
import { describe, expect, test } from 'vitest';
import { groupIdFrom, sandboxDirFor, socketAddress, socketPath } from '../../shim/containerd/address.js';
import { daemonArgs, FlagError, parseShimFlags } from '../../shim/containerd/flags.js';
import { mountArgs } from '../../shim/containerd/rootfs-mount.js';

describe('parseShimFlags', () => {
  test('the start command line containerd 1.6 writes', () => {
    const f = parseShimFlags([
      '-namespace', 'k8s.io', '-address', '/run/containerd/containerd.sock',
      '-publish-binary', '/usr/bin/containerd', '-id', 'abc', '-debug', 'start',
    ]);
    expect(f).toMatchObject({
      namespace: 'k8s.io',
      address: '/run/containerd/containerd.sock',
      publishBinary: '/usr/bin/containerd',
      id: 'abc',
      debug: true,
      action: 'start',
      bundle: '',
    });
  });

  test('delete with -bundle, -flag=value and double dashes', () => {
    const f = parseShimFlags(['--namespace=ns', '-address=/a.sock', '-id', 'x', '-bundle', '/b', '-debug=false', 'delete', 'extra']);
    expect(f).toMatchObject({ namespace: 'ns', address: '/a.sock', id: 'x', bundle: '/b', debug: false, action: 'delete', rest: ['extra'] });
  });

  test('no action means the daemon; -v asks for the version', () => {
    expect(parseShimFlags(['-namespace', 'n', '-id', 'i']).action).toBe('');
    expect(parseShimFlags(['-v']).version).toBe(true);
    expect(parseShimFlags(['-namespace', 'n', '--', '-notaflag']).action).toBe('-notaflag');
  });

  test('errors like Go flag', () => {
    expect(() => parseShimFlags(['-bogus'])).toThrow(FlagError);
    expect(() => parseShimFlags(['-bogus'])).toThrow('flag provided but not defined: -bogus');
    expect(() => parseShimFlags(['-id'])).toThrow('flag needs an argument: -id');
    expect(() => parseShimFlags(['-debug=maybe'])).toThrow('invalid boolean value');
  });

  test('daemonArgs round-trips without the action', () => {
    const f = parseShimFlags(['-namespace', 'n', '-address', '/a', '-publish-binary', '/c', '-id', 'i', '-debug', 'start']);
    const again = parseShimFlags(daemonArgs({ ...f, bundle: '/b' }));
    expect(again).toMatchObject({ namespace: 'n', address: '/a', publishBinary: '/c', id: 'i', bundle: '/b', debug: true, action: '' });
  });
});

describe('addresses', () => {
  test('socket address is the sha256 of address/namespace/group under /run/containerd/s', () => {
    const a = socketAddress('/run/containerd/containerd.sock', 'default', 'c1');
    expect(a).toMatch(/^unix:\/\/\/run\/containerd\/s\/[0-9a-f]{64}$/);
    expect(socketPath(a).length).toBeLessThanOrEqual(106);
    expect(socketAddress('/run/containerd/containerd.sock/', 'default', 'c1')).toBe(a); // cleaned like filepath.Join
    expect(socketAddress('/run/containerd/containerd.sock', 'other', 'c1')).not.toBe(a);
    expect(socketAddress('/x.sock', 'default', 'c1')).not.toBe(a);
  });

  test('known digest', async () => {
    const { createHash } = await import('node:crypto');
    const want = createHash('sha256').update('/run/containerd/containerd.sock/default/c1').digest('hex');
    expect(socketAddress('/run/containerd/containerd.sock', 'default', 'c1')).toBe(`unix:///run/containerd/s/${want}`);
  });

  test('a socket directory that makes the path too long is refused', () => {
    expect(() => socketAddress('/a', 'n', 'g', '/' + 'd'.repeat(60))).toThrow(/longer than 106 bytes/);
  });

  test('grouping id: CRI sandbox id, else the container id', () => {
    expect(groupIdFrom({ 'io.kubernetes.cri.sandbox-id': 'pod1' }, 'c1')).toBe('pod1');
    expect(groupIdFrom({}, 'c1')).toBe('c1');
    expect(groupIdFrom(undefined, 'c1')).toBe('c1');
  });

  test('pod directories are short and distinct per namespace', () => {
    const a = sandboxDirFor('/run/hull/containerd', 'k8s.io', 'f'.repeat(64));
    expect(a.length).toBeLessThan(50);
    expect(sandboxDirFor('/run/hull/containerd', 'default', 'f'.repeat(64))).not.toBe(a);
  });
});

describe('mountArgs', () => {
  test('overlay from the snapshotter', () => {
    expect(
      mountArgs({ type: 'overlay', source: 'overlay', target: '', options: ['index=off', 'workdir=/w', 'upperdir=/u', 'lowerdir=/l'] }, '/b/rootfs'),
    ).toEqual(['-t', 'overlay', '-o', 'index=off,workdir=/w,upperdir=/u,lowerdir=/l', 'overlay', '/b/rootfs']);
  });
  test('bind mounts', () => {
    expect(mountArgs({ type: 'bind', source: '/s', target: '', options: ['rbind', 'ro'] }, '/t')).toEqual(['--rbind', '-o', 'ro', '/s', '/t']);
    expect(mountArgs({ type: 'none', source: '/s', target: '', options: ['bind'] }, '/t')).toEqual(['--bind', '/s', '/t']);
  });
});
