// The confined VMM (docs/confinement.md): what hypervisor/vmm-launcher.ts asks of hull-vmm-launcher, how QEMU's
// command line names the descriptors it passes, and the launcher itself (its ASan + UBSan build) confining a stand-in
// VMM (/usr/bin/sleep) whose /proc entries the test reads: uid, capabilities, no_new_privs, namespaces, the new root,
// the passed descriptors (a listening socket, a connected one, taps in a given namespace and in its own).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sandboxPaths } from '../../hypervisor/paths.js';
import { buildQemuArgs, type QemuCommandSpec } from '../../hypervisor/qemu-command.js';
import { launcherArgs, planQemuJail, systemRoot, VMM_RLIMITS, type QemuJailInput, type SystemRoot } from '../../hypervisor/vmm-launcher.js';
import { procStatus } from '../helpers/confinement.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const LAUNCHER = path.join(ROOT, 'build/native/hull-vmm-launcher-asan');
const UID = 1_000_065_000;

const ROOT_LAYOUT: SystemRoot = { execPaths: ['/usr'], readOnly: ['/etc/ld.so.cache'], symlinks: [{ path: '/lib64', target: 'usr/lib64' }] };

function input(extra: Partial<QemuJailInput> = {}): QemuJailInput {
  return {
    uid: UID,
    gid: UID,
    paths: sandboxPaths('/var/lib/hull/c1', '/run/hull/s'),
    accel: 'tcg',
    kernelPath: '/g/vmlinux',
    initrdPath: '/g/initrd.img',
    rootImagePath: '/g/rootfs.erofs',
    agentKeyPath: '/var/lib/hull/c1/agent.key',
    sharedFs: true,
    vsock: 'vhost-user',
    taps: [],
    vhostNet: false,
    root: ROOT_LAYOUT,
    ...extra,
  };
}

describe('planQemuJail and launcherArgs', () => {
  it('gives QEMU its sockets as descriptors from 3 up and a root with only what it reads', () => {
    const i = input();
    const { spec, fds } = planQemuJail(i);
    expect(fds).toEqual({ qmp: 3, virtiofs: 4, vhostUserVsock: 5, taps: [], vhostNet: [] });
    const sock = i.paths.socketDir;
    expect(launcherArgs(spec, ['/usr/bin/qemu-system-x86_64', '-nodefaults'])).toEqual([
      '--uid', String(UID), '--gid', String(UID), '--jail', sock,
      '--ro-exec', '/usr',
      '--ro', '/etc/ld.so.cache', '--ro', '/g/vmlinux', '--ro', '/g/initrd.img', '--ro', '/g/rootfs.erofs',
      '--symlink', '/lib64=usr/lib64',
      '--copy', '/var/lib/hull/c1/agent.key',
      '--dev', '/dev/null',
      '--listen', `${sock}/qmp.sock=3`,
      '--connect', `${sock}/virtiofsd.sock=4`, '--connect', `${sock}/vhost-vsock.sock=5`,
      '--rlimit', `NOFILE=${VMM_RLIMITS.NOFILE}`, '--rlimit', `NPROC=${VMM_RLIMITS.NPROC}`, '--rlimit', 'CORE=0',
      '--env', `HULL_VM_SOCKETS=${sock}/`,
      '--', '/usr/bin/qemu-system-x86_64', '-nodefaults',
    ]);
  });

  it('opens the taps in the pod namespace (cold) or makes them in QEMU’s own (pooled), with vhost-net and /dev/kvm when usable', () => {
    const cold = planQemuJail(input({ taps: ['hulltap0', 'hulltap1'], tapNetns: '/proc/42/ns/net', vhostNet: true, accel: 'kvm', vsock: 'vhost-vsock' }));
    expect(cold.fds).toEqual({ qmp: 3, virtiofs: 4, vhostVsock: 5, taps: [6, 8], vhostNet: [7, 9] });
    const args = launcherArgs(cold.spec, ['/q']);
    expect(args).toEqual(expect.arrayContaining(['--tap-netns', '/proc/42/ns/net', '--tap', 'hulltap0=6', '--tap', 'hulltap1=8']));
    expect(args.filter((a, n) => args[n - 1] === '--open')).toEqual(['/dev/vhost-vsock=5', '/dev/vhost-net=7', '/dev/vhost-net=9']);
    expect(args.filter((a, n) => args[n - 1] === '--dev')).toEqual(['/dev/null', '/dev/kvm']);
    const pooled = planQemuJail(input({ taps: ['hullpool0'] }));
    expect(launcherArgs(pooled.spec, ['/q'])).not.toContain('--tap-netns');
    expect(pooled.spec.taps).toEqual([{ what: 'hullpool0', fd: 6 }]);
  });

  it('names the descriptors on QEMU’s command line instead of paths', () => {
    const i = input({ taps: ['hulltap0'], vhostNet: true });
    const { fds } = planQemuJail(i);
    const spec: QemuCommandSpec = {
      qemuPath: '/usr/bin/qemu-system-x86_64',
      paths: i.paths,
      accel: 'tcg',
      vcpus: 1,
      memoryMiB: 256,
      kernelPath: i.kernelPath,
      initrdPath: i.initrdPath,
      cmdline: 'console=ttyS0',
      sharedFs: true,
      vsock: { kind: 'vhost-user', socketPath: i.paths.vhostVsockSock },
      nics: [{ tap: 'hulltap0', mac: '02:00:00:00:00:01', mtu: 1500 }],
      vhostNet: true,
      fds,
    };
    const args = buildQemuArgs(spec);
    const after = (opt: string): string[] => args.filter((_, n) => args[n - 1] === opt);
    expect(after('-chardev')).toEqual(['stdio,id=console,signal=off', 'socket,id=qmp,fd=3,server=on,wait=off', 'socket,id=fs,fd=4', 'socket,id=vsock,fd=5']);
    expect(after('-netdev')).toEqual(['tap,id=net0,fd=6,vhost=on,vhostfd=7']);
    expect(args.join(' ')).not.toContain(i.paths.socketDir);
    const { fds: _none, ...byPath } = spec;
    expect(buildQemuArgs(byPath).filter((_, n, a) => a[n - 1] === '-netdev')).toEqual(['tap,id=net0,ifname=hulltap0,script=no,downscript=no,vhost=on']);
  });

  it('reads this host’s layout: /usr, and the top-level library directories as the symlinks or directories they are', () => {
    const root = systemRoot('/usr/bin/qemu-system-x86_64');
    expect(root.execPaths[0]).toBe('/usr');
    for (const top of ['/lib', '/lib64', '/bin']) {
      if (!existsSync(top)) continue;
      const link = root.symlinks.find((s) => s.path === top);
      expect(link ? readlinkSync(top) === link.target : root.execPaths.includes(top), top).toBe(true);
    }
    expect(systemRoot('/opt/qemu/bin/qemu').execPaths).toContain('/opt/qemu/bin/qemu');
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('hull-vmm-launcher (ASan + UBSan build)', () => {
  let work: string;
  let jail: string;
  const netns = `hull-vl-${process.pid}`;
  const running: ChildProcess[] = [];

  beforeAll(() => {
    execFileSync('make', ['-C', path.join(ROOT, 'native'), '-s', 'vmm-launcher', 'vmm-launcher-asan'], { stdio: 'inherit' });
    work = mkdtempSync('/tmp/hull-vl-');
    jail = path.join(work, 'jail');
    mkdirSync(jail, { mode: 0o700 });
    execFileSync('ip', ['netns', 'add', netns]);
    execFileSync('ip', ['-n', netns, 'tuntap', 'add', 'dev', 'vltap0', 'mode', 'tap']);
  });

  afterAll(() => {
    for (const c of running) c.kill('SIGKILL');
    spawnSync('ip', ['netns', 'del', netns]);
    rmSync(work, { recursive: true, force: true });
  });

  const base = (): string[] => ['--uid', String(UID), '--gid', String(UID), '--jail', jail];

  const bad: [string, string[]][] = [
    ['no arguments', []],
    ['no VMM', [...['--uid', '5', '--gid', '5', '--jail', '/tmp'], '--']],
    ['uid 0', ['--uid', '0', '--gid', '5', '--jail', '/tmp', '--', '/bin/true']],
    ['a relative path', ['--uid', '5', '--gid', '5', '--jail', '/tmp', '--ro', 'usr', '--', '/bin/true']],
    ['a path with ..', ['--uid', '5', '--gid', '5', '--jail', '/tmp', '--ro', '/usr/../etc', '--', '/bin/true']],
    ['a descriptor number out of range', ['--uid', '5', '--gid', '5', '--jail', '/tmp', '--listen', '/tmp/q.sock=2', '--', '/bin/true']],
    ['one descriptor number twice', ['--uid', '5', '--gid', '5', '--jail', '/tmp', '--listen', '/tmp/a=3', '--connect', '/tmp/b=3', '--', '/bin/true']],
    ['an unknown rlimit', ['--uid', '5', '--gid', '5', '--jail', '/tmp', '--rlimit', 'STACK=1', '--', '/bin/true']],
    ['a device outside /dev', ['--uid', '5', '--gid', '5', '--jail', '/tmp', '--dev', '/tmp/kvm', '--', '/bin/true']],
    ['a too long tap name', ['--uid', '5', '--gid', '5', '--jail', '/tmp', '--tap', 'x'.repeat(16) + '=3', '--', '/bin/true']],
    ['an environment entry without a name', ['--uid', '5', '--gid', '5', '--jail', '/tmp', '--env', '=x', '--', '/bin/true']],
    ['an unknown option', ['--uid', '5', '--gid', '5', '--jail', '/tmp', '--bogus', 'x', '--', '/bin/true']],
  ];
  for (const [what, args] of bad) {
    it(`refuses ${what} with one usage line and exit status 2`, () => {
      const r = spawnSync(LAUNCHER, args, { encoding: 'utf8', timeout: 10_000 });
      expect(r.status, r.stderr).toBe(2);
      const lines = r.stderr.split('\n').filter(Boolean);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^hull-vmm-launcher: .*usage: hull-vmm-launcher --uid/);
    });
  }

  it('fails in one line, exit status 1, when a step cannot be done (a copy under a bound directory)', () => {
    const dir = path.join(work, 'nested');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'key'), 'k');
    const r = spawnSync(LAUNCHER, [...base(), '--ro', dir, '--copy', path.join(dir, 'key'), '--', '/usr/bin/true'], { encoding: 'utf8', timeout: 10_000 });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^hull-vmm-launcher: .*not a directory of its own/);
  });

  it('confines the VMM: its uid, no capabilities, no_new_privs, own namespaces, a read-only root, passed descriptors', async () => {
    const key = path.join(work, 'secret', 'agent.key');
    mkdirSync(path.dirname(key));
    writeFileSync(key, 'the-key', { mode: 0o600 });
    const qmp = path.join(work, 'qmp.sock');
    const served = path.join(work, 'served.sock');
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(served, r));
    const accepted = new Promise<void>((r) => server.once('connection', () => r()));
    const root = systemRoot('/usr/bin/sleep');
    const args = [
      ...base(),
      ...root.execPaths.flatMap((p) => ['--ro-exec', p]),
      ...root.symlinks.flatMap((s) => ['--symlink', `${s.path}=${s.target}`]),
      ...root.readOnly.flatMap((p) => ['--ro', p]),
      '--copy', key, '--dev', '/dev/null',
      '--listen', `${qmp}=3`, '--connect', `${served}=4`,
      '--tap-netns', `/run/netns/${netns}`, '--tap', 'vltap0=5',
      '--rlimit', 'NOFILE=64', '--rlimit', 'CORE=0',
      '--env', `HULL_VM_SOCKETS=${jail}/`,
      '--', '/usr/bin/sleep', '30',
    ];
    // The launcher's own environment (the test's) is not passed on: only --env.
    const child = spawn(LAUNCHER, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    running.push(child);
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const pid = child.pid as number;
    for (let i = 0; i < 100 && !readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('/usr/bin/sleep'); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), stderr).toBe('/usr/bin/sleep\x0030\x00');
    await accepted;
    server.close();

    const s = procStatus(pid);
    expect(s.uid).toEqual([UID, UID, UID, UID]);
    expect(s.gid).toEqual([UID, UID, UID, UID]);
    expect(s.groups).toEqual([]);
    expect(s.caps).toEqual({ CapInh: 0n, CapPrm: 0n, CapEff: 0n, CapBnd: 0n, CapAmb: 0n });
    expect(s.noNewPrivs).toBe(1);
    for (const ns of ['mnt', 'net', 'ipc', 'uts']) {
      expect(readlinkSync(`/proc/${pid}/ns/${ns}`), ns).not.toBe(readlinkSync(`/proc/self/ns/${ns}`));
    }
    // The new root: /usr, the symlinks, the copy (the uid's own, 0400), /dev with null only; nothing else.
    const rootDir = `/proc/${pid}/root`;
    expect(readdirSync(rootDir).sort()).toEqual(
      [...new Set(['usr', 'dev', 'tmp', ...root.symlinks.map((l) => l.path.slice(1)), ...root.readOnly.map((p) => p.split('/')[1] as string)])].sort(),
    );
    expect(readdirSync(`${rootDir}/dev`)).toEqual(['null']);
    const copy = statSync(`${rootDir}${key}`);
    expect([copy.uid, copy.mode & 0o777]).toEqual([UID, 0o400]);
    expect(readFileSync(`${rootDir}${key}`, 'utf8')).toBe('the-key');
    expect(readFileSync(`/proc/${pid}/mounts`, 'utf8')).toMatch(/^tmpfs \/ tmpfs ro,/m);
    // Descriptors: 0-2, then exactly the three passed ones.
    const fds = readdirSync(`/proc/${pid}/fd`).map(Number).sort((a, b) => a - b);
    expect(fds).toEqual([0, 1, 2, 3, 4, 5]);
    expect(readlinkSync(`/proc/${pid}/fd/3`)).toMatch(/^socket:/);
    expect(readlinkSync(`/proc/${pid}/fd/5`)).toBe('/dev/net/tun');
    expect(readFileSync(`/proc/${pid}/fdinfo/5`, 'utf8')).toMatch(/^iff:\s+vltap0$/m);
    // The listening socket is root's, 0600-ish: QEMU never needs the socket directory.
    const q = statSync(qmp);
    expect([q.isSocket(), q.uid, q.mode & 0o077]).toEqual([true, 0, 0]);
    const limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
    expect(limits).toMatch(/^Max open files\s+64\s+64\s/m);
    expect(limits).toMatch(/^Max core file size\s+0\s+0\s/m);
    expect(readFileSync(`/proc/${pid}/environ`, 'utf8')).toBe(`HULL_VM_SOCKETS=${jail}/\x00`);
    child.kill('SIGKILL');
  });

  it('creates a tap in the VMM’s own network namespace when no --tap-netns is given (a pooled VM’s)', async () => {
    const root = systemRoot('/usr/bin/sleep');
    const args = [
      ...base(),
      ...root.execPaths.flatMap((p) => ['--ro-exec', p]),
      ...root.symlinks.flatMap((s) => ['--symlink', `${s.path}=${s.target}`]),
      '--tap', 'hullpool0=3',
      '--', '/usr/bin/sleep', '30',
    ];
    const child = spawn(LAUNCHER, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    running.push(child);
    const pid = child.pid as number;
    for (let i = 0; i < 100 && !readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('/usr/bin/sleep'); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const links = execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, 'ip', '-o', 'link', 'show'], { encoding: 'utf8' });
    expect(links).toMatch(/^\d+: hullpool0: /m);
    expect(links.split('\n').filter(Boolean)).toHaveLength(2); // lo and the tap: nothing else
    child.kill('SIGKILL');
  });
});
