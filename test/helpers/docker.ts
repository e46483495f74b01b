// A private dockerd (Debian's docker.io 20.10) for integration tests, isolated from any system Docker: its own
// --data-root, --exec-root, --pidfile, socket, trust key, daemon.json (which registers <repo>/bin/hull as runtime
// "hull") and a bridge of its own on a /24 the test picks free. The network settings keep every packet on this
// machine: --iptables=false (Docker adds no chain, no DNAT and no NAT at all: `-p` is served by its userland proxy,
// docker-proxy, listening on the host), --ip-masq=false, --ip-forward=false (ip_forward is left as it is). Images come
// from `docker import` of a busybox rootfs built here (no registry). destroy() removes every container, stops dockerd
// (and the containerd it started) and removes the bridge; leftovers() names whatever remains.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { socketDirFor } from '../../hypervisor/paths.js';
import { busyboxRootfsTar, runTool, type ToolResult } from './engine-net.js';
import { addedIptablesLines, links, snapshotHostNet, type HostNetSnapshot } from './host-net.js';
import { hullBin, processesMentioning, repo } from './hull.js';
import { needRoot } from './prerequisites.js';

/** Debian's binaries, by absolute path: /usr/local/bin/docker on these machines is some other docker CLI. */
export const DOCKER = '/usr/bin/docker';
export const DOCKERD = '/usr/sbin/dockerd';
export const DOCKER_PROXY = '/usr/sbin/docker-proxy';
/** The runtime name daemon.json registers hull under. */
export const RUNTIME = 'hull';
/** Where dockerd makes its plugin socket directory whatever --exec-root says. */
const RUN_DOCKER = '/run/docker';

export function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** What the Docker suite needs, each missing one named with what installs it (see prerequisitesMet). */
export function dockerPrerequisites(): (string | false)[] {
  return [
    needRoot(),
    !existsSync(DOCKERD) && `${DOCKERD} (apt-get install docker.io, or scripts/setup.sh)`,
    !existsSync(DOCKER) && `${DOCKER} (apt-get install docker.io)`,
    !existsSync(DOCKER_PROXY) && `${DOCKER_PROXY} (apt-get install docker.io)`,
    !have('containerd') && 'containerd (apt-get install containerd)',
    !have('iptables-save') && 'iptables (apt-get install iptables)',
    !have('ip') && 'ip (apt-get install iproute2)',
    !have('nsenter') && 'nsenter (apt-get install util-linux)',
    !existsSync('/bin/busybox') && '/bin/busybox (apt-get install busybox-static)',
    !existsSync(path.join(repo, 'dist', 'hull.mjs')) && 'dist/hull.mjs (npm run build)',
    !existsSync(path.join(repo, 'build', 'guest', 'current', 'manifest.json')) && 'the guest image (npm run build)',
  ];
}

export type DockerResult = ToolResult;

/** A docker command that failed or timed out. */
export class DockerError extends Error {
  constructor(readonly args: string[], readonly result: DockerResult) {
    super(`docker ${args.join(' ')}: exit ${result.code}${result.timedOut ? ' (timed out)' : ''}: ${result.stderr.trim() || result.stdout.trim()}`);
    this.name = 'DockerError';
  }
}

/** One test file's dockerd; start() makes it, destroy() removes it and everything it made. */
export class PrivateDockerd {
  readonly sock: string;
  readonly dataRoot: string;
  readonly execRoot: string;
  readonly pidFile: string;
  readonly config: string;
  readonly log: string;
  /** The --root dockerd's containerd-shim-runc-v2 gives every runtime (hull keeps its sandboxes there). */
  readonly hullRoot: string;
  /** Ids of every container this daemon created (from `docker events`), for the leak checks. */
  readonly containerIds = new Set<string>();
  private daemon: ChildProcess | undefined;
  private events: ChildProcess | undefined;
  private destroyed = false;

  private constructor(
    readonly dir: string,
    readonly bridge: string,
    /** e.g. "10.213.17" for 10.213.17.0/24; the bridge has .1, containers get addresses from .2 up. */
    readonly subnetPrefix: string,
    readonly before: HostNetSnapshot,
    private readonly runDockerExisted: boolean,
  ) {
    this.sock = path.join(dir, 'docker.sock');
    this.dataRoot = path.join(dir, 'data');
    this.execRoot = path.join(dir, 'exec');
    this.pidFile = path.join(dir, 'docker.pid');
    this.config = path.join(dir, 'daemon.json');
    this.log = path.join(dir, 'dockerd.log');
    this.hullRoot = path.join(this.execRoot, 'runtime-runc', 'moby');
  }

  get subnet(): string {
    return `${this.subnetPrefix}.0/24`;
  }

  /** Snapshots the host network, makes the bridge, writes daemon.json, starts dockerd and waits until it answers. */
  static async start(): Promise<PrivateDockerd> {
    const before = snapshotHostNet();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'hull-dkd-'));
    const d = new PrivateDockerd(dir, `hulldk${process.pid % 100000}`, freeSubnetPrefix(), before, existsSync(RUN_DOCKER));
    try {
      ip(['link', 'add', d.bridge, 'type', 'bridge']);
      ip(['addr', 'add', `${d.subnetPrefix}.1/24`, 'dev', d.bridge]);
      ip(['link', 'set', d.bridge, 'up']);
      d.writeConfig();
      await d.launch();
    } catch (err) {
      await d.destroy().catch(() => undefined); // the start error is the one worth reporting
      throw err;
    }
    return d;
  }

  private writeConfig(): void {
    mkdirSync(path.join(this.dir, 'cli'), { recursive: true });
    const config = {
      runtimes: { [RUNTIME]: { path: hullBin } },
      // Network: our bridge, and nothing that reaches past this machine (see the header).
      bridge: this.bridge,
      iptables: false,
      'ip6tables': false,
      'ip-masq': false,
      'ip-forward': false,
      'userland-proxy': true,
      'userland-proxy-path': DOCKER_PROXY,
      // User-defined networks (none are made here) would come from a pool of ours too.
      'default-address-pools': [{ base: `${this.subnetPrefix}.0/24`, size: 24 }],
      // runc (the baseline) makes cgroups under this parent; destroy() removes it. hull makes none on the host.
      'cgroup-parent': `/${path.basename(this.dir)}`,
      'exec-opts': ['native.cgroupdriver=cgroupfs'],
      // The daemon's identity key, which 20.10 otherwise writes to /etc/docker/key.json.
      'deprecated-key-path': path.join(this.dir, 'key.json'),
      debug: true,
    };
    writeFileSync(this.config, `${JSON.stringify(config, null, 2)}\n`);
    writeFileSync(this.log, '');
  }

  private env(): NodeJS.ProcessEnv {
    // Debian's containerd, containerd-shim-runc-v2 and docker-proxy: nothing from /usr/local first.
    return { ...process.env, PATH: '/usr/sbin:/usr/bin:/sbin:/bin', DOCKER_CONFIG: path.join(this.dir, 'cli') };
  }

  private async launch(): Promise<void> {
    const args = [
      '--config-file', this.config,
      '--data-root', this.dataRoot,
      '--exec-root', this.execRoot,
      '--pidfile', this.pidFile,
      '-H', `unix://${this.sock}`,
    ];
    const daemon = spawn(DOCKERD, args, { env: this.env(), stdio: ['ignore', 'ignore', 'pipe'] });
    this.daemon = daemon;
    daemon.stderr!.on('data', (chunk: Buffer) => writeFileSync(this.log, chunk, { flag: 'a' }));
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (daemon.exitCode !== null || daemon.signalCode !== null) {
        throw new Error(`dockerd exited (${daemon.exitCode ?? daemon.signalCode}) during start: ${this.logTail(15)}`);
      }
      if (existsSync(this.sock) && (await this.docker(['version'], { timeoutMs: 10_000 })).code === 0) break;
      if (Date.now() > deadline) throw new Error(`dockerd did not answer within 60 s: ${this.logTail(15)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    // Every container this daemon creates, even one that `run --rm` removes at once, for the leak checks.
    const events = spawn(DOCKER, ['-H', `unix://${this.sock}`, 'events', '--filter', 'type=container', '--filter', 'event=create', '--format', '{{.Actor.ID}}'], {
      env: this.env(),
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    this.events = events;
    let pending = '';
    events.stdout!.setEncoding('utf8').on('data', (d: string) => {
      pending += d;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) if (/^[0-9a-f]{64}$/.test(l.trim())) this.containerIds.add(l.trim());
    });
  }

  /** Runs the docker CLI against this daemon to completion (SIGKILLed after timeoutMs, default 120 s). */
  docker(args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<DockerResult> {
    return runTool(DOCKER, ['-H', `unix://${this.sock}`, ...args], { env: this.env(), ...options, timeoutMs: options.timeoutMs ?? 120_000 });
  }

  /** docker, throwing a DockerError unless it exits 0; returns stdout. */
  async dockerOk(args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<string> {
    const r = await this.docker(args, options);
    if (r.code !== 0) throw new DockerError(args, r);
    return r.stdout;
  }

  /** `docker import` of a busybox-static rootfs (every applet, httpd included) with `files` written into it. */
  async importBusybox(name: string, files: Record<string, string> = {}): Promise<void> {
    const tarball = await busyboxRootfsTar(this.dir, files);
    try {
      await this.dockerOk(['import', '--change', 'CMD ["sh"]', tarball, name]);
    } finally {
      rmSync(tarball, { force: true });
    }
  }

  /** hull's log for a container: containerd-shim-runc-v2 passes `--log <bundle>/log.json`; gone after `docker rm`. */
  hullLogTail(id: string, lines = 30): string {
    const file = path.join(this.execRoot, 'containerd', 'daemon', 'io.containerd.runtime.v2.task', 'moby', id, 'log.json');
    if (!existsSync(file)) return `(no hull log at ${file})`;
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  }

  logTail(lines = 30): string {
    if (!existsSync(this.log)) return '(no dockerd log)';
    return readFileSync(this.log, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  }

  /** Removes every container (bounded: `docker rm -f` kills, hull delete --force tears the VM down). */
  async removeAll(): Promise<string[]> {
    const errors: string[] = [];
    const ids = (await this.docker(['ps', '-aq', '--no-trunc'], { timeoutMs: 30_000 })).stdout.split('\n').filter(Boolean);
    if (ids.length > 0) {
      const r = await this.docker(['rm', '-f', ...ids], { timeoutMs: 90_000 });
      if (r.code !== 0) errors.push(`docker rm -f: ${r.stderr.trim()}`);
    }
    return errors;
  }

  /** What one container left on the host after `docker rm`: processes naming it (the hull monitor, QEMU,
   *  virtiofsd, the vsock backend, its shim), hull's state and socket directories, its task directory. */
  containerLeftovers(id: string): string[] {
    const out: string[] = [];
    const sandbox = path.join(this.hullRoot, id);
    const socketDir = socketDirFor(sandbox);
    for (const marker of [id, socketDir]) out.push(...processesMentioning(marker).map((p) => `process ${p.slice(0, 200)}`));
    for (const d of [sandbox, socketDir]) if (existsSync(d)) out.push(`hull state ${d}`);
    const task = path.join(this.execRoot, 'containerd', 'daemon', 'io.containerd.runtime.v2.task', 'moby', id);
    if (existsSync(task)) out.push(`task dir ${task}`);
    for (const m of mountsUnder(this.dir)) if (m.includes(id)) out.push(`mount ${m}`);
    return out;
  }

  /** Everything of this daemon still on the host. While it runs: only what its containers would leave (the daemon,
   *  its containerd, its data-root mount and the bridge are expected). After destroy(): nothing at all. */
  leftovers(): string[] {
    const out: string[] = [];
    for (const id of this.containerIds) out.push(...this.containerLeftovers(id));
    if (this.destroyed) {
      out.push(...processesMentioning(this.dir).map((p) => `process ${p.slice(0, 200)}`));
      out.push(...mountsUnder(this.dir).map((m) => `mount ${m}`));
      if (existsSync(this.dir)) out.push(`dir ${this.dir}`);
      if (!this.runDockerExisted && existsSync(RUN_DOCKER)) out.push(`dir ${RUN_DOCKER}`);
      for (const c of this.cgroupDirs()) out.push(`cgroup ${c}`);
    } else if (existsSync(this.hullRoot)) {
      for (const d of readdirSync(this.hullRoot)) out.push(`hull state ${path.join(this.hullRoot, d)}`);
    }
    out.push(...processesMentioning(`-container-ip ${this.subnetPrefix}.`).map((p) => `process ${p.slice(0, 200)}`));
    if (!this.destroyed) for (const port of bridgePorts(this.bridge)) out.push(`link ${port} (on ${this.bridge})`);
    out.push(...this.hostNetChanges());
    return out;
  }

  /** The host network against before start(), as far as it is ours (other suites may change it meanwhile): the
   *  bridge once destroyed, iptables lines of Docker or of our subnet or bridge, ip_forward. The host ends of
   *  containers' veths are on the bridge: leftovers() checks those. */
  hostNetChanges(): string[] {
    const now = snapshotHostNet();
    const out: string[] = [];
    if (this.destroyed && now.links.includes(this.bridge)) out.push(`link ${this.bridge}`);
    for (const f of ['v4', 'v6'] as const) {
      if (now.ipForward[f] !== this.before.ipForward[f]) out.push(`ip_forward ${f}: ${this.before.ipForward[f]} → ${now.ipForward[f]}`);
    }
    const ours = (l: string): boolean => /DOCKER/.test(l) || l.includes(this.subnetPrefix) || l.includes(this.bridge);
    out.push(...addedIptablesLines(this.before, ours).map((l) => `iptables ${l}`));
    return out;
  }

  /** Stops dockerd (SIGTERM; it stops its containerd), bounded: SIGKILL for both after 30 s. */
  private async stopDaemon(): Promise<void> {
    this.events?.kill('SIGTERM');
    const daemon = this.daemon;
    this.daemon = undefined;
    if (!daemon || daemon.exitCode !== null || daemon.signalCode !== null) return;
    const exited = new Promise((r) => daemon.once('exit', r));
    daemon.kill('SIGTERM');
    const inTime = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 30_000))]);
    if (!inTime) {
      daemon.kill('SIGKILL');
      await exited;
    }
    // The containerd dockerd started (its config is under our exec root) must be gone too.
    const deadline = Date.now() + 15_000;
    while (processesMentioning(this.execRoot).some((p) => /containerd --config/.test(p)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** The cgroup-parent directories runc made (one per v1 hierarchy, and in the unified one). */
  private cgroupDirs(): string[] {
    const name = path.basename(this.dir);
    const out: string[] = [];
    const base = '/sys/fs/cgroup';
    if (!existsSync(base)) return out;
    for (const h of readdirSync(base)) {
      const d = path.join(base, h, name);
      if (existsSync(d)) out.push(d);
    }
    return out;
  }

  /** Removes every container, stops dockerd and its containerd, removes the bridge, the cgroup parent, /run/docker
   *  if it made it, and the temp dir (only when nothing is mounted under it). Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    const errors: string[] = [];
    if (this.daemon) errors.push(...(await this.removeAll().catch((e: unknown) => [String(e)])));
    await this.stopDaemon();
    this.destroyed = true;
    if (links().includes(this.bridge)) {
      try {
        ip(['link', 'del', this.bridge]);
      } catch (err) {
        errors.push(String(err));
      }
    }
    for (const c of this.cgroupDirs()) {
      try {
        rmdirSync(c);
      } catch (err) {
        errors.push(`rmdir ${c}: ${String(err)}`);
      }
    }
    if (!this.runDockerExisted && existsSync(RUN_DOCKER)) {
      // dockerd makes /run/docker/plugins whatever --exec-root says; empty unless a plugin ran
      for (const sub of ['plugins', '']) {
        const d = path.join(RUN_DOCKER, sub);
        if (existsSync(d) && readdirSync(d).length === 0) rmdirSync(d);
      }
    }
    // dockerd leaves its bind mount of the host's network namespace (<exec-root>/netns/default) when it stops.
    for (const m of mountsUnder(path.join(this.execRoot, 'netns'))) {
      const r = spawnSync('umount', [m], { encoding: 'utf8' });
      if (r.status !== 0) errors.push(`umount ${m}: ${r.stderr.trim() || r.error?.message}`);
    }
    const mounts = mountsUnder(this.dir);
    if (mounts.length > 0) errors.push(`mounts left under ${this.dir}: ${mounts.join(', ')}`);
    else rmSync(this.dir, { recursive: true, force: true });
    if (errors.length > 0) throw new Error(`private dockerd teardown: ${errors.join('; ')}`);
  }
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

/** The links enslaved to `bridge` (the host ends of containers' veths). */
function bridgePorts(bridge: string): string[] {
  const r = spawnSync('ip', ['-o', 'link', 'show', 'master', bridge], { encoding: 'utf8' });
  if (r.status !== 0) return [];
  return r.stdout
    .split('\n')
    .map((l) => l.split(': ')[1]?.split('@')[0] ?? '')
    .filter(Boolean);
}

function ip(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim() || r.error?.message}`);
}

/** A 10.213.N.0/24 that no host route or address touches yet (N from our pid first, then the rest, in order). */
function freeSubnetPrefix(): string {
  const used =
    spawnSync('ip', ['-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' }).stdout + spawnSync('ip', ['-4', 'addr'], { encoding: 'utf8' }).stdout;
  const start = process.pid % 200;
  for (let i = 0; i < 200; i++) {
    const prefix = `10.213.${((start + i) % 200) + 20}`;
    if (!used.includes(`${prefix}.`)) return prefix;
  }
  throw new Error('no free 10.213.x.0/24 for the Docker test bridge');
}
