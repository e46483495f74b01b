// podman 4.3 (Debian's) with hull as its OCI runtime, as a user runs it: `podman --runtime <repo>/bin/hull run …`
// without a network (the guest's kernel answers, the exit code comes back), hull found by name through a
// containers.conf.d drop-in, then issue 8's case: a busybox httpd published with `-p 127.0.0.1:PORT:8080` on podman's
// (test-owned) CNI bridge network and fetched from the host, `ip addr` in the guest showing the CNI address, MAC and
// MTU, `podman stop`/`rm` leaving nothing behind, and `--network host` refused. podman is isolated from the host's
// defaults and its network is a bridge on a /24 of our own without gateway or masquerading (test/helpers/podman.ts).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { fetchWithRetries, httpGet, netnsReport } from '../helpers/engine-net.js';
import { processesMentioning, repo } from '../helpers/hull.js';
import { freePort, NETWORK, NETWORK_MTU, podmanPrerequisites, PodmanWorld, randomToken } from '../helpers/podman.js';
import { prerequisitesMet } from '../helpers/prerequisites.js';

const IMAGE = 'localhost/hull-busybox:test';
const DROP_IN = '/etc/containers/containers.conf.d/hull.conf';
const TOKEN = randomToken();

let world: PodmanWorld;

const guestKernel = (): string =>
  (JSON.parse(readFileSync(path.join(repo, 'build', 'guest', 'current', 'manifest.json'), 'utf8')) as { kernelRelease: string }).kernelRelease;

/** One interface's facts from (busybox or iproute2) `ip addr` output: the one that holds `address`. */
function interfaceWith(ipAddr: string, address: string): { name: string; mtu: number; mac: string; cidr: string } | undefined {
  for (const block of ipAddr.split(/\n(?=\d+: )/)) {
    const head = /^\d+: ([^:@]+)[^\n]*\bmtu (\d+)/.exec(block);
    const mac = /link\/ether ([0-9a-f:]{17})/.exec(block);
    const inet = new RegExp(`inet (${address.replace(/\./g, '\\.')}/\\d+)`).exec(block);
    if (head && mac && inet) return { name: head[1]!, mtu: Number(head[2]), mac: mac[1]!, cidr: inet[1]! };
  }
  return undefined;
}

describe.runIf(prerequisitesMet('podman tests', podmanPrerequisites()))('podman 4.3 with hull as its runtime', () => {
  beforeAll(async () => {
    world = PodmanWorld.create();
    await world.importBusybox(IMAGE, { 'www/index.html': `hull-podman ${TOKEN}\n` });
  });

  afterAll(async () => {
    await world?.destroy();
  });

  test('run --rm --network none: the guest kernel answers, loopback only, and the exit code comes back', async () => {
    const r = await world.podman(['run', '--rm', '--pull', 'never', '--network', 'none', IMAGE, 'sh', '-c', 'uname -r; ls /sys/class/net; exit 7']);
    expect(r.stdout.trim().split(/\s+/), `${r.stderr}\nhull log:\n${world.hullLogTail()}`).toEqual([guestKernel(), 'lo']);
    expect(r.code).toBe(7);
    expect(world.hostNetChanges()).toEqual([]);
  });

  test('a containers.conf.d drop-in lets `podman --runtime hull` find hull by name', async () => {
    expect(existsSync(DROP_IN), `${DROP_IN} is missing: scripts/setup.sh installs it`).toBe(true);
    // CONTAINERS_CONF switches drop-ins off, so this call passes its isolation as flags instead
    const r = await world.podman(['run', '--rm', '--pull', 'never', '--network', 'none', IMAGE, 'uname', '-r'], { runtime: 'hull', systemConf: true });
    expect(r.stderr).not.toMatch(/not found/);
    expect(r.stdout.trim(), r.stderr).toBe(guestKernel());
    expect(r.code).toBe(0);
  });

  describe(`run -d -p on podman's network (${NETWORK}, a bridge of our own)`, () => {
    let port: number;
    let id = '';
    let netns = '';

    test('httpd in the guest serves a page to the host through -p 127.0.0.1:PORT:8080', async () => {
      port = await freePort();
      const started = Date.now();
      const run = await world.podman([
        'run', '-d', '--pull', 'never', '--name', 'web', '-p', `127.0.0.1:${port}:8080`, IMAGE, 'httpd', '-f', '-p', '8080', '-h', '/www',
      ]);
      expect(run.code, `${run.stderr}\nhull log:\n${world.hullLogTail()}`).toBe(0);
      id = run.stdout.trim();
      expect(id).toMatch(/^[0-9a-f]{64}$/);
      netns = (await world.podmanOk(['inspect', '--format', '{{.NetworkSettings.SandboxKey}}', id])).trim();
      expect(netns).toMatch(/^\/run\/netns\/netns-/);
      let page: { status: number; body: string };
      try {
        page = await fetchWithRetries(`http://127.0.0.1:${port}/index.html`, 20);
      } catch (err) {
        throw new Error(`${String(err)}\n${netnsReport(netns)}\nhull log:\n${world.hullLogTail()}`);
      }
      console.log(`podman run -d (hull create + start) ${run.ms} ms; page fetched ${Date.now() - started - run.ms} ms later`);
      expect(page.status).toBe(200);
      expect(page.body).toBe(`hull-podman ${TOKEN}\n`);
    });

    test('podman exec: ip addr in the guest shows the CNI address, MAC and MTU that podman inspect reports', async () => {
      expect(id, 'the container of the previous case is running').not.toBe('');
      const inspect = JSON.parse(await world.podmanOk(['inspect', id])) as Array<{
        NetworkSettings: { Networks: Record<string, { IPAddress: string; IPPrefixLen: number; MacAddress: string }> };
      }>;
      const cni = inspect[0]!.NetworkSettings.Networks[NETWORK]!;
      expect(cni.IPAddress.startsWith(`${world.subnetPrefix}.`)).toBe(true);
      const guest = await world.podman(['exec', id, 'ip', 'addr']);
      expect(guest.code, guest.stderr).toBe(0);
      const nic = interfaceWith(guest.stdout, cni.IPAddress);
      expect(nic, `guest ip addr:\n${guest.stdout}\nnetns:\n${netnsReport(netns)}`).toEqual({
        name: 'eth0',
        mtu: NETWORK_MTU,
        mac: cni.MacAddress,
        cidr: `${cni.IPAddress}/${cni.IPPrefixLen}`,
      });
    });

    test('podman stop and rm leave nothing: processes, hull state, netns, IPAM lease, iptables, ip_forward', async () => {
      expect(id, 'the container of the first case was created').not.toBe('');
      const stop = await world.podman(['stop', '--time', '2', id]);
      expect(stop.code, stop.stderr).toBe(0);
      const rm = await world.podman(['rm', id]);
      expect(rm.code, rm.stderr).toBe(0);
      expect(world.containerLeftovers(id, netns)).toEqual([]);
      expect(world.hostNetChanges()).toEqual([]);
      await expect(httpGet(`http://127.0.0.1:${port}/`)).rejects.toThrow();
    });
  });

  test('--network host is refused by hull with one line that names the host network', async () => {
    const r = await world.podman(['run', '--rm', '--pull', 'never', '--name', 'nethost', '--network', 'host', IMAGE, 'true']);
    expect(r.code, `podman ran a --network host container on hull:\n${r.stdout}${r.stderr}`).not.toBe(0);
    const hullLines = r.stderr.split('\n').filter((l) => /host('s)? network/i.test(l));
    expect(hullLines.length, r.stderr).toBeGreaterThanOrEqual(1);
    const leftover = (await world.podmanOk(['ps', '--all', '--quiet', '--filter', 'name=^nethost$'])).trim();
    expect(leftover).toBe(''); // --rm removed what podman made of it
    expect(processesMentioning(world.dir)).toEqual([]); // no conmon (nor anything else) of ours left running
  });

  test('teardown leaves iptables, ip_forward, links and /run/netns as they were', async () => {
    await world.destroy();
    expect(world.hostNetChanges()).toEqual([]);
  });
});
