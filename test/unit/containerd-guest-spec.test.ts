// The shim's namespace-path rule (shim/containerd/guest-spec.ts): a path names a namespace in the guest only when it is
// /proc/<pid>/ns/<type> of a live container init of the pod; everything else is dropped with a note.
import { describe, expect, test } from 'vitest';
import { adaptSpecForGuest } from '../../shim/containerd/guest-spec.js';

const spec = (namespaces: object[]): string => JSON.stringify({ ociVersion: '1.0.2', process: { args: ['sh'] }, linux: { namespaces } });
const namespacesOf = (json: string): unknown => (JSON.parse(json) as { linux: { namespaces: unknown } }).linux.namespaces;

describe('adaptSpecForGuest', () => {
  test('a spec without namespace paths is passed on byte-identical, with no notes', () => {
    const plain = '{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid"},{"type":"ipc","path":""}]}}';
    expect(adaptSpecForGuest(plain, new Set([7]))).toEqual({ specJson: plain, notes: [] });
    const noLinux = '{"ociVersion":"1.0.2"}';
    expect(adaptSpecForGuest(noLinux, new Set())).toEqual({ specJson: noLinux, notes: [] });
  });

  test('keeps /proc/<pid>/ns/<type> of a live container init (a CRI app container joining its sandbox)', () => {
    const cri = spec([
      { type: 'pid', path: '/proc/42/ns/pid' },
      { type: 'ipc', path: '/proc/42/ns/ipc' },
      { type: 'uts', path: '/proc/42/ns/uts' },
      { type: 'cgroup', path: '/proc/42/ns/cgroup' },
      { type: 'mount' },
    ]);
    const out = adaptSpecForGuest(cri, new Set([42, 43]));
    expect(out.notes).toEqual([]);
    expect(namespacesOf(out.specJson)).toEqual(namespacesOf(cri));
  });

  test('drops every other path with a note: the container gets a fresh namespace in the guest', () => {
    const cri = spec([
      { type: 'ipc', path: '/proc/99/ns/ipc' }, // not a container of this pod
      { type: 'uts', path: '/proc/42/ns/ipc' }, // the file does not match the type
      { type: 'pid', path: '/proc/42/ns/pid_for_children' },
      { type: 'cgroup', path: '/proc/042/ns/cgroup' },
      { type: 'mount', path: '/proc/42/root/proc/1/ns/mnt' },
      { type: 'user', path: '/run/userns' },
    ]);
    const out = adaptSpecForGuest(cri, new Set([42]));
    expect(namespacesOf(out.specJson)).toEqual([{ type: 'ipc' }, { type: 'uts' }, { type: 'pid' }, { type: 'cgroup' }, { type: 'mount' }, { type: 'user' }]);
    expect(out.notes).toHaveLength(6);
    expect(out.notes[0]).toBe(
      'linux.namespaces[0] (ipc): path /proc/99/ns/ipc is not a namespace of a live container of this pod: dropped, the container gets a new ipc namespace in the guest',
    );
    for (const n of out.notes) expect(n).not.toContain('\n');
  });

  test('the network path is always dropped: the pod shares the guest network, and the note says so', () => {
    const sandbox = spec([{ type: 'network', path: '/var/run/netns/cni-1234' }, { type: 'ipc' }]);
    const out = adaptSpecForGuest(sandbox, new Set());
    expect(namespacesOf(out.specJson)).toEqual([{ type: 'network' }, { type: 'ipc' }]);
    expect(out.notes).toEqual([expect.stringMatching(/^linux\.namespaces\[0\] \(network\): path \/var\/run\/netns\/cni-1234 dropped: .*share the guest's network/)]);
    // Even a container's own guest netns path: the agent does not create or join network namespaces yet.
    expect(namespacesOf(adaptSpecForGuest(spec([{ type: 'network', path: '/proc/42/ns/net' }]), new Set([42])).specJson)).toEqual([{ type: 'network' }]);
  });

  test('keeps the rest of the spec and the other fields of an entry', () => {
    const cri = JSON.stringify({ ociVersion: '1.0.2', hostname: 'h', linux: { namespaces: [{ type: 'ipc', path: '/x', extra: 1 }], sysctl: { a: 'b' } } });
    const out = JSON.parse(adaptSpecForGuest(cri, new Set()).specJson) as Record<string, unknown>;
    expect(out).toEqual({ ociVersion: '1.0.2', hostname: 'h', linux: { namespaces: [{ type: 'ipc', extra: 1 }], sysctl: { a: 'b' } } });
  });
});
