#!/usr/bin/env node
// hull's start-time and memory benchmark (a script, not a test). Prints cold `hull run … true` wall time over N runs
// with a per-phase breakdown, next to baselines measured in the same run on the same machine: the floor (the same
// QEMU and kernel booting a trivial initramfs that powers off at once), runc and runsc when installed. Then host
// memory (PSS) per idle sandbox, with QEMU's share split by mapping, and the guest's boot phases of that sandbox
// (booted with hull.debug=1: /init and the agent print their start-up times on the console).
//   usage: npm run bench [-- --runs N]
// HULL_GUEST_DIR and HULL_TCG_CPU apply to the floor as they do to hull (A/B runs of another image or CPU model).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync, copyFileSync, chmodSync, realpathSync, symlinkSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmt, makeBundle, stats, timed } from './lib.mjs';
import { processTree } from './processes.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const hull = path.join(repo, 'bin', 'hull');
const runsArg = process.argv.indexOf('--runs');
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 5;
const work = mkdtempSync(path.join(os.tmpdir(), 'hull-bench-'));
const root = path.join(work, 'root');

const bundle = path.join(work, 'bundle');
makeBundle(repo, bundle, 'true');

// --- the floor: same QEMU, same kernel, a trivial initramfs that powers off at once -----------------------------
function buildFloorInitramfs() {
  const dir = path.join(work, 'floor');
  mkdirSync(path.join(dir, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', path.join(dir, 'bin', 'busybox'));
  writeFileSync(path.join(dir, 'init'), '#!/bin/busybox sh\n/bin/busybox poweroff -f\n');
  chmodSync(path.join(dir, 'init'), 0o755);
  const image = path.join(work, 'floor.cpio');
  execFileSync('sh', ['-c', `cd ${dir} && find . | cpio -o -H newc --quiet > ${image}`]);
  return image;
}

// The floor runs on hull's TCG CPU model (hypervisor/qemu-command.ts TCG_CPU_MODEL), so the ratio compares like with like.
const tcgCpu =
  process.env.HULL_TCG_CPU ||
  /TCG_CPU_MODEL = '([^']+)'/.exec(readFileSync(path.join(repo, 'hypervisor', 'qemu-command.ts'), 'utf8'))?.[1] ||
  'max';

// As hull does under TCG (hypervisor/host-tsc.ts): without tsc_early_khz the guest's PIT calibration can fail on a busy
// host and the floor VM then hangs before /init (seen here: a floor run spinning for minutes).
function hostTscKhz() {
  const first = readFileSync('/proc/cpuinfo', 'utf8').split('\n\n')[0] ?? '';
  const flags = new Set((/^flags\s*:(.*)$/m.exec(first)?.[1] ?? '').trim().split(/\s+/));
  const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)$/m.exec(first)?.[1]);
  if (!flags.has('constant_tsc') || !(mhz > 100) || (!flags.has('tsc_known_freq') && flags.has('aperfmperf'))) return undefined;
  return Math.round(mhz * 1000);
}
const tscKhz = hostTscKhz();

function floorRun(guest, initrd) {
  const manifest = JSON.parse(readFileSync(path.join(guest, 'manifest.json'), 'utf8'));
  const cmdline = `${manifest.kernelCmdline}${tscKhz ? ` tsc_early_khz=${tscKhz}` : ''}`;
  const args = [
    '-M', 'microvm,memory-backend=mem', '-accel', 'tcg', '-cpu', tcgCpu, '-smp', '1', '-m', '512',
    '-object', 'memory-backend-memfd,id=mem,size=512M,share=on', '-global', 'virtio-mmio.force-legacy=false',
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot', '-serial', 'null',
    '-kernel', path.join(guest, 'vmlinux'), '-initrd', initrd, '-append', cmdline,
  ];
  return timed('qemu-system-x86_64', args, { timeout: 60_000 });
}

// --- hull run, with its phases from the JSON log -----------------------------------------------------------------
function hullRun(i) {
  const log = path.join(work, `run-${i}.log`);
  const ms = timed(hull, ['--root', root, '--log', log, '--log-format', 'json', 'run', '--bundle', bundle, `bench-${i}`]);
  const records = readFileSync(log, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
  const at = (msg) => records.find((r) => r.msg === msg)?.time;
  const t0 = Date.parse(records[0].time);
  const phase = (msg) => (at(msg) ? Date.parse(at(msg)) - t0 : NaN);
  return { ms, vmm: phase('vmm started'), agent: phase('agent ready'), started: phase('container started'), exited: phase('container exited') };
}

function baseline(name, command, argsFor) {
  if (spawnSync('which', [command]).status !== 0) return undefined;
  const times = [];
  for (let i = 0; i < RUNS; i++) {
    try {
      times.push(timed(command, argsFor(i)));
    } catch (err) {
      process.stderr.write(`bench: ${name} failed: ${err.message.split('\n')[0]}\n`);
      return undefined;
    }
  }
  return stats(times);
}

// --- memory: PSS of every hull-owned process of one idle sandbox -------------------------------------------------
function pss(pid) {
  try {
    const line = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').split('\n').find((l) => l.startsWith('Pss:'));
    return Number(line.split(/\s+/)[1]) / 1024;
  } catch {
    return 0;
  }
}
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
  execFileSync(hull, ['--root', root, 'create', '--bundle', idle, 'idle'], { stdio: 'ignore', env });
  execFileSync(hull, ['--root', root, 'start', 'idle'], { env });
  await new Promise((r) => setTimeout(r, 3000));
  const monitorPid = JSON.parse(readFileSync(path.join(root, 'idle', 'state.json'), 'utf8')).pid;
  // QEMU and the helpers are the monitor's children; their command lines name the socket dir, not the root.
  const rows = processTree(monitorPid).map(({ pid, cmd }) => {
    const name = cmd.includes('qemu-system') ? 'qemu' : cmd.includes('virtiofsd') ? 'virtiofsd' : cmd.includes('vsock-backend') ? 'vsock-backend' : 'hull monitor';
    return { name, pid, pss: pss(pid), ...(name === 'qemu' ? { split: qemuSplit(pid) } : {}) };
  });
  let phases;
  try {
    phases = guestPhases(readFileSync(path.join(root, 'idle', 'console.log'), 'utf8'));
  } catch {
    phases = undefined;
  }
  execFileSync(hull, ['--root', root, 'delete', '--force', 'idle']);
  return { rows, phases };
}

const guest = process.env.HULL_GUEST_DIR ?? path.join(repo, 'build', 'guest', 'current');
const floorImage = buildFloorInitramfs();
const floorTimes = [];
const hullRuns = [];
for (let i = 0; i < RUNS; i++) {
  floorTimes.push(floorRun(guest, floorImage));
  hullRuns.push(hullRun(i));
}
const floor = stats(floorTimes);
const hullStats = stats(hullRuns.map((r) => r.ms));
const median = (key) => stats(hullRuns.map((r) => r[key])).median;

const runcRoot = path.join(work, 'runc');
const runc = baseline('runc', 'runc', (i) => ['--root', runcRoot, 'run', '--bundle', bundle, `runc-${i}`]);
const runscRoot = path.join(work, 'runsc');
const runsc = baseline('runsc', 'runsc', (i) => ['--root', runscRoot, '--network=none', 'run', '--bundle', bundle, `runsc-${i}`]);

const rows = [
  ['floor: QEMU + kernel + poweroff', floor],
  ['hull run … true', hullStats],
  ...(runc ? [['runc run … true', runc]] : []),
  ...(runsc ? [['runsc run … true', runsc]] : []),
];
console.log(`\ncold start, ${RUNS} runs each, interleaved (${os.cpus().length} cores, accel from hull's choice; TCG -cpu ${tcgCpu})`);
console.log(`${'what'.padEnd(34)}${'min'.padStart(10)}${'median'.padStart(10)}${'max'.padStart(10)}${'vs floor'.padStart(10)}`);
for (const [name, s] of rows) {
  console.log(`${name.padEnd(34)}${fmt(s.min).padStart(10)}${fmt(s.median).padStart(10)}${fmt(s.max).padStart(10)}${(s.median / floor.median).toFixed(2).padStart(9)}x`);
}
console.log(`\nhull run breakdown (median, ms from CLI start): VMM started ${median('vmm').toFixed(0)}, agent ready ${median('agent').toFixed(0)}, ` +
  `container started ${median('started').toFixed(0)}, exited ${median('exited').toFixed(0)}, CLI done ${hullStats.median.toFixed(0)}`);
console.log(`  → VMM start ${median('vmm').toFixed(0)} ms; kernel boot to agent ready ${(median('agent') - median('vmm')).toFixed(0)} ms; ` +
  `container create+start ${(median('started') - median('agent')).toFixed(0)} ms; run+teardown ${(hullStats.median - median('started')).toFixed(0)} ms`);
console.log(`hull/floor = ${(hullStats.median / floor.median).toFixed(2)}`);

const { rows: memory, phases } = await idleSandbox(guest);
if (phases) {
  const s = (v) => (Number.isFinite(v) ? `${v.toFixed(2)} s` : '?');
  const d = (a, b) => (Number.isFinite(a) && Number.isFinite(b) ? `${((b - a) * 1000).toFixed(0)} ms` : '?');
  console.log(`\nguest boot of the idle sandbox (hull.debug=1, guest uptime): /init at ${s(phases.init)}, agent exec'd at ` +
    `${s(phases.agentExec)}, Node running at ${s(phases.nodeStarted)}, agent listening at ${s(phases.listening)}`);
  console.log(`  → kernel ${s(phases.init)}; /init (stage 1, root, modules, mounts) ${d(phases.init, phases.agentExec)}; ` +
    `exec to Node ${d(phases.agentExec, phases.nodeStarted)}; Node to listening ${d(phases.nodeStarted, phases.listening)}` +
    (phases.marks ? ` (ms since Node started: ${Object.entries(phases.marks).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''));
}
const total = memory.reduce((sum, r) => sum + r.pss, 0);
console.log('\nhost memory of one idle sandbox (PSS, MiB)');
for (const r of memory) {
  const split = r.split ? `   (${Object.entries(r.split).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')})` : '';
  console.log(`  ${r.name.padEnd(16)}${r.pss.toFixed(1).padStart(8)}${split}`);
}
console.log(`  ${'total'.padEnd(16)}${total.toFixed(1).padStart(8)}   (target ≤ 160; Kata+QEMU ~120)`);
rmSync(work, { recursive: true, force: true });
