// OCI hooks through the real CLI and real microVMs (docs/hooks.md): prestart, createRuntime, createContainer on the
// host before the VM boots; startContainer in the guest, inside the container, before the workload; poststart after
// start; poststop after delete. Every host hook is one script that appends its kind, what it saw and the state it got
// on stdin to a log; the startContainer hook lives in the container's rootfs and leaves a marker the workload prints.
// Failing and timed-out create-time hooks fail create before any VM exists and must leave nothing behind.
import { chmodSync, existsSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectNoLeaksThenRemove, hull, hullDetached, leaks, makeBundle, noLeaks, tempDir } from '../helpers/hull.js';

const work = tempDir('hull-hooks-');
const root = path.join(work, 'root');
const ids = ['hk-life', 'hk-run', 'hk-badstart', 'hk-fail', 'hk-slow'];

afterAll(async () => {
  for (const id of ids) await hull(['delete', '--force', id], { root });
  expectNoLeaksThenRemove(root, work, (a, e) => expect(a).toEqual(e));
});

/** The host hook: `hook.sh KIND`, env exactly HOOK_LOG, HOOK_ROOT and PATH (hull passes only the hook's env; sh adds
 *  PWD and SHLVL, which it leaves out). */
const hookScript = path.join(work, 'hook.sh');
writeFileSync(
  hookScript,
  `#!/bin/sh
state=$(cat)
pid=$(printf '%s' "$state" | sed -n 's/.*"pid":\\([0-9]*\\).*/\\1/p')
id=$(printf '%s' "$state" | sed -n 's/.*"id":"\\([^"]*\\)".*/\\1/p')
vm=0
for f in /proc/[0-9]*/cmdline; do
  case "$(tr '\\0' ' ' < "$f" 2>/dev/null)" in *qemu-system*"-name hull-$id,"*) vm=$((vm + 1)) ;; esac
done
pidnet=-
[ -n "$pid" ] && pidnet=$(readlink /proc/$pid/ns/net)
env=$(env | grep -v -e '^PWD=' -e '^SHLVL=' -e '^_=' | sort | tr '\\n' ',')
echo "$1 vm=$vm hooknet=$(readlink /proc/self/ns/net) pidnet=$pidnet env=$env $state" >> "$HOOK_LOG"
`,
);
chmodSync(hookScript, 0o755);

interface Entry {
  kind: string;
  /** QEMU processes of this test's root running when the hook ran. */
  vm: number;
  hookNet: string;
  pidNet: string;
  /** The hook's environment, sorted, comma-terminated. */
  env: string;
  state: Record<string, unknown>;
}

function entries(log: string): Entry[] {
  if (!existsSync(log)) return [];
  return readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      // pidnet may be empty for poststart: a workload that exits at once can take its monitor (the state's pid) with it
      // before the hook looks.
      const m = /^(\S+) vm=(\d+) hooknet=(\S+) pidnet=(\S*) env=(\S*) (.*)$/.exec(line);
      if (!m) throw new Error(`bad hook log line: ${line}`);
      return { kind: m[1]!, vm: Number(m[2]), hookNet: m[3]!, pidNet: m[4]!, env: m[5]!, state: JSON.parse(m[6]!) };
    });
}

const hostHook = (kind: string, log: string) => ({ path: hookScript, args: ['hook.sh', kind], env: [`HOOK_LOG=${log}`, `HOOK_ROOT=${root}`, 'PATH=/usr/bin:/bin'], timeout: 30 });
const ourNetns = readlinkSync('/proc/self/ns/net');

/** A busybox bundle whose hooks log to `log`; the startContainer hook (in the rootfs) writes /start-marker. */
function bundleWithHooks(id: string, log: string, args: string[], edit?: (hooks: Record<string, unknown[]>) => void): string {
  const dir = makeBundle(path.join(work, id), args, (spec) => {
    spec.annotations = { 'org.example.test': 'hooks' };
    // Its own network namespace (not the host's): the monitor moves into it, the hooks must not.
    if (!spec.linux.namespaces.some((n: { type: string }) => n.type === 'network')) spec.linux.namespaces.push({ type: 'network' });
    const hooks: Record<string, unknown[]> = {
      prestart: [hostHook('prestart', log)],
      createRuntime: [hostHook('createRuntime', log)],
      createContainer: [hostHook('createContainer', log)],
      startContainer: [{ path: '/hooks/start.sh', args: ['start.sh', 'arg1'], timeout: 30 }],
      poststart: [hostHook('poststart', log)],
      poststop: [hostHook('poststop', log)],
    };
    edit?.(hooks);
    spec.hooks = hooks;
  });
  mkdirSync(path.join(dir, 'rootfs', 'hooks'));
  const inGuest = (name: string, body: string): void => {
    writeFileSync(path.join(dir, 'rootfs', 'hooks', name), `#!/bin/sh\n${body}\n`);
    chmodSync(path.join(dir, 'rootfs', 'hooks', name), 0o755);
  };
  inGuest('start.sh', 'echo "startContainer $1 host=$(hostname) $(cat)" >> /start-marker');
  inGuest('fail.sh', 'echo "guest says no" >&2; exit 4');
  return dir;
}

async function waitForStatus(id: string, want: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  let status = '';
  while (Date.now() < deadline) {
    status = (JSON.parse((await hull(['state', id], { root })).stdout || '{}') as { status?: string }).status ?? '';
    if (status === want) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  expect(status).toBe(want);
}

const leaksOf = (id: string) => {
  const found = leaks(root);
  return {
    processes: found.processes.filter((p) => p.includes(id)),
    mounts: found.mounts.filter((m) => m.includes(id)),
    stateDirs: found.stateDirs.filter((d) => d === id),
  };
};

describe('OCI hooks', () => {
  it('create → start → delete: each hook at its place, with the state it should get (one VM)', async () => {
    const id = 'hk-life';
    const log = path.join(work, `${id}.log`);
    const bundle = bundleWithHooks(id, log, ['sh', '-c', 'cat /start-marker; echo workload-ran'], (hooks) => {
      // A poststop hook that fails: a warning, and delete still succeeds.
      hooks.poststop!.push({ path: '/bin/sh', args: ['sh', '-c', 'echo "cleanup went wrong" >&2; exit 7'] });
    });
    const pidFile = path.join(work, `${id}.pid`);
    const stdio = { stdout: path.join(work, `${id}.out`), stderr: path.join(work, `${id}.err`) };

    const created = await hullDetached(['create', '--bundle', bundle, '--pid-file', pidFile, id], { root, ...stdio });
    expect([created.code, created.stderr]).toEqual([0, '']);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    const base = { ociVersion: '1.0.2', id, bundle, annotations: { 'org.example.test': 'hooks' } };
    const afterCreate = entries(log);
    expect(afterCreate.map((e) => e.kind)).toEqual(['prestart', 'createRuntime', 'createContainer']);
    for (const e of afterCreate) {
      expect(e.state).toEqual({ ...base, status: 'creating', pid });
      expect(e.vm).toBe(0); // before the VM boots
      expect(e.env).toBe(`HOOK_LOG=${log},HOOK_ROOT=${root},PATH=/usr/bin:/bin,`); // exactly the hook's env
      expect(e.hookNet).toBe(ourNetns); // in the runtime's network namespace…
      expect(e.pidNet).toMatch(/^net:\[\d+\]$/);
      expect(e.pidNet).not.toBe(ourNetns); // …while the pid they are given lives in the container's
    }
    expect(existsSync(path.join(bundle, 'rootfs', 'start-marker'))).toBe(false);

    const started = await hull(['start', id], { root });
    expect([started.code, started.stderr]).toEqual([0, '']);
    const afterStart = entries(log);
    expect(afterStart.map((e) => e.kind)).toEqual(['prestart', 'createRuntime', 'createContainer', 'poststart']);
    expect(afterStart[3]!.state).toEqual({ ...base, status: 'running', pid });
    expect(afterStart[3]!.vm).toBe(1);
    expect(afterStart[3]!.hookNet).toBe(ourNetns);
    // startContainer ran in the guest, in the container (its hostname, its root, pid 1 of its pid namespace), before
    // start returned and before the workload, which printed the marker.
    const marker = readFileSync(path.join(bundle, 'rootfs', 'start-marker'), 'utf8');
    const m = /^startContainer arg1 host=hull (.*)\n$/.exec(marker);
    expect(m, marker).not.toBeNull();
    expect(JSON.parse(m![1]!)).toEqual({ ...base, status: 'created', pid: 1 });
    await waitForStatus(id, 'stopped');
    expect(readFileSync(stdio.stdout, 'utf8')).toBe(`${marker}workload-ran\n`);

    const deleted = await hull(['delete', id], { root });
    expect(deleted.code).toBe(0);
    expect(deleted.stderr).toBe('hull: warning: poststop hook #1 (/bin/sh) failed: exit status 7: cleanup went wrong\n');
    const last = entries(log).at(-1)!;
    expect(last.kind).toBe('poststop');
    expect(last.state).toEqual({ ...base, status: 'stopped' }); // no pid: runc omits it once stopped
    expect(last.vm).toBe(0); // after delete removed the VM
    expect(leaksOf(id)).toEqual(noLeaks);
  });

  it('hull run: the same order, the pid the pid file names, a poststop failure logged to --log (one VM)', async () => {
    const id = 'hk-run';
    const log = path.join(work, `${id}.log`);
    const bundle = bundleWithHooks(id, log, ['sh', '-c', 'cat /start-marker; echo workload-ran'], (hooks) => {
      hooks.poststop!.unshift({ path: '/bin/false' });
    });
    const pidFile = path.join(work, `${id}.pid`);
    const logFile = path.join(work, `${id}.hull-log`);
    const ran = await hull(['run', '--bundle', bundle, '--pid-file', pidFile, id], { root, globalArgs: ['--log', logFile, '--log-format', 'json'] });
    expect(ran.stderr).toBe('');
    expect(ran.code).toBe(0);
    expect(ran.stdout).toMatch(/^startContainer arg1 host=hull \{.*"status":"created","pid":1,.*\}\nworkload-ran\n$/);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    const seen = entries(log);
    expect(seen.map((e) => e.kind)).toEqual(['prestart', 'createRuntime', 'createContainer', 'poststart', 'poststop']);
    expect(seen.map((e) => [e.state.status, e.state.pid, e.vm > 0])).toEqual([
      ['creating', pid, false],
      ['creating', pid, false],
      ['creating', pid, false],
      ['running', pid, true],
      ['stopped', undefined, false],
    ]);
    const warnings = readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('"level":"warn"') && l.includes('poststop'));
    expect(warnings.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(['poststop hook #0 (/bin/false) failed: exit status 1']);
    expect(leaksOf(id)).toEqual(noLeaks);
  });

  it('a failing startContainer hook fails `hull start` with one line; the workload never runs (one VM)', async () => {
    const id = 'hk-badstart';
    const log = path.join(work, `${id}.log`);
    const bundle = bundleWithHooks(id, log, ['sh', '-c', 'echo workload-ran'], (hooks) => {
      hooks.startContainer = [{ path: '/hooks/fail.sh' }];
    });
    const stdio = { stdout: path.join(work, `${id}.out`), stderr: path.join(work, `${id}.err`) };
    const created = await hullDetached(['create', '--bundle', bundle, id], { root, ...stdio });
    expect([created.code, created.stderr]).toEqual([0, '']);
    const started = await hull(['start', id], { root });
    expect(started.code).toBe(1);
    expect(started.stderr).toBe('hull: startContainer hook #0 (/hooks/fail.sh) failed: exit status 4: guest says no\n');
    await waitForStatus(id, 'stopped');
    expect(readFileSync(stdio.stdout, 'utf8')).toBe('');
    expect(entries(log).map((e) => e.kind)).toEqual(['prestart', 'createRuntime', 'createContainer']); // no poststart
    const deleted = await hull(['delete', id], { root });
    expect([deleted.code, deleted.stderr]).toEqual([0, '']);
    expect(entries(log).at(-1)!.kind).toBe('poststop');
    expect(leaksOf(id)).toEqual(noLeaks);
  });

  it('a failing createRuntime hook fails create with one line and leaves nothing; poststop still runs', async () => {
    const id = 'hk-fail';
    const log = path.join(work, `${id}.log`);
    const failing = path.join(work, 'fail-hook.sh');
    writeFileSync(failing, '#!/bin/sh\necho "some stdout"\necho "no network for you" >&2\necho "second line" >&2\nexit 3\n');
    chmodSync(failing, 0o755);
    const bundle = bundleWithHooks(id, log, ['true'], (hooks) => {
      hooks.createRuntime = [{ path: failing }];
    });
    const stdio = { stdout: path.join(work, `${id}.out`), stderr: path.join(work, `${id}.err`) };
    const created = await hullDetached(['create', '--bundle', bundle, '--pid-file', path.join(work, `${id}.pid`), id], { root, ...stdio });
    expect(created.code).not.toBe(0);
    expect(created.stderr).toBe(`hull: createRuntime hook #0 (${failing}) failed: exit status 3: no network for you\n`);
    // The runtime-spec's lifecycle: a failed create-time hook → the container is destroyed → poststop hooks run.
    expect(entries(log).map((e) => [e.kind, e.state.status])).toEqual([['prestart', 'creating'], ['poststop', 'stopped']]);
    expect(entries(log).every((e) => e.vm === 0)).toBe(true);
    expect(leaksOf(id)).toEqual(noLeaks);
    expect(existsSync(path.join(work, `${id}.pid`))).toBe(false);
    const state = await hull(['state', id], { root });
    expect([state.code, state.stderr]).toEqual([1, `hull: container ${id} does not exist\n`]);
  });

  it('a hook past its timeout is killed and fails create likewise', async () => {
    const id = 'hk-slow';
    const log = path.join(work, `${id}.log`);
    const bundle = bundleWithHooks(id, log, ['true'], (hooks) => {
      hooks.createContainer = [{ path: '/bin/sh', args: ['sh', '-c', 'echo "hanging" >&2; exec sleep 60'], timeout: 1 }];
    });
    const stdio = { stdout: path.join(work, `${id}.out`), stderr: path.join(work, `${id}.err`) };
    const began = Date.now();
    const created = await hullDetached(['create', '--bundle', bundle, id], { root, ...stdio });
    expect(Date.now() - began).toBeLessThan(10_000);
    expect(created.code).not.toBe(0);
    expect(created.stderr).toBe('hull: createContainer hook #0 (/bin/sh) timed out after 1 s (killed): hanging\n');
    expect(entries(log).map((e) => e.kind)).toEqual(['prestart', 'createRuntime', 'poststop']);
    expect(leaksOf(id)).toEqual(noLeaks);
  });

  it('refuses a bad hook in config.json before anything exists', async () => {
    const bundle = makeBundle(path.join(work, 'hk-bad'), ['true'], (spec) => {
      spec.hooks = { prestart: [{ path: 'relative/hook' }] };
    });
    const created = await hull(['create', '--bundle', bundle, 'hk-bad'], { root });
    expect(created.code).not.toBe(0);
    expect(created.stderr).toBe('hull: config.json: hooks.prestart[0].path must be an absolute path, not "relative/hook"\n');
    expect(leaksOf('hk-bad')).toEqual(noLeaks);
  });
});
