// Unit tests of the pod network, both sides, without a VM: the plan made from real `ip -json` output of a namespace
// (fixtures/netns-view.json, captured from a namespace with veths, a bridge and down devices), the spec shapes, the
// guest's checks of SetupNetwork, and the commands the guest runs (a recording runner and a fake /sys/class/net).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { checkNetworkRequest } from '../../agent/network-check.js';
import { GuestNetwork, helperScript, networkSteps, renderScript, routeArgv } from '../../agent/network.js';
import type { SetupNetworkRequest } from '../../protocol/agent-types.js';
import type { NamespaceView } from '../../shim/sandbox/network/inspect.js';
import { MAX_NICS, planNetwork } from '../../shim/sandbox/network/plan.js';
import { HOST_NETWORK_REFUSAL, requireNetns, specNetwork } from '../../shim/sandbox/network/spec-netns.js';

const view = JSON.parse(readFileSync(path.join(__dirname, 'fixtures', 'netns-view.json'), 'utf8')) as NamespaceView;
const log = pino({ level: 'silent' });
const tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-net-unit-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('planNetwork', () => {
  const plan = planNetwork(view);

  it('mirrors the Ethernet devices that are up, each through a tap of its own, with their MAC and MTU', () => {
    expect(plan.nics).toEqual([
      { device: 'p0', tap: 'hulltap0', mac: expect.stringMatching(/^[0-9a-f:]{17}$/), mtu: 1500 },
      { device: 'eth0', tap: 'hulltap1', mac: '0a:58:0a:63:4d:05', mtu: 1450 },
    ]);
  });

  it('skips, with a reason, a bridge and devices that are down; loopback silently', () => {
    expect(plan.skipped).toEqual([
      { device: 'br0', why: 'a bridge device is not mirrored into the VM' },
      { device: 'p2', why: 'down' },
      { device: 'eth2', why: 'down' },
    ]);
  });

  it('gives the guest global addresses of both families, not link-local ones', () => {
    const eth0 = plan.guest.interfaces.find((i) => i.name === 'eth0');
    expect(eth0).toEqual({
      name: 'eth0',
      mac: '0a:58:0a:63:4d:05',
      mtu: 1450,
      addresses: [
        { family: 4, address: '10.99.77.5', prefixLength: 24 },
        { family: 6, address: 'fd99:77::5', prefixLength: 64 },
      ],
    });
  });

  it('copies routes of mirrored devices, on-link first, leaving out what the guest kernel makes itself', () => {
    expect(plan.guest.routes).toEqual([
      { family: 4, destination: '192.0.2.0/24', gateway: '', device: 'eth0', scope: 'link', metric: 7, source: '' },
      { family: 4, destination: 'default', gateway: '10.99.77.1', device: 'eth0', scope: '', metric: 0, source: '' },
      { family: 6, destination: 'default', gateway: 'fd99:77::1', device: 'eth0', scope: '', metric: 1024, source: '' },
    ]);
  });

  it('copies permanent neighbours of both families', () => {
    expect(plan.guest.neighbors).toEqual([
      { family: 4, address: '10.99.77.9', mac: '02:00:00:00:00:09', device: 'eth0' },
      { family: 6, address: 'fd99:77::9', mac: '02:00:00:00:00:0a', device: 'eth0' },
    ]);
  });

  it('refuses more interfaces than a microVM has slots for, naming them', () => {
    const eth = view.links.find((l) => l.ifname === 'eth0')!;
    const many = { ...view, links: Array.from({ length: MAX_NICS + 1 }, (_, i) => ({ ...eth, ifname: `e${i}`, address: `02:00:00:00:00:1${i}` })) };
    expect(() => planNetwork(many)).toThrow(/has 5 interfaces to give the VM \(e0, e1, e2, e3, e4\); a microVM takes at most 4/);
  });

  it('an empty namespace (loopback only) gives the VM no NIC', () => {
    const lo = { ...view, links: view.links.filter((l) => l.ifname === 'lo') };
    expect(planNetwork(lo)).toEqual({ nics: [], guest: { interfaces: [], routes: [], neighbors: [] }, skipped: [] });
  });
});

describe('specNetwork', () => {
  it('tells a path, a new namespace and the host network apart, and refuses the host network in one line', () => {
    expect(specNetwork({ linux: { namespaces: [{ type: 'network', path: '/run/netns/x' }] } })).toEqual({ kind: 'path', path: '/run/netns/x' });
    expect(specNetwork({ linux: { namespaces: [{ type: 'pid' }, { type: 'network' }] } })).toEqual({ kind: 'new' });
    expect(() => specNetwork({ linux: { namespaces: [{ type: 'pid' }] } })).toThrow(HOST_NETWORK_REFUSAL);
    expect(() => specNetwork({})).toThrow(/cannot join the host network/);
    expect(() => specNetwork({ linux: { namespaces: [{ type: 'network', path: 'relative' }] } })).toThrow(/not an absolute path/);
  });

  it('requireNetns names a missing path and a file that is no network namespace', () => {
    expect(() => requireNetns('/nonexistent/netns')).toThrow('network namespace /nonexistent/netns does not exist');
    expect(() => requireNetns('/proc/self/ns/pid')).toThrow('/proc/self/ns/pid is not a network namespace');
    const file = path.join(tmp, 'plain');
    writeFileSync(file, '');
    expect(() => requireNetns(file)).toThrow(`${file} is not a network namespace`);
    // The host's own namespace by path (Docker's --network host names <exec-root>/netns/default): never mirrored.
    expect(() => requireNetns('/proc/self/ns/net')).toThrow(/^network namespace \/proc\/self\/ns\/net is the host's \(e\.g\. --network host\): a container in a VM cannot join the host network/);
  });
});

const good: SetupNetworkRequest = {
  interfaces: [{ name: 'eth0', mac: '0a:58:0a:63:4d:05', mtu: 1450, addresses: [{ family: 4, address: '10.99.77.5', prefixLength: 24 }, { family: 6, address: 'fd99:77::5', prefixLength: 64 }] }],
  routes: [
    { family: 4, destination: 'default', gateway: '10.99.77.1', device: 'eth0', scope: '', metric: 0, source: '' },
    { family: 6, destination: 'fd00:1::/64', gateway: '', device: 'eth0', scope: 'link', metric: 5, source: 'fd99:77::5' },
  ],
  neighbors: [{ family: 4, address: '10.99.77.9', mac: '02:00:00:00:00:09', device: 'eth0' }],
};

describe('checkNetworkRequest (guest side: the host is not trusted blindly)', () => {
  const withIface = (patch: object): SetupNetworkRequest => ({ ...good, interfaces: [{ ...good.interfaces[0]!, ...patch }] });

  it('accepts a well-formed request unchanged', () => {
    expect(checkNetworkRequest(good)).toEqual(good);
  });

  it.each([
    [withIface({ name: 'lo' }), /interfaces\[0\]: "lo" is not a usable interface name/],
    [withIface({ name: 'a/b' }), /not a usable interface name/],
    [withIface({ name: 'x'.repeat(16) }), /not a usable interface name/],
    [withIface({ mac: '0A:58:0A:63:4D' }), /MAC/],
    [withIface({ mtu: 67 }), /MTU 67/],
    [withIface({ addresses: [{ family: 4, address: 'fd99::1', prefixLength: 24 }] }), /is not an IPv4 address/],
    [withIface({ addresses: [{ family: 6, address: 'fd99::1', prefixLength: 129 }] }), /prefix length 129/],
    [withIface({ addresses: [{ family: 5, address: '1.2.3.4', prefixLength: 8 }] }), /family 5/],
    [{ ...good, routes: [{ ...good.routes[0]!, device: 'eth9' }] }, /device "eth9" is not one of the interfaces/],
    [{ ...good, routes: [{ ...good.routes[0]!, destination: '10.0.0.0' }] }, /destination/],
    [{ ...good, routes: [{ ...good.routes[0]!, gateway: 'fd99::1' }] }, /not an IPv4 address/],
    [{ ...good, routes: [{ ...good.routes[0]!, scope: 'host' }] }, /scope/],
    [{ ...good, neighbors: [{ ...good.neighbors[0]!, mac: 'zz' }] }, /MAC/],
    [{ ...good, interfaces: [good.interfaces[0]!, { ...good.interfaces[0]!, mac: '02:00:00:00:00:01' }] }, /same name/],
    [{ ...good, routes: Array.from({ length: 257 }, () => good.routes[0]!) }, /more than 256 routes/],
    [withIface({ guestMac: '02:00:00:00:00' }), /interfaces\[0\]: guest MAC "02:00:00:00:00"/],
    [
      { ...good, interfaces: [{ ...good.interfaces[0]!, guestMac: '02:aa:00:00:00:01' }, { ...good.interfaces[0]!, name: 'eth1', mac: '02:00:00:00:00:01', guestMac: '02:aa:00:00:00:01' }] },
      /two interfaces name the same guest NIC/,
    ],
  ])('refuses %#', (req, message) => {
    expect(() => checkNetworkRequest(req)).toThrow(message);
  });
});

describe('GuestNetwork', () => {
  function fakeSysClassNet(nics: Record<string, string>): string {
    const root = mkdtempSync(path.join(tmp, 'sys-'));
    for (const [name, mac] of Object.entries(nics)) {
      mkdirSync(path.join(root, name), { recursive: true });
      writeFileSync(path.join(root, name, 'address'), `${mac}\n`);
      writeFileSync(path.join(root, name, 'mtu'), '1500\n');
    }
    return root;
  }

  it('finds the NIC by MAC, renames it through a temporary name, then sets MTU, addresses, routes and neighbours', () => {
    // The kernel named the pod's NIC eth1 (another NIC took eth0): it must still end up as eth0.
    const steps = networkSteps(checkNetworkRequest(good), new Map([['0a:58:0a:63:4d:05', { name: 'eth1', mtu: 1500 }]]));
    expect(steps.map((s) => ('argv' in s ? s.argv.join(' ') : `${s.write} = ${s.value}`))).toEqual([
      'ip link set dev eth1 down',
      'ip link set dev eth1 name hullnic0',
      'ip link set dev hullnic0 name eth0',
      // IPv6 addresses are usable at once: the pod interface did duplicate address detection for them.
      '/proc/sys/net/ipv6/conf/eth0/accept_dad = 0',
      'ip link set dev eth0 mtu 1450 up',
      'ip addr add 10.99.77.5/24 dev eth0',
      'ip addr add fd99:77::5/64 dev eth0',
      'ip -f inet route add default via 10.99.77.1 dev eth0',
      'ip -f inet6 route add fd00:1::/64 dev eth0 scope link src fd99:77::5 metric 5',
      'arp -i eth0 -s 10.99.77.9 02:00:00:00:00:09',
    ]);
  });

  it("gives a pooled VM's NIC, found by the pool's MAC, the pod interface's MAC first", () => {
    const req = checkNetworkRequest({ ...good, interfaces: [{ ...good.interfaces[0]!, guestMac: '02:5e:11:22:33:44' }], routes: [], neighbors: [] });
    const steps = networkSteps(req, new Map([['02:5e:11:22:33:44', { name: 'eth0', mtu: 1500 }]]));
    expect(steps.filter((s) => 'argv' in s && s.argv[1] === 'link').map((s) => ('argv' in s ? s.argv.join(' ') : ''))).toEqual([
      'ip link set dev eth0 address 0a:58:0a:63:4d:05',
      'ip link set dev eth0 mtu 1450 up',
    ]);
    // A guest MAC equal to the interface's is no change at all.
    const same = checkNetworkRequest({ ...good, interfaces: [{ ...good.interfaces[0]!, guestMac: '0a:58:0a:63:4d:05' }] });
    expect(same.interfaces[0]).toEqual(good.interfaces[0]);
  });

  it('changes only what differs: a NIC already named and sized as its pod interface is just brought up', () => {
    const steps = networkSteps(checkNetworkRequest({ ...good, routes: [], neighbors: [] }), new Map([['0a:58:0a:63:4d:05', { name: 'eth0', mtu: 1450 }]]));
    expect(steps.filter((s) => 'argv' in s && s.argv[1] === 'link').map((s) => ('argv' in s ? s.argv.join(' ') : ''))).toEqual(['ip link set dev eth0 up']);
  });

  it('runs every step in one busybox sh script that quotes each word and stops at the first failure, naming it', () => {
    const bin = mkdtempSync(path.join(tmp, 'bin-'));
    const log = path.join(bin, 'log');
    // Fake tools (names busybox sh has no applet for): one logs its argv a word a line, one fails.
    writeFileSync(path.join(bin, 'fake-ip'), `#!/bin/sh\nfor a in "$@"; do echo "$a"; done >> ${log}\n`, { mode: 0o755 });
    writeFileSync(path.join(bin, 'fake-arp'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    const target = path.join(bin, 'sysctl-file');
    const script = renderScript([
      { argv: ['fake-ip', 'addr', 'add', "it's; $(touch pwned)"] },
      { write: target, value: '0' },
      { argv: ['fake-arp', '-s', '1.2.3.4'] },
      { argv: ['fake-ip', 'never'] },
    ]);
    const run = spawnSync('/bin/busybox', ['sh', '-c', script], { cwd: bin, env: { PATH: `${bin}:/bin` }, encoding: 'utf8' });
    expect(run.status).toBe(1);
    expect(run.stderr.trim()).toBe('failed: fake-arp -s 1.2.3.4');
    expect(readFileSync(log, 'utf8')).toBe("addr\nadd\nit's; $(touch pwned)\n");
    expect(readFileSync(target, 'utf8')).toBe('0\n');
    expect(existsSync(path.join(bin, 'pwned'))).toBe(false);
  });

  it('configures once, and says which MAC has no NIC (a guest image without virtio_net) before running anything', async () => {
    const scripts: string[] = [];
    const runScript = async (script: string): Promise<void> => void scripts.push(script);
    const ok = new GuestNetwork({ log, sysClassNet: fakeSysClassNet({ lo: '00:00:00:00:00:00', eth0: '0a:58:0a:63:4d:05' }), runScript });
    await ok.setup(good);
    expect(scripts).toHaveLength(1);
    await expect(ok.setup(good)).rejects.toThrow(/configured already/);
    const none = new GuestNetwork({ log, sysClassNet: fakeSysClassNet({ lo: '00:00:00:00:00:00' }), nicWaitMs: 100, runScript });
    await expect(none.setup(good)).rejects.toThrow(/no guest NIC has MAC 0a:58:0a:63:4d:05 \(is virtio_net in the guest image\?\)/);
    expect(scripts).toHaveLength(1);
  });

  it('returns before the script ends; ready() waits for it and carries its failure', async () => {
    let finish!: (err?: Error) => void;
    const runScript = (): Promise<void> => new Promise((resolve, reject) => (finish = (err) => (err ? reject(err) : resolve())));
    const sys = fakeSysClassNet({ eth0: '0a:58:0a:63:4d:05' });
    const net = new GuestNetwork({ log, sysClassNet: sys, runScript });
    await net.setup(good);
    let ready = false;
    const waiting = net.ready().then(() => (ready = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(ready).toBe(false);
    finish();
    await waiting;
    const failing = new GuestNetwork({ log, sysClassNet: sys, runScript });
    await failing.setup(good);
    finish(new Error('failed: ip addr add 10.99.77.5/24 dev eth0'));
    await expect(failing.ready()).rejects.toThrow('failed: ip addr add 10.99.77.5/24 dev eth0');
    await expect(new GuestNetwork({ log }).ready()).resolves.toBeUndefined();
  });

  it('hands the script to a helper shell waiting on a FIFO (as guest-image/init starts it), and reads its status', async () => {
    for (const [script, expected] of [['echo ran > out', null], ['echo boom >&2; exit 3', /configuring the guest network: boom/]] as const) {
      const dir = mkdtempSync(path.join(tmp, 'helper-'));
      const helper = { script: path.join(dir, 'net.script'), status: path.join(dir, 'net.status'), err: path.join(dir, 'net.err') };
      spawnSync('mkfifo', ['-m', '600', helper.script, helper.status]);
      // The same line as guest-image/init's start_net_helper.
      const shell = spawn('/bin/busybox', ['sh', '-c', `(sh ${helper.script} 2>${helper.err}; echo $? >${helper.status}) &`], { cwd: dir });
      const run = helperScript(script, helper);
      if (expected) await expect(run).rejects.toThrow(expected);
      else {
        await run;
        expect(readFileSync(path.join(dir, 'out'), 'utf8')).toBe('ran\n');
      }
      shell.kill();
    }
  });

  it('routeArgv names the family, so that "default" means the right table', () => {
    expect(routeArgv({ family: 6, destination: 'default', gateway: 'fe80::1', device: 'eth0', scope: '', metric: 0, source: '' })).toEqual([
      'ip', '-f', 'inet6', 'route', 'add', 'default', 'via', 'fe80::1', 'dev', 'eth0',
    ]);
  });
});
