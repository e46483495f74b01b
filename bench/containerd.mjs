#!/usr/bin/env node
// hull through containerd (a script, not a test). On a private containerd started here (own root, state, socket;
// bin/ first on PATH so it finds containerd-shim-hull-v2), with one busybox image built here (no registry):
//   - wall time of `ctr run --rm IMAGE ID true` through hull's shim and through runc's (io.containerd.runc.v2), next
//     to `hull run --bundle` of the same busybox rootfs, N interleaved runs each (after one untimed warm-up each);
//   - host memory (PSS) of the containerd-shim-hull-v2 daemon serving one pod with an idle `sleep` task, next to the
//     runc shim's for the same task, with the pod's QEMU, virtiofsd and vsock backend for context.
//   usage: npm run bench:containerd [-- --runs N]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildImage, fmt, makeBundle, sleep, startContainerd, stats, timed as timedWith, unmountUnder } from './lib.mjs';
import { processTree } from './processes.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const hull = path.join(repo, 'bin', 'hull');
const runsArg = process.argv.indexOf('--runs');
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 5;
const NS = 'hullbench';
const IMAGE = 'docker.io/hull/bench-busybox:latest';
const HULL_RUNTIME = 'io.containerd.hull.v2';
const RUNC_RUNTIME = 'io.containerd.runc.v2';
const POD_ROOT = process.env.HULL_CONTAINERD_ROOT || '/run/hull/containerd';
const SHIM_TARGET_MIB = 40;
const RATIO_TARGET = 1.1;

for (const [cmd, why] of [['containerd', 'containerd'], ['ctr', 'containerd'], ['containerd-shim-runc-v2', 'containerd'], ['runc', 'runc']]) {
  if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) {
    process.stderr.write(`bench: ${cmd} not found (apt-get install ${why})\n`);
    process.exit(1);
  }
}

delete process.env.HULL_POOL_DIR; // it would make every root's pool one directory (docs/pool.md)
const work = mkdtempSync(path.join(os.tmpdir(), 'hull-bench-ctd-'));
const timed = (command, args) => timedWith(command, args, { timeout: 120_000 });
let containerd; // the private containerd (bench/lib.mjs startContainerd), once started
const ctrArgs = (args) => containerd.ctrArgs(args);
const ctr = (args) => containerd.ctr(args);

// --- the busybox rootfs, as a bundle for `hull run` and as a one-layer OCI image for containerd ------------------
const bundle = path.join(work, 'bundle');
makeBundle(repo, bundle, 'true');

async function cleanup() {
  try {
    await containerd?.stop();
  } finally {
    unmountUnder(work);
    rmSync(work, { recursive: true, force: true });
    removeNamespaceCgroups();
  }
}

/** The cgroup `/<NS>` that ctr's containers were put under: runc removes its containers' cgroups, not that parent. */
function removeNamespaceCgroups() {
  const base = '/sys/fs/cgroup';
  // A v1 or hybrid host has one mount per hierarchy under base; a v2 host has base itself.
  for (const hierarchy of ['', ...readdirSync(base)]) {
    const dir = path.join(base, hierarchy, NS);
    try {
      rmdirSync(dir);
    } catch (err) {
      if (err.code !== 'ENOENT' && err.code !== 'ENOTDIR') process.stderr.write(`bench: cannot remove ${dir}: ${err.message}\n`);
    }
  }
}

// --- memory -------------------------------------------------------------------------------------------------------
/** PSS and private (unshared) memory of one process, MiB, from smaps_rollup. */
function memoryOf(pid) {
  try {
    const fields = Object.fromEntries(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').split('\n')
      .map((l) => /^(\w+):\s+(\d+) kB/.exec(l)).filter(Boolean).map((m) => [m[1], Number(m[2]) / 1024]));
    return { pss: fields.Pss ?? 0, private: (fields.Private_Clean ?? 0) + (fields.Private_Dirty ?? 0), rss: fields.Rss ?? 0 };
  } catch {
    return { pss: 0, private: 0, rss: 0 };
  }
}
function processes(test) {
  return readdirSync('/proc').filter((e) => /^\d+$/.test(e)).flatMap((pid) => {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      return test(cmd) ? [{ pid: Number(pid), cmd }] : [];
    } catch {
      return [];
    }
  });
}

/** The pod directory whose pod.json names this container (the shim writes it once the VM is up). */
function podDirOf(id) {
  for (const d of readdirSync(POD_ROOT)) {
    try {
      const rec = JSON.parse(readFileSync(path.join(POD_ROOT, d, 'pod.json'), 'utf8'));
      if (rec.vm?.vmm && rec.containers?.some((c) => c.id === id)) return { dir: path.join(POD_ROOT, d), shimPid: rec.shimPid };
    } catch {
      // no record yet
    }
  }
  return undefined;
}

async function idleMemory() {
  const started = ctr(['run', '-d', '--runtime', HULL_RUNTIME, IMAGE, 'idle-hull', 'sleep', '1000']);
  if (started.status !== 0) throw new Error(`ctr run -d (hull) failed: ${started.stderr}`);
  const runc = ctr(['run', '-d', '--runtime', RUNC_RUNTIME, IMAGE, 'idle-runc', 'sleep', '1000']);
  if (runc.status !== 0) throw new Error(`ctr run -d (runc) failed: ${runc.stderr}`);
  let pod;
  for (let waited = 0; !(pod = podDirOf('idle-hull')); waited += 200) {
    if (waited > 30_000) throw new Error('the hull pod record did not appear');
    await sleep(200);
  }
  await sleep(3000); // let the shim's start-up garbage be collected and the guest settle
  const rows = [{ name: 'containerd-shim-hull-v2', pid: pod.shimPid, ...memoryOf(pod.shimPid) }];
  for (const { pid, cmd } of processTree(pod.shimPid).filter((p) => p.pid !== pod.shimPid)) {
    const name = cmd.includes('qemu-system') ? 'qemu' : cmd.includes('virtiofsd') ? 'virtiofsd' : cmd.includes('vsock-backend') ? 'vsock-backend' : cmd.slice(0, 30);
    rows.push({ name, pid, ...memoryOf(pid) });
  }
  const runcShim = processes((cmd) => cmd.startsWith('/usr/bin/containerd-shim-runc-v2 ') && cmd.includes(containerd.sock) && cmd.includes('-id idle-runc'))[0];
  const runcRow = runcShim ? { name: 'containerd-shim-runc-v2', pid: runcShim.pid, ...memoryOf(runcShim.pid) } : undefined;
  containerd.removeEverything();
  return { rows, runcRow };
}

// --- the run ------------------------------------------------------------------------------------------------------
try {
  await buildImage({ rootfs: path.join(bundle, 'rootfs'), out: path.join(work, 'image.tar'), name: IMAGE, scratch: work });
  // bin/ first on PATH, so containerd finds this checkout's containerd-shim-hull-v2. Cold starts only, as `hull run`
  // below has them: the shims take VMs from the pool of HULL_POOL_ROOT (default /run/hull, which a `hull pool serve`
  // may serve), so it names a root no pool serves (bench/run.mjs has the pooled figures).
  const env = { ...process.env, PATH: `${path.join(repo, 'bin')}:${process.env.PATH}`, HULL_POOL_ROOT: path.join(work, 'hull-root') };
  containerd = await startContainerd({ dir: work, namespace: NS, env });
  const imported = ctr(['images', 'import', path.join(work, 'image.tar')]);
  if (imported.status !== 0) throw new Error(`ctr images import failed: ${imported.stderr}`);

  const hullRoot = path.join(work, 'hull-root');
  const variants = [
    ['ctr run --rm … true (hull shim)', (id) => timed('ctr', ctrArgs(['run', '--rm', '--runtime', HULL_RUNTIME, IMAGE, id, 'true']))],
    ['ctr run --rm … true (runc shim)', (id) => timed('ctr', ctrArgs(['run', '--rm', '--runtime', RUNC_RUNTIME, IMAGE, id, 'true']))],
    ['hull run --bundle … true', (id) => timed(hull, ['--root', hullRoot, 'run', '--bundle', bundle, id])],
  ];
  const times = variants.map(() => []);
  for (let i = -1; i < RUNS; i++) {
    variants.forEach(([, run], v) => {
      const ms = run(`bench-${v}-${i < 0 ? 'warm' : i}`);
      if (i >= 0) times[v].push(ms); // run -1 warms caches (image snapshot, binaries, guest image) and is not counted
    });
  }
  const results = variants.map(([name], v) => [name, stats(times[v])]);
  const hullRun = results[2][1];
  console.log(`\ncontainerd 1.6 (private instance), ${RUNS} interleaved runs each after one warm-up (${os.cpus().length} cores)`);
  console.log(`${'what'.padEnd(36)}${'min'.padStart(10)}${'median'.padStart(10)}${'max'.padStart(10)}${'vs hull run'.padStart(13)}`);
  for (const [name, s] of results) {
    console.log(`${name.padEnd(36)}${fmt(s.min).padStart(10)}${fmt(s.median).padStart(10)}${fmt(s.max).padStart(10)}${(s.median / hullRun.median).toFixed(2).padStart(12)}x`);
  }
  const ratio = results[0][1].median / hullRun.median;
  console.log(`shim over hull run = ${ratio.toFixed(2)} (target ≤ ${RATIO_TARGET.toFixed(2)}; ` +
    `shim − hull run = ${(results[0][1].median - hullRun.median).toFixed(0)} ms, runc shim total ${results[1][1].median.toFixed(0)} ms)`);

  const { rows, runcRow } = await idleMemory();
  console.log('\nhost memory, one pod with an idle `sleep` task (MiB; PSS shares pages with other processes, private does not)');
  console.log(`  ${'process'.padEnd(36)}${'PSS'.padStart(8)}${'private'.padStart(9)}${'RSS'.padStart(8)}`);
  for (const r of [...rows, ...(runcRow ? [{ ...runcRow, name: `${runcRow.name} (baseline)` }] : [])]) {
    console.log(`  ${r.name.padEnd(36)}${r.pss.toFixed(1).padStart(8)}${r.private.toFixed(1).padStart(9)}${r.rss.toFixed(1).padStart(8)}`);
  }
  const shim = rows[0];
  console.log(`  shim PSS ${shim.pss.toFixed(1)} MiB (target ≤ ${SHIM_TARGET_MIB}); pod total ${rows.reduce((s, r) => s + r.pss, 0).toFixed(1)} MiB`);
} catch (err) {
  process.stderr.write(`bench: ${err.message}\n`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
