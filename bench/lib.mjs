// Pieces shared by the benchmark scripts (bench/run.mjs, bench/containerd.mjs, bench/ab.mjs): statistics and their
// formatting, timing one command, the busybox bundle, the one-layer OCI image built from it, and a private containerd.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as tar from 'tar';

/** min, median (the upper one for an even count) and max. */
export function stats(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return { min: sorted[0], median: sorted[Math.floor(sorted.length / 2)], max: sorted[sorted.length - 1] };
}
export const fmt = (ms) => `${(ms / 1000).toFixed(2)} s`;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Wall time (ms) of one run of a command that must exit 0; its stdout and stderr are captured, not shown. */
export function timed(command, args, options = {}) {
  const started = process.hrtime.bigint();
  const result = spawnSync(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${result.status ?? result.signal ?? result.error?.message}): ${result.stderr}`);
  }
  return ms;
}

/** An OCI bundle in `dir` whose rootfs is Debian's static busybox, running `command` (scripts/make-bundle.mjs). */
export function makeBundle(repo, dir, ...command) {
  execFileSync(process.execPath, [path.join(repo, 'scripts', 'make-bundle.mjs'), dir, ...command]);
}

/**
 * An OCI image archive (oci-layout, index.json, blobs/sha256/…) at `out`, named `name`, whose single layer is the
 * directory `rootfs`; `scratch` is an empty-or-missing directory for the layout and the layer tarball. `entrypoint`
 * and `cmd` are the image config's (default: Cmd ["sh"]).
 */
export async function buildImage({ rootfs, out, name, scratch, entrypoint, cmd }) {
  const layout = path.join(scratch, 'layout');
  const blobs = path.join(layout, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const put = (data) => {
    const hex = createHash('sha256').update(data).digest('hex');
    writeFileSync(path.join(blobs, hex), data);
    return { digest: `sha256:${hex}`, size: data.length };
  };
  const layerFile = path.join(scratch, 'layer.tar');
  await tar.c({ file: layerFile, cwd: rootfs, portable: true }, readdirSync(rootfs));
  const layer = put(readFileSync(layerFile));
  const config = put(Buffer.from(JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      ...(entrypoint ? { Entrypoint: entrypoint } : {}),
      Cmd: cmd ?? (entrypoint ? [] : ['sh']),
    },
    rootfs: { type: 'layers', diff_ids: [layer.digest] }, // uncompressed: diff id = digest
  })));
  const manifest = put(Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
  })));
  writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(path.join(layout, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'io.containerd.image.name': name } }],
  }));
  await tar.c({ file: out, cwd: layout, portable: true }, ['oci-layout', 'index.json', 'blobs']);
}

/** Lazily unmounts every mount point under `dir` (deepest first), e.g. snapshots a killed containerd left behind. */
export function unmountUnder(dir) {
  spawnSync('sh', ['-c', `grep -o ' ${dir}/[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l`]);
}

const isAlive = (pid) => {
  try {
    return !/^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

/** The shim daemons (containerd-shim-*-v2) serving the containerd on `sock`: their -address is that socket. */
function shimsOf(sock) {
  return readdirSync('/proc').filter((e) => /^\d+$/.test(e)).flatMap((pid) => {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      const at = argv.indexOf('-address');
      const daemon = at > 0 && argv[at + 1] === sock && !['start', 'delete'].includes(argv[argv.length - 1]); // not a command
      return daemon ? [{ pid: Number(pid), argv }] : [];
    } catch {
      return [];
    }
  });
}

/**
 * Ends the shims a stopped containerd left (a run cut short can leave one whose container containerd never saw, and
 * shims outlive containerd): SIGTERM (a shim then stops its VM), then the shim's own `delete` command, as containerd
 * runs it after a shim died, to remove what it left (pod records, mounts).
 */
async function reapShims(sock, env, fallbackCwd) {
  for (let waited = 0; shimsOf(sock).length > 0 && waited < 3000; waited += 200) await sleep(200); // exiting anyway?
  for (const { pid, argv } of shimsOf(sock)) {
    const id = argv[argv.indexOf('-id') + 1];
    process.stderr.write(`bench: ending shim ${pid} (${id}) left by containerd\n`);
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone
    }
    for (let waited = 0; isAlive(pid) && waited < 15_000; waited += 200) await sleep(200);
    if (isAlive(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    const at = argv.indexOf('-bundle');
    const bundle = at > 0 ? argv[at + 1] : undefined;
    spawnSync(argv[0], [...argv.slice(1), 'delete'], {
      cwd: bundle && existsSync(bundle) ? bundle : fallbackCwd,
      env,
      stdio: 'ignore',
      timeout: 60_000,
    });
  }
}

/**
 * Starts a private containerd (CRI off unless `cri`) whose root, state, config and socket (c.sock) live in `dir`, and
 * waits until it answers. `env` is containerd's environment, so its PATH decides which containerd-shim-*-v2 binaries
 * it runs, and the shims inherit it. `detached` puts it in its own process group (a terminal's Ctrl-C then does not
 * reach it, and the caller's clean-up can still talk to it). `extraConfig`: config.toml text appended (e.g. the CRI
 * plugin's tables). `logFile`: containerd's stderr goes there (appended) — it carries the shims' log lines, which
 * containerd copies from each shim's log FIFO. Returns { sock, ctrArgs, ctr, removeEverything, stop }.
 */
export async function startContainerd({ dir, namespace, env = process.env, detached = false, cri = false, extraConfig = '', logFile }) {
  mkdirSync(dir, { recursive: true });
  const sock = path.join(dir, 'c.sock');
  const config = path.join(dir, 'config.toml');
  writeFileSync(config, [
    'version = 2',
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    ...(cri ? [] : ['disabled_plugins = ["io.containerd.grpc.v1.cri"]']),
    '[grpc]',
    `  address = "${sock}"`,
    extraConfig,
    '',
  ].join('\n'));
  // With a log file, containerd writes its stderr there itself: a pipe that this process does not drain while it
  // waits in spawnSync could fill and stall containerd.
  const logFd = logFile ? openSync(logFile, 'a') : undefined;
  const child = spawn('containerd', ['--config', config], { env, stdio: ['ignore', 'ignore', logFd ?? 'pipe'], detached });
  if (logFd !== undefined) closeSync(logFd);
  let log = '';
  child.stderr?.on('data', (d) => (log = (log + d).slice(-4000)));
  child.on('error', (err) => (log += `\n${err.message}`));
  const ctrArgs = (args) => ['-a', sock, '-n', namespace, ...args];
  const ctr = (args) => spawnSync('ctr', ctrArgs(args), { encoding: 'utf8' });
  const removeEverything = () => {
    for (const t of ctr(['task', 'ls', '-q']).stdout?.split('\n').filter(Boolean) ?? []) ctr(['task', 'rm', '-f', t]);
    for (const c of ctr(['c', 'ls', '-q']).stdout?.split('\n').filter(Boolean) ?? []) ctr(['c', 'rm', c]);
  };
  const running = () => child.pid !== undefined && child.exitCode === null && child.signalCode === null;
  const empty = () => !ctr(['task', 'ls', '-q']).stdout?.trim() && !ctr(['c', 'ls', '-q']).stdout?.trim();
  /**
   * Removes every task and container (again while a create cut short settles), stops containerd, ends the shims it
   * left and unmounts what is left under `dir` (not removed).
   */
  const stop = async () => {
    try {
      if (running()) {
        removeEverything();
        for (let tries = 0; tries < 10 && !empty(); tries++) {
          await sleep(500);
          removeEverything();
        }
      }
    } finally {
      if (running()) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(killer);
      }
      await reapShims(sock, env, dir);
      // containerd's snapshot mounts go with its tasks; anything left under the directory is unmounted.
      unmountUnder(dir);
    }
  };
  for (let waited = 0; ctr(['version']).status !== 0; waited += 200) {
    if (!running() || waited > 20_000) {
      await stop();
      if (logFile) log += readFileSync(logFile, 'utf8').slice(-4000);
      throw new Error(`containerd did not start:\n${log}`);
    }
    await sleep(200);
  }
  return { sock, ctrArgs, ctr, removeEverything, stop };
}

/**
 * Turns SIGINT/SIGTERM/SIGHUP into a flag checked between runs, so a bench's clean-up always runs (a second signal
 * leaves at once). `check()` lets a pending handler run (the runs are synchronous), then throws if a signal came;
 * `signal()` says which came, if any.
 */
export function interruption(log) {
  let interrupted;
  const onSignal = (signal) => {
    if (!interrupted) log(`${signal}: stopping after the current step and cleaning up (again to leave at once)`);
    else process.exit(130);
    interrupted = signal;
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, onSignal);
  return {
    check: async () => {
      await new Promise((r) => setImmediate(r));
      if (interrupted) throw new Error(`interrupted (${interrupted})`);
    },
    signal: () => interrupted,
  };
}
