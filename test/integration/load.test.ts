// Load (issue 11, item 4): many lifecycles at once through each front end, many execs into one container, and guests
// that flood the host — every exit code right, nothing left behind, host memory flat or bounded.
//
// Part of `npm test`. RSS here is RssAnon (test/helpers/load.ts). Runs 1000 execs (the count; 143-175 s here)
// and three rounds of 20 concurrent lifecycles per front end (~55-130 s a round). A rare hang is not explained yet: a
// cold VM that never reached /init's "starting agent" line and missed the 90 s agent timeout, twice, both in the
// containerd round: once with the quiet kernel's last message (0.5 s) the console's last line, once (hull.debug=1
// step lines) after stage 2's "/init start" and before its "mounts done" (devpts, tmpfs, the cgroup2 mount, the
// controllers). That is 2 in about 4,400 boots under this load, counted over every stop: 270 `hull run`s six at a
// time, 222 bare QEMU boots six at a time, 400 lifecycles of the CLI round and ~3,500 of the containerd round (a debug
// guest, a 10 s hung-task detector, a dump of QEMU's interrupt and virtio state and of guest RAM on the timeout), none
// since the second. CI ran one round while it was being hunted; at that rate three rounds add a ~3 % chance of a red
// run, and a hang fails here as it would for a user, saying where the vCPU is (docs/faults.md).
// Knobs for a shared machine (CI runs the defaults): HULL_LOAD_CONCURRENCY (20), HULL_LOAD_ROUNDS (3),
// HULL_LOAD_EXECS (1000), HULL_MAX_CONCURRENT_BOOTS (the host's CPU count; 20 reproduces the burst without the queue).
// - CONCURRENCY concurrent `hull run`s × ROUNDS on a root served by a pool of POOL_SIZE: the first few claim pooled
//   VMs, the rest boot cold, through the host's boot slots (shim/sandbox/boot-slots.ts): at most
//   vm.max_concurrent_boots at once, each within the default 90 s agent timeout (counted from its own boot's start),
//   the others queued. Without the queue, 20 TCG boots at once on 2 CPUs all missed that timeout (18 of 20 failed).
//   Checked from the runs' logs: every cold boot took a slot, and no more than the slots booted at once. Also the
//   sandbox core, the CID and uid leases and the pool's claim under contention. The same through one private
//   containerd (`ctr run --rm` ×CONCURRENCY).
// - EXECS `ctr task exec`s into one container (the shim is the long-lived process that serves them); the shim's RSS,
//   the VM's host RSS and the guest's used memory (which holds the agent) sampled every EXECS/10. `hull exec` connects
//   to the agent itself and does not go through the monitor, so the containerd path is the one whose memory matters;
//   it also costs no Node start per exec. Over 1000 execs the shim's RssAnon went 18.7 → 26.8 MiB, the VM's host RSS
//   stayed at 89-92 MiB and the guest's used memory levelled off at ~75 MiB. Before: the agent kept every exited exec
//   (RemoveProcess now ends that) and the shim's RSS rose 22 → 51 MiB with a flat live heap: V8 grew its young
//   generation toward 2×16 MiB and kept it (shim/idle-node.ts now caps the semi-spaces at 1 MiB).
// - A guest that floods stdout while the host does not read (hull run, and ctr run): the monitor's, the shim's and
//   the vsock backend's RSS stay bounded (backpressure: shim/sandbox/stdio-relay.ts, agent/output-buffer.ts); a guest
//   that writes a big file into its rootfs over virtio-fs: virtiofsd's RSS stays bounded.
// What a guest can do to the host over vsock is answer the host's own connections (the host never listens for the
// guest; guest-initiated connections find no socket): its replies are the stdout flood's bytes, in ttrpc frames
// capped at 4 MiB (protocol/ttrpc, fuzzed in test/fuzz), so the flood cases cover it.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sandboxDirFor } from '../../shim/containerd/address.js';
import { TAP_PREFIX } from '../../shim/sandbox/network/plan.js';
import { containerdPrerequisites, podOf, POD_ROOT, PrivateContainerd, RUNTIME, until } from '../helpers/containerd.js';
import { existingCgroupDirs, removeTestParents } from '../helpers/host-cgroups.js';
import { hull, hullBin, leaks, makeBundle, mountsUnder, repo, tempDir } from '../helpers/hull.js';
import { growth, mib, MiB, rssOf, RssSampler } from '../helpers/load.js';
import { delay, jsonLines, Pool, vmLeftovers } from '../helpers/pool.js';
import { needRoot, prerequisitesMet } from '../helpers/prerequisites.js';

/** Knobs for development on a shared machine; CI runs the defaults. */
const CONCURRENCY = Number(process.env.HULL_LOAD_CONCURRENCY ?? 20);
const ROUNDS = Number(process.env.HULL_LOAD_ROUNDS ?? 3);
/** A round takes 55-130 s here (queued TCG boots); each may take 300 s before its case fails. */
const ROUNDS_TIMEOUT = Math.max(1, ROUNDS) * 300_000;
const EXECS = Number(process.env.HULL_LOAD_EXECS ?? 1000);
const POOL_SIZE = 3;
/** How far the last third of a long-lived process's RSS samples may sit above the first third (median each). */
const FLAT_BOUND = 10 * MiB;
/** How far a host process's RSS may rise while a guest floods it. */
const FLOOD_BOUND = 64 * MiB;
/** Twice FLOOD_BOUND: what a host process could hoard is what the guest writes while the reader pauses (about 4 MB/s
 *  through TCG here, so ~30 MiB in FLOOD_PAUSE_MS), not the total; more bytes only make the test longer. */
const FLOOD_BYTES = 128 * MiB;
const FLOOD_PAUSE_MS = 8_000;
/** Cold boots at once on this host (vm.max_concurrent_boots; HULL_MAX_CONCURRENT_BOOTS set here is passed on). */
const BOOT_SLOTS = Number(process.env.HULL_MAX_CONCURRENT_BOOTS ?? availableParallelism());
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

/** hull's taps in the host's network namespace: none belong there (they live in the pods' namespaces), so one that
 *  is there and was not before is a leak. (Named namespaces are not hull's: it never makes one.) */
function hostTaps(): string[] {
  return readFileSync('/proc/net/dev', 'utf8').split('\n').slice(2).map((l) => l.split(':')[0]!.trim()).filter((l) => l.startsWith(TAP_PREFIX));
}

const addedNet = (before: string[]): string[] => hostTaps().filter((n) => !before.includes(n));

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

describe.runIf(ready)('load', () => {
  const netBefore = hostTaps();

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
          return hull(['run', '--bundle', bundles[i]!, id], { root, globalArgs: ['--log', log, '--log-format', 'json'] }).then((r) => ({
            ...r,
            pooled: jsonLines(log).some((l) => l.msg === 'pooled VM claimed'),
            boot: coldBoot(jsonLines(log)),
          }));
        }),
      );
      const ms = Date.now() - t0;
      const wrong = results
        .map((r, i) => ({ id: ids[i], code: r.code, stdout: r.stdout, stderr: r.stderr.slice(-300) }))
        .filter((r, i) => r.code !== codeOf(i) || r.stdout !== `line-${r.id}\n`);
      const left = await settle(() => cliLeftovers(ids));
      const cold = results.flatMap((r) => (r.boot ? [r.boot] : []));
      const waited = cold.map((b) => b.waitedMs).sort((a, b) => a - b);
      const booted = cold.map((b) => b.end - b.start).sort((a, b) => a - b);
      timings[`cli round ${round}`] =
        `${ms} ms, ${results.filter((r) => r.pooled).length} pooled / ${CONCURRENCY}, wrong ${wrong.length}, leftovers ${left.length}; ` +
        `cold boots: queued max ${waited.at(-1) ?? 0} ms, slot to agent median ${booted[booted.length >> 1] ?? 0} max ${booted.at(-1) ?? 0} ms, ` +
        `at most ${mostAtOnce(cold)} at once (slots ${BOOT_SLOTS})`;
      expect({ wrong, left }).toEqual({ wrong: [], left: [] });
      // Every VM booted cold went through the queue, and no more than the host's slots booted at once.
      expect(results.filter((r) => !r.pooled && !r.boot).map((r) => r.stderr)).toEqual([]);
      expect(mostAtOnce(cold)).toBeLessThanOrEqual(BOOT_SLOTS);
    }
    expect(await settle(() => addedNet(netBefore))).toEqual([]);
  }, ROUNDS_TIMEOUT);

  describe.runIf(prerequisitesMet('load under containerd', containerdPrerequisites()))('through containerd', () => {
    beforeAll(async () => {
      ctd = await PrivateContainerd.start(NS, { env: { HULL_POOL_ROOT: root } });
      await ctd.importBusybox(IMAGE);
    }, 120_000);

    // The pod root is shared with whatever else runs containerd tests on this host: only our pods' dirs count.
    const ctdLeftovers = async (ids: string[]): Promise<string[]> => [
      ...ownLeftovers(ctd!.leftovers(), ctd!.tmp, ids.map((id) => sandboxDirFor(POD_ROOT, NS, id))),
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
      expect(await settle(() => addedNet(netBefore))).toEqual([]);
    }, ROUNDS_TIMEOUT);

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

/**
 * Of PrivateContainerd.leftovers(), what is ours: mounts under its temp dir or one of `podDirs`, and processes whose
 * whole command line names one of those (leftovers() quotes only 160 characters, and counts every pod's on the host).
 */
function ownLeftovers(found: string[], tmp: string, podDirs: string[]): string[] {
  const names = (s: string): boolean => s.includes(tmp) || podDirs.some((d) => s.includes(`${d}/`) || s.endsWith(d));
  const ours = found.filter((l) => l.startsWith('mount ') && names(l));
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue; // gone
    }
    if (found.some((l) => l.startsWith(`process ${pid}:`)) && names(cmd)) ours.push(`process ${pid}: ${cmd.slice(0, 160)}`);
  }
  return ours;
}

/** A cold boot in a `hull run` log: when it took its boot slot (after waiting `waitedMs`) and when its agent answered. */
function coldBoot(lines: Record<string, unknown>[]): { start: number; end: number; waitedMs: number } | undefined {
  const taken = lines.find((l) => l.msg === 'boot slot taken');
  const ready = lines.find((l) => l.msg === 'agent ready');
  if (!taken || !ready) return undefined;
  return { start: Date.parse(String(taken.time)), end: Date.parse(String(ready.time)), waitedMs: Number(taken.waitedMs) };
}

/** The most intervals that overlap at one time (one that ends when another starts does not overlap it). */
function mostAtOnce(spans: { start: number; end: number }[]): number {
  const events = spans.flatMap((s) => [{ at: s.start, d: 1 }, { at: s.end, d: -1 }]).sort((a, b) => a.at - b.at || a.d - b.d);
  let now = 0;
  let most = 0;
  for (const e of events) most = Math.max(most, (now += e.d));
  return most;
}

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
