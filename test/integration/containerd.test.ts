// containerd 1.6 (Debian's) driving containerd-shim-hull-v2 through `ctr`: a private containerd (own root, state,
// socket and config.toml under a temp dir) finds the shim on PATH (bin/), imports a busybox OCI archive built here,
// and runs tasks in microVMs. Each VM boot costs seconds under TCG, so cases share tasks where they can. Needs root,
// containerd + ctr, busybox-static, the guest image and dist/ (npm run build); skipped otherwise.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tar from 'tar';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import net from 'node:net';
import { TtrpcClient } from '../../protocol/ttrpc/client.js';
import { socketAddress } from '../../shim/containerd/address.js';
import { TASK_SERVICE, taskService } from '../../shim/containerd/protos.js';
import { repo } from '../helpers/hull.js';
import { prerequisitesMet } from '../helpers/prerequisites.js';

const IMAGE = 'docker.io/hull/busybox:latest';
const RUNTIME = 'io.containerd.hull.v2';
const NS = 'hulltest';
const POD_ROOT = '/run/hull/containerd';

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}
const missing = [
  process.getuid?.() !== 0 && 'root',
  !have('containerd') && 'containerd',
  !have('ctr') && 'ctr',
  !existsSync('/bin/busybox') && '/bin/busybox',
  !existsSync(path.join(repo, 'dist', 'containerd-shim-hull-v2.mjs')) && 'dist/containerd-shim-hull-v2.mjs (npm run build)',
  !existsSync(path.join(repo, 'build', 'guest', 'current', 'manifest.json')) && 'guest image (npm run build)',
].filter(Boolean);

/** An OCI image archive (oci-layout, index.json, blobs/sha256/…; no leading ./) holding Debian's static busybox. */
export async function buildBusyboxImage(out: string, name: string): Promise<void> {
  const work = mkdtempSync(path.join(os.tmpdir(), 'hull-img-'));
  try {
    const root = path.join(work, 'root');
    const dirs = ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root'];
    for (const d of dirs) mkdirSync(path.join(root, d), { recursive: true });
    chmodSync(path.join(root, 'tmp'), 0o1777);
    copyFileSync('/bin/busybox', path.join(root, 'bin/busybox'));
    chmodSync(path.join(root, 'bin/busybox'), 0o755);
    for (const applet of ['sh', 'echo', 'true', 'sleep', 'cat', 'ls', 'ps', 'id', 'hostname', 'wc', 'head', 'yes']) {
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
          config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] },
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

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

let tmp: string;
let sock: string;
let containerd: ChildProcess | undefined;

function ctr(args: string[], input = '', timeoutMs = 90_000): Promise<Result> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn('ctr', ['-a', sock, '-n', NS, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function taskStatus(id: string): Promise<string | undefined> {
  const r = await ctr(['task', 'ls']);
  const line = r.stdout.split('\n').find((l) => l.split(/\s+/)[0] === id);
  return line?.split(/\s+/)[2];
}

interface PodRecord {
  dir: string;
  vm: { vmm?: number };
  shimPid: number;
  containers: Array<{ id: string }>;
}

function podRecords(): PodRecord[] {
  if (!existsSync(POD_ROOT)) return [];
  const out: PodRecord[] = [];
  for (const d of readdirSync(POD_ROOT).map((name) => path.join(POD_ROOT, name))) {
    try {
      out.push({ dir: d, ...(JSON.parse(readFileSync(path.join(d, 'pod.json'), 'utf8')) as Omit<PodRecord, 'dir'>) });
    } catch {
      // no record (yet, or any more)
    }
  }
  return out;
}

/** The record of the pod that runs `id`, once its VM is up. */
const podOf = (id: string): PodRecord | undefined => podRecords().find((r) => r.vm.vmm && r.containers?.some((c) => c.id === id));

interface Metrics {
  pids: { current: number; limit?: number };
  cpu: { usage_usec: number };
  memory: { usage: number; usage_limit: number };
}

async function metrics(id: string): Promise<Metrics> {
  const r = await ctr(['task', 'metrics', '--format', 'json', id]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Metrics;
}

/** Sends containerd.task.v2.Task/Update straight to the task's shim (its socket, as `start` computes it). */
async function updateTask(id: string, resources: object): Promise<void> {
  const address = socketAddress(sock, NS, id);
  const conn = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.createConnection(address.slice('unix://'.length));
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
  const client = new TtrpcClient(conn);
  try {
    const m = taskService().methods['Update']!;
    const value = Buffer.from(JSON.stringify(resources));
    await client.call(TASK_SERVICE, 'Update', m.resolvedRequestType!, m.resolvedResponseType!, {
      id,
      resources: { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources', value },
    }, { timeoutMs: 10_000 });
  } finally {
    client.close();
  }
}

/** Sends containerd.task.v2.Task/ResizePty straight to the task's shim (what `ctr` sends on SIGWINCH). */
async function resizeTask(id: string, width: number, height: number): Promise<void> {
  const address = socketAddress(sock, NS, id);
  const conn = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.createConnection(address.slice('unix://'.length));
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
  const client = new TtrpcClient(conn);
  try {
    const m = taskService().methods['ResizePty']!;
    await client.call(TASK_SERVICE, 'ResizePty', m.resolvedRequestType!, m.resolvedResponseType!, { id, execId: '', width, height }, { timeoutMs: 10_000 });
  } finally {
    client.close();
  }
}

/** Removes whatever tasks and containers a test left (a failed assertion must not leave its VM to the next test). */
async function removeAll(): Promise<void> {
  const tasks = (await ctr(['task', 'ls', '-q']).catch(() => undefined))?.stdout.split('\n').filter(Boolean) ?? [];
  for (const t of tasks) await ctr(['task', 'rm', '-f', t]);
  const containers = (await ctr(['c', 'ls', '-q']).catch(() => undefined))?.stdout.split('\n').filter(Boolean) ?? [];
  for (const c of containers) await ctr(['c', 'rm', c]);
}

/** Our processes (shims for this containerd, VMs under the pod root) and mounts still around. */
function leftovers(): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue;
    }
    if (Number(pid) === process.pid) continue;
    if ((cmd.includes('containerd-shim-hull-v2') && cmd.includes(sock)) || (cmd.includes(POD_ROOT) && /qemu|virtiofsd|vsock-backend/.test(cmd))) {
      found.push(`process ${pid}: ${cmd.slice(0, 160)}`);
    }
  }
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const point = line.split(' ')[4];
    if (point && (point.startsWith(tmp) || point.startsWith(POD_ROOT))) found.push(`mount ${point}`);
  }
  return found;
}

describe.runIf(prerequisitesMet('containerd tests', missing))(`containerd 1.6 with ${RUNTIME}`, () => {
  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-ctd-'));
    sock = path.join(tmp, 'c.sock');
    writeFileSync(
      path.join(tmp, 'config.toml'),
      [
        'version = 2',
        `root = "${tmp}/root"`,
        `state = "${tmp}/state"`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        `  address = "${sock}"`,
        '[debug]',
        '  level = "debug"',
        '',
      ].join('\n'),
    );
    const log = path.join(tmp, 'containerd.log');
    writeFileSync(log, '');
    containerd = spawn('containerd', ['--config', path.join(tmp, 'config.toml')], {
      env: { ...process.env, PATH: `${path.join(repo, 'bin')}:${process.env.PATH}` },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    containerd.stderr!.on('data', (d: Buffer) => writeFileSync(log, d, { flag: 'a' }));
    await until('containerd to listen', async () => (await ctr(['version'])).code === 0 || undefined);
    const archive = path.join(tmp, 'busybox.tar');
    await buildBusyboxImage(archive, IMAGE);
    const imported = await ctr(['images', 'import', archive]);
    expect(imported.code, imported.stderr).toBe(0);
  });

  afterAll(async () => {
    if (!tmp) return;
    // Remove whatever a failed case left, then stop containerd.
    await removeAll();
    if (containerd && containerd.exitCode === null) {
      containerd.kill('SIGTERM');
      await new Promise((r) => containerd!.once('exit', r));
    }
    // containerd leaves its snapshots mounted only while tasks exist; a dead shim's rootfs mount is the shim's job.
    spawnSync('sh', ['-c', `grep -o ' ${tmp}[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l`]);
    rmSync(tmp, { recursive: true, force: true });
  });

  afterEach(async () => {
    if (tmp) await removeAll();
  });

  test('ctr run --rm: output, stderr and exit code come back; nothing is left', async () => {
    const r = await ctr(['run', '--rm', '--runtime', RUNTIME, IMAGE, 'run1', 'sh', '-c', 'echo hello; echo oops >&2; exit 3']);
    expect(r.stdout).toBe('hello\n');
    expect(r.stderr).toContain('oops');
    expect(r.code).toBe(3);
    console.log(`ctr run --rm through hull: ${r.ms} ms`);
    const t = await ctr(['run', '--rm', '--runtime', RUNTIME, IMAGE, 'run2', 'true']);
    expect(t.code).toBe(0);
    console.log(`ctr run --rm … true through hull: ${t.ms} ms`);
    expect((await ctr(['c', 'ls', '-q'])).stdout.trim()).toBe('');
    await until('the VMs to be gone', () => (leftovers().length === 0 ? true : undefined), 10_000);
  });

  test('ctr run -t: the task gets a pty in the guest, sized by ResizePty from ctr\'s terminal (ctr under script)', async () => {
    // script(1) gives ctr a terminal; ctr -t puts it in raw mode and sends its size (stty below) as ResizePty.
    const probe = 'tty; test -t 0 && test -t 1 && echo stdin-and-stdout-are-ttys; ' +
      'for i in 1 2 3 4 5 6 7 8 9 10; do s=$(stty size); [ "$s" != "0 0" ] && break; sleep 1; done; echo "size=$s"; ' +
      'for i in $(seq 1 30); do s=$(stty size); [ "$s" = "20 50" ] && break; sleep 1; done; echo "resized=$s"';
    const ctrCmd = ['ctr', '-a', sock, '-n', NS, 'run', '-t', '--rm', '--runtime', RUNTIME, IMAGE, 'tty1', 'sh', '-c', probe];
    const quoted = ctrCmd.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    const child = spawn('script', ['-qfec', `stty rows 27 cols 77; exec ${quoted}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let resized = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      // Once the first size is in, a ResizePty through the Task API changes it while the task runs.
      if (!resized && out.includes('size=27 77')) {
        resized = true;
        void resizeTask('tty1', 50, 20).catch((err: unknown) => (out += `\nresize failed: ${String(err)}\n`));
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    clearTimeout(timer);
    child.stdin.end();
    const lines = out.split('\n').map((l) => l.replace(/\r/g, ''));
    expect(code, out).toBe(0);
    expect(lines[0]).toMatch(/^\/dev\/pts\/\d+$/);
    expect(lines).toContain('stdin-and-stdout-are-ttys');
    expect(lines).toContain('size=27 77');
    expect(lines).toContain('resized=20 50');
  });

  test('stdin reaches the task and EOF ends it', async () => {
    const r = await ctr(['run', '--rm', '--runtime', RUNTIME, IMAGE, 'stdin1', 'wc', '-c'], 'twelve bytes');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('12');
  });

  test('a long task: exec, exec with stdin, pids, metrics from the guest cgroup, update, pause/resume, kill -s SIGKILL', async () => {
    const started = await ctr(['run', '-d', '--runtime', RUNTIME, '--memory-limit', String(128 << 20), IMAGE, 'long', 'sleep', '1000']);
    expect(started.code, started.stderr).toBe(0);
    expect(await taskStatus('long')).toBe('RUNNING');

    const ex = await ctr(['task', 'exec', '--exec-id', 'e1', 'long', 'sh', '-c', 'echo from-exec; exit 7']);
    expect(ex.stdout).toBe('from-exec\n');
    expect(ex.code).toBe(7);
    // ctr writes stdin, then sends CloseIO at once: the bytes must not be dropped (this raced before).
    for (let i = 0; i < 5; i++) {
      const cat = await ctr(['task', 'exec', '--exec-id', `cat${i}`, 'long', 'cat'], `piped in ${i}\n`);
      expect(cat.stdout).toBe(`piped in ${i}\n`);
      expect(cat.code).toBe(0);
    }

    const ps = await ctr(['task', 'ps', 'long']);
    expect(ps.code).toBe(0);
    expect(ps.stdout.trim().split('\n').length).toBeGreaterThanOrEqual(2);

    // Metrics come from the container's cgroup in the guest: its own memory limit, not the VM's RAM.
    const m = await metrics('long');
    expect(m.pids.current).toBeGreaterThanOrEqual(1);
    expect(m.memory.usage).toBeGreaterThan(0);
    expect(m.memory.usage_limit).toBe(128 << 20);
    expect(m.cpu.usage_usec).toBeGreaterThan(0);

    // Update (ctr 1.6 has no `task update`): the request containerd's Tasks.Update forwards, sent to the shim.
    await updateTask('long', { memory: { limit: 96 << 20 }, pids: { limit: 50 } });
    const updated = await metrics('long');
    expect(updated.memory.usage_limit).toBe(96 << 20);
    expect(updated.pids.limit).toBe(50);

    expect((await ctr(['task', 'pause', 'long'])).code).toBe(0);
    expect(await taskStatus('long')).toBe('PAUSED');
    expect((await ctr(['task', 'resume', 'long'])).code).toBe(0);
    expect(await taskStatus('long')).toBe('RUNNING');

    expect((await ctr(['task', 'kill', '-s', 'SIGKILL', 'long'])).code).toBe(0);
    await until('the task to stop', async () => ((await taskStatus('long')) === 'STOPPED' ? true : undefined));
    const rm = await ctr(['task', 'rm', 'long']);
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stderr).toContain('137');
    expect((await ctr(['c', 'rm', 'long'])).code).toBe(0);
  });

  test('killing QEMU under a running task: TaskExit with a non-zero status, a log line, cleanup', async () => {
    expect((await ctr(['run', '-d', '--runtime', RUNTIME, IMAGE, 'vmdies', 'sleep', '1000'])).code).toBe(0);
    const rec = await until('the pod record', () => podOf('vmdies'));
    process.kill(rec.vm.vmm!, 'SIGKILL');
    await until('the task to stop', async () => ((await taskStatus('vmdies')) === 'STOPPED' ? true : undefined));
    const log = readFileSync(path.join(tmp, 'containerd.log'), 'utf8');
    expect(log).toMatch(/stopped because the VM died: QEMU exited/);
    const rm = await ctr(['task', 'rm', 'vmdies']);
    expect(rm.stderr).toMatch(/exit code 255/);
    expect((await ctr(['c', 'rm', 'vmdies'])).code).toBe(0);
    await until('cleanup', () => (leftovers().length === 0 ? true : undefined), 10_000);
  });

  test('a second container with CRI annotations joins the running pod VM; deleting it leaves the pod running', async () => {
    const pod = (type: string): string[] => [
      '--annotation',
      `io.kubernetes.cri.container-type=${type}`,
      '--annotation',
      'io.kubernetes.cri.sandbox-id=pod1',
    ];
    const sandbox = await ctr(['run', '-d', '--runtime', RUNTIME, ...pod('sandbox'), IMAGE, 'pod1', 'sleep', '1000']);
    expect(sandbox.code, sandbox.stderr).toBe(0);
    const vmm = (await until('the pod record', () => podOf('pod1'))).vm.vmm;
    const bootId = await ctr(['task', 'exec', '--exec-id', 'b0', 'pod1', 'cat', '/proc/sys/kernel/random/boot_id']);
    expect(bootId.code, bootId.stderr).toBe(0);
    expect(bootId.stdout).toMatch(/^[0-9a-f-]{36}\n$/);

    // Joins the VM (no second boot): the same guest kernel answers, with its own root and its own exit code.
    const joined = await ctr(['run', '--rm', '--runtime', RUNTIME, ...pod('container'), IMAGE, 'pod1-c1', 'sh', '-c',
      'cat /proc/sys/kernel/random/boot_id; echo joined >&2; exit 4']);
    expect(joined.stdout).toBe(bootId.stdout);
    expect(joined.stderr).toContain('joined');
    expect(joined.code).toBe(4);
    console.log(`second container of a running pod (ctr run --rm): ${joined.ms} ms`);
    const recs = podRecords();
    expect(recs.filter((r) => r.vm.vmm)).toHaveLength(1);
    expect(podOf('pod1')?.vm.vmm).toBe(vmm);

    // A long-running second container, then deleted while the sandbox keeps running.
    expect((await ctr(['run', '-d', '--runtime', RUNTIME, ...pod('container'), IMAGE, 'pod1-c2', 'sleep', '1000'])).code).toBe(0);
    expect(await taskStatus('pod1-c2')).toBe('RUNNING');
    expect(podOf('pod1-c2')?.vm.vmm).toBe(vmm);
    expect((await ctr(['task', 'kill', '-s', 'SIGKILL', 'pod1-c2'])).code).toBe(0);
    await until('pod1-c2 to stop', async () => ((await taskStatus('pod1-c2')) === 'STOPPED' ? true : undefined));
    expect((await ctr(['task', 'rm', 'pod1-c2'])).code).toBe(0);
    expect((await ctr(['c', 'rm', 'pod1-c2'])).code).toBe(0);
    expect(await taskStatus('pod1')).toBe('RUNNING');
    const after = await ctr(['task', 'exec', '--exec-id', 'b1', 'pod1', 'cat', '/proc/sys/kernel/random/boot_id']);
    expect(after.stdout).toBe(bootId.stdout);

    expect((await ctr(['task', 'kill', '-s', 'SIGKILL', 'pod1'])).code).toBe(0);
    await until('pod1 to stop', async () => ((await taskStatus('pod1')) === 'STOPPED' ? true : undefined));
    expect((await ctr(['task', 'rm', 'pod1'])).code).toBe(0);
    expect((await ctr(['c', 'rm', 'pod1'])).code).toBe(0);
    await until('cleanup', () => (leftovers().length === 0 ? true : undefined), 10_000);
  });

  test("killing the shim: containerd's delete path removes the VM and the mounts", async () => {
    expect((await ctr(['run', '-d', '--runtime', RUNTIME, IMAGE, 'shimdies', 'sleep', '1000'])).code).toBe(0);
    const rec = await until('the pod record', () => podOf('shimdies'));
    process.kill(rec.shimPid, 'SIGKILL');
    await until('containerd to drop the task', async () => ((await taskStatus('shimdies')) === undefined ? true : undefined));
    await until('cleanup', () => (leftovers().length === 0 ? true : undefined), 15_000);
    await ctr(['c', 'rm', 'shimdies']);
  });

  test('leak check: no shim, VM or helper process, no mount, no pod directory', async () => {
    await until('no leftovers', () => (leftovers().length === 0 ? true : undefined), 10_000).catch(() => undefined);
    expect(leftovers()).toEqual([]);
    expect(podRecords()).toEqual([]);
    execFileSync('true');
  });
});
