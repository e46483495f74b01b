// startContainer hooks in the agent (agent/start-hooks.ts), with the fake container-init helper (no isolation): order,
// the state on stdin, argv0 and env, a failing or timed-out hook failing StartContainer and stopping the container.
// That they run inside the container's namespaces is shown with the real helper (container-init.test.ts) and in a
// VM (test/integration/hooks.test.ts).
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentService } from '../../agent/service.js';
import { TtrpcError } from '../../protocol/errors.js';
import { Code } from '../../protocol/ttrpc/codes.js';
import { installFakeContainerInit } from '../helpers/fake-container-init.js';


let tmp: string;
let helperPath: string;
let rootfs: string;
const services: AgentService[] = [];

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-start-hooks-'));
  helperPath = installFakeContainerInit(tmp);
  rootfs = path.join(tmp, 'shared', 'c1', 'rootfs');
  mkdirSync(rootfs, { recursive: true });
});

afterEach(async () => {
  for (const s of services.splice(0)) await s.destroySandbox().catch(() => undefined);
});

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function service(): AgentService {
  const s = new AgentService({
    helperPath,
    cgroups: null,
    log: pino({ level: 'silent' }),
    powerOff: () => undefined,
    powerOffDelayMs: 1,
    setupTimeoutMs: 10_000,
  });
  services.push(s);
  return s;
}

/** A hook script in the temp dir; `body` runs under sh. */
function script(name: string, body: string): string {
  const file = path.join(tmp, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}

function specJson(args: string[], hooks: unknown[], extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    ociVersion: '1.0.2',
    process: { args, env: ['FROM_PROCESS=yes'], cwd: '/', user: { uid: 0, gid: 0 } },
    root: { path: 'rootfs' },
    annotations: { 'org.example': 'a' },
    hooks: { startContainer: hooks, poststart: [{ path: '/not/run/by/the/agent' }] },
    ...extra,
  });
}

async function readAll(s: AgentService, id: string, which: 'stdout' | 'stderr'): Promise<string> {
  const parts: Buffer[] = [];
  for (;;) {
    const r = await s.readStream({ containerId: id, execId: '', maxLen: 1 << 20 }, which, new AbortController().signal);
    if (r.data.length === 0) return Buffer.concat(parts).toString();
    parts.push(Buffer.from(r.data));
  }
}

describe('startContainer hooks in the agent', () => {
  it('run in order before the workload, with the state on stdin, their argv0 and their env (else the process env)', async () => {
    const log = path.join(tmp, 'order.log');
    // path is what runs (sh), args[0] only its argv[0]: seen in /proc/self/cmdline.
    const first = `echo "first $(head -c 11 /proc/$$/cmdline) env=$ONLY_HOOK,$FROM_PROCESS $(cat)" >> ${log}`;
    const second = script('second.sh', `echo "second env=$ONLY_HOOK,$FROM_PROCESS" >> ${log}`);
    const s = service();
    await s.createContainer({
      containerId: 'c1',
      specJson: specJson(['sh', '-c', `echo workload >> ${log}`], [
        { path: '/bin/sh', args: ['first-argv0', '-c', first], env: ['ONLY_HOOK=1'] },
        { path: second },
      ]),
      rootfsPath: rootfs,
      stdin: false,
      bundle: '/host/bundle',
    });
    const { pid } = await s.startContainer({ containerId: 'c1' });
    expect((await s.waitProcess({ containerId: 'c1', execId: '' }, new AbortController().signal)).exitStatus).toBe(0);
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(3);
    const [firstLine, secondLine, third] = lines as [string, string, string];
    const match = /^first first-argv0 env=1, (.*)$/.exec(firstLine);
    expect(match, firstLine).not.toBeNull();
    expect(JSON.parse(match![1]!)).toEqual({
      ociVersion: '1.0.2',
      id: 'c1',
      status: 'created',
      pid, // no pid namespace with the fake helper: the guest pid
      bundle: '/host/bundle',
      annotations: { 'org.example': 'a' },
    });
    expect(secondLine).toBe('second env=,yes');
    expect(third).toBe('workload');
  });

  it('a failing hook fails StartContainer with one line naming it, stops the container, and skips the rest', async () => {
    const log = path.join(tmp, 'fail.log');
    const bad = script('bad.sh', `echo "some output"; echo "no network for you" >&2; echo more >&2; exit 3`);
    const after = script('after.sh', `echo after >> ${log}`);
    const s = service();
    await s.createContainer({
      containerId: 'c1',
      specJson: specJson(['sh', '-c', `echo workload >> ${log}`], [{ path: bad }, { path: after }]),
      rootfsPath: rootfs,
      stdin: false,
    });
    const err = await s.startContainer({ containerId: 'c1' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TtrpcError);
    expect((err as TtrpcError).code).toBe(Code.FailedPrecondition);
    expect((err as Error).message).toBe(`startContainer hook #0 (${bad}) failed: exit status 3: no network for you`);
    const exit = await s.waitProcess({ containerId: 'c1', execId: '' }, new AbortController().signal);
    expect(exit.exitStatus).not.toBe(0);
    expect(() => readFileSync(log, 'utf8')).toThrow(/ENOENT/); // neither the later hook nor the workload ran
  });

  it('a hook past its timeout is killed and fails StartContainer; one whose path does not exist fails too', async () => {
    const slow = script('slow.sh', 'exec sleep 30');
    const s = service();
    await s.createContainer({ containerId: 'c1', specJson: specJson(['true'], [{ path: slow, timeout: 1 }]), rootfsPath: rootfs, stdin: false });
    const started = Date.now();
    await expect(s.startContainer({ containerId: 'c1' })).rejects.toThrow(`startContainer hook #0 (${slow}) timed out after 1 s (killed)`);
    expect(Date.now() - started).toBeLessThan(5_000);

    await s.createContainer({ containerId: 'c2', specJson: specJson(['true'], [{ path: path.join(tmp, 'missing') }]), rootfsPath: rootfs, stdin: false });
    await expect(s.startContainer({ containerId: 'c2' })).rejects.toThrow(/^startContainer hook #0 \(.*missing\): exec .*missing: No such file or directory$/);
  });

  it('hook output is read beyond its cap, so a chatty hook never blocks', async () => {
    const chatty = script('chatty.sh', 'head -c 1000000 /dev/zero; head -c 1000000 /dev/zero >&2; exit 0');
    const s = service();
    await s.createContainer({ containerId: 'c1', specJson: specJson(['echo', 'ran'], [{ path: chatty, timeout: 20 }]), rootfsPath: rootfs, stdin: false });
    const out = readAll(s, 'c1', 'stdout');
    await s.startContainer({ containerId: 'c1' });
    expect(await out).toBe('ran\n'); // the hook's output is its own, not the container's
  });

  it('refuses a second StartContainer while the hooks run', async () => {
    const slow = script('slowish.sh', 'sleep 1');
    const s = service();
    await s.createContainer({ containerId: 'c1', specJson: specJson(['true'], [{ path: slow }]), rootfsPath: rootfs, stdin: false });
    const first = s.startContainer({ containerId: 'c1' });
    await expect(s.startContainer({ containerId: 'c1' })).rejects.toThrow('container c1 is already being started');
    await first;
  });

  it('refuses bad startContainer hooks at CreateContainer, naming the field', async () => {
    const s = service();
    const cases: Array<[unknown[], string]> = [
      [[{ path: 'relative/hook' }], 'hooks.startContainer[0].path "relative/hook" must be an absolute path'],
      [[{ path: '/bin/true', timeout: 0 }], 'hooks.startContainer[0].timeout must be a whole number of seconds > 0'],
      [[{ path: '/bin/true', env: ['NOEQUALS'] }], 'hooks.startContainer[0].env[0] "NOEQUALS" is not KEY=VALUE'],
      [[{ path: '/bin/true', args: [1] }], 'hooks.startContainer[0].args[0] must be a string'],
    ];
    for (const [hooks, message] of cases) {
      await expect(s.createContainer({ containerId: 'bad', specJson: specJson(['true'], hooks), rootfsPath: rootfs, stdin: false })).rejects.toThrow(message);
    }
  });
});
