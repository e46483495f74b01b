#!/usr/bin/env node
// hull's start-time and memory benchmark (a script, not a test). Prints cold `hull run … true` wall time over N runs
// with a per-phase breakdown, next to baselines measured in the same run on the same machine: the floor (the same
// QEMU and kernel booting a trivial initramfs that powers off at once), runc and runsc when installed. Then host
// memory (PSS) per idle sandbox.
//   usage: npm run bench [-- --runs N]
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync, copyFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const hull = path.join(repo, 'bin', 'hull');
const runsArg = process.argv.indexOf('--runs');
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 5;
const work = mkdtempSync(path.join(os.tmpdir(), 'hull-bench-'));
const root = path.join(work, 'root');

const bundle = path.join(work, 'bundle');
execFileSync(process.execPath, [path.join(repo, 'scripts', 'make-bundle.mjs'), bundle, 'true']);

function stats(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return { min: sorted[0], median: sorted[Math.floor(sorted.length / 2)], max: sorted[sorted.length - 1] };
}
const fmt = (ms) => `${(ms / 1000).toFixed(2)} s`;

function timed(command, args, options = {}) {
  const started = process.hrtime.bigint();
  const result = spawnSync(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${result.status}): ${result.stderr}`);
  return ms;
}

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

function floorRun(guest, initrd) {
  const manifest = JSON.parse(readFileSync(path.join(guest, 'manifest.json'), 'utf8'));
  const args = [
    '-M', 'microvm,memory-backend=mem', '-accel', 'tcg', '-cpu', 'max', '-smp', '1', '-m', '512',
    '-object', 'memory-backend-memfd,id=mem,size=512M,share=on', '-global', 'virtio-mmio.force-legacy=false',
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot', '-serial', 'null',
    '-kernel', path.join(guest, 'vmlinux'), '-initrd', initrd, '-append', manifest.kernelCmdline,
  ];
  return timed('qemu-system-x86_64', args);
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
function processesMentioning(marker) {
  return readdirSync('/proc').filter((e) => /^\d+$/.test(e)).flatMap((pid) => {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      return cmd.includes(marker) ? [{ pid: Number(pid), cmd }] : [];
    } catch {
      return [];
    }
  });
}
async function idleSandboxPss() {
  const idle = path.join(work, 'idle');
  execFileSync(process.execPath, [path.join(repo, 'scripts', 'make-bundle.mjs'), idle, 'sleep', '1000']);
  execFileSync(hull, ['--root', root, 'create', '--bundle', idle, 'idle'], { stdio: 'ignore' });
  execFileSync(hull, ['--root', root, 'start', 'idle']);
  await new Promise((r) => setTimeout(r, 3000));
  const rows = processesMentioning(root).map(({ pid, cmd }) => {
    const name = cmd.includes('qemu-system') ? 'qemu' : cmd.includes('virtiofsd') ? 'virtiofsd' : cmd.includes('vsock-backend') ? 'vsock-backend' : 'hull monitor';
    return { name, pid, pss: pss(pid) };
  });
  execFileSync(hull, ['--root', root, 'delete', '--force', 'idle']);
  return rows;
}

const guest = path.join(repo, 'build', 'guest', 'current');
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
console.log(`\ncold start, ${RUNS} runs each (${os.cpus().length} cores, accel from hull's choice)`);
console.log(`${'what'.padEnd(34)}${'min'.padStart(10)}${'median'.padStart(10)}${'max'.padStart(10)}${'vs floor'.padStart(10)}`);
for (const [name, s] of rows) {
  console.log(`${name.padEnd(34)}${fmt(s.min).padStart(10)}${fmt(s.median).padStart(10)}${fmt(s.max).padStart(10)}${(s.median / floor.median).toFixed(2).padStart(9)}x`);
}
console.log(`\nhull run breakdown (median, ms from CLI start): VMM started ${median('vmm').toFixed(0)}, agent ready ${median('agent').toFixed(0)}, ` +
  `container started ${median('started').toFixed(0)}, exited ${median('exited').toFixed(0)}, CLI done ${hullStats.median.toFixed(0)}`);
console.log(`  → VMM start ${median('vmm').toFixed(0)} ms; kernel boot to agent ready ${(median('agent') - median('vmm')).toFixed(0)} ms; ` +
  `container create+start ${(median('started') - median('agent')).toFixed(0)} ms; run+teardown ${(hullStats.median - median('started')).toFixed(0)} ms`);
console.log(`hull/floor = ${(hullStats.median / floor.median).toFixed(2)}`);

const memory = await idleSandboxPss();
const total = memory.reduce((sum, r) => sum + r.pss, 0);
console.log('\nhost memory of one idle sandbox (PSS, MiB)');
for (const r of memory) console.log(`  ${r.name.padEnd(16)}${r.pss.toFixed(1).padStart(8)}`);
console.log(`  ${'total'.padEnd(16)}${total.toFixed(1).padStart(8)}   (target ≤ 160; Kata+QEMU ~120)`);
rmSync(work, { recursive: true, force: true });
