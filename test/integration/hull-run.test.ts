// `hull run` end to end: a real microVM under QEMU (TCG here), real virtiofsd, the real vsock backend and the real
// guest agent. Nothing here is mocked.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { socketDirFor } from '../../hypervisor/paths.js';
import { hull, hullBin, leaks, makeBundle, noLeaks, tempDir, expectNoLeaksThenRemove } from '../helpers/hull.js';
import { chooseAcceleration } from '../../hypervisor/acceleration.js';

const work = tempDir('hull-run-');
const root = path.join(work, 'root');

/** Like hull(), but keeps stdout as bytes. */
function hullBuffer(args: string[], rootDir: string): Promise<{ code: number | null; stdout: Buffer; stderr: Buffer }> {
  return new Promise((resolve, reject) => {
    const child = spawn(hullBin, ['--root', rootDir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err) }));
  });
}

afterAll(() => {
  expectNoLeaksThenRemove(root, work, (a, e) => expect(a).toEqual(e));
});

describe('hull run', () => {
  let factsBundle: string;
  beforeAll(() => {
    const script = [
      'echo "kernel=$(uname -r)"',
      'echo "pid=$$"',
      'echo "hostname=$(hostname)"',
      'echo "cwd=$(pwd)"',
      'echo "id=$(id -u):$(id -g):$(id -G)"',
      'echo "greeting=$GREETING"',
      'echo "args=$0 $1"',
      'echo "nofile=$(ulimit -n)"',
      'cg=$(cut -d: -f3 /proc/self/cgroup)',
      'echo "cgroup=$cg"',
      'echo "memory.max=$(cat /sys/fs/cgroup$cg/memory.max)"',
      'echo "pids.max=$(cat /sys/fs/cgroup$cg/pids.max)"',
      'echo "cpu.max=$(cat /sys/fs/cgroup$cg/cpu.max)"',
      "echo \"memtotal=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)\"",
      'echo to-stderr >&2',
      'echo from-guest > /tmp/written-by-guest',
      'exit 7',
    ].join('; ');
    factsBundle = makeBundle(path.join(work, 'facts'), ['sh', '-c', script, 'arg0', 'arg1'], (spec) => {
      spec.hostname = 'facts-host';
      spec.process.cwd = '/tmp';
      spec.process.user = { uid: 1000, gid: 1001, additionalGids: [1002] };
      spec.process.env.push('GREETING=hello-env');
      spec.process.rlimits = [{ type: 'RLIMIT_NOFILE', hard: 777, soft: 777 }];
      spec.linux.resources = { memory: { limit: 64 * 2 ** 20 }, pids: { limit: 50 }, cpu: { quota: 50000, period: 100000 } };
      spec.mounts.push({ destination: '/sys/fs/cgroup', type: 'cgroup2', source: 'cgroup2', options: ['ro'] });
    });
  });

  it('runs the bundle in a microVM with the spec’s process settings, separate stdout/stderr and the exit code', async () => {
    // A config file (docs/config.md) sizes the VM: vm.memory_mib beats the built-in 512 MiB (the spec's 64 MiB limit
    // needs only 64 + 256).
    const config = path.join(work, 'config.toml');
    writeFileSync(config, '[vm]\nmemory_mib = 768\n');
    const result = await hull(['run', '--bundle', factsBundle, 'facts'], { root, env: { HULL_CONFIG: config } });
    expect(result.stderr).toBe('to-stderr\n');
    const facts = Object.fromEntries(result.stdout.trim().split('\n').map((line) => line.split(/=(.*)/s).slice(0, 2)));
    expect(facts.kernel).toMatch(/cloud-amd64$/);
    expect(facts.kernel).not.toBe(os.release());
    expect(facts.pid).toBe('1');
    expect(facts.hostname).toBe('facts-host');
    expect(facts.cwd).toBe('/tmp');
    expect(facts.id).toBe('1000:1001:1001 1002');
    expect(facts.greeting).toBe('hello-env');
    expect(facts.args).toBe('arg0 arg1');
    expect(facts.nofile).toBe('777');
    // cgroup v2 limits from linux.resources, applied in the guest.
    expect(facts.cgroup).toBe('/hull/facts');
    expect(facts['memory.max']).toBe(String(64 * 2 ** 20));
    expect(facts['pids.max']).toBe('50');
    expect(facts['cpu.max']).toBe('50000 100000');
    // The guest kernel keeps some of the 768 MiB for itself; 512 MiB (the default) would show less than 512 * 1024 kB.
    expect(Number(facts.memtotal)).toBeGreaterThan(640 * 1024);
    expect(Number(facts.memtotal)).toBeLessThanOrEqual(768 * 1024);
    expect(result.code).toBe(7);
    // virtio-fs: what the container wrote is in the bundle's rootfs on the host.
    expect(readFileSync(path.join(factsBundle, 'rootfs', 'tmp', 'written-by-guest'), 'utf8')).toBe('from-guest\n');
    expect(leaks(root)).toEqual(noLeaks);
  });

  it('gives a process.terminal process a real pty, and sizes it from the host terminal (hull under script)', async () => {
    const bundle = makeBundle(path.join(work, 'tty'), ['sh', '-c', 'tty; test -t 0 && test -t 1 && echo stdin-and-stdout-are-ttys; stty size; echo to-stderr >&2'], (spec) => {
      spec.process.terminal = true;
    });
    // script(1) gives hull a terminal as stdin/stdout; `stty` sets that terminal's size, which hull sends as ResizePty.
    const cmd = `stty rows 31 cols 101; exec ${hullBin} --root ${root} run --bundle ${bundle} tty1`;
    const child = spawn('script', ['-qfec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    child.stdin.end();
    expect(code).toBe(0);
    const lines = out.split(/\r?\n/).map((l) => l.replace(/\r/g, ''));
    // On a terminal, hull says first, in one line, when the VM runs without KVM (as on these machines).
    if (chooseAcceleration('auto').accel === 'tcg') {
      expect(lines.shift()).toMatch(/^hull: warning: using TCG software emulation: /);
    }
    expect(lines[0]).toMatch(/^\/dev\/pts\/\d+$/);
    expect(lines).toContain('stdin-and-stdout-are-ttys');
    expect(lines).toContain('31 101');
    expect(lines).toContain('to-stderr'); // stderr shares the pty
  });

  it('forwards stdin and closes it at EOF', async () => {
    const bundle = makeBundle(path.join(work, 'wc'), ['wc', '-l']);
    const result = await hull(['run', '--bundle', bundle, 'wc'], { root, input: 'a\nb\n' });
    expect(result.stderr).toBe('');
    expect(result.stdout.trim()).toBe('2');
    expect(result.code).toBe(0);
  });

  it('delivers a large output intact, stdout and stderr kept apart', async () => {
    const bundle = makeBundle(path.join(work, 'big'), ['sh', '-c', 'head -c 33554432 /dev/urandom > /tmp/blob; md5sum < /tmp/blob >&2; cat /tmp/blob']);
    const result = await hullBuffer(['run', '--bundle', bundle, 'big'], root);
    expect(result.code).toBe(0);
    expect(result.stdout.length).toBe(32 * 2 ** 20);
    const digest = createHash('md5').update(result.stdout).digest('hex');
    expect(result.stderr.toString()).toBe(`${digest}  -\n`);
  });

  it('exits with 128+n when the process dies of signal n (killed from another hull call)', async () => {
    const bundle = makeBundle(path.join(work, 'sig'), ['sleep', '1000']);
    const running = hull(['run', '--bundle', bundle, 'sig'], { root });
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const state = await hull(['state', 'sig'], { root });
      if (state.code === 0 && JSON.parse(state.stdout).status === 'running') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const killed = await hull(['kill', 'sig', '9'], { root });
    expect([killed.code, killed.stderr]).toEqual([0, '']);
    const result = await running;
    expect(result.code).toBe(137);
    expect(leaks(root)).toEqual(noLeaks);
  });

  it('passes a SIGTERM it gets on to the container (as `runc run` does), then cleans up after the exit', async () => {
    const script = 'trap "echo got-term; exit 3" TERM; echo ready; while :; do sleep 1; done';
    const bundle = makeBundle(path.join(work, 'term'), ['sh', '-c', script]);
    const result = await hull(['run', '--bundle', bundle, 'term'], { root, signalWhen: { ready: 'ready\n', signal: 'SIGTERM' } });
    expect(result.stdout).toBe('ready\ngot-term\n');
    expect(result.code).toBe(3);
    expect(leaks(root)).toEqual(noLeaks);
  });

  it('runs two sandboxes at once', async () => {
    const a = makeBundle(path.join(work, 'two-a'), ['sh', '-c', 'echo I am $(hostname)'], (s) => (s.hostname = 'box-a'));
    const b = makeBundle(path.join(work, 'two-b'), ['sh', '-c', 'echo I am $(hostname); exit 3'], (s) => (s.hostname = 'box-b'));
    const [ra, rb] = await Promise.all([
      hull(['run', '--bundle', a, 'two-a'], { root }),
      hull(['run', '--bundle', b, 'two-b'], { root }),
    ]);
    expect([ra.stdout, ra.code]).toEqual(['I am box-a\n', 0]);
    expect([rb.stdout, rb.code]).toEqual(['I am box-b\n', 3]);
    expect(leaks(root)).toEqual(noLeaks);
  });

  it('host bind mounts reach the guest: a file read-only (on the host too), a directory read-write, /dev/null as before', async () => {
    const hostFile = path.join(work, 'host-hosts');
    const hostDir = path.join(work, 'host-data');
    writeFileSync(hostFile, '10.1.2.3 from-the-host\n');
    mkdirSync(hostDir, { recursive: true });
    const script = [
      'cat /etc/hosts',
      '{ echo changed > /etc/hosts; } 2>/dev/null && echo file-writable || echo file-read-only',
      // The container is root in the guest: even with the guest mount made writable, the host mount refuses writes.
      'mount -o remount,bind,rw /etc/hosts && echo guest-mount-rw',
      '{ echo changed > /etc/hosts; } 2>/dev/null && echo host-writable || echo host-read-only',
      'echo from-guest > /data/written-by-guest',
      'test -c /null2 && echo null-is-a-device',
    ].join('; ');
    const bundle = makeBundle(path.join(work, 'binds'), ['sh', '-c', script], (spec) => {
      spec.mounts.push(
        { destination: '/etc/hosts', type: 'bind', source: hostFile, options: ['rbind', 'ro'] },
        { destination: '/data', type: 'bind', source: hostDir, options: ['rbind', 'rw'] },
        { destination: '/null2', type: 'bind', source: '/dev/null', options: ['bind'] },
      );
    });
    const result = await hull(['run', '--bundle', bundle, 'binds'], { root });
    expect([result.code, result.stderr]).toEqual([0, '']);
    expect(result.stdout.split('\n')).toEqual([
      '10.1.2.3 from-the-host',
      'file-read-only',
      'guest-mount-rw',
      'host-read-only',
      'null-is-a-device',
      '',
    ]);
    expect(readFileSync(path.join(hostDir, 'written-by-guest'), 'utf8')).toBe('from-guest\n');
    expect(readFileSync(hostFile, 'utf8')).toBe('10.1.2.3 from-the-host\n');
    expect(leaks(root)).toEqual(noLeaks);
  });

  it('enforces capabilities, no_new_privs, masked and readonly paths, sysctls and seccomp in the guest', async () => {
    const script = [
      'grep -E "^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):" /proc/self/status',
      'echo "kcore=$(wc -c < /proc/kcore)"',
      'echo "acpi=$(ls -A /proc/acpi 2>/dev/null | wc -l)"',
      'echo "shm_rmid_forced=$(cat /proc/sys/kernel/shm_rmid_forced)"',
      'echo 0 2>/dev/null > /proc/sys/kernel/shm_rmid_forced && echo proc-sys=writable || echo proc-sys=readonly',
      'mkdir /tmp/denied 2>&1 | sed "s/^/mkdir: /"',
      'touch /tmp/allowed && echo touch=ok',
    ].join('; ');
    const bundle = makeBundle(path.join(work, 'secure'), ['sh', '-c', script], (spec) => {
      const caps = ['CAP_CHOWN', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];
      spec.process.capabilities = { bounding: caps, effective: caps, permitted: caps };
      spec.process.noNewPrivileges = true;
      spec.linux.maskedPaths = ['/proc/kcore', '/proc/acpi', '/proc/keys', '/proc/no-such-path'];
      spec.linux.readonlyPaths = ['/proc/sys', '/proc/sysrq-trigger', '/proc/bus'];
      spec.linux.sysctl = { 'kernel.shm_rmid_forced': '1' };
      spec.linux.seccomp = {
        defaultAction: 'SCMP_ACT_ALLOW',
        architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
        syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
      };
    });
    const result = await hull(['run', '--bundle', bundle, 'secure'], { root });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const facts = Object.fromEntries(result.stdout.trim().split('\n').map((line) => line.split(/[:=]\s*(.*)/s).slice(0, 2)));
    // CAP_CHOWN (0), CAP_KILL (5), CAP_NET_BIND_SERVICE (10): root keeps exactly the bounding set over exec.
    expect(facts).toMatchObject({ CapInh: '0000000000000000', CapPrm: '0000000000000421', CapEff: '0000000000000421', CapBnd: '0000000000000421', CapAmb: '0000000000000000' });
    expect(facts.NoNewPrivs).toBe('1');
    expect(facts.Seccomp).toBe('2');
    expect(facts.kcore).toBe('0');
    expect(facts.acpi).toBe('0');
    expect(facts.shm_rmid_forced).toBe('1');
    expect(facts['proc-sys']).toBe('readonly');
    expect(facts.mkdir).toBe("mkdir: can't create directory '/tmp/denied': Operation not permitted");
    expect(facts.touch).toBe('ok');
    expect(leaks(root)).toEqual(noLeaks);
  });

  it("applies oomScoreAdj, linux.devices, exact rlimits, net.* sysctls and the node's hostname (no UTS namespace)", async () => {
    const script = [
      'echo "hostname=$(hostname)"',
      'echo "oom=$(cat /proc/self/oom_score_adj)"',
      "echo \"mydev=$(ls -ln /dev/mydev | awk '{print $1, $3, $4, $5 $6}')\"",
      "echo \"fifo=$(ls -ln /dev/myfifo | awk '{print $1, $3, $4}')\"",
      'echo "nofile=$(ulimit -Sn) $(ulimit -Hn)"',
      'echo "core=$(ulimit -Sc) $(ulimit -Hc)"',
      'echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"',
    ].join('; ');
    const bundle = makeBundle(path.join(work, 'fidelity'), ['sh', '-c', script], (spec) => {
      delete spec.hostname;
      spec.linux.namespaces = spec.linux.namespaces.filter((n: { type: string }) => n.type !== 'uts');
      spec.process.oomScoreAdj = -500;
      spec.process.rlimits = [
        { type: 'RLIMIT_NOFILE', soft: 512, hard: 2048 },
        { type: 'RLIMIT_CORE', soft: 0, hard: 18446744073709551615 },
      ];
      spec.linux.devices = [
        { path: '/dev/mydev', type: 'c', major: 1, minor: 3, fileMode: 0o640, uid: 1000, gid: 1001 },
        { path: '/dev/myfifo', type: 'p', fileMode: 0o600, uid: 7, gid: 8 },
      ];
      spec.linux.sysctl = { 'net.ipv4.ip_forward': '1' };
    });
    const result = await hull(['run', '--bundle', bundle, 'fidelity'], { root });
    expect([result.code, result.stderr]).toEqual([0, '']);
    const facts = Object.fromEntries(result.stdout.trim().split('\n').map((line) => line.split(/=(.*)/s).slice(0, 2)));
    expect(facts).toEqual({
      hostname: os.hostname(),
      oom: '-500',
      mydev: 'crw-r----- 1000 1001 1,3',
      fifo: 'prw------- 7 8',
      nofile: '512 2048',
      core: '0 unlimited',
      ip_forward: '1',
    });
    expect(leaks(root)).toEqual(noLeaks);
  });

  it('runs under a --root and id as long as Docker’s (sockets live in a short directory of their own)', async () => {
    // Docker: --root /var/run/docker/runtime-runc/moby and 64-hex ids; this root is longer still.
    const deepRoot = path.join(work, 'var-run-docker', 'runtime-runc', 'moby', 'd'.repeat(40));
    const id = createHash('sha256').update('deep-root').digest('hex');
    expect(path.join(deepRoot, id, 'vhost-vsock.sock').length).toBeGreaterThan(107);
    const bundle = makeBundle(path.join(work, 'deep'), ['sh', '-c', 'uname -r; exit 5']);
    const result = await hull(['run', '--bundle', bundle, id], { root: deepRoot });
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(/cloud-amd64\n$/);
    expect(result.code).toBe(5);
    expect(existsSync(socketDirFor(path.join(deepRoot, id)))).toBe(false);
    expect(leaks(deepRoot)).toEqual(noLeaks);
  });

  it('refuses a bad bind source with one line, before anything exists', async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ destination: '/x', type: 'bind', source: path.join(work, 'no-such-file') }, /mounts\[\d+\] \(\/x\): bind source ".*no-such-file" does not exist/],
      [{ destination: '/x', type: 'bind', source: '/proc/1/root' }, /mounts\[\d+\] \(\/x\): bind source "\/proc\/1\/root" is under the host's \/proc, \/sys or \/dev/],
      [{ destination: '/x', options: ['rbind'], source: 'relative/dir' }, /bind source "relative\/dir" does not exist/],
    ];
    for (const [i, [mount, pattern]] of cases.entries()) {
      const bundle = makeBundle(path.join(work, `badbind-${i}`), ['true'], (spec) => void spec.mounts.push(mount));
      for (const command of ['run', 'create']) {
        const result = await hull([command, '--bundle', bundle, `badbind-${i}`], { root });
        expect(result.code).not.toBe(0);
        expect(result.stderr.split('\n').filter(Boolean)).toHaveLength(1);
        expect(result.stderr).toMatch(pattern);
        expect(leaks(root)).toEqual(noLeaks);
      }
    }
  });
});

// issue 12 item 1 (OCI fidelity in the guest): the spec's device cgroup, checked from inside the container the way
// the runtime-spec states it.
describe('hull run: OCI fields enforced in the guest', () => {
  it('linux.resources.devices: a deny-all then an allow is the device cgroup (eBPF) of the container; a node it does not allow cannot be opened', async () => {
    const script = [
      'echo hull-devcg > /dev/mykmsg && echo kmsg-write=ok',
      'head -c 1 /dev/mykmsg >/dev/null 2>/tmp/err; echo "kmsg-read=$(cat /tmp/err)"',
      'cat /dev/nodev 2>/tmp/err; echo "nodev=$(cat /tmp/err)"',
      'echo > /dev/null && echo null=ok',
      'echo "zero=$(head -c 3 /dev/zero | wc -c)"',
    ].join('; ');
    const bundle = makeBundle(path.join(work, 'devcgroup'), ['sh', '-c', script], (spec) => {
      spec.linux.devices = [
        { path: '/dev/mykmsg', type: 'c', major: 1, minor: 11, fileMode: 0o666 },
        // No rule allows it: without the filter, opening it would say "No such device or address".
        { path: '/dev/nodev', type: 'c', major: 4000, minor: 1, fileMode: 0o666 },
      ];
      // CRI's shape: deny all, then what may be used (here writing the kernel log only); runc's defaults follow.
      spec.linux.resources = { devices: [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 11, access: 'w' }] };
    });
    const result = await hull(['run', '--bundle', bundle, 'devcgroup'], { root });
    expect([result.code, result.stderr]).toEqual([0, '']);
    const facts = Object.fromEntries(result.stdout.trim().split('\n').map((line) => line.split(/=(.*)/s).slice(0, 2)));
    expect(facts).toEqual({
      'kmsg-write': 'ok',
      'kmsg-read': "head: /dev/mykmsg: Operation not permitted",
      nodev: "cat: can't open '/dev/nodev': Operation not permitted",
      null: 'ok',
      zero: '3',
    });
    expect(leaks(root)).toEqual(noLeaks);
  });

  it('linux.rootfsPropagation shared and a mount with rshared: mountinfo inside the container shows them shared (in the VM)', async () => {
    // The optional fields of each mountinfo line (7th up to "-") for the root, the rshared tmpfs and a plain one.
    const script = `awk '$5 == "/" || $5 == "/shared" || $5 == "/plain" { o = ""; for (i = 7; $i != "-"; i++) o = o " " $i; print $5 "=" o }' /proc/self/mountinfo`;
    const bundle = makeBundle(path.join(work, 'propagation'), ['sh', '-c', script], (spec) => {
      spec.linux.rootfsPropagation = 'shared';
      spec.mounts.push({ destination: '/shared', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'rshared'] });
      spec.mounts.push({ destination: '/plain', type: 'tmpfs', source: 'tmpfs', options: ['nosuid'] });
    });
    const result = await hull(['run', '--bundle', bundle, 'propagation'], { root });
    expect([result.code, result.stderr]).toEqual([0, '']);
    const seen = Object.fromEntries(result.stdout.trim().split('\n').map((line) => line.split(/=(.*)/s).slice(0, 2)));
    expect(seen['/']).toMatch(/^ shared:\d+$/);
    expect(seen['/shared']).toMatch(/^ shared:\d+$/);
    expect(seen['/plain']).toBe('');
    expect(leaks(root)).toEqual(noLeaks);
  });

  it('a user namespace with linux.uidMappings 0→100000: id and /proc/self/uid_map inside show the mapping; the rootfs is not chowned', async () => {
    const script = [
      'echo "uid_map=$(cat /proc/self/uid_map | tr -s " " | sed "s/^ //")"',
      'echo "gid_map=$(cat /proc/self/gid_map | tr -s " " | sed "s/^ //")"',
      'echo "id=$(id -u):$(id -g)"',
      // The image's files are the host's root's, which the namespace does not map: they show as the overflow id.
      "echo \"busybox=$(ls -ln /bin/busybox | awk '{print $3}')\"",
      'echo > /dev/null && echo null=ok',
      'echo "nofile=$(ulimit -Hn)"',
    ].join('; ');
    const bundle = makeBundle(path.join(work, 'userns'), ['sh', '-c', script], (spec) => {
      spec.linux.namespaces.push({ type: 'user' });
      spec.linux.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
      spec.linux.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
      // Raising a hard limit needs the guest's privileges: set from outside the namespace.
      spec.process.rlimits = [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 1048576 }];
    });
    const result = await hull(['run', '--bundle', bundle, 'userns'], { root });
    expect([result.code, result.stderr]).toEqual([0, '']);
    const facts = Object.fromEntries(result.stdout.trim().split('\n').map((line) => line.split(/=(.*)/s).slice(0, 2)));
    expect(facts).toEqual({ uid_map: '0 100000 65536', gid_map: '0 100000 65536', id: '0:0', busybox: '65534', null: 'ok', nofile: '1048576' });
    expect(leaks(root)).toEqual(noLeaks);
  });
});

describe('hull run: the share on the host', () => {
  it('mounts the share nosuid,nodev on the host: a set-uid file the container writes is set-uid in the guest, inert on the host', async () => {
    const { realpathSync, statSync } = await import('node:fs'); // appended case: the file's imports stay as they are
    const hostDir = path.join(work, 'suid-data');
    mkdirSync(hostDir, { recursive: true });
    const script = [
      'cp /bin/busybox /suid-root && chmod 4755 /suid-root',
      'cp /bin/busybox /data/suid-bind && chmod 4755 /data/suid-bind',
      'stat -c %a /suid-root /data/suid-bind',
      'echo ready',
      'exec sleep 1000',
    ].join(' && ');
    const bundle = makeBundle(path.join(work, 'suid'), ['sh', '-c', script], (spec) => {
      spec.mounts.push({ destination: '/data', type: 'bind', source: hostDir, options: ['rbind', 'rw'] });
    });
    const running = hull(['run', '--bundle', bundle, 'suid'], { root });
    // The container's files, as the host sees them through its share mounts, once both are set-uid.
    const files = [path.join(bundle, 'rootfs', 'suid-root'), path.join(hostDir, 'suid-bind')];
    const setuid = (f: string): boolean => existsSync(f) && (statSync(f).mode & 0o4000) !== 0;
    const deadline = Date.now() + 60_000;
    while (!files.every(setuid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(files.map(setuid)).toEqual([true, true]);
    // The share's mounts (the rootfs and the /data bind) while the container runs: mountinfo field 5 is the mount
    // point, field 6 its per-mount flags.
    const under = `${realpathSync(root)}/`;
    const shareMounts = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' '))
      .filter((f) => f[4]?.startsWith(under))
      .map((f) => ({ point: f[4]!.slice(under.length), flags: f[5]!.split(',') }));
    expect(shareMounts.map((m) => m.point).sort()).toEqual([expect.stringMatching(/^suid\/shared\/suid\/mounts\/\d+$/), 'suid/shared/suid/rootfs']);
    for (const m of shareMounts) expect(m.flags, m.point).toEqual(expect.arrayContaining(['nosuid', 'nodev']));
    const killed = await hull(['kill', 'suid', '9'], { root });
    expect([killed.code, killed.stderr]).toEqual([0, '']);
    const result = await running;
    expect([result.code, result.stdout]).toEqual([137, '4755\n4755\nready\n']);
    expect(leaks(root)).toEqual(noLeaks);
  });
});
