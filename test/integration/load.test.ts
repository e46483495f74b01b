// Load (issue 11, item 4): many lifecycles at once through each front end, many execs into one container, and guests
// that flood the host — every exit code right, nothing left behind, host memory flat or bounded.
//
// RSS here is RssAnon (test/helpers/load.ts). Wall time here: about 5 min with the defaults (ROUNDS 1, EXECS 300).
// - 20 concurrent `hull run`s × ROUNDS on a root served by a pool of POOL_SIZE: the first few claim pooled VMs, the
//   rest boot cold at once (20 TCG boots on 2 CPUs), which is the point: the sandbox core, the CID and uid leases and the
//   pool's claim under contention. The same through one private containerd (`ctr run --rm` ×20).
// - EXECS `ctr task exec`s into one container (the shim is the long-lived process that serves them); the shim's RSS,
//   the VM's host RSS and the guest's used memory (which holds the agent) sampled every EXECS/10. `hull exec` connects
//   to the agent itself and does not go through the monitor, so the containerd path is the one whose memory matters;
//   it also costs no Node start per exec. HULL_LOAD_EXECS=1000 runs the full count (about 3 min here).
// - A guest that floods stdout while the host does not read (hull run, and ctr run): the monitor's, the shim's and
//   the vsock backend's RSS stay bounded (backpressure: shim/sandbox/stdio-relay.ts, agent/output-buffer.ts); a guest
//   that writes a big file into its rootfs over virtio-fs: virtiofsd's RSS stays bounded.
// What a guest can do to the host over vsock is answer the host's own connections (the host never listens for the
// guest; guest-initiated connections find no socket): its replies are the stdout flood's bytes, in ttrpc frames
// capped at 4 MiB (protocol/ttrpc, fuzzed in test/fuzz), so the flood cases cover it.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { containerdPrerequisites, podOf, PrivateContainerd, RUNTIME, until } from '../helpers/containerd.js';
import { existingCgroupDirs, removeTestParents } from '../helpers/host-cgroups.js';
import { hull, hullBin, leaks, makeBundle, mountsUnder, repo, tempDir } from '../helpers/hull.js';
import { growth, mib, MiB, rssOf, RssSampler } from '../helpers/load.js';
import { delay, jsonLines, Pool, vmLeftovers } from '../helpers/pool.js';
import { needRoot, prerequisitesMet } from '../helpers/prerequisites.js';

const CONCURRENCY = 20;
const ROUNDS = Number(process.env.HULL_LOAD_ROUNDS ?? 1);
const EXECS = Number(process.env.HULL_LOAD_EXECS ?? 300);
const POOL_SIZE = 3;
/** How far the last third of a long-lived process's RSS samples may sit above the first third (median each). */
const FLAT_BOUND = 10 * MiB;
/** How far a host process's RSS may rise while a guest floods it. */
const FLOOD_BOUND = 64 * MiB;
const FLOOD_BYTES = 256 * MiB;
const FLOOD_PAUSE_MS = 8_000;
/** 20 TCG boots at once on 2 CPUs (shared with whatever else runs) take longer than the 90 s agent timeout that is
 *  there to catch a broken guest image; the bursts give it 4 min so they measure hull, not the machine. */
const BURST_ENV = { HULL_AGENT_TIMEOUT_MS: '240000' };
/** The guest's used memory (MemTotal − MemAvailable: agent, page cache, slab) may drift more than a host process. */
const GUEST_BOUND = 32 * MiB;

const work = tempDir('hull-load-');
const root = path.join(work, 'root');
const cgParent = `/hull-load-${process.pid}`;
const IMAGE = 'docker.io/hull/busybox:latest';
const NS = `hullload${process.pid}`;

const ready = prerequisitesMet('load', [
  needRoot(),
  !existsSync('/bin/busybox') && '/bin/busybox (apt-get install busybox-static)',
  !existsSync(path.join(repo, 'dist', 'hull.mjs')) && 'dist/hull.mjs (npm run build)',
  !existsSync(path.join(repo, 'build', 'guest', 'current', 'manifest.json')) && 'guest image (npm run build)',
]);

/** Exit code of the i-th container: distinct within a round, 0 among them. */
const codeOf = (i: number): number => (i * 12) % 250;

let pool: Pool | undefined;
let ctd: PrivateContainerd | undefined;
const timings: Record<string, string> = {};

/** Host links and named network namespaces: a leaked tap or namespace shows as a difference. */
function hostNet(): string {
  const links = readFileSync('/proc/net/dev', 'utf8').split('\n').slice(2).map((l) => l.split(':')[0]!.trim()).filter(Boolean);
  const netns = existsSync('/run/netns') ? readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(' /run/netns/')) : [];
  return JSON.stringify({ links: links.sort(), netns: netns.length });
}

/** Everything of the CLI's containers left on the host: processes naming the root (but the pool server), mounts,
 *  state dirs, host cgroups, VMs the pool booted that are neither ready nor booting yet still leave something. */
async function cliLeftovers(ids: string[]): Promise<string[]> {
  const found = leaks(root);
  const status = await pool!.status();
  const live = new Set(status.vms.filter((v) => v.state === 'ready' || v.state === 'booting').map((v) => v.id));
  return [
    ...found.processes.filter((l) => Number(l.split(':')[0]) !== pool!.pid),
    ...found.mounts.map((m) => `mount ${m}`),
    ...found.stateDirs.map((d) => `state dir ${d}`),
    ...ids.flatMap((id) => existingCgroupDirs(`${cgParent}/${id}`)).map((d) => `cgroup ${d}`),
    ...(status.claimed > 0 ? [`${status.claimed} claimed pooled VM(s)`] : []),
    ...pool!.booted().filter((vm) => !live.has(vm.id)).flatMap(vmLeftovers),
  ];
}

/** Polls `fn` until it returns nothing, for at most `ms`; returns what is left then. */
async function settle(fn: () => Promise<string[]> | string[], ms = 10_000): Promise<string[]> {
  const deadline = Date.now() + ms;
  let left = await fn();
  while (left.length > 0 && Date.now() < deadline) {
    await delay(200);
    left = await fn();
  }
  return left;
}

afterAll(async () => {
  for (const id of existsSync(root) ? (leaks(root).stateDirs) : []) await hull(['delete', '--force', id], { root });
  await ctd?.destroy();
  await Pool.stopAll();
  try {
    removeTestParents([cgParent, `/${NS}`]);
  } finally {
    if (mountsUnder(work).length === 0) rmSync(work, { recursive: true, force: true });
    console.log(`load timings: ${JSON.stringify(timings, null, 1)}`);
  }
}, 120_000);

/**
 * Opt-in (HULL_LOAD=1), not part of `npm test` yet: on this 2-core TCG machine 20 concurrent cold boots take minutes per
 * burst, and the file has not yet run through whole here (issue 11 keeps item 4 open).
 */
const optedIn = process.env.HULL_LOAD === '1';
if (!optedIn) console.log('load: not run (HULL_LOAD=1 runs it; several minutes here)');

describe.runIf(ready && optedIn)('load', () => {
  const netBefore = hostNet();

  beforeAll(async () => {
    pool = await Pool.start(root, POOL_SIZE);
  }, 120_000);

  it(`CLI: ${CONCURRENCY} concurrent hull runs × ${ROUNDS} rounds: every exit code and line right, nothing left`, async () => {
    const ids = Array.from({ length: CONCURRENCY }, (_, i) => `load-${i}`);
    const bundles = ids.map((id, i) =>
      makeBundle(path.join(work, `b-${i}`), ['sh', '-c', `echo line-${id}; exit ${codeOf(i)}`], (spec) => {
        spec.linux.cgroupsPath = `${cgParent}/${id}`;
      }),
    );
    for (let round = 0; round < ROUNDS; round++) {
      await pool!.readyVms(1);
      const t0 = Date.now();
      const results = await Promise.all(
        ids.map((id, i) => {
          const log = path.join(work, `run-${round}-${id}.log`);
          return hull(['run', '--bundle', bundles[i]!, id], { root, env: BURST_ENV, globalArgs: ['--log', log, '--log-format', 'json'] }).then((r) => ({
            ...r,
            pooled: jsonLines(log).some((l) => l.msg === 'pooled VM claimed'),
          }));
        }),
      );
      const ms = Date.now() - t0;
      const wrong = results
        .map((r, i) => ({ id: ids[i], code: r.code, stdout: r.stdout, stderr: r.stderr.slice(-300) }))
        .filter((r, i) => r.code !== codeOf(i) || r.stdout !== `line-${r.id}\n`);
      const left = await settle(() => cliLeftovers(ids));
      timings[`cli round ${round}`] = `${ms} ms, ${results.filter((r) => r.pooled).length} pooled / ${CONCURRENCY}, wrong ${wrong.length}, leftovers ${left.length}`;
      expect({ wrong, left }).toEqual({ wrong: [], left: [] });
    }
    expect(hostNet()).toBe(netBefore);
  }, 600_000);

  describe.runIf(prerequisitesMet('load under containerd', containerdPrerequisites()))('through containerd', () => {
    beforeAll(async () => {
      ctd = await PrivateContainerd.start(NS, { env: { HULL_POOL_ROOT: root, ...BURST_ENV } });
      await ctd.importBusybox(IMAGE);
    }, 120_000);

    const ctdLeftovers = async (ids: string[]): Promise<string[]> => [
      ...ctd!.leftovers(),
      ...(await ctd!.ctr(['c', 'ls', '-q'])).stdout.split('\n').filter(Boolean).map((c) => `container ${c}`),
      ...ids.flatMap((id) => existingCgroupDirs(`/${NS}/${id}`)).map((d) => `cgroup ${d}`),
      ...((await pool!.status()).claimed > 0 ? ['claimed pooled VM(s)'] : []),
    ];

    it(`containerd: ${CONCURRENCY} concurrent ctr run --rm × ${ROUNDS} rounds: every exit code and line right, nothing left`, async () => {
      const ids = Array.from({ length: CONCURRENCY }, (_, i) => `cload-${i}`);
      for (let round = 0; round < ROUNDS; round++) {
        await pool!.readyVms(1);
        const t0 = Date.now();
        const results = await Promise.all(
          ids.map((id, i) => ctd!.ctr(['run', '--rm', '--runtime', RUNTIME, IMAGE, id, 'sh', '-c', `echo line-${id}; exit ${codeOf(i)}`], '', 300_000)),
        );
        const ms = Date.now() - t0;
        const wrong = results
          .map((r, i) => ({ id: ids[i], code: r.code, stdout: r.stdout, stderr: r.stderr.slice(-300) }))
          .filter((r, i) => r.code !== codeOf(i) || r.stdout !== `line-${r.id}\n`);
        const left = await settle(() => ctdLeftovers(ids));
        timings[`containerd round ${round}`] = `${ms} ms, wrong ${wrong.length}, leftovers ${left.length}`;
        expect({ wrong, left }).toEqual({ wrong: [], left: [] });
      }
      expect(hostNet()).toBe(netBefore);
    }, 600_000);

    it(`containerd: ${EXECS} execs into one container: the shim's, the VM's and the guest's memory stay flat`, async () => {
      const id = 'execs';
      const r = await ctd!.ctr(['run', '-d', '--runtime', RUNTIME, IMAGE, id, 'sleep', '100000']);
      expect(r.code, r.stderr).toBe(0);
      const rec = await until('the pod record', () => podOf(id));
      const vmPids = (): number[] => {
        const pod = JSON.parse(readFileSync(path.join(rec.dir, 'pod.json'), 'utf8')) as { vm: { vmm?: { pid: number }; helpers?: { pid: number }[] } };
        return [...(pod.vm.vmm ? [pod.vm.vmm.pid] : []), ...(pod.vm.helpers ?? []).map((h) => h.pid)];
      };
      const guestUsed = async (): Promise<number> => {
        const m = await ctd!.ctr(['task', 'exec', '--exec-id', `meminfo-${Date.now()}`, id, 'cat', '/proc/meminfo']);
        const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(m.stdout)?.[1] ?? NaN);
        return (kb('MemTotal') - kb('MemAvailable')) * 1024;
      };
      const samples = { shim: [] as number[], vm: [] as number[], guest: [] as number[] };
      const sample = async (): Promise<void> => {
        samples.shim.push(rssOf(rec.shimPid) ?? NaN);
        samples.vm.push(vmPids().reduce((sum, pid) => sum + (rssOf(pid) ?? 0), 0));
        samples.guest.push(await guestUsed());
      };
      const every = Math.max(1, Math.floor(EXECS / 10));
      const failed: string[] = [];
      const t0 = Date.now();
      await sample();
      // Two at a time: the shim serves concurrent execs, and the 2 CPUs stay busy.
      let next = 0;
      const worker = async (): Promise<void> => {
        for (let n = next++; n < EXECS; n = next++) {
          const e = await ctd!.ctr(['task', 'exec', '--exec-id', `e${n}`, id, 'sh', '-c', `echo e${n}`]);
          if (e.code !== 0 || e.stdout !== `e${n}\n`) failed.push(`e${n}: ${e.code} ${e.stdout} ${e.stderr}`);
          if ((n + 1) % every === 0) await sample();
        }
      };
      await Promise.all([worker(), worker()]);
      const ms = Date.now() - t0;
      await ctd!.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
      await until(`${id} to stop`, async () => ((await ctd!.taskStatus(id)) === 'STOPPED' ? true : undefined), 20_000);
      await ctd!.ctr(['task', 'rm', id]);
      await ctd!.ctr(['c', 'rm', id]);
      const show = (s: number[]): string => s.map(mib).join(' ');
      timings.execs = `${EXECS} execs in ${ms} ms (${(ms / EXECS).toFixed(0)} ms each); RSS MiB — shim: ${show(samples.shim)}; VM: ${show(samples.vm)}; guest used: ${show(samples.guest)}`;
      expect(failed.slice(0, 5)).toEqual([]);
      expect(growth(samples.shim), timings.execs).toBeLessThanOrEqual(FLAT_BOUND);
      expect(growth(samples.vm), timings.execs).toBeLessThanOrEqual(FLAT_BOUND);
      expect(growth(samples.guest), timings.execs).toBeLessThanOrEqual(GUEST_BOUND);
      expect(await settle(() => ctdLeftovers([id]))).toEqual([]);
    }, 600_000);

    it('containerd: a guest flooding stdout to a reader that stops: the shim stays bounded, every byte arrives', async () => {
      const id = 'cflood';
      const child = spawn('ctr', ['-a', ctd!.sock, '-n', NS, 'run', '--rm', '--runtime', RUNTIME, IMAGE, id, 'head', '-c', String(FLOOD_BYTES), '/dev/zero'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const outcome = floodReader(child, () => {
        const pod = podOf(id);
        return { shim: pod?.shimPid, ...helpersOf(pod ? path.join(pod.dir, 'pod.json') : undefined) };
      });
      const { code, bytes, sampler } = await outcome;
      timings['containerd stdout flood'] = JSON.stringify({ bytes, ...sampler.report() });
      expect([code, bytes]).toEqual([0, FLOOD_BYTES]);
      expect(sampler.rise('shim'), timings['containerd stdout flood']).toBeLessThanOrEqual(FLOOD_BOUND);
      expect(sampler.rise('vsock-backend'), timings['containerd stdout flood']).toBeLessThanOrEqual(FLOOD_BOUND);
      expect(await settle(() => ctdLeftovers([id]))).toEqual([]);
    }, 300_000);
  });

  it('CLI: a guest flooding stdout to a reader that stops: hull run and the vsock backend stay bounded, every byte arrives', async () => {
    const id = 'flood';
    const bundle = makeBundle(path.join(work, 'b-flood'), ['head', '-c', String(FLOOD_BYTES), '/dev/zero']);
    const child = spawn(hullBin, ['--root', root, 'run', '--bundle', bundle, id], { stdio: ['ignore', 'pipe', 'pipe'] });
    const { code, bytes, sampler } = await floodReader(child, () => ({ 'hull run': child.pid, ...helpersOf(path.join(root, id, 'state.json')) }));
    timings['cli stdout flood'] = JSON.stringify({ bytes, ...sampler.report() });
    expect([code, bytes]).toEqual([0, FLOOD_BYTES]);
    expect(sampler.rise('hull run'), timings['cli stdout flood']).toBeLessThanOrEqual(FLOOD_BOUND);
    expect(sampler.rise('vsock-backend'), timings['cli stdout flood']).toBeLessThanOrEqual(FLOOD_BOUND);
    expect(await settle(() => cliLeftovers([]))).toEqual([]);
  }, 300_000);

  it('CLI: a guest writing a big file into its rootfs: virtiofsd stays bounded', async () => {
    const id = 'fsflood';
    const mb = FLOOD_BYTES / MiB;
    const bundle = makeBundle(path.join(work, 'b-fsflood'), ['sh', '-c', `dd if=/dev/zero of=/big bs=1M count=${mb} 2>/dev/null && sync && ls -l /big && rm /big`]);
    const child = spawn(hullBin, ['--root', root, 'run', '--bundle', bundle, id], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const sampler = new RssSampler(() => helpersOf(path.join(root, id, 'state.json')));
    const t0 = Date.now();
    await until('the VM to run', () => helpersOf(path.join(root, id, 'state.json')).virtiofsd, 120_000);
    sampler.rebase();
    const code = await new Promise<number | null>((r) => child.on('close', r));
    sampler.stop();
    timings['virtio-fs write'] = JSON.stringify({ ms: Date.now() - t0, ...sampler.report() });
    expect(code).toBe(0);
    expect(out).toContain(` ${FLOOD_BYTES} `);
    expect(sampler.rise('virtiofsd'), timings['virtio-fs write']).toBeLessThanOrEqual(FLOOD_BOUND);
    expect(await settle(() => cliLeftovers([]))).toEqual([]);
  }, 300_000);
});

/** The VM's helpers (by role) and VMM of a state.json or pod.json, while it has them. */
function helpersOf(recordFile: string | undefined): Record<string, number | undefined> {
  if (!recordFile) return {};
  try {
    const rec = JSON.parse(readFileSync(recordFile, 'utf8')) as { vm?: { vmm?: { pid: number }; helpers?: { pid: number; role: string }[] } };
    return { vmm: rec.vm?.vmm?.pid, ...Object.fromEntries((rec.vm?.helpers ?? []).map((h) => [h.role, h.pid])) };
  } catch {
    return {};
  }
}

/** Reads nothing of a flooding child's stdout for FLOOD_PAUSE_MS once the first byte came, then everything; samples the
 *  named processes' RSS all along. */
async function floodReader(
  child: ReturnType<typeof spawn>,
  pids: () => Record<string, number | undefined>,
): Promise<{ code: number | null; bytes: number; sampler: RssSampler }> {
  const sampler = new RssSampler(pids);
  let bytes = 0;
  let paused = false;
  child.stderr!.resume();
  child.stdout!.on('data', (d: Buffer) => {
    bytes += d.length;
    if (!paused) {
      sampler.rebase(); // the front end has started and the VM runs: measure the flood from here
      paused = true;
      child.stdout!.pause();
      setTimeout(() => child.stdout!.resume(), FLOOD_PAUSE_MS);
    }
  });
  const code = await new Promise<number | null>((r) => child.on('close', r));
  sampler.stop();
  return { code, bytes, sampler };
}
