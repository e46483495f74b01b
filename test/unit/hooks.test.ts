// The host's OCI hook runner (shim/hooks.ts) and its places in the lifecycle (shim/runc/lifecycle-hooks.ts), with real tiny
// shell-script hooks in a temp dir: order, the state on stdin, argv0 and env, timeouts (the hook's process group is
// killed), one-line failures, capped output, hooks that keep their output open or never read stdin.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { HOOK_OUTPUT_CAP, HookError, hooksOf, runHook, runHooks, type HookState } from '../../shim/hooks.js';
import { hookState, runCreateHooks, runPoststartHooks, runPoststopHooks, startCallOptions } from '../../shim/runc/lifecycle-hooks.js';
import { createSandboxDir, readState, writeState, type ContainerState } from '../../shim/runc/state.js';

let tmp: string;
beforeAll(() => void (tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-hooks-'))));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const state: HookState = { ociVersion: '1.0.2', id: 'c1', status: 'creating', pid: 4242, bundle: '/b', annotations: { a: 'b' } };
const silent = pino({ enabled: false });

function script(name: string, body: string): string {
  const file = path.join(tmp, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}

/** Running (a zombie waiting for whoever inherited it counts as dead). */
const alive = (pid: number): boolean => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

describe('hooksOf', () => {
  it('keeps the known kinds, checked', () => {
    expect(hooksOf({})).toEqual({});
    const hooks = hooksOf({ hooks: { prestart: [{ path: '/a', args: ['a', 'x'], env: ['K=V'], timeout: 3 }], poststop: [], unknownKind: 5 } });
    expect(hooks).toEqual({ prestart: [{ path: '/a', args: ['a', 'x'], env: ['K=V'], timeout: 3 }] });
  });

  it('refuses bad entries with one line naming the field', () => {
    const bad: Array<[unknown, string]> = [
      [[], 'config.json: field hooks must be an object'],
      [{ prestart: {} }, 'config.json: hooks.prestart must be an array'],
      [{ createRuntime: [{ path: 'rel' }] }, 'config.json: hooks.createRuntime[0].path must be an absolute path, not "rel"'],
      [{ poststop: [{}] }, 'config.json: hooks.poststop[0].path must be an absolute path, not null'],
      [{ poststart: [{ path: '/a', args: 'x' }] }, 'config.json: hooks.poststart[0].args must be an array of strings'],
      [{ poststart: [{ path: '/a', env: ['=x'] }] }, 'config.json: hooks.poststart[0].env[0] "=x" is not KEY=VALUE'],
      [{ prestart: [{ path: '/a', timeout: 0 }] }, 'config.json: hooks.prestart[0].timeout must be a whole number of seconds > 0, not 0'],
      [{ prestart: [{ path: '/a', timeout: 1.5 }] }, 'config.json: hooks.prestart[0].timeout must be a whole number of seconds > 0, not 1.5'],
    ];
    for (const [hooks, message] of bad) expect(() => hooksOf({ hooks })).toThrow(message);
  });
});

describe('runHook', () => {
  it('gives the hook the state JSON on stdin, exactly its env, args[0] as argv0 and path as the program', async () => {
    const out = await runHook('prestart', 0, { path: '/bin/sh', args: ['my-argv0', '-c', 'head -c 8 /proc/$$/cmdline; echo; cat; echo; env | sort'], env: ['ONE=1', 'TWO=2=2', 'ONE=again'] }, state);
    const [argv0, stdin, ...env] = out.stdout.trim().split('\n');
    expect(argv0).toBe('my-argv0');
    expect(JSON.parse(stdin!)).toEqual(state);
    // sh adds PWD (and may add SHLVL): nothing else comes from our environment; a later entry for a key wins.
    expect(env.filter((e) => !/^(PWD|SHLVL|_)=/.test(e))).toEqual(['ONE=again', 'TWO=2=2']);
    expect(out.stderr).toBe('');
  });

  it('uses path as argv0 when there are no args, and runs with an empty env when there is none', async () => {
    const hook = script('argv.sh', 'echo "$0"; env | grep -c HOME || true');
    const out = await runHook('poststart', 0, { path: hook }, state);
    expect(out.stdout).toBe(`${hook}\n0\n`);
  });

  it('runs a list in order and stops at the first failure, whose one line names the hook', async () => {
    const log = path.join(tmp, 'order.log');
    const ok = script('ok.sh', `echo "$1" >> ${log}`);
    const fail = script('fail.sh', 'echo out; printf "\\n  bad thing \\033[31mhappened\\n" >&2; echo second >&2; exit 3');
    const err = await runHooks('createRuntime', [{ path: ok, args: ['ok', 'one'] }, { path: fail }, { path: ok, args: ['ok', 'three'] }], state).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HookError);
    expect((err as Error).message).toBe(`createRuntime hook #1 (${fail}) failed: exit status 3: bad thing ?[31mhappened`);
    expect((err as HookError).output).toEqual({ stdout: 'out\n', stderr: '\n  bad thing \u001b[31mhappened\nsecond\n' });
    expect(readFileSync(log, 'utf8')).toBe('one\n');
  });

  it('kills a hook past its timeout, with what it started (its process group)', async () => {
    const pidFile = path.join(tmp, 'child.pid');
    const slow = script('slow.sh', `sleep 30 & echo $! > ${pidFile}; echo "about to hang" >&2; wait`);
    const started = Date.now();
    await expect(runHook('createContainer', 2, { path: slow, timeout: 1 }, state)).rejects.toThrow(`createContainer hook #2 (${slow}) timed out after 1 s (killed): about to hang`);
    expect(Date.now() - started).toBeLessThan(3_000);
    const child = Number(readFileSync(pidFile, 'utf8'));
    await vi.waitFor(() => expect(alive(child)).toBe(false));
  });

  it('waits for a hook without a timeout; a hook killed by a signal fails', async () => {
    const slowish = script('slowish.sh', 'sleep 1.2; echo done');
    expect((await runHook('poststop', 0, { path: slowish }, state)).stdout).toBe('done\n');
    const killed = script('killed.sh', 'kill -KILL $$');
    await expect(runHook('poststop', 0, { path: killed }, state)).rejects.toThrow(`poststop hook #0 (${killed}) failed: killed by SIGKILL`);
  });

  it('keeps only the first HOOK_OUTPUT_CAP bytes of stdout and stderr, reading the rest so the hook never blocks', async () => {
    const chatty = script('chatty.sh', 'head -c 3000000 /dev/zero | tr "\\0" o; head -c 3000000 /dev/zero | tr "\\0" e >&2; exit 1');
    const err = (await runHook('prestart', 0, { path: chatty, timeout: 20 }, state).catch((e: unknown) => e)) as HookError;
    expect(err.output.stdout).toBe(`${'o'.repeat(HOOK_OUTPUT_CAP)}…`);
    expect(err.output.stderr).toBe(`${'e'.repeat(HOOK_OUTPUT_CAP)}…`);
    // The quoted stderr line is capped too.
    expect(err.message).toBe(`prestart hook #0 (${chatty}) failed: exit status 1: ${'e'.repeat(512)}…`);
  });

  it('does not hang on a hook that leaves a process holding its output, nor on one that never reads stdin', async () => {
    const leaver = script('leaver.sh', 'sleep 5 & echo left');
    const started = Date.now();
    expect((await runHook('poststart', 0, { path: leaver }, state)).stdout).toBe('left\n');
    expect(Date.now() - started).toBeLessThan(3_000);
    const deaf = script('deaf.sh', 'exec 0<&-; exit 0');
    await expect(runHook('poststart', 0, { path: deaf }, { ...state, annotations: { big: 'x'.repeat(1 << 20) } })).resolves.toBeDefined();
  });

  it('reports a hook that cannot be executed', async () => {
    const missing = path.join(tmp, 'nope');
    await expect(runHook('prestart', 0, { path: missing }, state)).rejects.toThrow(new RegExp(`^prestart hook #0 \\(${missing}\\) could not run: .*ENOENT`));
    const notExecutable = path.join(tmp, 'plain.txt');
    writeFileSync(notExecutable, 'x');
    await expect(runHook('prestart', 0, { path: notExecutable }, state)).rejects.toThrow(/could not run: .*EACCES/);
  });
});

describe('hooks in the lifecycle', () => {
  function container(id: string, hooks: ContainerState['hooks'] = undefined): { root: string; state: ContainerState } {
    const root = mkdtempSync(path.join(tmp, 'root-'));
    createSandboxDir(root, id);
    const s: ContainerState = {
      ociVersion: '1.0.2', id, bundle: '/bundles/x', rootfs: '/bundles/x/rootfs', status: 'creating', pid: process.pid,
      annotations: {}, created: new Date().toISOString(), owner: 'root', vm: {}, mounts: [], ...(hooks ? { hooks } : {}),
    };
    writeState(root, s);
    return { root, state: s };
  }

  it('create runs prestart, createRuntime, createContainer in order with status creating, and records the later hooks', async () => {
    const log = path.join(tmp, 'create.log');
    const hook = script('log.sh', `echo "$1 $(cat)" >> ${log}`);
    const h = (kind: string) => [{ path: hook, args: ['log.sh', kind] }];
    const { root } = container('c2');
    const spec = { hooks: { createContainer: h('createContainer'), poststop: h('poststop'), prestart: h('prestart'), createRuntime: h('createRuntime'), poststart: h('poststart'), startContainer: [{ path: '/in/guest', timeout: 5 }] } };
    await runCreateHooks(root, 'c2', spec, silent);
    const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => [l.split(' ')[0], JSON.parse(l.slice(l.indexOf(' ') + 1))]);
    const expected = { ociVersion: '1.0.2', id: 'c2', status: 'creating', pid: process.pid, bundle: '/bundles/x' };
    expect(lines).toEqual([['prestart', expected], ['createRuntime', expected], ['createContainer', expected]]);
    expect(readState(root, 'c2').hooks).toEqual({ startContainer: spec.hooks.startContainer, poststart: h('poststart'), poststop: h('poststop') });
    expect(startCallOptions(readState(root, 'c2'))).toEqual({ timeoutMs: 65_000 });
  });

  it('a failing create-time hook stops create there', async () => {
    const log = path.join(tmp, 'create-fail.log');
    const hook = script('log2.sh', `echo "$1" >> ${log}`);
    const { root } = container('c3');
    const spec = { hooks: { prestart: [{ path: hook, args: ['x', 'prestart'] }], createRuntime: [{ path: '/bin/false' }], createContainer: [{ path: hook, args: ['x', 'createContainer'] }] } };
    await expect(runCreateHooks(root, 'c3', spec, silent)).rejects.toThrow('createRuntime hook #0 (/bin/false) failed: exit status 1');
    expect(readFileSync(log, 'utf8')).toBe('prestart\n');
  });

  it('poststart gets status running; its failure kills the container with SIGKILL and is thrown', async () => {
    const out = path.join(tmp, 'poststart.json');
    const { root } = container('c4', { poststart: [{ path: script('ps.sh', `cat > ${out}`) }, { path: '/bin/false' }] });
    const kill = vi.fn(async (_signal: number) => undefined);
    await expect(runPoststartHooks(root, 'c4', silent, kill)).rejects.toThrow('poststart hook #1 (/bin/false) failed: exit status 1');
    expect(kill).toHaveBeenCalledWith(os.constants.signals.SIGKILL);
    expect(JSON.parse(readFileSync(out, 'utf8'))).toMatchObject({ id: 'c4', status: 'running', pid: process.pid });
    const none = container('c5');
    await runPoststartHooks(none.root, 'c5', silent, kill);
    expect(kill).toHaveBeenCalledTimes(1);
  });

  it('poststop runs every hook with status stopped and no pid; a failure is a warning (stderr without a log)', async () => {
    const out = path.join(tmp, 'poststop.json');
    const { state: s } = container('c6', { poststop: [{ path: '/bin/false' }, { path: script('pst.sh', `cat > ${out}`) }] });
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      await runPoststopHooks(s, silent);
      expect(stderr.mock.calls.map((c) => String(c[0]))).toEqual(['hull: warning: poststop hook #0 (/bin/false) failed: exit status 1\n']);
    } finally {
      stderr.mockRestore();
    }
    expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual({ ociVersion: '1.0.2', id: 'c6', status: 'stopped', bundle: '/bundles/x' });

    const lines: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _e, done) => void (lines.push(chunk.toString()), done()) });
    await runPoststopHooks(s, pino({ level: 'info' }, sink));
    expect(lines.map((l) => JSON.parse(l) as { level: number; msg: string })).toEqual([expect.objectContaining({ level: 40, msg: 'poststop hook #0 (/bin/false) failed: exit status 1' })]);
  });

  it('the hook state omits empty annotations; the StartContainer deadline follows the startContainer timeouts', () => {
    const { state: s } = container('c7');
    expect(hookState(s, 'running')).toEqual({ ociVersion: '1.0.2', id: 'c7', status: 'running', pid: process.pid, bundle: '/bundles/x' });
    expect(startCallOptions(s)).toBeUndefined();
    expect(startCallOptions({ ...s, hooks: { startContainer: [{ path: '/a', timeout: 1 }, { path: '/b' }] } })).toEqual({ timeoutMs: 0 });
  });
});
