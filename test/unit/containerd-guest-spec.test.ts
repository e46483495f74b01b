// The shim's namespace-path rule (shim/containerd/guest-spec.ts): a path names a namespace in the guest only when it is
// /proc/<pid>/ns/<type> of the pod's host pid (its VMM's, the task pid the shim reports), and then it is rewritten to
// the guest init of the container that pid stands for; everything else is dropped with a note.
import { describe, expect, test } from 'vitest';
import { adaptSpecForGuest } from '../../shim/containerd/guest-spec.js';

const spec = (namespaces: object[]): string => JSON.stringify({ ociVersion: '1.0.2', process: { args: ['sh'] }, linux: { namespaces } });
/** The pod's VMM is host pid 4242; the container CRI means runs as guest pid 42. */
const target = { hostPid: 4242, guestPid: 42 };
const namespacesOf = (json: string): unknown => (JSON.parse(json) as { linux: { namespaces: unknown } }).linux.namespaces;

describe('adaptSpecForGuest', () => {
  test('a spec without namespace paths is passed on byte-identical, with no notes', () => {
    const plain = '{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid"},{"type":"ipc","path":""}]}}';
    expect(adaptSpecForGuest(plain, target)).toEqual({ specJson: plain, notes: [] });
    const noLinux = '{"ociVersion":"1.0.2"}';
    expect(adaptSpecForGuest(noLinux, undefined)).toEqual({ specJson: noLinux, notes: [] });
  });

  test('maps /proc/<pod host pid>/ns/<type> to the guest init it stands for (a CRI app container joining its sandbox)', () => {
    const cri = spec([
      { type: 'pid', path: '/proc/4242/ns/pid' },
      { type: 'ipc', path: '/proc/4242/ns/ipc' },
      { type: 'uts', path: '/proc/4242/ns/uts' },
      { type: 'cgroup', path: '/proc/4242/ns/cgroup' },
      { type: 'mount' },
    ]);
    const out = adaptSpecForGuest(cri, target);
    expect(out.notes).toEqual([]);
    expect(namespacesOf(out.specJson)).toEqual([
      { type: 'pid', path: '/proc/42/ns/pid' },
      { type: 'ipc', path: '/proc/42/ns/ipc' },
      { type: 'uts', path: '/proc/42/ns/uts' },
      { type: 'cgroup', path: '/proc/42/ns/cgroup' },
      { type: 'mount' },
    ]);
  });

  test('a guest pid in a path is some host process now: dropped, as is every path when the pod has no live container', () => {
    const guestPidPath = spec([{ type: 'pid', path: '/proc/42/ns/pid' }]);
    expect(namespacesOf(adaptSpecForGuest(guestPidPath, target).specJson)).toEqual([{ type: 'pid' }]);
    const hostPidPath = spec([{ type: 'ipc', path: '/proc/4242/ns/ipc' }]);
    const out = adaptSpecForGuest(hostPidPath, undefined);
    expect(namespacesOf(out.specJson)).toEqual([{ type: 'ipc' }]);
    expect(out.notes).toHaveLength(1);
  });

  test('drops every other path with a note: the container gets a fresh namespace in the guest', () => {
    const cri = spec([
      { type: 'ipc', path: '/proc/99/ns/ipc' }, // not this pod's host pid
      { type: 'uts', path: '/proc/4242/ns/ipc' }, // the file does not match the type
      { type: 'pid', path: '/proc/4242/ns/pid_for_children' },
      { type: 'cgroup', path: '/proc/04242/ns/cgroup' },
      { type: 'mount', path: '/proc/4242/root/proc/1/ns/mnt' },
      { type: 'user', path: '/run/userns' },
    ]);
    const out = adaptSpecForGuest(cri, target);
    expect(namespacesOf(out.specJson)).toEqual([{ type: 'ipc' }, { type: 'uts' }, { type: 'pid' }, { type: 'cgroup' }, { type: 'mount' }, { type: 'user' }]);
    expect(out.notes).toHaveLength(6);
    expect(out.notes[0]).toBe(
      'linux.namespaces[0] (ipc): path /proc/99/ns/ipc is not a namespace of a live container of this pod: dropped, the container gets a new ipc namespace in the guest',
    );
    for (const n of out.notes) expect(n).not.toContain('\n');
  });

  test('the network path is always dropped: the pod shares the guest network, and the note says so', () => {
    const sandbox = spec([{ type: 'network', path: '/var/run/netns/cni-1234' }, { type: 'ipc' }]);
    const out = adaptSpecForGuest(sandbox, undefined);
    expect(namespacesOf(out.specJson)).toEqual([{ type: 'network' }, { type: 'ipc' }]);
    expect(out.notes).toEqual([expect.stringMatching(/^linux\.namespaces\[0\] \(network\): path \/var\/run\/netns\/cni-1234 dropped: .*share the guest's network/)]);
    // Even a container's own guest netns path: the agent does not create or join network namespaces yet.
    expect(namespacesOf(adaptSpecForGuest(spec([{ type: 'network', path: '/proc/4242/ns/net' }]), target).specJson)).toEqual([{ type: 'network' }]);
  });

  test('keeps the rest of the spec and the other fields of an entry', () => {
    const cri = JSON.stringify({ ociVersion: '1.0.2', hostname: 'h', linux: { namespaces: [{ type: 'ipc', path: '/x', extra: 1 }], sysctl: { a: 'b' } } });
    const out = JSON.parse(adaptSpecForGuest(cri, undefined).specJson) as Record<string, unknown>;
    expect(out).toEqual({ ociVersion: '1.0.2', hostname: 'h', linux: { namespaces: [{ type: 'ipc', extra: 1 }], sysctl: { a: 'b' } } });
  });
});
