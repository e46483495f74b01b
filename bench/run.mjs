#!/usr/bin/env node
// hull's start-time and memory benchmark (a script, not a test). In one run, on one machine, interleaved round by
// round (each round runs every figure once, in this order, so drift hits all of them alike):
//   floor        the same QEMU, kernel, flags and accelerator as hull (read back from a VM hull booted: bench/floor.mjs)
//                booting a trivial initramfs that powers off at once: QEMU spawn to exit
//   runc, runsc  `runc run` / `runsc --network=none run` of the same busybox bundle (`true`); a missing one is a row
//                that says so
//   hull cold    `hull --root R run --bundle B ID` of `true`, R served by no pool: hull boots a VM
//   hull pooled  the same under a root served by `hull pool serve --size 2` (docs/pool.md), once the pool is full
//   ctr cold / ctr pooled
//                `ctr run --rm --runtime io.containerd.hull.v2 IMAGE ID true` on a private containerd whose shims take
//                VMs from no pool (HULL_POOL_ROOT names a root no pool serves) / from the pool above (HULL_POOL_ROOT)
//   CRI cold / CRI pooled
//                RunPodSandbox + CreateContainer (`true`) + StartContainer through the CRI plugin of those two
//                containerds (runtime handler `hull`), on a real pod network (bench/cri.mjs: CNI bridge + host-local,
//                a veth in each pod's namespace; a pooled VM gets its NIC's tap moved in, docs/pool.md).
// Before every timed run the bench waits (untimed) until the pool is full and boots nothing, so no pool boot overlaps
// a timed run — except the replacement the pool starts as soon as a pooled run claims its VM, which is part of the
// pooled figures as it is of real use. Every pooled run is checked in the log (hull's --log; containerd's stderr,
// which carries the shims' log lines) for "pooled VM claimed"; a run that booted cold instead is reported as such and
// kept out of the pooled figure. ctr and CRI figures come after one untimed warm-up each (image unpack, first shim).
// Then: a sustained creation rate (`hull run … true` back to back for --rate-seconds under a pool of --rate-pool,
// containers/s and how many were pooled vs cold), and, with the pool stopped (its VMs would share pages and lower the
// PSS), host memory (PSS) of one idle sandbox and its guest's boot phases (booted with hull.debug=1: /init and the
// agent print their start-up times on the console), as before.
// Last, the density run (bench/density.mjs): N idle sandboxes started one after another, host memory in use and PSS per
// sandbox at 1, 2, 4, … and N of them, and the projection to 100.
//   usage: npm run bench [-- --runs N] [--rate-seconds S] [--rate-pool N] [--density N] [--json] [--logs DIR]
//   --runs          rounds [5]
//   --rate-seconds  length of the sustained-rate run [60]; 0 skips it
//   --rate-pool     pool size during the sustained-rate run [2]
//   --density       idle sandboxes of the density run [8]; 0 skips it
//   --json          the results as JSON on stdout (the table goes to stderr; `npm run -s bench -- --json` keeps npm's
//                   banner off stdout)
//   --logs          keep the logs (every hull run's, the pool's, the containerds' with their shims' lines) in DIR
// HULL_GUEST_DIR, HULL_TCG_CPU, HULL_ACCEL… apply to the floor as they do to hull (the floor's argv is hull's).
// Everything is removed at the end, on failure and on Ctrl-C too (a second Ctrl-C leaves at once): the pool (SIGTERM:
// it powers its VMs off), the containerds with their pods, containers and shims, sandboxes a cut-short run left, the
// temporary directory.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { bridgeCni, CRI_NAMESPACE, containerConfig, criConfig, loadCri, podConfig, removeBridgeCni } from './cri.mjs';
import { buildFloorInitramfs, floorArgv, floorRun, hullQemuArgv } from './floor.mjs';
import { buildImage, fmt, interruption, makeBundle, startContainerd, stats, timed, unmountUnder } from './lib.mjs';
import { logSince, poolOutcome, startPool } from './pool.mjs';
import { densityRun, printDensity } from './density.mjs';
import { processTree, pss } from './processes.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const hull = path.join(repo, 'bin', 'hull');
const POOL_SIZE = 2;
const RUN_TIMEOUT = 180_000;
const NS = 'hullbench';
const IMAGE = 'docker.io/hull/bench-busybox:latest';
const PAUSE = 'docker.io/hull/bench-pause:latest';
const HULL_RUNTIME = 'io.containerd.hull.v2';
const TARGETS = { pooledRun: 1000 * 0.6, pooledRunVsFloor: 0.45, pooledRunVsRunsc: 2, pooledCtr: 1000 * 1.0 };

const usage = 'usage: npm run bench [-- --runs N] [--rate-seconds S] [--rate-pool N] [--density N] [--json] [--logs DIR]';
let opts;
try {
  opts = parseArgs({
    options: {
      runs: { type: 'string', default: '5' },
      'rate-seconds': { type: 'string', default: '60' },
      'rate-pool': { type: 'string', default: '2' },
      density: { type: 'string', default: '8' },
      json: { type: 'boolean', default: false },
      logs: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values;
} catch (err) {
  process.stderr.write(`bench: ${err.message}\n${usage}\n`);
  process.exit(2);
}
if (opts.help) {
  process.stdout.write(`${usage}\n(see the comment at the top of bench/run.mjs)\n`);
  process.exit(0);
}
const RUNS = Number(opts.runs);
const RATE_SECONDS = Number(opts['rate-seconds']);
const RATE_POOL = Number(opts['rate-pool']);
const DENSITY = Number(opts.density);
if (![RUNS, RATE_SECONDS, RATE_POOL, DENSITY].every((n) => Number.isInteger(n) && n >= 0) || RUNS < 1) {
  process.stderr.write(`${usage}\n`);
  process.exit(2);
}
/** The human report: stdout, or stderr when stdout carries the JSON. */
const out = (line = '') => (opts.json ? process.stderr : process.stdout).write(`${line}\n`);
const log = (line) => process.stderr.write(`bench: ${line}\n`);
const commandExists = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

// --- interruption: a flag checked between runs, so clean-up always runs in the finally below ----------------------
const { check: checkInterrupted, signal: interruptedBy } = interruption(log);

// HULL_POOL_DIR would make every root's pool the same directory: the cold roots' sandboxes could take pooled VMs.
delete process.env.HULL_POOL_DIR;
const work = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'hull-bench-')));
const coldRoot = path.join(work, 'root'); // no pool serves it
const poolRoot = path.join(work, 'pool-root'); // the pool's
const noPoolRoot = path.join(work, 'no-pool-root'); // the cold containerd's HULL_POOL_ROOT: no pool serves it
const logs = path.join(work, 'logs');
mkdirSync(logs, { recursive: true });
const bundle = path.join(work, 'bundle');
makeBundle(repo, bundle, 'true');

let pool; // bench/pool.mjs startPool, while it runs
const containerds = {}; // cold, pooled: { ctd, logFile, cri }

// --- the figures ---------------------------------------------------------------------------------------------------
/**
 * hull run of `true`; its phases (ms from the spawn of the CLI, by the wall clock of its log lines; `logging`: its
 * first line, i.e. Node and the CLI loaded) and whether it took a pooled VM, from its log.
 */
function hullRun(root, id) {
  const logFile = path.join(logs, `${id}.log`);
  const spawned = Date.now();
  const ms = timed(hull, ['--root', root, '--log', logFile, '--log-format', 'json', 'run', '--bundle', bundle, id], { timeout: RUN_TIMEOUT });
  const text = readFileSync(logFile, 'utf8');
  const records = text.trim().split('\n').map((line) => JSON.parse(line));
  const at = (msg) => records.find((r) => r.msg === msg)?.time;
  const phase = (msg) => (at(msg) ? Date.parse(at(msg)) - spawned : NaN);
  return {
    ms,
    ...poolOutcome(text),
    phases: {
      logging: Date.parse(records[0].time) - spawned, vmm: phase('vmm started'), agent: phase('agent ready'),
      claimed: phase('pooled VM claimed'), claimMs: records.find((r) => r.msg === 'pooled VM claimed')?.ms ?? NaN,
      started: phase('container started'), exited: phase('container exited'),
    },
  };
}

/** What the containerd's log gained while `fn` ran, as a pool outcome (the shim logs after the run's own lines). */
async function withShimOutcome(which, fn) {
  const { logFile } = containerds[which];
  const end = statSync(logFile, { throwIfNoEntry: false })?.size ?? 0;
  const ms = await fn();
  let outcome = poolOutcome('');
  for (let waited = 0; waited <= 3000; waited += 250) {
    outcome = poolOutcome(logSince(logFile, end).text); // containerd copies the shim's FIFO asynchronously
    if (outcome.pooled !== undefined) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  return { ms, ...outcome };
}

const ctrRun = (which, id) =>
  withShimOutcome(which, () =>
    timed('ctr', containerds[which].ctd.ctrArgs(['run', '--rm', '--runtime', HULL_RUNTIME, IMAGE, id, 'true']), { timeout: RUN_TIMEOUT }));

async function criRun(which, id) {
  const { cri } = containerds[which];
  const logDir = path.join(work, 'pods', id);
  mkdirSync(logDir, { recursive: true });
  const pod = podConfig(id, logDir);
  let podId;
  try {
    return await withShimOutcome(which, async () => {
      const started = process.hrtime.bigint();
      podId = await cri.runPodSandbox(pod);
      const containerId = await cri.createContainer(podId, containerConfig('c', IMAGE, ['true']), pod);
      await cri.startContainer(containerId);
      return Number(process.hrtime.bigint() - started) / 1e6;
    });
  } finally {
    if (podId) {
      await cri.stopPodSandbox(podId).catch((err) => log(`CRI clean-up: ${err.message}`));
      await cri.removePodSandbox(podId).catch((err) => log(`CRI clean-up: ${err.message}`));
    }
  }
}

const figures = [
  { key: 'floor', label: 'floor: QEMU+kernel+poweroff' },
  { key: 'runc', label: 'runc run … true', run: (id) => ({ ms: timed('runc', ['--root', path.join(work, 'runc'), 'run', '--bundle', bundle, id], { timeout: RUN_TIMEOUT }) }) },
  {
    key: 'runsc',
    label: 'runsc run … true',
    run: (id) => ({ ms: timed('runsc', ['--root', path.join(work, 'runsc'), '--network=none', 'run', '--bundle', bundle, id], { timeout: RUN_TIMEOUT }) }),
  },
  { key: 'hullCold', label: 'hull run … true (cold)', expect: 'cold', run: (id) => hullRun(coldRoot, id) },
  { key: 'hullPooled', label: 'hull run … true (pooled)', expect: 'pooled', run: (id) => hullRun(poolRoot, id) },
  { key: 'ctrCold', label: 'ctr run --rm … true (cold)', expect: 'cold', warm: true, run: (id) => ctrRun('cold', id) },
  { key: 'ctrPooled', label: 'ctr run --rm … true (pooled)', expect: 'pooled', warm: true, run: (id) => ctrRun('pooled', id) },
  { key: 'criCold', label: 'CRI pod+create+start (cold, CNI bridge)', expect: 'cold', warm: true, run: (id) => criRun('cold', id) },
  { key: 'criPooled', label: 'CRI pod+create+start (pooled, CNI bridge)', expect: 'pooled', warm: true, run: (id) => criRun('pooled', id) },
];
const figure = Object.fromEntries(figures.map((f) => [f.key, f]));
for (const f of figures) Object.assign(f, { available: true, times: [], fellBack: [], unverified: [], failures: [], phases: [] });
const unavailable = (keys, why) => keys.forEach((k) => figure[k].available === true && (figure[k].available = why));

/** One figure's run in round `round` (negative: warm-up, not counted). */
async function measure(f, round) {
  const id = `${f.key.toLowerCase()}-${round < 0 ? 'warm' : round}`;
  let r;
  try {
    r = await f.run(id);
  } catch (err) {
    const message = err.message.split('\n').slice(0, 3).join(' ').slice(0, 300);
    if (round < 0) f.available = `warm-up failed: ${message}`;
    else f.failures.push(message);
    log(`${f.label}: ${round < 0 ? 'warm-up ' : ''}failed: ${message}`);
    return;
  }
  if (round < 0) return;
  if (f.expect === 'pooled' && r.pooled !== true) {
    (r.pooled === false ? f.fellBack : f.unverified).push({ ms: r.ms, why: r.why });
    log(`${f.label}: run ${round} did not take a pooled VM (${r.why}): ${fmt(r.ms)}, not in the pooled figure`);
    return;
  }
  if (f.expect === 'cold' && r.pooled === true) log(`${f.label}: run ${round} took a pooled VM (unexpected)`);
  f.times.push(r.ms);
  if (r.phases) f.phases.push({ ms: r.ms, ...r.phases });
}

// --- the sustained creation rate ------------------------------------------------------------------------------------
async function sustainedRate() {
  if (pool.size !== RATE_POOL) {
    await pool.stop();
    pool = startPool({ hull, root: poolRoot, size: RATE_POOL, logFile: path.join(logs, 'pool-rate.log') });
  }
  await pool.waitFull();
  log(`sustained rate: hull run … true back to back for ${RATE_SECONDS} s, pool of ${RATE_POOL}`);
  const runs = [];
  const started = Date.now();
  while (Date.now() - started < RATE_SECONDS * 1000) {
    try {
      runs.push(hullRun(poolRoot, `rate-${runs.length}`));
    } catch (err) {
      runs.push({ failed: err.message.split('\n')[0] });
    }
    await checkInterrupted();
  }
  const seconds = (Date.now() - started) / 1000;
  const ok = runs.filter((r) => !r.failed);
  const pooled = ok.filter((r) => r.pooled === true);
  const cold = ok.filter((r) => r.pooled !== true);
  const whys = [...new Set(cold.map((r) => r.why))];
  return {
    seconds, poolSize: RATE_POOL, containers: ok.length, perSecond: ok.length / seconds, pooled: pooled.length, cold: cold.length,
    failed: runs.length - ok.length, coldWhy: whys, pooledMs: pooled.length ? stats(pooled.map((r) => r.ms)) : undefined,
    coldMs: cold.length ? stats(cold.map((r) => r.ms)) : undefined,
  };
}

// --- memory: PSS of every hull-owned process of one idle sandbox -------------------------------------------------
/** QEMU's PSS by kind of mapping: guest RAM (the memfd), anonymous (mostly the TCG code buffer), files (vmlinux…). */
function qemuSplit(pid) {
  const split = { 'guest RAM': 0, anonymous: 0, files: 0 };
  let kind = 'anonymous';
  try {
    for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
      const m = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
      if (m) kind = m[1].startsWith('/memfd:') ? 'guest RAM' : m[1].startsWith('/') ? 'files' : 'anonymous';
      else if (line.startsWith('Pss:')) split[kind] += Number(line.split(/\s+/)[1]) / 1024;
    }
  } catch {
    // gone
  }
  return split;
}

/** The guest's boot phases from a hull.debug=1 console: /init's step lines and the agent's start-up line. */
function guestPhases(consoleText) {
  const at = (what) => Number(new RegExp(`hull-init: ${what} at ([\\d.]+)s`).exec(consoleText)?.[1]);
  const startup = /\{[^\n]*"agent start-up"[^\n]*\}/.exec(consoleText);
  const agent = startup ? JSON.parse(startup[0]) : undefined;
  return {
    init: at('stage 1 /init start') || at('/init start'),
    agentExec: at('starting agent'),
    nodeStarted: agent?.processStartUptime,
    listening: agent?.uptime,
    marks: agent?.ms,
  };
}

/** A copy of the guest dir (symlinks) whose command line adds hull.debug=1, so the console carries the phases. */
function debugGuestDir(guest) {
  const dir = path.join(work, 'guest-debug');
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(guest)) {
    if (f !== 'manifest.json') symlinkSync(realpathSync(path.join(guest, f)), path.join(dir, f));
  }
  const manifest = JSON.parse(readFileSync(path.join(guest, 'manifest.json'), 'utf8'));
  manifest.kernelCmdline += ' hull.debug=1';
  writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
  return dir;
}

async function idleSandbox(guest) {
  const idle = path.join(work, 'idle');
  makeBundle(repo, idle, 'sleep', '1000');
  const env = { ...process.env, HULL_GUEST_DIR: debugGuestDir(guest) };
  execFileSync(hull, ['--root', coldRoot, 'create', '--bundle', idle, 'idle'], { stdio: 'ignore', env });
  execFileSync(hull, ['--root', coldRoot, 'start', 'idle'], { env });
  // Idle means after the guest's one-shot page-cache drop (guest-image/init hull.dropcaches, 10 s of guest uptime)
  // and the free page reporting that follows it (docs/density.md).
  await new Promise((r) => setTimeout(r, 12000));
  const monitorPid = JSON.parse(readFileSync(path.join(coldRoot, 'idle', 'state.json'), 'utf8')).pid;
  // QEMU and the helpers are the monitor's children; their command lines name the socket dir, not the root.
  const rows = processTree(monitorPid).map(({ pid, cmd }) => {
    const name = cmd.includes('qemu-system') ? 'qemu' : cmd.includes('virtiofsd') ? 'virtiofsd' : cmd.includes('vsock-backend') ? 'vsock-backend' : 'hull monitor';
    return { name, pid, pss: pss(pid), ...(name === 'qemu' ? { split: qemuSplit(pid) } : {}) };
  });
  let phases;
  try {
    phases = guestPhases(readFileSync(path.join(coldRoot, 'idle', 'console.log'), 'utf8'));
  } catch {
    phases = undefined;
  }
  execFileSync(hull, ['--root', coldRoot, 'delete', '--force', 'idle']);
  return { rows, phases };
}

// --- set-up of the containerds (CRI on; bin/ first on PATH so they run this checkout's containerd-shim-hull-v2) ----
async function startContainerds() {
  const missing = ['containerd', 'ctr'].filter((c) => !commandExists(c));
  if (missing.length) return unavailable(['ctrCold', 'ctrPooled', 'criCold', 'criPooled'], `${missing.join(', ')} not installed`);
  const images = [
    { name: IMAGE, out: path.join(work, 'image.tar'), scratch: path.join(work, 'image') },
    { name: PAUSE, out: path.join(work, 'pause.tar'), scratch: path.join(work, 'pause'), entrypoint: ['sh', '-c', 'trap "exit 0" TERM INT; while :; do sleep 1; done'] },
  ];
  for (const i of images) await buildImage({ rootfs: path.join(bundle, 'rootfs'), ...i });
  const criLib = await loadCri(repo);
  const cni = bridgeCni(path.join(work, 'cni'));
  const criMissing = criLib.missing ?? cni.missing;
  if (criMissing) unavailable(['criCold', 'criPooled'], criMissing);
  for (const [which, poolRootEnv] of [['cold', noPoolRoot], ['pooled', poolRoot]]) {
    const dir = path.join(work, `ctd-${which}`);
    const logFile = path.join(logs, `containerd-${which}.log`);
    const ctd = await startContainerd({
      dir,
      namespace: NS,
      detached: true,
      cri: !criMissing,
      ...(criMissing ? {} : { extraConfig: criConfig({ dir, pauseImage: PAUSE, cni }) }),
      logFile,
      env: { ...process.env, PATH: `${path.join(repo, 'bin')}:${process.env.PATH}`, HULL_POOL_ROOT: poolRootEnv },
    });
    containerds[which] = { ctd, logFile };
    for (const ns of [NS, ...(criMissing ? [] : [CRI_NAMESPACE])]) {
      for (const i of images) {
        const imported = spawnSync('ctr', ['-a', ctd.sock, '-n', ns, 'images', 'import', i.out], { encoding: 'utf8' });
        if (imported.status !== 0) throw new Error(`ctr images import ${i.name} (${ns}) failed: ${imported.stderr}`);
      }
    }
    if (!criMissing) {
      const cri = criLib.connect(ctd.sock);
      containerds[which].cri = cri;
      try {
        await cri.version();
        for (let waited = 0; !(await cri.imageStatus(IMAGE)) || !(await cri.imageStatus(PAUSE)); waited += 200) {
          if (waited > 20_000) throw new Error('the CRI plugin did not list the imported images');
          await new Promise((r) => setTimeout(r, 200));
        }
      } catch (err) {
        unavailable(['criCold', 'criPooled'], `CRI plugin: ${err.message.split('\n')[0]}`);
      }
    }
  }
}

async function stopContainerds() {
  for (const [which, c] of Object.entries(containerds)) {
    try {
      if (c.cri) {
        for (const p of (await c.cri.listPodSandbox().catch(() => [])) ?? []) {
          await c.cri.stopPodSandbox(p.id).catch(() => undefined);
          await c.cri.removePodSandbox(p.id).catch(() => undefined);
        }
        c.cri.close();
      }
      await c.ctd.stop();
    } catch (err) {
      log(`clean-up: containerd (${which}): ${err.message}`);
    }
    delete containerds[which];
  }
}

async function cleanup() {
  await stopContainerds();
  removeBridgeCni();
  // A run cut short (Ctrl-C, timeout) can leave its sandbox or container: delete whatever the roots still list.
  for (const root of [coldRoot, poolRoot]) {
    if (!existsSync(root)) continue;
    const listed = spawnSync(hull, ['--root', root, 'list', '-q'], { encoding: 'utf8' });
    for (const id of listed.stdout?.split('\n').filter(Boolean) ?? []) {
      spawnSync(hull, ['--root', root, 'delete', '--force', id], { stdio: 'ignore', timeout: 60_000 });
    }
  }
  for (const [cmd, args] of [['runc', ['--root', path.join(work, 'runc')]], ['runsc', ['--root', path.join(work, 'runsc')]]]) {
    if (!existsSync(args[1])) continue;
    const listed = spawnSync(cmd, [...args, 'list', '-q'], { encoding: 'utf8' });
    for (const id of listed.stdout?.split('\n').filter(Boolean) ?? []) spawnSync(cmd, [...args, 'delete', '--force', id], { stdio: 'ignore' });
  }
  try {
    await pool?.stop();
  } catch (err) {
    log(`clean-up: pool: ${err.message}`);
  }
  if (opts.logs) {
    try {
      cpSync(logs, opts.logs, { recursive: true });
      log(`logs kept in ${opts.logs}`);
    } catch (err) {
      log(`clean-up: keeping the logs: ${err.message}`);
    }
  }
  unmountUnder(work);
  rmSync(work, { recursive: true, force: true });
}

// --- the report ----------------------------------------------------------------------------------------------------
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : undefined);
const x = (r) => (r === undefined ? '—' : r >= 10 ? `${r.toFixed(0)}x` : `${r.toFixed(2)}x`);

function summarize() {
  const medianOf = (k) => (figure[k].times.length ? stats(figure[k].times).median : undefined);
  const base = { floor: medianOf('floor'), runc: medianOf('runc'), runsc: medianOf('runsc') };
  return figures.map((f) => {
    const s = f.times.length ? stats(f.times) : undefined;
    const status =
      f.available !== true ? f.available
        : s ? 'ok'
          : f.fellBack.length ? `no pooled run: ${f.fellBack.length} booted cold`
            : `failed: ${f.failures[0] ?? 'no run counted'}`;
    return {
      key: f.key, label: f.label, status, n: f.times.length, times: f.times, ...(s ?? {}),
      vsFloor: ratio(s?.median, base.floor), vsRunc: ratio(s?.median, base.runc), vsRunsc: ratio(s?.median, base.runsc),
      ...(f.expect === 'pooled' ? { bootedCold: f.fellBack, unverified: f.unverified } : {}),
      ...(f.failures.length ? { failures: f.failures } : {}),
    };
  });
}

function printTable(rows, floor) {
  out(`\nstart time, ${RUNS} interleaved round${RUNS > 1 ? 's' : ''} (${os.cpus().length} cores; floor and hull: -accel ${floor?.accel ?? '?'}, -cpu ${floor?.cpu ?? '?'})`);
  out(`${'what'.padEnd(40)}${'n'.padStart(3)}${'min'.padStart(9)}${'median'.padStart(9)}${'max'.padStart(9)}${'/floor'.padStart(9)}${'/runc'.padStart(9)}${'/runsc'.padStart(9)}`);
  for (const r of rows) {
    const t = (v) => fmt(v).padStart(9);
    if (r.n === 0) out(`${r.label.padEnd(40)}  ${r.key === 'runsc' || r.key === 'runc' ? `${r.key}: ${r.status}` : r.status}`);
    else out(`${r.label.padEnd(40)}${String(r.n).padStart(3)}${t(r.min)}${t(r.median)}${t(r.max)}${x(r.vsFloor).padStart(9)}${x(r.vsRunc).padStart(9)}${x(r.vsRunsc).padStart(9)}`);
    for (const c of r.bootedCold ?? []) out(`${''.padEnd(6)}↳ a run booted cold instead (${c.why}): ${fmt(c.ms)}, not counted above`);
    for (const c of r.unverified ?? []) out(`${''.padEnd(6)}↳ a run whose log shows no claim (${c.why}): ${fmt(c.ms)}, not counted above`);
    if (r.failures?.length && r.n > 0) out(`${''.padEnd(6)}↳ ${r.failures.length} run(s) failed: ${r.failures[0]}`);
  }
}

// --- the run ------------------------------------------------------------------------------------------------------
const report = { machine: { cores: os.cpus().length, loadBefore: os.loadavg() }, runs: RUNS };
try {
  // The floor: hull's own QEMU command line (bench/floor.mjs), from a VM booted under the cold root (no pool yet).
  let floor;
  try {
    log("booting one hull VM to read hull's QEMU command line for the floor");
    const hullArgv = hullQemuArgv({ hull, root: coldRoot, bundle });
    floor = floorArgv(hullArgv, buildFloorInitramfs(work, hullArgv[hullArgv.indexOf('-append') + 1]));
    figure.floor.run = () => ({ ms: floorRun(floor.argv) });
    report.floor = { argv: floor.argv, dropped: floor.dropped, accel: floor.accel, cpu: floor.cpu };
  } catch (err) {
    figure.floor.available = `no floor: ${err.message.split('\n')[0]}`;
  }
  for (const b of ['runc', 'runsc']) if (!commandExists(b)) figure[b].available = 'not installed';
  await checkInterrupted();

  log(`starting hull pool serve --size ${POOL_SIZE} on ${poolRoot}`);
  pool = startPool({ hull, root: poolRoot, size: POOL_SIZE, logFile: path.join(logs, 'pool.log') });
  log('starting the private containerds (cold: HULL_POOL_ROOT served by no pool; pooled: the pool\'s root)');
  await startContainerds();
  await checkInterrupted();

  for (let round = -1; round < RUNS; round++) {
    log(round < 0 ? 'warm-up (ctr, CRI)' : `round ${round + 1}/${RUNS}`);
    for (const f of figures) {
      if (f.available !== true || (round < 0 && !f.warm)) continue;
      await checkInterrupted();
      await pool.waitFull(); // untimed: no pool boot overlaps the timed run
      await measure(f, round);
    }
  }
  const rows = summarize();
  report.figures = rows;
  report.machine.loadAfterRounds = os.loadavg();
  await stopContainerds();

  const cold = figure.hullCold.phases;
  const pooledPhases = figure.hullPooled.phases;
  const med = (list, k) => (list.length ? stats(list.map((p) => p[k])).median : NaN);
  const medians = (list, keys) => Object.fromEntries(keys.map((k) => [k, med(list, k)]));
  report.breakdown = {
    cold: medians(cold, ['logging', 'vmm', 'agent', 'started', 'exited', 'ms']),
    pooled: medians(pooledPhases, ['logging', 'claimed', 'claimMs', 'started', 'exited', 'ms']),
  };
  await checkInterrupted();

  if (RATE_SECONDS > 0) report.rate = await sustainedRate();
  await pool.stop();
  pool = undefined;
  await checkInterrupted();

  const guest = process.env.HULL_GUEST_DIR ?? path.join(repo, 'build', 'guest', 'current');
  const { rows: memory, phases } = await idleSandbox(guest);
  report.memory = memory;
  report.guestBoot = phases;
  await checkInterrupted();
  if (DENSITY > 0) {
    report.density = await densityRun({ hull, root: coldRoot, bundle: path.join(work, 'idle'), n: DENSITY, env: process.env, checkInterrupted });
  }

  // --- print --------------------------------------------------------------------------------------------------------
  printTable(rows, floor);
  const load = (l) => l.map((v) => v.toFixed(1)).join(' ');
  out(`load average before ${load(report.machine.loadBefore)}, after the rounds ${load(report.machine.loadAfterRounds)}`);
  if (floor) out(`floor argv: hull's, less ${floor.dropped.join('; ')} (back ends not running); -initrd: a /init that powers off`);
  const b = report.breakdown;
  const n0 = (v) => (Number.isFinite(v) ? v.toFixed(0) : '?');
  out(`\nhull run breakdown, cold (median ms from the CLI's spawn): first log line ${n0(b.cold.logging)}, VMM started ${n0(b.cold.vmm)}, ` +
    `agent ready ${n0(b.cold.agent)}, container started ${n0(b.cold.started)}, exited ${n0(b.cold.exited)}, CLI done ${n0(b.cold.ms)}`);
  out(`  → CLI start ${n0(b.cold.logging)} ms; VMM start ${n0(b.cold.vmm - b.cold.logging)} ms; kernel boot to agent ready ${n0(b.cold.agent - b.cold.vmm)} ms; ` +
    `container create+start ${n0(b.cold.started - b.cold.agent)} ms; run+teardown ${n0(b.cold.ms - b.cold.started)} ms`);
  out(`hull run breakdown, pooled: first log line ${n0(b.pooled.logging)}, VM claimed ${n0(b.pooled.claimed)}, ` +
    `container started ${n0(b.pooled.started)}, exited ${n0(b.pooled.exited)}, CLI done ${n0(b.pooled.ms)}`);
  out(`  → CLI start to claimed ${n0(b.pooled.claimed)} ms (claim and reattach ${n0(b.pooled.claimMs)} ms of it, the claim line being the first); ` +
    `container create+start ${n0(b.pooled.started - b.pooled.claimed)} ms; run+teardown ${n0(b.pooled.ms - b.pooled.started)} ms`);

  const row = Object.fromEntries(rows.map((r) => [r.key, r]));
  const check = (name, value, target, text) => {
    const met = value === undefined ? undefined : value <= target;
    out(`  ${met === undefined ? '?   ' : met ? 'met ' : 'MISS'} ${name}: ${text}`);
    return { name, value, target, met };
  };
  out('\ntargets (issue 10)');
  report.targets = [
    check('pooled hull run median ≤ 0.6 s', row.hullPooled.median, TARGETS.pooledRun, row.hullPooled.median ? fmt(row.hullPooled.median) : row.hullPooled.status),
    check('pooled hull run ≤ 0.45× floor', row.hullPooled.vsFloor, TARGETS.pooledRunVsFloor, x(row.hullPooled.vsFloor)),
    check('stretch: pooled hull run ≤ 2× runsc', row.hullPooled.vsRunsc, TARGETS.pooledRunVsRunsc, row.runsc.status === 'ok' ? x(row.hullPooled.vsRunsc) : `runsc: ${row.runsc.status}`),
    check('pooled ctr run --rm median ≤ 1.0 s', row.ctrPooled.median, TARGETS.pooledCtr, row.ctrPooled.median ? fmt(row.ctrPooled.median) : row.ctrPooled.status),
  ];
  out(`  n/a  cold path no slower than today: this run has no "today"; cold hull run median ${row.hullCold.median ? fmt(row.hullCold.median) : '?'} ` +
    '(compare trees with `npm run bench:ab -- --base <ref> --only run`)');

  if (report.rate) {
    const r = report.rate;
    out(`\nsustained creation rate: hull run … true back to back for ${RATE_SECONDS} s (the last run ended at ${r.seconds.toFixed(1)} s) with a pool of ${r.poolSize}: ` +
      `${r.containers} containers, ${r.perSecond.toFixed(2)}/s; ${r.pooled} pooled${r.pooledMs ? ` (median ${fmt(r.pooledMs.median)})` : ''}, ` +
      `${r.cold} cold${r.coldMs ? ` (median ${fmt(r.coldMs.median)}; ${r.coldWhy.join('; ')})` : ''}${r.failed ? `, ${r.failed} failed` : ''}`);
  }

  if (phases) {
    const s = (v) => (Number.isFinite(v) ? `${v.toFixed(2)} s` : '?');
    const d = (a, c) => (Number.isFinite(a) && Number.isFinite(c) ? `${((c - a) * 1000).toFixed(0)} ms` : '?');
    out(`\nguest boot of the idle sandbox (hull.debug=1, guest uptime): /init at ${s(phases.init)}, agent exec'd at ` +
      `${s(phases.agentExec)}, Node running at ${s(phases.nodeStarted)}, agent listening at ${s(phases.listening)}`);
    out(`  → kernel ${s(phases.init)}; /init (stage 1, root, modules, mounts) ${d(phases.init, phases.agentExec)}; ` +
      `exec to Node ${d(phases.agentExec, phases.nodeStarted)}; Node to listening ${d(phases.nodeStarted, phases.listening)}` +
      (phases.marks ? ` (ms since Node started: ${Object.entries(phases.marks).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''));
  }
  const total = memory.reduce((sum, r) => sum + r.pss, 0);
  out('\nhost memory of one idle sandbox (PSS, MiB; the pool stopped first)');
  for (const r of memory) {
    const split = r.split ? `   (${Object.entries(r.split).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')})` : '';
    out(`  ${r.name.padEnd(16)}${r.pss.toFixed(1).padStart(8)}${split}`);
  }
  out(`  ${'total'.padEnd(16)}${total.toFixed(1).padStart(8)}   (target ≤ 160; Kata+QEMU ~120)`);
  if (report.density) printDensity(report.density, out);
  if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
} catch (err) {
  log(interruptedBy() ? err.message : err.stack ?? err.message);
  process.exitCode = interruptedBy() ? 130 : 1;
} finally {
  log('cleaning up');
  await cleanup();
}
