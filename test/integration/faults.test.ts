// The fault catalog (issue 11 item 3, docs/faults.md): `kill -9` of each host process of a sandbox — QEMU, virtiofsd,
// the vsock backend's broker and its worker, the process that stands for the container (the monitor: `hull run`
// itself, or the one `hull create` leaves) — and the guest agent's death, in each phase, under `hull run`,
// `create`/`start` and containerd. Each case checks what the front end says (one line, the exit status runc or
// containerd would give), how long until everything of the sandbox is gone — processes, mounts, taps, host cgroup,
// state — and that nothing is left. docs/faults.md has the table these cases print.
//
// The phases: boot (the guest is booting: a cold VM, its console already written, the agent not yet answering),
// running (the container runs), exec (a `hull exec`/`ctr task exec` is attached), stopping (SIGTERM was delivered and
// the container's TERM trap is still running). Running, exec and stopping take a pooled VM (`hull pool serve --size 2`
// on this file's root: a case starts in under a second); boot boots cold (a memory limit the pool's VMs do not fit).
//
// The guest agent is PID 1 of the guest, which the kernel does not let anything in its own pid namespace kill:
// `kill -9 1` from a container sharing that namespace is a no-op (the first case proves it). Its death is injected as
// a crash: a container that shares the guest's root pid namespace and has CAP_SYS_PTRACE writes an int3 over the
// instruction PID 1 resumes at when its epoll_wait returns (/proc/1/syscall's pc, through /proc/1/mem), so the next
// event traps it — no code of hull's takes part. The guest kernel panics ("Attempted to kill init!") and QEMU exits.
//
// Combinations left out because they run the same host code as a case that is here (docs/faults.md, "Coverage"):
// - the vsock worker during boot, exec and stopping: a dead worker is a dead broker to QEMU and to the agent
//   connection (the broker is the helper on record; killing either closes the channel), checked while running;
// - the broker and the worker during exec and stopping: the same lost agent connection as while running; exec and
//   stopping check QEMU (VMM exit) and virtiofsd (helper poll), the two other ways a death is noticed;
// - create/start during exec: an exec does not depend on the front end that made its container (`hull exec` only
//   has the record), covered under `hull run`; create/start repeats the monitor's own cases (boot, running, stopping)
//   because it reports through a detached monitor, and a dead monitor is that front end's own fault;
// - the agent during boot: a guest dying before its agent answers is QEMU exiting during boot (boot × QEMU); the
//   agent under containerd: its death is the VM exiting, which the shim's core (the same Sandbox) notices as for
//   QEMU, and ctr cannot make a container without a pid namespace to inject it from;
// - the monitor during exec and stopping: the monitor's death does not depend on what the container does;
// - the shim, in any phase: containerd's delete path (`containerd-shim-hull-v2 delete` from the pod record) does not
//   depend on the phase; it is checked while running in containerd.test.ts and cri.test.ts ("killing the shim");
//   containerd's own `kill <task pid>` (QEMU's) is checked there too.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { isAlive } from '../../hypervisor/process.js';
import type { VmProcess } from '../../hypervisor/types.js';
import { containerdPrerequisites, podRecords, PrivateContainerd, RUNTIME, until } from '../helpers/containerd.js';
import { existingCgroupDirs, removeTestParents } from '../helpers/host-cgroups.js';
import { hull, hullBin, hullDetached, makeBundle, mountsUnder, processesMentioning, repo, tempDir } from '../helpers/hull.js';
import { namespaceSnapshot, podWithPeer, type PodWithPeer } from '../helpers/netns.js';
import { Pool } from '../helpers/pool.js';
import { needRoot, prerequisitesMet } from '../helpers/prerequisites.js';

type Fault = 'QEMU' | 'virtiofsd' | 'vsock broker' | 'vsock worker' | 'monitor' | 'shim' | 'agent';
type Phase = 'boot' | 'running' | 'exec' | 'stopping';
type FrontEnd = 'hull run' | 'create/start' | 'containerd';

const work = tempDir('hull-faults-');
const root = path.join(work, 'root');
const cgParent = `/hull-faults-${process.pid}`;
/** A container limit that makes a VM bigger than the pool's (512 MiB): such a sandbox boots cold. */
const COLD_MEMORY_LIMIT = 300 * 2 ** 20;
/** How long after the fault everything must be gone. */
const CLEAN_WITHIN_MS = 10_000;

const ready = prerequisitesMet('faults', [
  needRoot(),
  !existsSync('/bin/busybox') && '/bin/busybox (apt-get install busybox-static)',
  !existsSync(path.join(repo, 'dist', 'hull.mjs')) && 'dist/hull.mjs (npm run build)',
  !existsSync(path.join(repo, 'build', 'guest', 'current', 'manifest.json')) && 'guest image (npm run build)',
]);

/** One row of docs/faults.md, printed at the end. */
interface Row {
  fault: Fault;
  phase: Phase;
  frontEnd: FrontEnd;
  status: string;
  seconds: number;
  leaks: string[];
}
const table: Row[] = [];

// ---- the processes a case starts and the ones it kills

/** A CLI process whose output the case reads while it runs. */
interface Live {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function launch(args: string[]): Live {
  const child = spawn(hullBin, ['--root', root, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  return { child, stdout: () => out, stderr: () => err, done };
}

interface StateFile {
  status: string;
  pid: number;
  vm: { vmm?: VmProcess; helpers?: VmProcess[] };
  vmDir?: string;
}

function stateOf(id: string): StateFile | undefined {
  try {
    return JSON.parse(readFileSync(path.join(root, id, 'state.json'), 'utf8')) as StateFile;
  } catch {
    return undefined;
  }
}

const recorded = (vm: StateFile['vm']): VmProcess[] => [...(vm.vmm ? [vm.vmm] : []), ...(vm.helpers ?? [])];

/** The worker of a vsock broker: its only child. */
function childOf(pid: number): number | undefined {
  const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  return kids.length === 1 ? Number(kids[0]) : undefined;
}

/** The host pid of `fault` for a VM on record; undefined while it is not (yet). */
function hostPidOf(fault: Fault, vm: StateFile['vm'], monitor: number): number | undefined {
  const helper = (role: string): number | undefined => vm.helpers?.find((h) => h.role === role)?.pid;
  switch (fault) {
    case 'QEMU':
      return vm.vmm?.pid;
    case 'virtiofsd':
      return helper('virtiofsd');
    case 'vsock broker':
      return helper('vsock-backend');
    case 'vsock worker': {
      const broker = helper('vsock-backend');
      return broker === undefined ? undefined : childOf(broker);
    }
    case 'monitor':
      return vm.vmm ? monitor : undefined;
    default:
      throw new Error(`${fault} has no host pid`);
  }
}

/**
 * What a guest process runs to crash the agent (PID 1): an int3 at the instruction PID 1's main thread resumes at when
 * its epoll wait returns (/proc/1/syscall's pc, written through /proc/1/mem). Needs the guest's root pid namespace and
 * CAP_SYS_PTRACE (agentKillerSpec). PID 1 is not always in its event loop's wait when looked at: it serves this very
 * exec, so /proc/1/syscall may say `running` (no pc: the write once went to address 0 and the agent lived on, which
 * the create/start case reported as a monitor that never exited) or name another syscall, whose return may not come
 * again. So it looks again until the thread sits in epoll_wait (232), epoll_pwait (281) or epoll_pwait2 (441), and
 * says so when it never did: the VM's death ends this exec (255) well before the loop does.
 */
const CRASH_AGENT = [
  'i=0',
  'while [ $i -lt 100 ]; do',
  '  set -- $(cat /proc/1/syscall)',
  '  case $1 in 232|281|441) echo "int3 at $9 (syscall $1)"; printf "\\314" | dd of=/proc/1/mem bs=1 seek=$(($9)) conv=notrunc 2>/dev/null ;; *) echo "PID 1: $*" ;; esac',
  '  sleep 0.1; i=$((i + 1))',
  'done',
  'echo "the agent did not crash"; exit 1',
].join('\n');

/** A container that may reach the agent: the guest's root pid namespace (no pid entry) and CAP_SYS_PTRACE. */
function agentKillerSpec(spec: Record<string, any>): void {
  spec.linux.namespaces = spec.linux.namespaces.filter((n: { type: string }) => n.type !== 'pid');
  const caps = ['CAP_SYS_PTRACE', 'CAP_KILL'];
  spec.process.capabilities = { bounding: caps, effective: caps, permitted: caps };
}

/**
 * Kills the fault's process (the agent: from inside the guest, through an exec). Returns when the fault struck, the
 * clock of "s to clean": for the agent, when the host heard of the first int3 written (the exec's own start-up, seconds
 * under load, is not the fault's), or when the exec started if the VM died before that line came out.
 */
async function inject(fault: Fault, id: string, state: StateFile): Promise<number> {
  if (fault === 'agent') {
    const started = Date.now();
    const exec = launch(['exec', id, 'sh', '-c', CRASH_AGENT]);
    let struck: number | undefined;
    exec.child.stdout!.on('data', () => void (struck ??= exec.stdout().includes('int3 at') ? Date.now() : undefined));
    // The exec ends with the VM (255); it exits 1 only when it never found PID 1 in its event loop's wait.
    const r = await exec.done;
    if (r.code !== 255) throw new Error(`the agent crash was not injected (exec: ${r.code}): ${exec.stdout().slice(-2000)} ${exec.stderr()}`);
    return struck ?? started;
  }
  const pid = hostPidOf(fault, state.vm, state.pid);
  if (pid === undefined) throw new Error(`no ${fault} on record: ${JSON.stringify(state)}`);
  const t0 = Date.now();
  process.kill(pid, 'SIGKILL');
  return t0;
}

// ---- what is left

let netBefore: ReturnType<typeof namespaceSnapshot> | undefined;
let net: PodWithPeer | undefined;
let pool: Pool | undefined;

/** Everything of container `id` still on the host: its VM's processes (recorded before the fault), mounts of the root
 *  and of the VM's directory, its state directory, its host cgroup, taps in its network namespace, a claimed VM. */
async function leftovers(id: string, vm: StateFile['vm'], vmDir: string | undefined): Promise<string[]> {
  const status = await pool!.status();
  const servers = new Set([pool!.pid]);
  return [
    ...recorded(vm).filter((p) => isAlive(p)).map((p) => `${p.role} ${p.pid} runs`),
    ...processesMentioning(root).filter((l) => !servers.has(Number(l.split(':')[0]))),
    ...mountsUnder(root).map((m) => `mount ${m}`),
    ...(vmDir ? mountsUnder(vmDir).map((m) => `mount ${m}`) : []),
    ...(vmDir && existsSync(vmDir) && vmDir !== path.join(root, id) ? [`VM directory ${vmDir}`] : []),
    ...(existsSync(path.join(root, id)) ? [`state directory ${id}`] : []),
    ...existingCgroupDirs(`${cgParent}/${id}`).map((d) => `cgroup ${d}`),
    ...(JSON.stringify(namespaceSnapshot(net!.pod)) === JSON.stringify(netBefore) ? [] : [`network namespace: ${JSON.stringify(namespaceSnapshot(net!.pod))}`]),
    ...(status.claimed > 0 ? [`${status.claimed} claimed pooled VM(s)`] : []),
  ];
}

/** Waits until nothing of `id` is left (at most CLEAN_WITHIN_MS after `since`); returns the seconds and what is left. */
async function cleaned(id: string, vm: StateFile['vm'], vmDir: string | undefined, since: number): Promise<{ seconds: number; leaks: string[] }> {
  let leaks = await leftovers(id, vm, vmDir);
  while (leaks.length > 0 && Date.now() - since < CLEAN_WITHIN_MS) {
    await new Promise((r) => setTimeout(r, 100));
    leaks = await leftovers(id, vm, vmDir);
  }
  return { seconds: (Date.now() - since) / 1000, leaks };
}

// ---- the bundles

let made = 0;
function bundleFor(id: string, phase: Phase, fault: Fault): string {
  // The stop phase's container: SIGTERM starts a 3 s trap, during which the fault strikes.
  const script = 'trap "sleep 3; exit 0" TERM; echo started; sleep 1000 & wait';
  return makeBundle(path.join(work, `b${made++}`), ['sh', '-c', script], (spec) => {
    spec.linux.cgroupsPath = `${cgParent}/${id}`;
    spec.linux.namespaces = spec.linux.namespaces.map((n: { type: string }) => (n.type === 'network' ? { type: 'network', path: net!.podPath } : n));
    if (phase === 'boot') spec.linux.resources = { ...spec.linux.resources, memory: { limit: COLD_MEMORY_LIMIT } };
    if (fault === 'agent') agentKillerSpec(spec);
  });
}

const pollUntil = <T>(what: string, fn: () => T | undefined, timeoutMs = 60_000): Promise<T> => until(what, fn, timeoutMs);

/** The fault's moment of the phase for container `id`: the record as it is then. */
async function reachPhase(id: string, phase: Phase, fault: Fault): Promise<StateFile> {
  if (phase === 'boot') {
    // A cold VM that is on record with the process to kill, and whose guest has started writing its console.
    return pollUntil(`${id} to boot`, () => {
      const s = stateOf(id);
      if (!s || s.status !== 'creating' || hostPidOf(fault, s.vm, s.pid) === undefined) return undefined;
      const console = path.join(root, id, 'console.log');
      return existsSync(console) && readFileSync(console).length > 0 ? s : undefined;
    });
  }
  const running = await pollUntil(`${id} to run`, () => (stateOf(id)?.status === 'running' ? stateOf(id) : undefined));
  if (phase === 'stopping') {
    const r = await hull(['kill', id, 'TERM'], { root });
    expect(r.code, r.stderr).toBe(0);
    await new Promise((res) => setTimeout(res, 300)); // the trap is sleeping now
  }
  return running;
}

function oneLine(stderr: string): string {
  const lines = stderr.split('\n').filter(Boolean);
  expect(lines, `stderr: ${stderr}`).toHaveLength(1);
  return lines[0]!;
}

/** The reason a VM death is given for each fault (after "the VM died: "). */
const REASON: Partial<Record<Fault, RegExp>> = {
  QEMU: /QEMU exited|vmm \(pid \d+\) is gone/,
  virtiofsd: /virtiofsd \(pid \d+\) is gone/,
  'vsock broker': /vsock-backend \(pid \d+\) is gone/,
  'vsock worker': /vsock-backend \(pid \d+\) is gone|the guest agent connection closed/,
  agent: /QEMU exited \(crashed: guest-reset\)|vmm \(pid \d+\) is gone/,
};

/** A failed case's container goes at once: its claimed pooled VM would otherwise count as the next case's leak. */
async function forceDelete(id: string): Promise<void> {
  if (existsSync(path.join(root, id))) await hull(['delete', '--force', id], { root });
}

afterAll(async () => {
  for (const id of existsSync(root) ? readdirSync(root) : []) await hull(['delete', '--force', id], { root });
  await Pool.stopAll();
  net?.remove();
  try {
    removeTestParents([cgParent, `/${NS}`]);
  } finally {
    if (mountsUnder(work).length === 0) rmSync(work, { recursive: true, force: true });
  }
  if (table.length > 0) {
    console.log(['fault | phase | front end | exit status | s to clean | leaks', ...table.map((r) =>
      `${r.fault} | ${r.phase} | ${r.frontEnd} | ${r.status} | ${r.seconds.toFixed(1)} | ${r.leaks.length ? r.leaks.join('; ') : 'none'}`)].join('\n'));
  }
});

describe.runIf(ready)('faults: kill -9 of a sandbox process, in each phase, under each front end', () => {
  beforeAll(async () => {
    net = podWithPeer({
      suffix: `flt${process.pid}`,
      podMac: '0a:58:0a:e7:52:02',
      mtu: 1500,
      pod4: '10.231.82.2', peer4: '10.231.82.1', prefix4: 24,
      pod6: 'fd00:231:82::2', peer6: 'fd00:231:82::1', prefix6: 64,
      peerWww: path.join(work, 'www'),
      peerPage: 'unused\n',
    });
    netBefore = namespaceSnapshot(net.pod);
    pool = await Pool.start(root, 2);
  }, 120_000);

  it('kill -9 of the agent (PID 1) from inside the guest is a no-op (the kernel protects init in its own namespace), SIGUSR1 opens no inspector', async () => {
    const id = 'agent-pid1';
    await pool!.readyVms(1);
    const run = launch(['run', '--bundle', bundleFor(id, 'running', 'agent'), id]);
    await reachPhase(id, 'running', 'agent');
    // SIGUSR1 is delivered (the agent handles it), but must not open Node's inspector: nothing listens on its port
    // (9229 = 0x240D) in PID 1's network namespace two seconds later.
    const inspector = 'kill -USR1 1; echo usr1=$?; sleep 2; echo "inspector listening: $(awk \'$2 ~ /:240D$/ && $4 == "0A"\' /proc/1/net/tcp /proc/1/net/tcp6 | wc -l)"';
    const r = await hull(['exec', id, 'sh', '-c', `cat /proc/1/comm; kill -9 1; echo kill=$?; sleep 0.5; cat /proc/1/comm; ${inspector}`], { root });
    expect([r.code, r.stdout]).toEqual([0, 'node\nkill=0\nnode\nusr1=0\ninspector listening: 0\n']);
    // --all: with no pid namespace of its own, the container's init dying does not end its other processes.
    expect((await hull(['kill', '--all', id, 'KILL'], { root })).code).toBe(0);
    expect((await run.done).code).toBe(137);
    const { leaks } = await cleaned(id, (stateOf(id) ?? { vm: {} }).vm, undefined, Date.now());
    expect(leaks).toEqual([]);
  });

  const runCases: Array<[Fault, Phase]> = [
    ['QEMU', 'boot'], ['virtiofsd', 'boot'], ['vsock broker', 'boot'], ['monitor', 'boot'],
    ['QEMU', 'running'], ['virtiofsd', 'running'], ['vsock broker', 'running'], ['vsock worker', 'running'], ['monitor', 'running'], ['agent', 'running'],
    ['QEMU', 'exec'], ['virtiofsd', 'exec'], ['agent', 'exec'],
    ['QEMU', 'stopping'], ['virtiofsd', 'stopping'],
  ];

  it.each(runCases)('hull run: %s during %s', async (fault, phase) => {
    const id = `run-${fault.replace(/\W/g, '')}-${phase}`;
    onTestFailed(() => forceDelete(id));
    await pool!.readyVms(phase === 'boot' ? 0 : 1);
    const run = launch(['run', '--bundle', bundleFor(id, phase, fault), id]);
    const state = await reachPhase(id, phase, fault);
    const execLive = phase === 'exec' ? launch(['exec', id, 'sh', '-c', 'echo exec-started; exec sleep 1000']) : undefined;
    if (execLive) await pollUntil('the exec to start', () => (execLive.stdout().includes('exec-started') ? true : undefined));
    const vmDir = state.vmDir ?? path.join(root, id);
    const t0 = await inject(fault, id, state);
    const exit = await run.done;
    const frontEndSeconds = (Date.now() - t0) / 1000;
    let status: string;
    if (fault === 'monitor') {
      // Killed, it says nothing; the container is stopped and `hull delete` ends the rest (as after `runc run` is killed).
      expect([exit.signal, run.stderr()]).toEqual(['SIGKILL', '']);
      expect(JSON.parse((await hull(['state', id], { root })).stdout).status).toBe('stopped');
      const d = await hull(['delete', id], { root });
      expect([d.code, d.stderr]).toEqual([0, '']);
      status = 'killed (SIGKILL); state stopped; delete 0';
    } else if (phase === 'boot') {
      expect(exit.code).toBe(1);
      expect(oneLine(run.stderr())).toMatch(new RegExp(`^hull: (sandbox ${id} failed to boot|container ${id}: the VM died): .+`));
      status = '1';
    } else {
      expect(exit.code).toBe(255);
      const line = oneLine(run.stderr());
      expect(line).toMatch(new RegExp(`^hull: container ${id}: the VM died: `));
      expect(line).toMatch(REASON[fault]!);
      status = '255';
    }
    if (execLive) {
      const e = await execLive.done;
      expect(e.code).toBe(255);
      expect(oneLine(execLive.stderr())).toMatch(new RegExp(`^hull: exec in container ${id}: the VM died: `));
      status += ' (exec: 255)';
    }
    const { seconds, leaks } = await cleaned(id, state.vm, vmDir, t0);
    table.push({ fault, phase, frontEnd: 'hull run', status, seconds, leaks });
    console.log(`  ${fault} during ${phase}: hull run ended in ${frontEndSeconds.toFixed(2)} s, clean in ${seconds.toFixed(2)} s`);
    expect(frontEndSeconds).toBeLessThan(5);
    expect(leaks).toEqual([]);
  });

  const createCases: Array<[Fault, Phase]> = [
    ['QEMU', 'boot'], ['QEMU', 'running'], ['vsock worker', 'running'], ['monitor', 'running'], ['agent', 'running'],
    ['virtiofsd', 'stopping'],
  ];

  it.each(createCases)('create/start: %s during %s', async (fault, phase) => {
    const id = `cs-${fault.replace(/\W/g, '')}-${phase}`;
    onTestFailed(() => forceDelete(id));
    await pool!.readyVms(phase === 'boot' ? 0 : 1);
    const stdio = { stdout: path.join(work, `${id}.out`), stderr: path.join(work, `${id}.err`) };
    // The monitor's log (HULL_TEST_FAULT_LOGS keeps it): what a monitor that does not exit was waiting for.
    const log = path.join(process.env.HULL_TEST_FAULT_LOGS ?? work, `${id}-${Date.now()}.log`);
    const created = hullDetached(['create', '--bundle', bundleFor(id, phase, fault), id], { root, globalArgs: ['--log', log, '--debug'], ...stdio });
    let status: string;
    let t0: number;
    let state: StateFile;
    if (phase === 'boot') {
      state = await reachPhase(id, phase, fault);
      t0 = await inject(fault, id, state);
      const c = await created;
      expect(c.code).toBe(1);
      expect(oneLine(c.stderr)).toMatch(new RegExp(`^hull: (sandbox ${id} failed to boot|container ${id}: the VM died): .+`));
      status = 'create: 1';
    } else {
      const c = await created;
      expect([c.code, c.stderr]).toEqual([0, '']);
      const s = await hull(['start', id], { root });
      expect([s.code, s.stderr]).toEqual([0, '']);
      state = await reachPhase(id, phase, fault);
      t0 = await inject(fault, id, state);
      // The monitor (the pid create reported) exits; `state` says stopped; the container's stderr has the one line.
      await pollUntil(`the monitor to exit (its log: ${log})`, () => (isAlive({ pid: state.pid }) ? undefined : true), 10_000);
      const st = JSON.parse((await hull(['state', id], { root })).stdout) as { status: string; pid: number };
      expect([st.status, st.pid]).toEqual(['stopped', 0]);
      const containerStderr = readFileSync(stdio.stderr, 'utf8');
      if (fault === 'monitor') {
        expect(containerStderr).toBe('');
      } else {
        expect(oneLine(containerStderr)).toMatch(new RegExp(`^hull: container ${id}: the VM died: `));
        expect(readFileSync(path.join(root, id, 'state.json'), 'utf8')).toContain('"exitStatus": 255');
      }
      const d = await hull(['delete', id], { root });
      expect([d.code, d.stderr]).toEqual([0, '']);
      status = fault === 'monitor' ? 'monitor killed; state stopped; delete 0' : 'monitor 255; state stopped; delete 0';
    }
    const { seconds, leaks } = await cleaned(id, state.vm, state.vmDir ?? path.join(root, id), t0);
    table.push({ fault, phase, frontEnd: 'create/start', status, seconds, leaks });
    expect(leaks).toEqual([]);
  });
});

// ---- containerd: the shim (with the same pool, through HULL_POOL_ROOT)

const IMAGE = 'docker.io/hull/busybox:latest';
const NS = 'hullfaults';

describe.runIf(ready && prerequisitesMet('faults under containerd', containerdPrerequisites()))('faults under containerd', () => {
  let ctd: PrivateContainerd | undefined;
  const ctr = (args: string[], timeoutMs = 90_000) => ctd!.ctr(args, '', timeoutMs);
  const podFor = (id: string) => podRecords().find((r) => r.containers?.some((c) => c.id === id));

  beforeAll(async () => {
    pool ??= await Pool.start(root, 2);
    ctd = await PrivateContainerd.start(NS, { env: { HULL_POOL_ROOT: root } });
    await ctd.importBusybox(IMAGE);
  }, 120_000);

  afterAll(async () => {
    await ctd?.destroy();
  });

  /** Waits for the task to stop; returns `ctr task rm`'s exit status line and the seconds until nothing is left. */
  async function ended(id: string, t0: number): Promise<{ exit: string; seconds: number; leaks: string[] }> {
    await until(`${id} to stop`, async () => ((await ctd!.taskStatus(id)) === 'STOPPED' ? true : undefined), 10_000);
    const rm = await ctr(['task', 'rm', id]);
    expect(rm.code, rm.stderr).toBe(0);
    const exit = /exit code (\d+)/.exec(rm.stderr)?.[1] ?? `? (${rm.stderr.trim()})`;
    expect((await ctr(['c', 'rm', id])).code).toBe(0);
    let leaks = ctd!.leftovers();
    while (leaks.length > 0 && Date.now() - t0 < CLEAN_WITHIN_MS) {
      await new Promise((r) => setTimeout(r, 100));
      leaks = ctd!.leftovers();
    }
    return { exit, seconds: (Date.now() - t0) / 1000, leaks };
  }

  const cases: Array<[Fault, Phase]> = [['virtiofsd', 'running'], ['vsock worker', 'running'], ['QEMU', 'exec'], ['vsock broker', 'stopping']];

  it.each(cases)('containerd: %s during %s: TaskExit 255, the shim logs why, nothing left', async (fault, phase) => {
    const id = `ctd-${fault.replace(/\W/g, '')}-${phase}`;
    await pool!.readyVms(1);
    const script = 'trap "sleep 3; exit 0" TERM; sleep 1000 & wait';
    const r = await ctr(['run', '-d', '--runtime', RUNTIME, IMAGE, id, 'sh', '-c', script]);
    expect(r.code, r.stderr).toBe(0);
    const rec = await until('the pod record', () => podFor(id));
    const state = JSON.parse(readFileSync(path.join(rec.dir, 'pod.json'), 'utf8')) as { vm: StateFile['vm'] };
    let exec: Promise<{ code: number | null; stderr: string }> | undefined;
    if (phase === 'exec') {
      exec = ctr(['task', 'exec', '--exec-id', 'x1', id, 'sleep', '1000']);
      await new Promise((res) => setTimeout(res, 1000));
    }
    if (phase === 'stopping') {
      expect((await ctr(['task', 'kill', '-s', 'SIGTERM', id])).code).toBe(0);
      await new Promise((res) => setTimeout(res, 300));
    }
    const t0 = Date.now();
    process.kill(hostPidOf(fault, state.vm, 0)!, 'SIGKILL');
    const execExit = exec ? await exec : undefined;
    const { exit, seconds, leaks } = await ended(id, t0);
    expect(exit).toBe('255');
    if (execExit) expect(execExit.code).not.toBe(0);
    const why = readFileSync(ctd!.log, 'utf8').split('\n').filter((l) => l.includes(`process ${id} stopped because the VM died: `));
    expect(why.length, `no shim log line for ${id}`).toBeGreaterThan(0);
    expect(why[0]).toMatch(REASON[fault]!);
    table.push({ fault, phase, frontEnd: 'containerd', status: `TaskExit ${exit}${execExit ? ` (exec: ctr ${execExit.code})` : ''}`, seconds, leaks });
    expect(leaks).toEqual([]);
  });

  it('containerd: virtiofsd during boot: Create fails in one line, ctr run exits 1, nothing left', async () => {
    const id = 'ctd-virtiofsd-boot';
    const run = runCtr(['run', '--rm', '--runtime', RUNTIME, '--memory-limit', String(COLD_MEMORY_LIMIT), IMAGE, id, 'true']);
    const rec = await until('a booting pod VM', () => podRecords().find((p) => p.vm.vmm && !p.containers?.length && existsSync(path.join(p.dir, 'console.log')) && readFileSync(path.join(p.dir, 'console.log')).length > 0), 60_000);
    const vm = (JSON.parse(readFileSync(path.join(rec.dir, 'pod.json'), 'utf8')) as { vm: StateFile['vm'] }).vm;
    const t0 = Date.now();
    process.kill(hostPidOf('virtiofsd', vm, 0)!, 'SIGKILL');
    const r = await run;
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toMatch(/failed to boot: its helper virtiofsd \(pid \d+\) is gone/);
    await ctr(['c', 'rm', id]);
    let leaks = ctd!.leftovers();
    while (leaks.length > 0 && Date.now() - t0 < CLEAN_WITHIN_MS) {
      await new Promise((res) => setTimeout(res, 100));
      leaks = ctd!.leftovers();
    }
    table.push({ fault: 'virtiofsd', phase: 'boot', frontEnd: 'containerd', status: 'ctr run 1 (Create failed)', seconds: (Date.now() - t0) / 1000, leaks });
    expect(leaks).toEqual([]);
  });

  function runCtr(args: string[]): Promise<{ code: number | null; stderr: string }> {
    return ctr(args).then((r) => ({ code: r.code, stderr: r.stderr }));
  }
});
