// containerd 1.6 (Debian's) driving containerd-shim-hull-v2 through `ctr`: a private containerd (own root, state,
// socket and config.toml under a temp dir) finds the shim on PATH (bin/), imports a busybox OCI archive built here,
// and runs tasks in microVMs. Each VM boot costs seconds under TCG, so cases share tasks where they can. Needs root,
// containerd + ctr, busybox-static, the guest image and dist/ (npm run build): test/helpers/prerequisites.ts.
// This file's VMs boot with room to grow (HULL_MAX_MEMORY_MIB, docs/density.md): the long task's Update grows its VM.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { TtrpcClient } from '../../protocol/ttrpc/client.js';
import { socketAddress } from '../../shim/containerd/address.js';
import { TASK_SERVICE, taskService } from '../../shim/containerd/protos.js';
import { containerdPrerequisites, podOf, podRecords, PrivateContainerd, RUNTIME, until } from '../helpers/containerd.js';
import { prerequisitesMet } from '../helpers/prerequisites.js';
import { cgroupFile, existingCgroupDirs, outsideOf, removeTestParents, vmProcessTree } from '../helpers/host-cgroups.js';

const IMAGE = 'docker.io/hull/busybox:latest';
const NS = 'hulltest';
const longCgroupParent = `/hull-ctd-${process.pid}`;
const longCgroup = `${longCgroupParent}/long`;
/** The most this file's VMs may grow to: 512 MiB at boot, the balloon holding the other 512 until an Update. */
const MAX_MEMORY_MIB = 1024;

let ctd: PrivateContainerd;
const ctr = (args: string[], input = '', timeoutMs = 90_000) => ctd.ctr(args, input, timeoutMs);
const taskStatus = (id: string) => ctd.taskStatus(id);
const leftovers = () => ctd.leftovers();

interface Metrics {
  pids: { current: number; limit?: number };
  cpu: { usage_usec: number };
  memory: { usage: number; usage_limit: number };
}

/** True while pid names a live (not zombie) process. */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) [ZX]/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function metrics(id: string): Promise<Metrics> {
  const r = await ctr(['task', 'metrics', '--format', 'json', id]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Metrics;
}

/** Calls a containerd.task.v2.Task method straight on the task's shim (its socket, as `start` computes it). */
async function callShim(id: string, method: string, request: object): Promise<void> {
  const address = socketAddress(ctd.sock, NS, id);
  const conn = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.createConnection(address.slice('unix://'.length));
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
  const client = new TtrpcClient(conn);
  try {
    const m = taskService().methods[method]!;
    await client.call(TASK_SERVICE, method, m.resolvedRequestType!, m.resolvedResponseType!, request, { timeoutMs: 10_000 });
  } finally {
    client.close();
  }
}

/** Update (ctr 1.6 has no `task update`): the request containerd's Tasks.Update forwards. */
const updateTask = (id: string, resources: object): Promise<void> =>
  callShim(id, 'Update', {
    id,
    resources: { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources', value: Buffer.from(JSON.stringify(resources)) },
  });

/** ResizePty: what `ctr` sends on SIGWINCH. */
const resizeTask = (id: string, width: number, height: number): Promise<void> => callShim(id, 'ResizePty', { id, execId: '', width, height });

describe.runIf(prerequisitesMet('containerd tests', containerdPrerequisites()))(`containerd 1.6 with ${RUNTIME}`, () => {
  beforeAll(async () => {
    ctd = await PrivateContainerd.start(NS, { env: { HULL_MAX_MEMORY_MIB: String(MAX_MEMORY_MIB) } });
    await ctd.importBusybox(IMAGE);
  });

  afterAll(async () => {
    await ctd?.destroy();
    // `ctr` puts a container in /<namespace>/<id>; each sandbox removes the level hull made, this catches the rest.
    removeTestParents([longCgroupParent, `/${NS}`]);
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

  test('a missing executable fails at create in runc\'s words (exec: "…": stat …: no such file or directory); nothing is left', async () => {
    const r = await ctr(['run', '--rm', '--runtime', RUNTIME, IMAGE, 'noexec1', '/bin/no-such-program']);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('exec: "/bin/no-such-program": stat /bin/no-such-program: no such file or directory');
    expect((await ctr(['task', 'ls', '-q'])).stdout.trim()).toBe('');
    await until('the VM to be gone', () => (leftovers().length === 0 ? true : undefined), 10_000);
  });

  test('ctr run -t: the task gets a pty in the guest, sized by ResizePty from ctr\'s terminal (ctr under script)', async () => {
    // script(1) gives ctr a terminal; ctr -t puts it in raw mode and sends its size (stty below) as ResizePty.
    const probe = 'tty; test -t 0 && test -t 1 && echo stdin-and-stdout-are-ttys; ' +
      // busybox stty prints nothing (and fails) while the pty is 0x0, before ctr's first ResizePty (after Start) lands.
      'for i in 1 2 3 4 5 6 7 8 9 10; do s=$(stty size 2>/dev/null); [ -n "$s" ] && [ "$s" != "0 0" ] && break; sleep 1; done; echo "size=$s"; ' +
      'for i in $(seq 1 30); do s=$(stty size 2>/dev/null); [ "$s" = "20 50" ] && break; sleep 1; done; echo "resized=$s"';
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
    expect(lines, out).toContain('size=27 77');
    expect(lines).toContain('resized=20 50');
  });

  test('stdin reaches the task and EOF ends it', async () => {
    const r = await ctr(['run', '--rm', '--runtime', RUNTIME, IMAGE, 'stdin1', 'wc', '-c'], 'twelve bytes');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('12');
  });

  test('a long task: exec, exec with stdin, pids, metrics from the guest cgroup, update, pause/resume, kill -s SIGKILL', async () => {
    const started = await ctr(['run', '-d', '--runtime', RUNTIME, '--cgroup', longCgroup, '--memory-limit', String(128 << 20), IMAGE, 'long', 'sleep', '1000']);
    expect(started.code, started.stderr).toBe(0);
    expect(await taskStatus('long')).toBe('RUNNING');
    // The VM's host processes are in the cgroup the spec names, bounded by the VM's size: 512 MiB + 192 MiB, + 8 MiB
    // for the guest's page array of the 512 MiB it may grow by.
    const pod = await until('the pod record', () => podOf('long'));
    const tree = vmProcessTree((JSON.parse(readFileSync(path.join(pod.dir, 'pod.json'), 'utf8')) as { vm: Parameters<typeof vmProcessTree>[0] }).vm);
    expect(tree.length).toBeGreaterThanOrEqual(4); // QEMU, the vsock broker and worker, virtiofsd (no child: its chroot sandbox)
    expect(tree.flatMap((pid) => outsideOf(pid, longCgroup))).toEqual([]);
    const hostMemoryLimit = () => cgroupFile(longCgroup, 'memory', existsSync('/sys/fs/cgroup/cgroup.controllers') ? 'memory.max' : 'memory.limit_in_bytes');
    expect(hostMemoryLimit()).toBe(String((512 + 192 + 8) * 2 ** 20));

    const ex = await ctr(['task', 'exec', '--exec-id', 'e1', 'long', 'sh', '-c', 'echo from-exec; exit 7']);
    expect(ex.stdout).toBe('from-exec\n');
    expect(ex.code).toBe(7);
    // An exec of a missing program fails in runc's words; the task runs on.
    const bad = await ctr(['task', 'exec', '--exec-id', 'bad1', 'long', '/bin/no-such-program']);
    expect([bad.code, bad.stdout]).toEqual([1, '']);
    expect(bad.stderr).toMatch(/^ctr: .*exec: "\/bin\/no-such-program": stat \/bin\/no-such-program: no such file or directory.*\n$/);
    expect(await taskStatus('long')).toBe('RUNNING');
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

    // A limit above the VM's 512 MiB (containerd's CRI test TestUpdateContainerResources_StatusUpdated asks for 800 MiB):
    // the VM grows into its headroom — host cgroup first, then the balloon deflates — and the guest can use it. The
    // same 600 MiB allocation fails before (more than the guest has), so the check can fail.
    const memTotalMiB = async (): Promise<number> => {
      const r = await ctr(['task', 'exec', '--exec-id', `mem${Date.now()}`, 'long', 'cat', '/proc/meminfo']);
      return Number(/^MemTotal:\s+(\d+) kB/m.exec(r.stdout)?.[1]) / 1024;
    };
    const eat600 = ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=600M', 'count=1'];
    const refused = await ctr(['task', 'exec', '--exec-id', 'eat-before', 'long', ...eat600]);
    expect([refused.code, refused.stderr]).toEqual([1, expect.stringMatching(/out of memory|Cannot allocate memory/)]);
    const before = await memTotalMiB();
    expect(before).toBeLessThan(512);
    await updateTask('long', { memory: { limit: 800 << 20 } });
    expect((await metrics('long')).memory.usage_limit).toBe(800 << 20);
    const after = await memTotalMiB();
    expect(after - before, `guest MemTotal ${before.toFixed(0)} → ${after.toFixed(0)} MiB`).toBeGreaterThan(480); // 800 + 256 > 1024: grown to all of it
    expect(hostMemoryLimit()).toBe(String((1024 + 192) * 2 ** 20));
    const eat = await ctr(['task', 'exec', '--exec-id', 'eat-after', 'long', ...eat600]);
    expect([eat.code, eat.stderr]).toEqual([0, expect.stringContaining('1+0 records in')]);
    // Beyond the most: refused in one line, nothing changed.
    await expect(updateTask('long', { memory: { limit: 2048 * 2 ** 20 } })).rejects.toThrow(/2048 MiB is more than the 1024 MiB the pod VM can grow to/);
    expect((await metrics('long')).memory.usage_limit).toBe(800 << 20);

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
    await until('the VM cgroup to be removed', () => (existingCgroupDirs(longCgroup).length === 0 ? true : undefined));
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

  test('the task pid is the pod VMM\'s host pid; a container joins the pid namespace through it; kill -9 <task pid> ends the pod', async () => {
    const pod = (type: string): string[] => ['--annotation', `io.kubernetes.cri.container-type=${type}`, '--annotation', 'io.kubernetes.cri.sandbox-id=pidpod'];
    const sandbox = await ctr(['run', '-d', '--runtime', RUNTIME, ...pod('sandbox'), IMAGE, 'pidpod', 'sh', '-c', 'exec sleep 1001']);
    expect(sandbox.code, sandbox.stderr).toBe(0);
    const vmm = (await until('the pod record', () => podOf('pidpod'))).vm.vmm!;
    const taskPid = async (id: string): Promise<number> => Number((await ctr(['task', 'ls'])).stdout.split('\n').find((l) => l.split(/\s+/)[0] === id)?.split(/\s+/)[1]);
    expect(await taskPid('pidpod')).toBe(vmm);
    expect(readFileSync(`/proc/${vmm}/cmdline`, 'utf8')).toContain('qemu-system');
    // As CRI writes it for a pod sharing its process namespace: /proc/<sandbox task pid>/ns/pid.
    const joined = await ctr(['run', '--rm', '--runtime', RUNTIME, ...pod('container'), '--with-ns', `pid:/proc/${vmm}/ns/pid`, IMAGE, 'pidpod-c1', 'ps']);
    expect(joined.code, joined.stderr).toBe(0);
    expect(joined.stdout).toContain('sleep 1001');
    // containerd's CRI test TestSandboxRemoveWithoutIPLeakage kills the sandbox's task pid on the host.
    process.kill(await taskPid('pidpod'), 'SIGKILL');
    await until('the task to stop', async () => ((await taskStatus('pidpod')) === 'STOPPED' ? true : undefined), 10_000);
    const rm = await ctr(['task', 'rm', 'pidpod']);
    expect(rm.stderr).toMatch(/exit code 255/);
    expect((await ctr(['c', 'rm', 'pidpod'])).code).toBe(0);
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

  test('pod namespaces: --with-ns /proc/<sandbox pid>/ns/{pid,ipc,uts} joins the sandbox container\'s namespaces in the guest', async () => {
    const pod = (type: string): string[] => ['--annotation', `io.kubernetes.cri.container-type=${type}`, '--annotation', 'io.kubernetes.cri.sandbox-id=nspod'];
    // CAP_SYS_ADMIN (not in ctr's default set) lets an exec in the sandbox set the pod's hostname below.
    const sandbox = await ctr(['run', '-d', '--runtime', RUNTIME, '--cap-add', 'CAP_SYS_ADMIN', ...pod('sandbox'), IMAGE, 'nspod', 'sleep', '1000']);
    expect(sandbox.code, sandbox.stderr).toBe(0);
    const ls = await ctr(['task', 'ls']);
    const pid = Number(/^nspod\s+(\d+)\s+RUNNING$/m.exec(ls.stdout)?.[1]);
    expect(pid, ls.stdout).toBeGreaterThan(1); // the guest pid of the sandbox's init, as the shim reports it
    const setHost = await ctr(['task', 'exec', '--exec-id', 'h', 'nspod', 'hostname', 'nspod-host']);
    expect(setHost.code, setHost.stderr).toBe(0);
    const probe = ['sh', '-c', 'echo host=$(hostname); echo ipc=$(readlink /proc/self/ns/ipc); echo pid=$(readlink /proc/self/ns/pid); ps'];
    const inSandbox = await ctr(['task', 'exec', '--exec-id', 'p', 'nspod', ...probe]);
    expect(inSandbox.code, inSandbox.stderr).toBe(0);
    const line = (out: string, key: string): string | undefined => new RegExp(`^${key}=(.+)$`, 'm').exec(out)?.[1];

    const withNs = ['pid', 'ipc', 'uts'].flatMap((ns) => ['--with-ns', `${ns}:/proc/${pid}/ns/${ns}`]);
    const joined = await ctr(['run', '-d', '--runtime', RUNTIME, ...pod('container'), ...withNs, IMAGE, 'nspod-app', 'sleep', '2000']);
    expect(joined.code, joined.stderr).toBe(0);
    const solo = await ctr(['run', '-d', '--runtime', RUNTIME, ...pod('container'), IMAGE, 'nspod-solo', 'sleep', '3000']);
    expect(solo.code, solo.stderr).toBe(0);
    const vmm = podOf('nspod')?.vm.vmm;
    expect(vmm).toBeGreaterThan(0);
    expect(podOf('nspod-app')?.vm.vmm).toBe(vmm);

    // The joined container sees the sandbox's processes and shares its IPC and UTS namespaces.
    const inApp = await ctr(['task', 'exec', '--exec-id', 'p', 'nspod-app', ...probe]);
    expect(inApp.code, inApp.stderr).toBe(0);
    expect(line(inApp.stdout, 'host')).toBe('nspod-host');
    expect(line(inApp.stdout, 'ipc')).toBe(line(inSandbox.stdout, 'ipc'));
    expect(line(inApp.stdout, 'pid')).toBe(line(inSandbox.stdout, 'pid'));
    expect(inApp.stdout).toMatch(/^\s*1 .*sleep 1000$/m);
    expect(inApp.stdout).toMatch(/sleep 2000$/m);

    // Without --with-ns: fresh namespaces, none of the sandbox's processes.
    const inSolo = await ctr(['task', 'exec', '--exec-id', 'p', 'nspod-solo', ...probe]);
    expect(inSolo.code, inSolo.stderr).toBe(0);
    expect(line(inSolo.stdout, 'host')).not.toBe('nspod-host');
    expect(line(inSolo.stdout, 'ipc')).not.toBe(line(inSandbox.stdout, 'ipc'));
    expect(line(inSolo.stdout, 'pid')).not.toBe(line(inSandbox.stdout, 'pid'));
    expect(inSolo.stdout).toMatch(/^\s*1 .*sleep 3000$/m);
    expect(inSolo.stdout).not.toMatch(/sleep (1000|2000)$/m);

    for (const id of ['nspod-app', 'nspod-solo', 'nspod']) {
      expect((await ctr(['task', 'kill', '-s', 'SIGKILL', id])).code).toBe(0);
      await until(`${id} to stop`, async () => ((await taskStatus(id)) === 'STOPPED' ? true : undefined));
      expect((await ctr(['task', 'rm', id])).code).toBe(0);
      expect((await ctr(['c', 'rm', id])).code).toBe(0);
    }
    // This pod only (other suites may run pods of their own): its record and its QEMU are gone.
    const gone = (): boolean => {
      try {
        process.kill(vmm!, 0);
        return false;
      } catch {
        return true;
      }
    };
    await until('the pod to be cleaned up', () => (!podRecords().some((r) => r.containers?.some((c) => c.id.startsWith('nspod'))) && gone()) || undefined, 10_000);
  });

  test('ctr run --mount: a host file bound read-only over /etc/hosts reaches the guest and stays unwritable; a bad source is refused', async () => {
    const hosts = path.join(ctd.tmp, 'hosts-for-mount');
    writeFileSync(hosts, '10.9.8.7 bound-from-host\n');
    const script = [
      'cat /etc/hosts',
      '{ echo changed > /etc/hosts; } 2>/dev/null && echo writable || echo read-only',
      // Root in the guest can make its own mount writable; the host-side mount still refuses the write.
      'mount -o remount,bind,rw /etc/hosts && { echo changed > /etc/hosts; } 2>/dev/null && echo host-writable || echo host-read-only',
    ].join('; ');
    const r = await ctr(['run', '--rm', '--runtime', RUNTIME, '--mount', `type=bind,src=${hosts},dst=/etc/hosts,options=rbind:ro`,
      IMAGE, 'hostbind', 'sh', '-c', script]);
    expect([r.code, r.stdout], r.stderr).toEqual([0, '10.9.8.7 bound-from-host\nread-only\nhost-read-only\n']);
    expect(readFileSync(hosts, 'utf8')).toBe('10.9.8.7 bound-from-host\n');
    await until('cleanup', () => (leftovers().length === 0 ? true : undefined), 10_000);

    const bad = await ctr(['run', '--rm', '--runtime', RUNTIME, '--mount', 'type=bind,src=/proc/1/root,dst=/host,options=rbind:ro',
      IMAGE, 'badbind', 'true']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/bind source "\/proc\/1\/root" is under the host's \/proc, \/sys or \/dev/);
    await ctr(['c', 'rm', 'badbind']);
    await until('cleanup', () => (leftovers().length === 0 ? true : undefined), 10_000);

    // A shim killed while the bind is mounted: containerd's delete path unmounts it too, and the host dir survives.
    const dataDir = path.join(ctd.tmp, 'dir-for-mount');
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(path.join(dataDir, 'keep'), 'keep\n');
    const d = await ctr(['run', '-d', '--runtime', RUNTIME, '--mount', `type=bind,src=${dataDir},dst=/data,options=rbind:rw`,
      IMAGE, 'hostbind2', 'sh', '-c', 'echo from-guest > /data/written; sleep 1000']);
    expect(d.code, d.stderr).toBe(0);
    await until('the guest to write into the bound dir', () => (existsSync(path.join(dataDir, 'written')) ? true : undefined));
    process.kill((await until('the pod record', () => podOf('hostbind2'))).shimPid, 'SIGKILL');
    await until('containerd to drop the task', async () => ((await taskStatus('hostbind2')) === undefined ? true : undefined));
    await until('cleanup', () => (leftovers().length === 0 ? true : undefined), 15_000);
    await ctr(['c', 'rm', 'hostbind2']);
    expect(readFileSync(path.join(dataDir, 'keep'), 'utf8')).toBe('keep\n');
    expect(readFileSync(path.join(dataDir, 'written'), 'utf8')).toBe('from-guest\n');
  });

  test("killing the shim: containerd's delete path removes the VM and the mounts", async () => {
    expect((await ctr(['run', '-d', '--runtime', RUNTIME, IMAGE, 'shimdies', 'sleep', '1000'])).code).toBe(0);
    const rec = await until('the pod record', () => podOf('shimdies'));
    process.kill(rec.shimPid, 'SIGKILL');
    await until('containerd to drop the task', async () => ((await taskStatus('shimdies')) === undefined ? true : undefined));
    await until('cleanup', () => (leftovers().length === 0 ? true : undefined), 15_000);
    await ctr(['c', 'rm', 'shimdies']);
  });

  test('containerd restarting while a pod runs: shim and VM live on; the new containerd reconnects through <bundle>/address', async () => {
    expect((await ctr(['run', '-d', '--runtime', RUNTIME, IMAGE, 'restart1', 'sleep', '1000'])).code).toBe(0);
    const rec = await until('the pod record', () => podOf('restart1'));
    // An exec that ends while containerd is away: the shim logs (and fails to publish) with no reader on its log FIFO.
    expect((await ctr(['task', 'exec', '-d', '--exec-id', 'brief', 'restart1', 'sleep', '1'])).code).toBe(0);
    await ctd.stop();
    // containerd gone (an upgrade, a crash): nothing of the pod may go with it.
    await sleep(3000);
    expect(running(rec.shimPid), 'the shim').toBe(true);
    expect(running(rec.vm.vmm!), 'QEMU').toBe(true);

    const logBefore = readFileSync(ctd.log, 'utf8').length;
    await ctd.launch();
    expect(await taskStatus('restart1')).toBe('RUNNING');
    const ex = await ctr(['task', 'exec', '--exec-id', 'x1', 'restart1', 'sh', '-c', 'echo still-here; exit 6']);
    expect(ex.stdout).toBe('still-here\n');
    expect(ex.code).toBe(6);

    // TaskExit must reach the new containerd (the shim reconnects to TTRPC_ADDRESS): watch its event stream.
    const events = spawn('ctr', ['-a', ctd.sock, '-n', NS, 'events'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let seen = '';
    events.stdout.setEncoding('utf8').on('data', (d: string) => (seen += d));
    try {
      await sleep(500); // subscribed before the kill
      expect((await ctr(['task', 'kill', '-s', 'SIGKILL', 'restart1'])).code).toBe(0);
      await until('TaskExit to reach containerd', () => seen.split('\n').some((l) => l.includes('/tasks/exit') && l.includes('restart1')) || undefined);
    } finally {
      events.kill();
    }
    expect(await taskStatus('restart1')).toBe('STOPPED');
    const rm = await ctr(['task', 'rm', 'restart1']);
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stderr).toContain('137');
    // The new containerd reopened <bundle>/log: the shim's log lines reach it again.
    expect(readFileSync(ctd.log, 'utf8').slice(logBefore)).toMatch(/"container":"restart1".*"msg":"process exited"/);
    expect((await ctr(['c', 'rm', 'restart1'])).code).toBe(0);
    await until('cleanup', () => (leftovers().length === 0 ? true : undefined), 10_000);
  });

  test('a container over its memory limit is OOM-killed in the guest: TaskOOM, then TaskExit 137', async () => {
    const events = spawn('ctr', ['-a', ctd.sock, '-n', NS, 'events'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let seen = '';
    events.stdout.setEncoding('utf8').on('data', (d: string) => (seen += d));
    try {
      await sleep(500); // subscribed before the run
      // dd touches a 64 MiB buffer at once against a 32 MiB limit: the guest's OOM killer takes it (a workload that
      // grows slowly can instead thrash page cache for minutes under TCG before the OOM killer acts).
      const r = await ctr(['run', '--rm', '--runtime', RUNTIME, '--memory-limit', String(32 << 20), IMAGE, 'oom1',
        'dd', 'bs=64M', 'count=1', 'if=/dev/zero', 'of=/dev/null']);
      expect(r.code, r.stderr).toBe(137);
      await until('TaskOOM and TaskExit to reach containerd', () => /\/tasks\/exit.*oom1/.test(seen) || undefined);
    } finally {
      events.kill();
    }
    const lines = seen.split('\n').filter((l) => l.includes('oom1') && /\/tasks\/(oom|exit)/.test(l));
    expect(lines.map((l) => /\/tasks\/(oom|exit)/.exec(l)![0])).toEqual(['/tasks/oom', '/tasks/exit']);
    await until('cleanup', () => (leftovers().length === 0 ? true : undefined), 10_000);
  });

  test('two pods at once: two shims, two VMs, two guest kernels; killing one leaves the other running', async () => {
    const started = await Promise.all(['twoA', 'twoB'].map((id) => ctr(['run', '-d', '--runtime', RUNTIME, IMAGE, id, 'sleep', '1000'])));
    for (const s of started) expect(s.code, s.stderr).toBe(0);
    const a = await until('the pod record of twoA', () => podOf('twoA'));
    const b = await until('the pod record of twoB', () => podOf('twoB'));
    expect(a.dir).not.toBe(b.dir);
    expect(a.shimPid).not.toBe(b.shimPid);
    expect(a.vm.vmm).not.toBe(b.vm.vmm);
    const bootId = async (id: string, execId: string): Promise<string> => {
      const r = await ctr(['task', 'exec', '--exec-id', execId, id, 'cat', '/proc/sys/kernel/random/boot_id']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^[0-9a-f-]{36}\n$/);
      return r.stdout;
    };
    const [bootA, bootB] = await Promise.all([bootId('twoA', 'ba'), bootId('twoB', 'bb')]);
    expect(bootA).not.toBe(bootB);

    expect((await ctr(['task', 'kill', '-s', 'SIGKILL', 'twoA'])).code).toBe(0);
    await until('twoA to stop', async () => ((await taskStatus('twoA')) === 'STOPPED' ? true : undefined));
    expect((await ctr(['task', 'rm', 'twoA'])).code).toBe(0);
    expect((await ctr(['c', 'rm', 'twoA'])).code).toBe(0);
    await until("twoA's shim and VM to be gone", () => (!running(a.shimPid) && !running(a.vm.vmm!)) || undefined, 10_000);
    expect(await taskStatus('twoB')).toBe('RUNNING');
    expect(running(b.vm.vmm!)).toBe(true);
    expect(await bootId('twoB', 'bb2')).toBe(bootB);

    expect((await ctr(['task', 'kill', '-s', 'SIGKILL', 'twoB'])).code).toBe(0);
    await until('twoB to stop', async () => ((await taskStatus('twoB')) === 'STOPPED' ? true : undefined));
    expect((await ctr(['task', 'rm', 'twoB'])).code).toBe(0);
    expect((await ctr(['c', 'rm', 'twoB'])).code).toBe(0);
    await until('cleanup', () => (leftovers().length === 0 ? true : undefined), 10_000);
  });

  test('100 MB of output through the FIFOs: every byte arrives, in order (the guest prints its own digest)', async () => {
    const size = 100_000_000;
    // tee copies the random stream to stdout and, through a FIFO, to sha256sum, whose digest goes to stderr. (The
    // task's stdout is a socket in the guest: it cannot be reopened through /proc/self/fd.)
    const script = `set -e -o pipefail; mkfifo /tmp/digest.in; sha256sum </tmp/digest.in >&2 & summer=$!; ` +
      `head -c ${size} /dev/urandom | tee /tmp/digest.in; wait $summer`;
    const child = spawn('ctr', ['-a', ctd.sock, '-n', NS, 'run', '--rm', '--runtime', RUNTIME, IMAGE, 'bulk', 'sh', '-c', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const arrived = createHash('sha256');
    let bytes = 0;
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      arrived.update(d);
      bytes += d.length;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const started = Date.now();
    const timer = setTimeout(() => child.kill('SIGKILL'), 110_000); // a stuck relay must not outlive the test
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    clearTimeout(timer);
    const seconds = (Date.now() - started) / 1000;
    console.log(`100 MB through ctr run --rm: ${seconds.toFixed(1)} s (${(size / 1e6 / seconds).toFixed(1)} MB/s, boot included)`);
    expect(code, stderr).toBe(0);
    expect(bytes).toBe(size);
    expect(stderr).toMatch(/^[0-9a-f]{64} {2}-\n$/);
    expect(stderr.slice(0, 64)).toBe(arrived.digest('hex'));
  });

  test('--log-uri file://: stdout and stderr land in the file, its missing directories created', async () => {
    const file = path.join(mkdtempSync(path.join(ctd.tmp, 'logs-')), 'sub', 'dir', 'task.log');
    const r = await ctr(['run', '--rm', '--runtime', RUNTIME, '--log-uri', `file://${file}`, IMAGE, 'logfile', 'sh', '-c',
      'echo to-stdout; echo to-stderr >&2; exit 5']);
    expect(r.code, r.stderr).toBe(5);
    expect(r.stdout).toBe('');
    expect(readFileSync(file, 'utf8').split('\n').sort()).toEqual(['', 'to-stderr', 'to-stdout']);
  });

  test('--log-uri binary://: the logging binary reads fds 3 and 4, says ready on fd 5, gets its args and only its env', async () => {
    const dir = mkdtempSync(path.join(ctd.tmp, 'logger-'));
    const logger = path.join(dir, 'logger.sh');
    // containerd's contract (pkg/process NewBinaryIO): fd 3 = stdout, fd 4 = stderr, fd 5 closed (or a byte) once ready;
    // args from the URI query (key, value); env CONTAINER_ID and CONTAINER_NAMESPACE; SIGTERM once the output is
    // closed. This logger stays until that SIGTERM, then finishes its copies and exits.
    writeFileSync(logger, [
      '#!/bin/sh',
      'out=$2',
      'echo "$@" > "$out/args"',
      'env > "$out/env"',
      'cat <&3 > "$out/stdout" 5>&- &',
      'cat <&4 > "$out/stderr" 5>&- &',
      'trap \'wait; echo terminated > "$out/exited"; exit 0\' TERM',
      'exec 5>&-',
      'while :; do sleep 0.1; done',
      '',
    ].join('\n'), { mode: 0o755 });
    const out = path.join(dir, 'out');
    mkdirSync(out);
    const r = await ctr(['run', '--rm', '--runtime', RUNTIME, '--log-uri', `binary://${logger}?dir=${out}`, IMAGE, 'logbin', 'sh', '-c',
      'echo to-stdout; echo to-stderr >&2; exit 5']);
    expect(r.code, r.stderr).toBe(5);
    expect(r.stdout).toBe('');
    expect(readFileSync(path.join(out, 'stdout'), 'utf8')).toBe('to-stdout\n');
    expect(readFileSync(path.join(out, 'stderr'), 'utf8')).toBe('to-stderr\n');
    expect(readFileSync(path.join(out, 'args'), 'utf8')).toBe(`dir ${out}\n`);
    // The logger got its SIGTERM and finished before the task was reported gone.
    expect(readFileSync(path.join(out, 'exited'), 'utf8')).toBe('terminated\n');
    const env = readFileSync(path.join(out, 'env'), 'utf8').split('\n');
    expect(env).toContain('CONTAINER_ID=logbin');
    expect(env).toContain(`CONTAINER_NAMESPACE=${NS}`);
    // Only those: the shim's own environment (containerd's addresses, hull's settings) is not handed on.
    expect(env.filter((l) => /^(TTRPC_ADDRESS|GRPC_ADDRESS|UV_THREADPOOL_SIZE|HULL_)/.test(l))).toEqual([]);
  });

  test('leak check: no shim, VM or helper process, no mount, no pod directory', async () => {
    await until('no leftovers', () => (leftovers().length === 0 ? true : undefined), 10_000).catch(() => undefined);
    expect(leftovers()).toEqual([]);
    expect(podRecords()).toEqual([]);
    execFileSync('true');
  });
});
