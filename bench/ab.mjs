#!/usr/bin/env node
// A/B start time of two hull trees, measured in the same run (a script, not a test): this checkout ("head": its working
// tree, as bundled in dist/) against a git ref ("base"), on the same machine, runs interleaved so drift hits both.
//   usage: npm run bench:ab -- --base <git-ref> [--runs N] [--only run|containerd] [--build-head] [--allow-native-diff]
//   --base        required: the tree before the change (a commit, tag or branch; `--base HEAD` with a clean working
//                 tree is an A/A run, which shows the noise). There is no default: this repository has no upstream
//                 branch to take a merge-base with, and guessing the wrong base would compare the wrong things.
//   --runs        timed runs per tree and workload [5], after one untimed warm-up run each
//   --only        one workload only: `run` (hull run --bundle) or `containerd` (ctr run through the hull shim)
//   --build-head  bundle head's TypeScript first (`node scripts/bundle.mjs`); otherwise head's dist/ is used as it is
//                 and a warning is printed when a source file is newer than it
// Workloads, as bench/run.mjs and bench/containerd.mjs time them, with the same busybox bundle and image for both trees:
//   1. `hull --root R run --bundle B ID` of `true`: the CLI's cold start (bench/run.mjs);
//   2. `ctr run --rm --runtime io.containerd.hull.v2 IMAGE ID true` (bench/containerd.mjs). Each tree gets its own
//      private containerd whose PATH starts with that tree's bin/, so the runtime name resolves to that tree's
//      containerd-shim-hull-v2 exactly as in bench/containerd.mjs (/usr/local/bin is not used or touched).
// Order: round r runs every workload on base then head (even r) or head then base (odd r): A B, B A, A B, …
// Output: per workload and tree min/median/max wall time, and head's median over base's.
//
// How the base tree is made: `git worktree add --detach` of the ref under a temporary directory, node_modules linked
// from this checkout, and only its TypeScript bundled (its own scripts/bundle.mjs). Its native pieces are this
// checkout's, by symlink: native/addon/build (the N-API addon, found next to dist/ as <repo>/native/addon/build/…) and
// build/native, build/kernel (the vsock backend and container helper found under <repo>/build/native). So native/ must
// not differ between the trees (checked; --allow-native-diff runs anyway, with head's native builds for both).
// Guest image: each tree runs the image its own guest-image/build.sh would build (its agent bundle, init script, …):
// the image's content hash (`build.sh --print-hash`) is looked up in build/guest/ and build/guest-ab/ and, when
// neither has it, built into build/guest-ab/<hash> (minutes: it boots the image once for the agent's start-up
// snapshot; kept as a cache, build/guest/current is never moved). HULL_GUEST_DIR, when set, is used by both trees.
// Everything else is removed at the end, on failure and on Ctrl-C too: the worktree, the containerds and their
// containers, sandboxes left by an interrupted `hull run`, the temporary directory.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, symlinkSync, unlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildImage, fmt, interruption, makeBundle, startContainerd, stats, timed, unmountUnder } from './lib.mjs';

const head = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HULL_RUNTIME = 'io.containerd.hull.v2';
const IMAGE = 'docker.io/hull/bench-busybox:latest';
const NS = 'hullab';
const RUN_TIMEOUT = 180_000;

const usage = 'usage: npm run bench:ab -- --base <git-ref> [--runs N] [--only run|containerd] [--build-head] [--allow-native-diff]';
let opts;
try {
  opts = parseArgs({
    options: {
      base: { type: 'string' },
      runs: { type: 'string', default: '5' },
      only: { type: 'string' },
      'build-head': { type: 'boolean', default: false },
      'allow-native-diff': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values;
} catch (err) {
  process.stderr.write(`bench:ab: ${err.message}\n${usage}\n`);
  process.exit(2);
}
if (opts.help) {
  process.stdout.write(`${usage}\n(see the comment at the top of bench/ab.mjs)\n`);
  process.exit(0);
}
const RUNS = Number(opts.runs);
if (!opts.base || !Number.isInteger(RUNS) || RUNS < 1 || (opts.only && !['run', 'containerd'].includes(opts.only))) {
  process.stderr.write(`${usage}\n`);
  process.exit(2);
}
const withRun = opts.only !== 'containerd';
const withContainerd = opts.only !== 'run';

const log = (line) => process.stderr.write(`bench:ab: ${line}\n`);
const git = (...args) => execFileSync('git', args, { cwd: head, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
const commandExists = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

for (const cmd of ['git', ...(withContainerd ? ['containerd', 'ctr'] : [])]) {
  if (!commandExists(cmd)) {
    log(`${cmd} not found${cmd === 'git' ? '' : ' (apt-get install containerd)'}`);
    process.exit(1);
  }
}

// --- interruption: a flag checked between runs, so clean-up always runs in the finally below ----------------------
const { check: checkInterrupted, signal: interruptedBy } = interruption(log);

// --- the trees ----------------------------------------------------------------------------------------------------
/** Newest mtime (ms) of head's bundled sources (tracked or new TypeScript and .proto files, outside test/ and bench/). */
function newestSource() {
  const files = git('ls-files', '-co', '--exclude-standard', '--', '*.ts', '*.proto', 'scripts/bundle.mjs')
    .split('\n')
    .filter((f) => f && !/^(test|bench|node_modules)\//.test(f));
  let newest = { file: undefined, mtime: 0 };
  for (const f of files) {
    try {
      const { mtimeMs } = statSync(path.join(head, f));
      if (mtimeMs > newest.mtime) newest = { file: f, mtime: mtimeMs };
    } catch {
      // deleted in the working tree
    }
  }
  return newest;
}

function bundleTs(repo) {
  execFileSync(process.execPath, [path.join(repo, 'scripts', 'bundle.mjs')], { cwd: repo, stdio: ['ignore', 'pipe', 'inherit'] });
}

/**
 * Makes the esbuild output of the worktree byte-identical to what the same sources give in this checkout: it names
 * bundled files by path, and node_modules (a symlink to this checkout's) resolves to a path outside the worktree.
 * Only the agent bundles need it (they are inputs of the guest image's content hash); the paths are only labels.
 */
function normalizeAgentBundles(wt) {
  const modulesRel = `${path.relative(wt, realpathSync(path.join(head, 'node_modules')))}/`;
  for (const f of ['agent.mjs', 'agent-snapshot.cjs']) {
    const file = path.join(wt, 'dist', f);
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    writeFileSync(file, text.split(modulesRel).join('node_modules/').split(`${wt}/`).join(`${head}/`));
  }
}

/** The guest image directory this tree's guest-image/build.sh makes, built into build/guest-ab/ if no copy exists. */
function guestDirFor(repo, name) {
  const env = { ...process.env, HULL_KERNEL_DIR: path.join(head, 'build', 'kernel') };
  delete env.HULL_GUEST_OUT;
  const script = path.join(repo, 'guest-image', 'build.sh');
  const hash = execFileSync('bash', [script, '--print-hash'], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n').pop();
  for (const dir of [path.join(head, 'build', 'guest', hash), path.join(head, 'build', 'guest-ab', hash)]) {
    if (existsSync(path.join(dir, 'manifest.json'))) return { dir, hash };
  }
  log(`${name}: guest image ${hash} not built yet: building it into build/guest-ab/ (takes minutes)`);
  execFileSync('bash', [script], { env: { ...env, HULL_GUEST_OUT: path.join(head, 'build', 'guest-ab') }, stdio: ['ignore', 'ignore', 'inherit'] });
  const dir = path.join(head, 'build', 'guest-ab', hash);
  if (!existsSync(path.join(dir, 'manifest.json'))) throw new Error(`guest-image/build.sh did not produce ${dir}`);
  return { dir, hash };
}

const work = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'hull-ab-')));
const wt = path.join(work, 'base');
const links = []; // symlinks made in the worktree, removed before the worktree so nothing can follow them
let worktreeAdded = false;
const trees = [];

function link(target, at) {
  if (!existsSync(target)) return;
  mkdirSync(path.dirname(at), { recursive: true });
  symlinkSync(target, at);
  links.push(at);
}

async function cleanup() {
  for (const tree of trees) {
    try {
      await tree.containerd?.stop();
    } catch (err) {
      log(`clean-up: containerd (${tree.name}): ${err.message}`);
    }
    // A `hull run` cut short (Ctrl-C, timeout) can leave its sandbox: delete whatever the tree's root still lists.
    if (existsSync(tree.root) && readdirSync(tree.root).length > 0) {
      const listed = spawnSync(tree.hull, ['--root', tree.root, 'list', '-q'], { env: tree.env, encoding: 'utf8' });
      for (const id of listed.stdout?.split('\n').filter(Boolean) ?? []) {
        spawnSync(tree.hull, ['--root', tree.root, 'delete', '--force', id], { env: tree.env, stdio: 'ignore' });
      }
    }
  }
  for (const at of links) {
    try {
      if (lstatSync(at).isSymbolicLink()) unlinkSync(at);
    } catch {
      // already gone
    }
  }
  if (worktreeAdded) {
    const removed = spawnSync('git', ['worktree', 'remove', '--force', wt], { cwd: head, encoding: 'utf8' });
    if (removed.status !== 0) log(`clean-up: git worktree remove: ${removed.stderr.trim()}`);
  }
  unmountUnder(work);
  rmSync(work, { recursive: true, force: true });
  spawnSync('git', ['worktree', 'prune'], { cwd: head });
}

// --- the run ------------------------------------------------------------------------------------------------------
try {
  let baseSha;
  try {
    baseSha = git('rev-parse', '--verify', '--quiet', `${opts.base}^{commit}`);
  } catch {
    throw new Error(`--base ${opts.base}: not a commit in ${head}`);
  }
  const headSha = git('rev-parse', 'HEAD');
  const dirty = git('status', '--porcelain', '--untracked-files=no') !== '';
  const describe = (sha) => {
    const line = git('log', '-1', '--format=%h %s', sha);
    return line.length > 90 ? `${line.slice(0, 89)}…` : line;
  };

  // native/ is reused from this checkout for both trees, so it has to be the same source.
  if (spawnSync('git', ['diff', '--quiet', baseSha, '--', 'native'], { cwd: head }).status !== 0) {
    const message = `native/ differs between ${opts.base} and this working tree, and the base tree would run head's native builds`;
    if (!opts['allow-native-diff']) throw new Error(`${message} (--allow-native-diff to run anyway)`);
    log(`warning: ${message}`);
  }

  log(`worktree of ${describe(baseSha)} at ${wt}`);
  const added = spawnSync('git', ['worktree', 'add', '--detach', wt, baseSha], { cwd: head, encoding: 'utf8' });
  if (added.status !== 0) throw new Error(`git worktree add failed: ${added.stderr}`);
  worktreeAdded = true;
  link(path.join(head, 'node_modules'), path.join(wt, 'node_modules'));
  link(path.join(head, 'native', 'addon', 'build'), path.join(wt, 'native', 'addon', 'build'));
  link(path.join(head, 'build', 'native'), path.join(wt, 'build', 'native'));
  link(path.join(head, 'build', 'kernel'), path.join(wt, 'build', 'kernel'));
  log('bundling the base tree');
  bundleTs(wt);
  normalizeAgentBundles(wt);
  await checkInterrupted();

  if (opts['build-head']) {
    log('bundling the head tree');
    bundleTs(head);
  }
  const distFiles = ['hull.mjs', 'containerd-shim-hull-v2.mjs', 'agent.mjs'].map((f) => path.join(head, 'dist', f));
  if (!distFiles.every(existsSync)) throw new Error('head has no dist/ bundles: run `npm run build:ts` (or pass --build-head)');
  const distTime = Math.min(...distFiles.map((f) => statSync(f).mtimeMs));
  const newest = newestSource();
  const staleHead = newest.mtime > distTime;
  if (staleHead) log(`warning: head's dist/ is older than ${newest.file}: it may not be what the working tree says (--build-head)`);

  let guests;
  if (process.env.HULL_GUEST_DIR) {
    const dir = realpathSync(process.env.HULL_GUEST_DIR);
    guests = { base: { dir, hash: 'HULL_GUEST_DIR' }, head: { dir, hash: 'HULL_GUEST_DIR' } };
  } else {
    guests = { base: guestDirFor(wt, 'base'), head: guestDirFor(head, 'head') };
  }
  await checkInterrupted();

  for (const [name, repo] of [['base', wt], ['head', head]]) {
    const root = path.join(work, `root-${name}`);
    // Cold starts only: the shims take VMs from the pool of HULL_POOL_ROOT (default /run/hull, which a `hull pool
    // serve` may serve), so it names the tree's own root, which no pool serves; HULL_POOL_DIR would override both.
    const env = { ...process.env, HULL_GUEST_DIR: guests[name].dir, HULL_POOL_ROOT: root };
    delete env.HULL_ROOT; // each tree finds its own root from its dist/
    delete env.HULL_POOL_DIR;
    trees.push({ name, repo, hull: path.join(repo, 'bin', 'hull'), root, env });
  }
  const [base, headTree] = trees;

  const bundle = path.join(work, 'bundle');
  makeBundle(head, bundle, 'true');
  if (withContainerd) {
    const image = path.join(work, 'image.tar');
    await buildImage({ rootfs: path.join(bundle, 'rootfs'), out: image, name: IMAGE, scratch: path.join(work, 'image') });
    for (const tree of trees) {
      await checkInterrupted();
      // Its own PATH (this tree's bin/ first) decides which containerd-shim-hull-v2 the runtime name resolves to.
      tree.containerd = await startContainerd({
        dir: path.join(work, `ctd-${tree.name}`),
        namespace: NS,
        env: { ...tree.env, PATH: `${path.join(tree.repo, 'bin')}:${process.env.PATH}` },
        detached: true,
      });
      const imported = tree.containerd.ctr(['images', 'import', image]);
      if (imported.status !== 0) throw new Error(`ctr images import failed: ${imported.stderr}`);
    }
  }

  const workloads = [
    ...(withRun
      ? [['hull run --bundle … true', (tree, id) => timed(tree.hull, ['--root', tree.root, 'run', '--bundle', bundle, id], { env: tree.env, timeout: RUN_TIMEOUT })]]
      : []),
    ...(withContainerd
      ? [['ctr run --rm … true (hull shim)', (tree, id) =>
          timed('ctr', tree.containerd.ctrArgs(['run', '--rm', '--runtime', HULL_RUNTIME, IMAGE, id, 'true']), { timeout: RUN_TIMEOUT })]]
      : []),
  ];
  const times = workloads.map(() => ({ base: [], head: [] }));
  const loadBefore = os.loadavg()[0];
  for (let round = -1; round < RUNS; round++) {
    const order = round % 2 === 0 || round < 0 ? [base, headTree] : [headTree, base];
    const line = [];
    for (const [w, [, run]] of workloads.entries()) {
      for (const tree of order) {
        await checkInterrupted();
        const ms = run(tree, `ab-${tree.name}-${w}-${round < 0 ? 'warm' : round}`);
        if (round >= 0) times[w][tree.name].push(ms); // the warm-up round (page cache, image snapshot) is not counted
        line.push(`${w}:${tree.name} ${fmt(ms)}`);
      }
    }
    log(`${round < 0 ? 'warm-up' : `round ${round + 1}/${RUNS}`}: ${line.join(', ')}`);
  }
  const loadAfter = os.loadavg()[0];

  const label = { base: `base ${describe(baseSha).split(' ')[0]}`, head: `head ${headSha.slice(0, 7)}${dirty ? '+wt' : ''}` };
  console.log(`\nA/B: base = ${describe(baseSha)}`);
  console.log(`     head = ${describe(headSha)}${dirty ? ' + uncommitted changes (working tree)' : ''}${staleHead ? '  [dist/ older than sources!]' : ''}`);
  console.log(`guest images: base ${guests.base.hash}, head ${guests.head.hash}`);
  console.log(`${RUNS} runs per tree and workload, interleaved (A B, B A, …) after one warm-up each; ${os.cpus().length} cores, ` +
    `load average ${loadBefore.toFixed(1)} → ${loadAfter.toFixed(1)}`);
  console.log(`${'workload'.padEnd(34)}${'tree'.padEnd(18)}${'min'.padStart(9)}${'median'.padStart(9)}${'max'.padStart(9)}${'head/base'.padStart(11)}`);
  workloads.forEach(([name], w) => {
    const b = stats(times[w].base);
    const h = stats(times[w].head);
    const row = (what, tree, s, ratio) =>
      console.log(`${what.padEnd(34)}${label[tree].padEnd(18)}${fmt(s.min).padStart(9)}${fmt(s.median).padStart(9)}${fmt(s.max).padStart(9)}${ratio.padStart(11)}`);
    row(name, 'base', b, '');
    row('', 'head', h, `${(h.median / b.median).toFixed(3)}x`);
  });
  console.log('(head/base > 1: head is slower; compare it with each row\'s max − min, the noise of this run)');
} catch (err) {
  log(err.message);
  process.exitCode = interruptedBy() ? 130 : 1;
} finally {
  await cleanup();
}
