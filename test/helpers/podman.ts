// podman 4.3 (Debian's) for integration tests, isolated from the host's defaults: its own storage (--root,
// --runroot), temp dir, containers.conf (CONTAINERS_CONF: CNI backend, a test-owned network config dir, cgroupfs,
// file events), storage.conf and registries.conf; and a test-owned CNI bridge network on a /24 the test picks free.
// The bridge is made here with an address of that subnet, so the bridge plugin runs with isGateway and ipMasq off:
// CNI never touches ip_forward and adds no NAT towards anything outside this machine (portmap's DNAT to the container
// stays on it). Images come from `podman import` of a busybox rootfs built here (no registry).
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { busyboxRootfsTar, runTool, type ToolResult } from './engine-net.js';
import { addedIptablesLines, links, removePortmapChains, snapshotHostNet, type HostNetSnapshot } from './host-net.js';
import { hullBin, processesMentioning, repo } from './hull.js';
import { needRoot } from './prerequisites.js';

export const CNI_BIN = '/usr/lib/cni';
/** hull's default --root, which podman leaves it. */
export const HULL_ROOT = '/run/hull';
export const NETWORK = 'hullpodman';
/** The MTU our CNI network gives its interfaces: not 1500, so a guest that copied nothing would show. */
export const NETWORK_MTU = 1400;

export function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** What the podman suite needs, each missing one named with what installs it (see prerequisitesMet). */
export function podmanPrerequisites(): (string | false)[] {
  return [
    needRoot(),
    !have('podman') && 'podman (apt-get install podman, or scripts/setup.sh)',
    !have('conmon') && 'conmon (apt-get install conmon)',
    !['bridge', 'host-local', 'portmap'].every((p) => existsSync(path.join(CNI_BIN, p))) &&
      'CNI plugins in /usr/lib/cni (apt-get install containernetworking-plugins)',
    !have('iptables-save') && 'iptables (apt-get install iptables)',
    !have('ip') && 'ip (apt-get install iproute2)',
    !have('nsenter') && 'nsenter (apt-get install util-linux)',
    !existsSync('/bin/busybox') && '/bin/busybox (apt-get install busybox-static)',
    !existsSync(path.join(repo, 'dist', 'hull.mjs')) && 'dist/hull.mjs (npm run build)',
    !existsSync(path.join(repo, 'build', 'guest', 'current', 'manifest.json')) && 'the guest image (npm run build)',
  ];
}

/** A podman command that failed or timed out. */
export class PodmanError extends Error {
  constructor(readonly args: string[], readonly result: PodmanResult) {
    super(`podman ${args.join(' ')}: exit ${result.code}${result.timedOut ? ' (timed out)' : ''}: ${result.stderr.trim() || result.stdout.trim()}`);
    this.name = 'PodmanError';
  }
}

export type PodmanResult = ToolResult;

export interface PodmanRunOptions {
  /** `--runtime` for this call: a path, a name, or null for podman's own choice. Default: <repo>/bin/hull. */
  runtime?: string | null;
  /** Leave CONTAINERS_CONF unset and pass the isolation as flags (so podman reads the system's containers.conf and
   *  its containers.conf.d drop-ins, which CONTAINERS_CONF switches off). */
  systemConf?: boolean;
  timeoutMs?: number;
}

/** One test's podman world: storage, config, CNI network and bridge; torn down by destroy(). */
export class PodmanWorld {
  readonly storage: string;
  readonly runroot: string;
  readonly tmpdir: string;
  readonly netDir: string;
  readonly ipamDir: string;
  readonly hullLog: string;
  readonly conf: string;
  private destroyed = false;

  private constructor(
    readonly dir: string,
    readonly bridge: string,
    /** e.g. "10.98.17" for 10.98.17.0/24; the bridge has .1. */
    readonly subnetPrefix: string,
    readonly before: HostNetSnapshot,
  ) {
    this.storage = path.join(dir, 'storage');
    this.runroot = path.join(dir, 'run');
    this.tmpdir = path.join(dir, 'tmp');
    this.netDir = path.join(dir, 'net.d');
    this.ipamDir = path.join(dir, 'ipam');
    this.hullLog = path.join(dir, 'hull.log');
    this.conf = path.join(dir, 'containers.conf');
  }

  get subnet(): string {
    return `${this.subnetPrefix}.0/24`;
  }

  /** Snapshots the host network, picks a free /24, writes the config and makes the bridge. */
  static create(): PodmanWorld {
    const before = snapshotHostNet();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'hull-podman-'));
    const world = new PodmanWorld(dir, `hullpm${process.pid % 100000}`, freeSubnetPrefix(), before);
    try {
      world.writeConfig();
      ip(['link', 'add', world.bridge, 'type', 'bridge']);
      ip(['link', 'set', world.bridge, 'mtu', String(NETWORK_MTU)]);
      ip(['addr', 'add', `${world.subnetPrefix}.1/24`, 'dev', world.bridge]);
      ip(['link', 'set', world.bridge, 'up']);
    } catch (err) {
      world.destroy();
      throw err;
    }
    return world;
  }

  private writeConfig(): void {
    for (const d of [this.storage, this.runroot, this.tmpdir, this.netDir, this.ipamDir]) mkdirSync(d, { recursive: true });
    writeFileSync(
      this.conf,
      [
        '# hull tests: podman isolated from the host defaults',
        '[containers]',
        // podman asks for nofile/nproc hard limits of 1048576/unlimited as root; runc (the baseline) cannot raise
        // them in this unprivileged machine container ("error setting rlimit type 7")
        'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]',
        '[engine]',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        `tmp_dir = "${this.tmpdir}"`,
        '[network]',
        'network_backend = "cni"',
        `network_config_dir = "${this.netDir}"`,
        `cni_plugin_dirs = ["${CNI_BIN}"]`,
        `default_network = "${NETWORK}"`,
        '',
      ].join('\n'),
    );
    writeFileSync(path.join(this.dir, 'storage.conf'), `[storage]\ndriver = "overlay"\ngraphroot = "${this.storage}"\nrunroot = "${this.runroot}"\n`);
    writeFileSync(path.join(this.dir, 'registries.conf'), 'unqualified-search-registries = []\n');
    const conflist = {
      cniVersion: '0.4.0',
      name: NETWORK,
      plugins: [
        {
          type: 'bridge',
          bridge: this.bridge,
          isGateway: false, // true would write ip_forward=1 and put the gateway address on the bridge itself
          ipMasq: false,
          hairpinMode: true,
          mtu: NETWORK_MTU,
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: this.subnet, rangeStart: `${this.subnetPrefix}.10`, rangeEnd: `${this.subnetPrefix}.200` }]],
            dataDir: this.ipamDir,
          },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    };
    writeFileSync(path.join(this.netDir, `${NETWORK}.conflist`), JSON.stringify(conflist, null, 2));
  }

  /** The global flags every call gets: storage, temp dir and network config of our own. */
  private globalArgs(options: PodmanRunOptions): string[] {
    const runtime = options.runtime === undefined ? hullBin : options.runtime;
    const args = ['--root', this.storage, '--runroot', this.runroot, '--storage-driver', 'overlay', '--tmpdir', this.tmpdir];
    if (options.systemConf) {
      args.push('--network-config-dir', this.netDir, '--network-backend', 'cni', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file');
    }
    // podman 4.3 passes no --log to the runtime by itself: ask for hull's log in a file of ours
    if (runtime !== null) args.push('--runtime', runtime, '--runtime-flag', `log=${this.hullLog}`, '--runtime-flag', 'log-format=json');
    return args;
  }

  env(options: PodmanRunOptions = {}): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      CONTAINERS_STORAGE_CONF: path.join(this.dir, 'storage.conf'),
      CONTAINERS_REGISTRIES_CONF: path.join(this.dir, 'registries.conf'),
    };
    if (options.systemConf) delete env.CONTAINERS_CONF;
    else env.CONTAINERS_CONF = this.conf;
    return env;
  }

  /** Runs podman to completion (SIGKILLed after timeoutMs). */
  podman(args: string[], options: PodmanRunOptions = {}): Promise<PodmanResult> {
    return runTool('podman', [...this.globalArgs(options), ...args], { env: this.env(options), timeoutMs: options.timeoutMs ?? 90_000 });
  }

  /** Runs podman and throws a PodmanError unless it exits 0; returns stdout. */
  async podmanOk(args: string[], options: PodmanRunOptions = {}): Promise<string> {
    const r = await this.podman(args, options);
    if (r.code !== 0) throw new PodmanError(args, r);
    return r.stdout;
  }

  /** `podman import` of a busybox-static rootfs (every applet, httpd included) with `files` written into it. */
  async importBusybox(name: string, files: Record<string, string> = {}): Promise<void> {
    const tarball = await busyboxRootfsTar(this.dir, files);
    try {
      await this.podmanOk(['import', '--change', 'CMD ["sh"]', tarball, name], { runtime: null });
    } finally {
      rmSync(tarball, { force: true });
    }
  }

  /** The last lines of hull's log (JSON lines, from --runtime-flag log=…). */
  hullLogTail(lines = 30): string {
    if (!existsSync(this.hullLog)) return '(no hull log)';
    return readFileSync(this.hullLog, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  }

  /** What is left of one container on the host after `podman rm`: its processes (conmon, the hull monitor, QEMU,
   *  virtiofsd, hull-vsock-backend all carry its id), hull's state dir, its network namespace file, its IPAM lease,
   *  its CNI result cache, and iptables lines naming it. */
  containerLeftovers(id: string, netns: string | undefined): string[] {
    const out: string[] = [];
    // podman passes no --root, so hull keeps the sandbox in /run/hull/<id> and its sockets in /run/hull/s/<hash>
    // (hypervisor/paths.ts socketDirFor: 16 hex of sha256 of the sandbox dir), which the vsock backend's argv names
    const sandbox = path.join(HULL_ROOT, id);
    const socketDir = path.join(HULL_ROOT, 's', createHash('sha256').update(sandbox).digest('hex').slice(0, 16));
    for (const marker of [id, socketDir]) out.push(...processesMentioning(marker).map((p) => `process ${p.slice(0, 200)}`));
    for (const d of [sandbox, socketDir]) if (existsSync(d)) out.push(`hull state ${d}`);
    if (netns && existsSync(netns)) out.push(`netns ${netns}`);
    if (netns && readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${netns} `)) out.push(`nsfs mount ${netns}`);
    const leases = path.join(this.ipamDir, NETWORK);
    if (existsSync(leases)) {
      for (const f of readdirSync(leases)) if (/^\d+\.\d+\.\d+\.\d+$/.test(f)) out.push(`IPAM lease ${f}`);
    }
    const results = '/var/lib/cni/results';
    if (existsSync(results)) for (const f of readdirSync(results)) if (f.includes(id)) out.push(`CNI result cache ${f}`);
    out.push(...addedIptablesLines(this.before, (l) => l.includes(id) || l.includes(this.subnetPrefix)).map((l) => `iptables ${l}`));
    return out;
  }

  /** The host network now against before the world existed: links (the bridge itself excepted until destroy),
   *  iptables lines of CNI (portmap's own chains excepted until destroy) or of our subnet, ip_forward, network
   *  namespace files. */
  hostNetChanges(): string[] {
    const now = snapshotHostNet();
    const out: string[] = [];
    for (const l of now.links) if (!this.before.links.includes(l) && (this.destroyed || l !== this.bridge)) out.push(`link ${l}`);
    for (const f of ['v4', 'v6'] as const) {
      if (now.ipForward[f] !== this.before.ipForward[f]) out.push(`ip_forward ${f}: ${this.before.ipForward[f]} → ${now.ipForward[f]}`);
    }
    // portmap keeps its CNI-HOSTPORT-* chains after the last DEL; destroy() removes them, so only then are they a leak
    const portmapStatic = (l: string): boolean => l.includes('CNI-HOSTPORT-') && !l.includes('CNI-DN-');
    const ours = (l: string): boolean =>
      (l.includes('CNI-') && (this.destroyed || !portmapStatic(l))) || l.includes(this.subnetPrefix) || l.includes(this.bridge);
    out.push(...addedIptablesLines(this.before, ours).map((l) => `iptables ${l}`));
    for (const f of now.netnsFiles) if (!this.before.netnsFiles.includes(f) && f.startsWith('netns-')) out.push(`netns file /run/netns/${f}`);
    return out;
  }

  /** Removes every container of this world (bounded), portmap's chains if they are new, the bridge, /run/netns if
   *  we made it and it is empty, and the temp dir. Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    const errors: string[] = [];
    if (existsSync(this.storage)) {
      const r = await this.podman(['rm', '--force', '--all', '--time', '2'], { timeoutMs: 60_000 }).catch((e: unknown) => String(e));
      if (typeof r === 'string') errors.push(r);
      else if (r.code !== 0) errors.push(`podman rm --all: ${r.stderr.trim()}`);
    }
    try {
      removePortmapChains(this.before);
    } catch (err) {
      errors.push(String(err));
    }
    if (links().includes(this.bridge)) {
      try {
        ip(['link', 'del', this.bridge]);
      } catch (err) {
        errors.push(String(err));
      }
    }
    if (!this.before.netnsDirExisted && existsSync('/run/netns') && readdirSync('/run/netns').length === 0) rmdirSync('/run/netns');
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.split(' ')[4]?.startsWith(this.dir));
    if (mounts.length > 0) errors.push(`mounts left under ${this.dir}: ${mounts.length}`);
    else rmSync(this.dir, { recursive: true, force: true });
    if (errors.length > 0) throw new Error(`podman world teardown: ${errors.join('; ')}`);
  }
}

function ip(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim() || r.error?.message}`);
}

/** A 10.98.N.0/24 that no host route or address touches yet (N from our pid first, then the rest, in order). */
function freeSubnetPrefix(): string {
  const used = spawnSync('ip', ['-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' }).stdout + spawnSync('ip', ['-4', 'addr'], { encoding: 'utf8' }).stdout;
  const start = process.pid % 200;
  for (let i = 0; i < 200; i++) {
    const prefix = `10.98.${(start + i) % 200 + 20}`;
    if (!used.includes(`${prefix}.`)) return prefix;
  }
  throw new Error('no free 10.98.x.0/24 for the podman test network');
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export const randomToken = (): string => randomBytes(12).toString('hex');
