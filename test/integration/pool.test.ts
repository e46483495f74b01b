// The pool of pre-booted VMs (issue 10, docs/pool.md) end to end: real `hull pool serve` processes (their JSON log on
// stderr, to a file), real QEMU, real containers. One shared pool of 2 VMs serves the runc-path cases (hull run,
// create/start/delete) and the containerd shim (ctr run, CRI pods); each case waits for `hull pool status` to show
// the ready VMs it needs, proves that it took one (the claimer's "pooled VM claimed" log line naming a VM that was
// ready before) or booted cold (the "no pooled VM: booting one" line and its reason, the ready VMs left alone), and
// ends with nothing of its sandbox left: no state dir, no process or mount of the claimed VM, no VM or socket
// directory, no claimed VM in the pool. Then pools of their own: SIGTERM drains one to nothing, and after a kill -9
// the next pool on the root removes what the dead one left, but not the VM a container runs in.
// Network traffic goes only to namespaces made here (10.231.79.0/24, fd00:231:79::/64; the CRI pods' CNI networks
// 10.231.80.0/24 and 10.231.81.0/24 carry none). Needs root, the guest image and dist/ (npm run build); the
// containerd and CRI cases need containerd and Debian's CNI plugins.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAlive } from '../../hypervisor/process.js';
import { sandboxDirFor } from '../../shim/containerd/address.js';
import { containerdPrerequisites, have, POD_ROOT, PrivateContainerd, RUNTIME, until } from '../helpers/containerd.js';
import { CriClient, type ContainerConfig, type PodSandboxConfig } from '../helpers/cri-client.js';
import { hull, hullDetached, makeBundle, mountsUnder, processesMentioning, repo, tempDir, type Result } from '../helpers/hull.js';
import { namespaceSnapshot, podWithPeer, type PodWithPeer } from '../helpers/netns.js';
import { needRoot, prerequisitesMet } from '../helpers/prerequisites.js';
import { existingCgroupDirs, outsideOf, removeTestParents, vmProcessTree } from '../helpers/host-cgroups.js';
import { jsonLines, Pool, recordedProcesses, vmLeftovers, vmOnRecord, type PoolVm } from '../helpers/pool.js';
import { parseScrape, sampleValue } from '../helpers/metrics.js';
import type { PoolStatus } from '../../shim/pool/status.js';

const work = tempDir('hull-pool-');
/** The shared pool's root (one directory per root below `work`, so no root's path is a prefix of another's). */
const root = path.join(work, 'shared', 'root');
const CNI_BIN = '/usr/lib/cni';

const ready = prerequisitesMet('pool', [
  needRoot(),
  !existsSync('/bin/busybox') && '/bin/busybox (apt-get install busybox-static)',
  !existsSync(path.join(repo, 'dist', 'hull.mjs')) && 'dist/hull.mjs (npm run build)',
  !existsSync(path.join(repo, 'build', 'guest', 'current', 'manifest.json')) && 'guest image (npm run build)',
  !have('ip') && 'ip (apt-get install iproute2)',
  !have('tc') && 'tc (apt-get install iproute2)',
]);

function poolVmsOnRecord(pool: string): Array<Required<PoolVm>> {
  const vms = path.join(pool, 'vms');
  return (existsSync(vms) ? readdirSync(vms) : []).map((id) => vmOnRecord(pool, id));
}



/** What is left of the containers of `rootDir`: processes naming it (but its pool servers), mounts, state dirs. */
function rootLeftovers(rootDir: string): string[] {
  const servers = new Set([shared?.pid].filter((p): p is number => p !== undefined));
  return [
    ...processesMentioning(rootDir).filter((line) => !servers.has(Number(line.split(':')[0]))),
    ...mountsUnder(rootDir).map((m) => `mount ${m}`),
    ...(existsSync(rootDir) ? readdirSync(rootDir).map((d) => `state dir ${d}`) : []),
  ];
}

/** How a sandbox got its VM, from its log: the pooled VM it claimed, or why it booted its own. */
function howBooted(lines: Array<Record<string, unknown>>): { pooled?: string; cold?: string } {
  const claimed = lines.filter((l) => l.msg === 'pooled VM claimed');
  const missed = lines.filter((l) => l.msg === 'no pooled VM: booting one');
  expect(claimed.length + missed.length, JSON.stringify(lines)).toBe(1);
  return claimed[0] ? { pooled: String(claimed[0].pooledVm) } : { cold: String(missed[0]!.why) };
}

let runs = 0;
/** `hull run` with hull's log (JSON) in a file of its own; returns the result, how it booted, and the time taken. */
async function pooledRun(rootDir: string, bundle: string, id: string): Promise<Result & { boot: { pooled?: string; cold?: string }; ms: number }> {
  const log = path.join(work, `run-${id}-${runs++}.log`);
  const t0 = Date.now();
  const r = await hull(['run', '--bundle', bundle, id], { root: rootDir, globalArgs: ['--log', log, '--log-format', 'json'] });
  const ms = Date.now() - t0;
  return { ...r, boot: howBooted(jsonLines(log)), ms };
}

/** Fails unless nothing of `vms` nor of the containers of the shared root is left, and the pool holds no claimed VM. */
async function expectNothingLeft(vms: PoolVm[]): Promise<void> {
  expect(vms.flatMap(vmLeftovers)).toEqual([]);
  expect(rootLeftovers(root)).toEqual([]);
  const s = await shared!.status();
  expect(s.vms.filter((v) => v.state !== 'ready' && v.state !== 'booting')).toEqual([]);
  expect(s.claimed).toBe(0);
}

let shared: Pool | undefined;

afterAll(async () => {
  const roots = [root, path.join(work, 'term', 'root'), path.join(work, 'kill', 'root'), path.join(work, 'grow', 'root')];
  // A failed case may have left a container: deleted (its VM with it) before the pools stop.
  for (const r of roots) for (const id of existsSync(r) ? readdirSync(r) : []) await hull(['delete', '--force', id], { root: r });
  await Pool.stopAll();
  // Nothing of any root, nor the shared pool's directory (its SIGTERM drain is checked here too).
  const found = roots.flatMap(rootLeftovers);
  const poolDirLeft = shared?.poolDir && existsSync(shared.poolDir) ? [`pool directory ${shared.poolDir}`] : [];
  if (mountsUnder(work).length === 0) rmSync(work, { recursive: true, force: true });
  expect([...found, ...poolDirLeft]).toEqual([]);
});

describe.runIf(ready)('hull pool: one shared pool of 2 VMs', () => {
  beforeAll(async () => {
    shared = await Pool.start(root, 2);
  });

  afterAll(async () => {
    // Stopped here, so the pools below boot without this one refilling beside them.
    if (!shared) return;
    const exit = await shared.stop();
    expect(exit).toEqual({ code: 0, signal: null });
    expect(existsSync(shared.poolDir)).toBe(false);
    expect(processesMentioning(shared.poolDir)).toEqual([]);
    expect(shared.booted().flatMap(vmLeftovers)).toEqual([]);
  });

  it('a pooled `hull run`: stdout, stderr and exit code right; the claimed VM is gone afterwards', async () => {
    const before = await shared!.readyVms(1);
    // The leak check below sees a live pooled VM: its processes, its directory, its socket directory.
    for (const vm of before) expect(vmLeftovers(vm).length).toBeGreaterThanOrEqual(6);
    const bundle = makeBundle(path.join(work, 'b-exit'), ['sh', '-c', 'echo to-stdout; echo to-stderr >&2; exit 3']);
    const r = await pooledRun(root, bundle, 'exit3');
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 3, stdout: 'to-stdout\n', stderr: 'to-stderr\n' });
    const claimed = before.find((vm) => vm.id === r.boot.pooled);
    expect(claimed, `pooled from ${JSON.stringify(r.boot)}; ready before: ${before.map((v) => v.id).join(', ')}`).toBeDefined();
    console.log(`  pooled hull run: ${r.ms} ms`);
    // The pool saw the claim and replaces the VM; the claimer's teardown removed it.
    expect(shared!.log().some((l) => l.msg === 'VM claimed' && l.vm === claimed!.id)).toBe(true);
    await expectNothingLeft([claimed!]);
  });

  it('a spec whose memory limit needs a bigger VM than the pool’s boots cold, and says why', async () => {
    const before = await shared!.readyVms(1);
    // 512 MiB for the container + the guest's 256 MiB: a VM of 768 MiB; the pool's are 512 MiB.
    const bundle = makeBundle(path.join(work, 'b-big'), ['sh', '-c', 'sed -n "s/^MemTotal: *\\([0-9]*\\) kB/\\1/p" /proc/meminfo'], (spec) => {
      spec.linux.resources = { ...spec.linux.resources, memory: { limit: 512 * 2 ** 20 } };
    });
    const r = await pooledRun(root, bundle, 'big');
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(Number(r.stdout.trim()) / 1024).toBeGreaterThan(600); // a 768 MiB guest, not a 512 MiB one
    expect(r.boot.cold).toMatch(/^no ready VM of 1 vCPU\/768 MiB \((\d+ booting; )?ready: \d×1 vCPU\/512 MiB\/1 NIC\)$/);
    console.log(`  cold hull run (shape does not fit): ${r.ms} ms; why: ${r.boot.cold}`);
    // The ready VMs were left alone.
    const after = await shared!.status();
    for (const vm of before) expect(after.vms.find((v) => v.id === vm.id)?.state).toBe('ready');
    await expectNothingLeft([]);
  });

  describe('network', () => {
    let net: PodWithPeer | undefined;
    const token = `pool-peer-page-${Date.now()}`;

    beforeAll(() => {
      net = podWithPeer({
        suffix: `pool${process.pid}`,
        podMac: '0a:58:0a:e7:4f:02',
        mtu: 1400, // not the guest driver's 1500: a pooled NIC (no host_mtu) must be given it
        pod4: '10.231.79.2', peer4: '10.231.79.1', prefix4: 24,
        pod6: 'fd00:231:79::2', peer6: 'fd00:231:79::1', prefix6: 64,
        peerWww: path.join(work, 'peer-www'), peerPage: token,
      });
    });

    afterAll(() => net?.remove());

    it('a namespace with an interface takes a pooled VM: its tap moved in, the pod MAC and MTU in the guest, the peer reached over IPv4 and IPv6', async () => {
      const nsBefore = namespaceSnapshot(net!.pod);
      const before = await shared!.readyVms(1);
      const fetch = (url: string): string => `for i in 1 2 3 4 5; do timeout 5 wget -q -O - '${url}' && echo && break; sleep 1; done`;
      const script = [
        'cat /sys/class/net/eth0/address /sys/class/net/eth0/mtu',
        'ip -o link | cut -d: -f2 | tr -d " " | tr "\\n" " "; echo',
        fetch('http://10.231.79.1:8080/index.html'),
        fetch('http://[fd00:231:79::1]:8080/index.html'),
        'date +%s',
      ].join('; ');
      const bundle = makeBundle(path.join(work, 'b-net'), ['sh', '-c', script], (spec) => {
        spec.linux.namespaces = spec.linux.namespaces.map((n: { type: string }) => (n.type === 'network' ? { type: 'network', path: net!.podPath } : n));
      });
      const r = await pooledRun(root, bundle, 'net');
      const hostSeconds = Math.floor(Date.now() / 1000);
      const claimed = before.find((vm) => vm.id === r.boot.pooled);
      expect(claimed, `pooled from ${JSON.stringify(r.boot)}; ready before: ${before.map((v) => v.id).join(', ')}`).toBeDefined();
      const [mac, mtu, links, v4, v6, guestSeconds] = r.stdout.trim().split('\n');
      expect({ code: r.code, stderr: r.stderr, mac, mtu, links: links?.trim(), v4, v6 }).toEqual({
        code: 0,
        stderr: '',
        mac: '0a:58:0a:e7:4f:02',
        mtu: '1400',
        links: 'lo eth0',
        v4: token,
        v6: token,
      });
      // The claim set the guest clock from the host's (the guest's second may lag the host's read after exit by one).
      expect(hostSeconds - Number(guestSeconds)).toBeGreaterThanOrEqual(0);
      expect(hostSeconds - Number(guestSeconds)).toBeLessThanOrEqual(2);
      console.log(`  pooled hull run (pod network): ${r.ms} ms`);
      expect(claimed!.record.nics).toHaveLength(1);
      expect(namespaceSnapshot(net!.pod)).toEqual(nsBefore); // hull's tap and filters are gone
      await expectNothingLeft([claimed!]);
    });

    it('a network namespace of its own (no path: loopback only) takes a pooled VM', async () => {
      const before = await shared!.readyVms(1);
      const bundle = makeBundle(path.join(work, 'b-lo'), ['sh', '-c', 'ip -o link | cut -d: -f2']);
      expect(JSON.parse(readFileSync(path.join(bundle, 'config.json'), 'utf8')).linux.namespaces).toContainEqual({ type: 'network' });
      const r = await pooledRun(root, bundle, 'lo');
      expect([r.code, r.stdout, r.stderr]).toEqual([0, ' lo\n', '']);
      const claimed = before.find((vm) => vm.id === r.boot.pooled);
      expect(claimed, JSON.stringify(r.boot)).toBeDefined();
      await expectNothingLeft([claimed!]);
    });
  });

  it('two concurrent pooled runs get different VMs: different boot ids', async () => {
    const before = await shared!.readyVms(2);
    const bundle = makeBundle(path.join(work, 'b-boot-id'), ['cat', '/proc/sys/kernel/random/boot_id']);
    const [a, b] = await Promise.all([pooledRun(root, bundle, 'boot-a'), pooledRun(root, bundle, 'boot-b')]);
    for (const r of [a, b]) expect([r.code, r.stderr]).toEqual([0, '']);
    expect(a.stdout).toMatch(/^[0-9a-f-]{36}\n$/);
    expect(b.stdout).toMatch(/^[0-9a-f-]{36}\n$/);
    expect(a.stdout).not.toBe(b.stdout);
    expect(a.boot.pooled).toBeDefined();
    expect(b.boot.pooled).toBeDefined();
    expect(a.boot.pooled).not.toBe(b.boot.pooled);
    const claimed = before.filter((vm) => vm.id === a.boot.pooled || vm.id === b.boot.pooled);
    expect(claimed).toHaveLength(2);
    console.log(`  two concurrent pooled runs: ${a.ms} ms, ${b.ms} ms`);
    await expectNothingLeft(claimed);
  });

  it('host bind mounts reach a pooled VM: a file read-only, a directory read-write', async () => {
    const before = await shared!.readyVms(1);
    const hostFile = path.join(work, 'host-hosts');
    const hostDir = path.join(work, 'host-data');
    writeFileSync(hostFile, '10.1.2.3 from-the-host\n');
    mkdirSync(hostDir, { recursive: true });
    writeFileSync(path.join(hostDir, 'from-host'), 'host-file\n');
    const script = [
      'cat /etc/hosts',
      '{ echo changed > /etc/hosts; } 2>/dev/null && echo file-writable || echo file-read-only',
      'cat /data/from-host',
      'echo from-guest > /data/written-by-guest',
    ].join('; ');
    const bundle = makeBundle(path.join(work, 'b-binds'), ['sh', '-c', script], (spec) => {
      spec.mounts.push(
        { destination: '/etc/hosts', type: 'bind', source: hostFile, options: ['rbind', 'ro'] },
        { destination: '/data', type: 'bind', source: hostDir, options: ['rbind', 'rw'] },
      );
    });
    const r = await pooledRun(root, bundle, 'binds');
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(r.stdout.split('\n')).toEqual(['10.1.2.3 from-the-host', 'file-read-only', 'host-file', '']);
    expect(readFileSync(path.join(hostDir, 'written-by-guest'), 'utf8')).toBe('from-guest\n');
    expect(readFileSync(hostFile, 'utf8')).toBe('10.1.2.3 from-the-host\n');
    const claimed = before.find((vm) => vm.id === r.boot.pooled);
    expect(claimed, JSON.stringify(r.boot)).toBeDefined();
    await expectNothingLeft([claimed!]);
  });

  it('create + start + kill + delete with the detached monitor on a pooled VM', async () => {
    const before = await shared!.readyVms(1);
    const cgParent = `/hull-pool-${process.pid}`;
    const bundle = makeBundle(path.join(work, 'b-life'), ['sh', '-c', 'echo started; exec sleep 1000'], (spec) => (spec.linux.cgroupsPath = `${cgParent}/life`));
    const pidFile = path.join(work, 'life.pid');
    const log = path.join(work, 'life.log');
    const stdio = { stdout: path.join(work, 'life.out'), stderr: path.join(work, 'life.err') };
    const globalArgs = ['--log', log, '--log-format', 'json'];
    const t0 = Date.now();
    const created = await hullDetached(['create', '--bundle', bundle, '--pid-file', pidFile, 'life'], { root, globalArgs, ...stdio });
    expect([created.code, created.stderr]).toEqual([0, '']);
    const createMs = Date.now() - t0;
    const monitor = Number(readFileSync(pidFile, 'utf8'));
    const claimed = before.find((vm) => vm.id === howBooted(jsonLines(log)).pooled);
    expect(claimed, readFileSync(log, 'utf8')).toBeDefined();
    // The pool lists the VM as the monitor's.
    const during = await shared!.status();
    expect(during.vms.find((v) => v.id === claimed!.id)).toMatchObject({ state: 'claimed', claimedBy: monitor });
    // The claimed VM's processes moved from the pool's cgroup into the one the spec names, limited for the VM's size.
    const vmTree = vmProcessTree((JSON.parse(readFileSync(path.join(root, 'life', 'state.json'), 'utf8')) as { vm: Parameters<typeof vmProcessTree>[0] }).vm);
    expect(vmTree.length).toBeGreaterThanOrEqual(4);
    expect(vmTree.flatMap((pid) => outsideOf(pid, `${cgParent}/life`))).toEqual([]);
    expect(await hull(['start', 'life'], { root })).toMatchObject({ code: 0, stderr: '' });
    await until('the container to print', () => readFileSync(stdio.stdout, 'utf8').includes('started') || undefined, 10_000);
    expect(readFileSync(stdio.stdout, 'utf8')).toBe('started\n');
    const exec = await hull(['exec', 'life', 'cat', '/proc/sys/kernel/random/boot_id'], { root });
    expect([exec.code, exec.stderr]).toEqual([0, '']);
    console.log(`  pooled hull create: ${createMs} ms`);
    expect(await hull(['kill', 'life', 'KILL'], { root })).toMatchObject({ code: 0, stderr: '' });
    await until('the container to stop', async () => {
      const st = await hull(['state', 'life'], { root });
      return (JSON.parse(st.stdout) as { status: string }).status === 'stopped' || undefined;
    }, 20_000);
    expect(await hull(['delete', 'life'], { root })).toMatchObject({ code: 0, stderr: '' });
    await until('the monitor to exit', () => !isAlive({ pid: monitor }) || undefined, 10_000);
    await expectNothingLeft([claimed!]);
    expect(existingCgroupDirs(`${cgParent}/life`)).toEqual([]);
    removeTestParents([cgParent]);
  });

  it('hull metrics: the pool as `hull pool status` shows it, and a sandbox on a claimed VM labelled pooled (docs/metrics.md)', async () => {
    const before = await shared!.readyVms(2);
    const bundle = makeBundle(path.join(work, 'b-metrics'), ['sleep', '1000']);
    const stdio = { stdout: path.join(work, 'metrics.out'), stderr: path.join(work, 'metrics.err') };
    const created = await hullDetached(['create', '--bundle', bundle, 'metrics'], { root, ...stdio });
    expect([created.code, created.stderr]).toEqual([0, '']);
    const state = JSON.parse(readFileSync(path.join(root, 'metrics', 'state.json'), 'utf8')) as {
      boot: { pooled: boolean; ms: number; vcpus: number; memoryMiB: number };
      vmDir: string;
    };
    const claimed = before.find((vm) => vm.id === path.basename(state.vmDir));
    expect(claimed, state.vmDir).toBeDefined();
    expect(state.boot.pooled).toBe(true);
    // The pool refills beside us: a scrape between two equal statuses.
    const counts = (st: PoolStatus): string => JSON.stringify(st.vms.map((vm) => [vm.id, vm.state]));
    let status: PoolStatus | undefined;
    let samples: ReturnType<typeof parseScrape> = [];
    for (let i = 0; i < 5 && !status; i++) {
      const first = await shared!.status();
      const scrape = await hull(['metrics'], { root });
      expect([scrape.code, scrape.stderr]).toEqual([0, '']);
      samples = parseScrape(scrape.stdout);
      const second = await shared!.status();
      if (counts(first) === counts(second)) status = second;
    }
    expect(status, 'the pool kept changing').toBeDefined();
    const pooled = { sandbox: 'metrics', root, pooled: 'true' };
    expect(sampleValue(samples, 'hull_sandbox_up', pooled)).toBe(1);
    expect(sampleValue(samples, 'hull_sandbox_boot_seconds', pooled)).toBe(state.boot.ms / 1000);
    expect(sampleValue(samples, 'hull_sandbox_vcpus', pooled)).toBe(state.boot.vcpus);
    expect(sampleValue(samples, 'hull_sandbox_memory_bytes', pooled)).toBe(state.boot.memoryMiB * 2 ** 20);
    expect(sampleValue(samples, 'hull_container_pids', { ...pooled, container: 'metrics' })).toBeGreaterThanOrEqual(1);
    expect(sampleValue(samples, 'hull_pool_serving', { root })).toBe(1);
    expect(sampleValue(samples, 'hull_pool_target_size', { root })).toBe(2);
    for (const st of ['ready', 'booting', 'claimed'] as const) expect(sampleValue(samples, 'hull_pool_vms', { root, state: st })).toBe(status![st]);
    // Each VM's shape as on record; its PSS as status read it a moment apart (an idle VM's moves little).
    const near = (a: number, b: number): boolean => Math.abs(a - b) <= 0.25 * b;
    for (const vm of status!.vms) {
      const labels = { root, vm: vm.id, state: vm.state };
      if (vm.shape) expect(sampleValue(samples, 'hull_pool_vm_vcpus', labels)).toBe(vm.shape.vcpus);
      if (vm.pssBytes === undefined) continue;
      const pss = sampleValue(samples, 'hull_pool_vm_host_pss_bytes', labels);
      expect(near(pss, vm.pssBytes), `${vm.id}: ${pss} vs ${vm.pssBytes}`).toBe(true);
    }
    // The claimed VM is the sandbox's: the same processes, so the same PSS.
    const claimedPss = status!.vms.find((vm) => vm.id === claimed!.id)?.pssBytes;
    expect(claimedPss).toBeGreaterThan(0);
    expect(near(sampleValue(samples, 'hull_sandbox_host_pss_bytes', pooled), claimedPss!)).toBe(true);
    expect(await hull(['delete', '--force', 'metrics'], { root })).toMatchObject({ code: 0, stderr: '' });
    await expectNothingLeft([claimed!]);
  });

  describe.runIf(
    prerequisitesMet('pool: containerd and CRI', [
      ...containerdPrerequisites(),
      !existsSync(path.join(CNI_BIN, 'bridge')) && 'CNI plugins in /usr/lib/cni (apt-get install containernetworking-plugins)',
    ]),
  )('containerd and CRI', () => {
    const NS = 'k8s.io'; // the CRI plugin's namespace; ctr uses it too, so one import serves both
    const IMAGE = 'docker.io/hull/busybox:latest';
    const PAUSE = 'docker.io/hull/pause:latest';
    const cniDir = path.join(work, 'cni');
    // Host links this file makes (IFNAMSIZ: 15 characters at most); both go in afterAll.
    const bridge = `hullpb${process.pid % 100000}`;
    const tun = `hullpt${process.pid % 100000}`;
    let ctd: PrivateContainerd | undefined;
    let cri: CriClient | undefined;

    /**
     * Two runtime handlers of the hull shim, each with a CNI network of its own (containerd's per-runtime
     * cni_conf_dir): `hull`, a real pod network (bridge + host-local: a veth in the pod's namespace, which pooled VMs
     * cannot take), and `hull-nonic`, a pod network with no interface for the VM (host-device moves an L3 tun device
     * made here into the pod's namespace as eth0, with an address for CRI; hull mirrors only Ethernet devices), so
     * its VM may come from the pool. Subnets 10.231.80.0/24 and 10.231.81.0/24 are this file's; nothing routes them.
     */
    function writeCniConfigs(): void {
      const conflist = (name: string, plugin: object) => ({ cniVersion: '1.0.0', name, plugins: [plugin] });
      const ipam = (subnet: string, dir: string) => ({ type: 'host-local', ranges: [[{ subnet }]], dataDir: path.join(cniDir, dir) });
      for (const [dir, list] of [
        ['bridge', conflist('hull-pool-bridge', { type: 'bridge', bridge, isGateway: false, ipMasq: false, ipam: ipam('10.231.80.0/24', 'ipam-bridge') })],
        ['nonic', conflist('hull-pool-nonic', { type: 'host-device', device: tun, ipam: ipam('10.231.81.0/24', 'ipam-nonic') })],
      ] as const) {
        mkdirSync(path.join(cniDir, dir), { recursive: true });
        writeFileSync(path.join(cniDir, dir, `10-${dir}.conflist`), JSON.stringify(list));
      }
    }

    const hostLinks = (): string[] =>
      spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })
        .stdout.split('\n')
        .map((l) => l.split(': ')[1]?.split('@')[0] ?? '')
        .filter(Boolean);

    beforeAll(async () => {
      writeCniConfigs();
      const made = spawnSync('ip', ['tuntap', 'add', 'dev', tun, 'mode', 'tun'], { encoding: 'utf8' });
      if (made.status !== 0) throw new Error(`ip tuntap add dev ${tun} mode tun: ${made.stderr}`);
      const t = 'plugins."io.containerd.grpc.v1.cri"';
      const extraConfig = [
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = "${cniDir}/opt"`,
        `[${t}]`,
        `  sandbox_image = "${PAUSE}"`,
        '  stream_server_address = "127.0.0.1"',
        '  stream_server_port = "0"',
        '  disable_apparmor = true',
        '  enable_selinux = false',
        '  netns_mounts_under_state_dir = true',
        `[${t}.containerd]`,
        '  snapshotter = "overlayfs"',
        '  default_runtime_name = "runc"',
        `[${t}.containerd.runtimes.runc]`,
        '  runtime_type = "io.containerd.runc.v2"',
        ...['hull', 'hull-nonic'].flatMap((handler) => [
          `[${t}.containerd.runtimes.${handler}]`,
          `  runtime_type = "${RUNTIME}"`,
          `  cni_conf_dir = "${cniDir}/${handler === 'hull' ? 'bridge' : 'nonic'}"`,
          '  cni_max_conf_num = 1',
        ]),
        `[${t}.cni]`,
        `  bin_dir = "${CNI_BIN}"`,
        `  conf_dir = "${cniDir}/bridge"`,
        '  max_conf_num = 1',
      ].join('\n');
      // The shim inherits containerd's environment: HULL_POOL_ROOT names the pool it takes VMs from.
      ctd = await PrivateContainerd.start(NS, { cri: true, extraConfig, env: { HULL_POOL_ROOT: root } });
      await ctd.importBusybox(IMAGE);
      await ctd.importBusybox(PAUSE, { entrypoint: ['sh', '-c', 'trap "exit 0" TERM INT; while :; do sleep 1; done'] });
      cri = new CriClient(ctd.sock);
    });

    afterAll(async () => {
      for (const p of (await cri?.listPodSandbox().catch(() => [])) ?? []) {
        await cri!.stopPodSandbox(p.id).catch(() => undefined);
        await cri!.removePodSandbox(p.id).catch(() => undefined);
      }
      cri?.close();
      await ctd?.destroy();
      for (const link of [bridge, tun]) if (hostLinks().includes(link)) spawnSync('ip', ['link', 'del', link]);
    });

    /** The shim's log lines (containerd copies them into its own log) of one pod. */
    const shimLines = (pod: string): Array<Record<string, unknown>> => jsonLines(ctd!.log).filter((l) => l.pod === pod);

    it('ctr run --rm through the hull shim takes a pooled VM: output and exit code right, nothing left', async () => {
      const before = await shared!.readyVms(1);
      const t0 = Date.now();
      const r = await ctd!.ctr(['run', '--rm', '--runtime', RUNTIME, IMAGE, 'pooled-ctr', 'sh', '-c', 'echo hello; echo oops >&2; exit 3']);
      console.log(`  pooled ctr run --rm: ${Date.now() - t0} ms`);
      expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 3, stdout: 'hello\n' });
      expect(r.stderr).toContain('oops');
      const claimed = before.find((vm) => vm.id === howBooted(shimLines('pooled-ctr')).pooled);
      expect(claimed, readFileSync(ctd!.log, 'utf8').slice(-3000)).toBeDefined();
      expect((await ctd!.ctr(['c', 'ls', '-q'])).stdout.trim()).toBe('');
      expect(existsSync(sandboxDirFor(POD_ROOT, NS, 'pooled-ctr'))).toBe(false);
      expect(ctd!.leftovers().filter((l) => l.includes(ctd!.tmp))).toEqual([]);
      await expectNothingLeft([claimed!]);
    });

    /** RunPodSandbox, CreateContainer, StartContainer, an ExecSync; then stop and remove. How its VM came. */
    async function criPod(handler: string, name: string): Promise<{ pooled?: string; cold?: string; ms: number }> {
      const logDir = path.join(work, `cri-logs-${name}`);
      mkdirSync(logDir, { recursive: true });
      const namespaceOptions = { network: 'POD', pid: 'POD', ipc: 'POD' } as const;
      const podConfig: PodSandboxConfig = {
        metadata: { name, uid: `uid-${name}`, namespace: 'default', attempt: 0 },
        hostname: name,
        logDirectory: logDir,
        linux: { securityContext: { namespaceOptions } },
      };
      const container: ContainerConfig = {
        metadata: { name: 'c', attempt: 0 },
        image: { image: IMAGE },
        command: ['sh', '-c', 'echo from-the-pod; trap "exit 0" TERM; while :; do sleep 1; done'],
        logPath: 'c/0.log',
        linux: { securityContext: { namespaceOptions } },
      };
      const t0 = Date.now();
      const podId = await cri!.runPodSandbox(podConfig, handler);
      const podDir = sandboxDirFor(POD_ROOT, NS, podId);
      try {
        const cid = await cri!.createContainer(podId, container, podConfig);
        await cri!.startContainer(cid);
        const ms = Date.now() - t0;
        const boot = howBooted(shimLines(podId));
        await until('the container’s log line', () => (readFileSync(path.join(logDir, 'c', '0.log'), 'utf8').includes('from-the-pod') || undefined), 20_000);
        const ex = await cri!.execSync(cid, ['sh', '-c', 'echo exec-ok; hostname'], 30);
        expect({ out: ex.stdout.toString(), code: ex.exitCode }).toEqual({ out: `exec-ok\n${name}\n`, code: 0 });
        if (boot.pooled) expect((await shared!.status()).vms.find((v) => v.id === boot.pooled)?.state).toBe('claimed');
        await cri!.stopPodSandbox(podId);
        await cri!.removePodSandbox(podId);
        await until('the pod directory to go', () => !existsSync(podDir) || undefined, 20_000);
        expect(ctd!.leftovers().filter((l) => l.includes(ctd!.tmp) || l.includes(podDir))).toEqual([]);
        return { ...boot, ms };
      } finally {
        await cri!.stopPodSandbox(podId).catch(() => undefined);
        await cri!.removePodSandbox(podId).catch(() => undefined);
      }
    }

    it('a CRI pod whose network has no interface for the VM takes a pooled VM', async () => {
      const before = await shared!.readyVms(1);
      const boot = await criPod('hull-nonic', 'pooled-pod');
      console.log(`  pooled CRI RunPodSandbox + CreateContainer + StartContainer: ${boot.ms} ms`);
      const claimed = before.find((vm) => vm.id === boot.pooled);
      expect(claimed, `${JSON.stringify(boot)}\n${readFileSync(ctd!.log, 'utf8').slice(-3000)}`).toBeDefined();
      // host-device gave the tun device back to the host.
      expect(hostLinks()).toContain(tun);
      await expectNothingLeft([claimed!]);
    });

    it('a CRI pod with a CNI interface (bridge) takes a pooled VM', async () => {
      const before = await shared!.readyVms(1);
      const boot = await criPod('hull', 'net-pod');
      console.log(`  pooled CRI RunPodSandbox + CreateContainer + StartContainer (CNI bridge): ${boot.ms} ms`);
      const claimed = before.find((vm) => vm.id === boot.pooled);
      expect(claimed, `${JSON.stringify(boot)}\n${readFileSync(ctd!.log, 'utf8').slice(-3000)}`).toBeDefined();
      await expectNothingLeft([claimed!]);
    });
  });
});

describe.runIf(ready)('hull pool: VMs with room to grow (vm.max_memory_mib)', () => {
  it('a container that needs more memory than a pooled VM has takes it and grows it, instead of booting cold', async () => {
    const pool = await Pool.start(path.join(work, 'grow', 'root'), 1, { HULL_MAX_MEMORY_MIB: '1024' });
    const [vm] = await pool.readyVms(1);
    // 512 MiB for the container + the guest's 256 MiB: 768 MiB, more than the pooled VM's 512 but within its 1024.
    const bundle = makeBundle(path.join(work, 'b-grow'), ['sh', '-c', 'sed -n "s/^MemTotal: *\\([0-9]*\\) kB/\\1/p" /proc/meminfo'], (spec) => {
      spec.linux.resources = { ...spec.linux.resources, memory: { limit: 512 * 2 ** 20 } };
    });
    const r = await pooledRun(pool.root, bundle, 'grow');
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(r.boot.pooled, JSON.stringify(r.boot)).toBe(vm!.id);
    // A guest of 768 MiB (less the kernel's own), not the pooled 512 (~460) nor the whole 1024 (~970).
    const memTotalMiB = Number(r.stdout.trim()) / 1024;
    expect(memTotalMiB, r.stdout).toBeGreaterThan(680);
    expect(memTotalMiB, r.stdout).toBeLessThan(768);
    console.log(`  pooled hull run that grew its VM 512 → 768 MiB: ${r.ms} ms`);
    expect(await pool.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(pool.booted().flatMap(vmLeftovers)).toEqual([]);
    expect(rootLeftovers(pool.root)).toEqual([]);
  });
});

describe.runIf(ready)('hull pool: stopping', () => {
  it('SIGTERM drains a pool: exit 0, its VMs (ready and booting) powered off, its directory removed', async () => {
    const pool = await Pool.start(path.join(work, 'term', 'root'), 2);
    await pool.readyVms(1);
    const vms = poolVmsOnRecord(pool.poolDir);
    expect(vms.length).toBeGreaterThanOrEqual(1);
    const t0 = Date.now();
    expect(await pool.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    console.log(`  SIGTERM drain of ${vms.length} VM(s) (${vms.map((v) => v.record.state).join(', ')}): ${Date.now() - t0} ms`);
    // Every VM on record when the signal came, and every VM the pool's log says it booted, is gone with its directory.
    expect(vms.flatMap(vmLeftovers)).toEqual([]);
    expect(pool.booted().flatMap(vmLeftovers)).toEqual([]);
    expect(existsSync(pool.poolDir)).toBe(false);
    expect(processesMentioning(pool.poolDir)).toEqual([]);
    expect(rootLeftovers(pool.root)).toEqual([]);
    expect(pool.log().find((l) => l.msg === 'pool drained')).toMatchObject({ claimedLeft: [], errors: 0 });
  });

  it('kill -9 of a pool: the next pool on the root removes the VMs it left, but not the one a container runs in', async () => {
    const killRoot = path.join(work, 'kill', 'root');
    const first = await Pool.start(killRoot, 1);
    // A container on a VM of this pool: claimed VMs are their claimers', whatever happens to the pool.
    const [survivorVm] = await first.readyVms(1);
    const bundle = makeBundle(path.join(work, 'b-survivor'), ['sleep', '1000']);
    const log = path.join(work, 'survivor.log');
    const stdio = { stdout: path.join(work, 'survivor.out'), stderr: path.join(work, 'survivor.err') };
    const created = await hullDetached(['create', '--bundle', bundle, 'survivor'], { root: killRoot, globalArgs: ['--log', log, '--log-format', 'json'], ...stdio });
    expect([created.code, created.stderr]).toEqual([0, '']);
    expect(howBooted(jsonLines(log)).pooled).toBe(survivorVm!.id);
    expect(await hull(['start', 'survivor'], { root: killRoot })).toMatchObject({ code: 0, stderr: '' });
    // Killed with its replacement ready and no boot under way: a pool killed while it starts a VM's process, before
    // that process is on record, leaves it running for good (see the note at the end of this file).
    await first.waitFor('the replacement VM ready, none booting', (st) => st.ready === 1 && st.booting === 0 && st.claimed === 1);

    expect(await first.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    const left = poolVmsOnRecord(first.poolDir).filter((vm) => vm.id !== survivorVm!.id);
    expect(left.map((vm) => vm.record.state)).toEqual(['ready']);
    // The dead pool's VM still runs; nobody may claim it, so a sandbox boots cold.
    for (const vm of left) expect(recordedProcesses(vm.record).every((p) => isAlive(p))).toBe(true);
    const s = JSON.parse((await hull(['pool', 'status', '--format', 'json'], { root: killRoot })).stdout) as PoolStatus;
    expect(s.serving).toBeNull();
    expect(s.vms.filter((v) => v.id !== survivorVm!.id).map((v) => v.state)).toEqual(left.map(() => 'stale'));
    expect(s.vms.find((v) => v.id === survivorVm!.id)?.state).toBe('claimed');
    const lone = makeBundle(path.join(work, 'b-after-kill'), ['true']);
    const cold = await pooledRun(killRoot, lone, 'after-kill');
    expect([cold.code, cold.boot.cold]).toEqual([0, `no pool serves ${killRoot}`]);

    const t0 = Date.now();
    const second = await Pool.start(killRoot, 1);
    const leftovers = (): string[] => [...left, ...first.booted().filter((vm) => vm.id !== survivorVm!.id)].flatMap(vmLeftovers);
    await until('the dead pool’s VMs to be removed', () => (leftovers().length === 0 ? true : undefined), 30_000).catch(() => undefined);
    expect(leftovers()).toEqual([]);
    console.log(`  leftovers of a killed pool removed by the next: ${Date.now() - t0} ms`);
    const removed = second.log().filter((l) => l.msg === 'removing a VM').map((l) => l.vm);
    expect(removed.sort()).toEqual(left.map((vm) => vm.id).sort());
    const fresh = await second.readyVms(1);
    expect(fresh.every((vm) => vm.record.pool.pid === second.pid)).toBe(true);
    // The container's VM was left alone: it still runs the container, which still answers.
    expect((await second.status()).vms.find((v) => v.id === survivorVm!.id)?.state).toBe('claimed');
    const exec = await hull(['exec', 'survivor', 'echo', 'still-here'], { root: killRoot });
    expect([exec.code, exec.stdout, exec.stderr]).toEqual([0, 'still-here\n', '']);
    expect(await hull(['delete', '--force', 'survivor'], { root: killRoot })).toMatchObject({ code: 0, stderr: '' });
    await until('the container’s VM to go', () => (vmLeftovers(survivorVm!).length === 0 ? true : undefined), 10_000).catch(() => undefined);
    expect(vmLeftovers(survivorVm!)).toEqual([]);

    expect(await second.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect([...fresh, ...second.booted()].flatMap(vmLeftovers)).toEqual([]);
    expect(existsSync(second.poolDir)).toBe(false);
    expect(rootLeftovers(killRoot)).toEqual([]);
  });
});

// Not covered above, so this file stays deterministic: a pool killed with -9 in the moment between spawning one of a
// VM's processes and writing its pid to pool-vm.json. That process is on no record; the VM's teardown
// (QemuMicrovm.killRecorded) ends it by its command line, which names the VM's socket dir
// (test/unit/vm-processes.test.ts covers that sweep).
