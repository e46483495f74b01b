// The runc lifecycle across separate CLI processes: create → state → start → exec → ps → list → kill → delete,
// against one real microVM.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sandboxPaths } from '../../hypervisor/paths.js';
import { parseVmProcesses } from '../../hypervisor/vm-processes.js';
import { vmmUidRange } from '../../hypervisor/vmm-uid.js';
import { connectHybridVsock } from '../../hypervisor/transport.js';
import { CHALLENGE_BYTES, newAgentKeyText, parseAgentKey, proveToAgent } from '../../protocol/agent-auth.js';
import { collectUntilClose, healthRequestFrame } from '../helpers/agent-door.js';
import { connectAgent } from '../../shim/sandbox/agent-connect.js';
import { AGENT_PORT } from '../../shim/sandbox/paths.js';
import { hull, hullBin, hullDetached, leaks, makeBundle, noLeaks, tempDir, expectNoLeaksThenRemove } from '../helpers/hull.js';
import { freePort, parseScrape, sampleValue, scrapeHttp } from '../helpers/metrics.js';
import { Pool } from '../helpers/pool.js';
import { expectVmConfined } from '../helpers/confinement.js';
import { cgroupFile, existingCgroupDirs, outsideOf, removeTestParents, vmProcessTree } from '../helpers/host-cgroups.js';

const work = tempDir('hull-life-');
const root = path.join(work, 'root');
// The host cgroups of this file's VMs: a cgroupfs path, and systemd's form (slice hullit<pid>-x.slice, nested).
const cgParent = `hull-it-${process.pid}`;
const lifeCgroup = `/${cgParent}/life`;
const sdSlice = `hullit${process.pid}-x.slice`;
const sdCgroup = `/hullit${process.pid}.slice/${sdSlice}/hull-sd.scope`;

afterAll(async () => {
  await hull(['delete', '--force', 'life'], { root });
  await hull(['--systemd-cgroup', 'delete', '--force', 'sd'], { root });
  expect([...existingCgroupDirs(lifeCgroup), ...existingCgroupDirs(sdCgroup)]).toEqual([]);
  removeTestParents([`/${cgParent}`, `/hullit${process.pid}.slice/${sdSlice}`, `/hullit${process.pid}.slice`]);
  expectNoLeaksThenRemove(root, work, (a, e) => expect(a).toEqual(e));
});

/** The VM's host processes from a container's state.json, each with the processes below it. */
function vmTreeOf(id: string): number[] {
  return vmProcessTree((JSON.parse(readFileSync(path.join(root, id, 'state.json'), 'utf8')) as { vm: Parameters<typeof vmProcessTree>[0] }).vm);
}

function stateOf(stdout: string): { status: string; pid: number; id: string; bundle: string; ociVersion: string; annotations?: Record<string, string> } {
  return JSON.parse(stdout);
}

describe('hull lifecycle', () => {
  const bundle = makeBundle(path.join(work, 'life'), ['sh', '-c', 'echo started; exec sleep 1000'], (spec) => {
    spec.annotations = { 'org.example.purpose': 'lifecycle-test' };
    spec.linux.cgroupsPath = lifeCgroup;
    spec.linux.resources = { cpu: { quota: 100_000, period: 100_000, shares: 512 }, memory: { limit: 256 * 2 ** 20 } };
  });
  const pidFile = path.join(work, 'life.pid');
  // The container's stdio: create hands it to the process that stands for the container.
  const stdio = { stdout: path.join(work, 'life.out'), stderr: path.join(work, 'life.err') };

  it('create writes the pid file and leaves the container created', async () => {
    const created = await hullDetached(['create', '--bundle', bundle, '--pid-file', pidFile, 'life'], { root, ...stdio });
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const pidText = readFileSync(pidFile, 'utf8');
    expect(pidText).toMatch(/^\d+$/);
    const state = await hull(['state', 'life'], { root });
    expect(state.code).toBe(0);
    const parsed = stateOf(state.stdout);
    expect(parsed).toMatchObject({ id: 'life', status: 'created', bundle, pid: Number(pidText) });
    expect(parsed.ociVersion).toBe('1.0.2');
    expect(parsed.annotations).toEqual({ 'org.example.purpose': 'lifecycle-test' });
  });

  it("every host process of the VM is in the cgroup linux.cgroupsPath names, under limits from the spec and the VM's size", () => {
    const tree = vmTreeOf('life');
    // QEMU, the vsock broker and its worker, virtiofsd and its child.
    expect(tree.length).toBeGreaterThanOrEqual(5);
    expect(tree.flatMap((pid) => outsideOf(pid, lifeCgroup))).toEqual([]);
    // A 512 MiB VM (256 MiB limit + the guest's 256) + 192 MiB for QEMU and its helpers; 1 CPU + 0.25; 128 + 1 vCPU.
    expect(cgroupFile(lifeCgroup, 'memory', existsSync('/sys/fs/cgroup/cgroup.controllers') ? 'memory.max' : 'memory.limit_in_bytes')).toBe(
      String((512 + 192) * 2 ** 20),
    );
    if (existsSync('/sys/fs/cgroup/cgroup.controllers')) {
      expect([cgroupFile(lifeCgroup, 'cpu', 'cpu.max'), cgroupFile(lifeCgroup, 'cpu', 'cpu.weight')]).toEqual(['125000 100000', '20']);
    } else {
      const cpu = ['cpu.cfs_quota_us', 'cpu.cfs_period_us', 'cpu.shares'].map((f) => cgroupFile(lifeCgroup, 'cpu', f));
      expect(cpu).toEqual(['125000', '100000', '512']);
    }
    expect(cgroupFile(lifeCgroup, 'pids', 'pids.max')).toBe('129');
  });

  it('every host process of the VM is confined: its own uid, no capabilities, no_new_privs, seccomp (docs/confinement.md)', () => {
    const state = JSON.parse(readFileSync(path.join(root, 'life', 'state.json'), 'utf8')) as { vm: unknown };
    expect(expectVmConfined(parseVmProcesses(state.vm, 'state.json'), vmmUidRange()).map((c) => c.role)).toEqual([
      'qemu', 'vsock-broker', 'vsock-worker', 'virtiofsd', 'virtiofsd-serving',
    ]);
  });

  it('refuses a duplicate id while the first exists', async () => {
    const dup = await hullDetached(['create', '--bundle', bundle, 'life'], { root, ...stdio });
    expect(dup.code).not.toBe(0);
    expect(dup.stderr).toMatch(/^hull: container life already exists\n$/);
  });

  it('start runs it (what create read: a config.json changed since does not count); state says running', async () => {
    // The runtime-spec reads config.json at create only: a different program written now must not be what starts.
    const configPath = path.join(bundle, 'config.json');
    const original = readFileSync(configPath, 'utf8');
    const changed = JSON.parse(original) as { process: { args: string[] } };
    changed.process.args = ['sh', '-c', 'echo changed-after-create'];
    writeFileSync(configPath, JSON.stringify(changed));
    const started = await hull(['start', 'life'], { root }).finally(() => writeFileSync(configPath, original));
    expect([started.code, started.stderr]).toEqual([0, '']);
    const state = stateOf((await hull(['state', 'life'], { root })).stdout);
    expect(state.status).toBe('running');
    // The container's own output went to the stdio create was given.
    const deadline = Date.now() + 10_000;
    while (!readFileSync(stdio.stdout, 'utf8').includes('started') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(readFileSync(stdio.stdout, 'utf8')).toBe('started\n');
  });

  it('hull metrics --listen serves the sandbox (boot, size, host PSS, guest cgroup) and a serving pool, as state.json and pool status say', async () => {
    const pool = await Pool.start(root, 0); // serves, boots nothing
    try {
      const port = await freePort();
      const server = spawn(hullBin, ['--root', root, 'metrics', '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
      let serverLog = '';
      server.stderr.setEncoding('utf8').on('data', (d: string) => (serverLog += d));
      const exited = new Promise<number | null>((resolve) => server.once('exit', resolve));
      try {
        const res = await scrapeHttp(port);
        expect([res.status, res.contentType], serverLog).toEqual([200, 'text/plain; version=0.0.4; charset=utf-8']);
        const samples = parseScrape(res.body);
        const state = JSON.parse(readFileSync(path.join(root, 'life', 'state.json'), 'utf8')) as {
          boot: { ms: number; at: string; pooled: boolean; vcpus: number; memoryMiB: number };
        };
        const status = await pool.status();
        const life = { sandbox: 'life', root, pooled: 'false' };
        const v = (name: string, labels: Record<string, string> = life): number => sampleValue(samples, name, labels);
        expect(state.boot).toMatchObject({ pooled: false, vcpus: 1, memoryMiB: 512 });
        expect(v('hull_sandbox_info', { ...life, kind: 'runc' })).toBe(1);
        expect([v('hull_sandbox_up'), v('hull_sandbox_vm_running')]).toEqual([1, 1]);
        expect(v('hull_sandbox_boot_seconds')).toBe(state.boot.ms / 1000);
        expect(v('hull_sandbox_boot_timestamp_seconds')).toBe(Date.parse(state.boot.at) / 1000);
        expect([v('hull_sandbox_vcpus'), v('hull_sandbox_memory_bytes')]).toEqual([1, 512 * 2 ** 20]);
        expect(v('hull_sandbox_host_processes')).toBeGreaterThanOrEqual(3); // QEMU, the vsock broker, virtiofsd
        expect(v('hull_sandbox_host_pss_bytes')).toBeGreaterThan(10 * 2 ** 20);
        expect(v('hull_sandbox_host_pss_bytes')).toBeLessThanOrEqual(v('hull_sandbox_host_rss_bytes'));
        // The guest cgroup of the container: the spec's 256 MiB limit, `sleep` in it, some CPU spent.
        const container = { ...life, container: 'life' };
        expect(v('hull_container_memory_limit_bytes', container)).toBe(256 * 2 ** 20);
        expect(v('hull_container_memory_usage_bytes', container)).toBeGreaterThan(0);
        expect(v('hull_container_pids', container)).toBeGreaterThanOrEqual(1);
        expect(v('hull_container_cpu_usage_seconds_total', container)).toBeGreaterThan(0);
        expect(v('hull_container_oom_kills_total', container)).toBe(0);
        // The pool: what `hull pool status --format json` says.
        expect(status.serving?.pid).toBe(pool.pid);
        expect(v('hull_pool_serving', { root })).toBe(1);
        expect(v('hull_pool_target_size', { root })).toBe(status.size);
        for (const state of ['ready', 'booting', 'claimed'] as const) expect(v('hull_pool_vms', { root, state })).toBe(status[state]);
        // A second server on the same port: one line, exit 1.
        const busy = await hull(['metrics', '--listen', `127.0.0.1:${port}`], { root });
        expect([busy.code, busy.stderr]).toEqual([1, `hull: cannot listen on 127.0.0.1:${port}: the address is in use\n`]);
      } finally {
        server.kill('SIGTERM');
      }
      expect(await exited, serverLog).toBe(0);
    } finally {
      expect(await pool.stop()).toEqual({ code: 0, signal: null });
    }
  });

  it('run with the id of a running container fails and leaves that container running', async () => {
    const dup = await hull(['run', '--bundle', bundle, 'life'], { root });
    expect(dup.code).not.toBe(0);
    expect(dup.stderr).toBe('hull: container life already exists\n');
    const state = stateOf((await hull(['state', 'life'], { root })).stdout);
    expect(state.status).toBe('running');
  });

  it('exec runs another process with its own stdio and exit code (trailing command)', async () => {
    const result = await hull(['exec', 'life', 'sh', '-c', 'read line; echo got:$line; echo err >&2; exit 5'], {
      root,
      input: 'hello\n',
    });
    expect(result.stdout).toBe('got:hello\n');
    expect(result.stderr).toBe('err\n');
    expect(result.code).toBe(5);
  });

  it('exec of a missing program or into a missing cwd: one line in runc\'s words, exit 255 (as runc exec), the container runs on', async () => {
    const missing = /^hull: exec exec-\w+ in container life: exec: "\/bin\/no-such-program": stat \/bin\/no-such-program: no such file or directory\n$/;
    const attached = await hull(['exec', 'life', '/bin/no-such-program'], { root });
    expect([attached.code, attached.stdout]).toEqual([255, '']);
    expect(attached.stderr).toMatch(missing);
    const detached = await hullDetached(['exec', '--detach', 'life', '/bin/no-such-program'], { root, stdout: path.join(work, 'exec-d.out'), stderr: path.join(work, 'exec-d.err') });
    expect(detached.code).toBe(255);
    expect(detached.stderr).toMatch(missing); // once: the detached child leaves the printing to its parent
    const cwd = await hull(['exec', '--cwd', '/nonexistent', 'life', 'true'], { root });
    expect([cwd.code, cwd.stdout]).toEqual([255, '']);
    expect(cwd.stderr).toMatch(/^hull: exec exec-\w+ in container life: chdir to cwd \("\/nonexistent"\) set in config\.json failed: no such file or directory\n$/);
    expect(stateOf((await hull(['state', 'life'], { root })).stdout).status).toBe('running');
  });

  it('a SIGTERM to `hull exec` reaches the exec in the guest (as with runc), whose exit code comes back', async () => {
    const script = 'trap "echo got-term; exit 3" TERM; echo ready; while :; do sleep 1; done';
    const result = await hull(['exec', 'life', 'sh', '-c', script], { root, signalWhen: { ready: 'ready\n', signal: 'SIGTERM' } });
    expect(result.stdout).toBe('ready\ngot-term\n');
    expect(result.code).toBe(3);
    expect(stateOf((await hull(['state', 'life'], { root })).stdout).status).toBe('running');
  });

  it('exec --tty gives the process a pty in the guest, sized from hull\'s terminal (hull under script)', async () => {
    const cmd = `stty rows 22 cols 66; exec ${hullBin} --root ${root} exec --tty life sh -c 'tty; test -t 0 && echo is-a-tty; stty size; exit 4'`;
    const child = spawn('script', ['-qfec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    child.stdin.end();
    const lines = out.split('\n').map((l) => l.replace(/\r/g, ''));
    expect(code, out).toBe(4);
    expect(lines[0]).toMatch(/^\/dev\/pts\/\d+$/);
    expect(lines).toContain('is-a-tty');
    expect(lines).toContain('22 66');
    const detached = await hull(['exec', '--tty', '--detach', 'life', 'true'], { root });
    expect(detached.code).not.toBe(0);
    expect(detached.stderr).toMatch(/--tty --detach needs --console-socket/);
  });

  it('exec --process FILE with process.consoleSize: the guest pty has that size from the start, with no terminal on the host', async () => {
    const processFile = path.join(work, 'tty-process.json');
    // busybox stty prints nothing (and fails) for a pty still 0x0: the size must be there before the first look.
    const spec = { args: ['sh', '-c', 'tty; stty size; exit 5'], cwd: '/', terminal: true, consoleSize: { height: 19, width: 73 } };
    writeFileSync(processFile, JSON.stringify(spec));
    const result = await hull(['exec', '--process', processFile, 'life'], { root });
    const lines = result.stdout.split('\n').map((l) => l.replace(/\r/g, ''));
    expect(result.code, result.stdout + result.stderr).toBe(5);
    expect(lines[0]).toMatch(/^\/dev\/pts\/\d+$/);
    expect(lines[1]).toBe('19 73');
  });

  it('exec --process FILE, sharing the container’s namespaces and root (virtio-fs both ways)', async () => {
    writeFileSync(path.join(bundle, 'rootfs', 'from-host'), 'host-data\n');
    const processFile = path.join(work, 'process.json');
    writeFileSync(
      processFile,
      JSON.stringify({
        args: ['sh', '-c', 'cat /from-host; hostname; pidof sleep; echo guest-data > /from-guest'],
        cwd: '/',
        user: { uid: 0, gid: 0 },
        env: ['PATH=/bin'],
      }),
    );
    const result = await hull(['exec', '--process', processFile, 'life'], { root });
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe('host-data\nhull\n1\n');
    expect(result.code).toBe(0);
    expect(readFileSync(path.join(bundle, 'rootfs', 'from-guest'), 'utf8')).toBe('guest-data\n');
  });

  it('ps and list show the container', async () => {
    const ps = await hull(['ps', '--format', 'json', 'life'], { root });
    expect(ps.code).toBe(0);
    const pids = JSON.parse(ps.stdout) as number[];
    expect(pids.length).toBeGreaterThanOrEqual(1);
    const list = await hull(['list', '--format', 'json'], { root });
    const entries = JSON.parse(list.stdout) as { id: string; status: string }[];
    expect(entries.map((e) => [e.id, e.status])).toEqual([['life', 'running']]);
  });

  it('the agent answers only its host side: no proof or another key is closed unanswered; the key is on no command line', async () => {
    const state = JSON.parse(readFileSync(path.join(root, 'life', 'state.json'), 'utf8')) as { vmDir?: string };
    const vmDir = state.vmDir ?? path.join(root, 'life');
    const paths = sandboxPaths(vmDir);
    // The key: root's alone on the host, and in no process's command line (QEMU gets it as a fw_cfg file).
    const keyStat = statSync(paths.agentKey);
    expect([keyStat.uid, keyStat.mode & 0o777]).toEqual([0, 0o600]);
    const keyHex = readFileSync(paths.agentKey, 'utf8').trim();
    const qemuPid = (JSON.parse(readFileSync(paths.vmmRecord, 'utf8')) as { processes: { vmm: { pid: number } } }).processes.vmm.pid;
    expect(readFileSync(`/proc/${qemuPid}/cmdline`, 'utf8')).toContain('-fw_cfg');
    for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      let cmdline = '';
      try {
        cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      } catch {
        continue; // exited meanwhile
      }
      expect(cmdline.includes(keyHex), `the agent key is on the command line of pid ${pid}`).toBe(false);
    }

    // A host side without the key: a well-formed Health request where the proof belongs.
    const bare = await connectHybridVsock(paths.vsockSock, AGENT_PORT, 10_000);
    const bareReply = collectUntilClose(bare);
    bare.write(await healthRequestFrame());
    expect((await bareReply).length).toBe(CHALLENGE_BYTES);

    // A host side with another key: the proof is refused, the request behind it never answered.
    const wrong = await connectHybridVsock(paths.vsockSock, AGENT_PORT, 10_000);
    const wrongReply = collectUntilClose(wrong);
    await proveToAgent(wrong, parseAgentKey(newAgentKeyText(), 'another key'), 10_000);
    wrong.write(await healthRequestFrame());
    expect((await wrongReply).length).toBe(CHALLENGE_BYTES);

    // The VM's own key still gets answers, through the one function every host caller uses.
    const started = Date.now();
    const agent = await connectAgent(vmDir, { timeoutMs: 10_000 });
    expect((await agent.health()).status).toBe('SERVING');
    agent.close();
    console.log(`agent connect + door check + Health: ${Date.now() - started} ms`);
    // And the agent itself said why it closed the other two (its log reaches console.log a moment later).
    const refusals = (): number => (readFileSync(path.join(vmDir, 'console.log'), 'utf8').match(/connection refused: no proof of the agent key/g) ?? []).length;
    const deadline = Date.now() + 5_000;
    while (refusals() < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(refusals()).toBe(2);
  });

  it('delete without --force refuses a running container', async () => {
    const refused = await hull(['delete', 'life'], { root });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/not stopped/);
  });

  it('kill with a signal name stops it; the monitor exits with 128+9', async () => {
    const monitorPid = Number(readFileSync(pidFile, 'utf8'));
    const killed = await hull(['kill', 'life', 'SIGKILL'], { root });
    expect([killed.code, killed.stderr]).toEqual([0, '']);
    const deadline = Date.now() + 30_000;
    let status = '';
    while (Date.now() < deadline) {
      status = stateOf((await hull(['state', 'life'], { root })).stdout).status;
      if (status === 'stopped') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(status).toBe('stopped');
    const recorded = JSON.parse(readFileSync(path.join(root, 'life', 'state.json'), 'utf8'));
    expect(recorded.exitStatus).toBe(137);
    // The monitor powers the VM off after recording the exit, then exits itself.
    while (existsSync(`/proc/${monitorPid}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(existsSync(`/proc/${monitorPid}`)).toBe(false);
  });

  it('delete removes everything', async () => {
    const deleted = await hull(['delete', 'life'], { root });
    expect([deleted.code, deleted.stderr]).toEqual([0, '']);
    expect(leaks(root)).toEqual(noLeaks);
    expect(existingCgroupDirs(lifeCgroup)).toEqual([]);
    const gone = await hull(['state', 'life'], { root });
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toBe('hull: container life does not exist\n');
  });

  it('--systemd-cgroup: slice:prefix:name is the scope prefix-name.scope in the nested slice; delete removes it', async () => {
    const sd = makeBundle(path.join(work, 'sd'), ['sleep', '1000'], (spec) => (spec.linux.cgroupsPath = `${sdSlice}:hull:sd`));
    const created = await hullDetached(['--systemd-cgroup', 'create', '--bundle', sd, 'sd'], { root, stdout: path.join(work, 'sd.out'), stderr: path.join(work, 'sd.err') });
    expect([created.code, created.stderr]).toEqual([0, '']);
    const tree = vmTreeOf('sd');
    expect(tree.length).toBeGreaterThanOrEqual(5);
    expect(tree.flatMap((pid) => outsideOf(pid, sdCgroup))).toEqual([]);
    const deleted = await hull(['--systemd-cgroup', 'delete', '--force', 'sd'], { root });
    expect([deleted.code, deleted.stderr]).toEqual([0, '']);
    expect(existingCgroupDirs(sdCgroup)).toEqual([]);
    expect(leaks(root)).toEqual(noLeaks);
  });
});
