// The runc lifecycle across separate CLI processes: create → state → start → exec → ps → list → kill → delete,
// against one real microVM.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hull, hullBin, hullDetached, leaks, makeBundle, noLeaks, tempDir, expectNoLeaksThenRemove } from '../helpers/hull.js';

const work = tempDir('hull-life-');
const root = path.join(work, 'root');

afterAll(async () => {
  await hull(['delete', '--force', 'life'], { root });
  expectNoLeaksThenRemove(root, work, (a, e) => expect(a).toEqual(e));
});

function stateOf(stdout: string): { status: string; pid: number; id: string; bundle: string; ociVersion: string; annotations?: Record<string, string> } {
  return JSON.parse(stdout);
}

describe('hull lifecycle', () => {
  const bundle = makeBundle(path.join(work, 'life'), ['sh', '-c', 'echo started; exec sleep 1000'], (spec) => {
    spec.annotations = { 'org.example.purpose': 'lifecycle-test' };
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

  it('refuses a duplicate id while the first exists', async () => {
    const dup = await hullDetached(['create', '--bundle', bundle, 'life'], { root, ...stdio });
    expect(dup.code).not.toBe(0);
    expect(dup.stderr).toMatch(/^hull: container life already exists\n$/);
  });

  it('start runs it; state says running', async () => {
    const started = await hull(['start', 'life'], { root });
    expect([started.code, started.stderr]).toEqual([0, '']);
    const state = stateOf((await hull(['state', 'life'], { root })).stdout);
    expect(state.status).toBe('running');
    // The container's own output went to the stdio create was given.
    const deadline = Date.now() + 10_000;
    while (!readFileSync(stdio.stdout, 'utf8').includes('started') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(readFileSync(stdio.stdout, 'utf8')).toBe('started\n');
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
    const gone = await hull(['state', 'life'], { root });
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toBe('hull: container life does not exist\n');
  });
});
