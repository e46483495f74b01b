// containerd 1.6 (Debian's) driving containerd-shim-hull-v2 through `ctr`: a private containerd (own root, state,
// socket and config.toml under a temp dir) finds the shim on PATH (bin/), imports a busybox OCI archive built here,
// and runs tasks in microVMs. Each VM boot costs seconds under TCG, so cases share tasks where they can. Needs root,
// containerd + ctr, busybox-static, the guest image and dist/ (npm run build); skipped otherwise.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { TtrpcClient } from '../../protocol/ttrpc/client.js';
import { socketAddress } from '../../shim/containerd/address.js';
import { TASK_SERVICE, taskService } from '../../shim/containerd/protos.js';
import { containerdPrerequisites, podOf, podRecords, PrivateContainerd, RUNTIME, until } from '../helpers/containerd.js';
import { prerequisitesMet } from '../helpers/prerequisites.js';

const IMAGE = 'docker.io/hull/busybox:latest';
const NS = 'hulltest';

let ctd: PrivateContainerd;
const ctr = (args: string[], input = '', timeoutMs = 90_000) => ctd.ctr(args, input, timeoutMs);
const taskStatus = (id: string) => ctd.taskStatus(id);
const leftovers = () => ctd.leftovers();

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
  const address = socketAddress(ctd.sock, NS, id);
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
  const address = socketAddress(ctd.sock, NS, id);
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

describe.runIf(prerequisitesMet('containerd tests', containerdPrerequisites()))(`containerd 1.6 with ${RUNTIME}`, () => {
  beforeAll(async () => {
    ctd = await PrivateContainerd.start(NS);
    await ctd.importBusybox(IMAGE);
  });

  afterAll(async () => {
    await ctd?.destroy();
  });

  afterEach(async () => {
    await ctd?.removeAll();
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
    const ctrCmd = ['ctr', '-a', ctd.sock, '-n', NS, 'run', '-t', '--rm', '--runtime', RUNTIME, IMAGE, 'tty1', 'sh', '-c', probe];
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
    const log = readFileSync(ctd.log, 'utf8');
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
