// The container's network namespace reaches the VM (issue 8): a pod namespace made here, with a veth to a peer
// namespace on subnets this test owns (10.231.77.0/24, fd00:231:77::/64; nothing leaves the machine). One microVM:
// a busybox httpd in the container, served to the peer at the pod's address (IPv4 and IPv6); the container fetches
// from the peer's server; the guest NIC has the pod interface's addresses, MAC and MTU; a net.* sysctl applies in the
// VM's network; the process that stands for the container lives in the pod's namespace. After delete the namespace
// holds exactly what it held before (an "engine" ingress qdisc and filter placed before create stay), and nothing
// of hull's is left.
import { readFileSync, readlinkSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectNoLeaksThenRemove, hull, hullDetached, makeBundle, tempDir } from '../helpers/hull.js';
import { fetchIn, namespaceSnapshot, podWithPeer, sh, type PodWithPeer } from '../helpers/netns.js';
import { needRoot, prerequisitesMet } from '../helpers/prerequisites.js';

const work = tempDir('hull-net-');
const root = path.join(work, 'root');
const suffix = String(process.pid);
const POD_MAC = '0a:58:0a:e7:4d:02';
const token = `pod-page-${Date.now()}`;
const peerToken = `peer-page-${Date.now()}`;
let net: PodWithPeer | undefined;
let before: ReturnType<typeof namespaceSnapshot>;

const ready = prerequisitesMet('network', [needRoot(), !hasTool('tc') && 'tc (apt-get install iproute2)', !hasTool('nsenter') && 'nsenter (apt-get install util-linux)']);

function hasTool(name: string): boolean {
  try {
    sh('sh', ['-c', `command -v ${name}`]);
    return true;
  } catch {
    return false;
  }
}

beforeAll(() => {
  if (!ready) return;
  net = podWithPeer({
    suffix, podMac: POD_MAC, mtu: 1400,
    pod4: '10.231.77.2', peer4: '10.231.77.1', prefix4: 24,
    pod6: 'fd00:231:77::2', peer6: 'fd00:231:77::1', prefix6: 64,
    peerWww: path.join(work, 'peer-www'), peerPage: peerToken,
  });
  // What an engine may have put there itself: an ingress qdisc with a filter of its own. Both must survive hull.
  sh('tc', ['-n', net.pod, 'qdisc', 'add', 'dev', 'eth0', 'ingress']);
  sh('tc', ['-n', net.pod, 'filter', 'add', 'dev', 'eth0', 'parent', 'ffff:', 'prio', '100', 'protocol', 'ip', 'u32', 'match', 'ip', 'dst', '10.231.77.250/32', 'flowid', 'ffff:1']);
  before = namespaceSnapshot(net.pod);
});

afterAll(async () => {
  await hull(['delete', '--force', 'web'], { root });
  net?.remove();
  expectNoLeaksThenRemove(root, work, (a, e) => expect(a).toEqual(e));
});

describe.runIf(ready)('pod network', () => {
  const pidFile = path.join(work, 'web.pid');
  const stdio = { stdout: path.join(work, 'web.out'), stderr: path.join(work, 'web.err') };

  it('create + start: the container serves on the pod address, reached from the peer over IPv4 and IPv6', async () => {
    const bundle = makeBundle(path.join(work, 'web'), ['sh', '-c', `mkdir -p /www && echo ${token} > /www/index.html && exec httpd -f -p 8080 -h /www`], (spec) => {
      spec.linux.namespaces = spec.linux.namespaces.map((n: { type: string }) => (n.type === 'network' ? { type: 'network', path: net!.podPath } : n));
      spec.linux.sysctl = { 'net.ipv4.ip_unprivileged_port_start': '500' };
    });
    const created = await hullDetached(['create', '--bundle', bundle, '--pid-file', pidFile, 'web'], { root, ...stdio });
    expect([created.code, created.stderr]).toEqual([0, '']);
    expect(await hull(['start', 'web'], { root })).toMatchObject({ code: 0, stderr: '' });
    expect((await fetchIn(net!.peer, 'http://10.231.77.2:8080/index.html')).trim()).toBe(token);
    expect((await fetchIn(net!.peer, 'http://[fd00:231:77::2]:8080/index.html')).trim()).toBe(token);
  });

  it('the guest NIC has the pod interface’s name, addresses, MAC and MTU; the container sees only lo and eth0', async () => {
    const r = await hull(['exec', 'web', 'ip', 'addr'], { root });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\d+: eth0: <[^>]*UP[^>]*> mtu 1400 /m);
    expect(r.stdout).toContain(`link/ether ${POD_MAC}`);
    expect(r.stdout).toContain('inet 10.231.77.2/24');
    expect(r.stdout).toContain('inet6 fd00:231:77::2/64');
    const links = r.stdout.split('\n').filter((l) => /^\d+: /.test(l)).map((l) => l.split(':')[1]!.trim());
    expect(links).toEqual(['lo', 'eth0']);
  });

  it('the container fetches a page from a server in the peer namespace (IPv4 and IPv6, through the default routes)', async () => {
    for (const url of ['http://10.231.77.1:8080/index.html', 'http://[fd00:231:77::1]:8080/index.html']) {
      const r = await hull(['exec', 'web', 'timeout', '10', 'wget', '-q', '-O', '-', url], { root });
      expect([r.code, r.stdout.trim()]).toEqual([0, peerToken]);
    }
    const routes = await hull(['exec', 'web', 'ip', 'route'], { root });
    expect(routes.stdout).toMatch(/^default via 10\.231\.77\.1 dev eth0/m);
  });

  it('a net.* sysctl of the spec applies in the VM’s network', async () => {
    const r = await hull(['exec', 'web', 'cat', '/proc/sys/net/ipv4/ip_unprivileged_port_start'], { root });
    expect([r.code, r.stdout.trim()]).toEqual([0, '500']);
  });

  it('the process that stands for the container lives in the pod’s network namespace; hull’s tap is there', () => {
    const pid = Number(readFileSync(pidFile, 'utf8'));
    expect(statSync(`/proc/${pid}/ns/net`).ino).toBe(statSync(net!.podPath).ino);
    expect(readlinkSync(`/proc/${pid}/ns/net`)).not.toBe(readlinkSync('/proc/self/ns/net'));
    const now = namespaceSnapshot(net!.pod);
    expect(now.links.filter((l) => l.startsWith('hulltap0 tun '))).toHaveLength(1);
    expect(now.filters.some((f) => f.startsWith('eth0: ') && f.includes('pref 49913'))).toBe(true);
    // The tap is a wire, not a host of the pod network: no address of its own, not even IPv6 link-local.
    expect(sh('ip', ['-n', net!.pod, 'addr', 'show', 'dev', 'hulltap0'])).not.toMatch(/inet6? /);
  });

  it('after delete the namespace holds exactly what it held before, the engine’s own qdisc and filter included', async () => {
    expect(await hull(['delete', '--force', 'web'], { root })).toMatchObject({ code: 0, stderr: '' });
    expect(namespaceSnapshot(net!.pod)).toEqual(before);
    expect(before.filters.some((f) => f.includes('pref 100'))).toBe(true);
  });
});
