// Bad input: a clear one-line error naming what is wrong, a non-zero exit, and nothing left behind.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync, copyFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hull, hullBin, leaks, makeBundle, noLeaks, tempDir, repo, expectNoLeaksThenRemove } from '../helpers/hull.js';
import { existingCgroupDirs } from '../helpers/host-cgroups.js';

const work = tempDir('hull-bad-');
const root = path.join(work, 'root');
let good: string;

beforeAll(() => {
  good = makeBundle(path.join(work, 'good'), ['true']);
});

afterAll(() => {
  expectNoLeaksThenRemove(root, work, (a, e) => expect(a).toEqual(e));
});

async function expectOneLineError(args: string[], pattern: RegExp, env?: Record<string, string>, code?: number): Promise<void> {
  const result = await hull(args, { root, env });
  expect(result.code).not.toBe(0);
  if (code !== undefined) expect(result.code).toBe(code);
  expect(result.stdout).toBe('');
  expect(result.stderr.split('\n').filter(Boolean)).toHaveLength(1);
  expect(result.stderr).toMatch(pattern);
  expect(leaks(root)).toEqual(noLeaks);
}

function bundleWith(name: string, edit: (spec: Record<string, any>) => void): string {
  return makeBundle(path.join(work, name), ['true'], edit);
}

describe('bad input', () => {
  it('missing bundle directory', () => expectOneLineError(['run', '-b', path.join(work, 'nope'), 'x'], /bundle directory .*nope does not exist/));

  it('--console-socket (the pty master lives in the VM, there is no host fd to send)', async () => {
    await expectOneLineError(['run', '--console-socket', path.join(work, 'console.sock'), '-b', good, 'x'], /--console-socket is not supported: the pty lives inside the VM/);
    await expectOneLineError(['create', '--console-socket', path.join(work, 'console.sock'), '-b', good, 'x'], /--console-socket is not supported/);
  });

  it('missing config.json', () => {
    const dir = path.join(work, 'empty');
    mkdirSync(dir, { recursive: true });
    return expectOneLineError(['run', '-b', dir, 'x'], /config\.json not found in bundle/);
  });

  it('malformed config.json', () => {
    const dir = path.join(work, 'malformed');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'config.json'), '{"ociVersion": ');
    return expectOneLineError(['run', '-b', dir, 'x'], /config\.json in .* is not valid JSON/);
  });

  it('a missing field is named', () =>
    expectOneLineError(['run', '-b', bundleWith('noargs', (s) => delete s.process.args), 'x'], /field \/process is missing args/));

  it('a field of the wrong type is named', () =>
    expectOneLineError(['run', '-b', bundleWith('badcwd', (s) => (s.process.cwd = 5)), 'x'], /field \/process\/cwd must be string/));

  it('unsupported ociVersion', () =>
    expectOneLineError(['run', '-b', bundleWith('v2', (s) => (s.ociVersion = '2.0.0')), 'x'], /unsupported ociVersion "2\.0\.0"/));

  it('missing rootfs', () =>
    expectOneLineError(['run', '-b', bundleWith('noroot', (s) => (s.root.path = 'missing')), 'x'], /rootfs .*missing does not exist/));

  it('root.path escaping the bundle', () =>
    expectOneLineError(['run', '-b', bundleWith('escape', (s) => (s.root.path = '../../etc')), 'x'], /root\.path "\.\.\/\.\.\/etc" escapes the bundle/));

  it('relative cwd', () =>
    expectOneLineError(['run', '-b', bundleWith('relcwd', (s) => (s.process.cwd = 'tmp')), 'x'], /process\.cwd "tmp" must be an absolute path/));

  // runc's create-time checks, made in the guest with the workload's credentials before the container is created:
  // `hull run` and `hull create` fail, in runc's words, with nothing left. One VM boot each: two cases per front end
  // (every wording is covered without a VM in test/unit/container-init.test.ts).
  it('run of a missing program: runc\'s "exec: …: stat …: no such file or directory", exit 1', async () => {
    const bundle = makeBundle(path.join(work, 'noexec'), ['/bin/no-such-program']);
    await expectOneLineError(['run', '-b', bundle, 'noexec'], /^hull: container noexec: exec: "\/bin\/no-such-program": stat \/bin\/no-such-program: no such file or directory\n$/, undefined, 1);
  });

  it('create of a program that is not executable: runc\'s "permission denied", exit 1, nothing to start', async () => {
    const bundle = makeBundle(path.join(work, 'noperm'), ['/etc/passwd']);
    await expectOneLineError(['create', '-b', bundle, 'noperm'], /^hull: container noperm: exec: "\/etc\/passwd": permission denied\n$/, undefined, 1);
  });

  it('run with a cwd that does not exist: runc\'s "chdir to cwd … failed", exit 1', async () => {
    const bundle = bundleWith('nocwd', (s) => (s.process.cwd = '/nonexistent'));
    await expectOneLineError(['run', '-b', bundle, 'nocwd'], /^hull: container nocwd: chdir to cwd \("\/nonexistent"\) set in config\.json failed: no such file or directory\n$/, undefined, 1);
  });

  it('create with a cwd that is a file: runc\'s "not a directory", exit 1', async () => {
    const bundle = bundleWith('filecwd', (s) => (s.process.cwd = '/etc/passwd'));
    await expectOneLineError(['create', '-b', bundle, 'filecwd'], /^hull: container filecwd: chdir to cwd \("\/etc\/passwd"\) set in config\.json failed: not a directory\n$/, undefined, 1);
  });

  it('id with characters outside [A-Za-z0-9_.-]', () => expectOneLineError(['run', '-b', good, 'bad/id'], /invalid container id "bad\/id"/));

  it('unknown id', async () => {
    for (const command of [['state', 'ghost'], ['start', 'ghost'], ['kill', 'ghost'], ['delete', 'ghost'], ['exec', 'ghost', 'true'], ['ps', 'ghost']]) {
      await expectOneLineError(command, /container ghost does not exist/);
    }
  });

  it('delete --force of an unknown id succeeds', async () => {
    const result = await hull(['delete', '--force', 'ghost'], { root });
    expect(result.code).toBe(0);
  });

  it('delete --force from a working directory that was removed (containerd-shim-runc-v2 cleans up from the bundle dir)', () => {
    const gone = path.join(work, 'removed-cwd');
    const script = `mkdir "${gone}" && cd "${gone}" && rmdir "${gone}" && exec "${hullBin}" --root "${root}" delete --force ghost`;
    const result = spawnSync('sh', ['-c', script], { encoding: 'utf8' });
    expect([result.status, result.stderr]).toEqual([0, '']);
  });

  it('invalid signal', () => expectOneLineError(['kill', 'ghost', 'SIGNOPE'], /invalid signal "SIGNOPE"|does not exist/));

  it('a bad config file (docs/config.md): one line naming the file and the key, before anything exists', async () => {
    const config = path.join(work, 'bad-config.toml');
    writeFileSync(config, '[vm]\nmemory_mib = "lots"\n');
    const line = new RegExp(`^hull: ${config.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: vm\\.memory_mib: must be a whole number from 128 to 1048576, got "lots"\n$`);
    await expectOneLineError(['run', '-b', good, 'cfg'], line, { HULL_CONFIG: config }, 1);
    await expectOneLineError(['create', '-b', good, 'cfg'], line, { HULL_CONFIG: config }, 1);
    await expectOneLineError(['pool', 'serve', '--size', '1'], line, { HULL_CONFIG: config }, 1);
  });

  it('pool serve with neither --size nor pool.size', () =>
    expectOneLineError(['pool', 'serve'], /^hull: pool serve needs --size \(or pool\.size in the config file, docs\/config\.md\)\n$/, { HULL_CONFIG: '/dev/null' }, 1));

  it('QEMU missing says what to install', () =>
    expectOneLineError(['run', '-b', good, 'noqemu'], /qemu.*not found.*qemu-system-x86/i, { HULL_QEMU: '/nonexistent/qemu-system-x86_64' }));

  it('virtiofsd missing says what to install', () =>
    expectOneLineError(['run', '-b', good, 'nofsd'], /virtiofsd.*not found.*qemu-system-common/i, { HULL_VIRTIOFSD: '/nonexistent/virtiofsd' }));

  it('a VM that fails to boot: why, plus the console', () => {
    // A guest image whose kernel is not a kernel: QEMU refuses it.
    const guest = path.join(work, 'broken-guest');
    mkdirSync(guest, { recursive: true });
    const current = path.join(repo, 'build', 'guest', 'current');
    copyFileSync(path.join(current, 'manifest.json'), path.join(guest, 'manifest.json'));
    copyFileSync(path.join(current, 'initrd.img'), path.join(guest, 'initrd.img'));
    writeFileSync(path.join(guest, 'vmlinux'), 'this is not a kernel');
    return expectOneLineError(['run', '-b', good, 'noboot'], /failed to boot/, { HULL_GUEST_DIR: guest }).finally(() =>
      rmSync(guest, { recursive: true, force: true }),
    );
  });

  it('an agent that never answers: a bounded wait, then guidance naming where the vCPU is and the console log', () =>
    expectOneLineError(
      ['run', '-b', good, 'slow'],
      /agent did not answer within 0\.3 s .*; vCPU 0 (halted|running) at rip [0-9a-f]+, [\d.]+ s of host CPU in \d+ s; guest console/,
      { HULL_AGENT_TIMEOUT_MS: '300' },
    ));

  it('the host network (no network namespace, e.g. --network host): a VM cannot join it', async () => {
    const hostNet = bundleWith('hostnet', (spec) => {
      spec.linux.namespaces = spec.linux.namespaces.filter((n: { type: string }) => n.type !== 'network');
    });
    for (const cmd of ['run', 'create']) {
      await expectOneLineError([cmd, '-b', hostNet, 'hostnet'], /^hull: the spec keeps the host network namespace .*cannot join the host network/);
    }
  });

  it('a cgroupsPath that climbs out of the hierarchy, runs through a file, or is not systemd\'s form: one line, nothing made', async () => {
    await expectOneLineError(
      ['run', '-b', bundleWith('cg-climb', (s) => (s.linux.cgroupsPath = '../../x')), 'x'],
      /^hull: cgroupsPath "\.\.\/\.\.\/x" must not contain "\.\." \(it would leave the cgroup hierarchy\)\n$/,
    );
    await expectOneLineError(
      ['create', '-b', bundleWith('cg-file', (s) => (s.linux.cgroupsPath = '/cgroup.procs/x')), 'x'],
      /^hull: cgroupsPath "\/cgroup\.procs\/x": \/sys\/fs\/cgroup\/(\S+\/)?cgroup\.procs exists and is not a cgroup directory\n$/,
    );
    await expectOneLineError(
      ['--systemd-cgroup', 'create', '-b', bundleWith('cg-sd', (s) => (s.linux.cgroupsPath = '/not/systemd')), 'x'],
      /^hull: cgroupsPath "\/not\/systemd" is not of the form "slice:prefix:name" that the systemd cgroup driver expects\n$/,
    );
    expect(existingCgroupDirs('/x')).toEqual([]);
  });

  it('a network namespace path that does not exist, or is no network namespace', async () => {
    const setPath = (p: string) => (spec: Record<string, any>) => {
      spec.linux.namespaces = spec.linux.namespaces.map((n: { type: string }) => (n.type === 'network' ? { type: 'network', path: p } : n));
    };
    const missing = path.join(work, 'no-such-netns');
    const plainFile = path.join(work, 'plain-file');
    writeFileSync(plainFile, '');
    for (const cmd of ['run', 'create']) {
      await expectOneLineError([cmd, '-b', bundleWith(`ns-missing-${cmd}`, setPath(missing)), 'nsx'], new RegExp(`^hull: network namespace ${missing} does not exist\n$`));
      await expectOneLineError([cmd, '-b', bundleWith(`ns-file-${cmd}`, setPath(plainFile)), 'nsx'], new RegExp(`^hull: ${plainFile} is not a network namespace\n$`));
      await expectOneLineError([cmd, '-b', bundleWith(`ns-pid-${cmd}`, setPath('/proc/self/ns/pid')), 'nsx'], /^hull: \/proc\/self\/ns\/pid is not a network namespace\n$/);
    }
  });
});
