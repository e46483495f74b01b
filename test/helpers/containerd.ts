// A private containerd 1.6 (Debian's) for integration tests: its own root, state, socket and config.toml under a
// temp dir, with bin/ first on PATH so it finds containerd-shim-hull-v2; plus a busybox OCI image built here with
// `tar` (no registry) and the checks for what a test left behind.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tar from 'tar';
import { runTool } from './engine-net.js';
import { repo } from './hull.js';
import { needRoot } from './prerequisites.js';

export const RUNTIME = 'io.containerd.hull.v2';
export const POD_ROOT = '/run/hull/containerd';

export function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** What the containerd suites need; each missing one is named (see prerequisitesMet). */
export function containerdPrerequisites(): (string | false)[] {
  return [
    needRoot(),
    !have('containerd') && 'containerd (apt-get install containerd)',
    !have('ctr') && 'ctr (apt-get install containerd)',
    !existsSync('/bin/busybox') && '/bin/busybox (apt-get install busybox-static)',
    !existsSync(path.join(repo, 'dist', 'containerd-shim-hull-v2.mjs')) && 'dist/containerd-shim-hull-v2.mjs (npm run build)',
    !existsSync(path.join(repo, 'build', 'guest', 'current', 'manifest.json')) && 'guest image (npm run build)',
  ];
}

export interface ImageOptions {
  /** OCI config Entrypoint / Cmd (default: Cmd ["sh"]). */
  entrypoint?: string[];
  cmd?: string[];
}

/** An OCI image archive (oci-layout, index.json, blobs/sha256/…; no leading ./) holding Debian's static busybox. */
export async function buildBusyboxImage(out: string, name: string, options: ImageOptions = {}): Promise<void> {
  const work = mkdtempSync(path.join(os.tmpdir(), 'hull-img-'));
  try {
    const root = path.join(work, 'root');
    const dirs = ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root'];
    for (const d of dirs) mkdirSync(path.join(root, d), { recursive: true });
    chmodSync(path.join(root, 'tmp'), 0o1777);
    copyFileSync('/bin/busybox', path.join(root, 'bin/busybox'));
    chmodSync(path.join(root, 'bin/busybox'), 0o755);
    for (const applet of ['sh', 'echo', 'true', 'sleep', 'cat', 'ls', 'ps', 'id', 'hostname', 'wc', 'head', 'yes', 'tee', 'sha256sum', 'env', 'mkfifo', 'dd', 'mkdir', 'ip', 'wget', 'httpd', 'timeout']) {
      symlinkSync('busybox', path.join(root, 'bin', applet));
    }
    writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\n');
    const layout = path.join(work, 'layout');
    const blobs = path.join(layout, 'blobs', 'sha256');
    mkdirSync(blobs, { recursive: true });
    const put = (data: Buffer): { digest: string; size: number } => {
      const hex = createHash('sha256').update(data).digest('hex');
      writeFileSync(path.join(blobs, hex), data);
      return { digest: `sha256:${hex}`, size: data.length };
    };
    const layerFile = path.join(work, 'layer.tar');
    await tar.c({ file: layerFile, cwd: root, portable: true }, dirs);
    const layer = put(readFileSync(layerFile));
    const config = put(
      Buffer.from(
        JSON.stringify({
          architecture: 'amd64',
          os: 'linux',
          config: {
            Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
            ...(options.entrypoint ? { Entrypoint: options.entrypoint } : {}),
            Cmd: options.cmd ?? (options.entrypoint ? [] : ['sh']),
          },
          rootfs: { type: 'layers', diff_ids: [layer.digest] }, // uncompressed layer: diff id = digest
        }),
      ),
    );
    const manifest = put(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
          layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
        }),
      ),
    );
    writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    writeFileSync(
      path.join(layout, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            ...manifest,
            annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': 'latest' },
          },
        ],
      }),
    );
    await tar.c({ file: out, cwd: layout, portable: true }, ['oci-layout', 'index.json', 'blobs']);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Runs a command to completion, collecting its output; SIGKILLed after timeoutMs. */
export async function runCommand(command: string, args: string[], input = '', timeoutMs = 90_000): Promise<Result> {
  const { code, stdout, stderr, ms } = await runTool(command, args, { input, timeoutMs });
  return { code, stdout, stderr, ms };
}

export interface PodRecord {
  dir: string;
  /** The VM as the tests look at it: the VMM's pid (pod.json `vm.vmm.pid`), while the VM runs. */
  vm: { vmm?: number };
  shimPid: number;
  containers: Array<{ id: string }>;
  /** The pod's network namespace and hull's taps in it, while the VM has them. */
  network?: { netns: string };
}

/** The shims' pod records (pod.json under /run/hull/containerd/<hash>/). */
export function podRecords(): PodRecord[] {
  if (!existsSync(POD_ROOT)) return [];
  const out: PodRecord[] = [];
  for (const d of readdirSync(POD_ROOT).map((name) => path.join(POD_ROOT, name))) {
    try {
      const rec = JSON.parse(readFileSync(path.join(d, 'pod.json'), 'utf8')) as Omit<PodRecord, 'dir' | 'vm'> & {
        vm: { vmm?: { pid: number } };
      };
      out.push({ ...rec, dir: d, vm: rec.vm.vmm ? { vmm: rec.vm.vmm.pid } : {} });
    } catch {
      // no record (yet, or any more)
    }
  }
  return out;
}

/** The record of the pod that runs `id`, once its VM is up. */
export const podOf = (id: string): PodRecord | undefined =>
  podRecords().find((r) => r.vm.vmm && r.containers?.some((c) => c.id === id));

export interface ContainerdOptions {
  /** Extra config.toml text (tables after the base config). */
  extraConfig?: string;
  /** Keep the CRI plugin (default: disabled). */
  cri?: boolean;
  /** Extra environment for the daemon, which its shims inherit (e.g. HULL_POOL_ROOT). */
  env?: Record<string, string>;
}

/** A containerd of our own, under a fresh temp dir. */
export class PrivateContainerd {
  readonly sock: string;
  readonly log: string;
  readonly config: string;
  private child: ChildProcess | undefined;
  private env: Record<string, string> = {};

  private constructor(readonly tmp: string, private readonly namespace: string) {
    this.sock = path.join(tmp, 'c.sock');
    this.log = path.join(tmp, 'containerd.log');
    this.config = path.join(tmp, 'config.toml');
  }

  static async start(namespace: string, options: ContainerdOptions = {}): Promise<PrivateContainerd> {
    const c = new PrivateContainerd(mkdtempSync(path.join(os.tmpdir(), 'hull-ctd-')), namespace);
    writeFileSync(
      c.config,
      [
        'version = 2',
        `root = "${c.tmp}/root"`,
        `state = "${c.tmp}/state"`,
        ...(options.cri ? [] : ['disabled_plugins = ["io.containerd.grpc.v1.cri"]']),
        '[grpc]',
        `  address = "${c.sock}"`,
        '[debug]',
        '  level = "debug"',
        options.extraConfig ?? '',
        '',
      ].join('\n'),
    );
    writeFileSync(c.log, '');
    c.env = options.env ?? {};
    await c.launch();
    return c;
  }

  /** Starts the daemon and waits until it answers. */
  async launch(): Promise<void> {
    const child = spawn('containerd', ['--config', this.config], {
      env: { ...process.env, ...this.env, PATH: `${path.join(repo, 'bin')}:${process.env.PATH}` },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.child = child;
    child.stderr!.on('data', (d: Buffer) => writeFileSync(this.log, d, { flag: 'a' }));
    await until('containerd to listen', async () => {
      if (child.exitCode !== null) throw new Error(`containerd exited ${child.exitCode}; see ${this.log}`);
      return (await this.ctr(['version'])).code === 0 || undefined;
    });
  }

  /** Stops the daemon (SIGTERM): shims and their tasks keep running, as with a containerd upgrade. */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }

  ctr(args: string[], input = '', timeoutMs = 90_000): Promise<Result> {
    return runCommand('ctr', ['-a', this.sock, '-n', this.namespace, ...args], input, timeoutMs);
  }

  async taskStatus(id: string): Promise<string | undefined> {
    const r = await this.ctr(['task', 'ls']);
    const line = r.stdout.split('\n').find((l) => l.split(/\s+/)[0] === id);
    return line?.split(/\s+/)[2];
  }

  /** Imports a busybox image built here (see buildBusyboxImage) under `name`. */
  async importBusybox(name: string, options: ImageOptions = {}): Promise<void> {
    const archive = path.join(this.tmp, `image-${createHash('sha256').update(name).digest('hex').slice(0, 12)}.tar`);
    await buildBusyboxImage(archive, name, options);
    const imported = await this.ctr(['images', 'import', archive]);
    if (imported.code !== 0) throw new Error(`ctr images import ${name} failed: ${imported.stderr}`);
  }

  /** Removes whatever tasks and containers a test left (a failed assertion must not leave its VM to the next test). */
  async removeAll(): Promise<void> {
    const tasks = (await this.ctr(['task', 'ls', '-q']).catch(() => undefined))?.stdout.split('\n').filter(Boolean) ?? [];
    for (const t of tasks) await this.ctr(['task', 'rm', '-f', t]);
    const containers = (await this.ctr(['c', 'ls', '-q']).catch(() => undefined))?.stdout.split('\n').filter(Boolean) ?? [];
    for (const c of containers) await this.ctr(['c', 'rm', c]);
  }

  /** Our processes (shims for this containerd, VMs under the pod root, anything else started on files of our temp
   *  dir — logging binaries, ctr clients — but the daemon itself) and mounts still around. */
  leftovers(): string[] {
    const found: string[] = [];
    for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      let cmd = '';
      try {
        cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      } catch {
        continue;
      }
      if (Number(pid) === process.pid || Number(pid) === this.child?.pid) continue;
      if (cmd.includes(this.tmp) || (cmd.includes(POD_ROOT) && /qemu|virtiofsd|vsock-backend/.test(cmd))) {
        found.push(`process ${pid}: ${cmd.slice(0, 160)}`);
      }
    }
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const point = line.split(' ')[4];
      if (point && (point.startsWith(this.tmp) || point.startsWith(POD_ROOT))) found.push(`mount ${point}`);
    }
    return found;
  }

  /** Removes leftovers of a failed run, stops the daemon and deletes the temp dir. */
  async destroy(): Promise<void> {
    await this.removeAll();
    await this.stop();
    // containerd leaves its snapshots mounted only while tasks exist; a dead shim's rootfs mount is the shim's job.
    spawnSync('sh', ['-c', `grep -o ' ${this.tmp}[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l`]);
    rmSync(this.tmp, { recursive: true, force: true });
  }
}
