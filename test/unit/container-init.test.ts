// hull-container-init on the host (as root, as in the guest): a busybox rootfs in a temp dir, the plan on fd 3,
// status on fd 4, start byte on fd 5 (docs/design.md, "Container init helper").
// Uses the ASan/UBSan build unless HULL_CONTAINER_INIT points at another binary.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync, statfsSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { fdStream, openpty, setWindowSize } from '../../native/addon/index.ts';
import { needRoot, prerequisitesMet } from '../helpers/prerequisites.js';

const REPO = resolve(import.meta.dirname, '../..');
const HELPER = process.env.HULL_CONTAINER_INIT ?? join(REPO, 'build/native/hull-container-init-asan');
const BUSYBOX = '/bin/busybox';

// MS_* bits
const MS_RDONLY = 1, MS_NOSUID = 2, MS_NODEV = 4, MS_NOEXEC = 8, MS_BIND = 4096, MS_REC = 16384, MS_STRICTATIME = 1 << 24;
const RLIMIT_NOFILE = 7;

let root: string; // temp dir holding rootfs/
let rootfs: string;
const pidNamespaces = new Set<string>(); // pid namespaces of the containers we started, to check none survives

interface PlanOptions {
  args: string[];
  /** null: no hostname key (a joined UTS namespace keeps its name). */
  hostname?: string | null;
  /** Comma list of namespaces to create (default mount,pid,uts,ipc). */
  namespaces?: string;
  /** join_ns entries: [namespace, pid, inode]. */
  joins?: Array<[string, number, number | bigint]>;
  env?: string[];
  uid?: number;
  gid?: number;
  groups?: number[];
  cwd?: string;
  readonly?: boolean;
  rlimits?: Array<[number, string, string]>;
  rootfs?: string;
  mounts?: Array<[string, string, string, number, string]>;
  /** Security keys (docs/design.md), written as given before env and args. */
  security?: string[];
}

function createPlan(o: PlanOptions): string[] {
  const p = ['mode', 'create', 'namespaces', o.namespaces ?? 'mount,pid,uts,ipc', 'rootfs', o.rootfs ?? rootfs];
  for (const [ns, pid, inode] of o.joins ?? []) p.push('join_ns', ns, String(pid), String(inode));
  p.push('readonly_root', o.readonly ? '1' : '0');
  if (o.hostname !== null) p.push('hostname', o.hostname ?? 'hull-test');
  const mounts: Array<[string, string, string, number, string]> = [
    ['proc', 'proc', '/proc', MS_NOSUID | MS_NOEXEC | MS_NODEV, ''],
    ['tmpfs', 'tmpfs', '/dev', MS_NOSUID | MS_STRICTATIME, 'mode=755,size=65536k'],
    ['devpts', 'devpts', '/dev/pts', MS_NOSUID | MS_NOEXEC, 'newinstance,ptmxmode=0666,mode=0620'],
    ['tmpfs', 'shm', '/dev/shm', MS_NOSUID | MS_NOEXEC | MS_NODEV, 'mode=1777,size=65536k'],
    ['mqueue', 'mqueue', '/dev/mqueue', MS_NOSUID | MS_NOEXEC | MS_NODEV, ''],
    ['sysfs', 'sysfs', '/sys', MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY, ''],
  ];
  for (const m of [...mounts, ...(o.mounts ?? [])]) p.push('mount', m[0], m[1], m[2], String(m[3]), m[4]);
  for (const r of o.rlimits ?? []) p.push('rlimit', String(r[0]), r[1], r[2]);
  p.push('uid', String(o.uid ?? 0), 'gid', String(o.gid ?? 0), 'groups', (o.groups ?? []).join(','));
  p.push('cwd', o.cwd ?? '/');
  p.push(...(o.security ?? []));
  for (const e of o.env ?? ['PATH=/bin:/usr/bin']) p.push('env', e);
  for (const a of o.args) p.push('arg', a);
  return p;
}

function execPlan(joinPid: number, args: string[], extra: string[] = []): string[] {
  const p = ['mode', 'exec', 'join_pid', String(joinPid), 'uid', '0', 'gid', '0', 'cwd', '/', 'env', 'PATH=/bin', ...extra];
  for (const a of args) p.push('arg', a);
  return p;
}

class HelperRun {
  readonly child: ChildProcess;
  readonly status: string[] = [];
  stdout = '';
  stderr = '';
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #waiters: Array<() => void> = [];
  #statusDone = false;

  /** keepPlanOpen: the plan is written but fd 3 stays open (no EOF), as a plan that ends with its `end` key may be. */
  constructor(plan: string[], binary = HELPER, keepPlanOpen = false) {
    this.child = spawn(binary, [], {
      stdio: ['pipe', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe'],
      env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=0', UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1' },
    });
    const [, out, err, planFd, statusFd] = this.child.stdio as unknown as [Writable, Readable, Readable, Writable, Readable, Writable];
    out.setEncoding('utf8').on('data', (d: string) => (this.stdout += d) && this.#wake());
    err.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    let partial = '';
    statusFd.setEncoding('utf8').on('data', (d: string) => {
      partial += d;
      const lines = partial.split('\n');
      partial = lines.pop()!;
      this.status.push(...lines);
      this.#wake();
    });
    statusFd.on('end', () => {
      this.#statusDone = true;
      this.#wake();
    });
    planFd.on('error', () => {});
    this.#startFd().on('error', () => {});
    this.child.stdin!.on('error', () => {});
    const planBytes = Buffer.from(plan.map((s) => s + '\0').join(''));
    if (keepPlanOpen) planFd.write(planBytes);
    else planFd.end(planBytes);
    this.exit = new Promise((res) => this.child.on('close', (code, signal) => res({ code, signal })));
  }

  #startFd(): Writable {
    return (this.child.stdio as unknown as Writable[])[5];
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  async until(pred: () => boolean, what: string, ms = 15_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timeout waiting for ${what}; status=${JSON.stringify(this.status)} stdout=${JSON.stringify(this.stdout)} stderr=${this.stderr}`);
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }

  get pid(): number {
    const l = this.status.find((s) => s.startsWith('pid '));
    return l ? Number(l.slice(4)) : NaN;
  }

  async ready(): Promise<void> {
    await this.until(() => this.status.includes('ready') || this.status.some((s) => s.startsWith('error')) || this.#statusDone, 'ready');
    expect(this.status.filter((s) => s.startsWith('error'))).toEqual([]);
    expect(this.status[0]).toMatch(/^pid \d+$/);
    expect(this.status[1]).toBe('ready');
    try {
      pidNamespaces.add(readlinkSync(`/proc/${this.pid}/ns/pid`));
    } catch {
      // already gone
    }
  }

  start(): void {
    this.#startFd().end('x');
  }

  abort(): void {
    this.#startFd().end();
  }

  /** The start byte followed by more (the console path for `console -`). */
  startWith(data: Buffer): void {
    this.#startFd().end(data);
  }

  /** Runs to completion: ready → start → exit. */
  async run(stdin?: string): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    await this.ready();
    if (stdin !== undefined) this.child.stdin!.end(stdin);
    this.start();
    return this.withTimeout(this.exit);
  }

  async withTimeout<T>(p: Promise<T>, ms = 20_000): Promise<T> {
    let t: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, rej) => {
      t = setTimeout(() => {
        this.child.kill('SIGKILL');
        rej(new Error(`helper timed out; status=${JSON.stringify(this.status)} stdout=${JSON.stringify(this.stdout)} stderr=${this.stderr}`));
      }, ms);
    });
    try {
      return await Promise.race([p, timeout]);
    } finally {
      clearTimeout(t);
    }
  }
}

/** A cgroup v2 hierarchy of this host where a test may make a directory: the unified one of a hybrid layout, or the root. */
function cgroup2Root(): string | undefined {
  for (const d of ['/sys/fs/cgroup/unified', '/sys/fs/cgroup']) {
    try {
      if (statfsSync(d).type === 0x63677270) return d;
    } catch {
      // not mounted
    }
  }
  return undefined;
}

const runs: HelperRun[] = [];
function helper(plan: string[], binary?: string, keepPlanOpen?: boolean): HelperRun {
  const r = new HelperRun(plan, binary, keepPlanOpen);
  runs.push(r);
  return r;
}

describe.runIf(prerequisitesMet('hull-container-init', [needRoot(), !existsSync(BUSYBOX) && `${BUSYBOX} (apt-get install busybox-static)`]))('hull-container-init', () => {
  beforeAll(() => {
    execFileSync('make', ['-C', join(REPO, 'native'), 'container-init', 'container-init-asan'], { stdio: 'pipe' });
    root = mkdtempSync(join(tmpdir(), 'hull-ci-'));
    rootfs = join(root, 'rootfs');
    for (const d of ['bin', 'work', 'etc', 'root-only']) mkdirSync(join(rootfs, d), { recursive: true });
    chmodSync(join(rootfs, 'root-only'), 0o700);
    writeFileSync(join(rootfs, 'etc/plain'), 'not a program\n');
    writeFileSync(join(rootfs, 'bin/garbage'), 'not a program\n', { mode: 0o755 });
    copyFileSync(BUSYBOX, join(rootfs, 'bin/root-only'));
    chmodSync(join(rootfs, 'bin/root-only'), 0o700);
    chmodSync(root, 0o755);
    chmodSync(rootfs, 0o755);
    chmodSync(join(rootfs, 'work'), 0o777);
    copyFileSync(BUSYBOX, join(rootfs, 'bin/busybox'));
    chmodSync(join(rootfs, 'bin/busybox'), 0o755);
    for (const l of ['sh', 'echo', 'cat', 'id', 'hostname', 'ls', 'sleep', 'wc', 'ps', 'test', 'touch', 'readlink', 'tty', 'stty', 'grep', 'mkdir', 'chmod']) {
      symlinkSync('busybox', join(rootfs, 'bin', l));
    }
  });

  afterAll(async () => {
    for (const r of runs) {
      if (r.child.exitCode === null && r.child.signalCode === null) {
        r.child.kill('SIGKILL');
        await r.exit;
      }
    }
    // No process of any of our containers is left (a pid namespace dies with its PID 1).
    const left: string[] = [];
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      try {
        if (pidNamespaces.has(readlinkSync(`/proc/${e}/ns/pid`))) left.push(e);
      } catch {
        // raced with exit
      }
    }
    if (root) {
      // Mounts live in the containers' own mount namespaces; none may show up here.
      expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(root);
      rmSync(root, { recursive: true, force: true });
    }
    expect(left).toEqual([]);
  });

  it('runs the workload as PID 1 with the planned hostname, env, cwd, user, rlimits, /dev and /proc', async () => {
    const script = [
      'echo pid=$$',
      'echo host=$(hostname)',
      'echo foo=$FOO',
      'echo cwd=$(pwd)',
      'echo id=$(id)',
      'echo nofile=$(ulimit -n)',
      'for d in null zero full random urandom tty; do test -c /dev/$d && echo dev=$d; done',
      'echo fd=$(readlink /dev/fd) ptmx=$(readlink /dev/ptmx) stdin=$(readlink /dev/stdin)',
      'test -d /dev/pts && test -d /dev/shm && echo pts-shm-ok',
      'echo null > /dev/null && echo write-null-ok',
      'test -r /proc/1/status && echo proc=$(cat /proc/1/comm)',
      'echo procs=$(ls -d /proc/[0-9]* | wc -l)',
    ].join('\n');
    const r = helper(
      createPlan({
        args: ['sh', '-c', script],
        hostname: 'box1',
        env: ['PATH=/bin', 'FOO=bar baz'],
        uid: 1000,
        gid: 1001,
        groups: [10, 20],
        cwd: '/work',
        rlimits: [[RLIMIT_NOFILE, '256', '512']],
      }),
    );
    const { code } = await r.run();
    expect(r.stderr).toBe('');
    expect(code).toBe(0);
    const out = r.stdout;
    expect(out).toContain('pid=1\n');
    expect(out).toContain('host=box1\n');
    expect(out).toContain('foo=bar baz\n');
    expect(out).toContain('cwd=/work\n');
    expect(out).toMatch(/id=uid=1000 gid=1001 groups=10,20\n/);
    expect(out).toContain('nofile=256\n');
    for (const d of ['null', 'zero', 'full', 'random', 'urandom', 'tty']) expect(out).toContain(`dev=${d}\n`);
    expect(out).toContain('fd=/proc/self/fd ptmx=pts/ptmx stdin=/proc/self/fd/0\n');
    expect(out).toContain('pts-shm-ok\n');
    expect(out).toContain('write-null-ok\n');
    expect(out).toContain('proc=sh\n');
    // Only the container's processes are visible: sh, the command substitution's subshell, ls, wc.
    expect(Number(/procs=(\d+)/.exec(out)?.[1])).toBeLessThanOrEqual(4);
    expect(r.status.slice(0, 2)).toEqual([`pid ${r.pid}`, 'ready']);
    expect(r.status.length).toBe(2); // exec succeeded: fd 4 reached EOF with no error line
  });

  it('forwards stdin, and EOF on it ends the workload', async () => {
    const r = helper(createPlan({ args: ['wc', '-l'] }));
    const { code } = await r.run('one\ntwo\nthree\n');
    expect(code).toBe(0);
    expect(r.stdout.trim()).toBe('3');
  });

  it('console -: a pty from the container devpts is the controlling terminal and fds 0-2', async () => {
    const plan = createPlan({ args: ['sh', '-c', 'tty; test -t 0 && test -t 1 && test -t 2 && echo all-tty; stty size; echo err >&2'] });
    plan.push('console', '-');
    const r = helper(plan);
    await r.ready();
    const pty = openpty(`/proc/${r.pid}/root/dev/pts/ptmx`);
    setWindowSize(pty.master, 25, 90);
    const master = fdStream(pty.master);
    let out = '';
    master.setEncoding('utf8').on('data', (d: string) => (out += d));
    const ended = new Promise<void>((res) => master.on('error', () => res()).on('end', () => res()));
    r.startWith(Buffer.concat([Buffer.from('x'), Buffer.from(pty.slavePath)]));
    expect((await r.withTimeout(r.exit)).code).toBe(0);
    await r.withTimeout(ended);
    master.destroy();
    expect(pty.slavePath).toMatch(/^\/dev\/pts\/\d+$/);
    expect(out).toBe(`${pty.slavePath}\r\nall-tty\r\n25 90\r\nerr\r\n`);
    expect(r.stdout).toBe('');
  });

  it('refuses a relative console path', async () => {
    const plan = createPlan({ args: ['true'] });
    plan.push('console', 'dev/pts/0');
    const r = helper(plan);
    await r.withTimeout(r.exit);
    expect(r.status.join('\n')).toMatch(/console must be/);
  });

  it('propagates the exit code', async () => {
    const r = helper(createPlan({ args: ['sh', '-c', 'exit 3'] }));
    expect((await r.run()).code).toBe(3);
  });

  it('forwards SIGTERM to the workload (PID 1 handles it, as PID 1 must)', async () => {
    // PID 1 of a pid namespace ignores signals it has no handler for, so the workload traps TERM.
    const r = helper(createPlan({ args: ['sh', '-c', 'trap "exit 143" TERM; echo started; sleep 1000 & wait'] }));
    await r.ready();
    r.start();
    await r.until(() => r.stdout.includes('started'), 'workload start');
    r.child.kill('SIGTERM');
    const { code } = await r.withTimeout(r.exit);
    expect(code).toBe(128 + 15);
  });

  it('takes the container down when the helper itself is killed (parent-death signal)', async () => {
    const r = helper(createPlan({ uid: 1000, gid: 1000, args: ['sh', '-c', 'echo started; sleep 1000 & wait'] }));
    await r.ready();
    const ns = readlinkSync(`/proc/${r.pid}/ns/pid`);
    r.start();
    await r.until(() => r.stdout.includes('started'), 'workload start');
    r.child.kill('SIGKILL');
    await r.withTimeout(r.exit);
    const deadline = Date.now() + 5000;
    const alive = (): boolean =>
      readdirSync('/proc').some((e) => {
        try {
          return /^\d+$/.test(e) && readlinkSync(`/proc/${e}/ns/pid`) === ns;
        } catch {
          return false;
        }
      });
    while (alive() && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
    expect(alive()).toBe(false);
  });

  // runc's create-time checks (exec.LookPath, the chdir of finalizeNamespace), in runc's words: the error comes
  // before "ready", so the create fails and nothing waits for a start.
  it.each([
    ['a missing program', { args: ['/bin/no-such-program'] }, 'exec: "/bin/no-such-program": stat /bin/no-such-program: no such file or directory'],
    ['a program not in PATH', { args: ['no-such-program'] }, 'exec: "no-such-program": executable file not found in $PATH'],
    ['a file that is not executable', { args: ['/etc/plain'] }, 'exec: "/etc/plain": permission denied'],
    ['a directory', { args: ['/work'] }, 'exec: "/work": is a directory'],
    ['a program only root may run, for uid 1000', { args: ['/bin/root-only'], uid: 1000 }, 'exec: "/bin/root-only": permission denied'],
    ['a missing cwd', { args: ['true'], cwd: '/nonexistent' }, 'chdir to cwd ("/nonexistent") set in config.json failed: no such file or directory'],
    ['a cwd that is a file', { args: ['true'], cwd: '/etc/plain' }, 'chdir to cwd ("/etc/plain") set in config.json failed: not a directory'],
  ])('refuses %s before ready, in runc\'s words, and exits 127', async (_what, plan, message) => {
    const r = helper(createPlan(plan));
    const { code } = await r.withTimeout(r.exit);
    expect(code).toBe(127);
    expect(r.status).toEqual([`pid ${r.pid}`, `error ${message}`]);
    expect(r.stderr).toBe('');
  });

  it('enters a cwd only root may enter before the user change, as runc does; a program in it still runs', async () => {
    const r = helper(createPlan({ args: ['sh', '-c', 'echo cwd=$(pwd) id=$(id -u)'], uid: 1000, cwd: '/root-only' }));
    expect((await r.run()).code).toBe(0);
    expect(r.stdout).toBe('cwd=/root-only id=1000\n');
  });

  it('an exec that fails after the checks (not an executable format) is reported at start, in runc\'s words', async () => {
    const r = helper(createPlan({ args: ['/bin/garbage'] }));
    const { code } = await r.run();
    expect(code).toBe(127);
    expect(r.status).toEqual([`pid ${r.pid}`, 'ready', 'error exec /bin/garbage: exec format error']);
  });

  it('an exec into a container gets the same checks', async () => {
    const c = helper(createPlan({ args: ['sh', '-c', 'sleep 30'] }));
    await c.ready();
    const e = helper(execPlan(c.pid, ['/bin/no-such-program']));
    const { code } = await e.withTimeout(e.exit);
    expect(code).toBe(127);
    expect(e.status).toEqual([`pid ${e.pid}`, 'error exec: "/bin/no-such-program": stat /bin/no-such-program: no such file or directory']);
    c.child.kill('SIGKILL');
    await c.withTimeout(c.exit);
  });

  it('reports a missing rootfs as an error and exits 127', async () => {
    const r = helper(createPlan({ args: ['true'], rootfs: join(root, 'missing') }));
    const { code } = await r.withTimeout(r.exit);
    expect(code).toBe(127);
    expect(r.status.some((s) => /^error .*missing.*No such file or directory$/.test(s))).toBe(true);
    expect(r.status).not.toContain('ready');
  });

  it('reports a bad plan as an error', async () => {
    const r = helper(['mode', 'create', 'bogus', 'x']);
    const { code } = await r.withTimeout(r.exit);
    expect(code).toBe(127);
    expect(r.status).toEqual(['error plan: unknown key "bogus"']);
  });

  it('reads the plan up to its end key without waiting for EOF; a value "end" is not the key; nothing may follow the key', async () => {
    const r = helper([...createPlan({ args: ['echo', 'end'] }), 'end'], undefined, true);
    await r.ready();
    r.start();
    expect((await r.withTimeout(r.exit)).code).toBe(0);
    expect(r.stdout).toBe('end\n');
    // Without the end key the helper still waits for EOF (no status line while fd 3 is open).
    const waiting = helper(createPlan({ args: ['true'] }), undefined, true);
    await new Promise((res) => setTimeout(res, 300));
    expect(waiting.status).toEqual([]);
    waiting.child.kill('SIGKILL');
    await waiting.withTimeout(waiting.exit);
    const after = helper(['mode', 'create', 'end', 'mode', 'create']);
    expect((await after.withTimeout(after.exit)).code).toBe(127);
    expect(after.status).toEqual(['error plan: data after its end']);
  });

  it('aborts silently with exit 127 when fd 5 closes without a start byte', async () => {
    const r = helper(createPlan({ args: ['sh', '-c', 'echo should-not-run'] }));
    await r.ready();
    r.abort();
    const { code } = await r.withTimeout(r.exit);
    expect(code).toBe(127);
    expect(r.stdout).toBe('');
    expect(r.status).toEqual([`pid ${r.pid}`, 'ready']);
  });

  it('remounts the root read-only when asked', async () => {
    const r = helper(createPlan({ readonly: true, args: ['sh', '-c', 'touch /x 2>/dev/null && echo writable || echo readonly; echo ok > /dev/shm/y && echo shm-ok'] }));
    expect((await r.run()).code).toBe(0);
    expect(r.stdout).toBe('readonly\nshm-ok\n');
  });

  it('does bind mounts (dir read-only, single file), cgroup2, and keeps mounts inside the rootfs', async () => {
    const data = join(root, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'f'), 'from-host\n');
    writeFileSync(join(root, 'hosts'), '127.0.0.1 box\n');
    // A symlink in the image that points out of the rootfs: the mount must still land inside it.
    symlinkSync('/', join(rootfs, 'escape'));
    const outside = join(tmpdir(), `hull-ci-escape-${process.pid}`);
    try {
      const r = helper(
        createPlan({
          args: ['sh', '-c', 'cat /data/f; echo x > /data/g 2>/dev/null && echo rw || echo ro; cat /etc/hosts; test -f /sys/fs/cgroup/cgroup.procs && echo cgroup2; test -d ' + outside + ' && echo escaped-inside'],
          mounts: [
            ['bind', data, '/data', MS_BIND | MS_REC | MS_RDONLY, ''],
            ['bind', join(root, 'hosts'), '/etc/hosts', MS_BIND, ''],
            ['cgroup2', 'cgroup', '/sys/fs/cgroup', MS_NOSUID | MS_NOEXEC | MS_NODEV, ''],
            ['tmpfs', 'tmpfs', `/escape${outside}`, 0, 'size=1m'],
          ],
        }),
      );
      expect((await r.run()).code).toBe(0);
      expect(r.stdout).toBe(`from-host\nro\n127.0.0.1 box\ncgroup2\nescaped-inside\n`);
      expect(existsSync(outside)).toBe(false);
      expect(existsSync(join(rootfs, outside))).toBe(true);
    } finally {
      rmSync(join(rootfs, 'escape'));
      rmSync(outside, { recursive: true, force: true });
    }
  });

  it('mode exec joins the namespaces of a running container', async () => {
    const c = helper(createPlan({ hostname: 'joined', args: ['sh', '-c', 'trap "exit 0" TERM; echo up; sleep 1000 & wait'] }));
    await c.ready();
    c.start();
    await c.until(() => c.stdout.includes('up'), 'container start');

    const e = helper(execPlan(c.pid, ['sh', '-c', 'echo host=$(hostname); echo pid1=$(cat /proc/1/comm); ps -o pid,comm; echo me=$$']));
    await e.ready();
    e.start();
    const { code } = await e.withTimeout(e.exit);
    expect(e.stderr).toBe('');
    expect(code).toBe(0);
    expect(e.stdout).toContain('host=joined\n');
    expect(e.stdout).toContain('pid1=sh\n');
    expect(e.stdout).toMatch(/^\s*1 sh$/m);
    expect(e.stdout).toMatch(/^\s*\d+ sleep$/m);
    const me = Number(/me=(\d+)/.exec(e.stdout)?.[1]);
    expect(me).toBeGreaterThan(1);
    expect(me).not.toBe(e.pid); // a pid in the container's namespace, not the agent's

    // A process joined with exec is an ordinary process there: SIGTERM kills it, the helper reports 128+15.
    const s = helper(execPlan(c.pid, ['sleep', '1000']));
    await s.ready();
    s.start();
    await new Promise((res) => setTimeout(res, 300));
    s.child.kill('SIGTERM');
    expect((await s.withTimeout(s.exit)).code).toBe(128 + 15);

    c.child.kill('SIGTERM');
    expect((await c.withTimeout(c.exit)).code).toBe(0);
  });

  it('exec joins a created container before its start (startContainer hooks); exec_path runs a path with its own argv0', async () => {
    const c = helper(createPlan({ hostname: 'not-started', args: ['sh', '-c', 'cat /work/hook-mark; exit 0'] }));
    await c.ready();
    // The init waits for its start byte, set up and pivoted: the hook sees the container's root and hostname.
    const hook = ['sh', '-c', 'echo "$(hostname) $(cat /proc/1/comm) $(cat)" > /work/hook-mark'];
    const e = helper(execPlan(c.pid, hook, ['exec_path', '/bin/busybox']));
    await e.ready();
    e.child.stdin!.end('state-on-stdin');
    e.start();
    const { code } = await e.withTimeout(e.exit);
    expect([code, e.stderr]).toEqual([0, '']);
    c.start();
    expect((await c.withTimeout(c.exit)).code).toBe(0);
    // pid 1 was still the helper's child, waiting: the workload had not been exec'd when the hook ran.
    expect(c.stdout).toMatch(/^not-started hull-container-\S* state-on-stdin\n$/);

    // exec_path is what runs (busybox), argv[0] what it is told (busybox picks its applet by it).
    // (Joining our own namespaces: no ready(), which would record the host's pid namespace as a container's.)
    const argv0 = helper(execPlan(process.pid, ['hook-argv0'], ['exec_path', '/bin/busybox']));
    argv0.start();
    await argv0.withTimeout(argv0.exit);
    expect(argv0.stderr).toMatch(/^hook-argv0: applet not found/);

    const relative = helper(execPlan(process.pid, ['true'], ['exec_path', 'bin/sh']));
    await relative.withTimeout(relative.exit);
    expect(relative.status.join('\n')).toMatch(/exec_path must be absolute/);
  });

  it('create with join_ns shares the pid, ipc and uts namespaces of a running container, with its own mounts', async () => {
    const sandbox = helper(createPlan({ hostname: 'pod-host', args: ['sh', '-c', 'trap "exit 0" TERM; echo up; sleep 1000 & wait'] }));
    await sandbox.ready();
    sandbox.start();
    await sandbox.until(() => sandbox.stdout.includes('up'), 'sandbox start');
    const nsOf = (pid: number, ns: string): string => readlinkSync(`/proc/${pid}/ns/${ns}`);
    const joins = (['pid', 'ipc', 'uts'] as const).map((ns): [string, number, bigint] => [ns, sandbox.pid, statSync(`/proc/${sandbox.pid}/ns/${ns}`, { bigint: true }).ino]);

    const script = 'echo host=$(hostname); echo pid1=$(cat /proc/1/comm); echo me=$$; echo ipc=$(readlink /proc/self/ns/ipc); ' +
      'echo mnt=$(readlink /proc/self/ns/mnt); ps -o pid,comm; echo started; sleep 1000';
    const app = helper(createPlan({ namespaces: 'mount', hostname: null, joins, args: ['sh', '-c', script] }));
    await app.ready();
    expect(nsOf(app.pid, 'pid')).toBe(nsOf(sandbox.pid, 'pid'));
    expect(nsOf(app.pid, 'mnt')).not.toBe(nsOf(sandbox.pid, 'mnt'));
    app.start();
    await app.until(() => app.stdout.includes('started'), 'app start');
    expect(app.stdout).toContain('host=pod-host\n');
    expect(app.stdout).toContain('pid1=sh\n'); // the sandbox's PID 1
    expect(app.stdout).toMatch(/^\s*\d+ sleep$/m); // and its sleep
    expect(Number(/me=(\d+)/.exec(app.stdout)?.[1])).toBeGreaterThan(1);
    expect(app.stdout).toContain(`ipc=${nsOf(sandbox.pid, 'ipc')}\n`);
    expect(app.stdout).not.toContain(`mnt=${nsOf(sandbox.pid, 'mnt')}\n`);

    // The pid namespace ends with its PID 1: the kernel kills the joined container too.
    sandbox.child.kill('SIGTERM');
    expect((await sandbox.withTimeout(sandbox.exit)).code).toBe(0);
    expect((await app.withTimeout(app.exit)).code).toBe(128 + 9);
  });

  it('refuses a join_ns whose namespace is not the one the agent checked, and bad join_ns plans', async () => {
    const bad = helper(createPlan({ namespaces: 'mount', joins: [['ipc', process.pid, 1]], args: ['true'] }));
    expect((await bad.withTimeout(bad.exit)).code).toBe(127);
    expect(bad.status).toEqual([expect.stringMatching(new RegExp(`^error join ipc: /proc/${process.pid}/ns/ipc is not the namespace the agent checked .*: the process exited$`))]);

    const ipcIno = statSync('/proc/self/ns/ipc').ino;
    const cases: Array<[string[], string]> = [
      [createPlan({ joins: [['ipc', process.pid, ipcIno]], args: ['true'] }), 'error plan: namespace ipc is both joined and created'],
      [createPlan({ namespaces: 'mount', joins: [['mnt', process.pid, 1]], args: ['true'] }), 'error plan: namespace "mnt" cannot be joined'],
      [createPlan({ namespaces: 'mount', joins: [['net', process.pid, 1]], args: ['true'] }), 'error plan: namespace "net" cannot be joined'],
      [createPlan({ namespaces: 'mount', joins: [['ipc', 0, 1]], args: ['true'] }), 'error plan: bad join_ns pid "0"'],
      [createPlan({ namespaces: 'mount', joins: [['ipc', 1, 0]], args: ['true'] }), 'error plan: bad join_ns inode "0"'],
      [createPlan({ namespaces: 'mount', joins: [['ipc', 1, 5], ['ipc', 1, 5]], args: ['true'] }), 'error plan: namespace ipc is joined twice'],
      [execPlan(process.pid, ['true'], ['join_ns', 'ipc', '1', '5']), 'error plan: exec takes no namespaces, join_ns, rootfs, mount or rootfs_propagation'],
    ];
    for (const [plan, error] of cases) {
      const r = helper(plan);
      expect((await r.withTimeout(r.exit)).code).toBe(127);
      expect(r.status).toEqual([error]);
    }
  });

  it('applies capabilities over the uid change (bounding, effective, permitted, inheritable, ambient) and no_new_privs', async () => {
    const bit = (...caps: number[]): string => caps.reduce((m, c) => m | (1n << BigInt(c)), 0n).toString();
    const CHOWN = 0, KILL = 5, NET_BIND_SERVICE = 10, NET_RAW = 13;
    const caps = ['capabilities', bit(CHOWN, KILL, NET_BIND_SERVICE, NET_RAW), bit(KILL, NET_BIND_SERVICE), bit(KILL, NET_BIND_SERVICE), bit(NET_BIND_SERVICE), bit(NET_BIND_SERVICE)];
    const script = 'grep -E "^(Cap|NoNewPrivs)" /proc/self/status; id -u';
    const r = helper(createPlan({ uid: 1000, gid: 1000, args: ['sh', '-c', script], security: [...caps, 'no_new_privs', '1'] }));
    expect((await r.run()).code).toBe(0);
    const hex = (m: string): string => BigInt(m).toString(16).padStart(16, '0');
    // After exec as uid 1000 only the ambient set survives into permitted and effective (capabilities(7)).
    expect(r.stdout).toContain(`CapInh:\t${hex(bit(NET_BIND_SERVICE))}\n`);
    expect(r.stdout).toContain(`CapPrm:\t${hex(bit(NET_BIND_SERVICE))}\n`);
    expect(r.stdout).toContain(`CapEff:\t${hex(bit(NET_BIND_SERVICE))}\n`);
    expect(r.stdout).toContain(`CapBnd:\t${hex(bit(CHOWN, KILL, NET_BIND_SERVICE, NET_RAW))}\n`);
    expect(r.stdout).toContain(`CapAmb:\t${hex(bit(NET_BIND_SERVICE))}\n`);
    expect(r.stdout).toContain('NoNewPrivs:\t1\n');
    expect(r.stdout).toContain('\n1000\n');

    // Without the keys nothing changes: root keeps the full set and no_new_privs is off.
    const full = helper(createPlan({ args: ['sh', '-c', script] }));
    expect((await full.run()).code).toBe(0);
    expect(full.stdout).toContain('NoNewPrivs:\t0\n');
    const ours = /CapBnd:\t([0-9a-f]+)\n/.exec(readFileSync('/proc/self/status', 'utf8'))![1];
    expect(full.stdout).toContain(`CapBnd:\t${ours}\n`);
    expect(full.stdout).toContain(`CapEff:\t${ours}\n`);
  });

  it('as root, a reduced bounding set limits what the workload gets', async () => {
    const r = helper(createPlan({ args: ['sh', '-c', 'grep -E "^Cap(Eff|Bnd)" /proc/self/status'], security: ['capabilities', '32', '32', '32', '0', '0'] }));
    expect((await r.run()).code).toBe(0);
    expect(r.stdout).toContain('CapEff:\t0000000000000020\n');
    expect(r.stdout).toContain('CapBnd:\t0000000000000020\n');
  });

  it('sets namespaced sysctls, makes readonly paths read-only and masks paths (missing ones skipped)', async () => {
    const before = readFileSync('/proc/sys/kernel/shm_rmid_forced', 'utf8');
    const script = [
      'echo rmid=$(cat /proc/sys/kernel/shm_rmid_forced)',
      'echo 0 > /proc/sys/kernel/shm_rmid_forced 2>/dev/null && echo sys-writable || echo sys-readonly',
      'grep " /proc/sys " /proc/self/mountinfo',
      'echo kcore=$(cat /proc/kcore | wc -c)',
      'echo driver=$(ls -A /proc/driver | wc -l)',
      'touch /proc/driver/x 2>/dev/null && echo driver-writable || echo driver-readonly',
      'test -e /proc/no-such-thing || echo skipped-missing',
    ].join('\n');
    const security = [
      'sysctl', 'kernel.shm_rmid_forced', '1',
      'readonly_path', '/proc/sys', 'readonly_path', '/proc/no-such-thing',
      'masked_path', '/proc/kcore', 'masked_path', '/proc/driver', 'masked_path', '/proc/no-such-thing',
    ];
    const r = helper(createPlan({ args: ['sh', '-c', script], security }));
    expect((await r.run()).code).toBe(0);
    expect(r.stdout).toContain('rmid=1\n');
    expect(r.stdout).toContain('sys-readonly\n');
    expect(r.stdout).toMatch(/ \/proc\/sys ro,nosuid,nodev,noexec/);
    expect(r.stdout).toContain('kcore=0\n');
    expect(r.stdout).toContain('driver=0\n');
    expect(r.stdout).toContain('driver-readonly\n');
    expect(r.stdout).toContain('skipped-missing\n');
    // The container's IPC namespace is its own: the guest's value is untouched.
    expect(readFileSync('/proc/sys/kernel/shm_rmid_forced', 'utf8')).toBe(before);
  });

  it('makes linux.devices nodes (type, numbers, mode, owner; a default node replaced) and sets oom_score_adj, inherited', async () => {
    const script = [
      "busybox stat -c '%A %u %g %t:%T %n' /dev/mydev /dev/sub/blk /dev/fifo /dev/null",
      'echo adj=$(cat /proc/self/oom_score_adj) init=$(cat /proc/1/oom_score_adj)',
      'echo hi > /dev/mydev && echo mydev-writable',
    ].join('\n');
    const devices = [
      'device', '/dev/mydev', 'c', '1', '3', String(0o640), '1000', '1001', // /dev/null's numbers
      'device', '/dev/sub/blk', 'b', '7', '1', String(0o600), '0', '0',
      'device', '/dev/fifo', 'p', '0', '0', String(0o622), '0', '6',
      'device', '/dev/null', 'c', '1', '3', String(0o660), '0', '5', // replaces the default node
    ];
    // Raised here: lowering needs CAP_SYS_RESOURCE, which the test host may not give (the guest's agent has it).
    const r = helper(createPlan({ args: ['sh', '-c', script], security: [...devices, 'oom_score_adj', '678'] }));
    expect((await r.run()).code).toBe(0);
    expect(r.status.filter((l) => l.startsWith('error'))).toEqual([]);
    const lines = r.stdout.trim().split('\n');
    expect(lines.slice(0, 4).sort()).toEqual(
      ['crw-r----- 1000 1001 1:3 /dev/mydev', 'brw------- 0 0 7:1 /dev/sub/blk', 'prw--w--w- 0 6 0:0 /dev/fifo', 'crw-rw---- 0 5 1:3 /dev/null'].sort(),
    );
    expect(lines).toContain('adj=678 init=678');
    expect(lines).toContain('mydev-writable');
    // The spec's numbers are checked in the plan parser: no node outside the rootfs, no out-of-range number.
    const cases: Array<[string[], string]> = [
      [['device', 'dev/x', 'c', '1', '3', '438', '0', '0'], 'error plan: bad device path "dev/x"'],
      [['device', '/dev/../x', 'c', '1', '3', '438', '0', '0'], 'error plan: bad device path "/dev/../x"'],
      [['device', '/dev/x/', 'c', '1', '3', '438', '0', '0'], 'error plan: bad device path "/dev/x/"'],
      [['device', '/', 'c', '1', '3', '438', '0', '0'], 'error plan: bad device path "/"'],
      [['device', '/dev/x', 's', '1', '3', '438', '0', '0'], 'error plan: bad device type "s" for /dev/x'],
      [['device', '/dev/x', 'c', '4096', '3', '438', '0', '0'], 'error plan: bad device number 4096:3 for /dev/x'],
      [['device', '/dev/x', 'c', '1', '1048576', '438', '0', '0'], 'error plan: bad device number 1:1048576 for /dev/x'],
      [['device', '/dev/x', 'c', '1', '3', '4096', '0', '0'], 'error plan: bad device mode "4096" for /dev/x'],
      [['device', '/dev/x', 'c', '1', '3', '438', '4294967295', '0'], 'error plan: bad device owner 4294967295:0 for /dev/x'],
      [Array(1025).fill(['device', '/dev/x', 'p', '0', '0', '438', '0', '0']).flat(), 'error plan: more than 1024 device entries'],
      [['oom_score_adj', '1001'], 'error plan: bad oom_score_adj "1001"'],
      [['oom_score_adj', '--5'], 'error plan: bad oom_score_adj "--5"'],
    ];
    for (const [security, error] of cases) {
      const bad = helper(createPlan({ args: ['true'], security }));
      expect((await bad.withTimeout(bad.exit)).code).toBe(127);
      expect(bad.status).toEqual([error]);
    }
  });

  // linux.resources.devices: the helper's eBPF program on a cgroup v2 directory of this host (the unified hierarchy of
  // a hybrid layout, or the v2 root), then the workload's opens and mknods as the kernel judges them.
  it.runIf(cgroup2Root() !== undefined)('attaches the device filter (devcgroup): denied opens and mknods fail with EPERM, allowed ones work', async () => {
    const dir = join(cgroup2Root()!, `hull-ci-devcg-${process.pid}`);
    mkdirSync(dir);
    const made: string[] = [];
    try {
      const script = [
        'echo x > /dev/null && echo null-w',
        'busybox head -c 1 /dev/zero | busybox wc -c',
        'busybox head -c 1 /dev/full >/dev/null && echo full-r',
        'echo x > /dev/full || echo full-w-denied',
        'busybox head -c 1 /dev/mydev || echo mydev-denied',
        'busybox head -c 1 /dev/urandom || echo urandom-denied',
        'busybox mknod /dev/c0 c 1 3 && echo mknod-c',
        'busybox mknod /dev/b0 b 7 0 || echo mknod-b-denied',
        'busybox mknod /dev/big c 4095 1048575 && echo mknod-big',
      ].join('\n');
      const security = [
        'cgroup', dir,
        'device', '/dev/mydev', 'c', '1', '8', String(0o666), '0', '0',
        'devcgroup', 'deny',
        'devcgroup_rule', 'c', '1', '3', 'rw',
        'devcgroup_rule', 'c', '1', '5', 'rwm',
        'devcgroup_rule', 'c', '1', '7', 'r',
        'devcgroup_rule', 'c', '*', '*', 'm',
      ];
      const r = helper(createPlan({ args: ['sh', '-c', script], security }));
      expect((await r.run()).code).toBe(0);
      expect(r.status.filter((l) => l.startsWith('error'))).toEqual([]);
      const out = r.stdout.trim().split('\n');
      expect(out).toEqual(['null-w', '1', 'full-r', 'full-w-denied', 'mydev-denied', 'urandom-denied', 'mknod-c', 'mknod-b-denied', 'mknod-big']);
      expect(r.stderr).toMatch(/\/dev\/mydev: Operation not permitted/);

      // Programs stay on a cgroup until it is removed (the agent makes a new one per container), and apply to the
      // cgroups below it: a sibling cgroup each.
      const fresh = (name: string): string => {
        const d = `${dir}-${name}`;
        mkdirSync(d);
        made.push(d);
        return d;
      };
      // Default allow with exceptions that deny: wildcards and the access check on their own.
      const allow = helper(createPlan({
        args: ['sh', '-c', 'echo x > /dev/null && echo null-w; busybox head -c 1 /dev/zero >/dev/null || echo zero-denied; busybox head -c 1 /dev/full >/dev/null && echo full-r; echo x > /dev/full || echo full-w-denied'],
        security: ['cgroup', fresh('allow'), 'devcgroup', 'allow', 'devcgroup_rule', 'c', '*', '5', 'rwm', 'devcgroup_rule', 'c', '1', '7', 'w'],
      }));
      expect((await allow.run()).code).toBe(0);
      expect(allow.stdout.trim().split('\n')).toEqual(['null-w', 'zero-denied', 'full-r', 'full-w-denied']);

      // No exception at all (docker --privileged): the program is only its default.
      const all = helper(createPlan({ args: ['sh', '-c', 'echo x > /dev/full || echo full-w-failed'], security: ['cgroup', fresh('all'), 'devcgroup', 'allow'] }));
      expect((await all.run()).code).toBe(0);
      expect(all.stdout).toBe('full-w-failed\n');
      expect(all.stderr).toMatch(/No space left on device/);
    } finally {
      for (const d of made) rmdirSync(d);
      rmdirSync(dir);
    }
  });

  it('applies rootfs_propagation after pivot_root and mount_propagation in order on the new mount (mountinfo shows shared:)', async () => {
    const MS_SHARED = 0x100000, MS_PRIVATE = 0x40000, MS_UNBINDABLE = 0x20000;
    // Field 5 is the mount point, the optional fields follow field 6 up to "-".
    const script = "awk '$5 == \"/\" || $5 == \"/work/shared\" || $5 == \"/work/unbind\" { o = \"\"; for (i = 7; $i != \"-\"; i++) o = o \" \" $i; print $5 \":\" o }' /proc/self/mountinfo";
    const mounts: Array<[string, string, string, number, string]> = [
      ['tmpfs', 'tmpfs', '/work/shared', 0, ''],
      ['tmpfs', 'tmpfs', '/work/unbind', 0, ''],
    ];
    const plan = createPlan({ args: ['sh', '-c', script], mounts, security: ['rootfs_propagation', String(MS_SHARED)] });
    // mount_propagation follows its mount: put each right after it.
    const at = (dest: string) => plan.indexOf(dest) + 3;
    plan.splice(at('/work/unbind'), 0, 'mount_propagation', String(MS_UNBINDABLE));
    plan.splice(at('/work/shared'), 0, 'mount_propagation', String(MS_PRIVATE | MS_REC), 'mount_propagation', String(MS_SHARED | MS_REC));
    const r = helper(plan);
    expect((await r.run()).code).toBe(0);
    expect(r.status.filter((l) => l.startsWith('error'))).toEqual([]);
    const seen = Object.fromEntries(r.stdout.trim().split('\n').map((l) => l.split(/:(.*)/s).slice(0, 2)));
    expect(seen['/']).toMatch(/^ shared:\d+$/);
    expect(seen['/work/shared']).toMatch(/^ shared:\d+$/);
    expect(seen['/work/unbind']).toBe(' unbindable');

    // runc's default, rslave: the root is no peer of anything, and a mount without options stays private.
    const d = helper(createPlan({ args: ['sh', '-c', script], mounts: mounts.slice(1) }));
    expect((await d.run()).code).toBe(0);
    const dseen = Object.fromEntries(d.stdout.trim().split('\n').map((l) => l.split(/:(.*)/s).slice(0, 2)));
    expect(dseen['/']).not.toMatch(/shared:/);
    expect(dseen['/work/unbind']).toBe('');

    const cases: Array<[string[], string]> = [
      [[...createPlan({ args: ['true'] }).slice(0, 6), 'mount_propagation', String(MS_SHARED)], 'error plan: mount_propagation before any mount'],
      [['rootfs_propagation', String(MS_SHARED | MS_PRIVATE)], `error plan: bad rootfs_propagation "${MS_SHARED | MS_PRIVATE}"`],
      [['rootfs_propagation', String(MS_REC)], `error plan: bad rootfs_propagation "${MS_REC}"`],
      [['rootfs_propagation', 'shared'], 'error plan: bad rootfs_propagation "shared"'],
    ];
    for (const [security, error] of cases) {
      const bad = helper(security[0] === 'mode' ? security.concat(['arg', 'true']) : createPlan({ args: ['true'], security }));
      expect((await bad.withTimeout(bad.exit)).code).toBe(127);
      expect(bad.status).toEqual([error]);
    }
    const flagged = helper(createPlan({ args: ['true'], mounts: [['tmpfs', 'tmpfs', '/work/x', MS_SHARED, '']] }));
    expect((await flagged.withTimeout(flagged.exit)).code).toBe(127);
    expect(flagged.status).toEqual([`error plan: bad mount flags "${MS_SHARED}" (propagation goes in mount_propagation)`]);
    const many = createPlan({ args: ['true'], mounts: mounts.slice(1) });
    many.splice(many.indexOf('/work/unbind') + 3, 0, ...Array(9).fill(['mount_propagation', String(MS_PRIVATE)]).flat());
    const tooMany = helper(many);
    expect((await tooMany.withTimeout(tooMany.exit)).code).toBe(127);
    expect(tooMany.status).toEqual(['error plan: more than 8 mount_propagation entries for /work/unbind']);
  });

  it('creates a user namespace first, with the planned id maps written from outside; the rest is set up inside it', async () => {
    // The rootfs is not chowned (as runc): the mount points exist already, so root of the namespace need not make them.
    for (const d of ['proc', 'dev', 'sys']) mkdirSync(join(rootfs, d), { recursive: true });
    const script = 'cat /proc/self/uid_map /proc/self/gid_map; id; echo x > /dev/null && echo null=ok; echo x 2>&1 > /dev/full; ls /sys/kernel >/dev/null && echo sys=ok; echo "nofile=$(ulimit -Hn)"; echo "adj=$(cat /proc/self/oom_score_adj)"; readlink /proc/1/ns/user';
    const security = ['uid_map', '0', '100000', '65536', 'gid_map', '0', '200000', '1000', 'gid_map', '1000', '300000', '10', 'oom_score_adj', '700'];
    // The device filter too, attached from outside the namespace (bpf(2) needs the host's privileges): /dev/full,
    // which the filter leaves out, is refused ("No space left on device" without the filter).
    const dir = join(cgroup2Root() ?? '/nonexistent', `hull-ci-userns-${process.pid}`);
    const filter = cgroup2Root() ? ['cgroup', dir, 'devcgroup', 'deny', 'devcgroup_rule', 'c', '1', '3', 'rwm', 'devcgroup_rule', 'c', '*', '*', 'm'] : [];
    if (cgroup2Root()) mkdirSync(dir);
    onTestFinished(() => {
      if (cgroup2Root()) rmdirSync(dir);
    });
    const r = helper(createPlan({ args: ['sh', '-c', script], namespaces: 'mount,pid,uts,ipc,user', uid: 1000, gid: 1005, groups: [0], rlimits: [[RLIMIT_NOFILE, '100', '20000']], security: [...security, ...filter] }));
    expect((await r.run()).code).toBe(0);
    expect(r.status.filter((l) => l.startsWith('error'))).toEqual([]);
    const out = r.stdout.trim().split('\n').map((l) => l.trim().replace(/\s+/g, ' '));
    expect(out.slice(0, 3)).toEqual(['0 100000 65536', '0 200000 1000', '1000 300000 10']);
    expect(out[3]).toBe('uid=1000 gid=1005 groups=0'); // additionalGids: setgroups stays allowed, as runc leaves it
    expect(out).toContain('null=ok');
    if (cgroup2Root()) expect(out).toContain('sh: can\'t create /dev/full: Operation not permitted');
    expect(out).toContain('sys=ok');
    expect(out).toContain('nofile=20000'); // set by the parent, outside the namespace (the guest raises it there; this host has no CAP_SYS_RESOURCE)
    expect(out).toContain('adj=700');
    expect(out[out.length - 1]).not.toBe(readlinkSync('/proc/self/ns/user'));

    // An exec joins the user namespace first.
    const init = helper(createPlan({ args: ['sh', '-c', 'trap "exit 0" TERM; sleep 30 & wait'], namespaces: 'mount,pid,ipc,user', hostname: null, security: security.slice(0, 12) }));
    await init.ready();
    init.start();
    await init.until(() => init.status.length >= 2, 'started');
    // Its rlimits and oom_score_adj are set before, from outside the namespace (as for the create).
    const exec = helper(execPlan(init.pid, ['sh', '-c', 'cat /proc/self/uid_map; id -u; ulimit -Sn; cat /proc/self/oom_score_adj'], ['rlimit', String(RLIMIT_NOFILE), '77', '20000', 'oom_score_adj', '800']));
    expect((await exec.run()).code).toBe(0);
    expect(exec.stdout.trim().split('\n').map((l) => l.trim().replace(/\s+/g, ' '))).toEqual(['0 100000 65536', '0', '77', '800']);
    // Ended through its PID 1, so the pid namespace is empty once the helper has exited.
    init.child.kill('SIGTERM');
    expect((await init.withTimeout(init.exit)).code).toBe(0);

    const cases: Array<[PlanOptions, string]> = [
      [{ args: ['true'], namespaces: 'mount,user' }, 'error plan: the user namespace needs uid_map and gid_map, and they need it'],
      [{ args: ['true'], security: ['uid_map', '0', '1', '1', 'gid_map', '0', '1', '1'] }, 'error plan: the user namespace needs uid_map and gid_map, and they need it'],
      [{ args: ['true'], namespaces: 'mount,user', security: ['uid_map', '0', '1', '0'] }, 'error plan: bad uid_map 0 1 0'],
      [{ args: ['true'], namespaces: 'mount,user', security: ['gid_map', '4294967295', '1', '2'] }, 'error plan: bad gid_map 4294967295 1 2'],
      [{ args: ['true'], namespaces: 'mount,user', security: Array(341).fill(['uid_map', '0', '1', '1']).flat() }, 'error plan: more than 340 uid_map entries'],
      [{ args: ['true'], namespaces: 'mount,user', security: [...Array.from({ length: 200 }, (_, i) => ['uid_map', String(4e9 + i), String(4e9 + i), '1']).flat(), 'gid_map', '0', '1', '1'] },
        'error uid_map: 200 lines take 4800 bytes; the kernel takes at most 4095'],
      // Container root unmapped: the setup could not make a file; refused like runc.
      [{ args: ['true'], namespaces: 'mount,user', security: ['uid_map', '1', '100000', '10', 'gid_map', '0', '100000', '10'] },
        'error setresuid 0 in the user namespace (is container uid 0 in linux.uidMappings?): Invalid argument'],
    ];
    for (const [o, error] of cases) {
      const bad = helper(createPlan(o));
      expect((await bad.withTimeout(bad.exit)).code).toBe(127);
      expect(bad.status).toEqual([error]);
    }
  });

  it('refuses malformed devcgroup keys', async () => {
    const cases: Array<[string[], string]> = [
      [['devcgroup', 'maybe'], 'error plan: bad devcgroup default "maybe"'],
      [['devcgroup', 'deny', 'devcgroup', 'deny'], 'error plan: devcgroup is given twice'],
      [['devcgroup_rule', 'c', '1', '3', 'rw'], 'error plan: devcgroup_rule before devcgroup'],
      [['devcgroup', 'deny', 'devcgroup_rule', 'a', '1', '3', 'rw'], 'error plan: bad devcgroup_rule type "a"'],
      [['devcgroup', 'deny', 'devcgroup_rule', 'c', '-1', '3', 'rw'], 'error plan: bad devcgroup_rule number -1:3'],
      [['devcgroup', 'deny', 'devcgroup_rule', 'c', '1', '4294967296', 'rw'], 'error plan: bad devcgroup_rule number 1:4294967296'],
      [['devcgroup', 'deny', 'devcgroup_rule', 'c', '1', '3', ''], 'error plan: bad devcgroup_rule access ""'],
      [['devcgroup', 'deny', 'devcgroup_rule', 'c', '1', '3', 'rr'], 'error plan: bad devcgroup_rule access "rr"'],
      [['devcgroup', 'deny', 'devcgroup_rule', 'c', '1', '3', 'rwx'], 'error plan: bad devcgroup_rule access "rwx"'],
      [['devcgroup', 'deny', 'devcgroup_rule', 'c', '1', '3', 'rwmr'], 'error plan: bad devcgroup_rule access "rwmr"'],
      [['devcgroup', 'deny'], 'error plan: devcgroup needs cgroup'],
      [['cgroup', '/sys/fs/cgroup', 'devcgroup', 'deny', ...Array(2049).fill(['devcgroup_rule', 'c', '*', '*', 'm']).flat()], 'error plan: more than 2048 devcgroup_rule entries'],
    ];
    for (const [security, error] of cases) {
      const bad = helper(createPlan({ args: ['true'], security }));
      expect((await bad.withTimeout(bad.exit)).code).toBe(127);
      expect(bad.status).toEqual([error]);
    }
  });

  it('reports a sysctl the kernel does not have as an error', async () => {
    const r = helper(createPlan({ args: ['true'], security: ['sysctl', 'kernel.no_such_key', '1'] }));
    expect((await r.withTimeout(r.exit)).code).toBe(127);
    expect(r.status).toContain('error sysctl kernel.no_such_key: No such file or directory');
  });

  const denyMkdir = (nnp: boolean): string[] => [
    ...(nnp ? ['no_new_privs', '1'] : []),
    'seccomp', 'allow', '0', 'seccomp_arch', 'x86_64', 'seccomp_arch', 'x86',
    'seccomp_syscall', 'mkdir', 'errno', '1', 'seccomp_syscall', 'mkdirat', 'errno', '1',
    'seccomp_syscall', 'no_such_syscall', 'errno', '1', // skipped, as runc does
    'seccomp_syscall', 'getpid', 'allow', '0', // the default action: skipped too (libseccomp refuses it)
    // chmod to 0777 is refused with EACCES; other modes pass (an argument condition).
    'seccomp_syscall', 'chmod', 'errno', '13', 'seccomp_arg', '1', String(0o777), '0', 'eq',
    'seccomp_syscall', 'fchmodat', 'errno', '13', 'seccomp_arg', '2', String(0o777), '0', 'eq',
  ];
  const seccompScript = 'mkdir /work/d 2>&1; touch /work/f; chmod 755 /work/f && echo chmod-755-ok; chmod 777 /work/f 2>&1; grep Seccomp: /proc/self/status';

  for (const nnp of [false, true]) {
    it(`loads the seccomp filter (${nnp ? 'with no_new_privs: last step before exec' : 'without no_new_privs: before the capabilities are dropped'})`, async () => {
      const r = helper(createPlan({ uid: 1000, gid: 1000, args: ['sh', '-c', seccompScript], security: ['capabilities', '0', '0', '0', '0', '0', ...denyMkdir(nnp)] }));
      expect((await r.run()).code).toBe(0);
      expect(r.status.filter((l) => l.startsWith('error'))).toEqual([]);
      expect(r.stdout).toMatch(/mkdir: can't create directory '\/work\/d': Operation not permitted\n/);
      expect(r.stdout).toContain('chmod-755-ok\n');
      expect(r.stdout).toMatch(/chmod: \/work\/f: Permission denied\n/);
      expect(r.stdout).toContain('Seccomp:\t2\n');
      expect(existsSync(join(rootfs, 'work/d'))).toBe(false);
      rmSync(join(rootfs, 'work/f'), { force: true });
    });
  }

  it('kills the workload for a kill_process rule and reports an unknown architecture', async () => {
    const r = helper(createPlan({ args: ['sh', '-c', 'exec mkdir /work/k'], security: ['seccomp', 'allow', '0', 'seccomp_syscall', 'mkdir', 'kill_process', '0', 'seccomp_syscall', 'mkdirat', 'kill_process', '0'] }));
    expect((await r.run()).code).toBe(128 + 31); // SIGSYS
    expect(existsSync(join(rootfs, 'work/k'))).toBe(false);

    // The filter is built before "ready": a bad one fails the create, before anything runs.
    const bad = helper(createPlan({ args: ['true'], security: ['seccomp', 'allow', '0', 'seccomp_arch', 'vax'] }));
    expect((await bad.withTimeout(bad.exit)).code).toBe(127);
    expect(bad.status.slice(1)).toEqual(['error seccomp: unknown architecture vax']);
  });

  it('refuses malformed security keys in the plan', async () => {
    const sc = ['seccomp', 'allow', '0'];
    const cases: Array<[string[], string]> = [
      [['capabilities', '1', '2', '3', 'x', '5'], 'error plan: bad capability mask "x"'],
      [['capabilities', '1', '2', '3', '4', '5', 'capabilities', '1', '2', '3', '4', '5'], 'error plan: capabilities are given twice'],
      [['capabilities', '18446744073709551616', '0', '0', '0', '0'], 'error plan: bad capability mask "18446744073709551616"'],
      [['no_new_privs', 'yes'], 'error plan: bad no_new_privs'],
      [['masked_path', 'proc/kcore'], 'error plan: masked_path must be an absolute path shorter than 4096 bytes: proc/kcore'],
      [['readonly_path', `/${'a'.repeat(5000)}`], `error plan: readonly_path must be an absolute path shorter than 4096 bytes: /${'a'.repeat(199)}`],
      [['sysctl', '../../etc/x', '1'], 'error plan: bad sysctl key "../../etc/x"'],
      [['sysctl', 'kernel..sem', '1'], 'error plan: bad sysctl key "kernel..sem"'],
      [['sysctl', 'kernel/sem', '1'], 'error plan: bad sysctl key "kernel/sem"'],
      [['sysctl', 'kernel.sem', 'x'.repeat(4097)], 'error plan: sysctl kernel.sem: value longer than 4096 bytes'],
      [['seccomp_syscall', 'mkdir', 'errno', '1'], 'error plan: seccomp_syscall before seccomp'],
      [['seccomp_arch', 'x86_64'], 'error plan: seccomp_arch before seccomp'],
      [[...sc, ...sc], 'error plan: seccomp is given twice'],
      [['seccomp', 'notify', '0'], 'error plan: bad seccomp action "notify"'],
      [['seccomp', 'errno', '4096'], 'error plan: bad seccomp errno "4096"'],
      [[...sc, 'seccomp_arg', '0', '1', '0', 'eq'], 'error plan: seccomp_arg without a seccomp_syscall before it'],
      [[...sc, 'seccomp_syscall', 'mkdir', 'errno', '1', 'seccomp_arg', '6', '1', '0', 'eq'], 'error plan: bad seccomp_arg index "6"'],
      [[...sc, 'seccomp_syscall', 'mkdir', 'errno', '1', 'seccomp_arg', '0', '-1', '0', 'eq'], 'error plan: bad seccomp_arg value for mkdir'],
      [[...sc, 'seccomp_syscall', 'mkdir', 'errno', '1', 'seccomp_arg', '0', '1', '0', 'like'], 'error plan: bad seccomp_arg op "like"'],
      [[...sc, 'seccomp_syscall', 'mkdir', 'errno', '1', ...Array(7).fill(['seccomp_arg', '0', '1', '0', 'eq']).flat()], 'error plan: more than 6 seccomp_arg entries for mkdir'],
      [[...sc, 'seccomp_syscall', '', 'errno', '1'], 'error plan: bad seccomp syscall name ""'],
      [[...sc, ...Array(17).fill(['seccomp_arch', 'x86']).flat()], 'error plan: more than 16 seccomp_arch entries'],
      [[...sc, ...Array(8193).fill(['seccomp_syscall', 'read', 'errno', '1']).flat()], 'error plan: more than 8192 seccomp_syscall entries'],
      [Array(1025).fill(['masked_path', '/x']).flat(), 'error plan: more than 1024 masked_path entries'],
    ];
    for (const [security, error] of cases) {
      const r = helper(createPlan({ args: ['true'], security }));
      expect((await r.withTimeout(r.exit)).code).toBe(127);
      expect(r.status).toEqual([error]);
    }
    const truncated = helper([...createPlan({ args: ['true'] }), 'seccomp', 'allow']);
    expect((await truncated.withTimeout(truncated.exit)).code).toBe(127);
    expect(truncated.status).toEqual(['error plan: key seccomp needs 2 values']);
    const exec = helper(execPlan(process.pid, ['true'], ['masked_path', '/proc/kcore']));
    expect((await exec.withTimeout(exec.exit)).code).toBe(127);
    expect(exec.status).toEqual(['error plan: exec takes no masked_path, readonly_path, sysctl, device, devcgroup or id map']);
  });

  it('survives random security keys and values: one "error plan:" line, no sanitizer report', async () => {
    // Plans without an `arg` key, so each is refused after every key was parsed: nothing is ever set up.
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const values = ['', '0', '1', '-1', '6', '4095', '4096', '18446744073709551615', '18446744073709551616', 'x86_64', 'vax', 'errno',
      'allow', 'kill_process', 'eq', 'masked_eq', '/proc/kcore', 'proc', 'kernel.sem', 'kernel..sem', '../x', 'a'.repeat(5000), '%s%n', '\u00ff', 'deny', 'c', 'b', '*', 'rwm', 'mr'];
    const keys: Array<[string, number]> = [['capabilities', 5], ['no_new_privs', 1], ['masked_path', 1], ['readonly_path', 1], ['sysctl', 2],
      ['seccomp', 2], ['seccomp_arch', 1], ['seccomp_syscall', 3], ['seccomp_arg', 4], ['devcgroup', 1], ['devcgroup_rule', 4]];
    const plans: string[][] = [];
    for (let i = 0; i < 120; i++) {
      const p = ['mode', 'create', 'namespaces', 'mount', 'rootfs', rootfs];
      for (let k = 1 + rand(12); k > 0; k--) {
        const [key, n] = keys[rand(keys.length)];
        p.push(key);
        for (let v = n - (rand(10) === 0 ? 1 : 0); v > 0; v--) p.push(values[rand(values.length)]);
      }
      plans.push(p);
    }
    for (let i = 0; i < plans.length; i += 12) {
      const batch = plans.slice(i, i + 12).map((p) => helper(p));
      for (const r of batch) {
        const { code } = await r.withTimeout(r.exit);
        expect(r.stderr).toBe('');
        expect(code).toBe(127);
        expect(r.status).toHaveLength(1);
        expect(r.status[0]).toMatch(/^error plan: /);
      }
    }
  });

  it('the static build runs too', async () => {
    const r = helper(createPlan({ args: ['sh', '-c', 'echo $$; mkdir /work/s 2>&1; true'], security: ['seccomp', 'allow', '0', 'seccomp_syscall', 'mkdir', 'errno', '1', 'seccomp_syscall', 'mkdirat', 'errno', '1'] }), join(REPO, 'build/native/hull-container-init'));
    expect((await r.run()).code).toBe(0);
    expect(r.stdout).toBe("1\nmkdir: can't create directory '/work/s': Operation not permitted\n"); // libseccomp is linked in
    expect(execFileSync('file', [join(REPO, 'build/native/hull-container-init')]).toString()).toMatch(/statically linked/);
  });
});
