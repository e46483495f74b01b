// `hull pool serve` as the integration tests drive it (docs/pool.md): a pool process on a test's root with its JSON log
// in a file, `hull pool status` polled until the pool is in the state a case needs, and a last-resort cleanup of the
// VMs a killed pool left. Used by pool.test.ts and faults.test.ts, whose cases start in under a second on a pooled VM.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { socketDirFor } from '../../hypervisor/paths.js';
import { isAlive } from '../../hypervisor/process.js';
import type { VmProcess } from '../../hypervisor/types.js';
import type { PoolVmRecord } from '../../shim/pool/records.js';
import type { PoolStatus } from '../../shim/pool/status.js';
import { hull, hullBin, mountsUnder, processesMentioning } from './hull.js';

const POLL_MS = 200;
const READY_TIMEOUT_MS = 90_000;

/** A pooled VM as a test remembers it: its directory and its recorded processes, read before it was claimed (a VM
 *  known only from the pool's log has no record here). */
export interface PoolVm {
  id: string;
  dir: string;
  record?: PoolVmRecord;
}

export const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `hull pool serve` in the background, its stderr (the JSON log) in a file. */
export class Pool {
  private static readonly all: Pool[] = [];
  readonly logFile: string;
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  poolDir = '';

  private constructor(
    readonly root: string,
    readonly size: number,
    env: Record<string, string> = {},
  ) {
    mkdirSync(root, { recursive: true });
    this.logFile = path.join(path.dirname(root), `pool-${Pool.all.length}.log`);
    const err = openSync(this.logFile, 'a');
    this.child = spawn(hullBin, ['--root', root, '--log-format', 'json', 'pool', 'serve', '--size', String(size)], {
      stdio: ['ignore', 'ignore', err],
      env: { ...process.env, ...env },
    });
    closeSync(err);
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    Pool.all.push(this);
  }

  /** `env`: extra environment of the server (and so of the VMs it boots), e.g. HULL_MAX_MEMORY_MIB. */
  static async start(root: string, size: number, env?: Record<string, string>): Promise<Pool> {
    const pool = new Pool(root, size, env);
    await pool.waitFor('the pool to serve', (s) => s.serving?.pid === pool.child.pid);
    return pool;
  }

  get pid(): number {
    return this.child.pid!;
  }

  async status(): Promise<PoolStatus> {
    const r = await hull(['pool', 'status', '--format', 'json'], { root: this.root });
    if (r.code !== 0) throw new Error(`hull pool status failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout) as PoolStatus;
  }

  /** Polls `hull pool status` every 200 ms until `ok` holds, for at most `timeoutMs`. */
  async waitFor(what: string, ok: (s: PoolStatus) => boolean, timeoutMs = READY_TIMEOUT_MS): Promise<PoolStatus> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`the pool exited (${this.child.exitCode ?? this.child.signalCode}) while waiting for ${what}:\n${this.logTail()}`);
      }
      const s = await this.status();
      this.poolDir ||= s.poolDir;
      if (ok(s)) return s;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last status ${JSON.stringify(s)}\n${this.logTail()}`);
      await delay(POLL_MS);
    }
  }

  /** Waits for at least `n` ready VMs; returns them as they are on record. */
  async readyVms(n: number): Promise<Array<Required<PoolVm>>> {
    const t0 = Date.now();
    const s = await this.waitFor(`${n} ready VM(s)`, (st) => st.ready >= n);
    const waited = Date.now() - t0;
    if (waited > 1000) console.log(`  waited ${waited} ms for ${n} ready pooled VM(s)`);
    return s.vms.filter((v) => v.state === 'ready').map((v) => vmOnRecord(s.poolDir, v.id));
  }

  log(): Array<Record<string, unknown>> {
    return jsonLines(this.logFile);
  }

  /** Every VM this pool began to boot, from its log. */
  booted(): PoolVm[] {
    return this.log()
      .filter((l) => l.msg === 'booting a VM')
      .map((l) => ({ id: String(l.vm), dir: path.join(this.poolDir, 'vms', String(l.vm)) }));
  }

  logTail(): string {
    return readFileSync(this.logFile, 'utf8').split('\n').slice(-15).join('\n');
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 40_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)));
    const exit = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (exit === 'timeout') {
      this.child.kill('SIGKILL');
      throw new Error(`the pool did not exit within ${timeoutMs} ms of ${signal}:\n${this.logTail()}`);
    }
    return exit;
  }

  /** Every pool this file started, stopped (SIGTERM, then SIGKILL) whatever happened, and what a killed one left
   *  removed: its VMs' processes (recorded, or found by the VM's name and socket dir), mounts, and directories. */
  static async stopAll(): Promise<void> {
    for (const pool of Pool.all) await pool.stop().catch(() => undefined);
    for (const pool of Pool.all) if (pool.poolDir) scrubPool(pool.poolDir, pool.booted().map((vm) => vm.id));
  }
}

/** Last-resort cleanup after a failure: ends every process of the pool's VMs and removes its directory. */
export function scrubPool(pool: string, booted: string[]): void {
  const vms = path.join(pool, 'vms');
  const ids = new Set([...booted, ...(existsSync(vms) ? readdirSync(vms) : [])]);
  for (const id of ids) {
    const dir = path.join(vms, id);
    try {
      const record = JSON.parse(readFileSync(path.join(dir, 'pool-vm.json'), 'utf8')) as PoolVmRecord;
      for (const p of recordedProcesses(record)) if (isAlive(p)) process.kill(p.pid, 'SIGKILL');
    } catch {
      // no record
    }
    for (const line of [...processesMentioning(socketDirFor(dir)), ...processesMentioning(`hull-${id},`)]) {
      try {
        process.kill(Number(line.split(':')[0]), 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    for (const m of mountsUnder(dir).reverse()) spawnSync('umount', ['-l', m]);
    rmSync(socketDirFor(dir), { recursive: true, force: true });
  }
  if (mountsUnder(pool).length === 0) rmSync(pool, { recursive: true, force: true });
}

/** What is left of a pooled VM: recorded processes still running, processes naming it (QEMU's `-name hull-<id>`,
 *  virtiofsd's share, the vsock backend's socket dir), mounts in it, its directory and its socket directory. */
export function vmLeftovers(vm: PoolVm): string[] {
  const sockets = socketDirFor(vm.dir);
  return [
    ...(vm.record ? recordedProcesses(vm.record) : []).filter((p) => isAlive(p)).map((p) => `recorded process ${p.pid} runs`),
    ...processesMentioning(vm.dir),
    ...processesMentioning(sockets),
    ...processesMentioning(`hull-${vm.id},`),
    ...mountsUnder(vm.dir).map((m) => `mount ${m}`),
    ...(existsSync(vm.dir) ? [`directory ${vm.dir}`] : []),
    ...(existsSync(sockets) ? [`socket directory ${sockets}`] : []),
  ];
}

export function vmOnRecord(pool: string, id: string): Required<PoolVm> {
  const dir = path.join(pool, 'vms', id);
  return { id, dir, record: JSON.parse(readFileSync(path.join(dir, 'pool-vm.json'), 'utf8')) as PoolVmRecord };
}

export const recordedProcesses = (r: PoolVmRecord): VmProcess[] => [...(r.vm.vmm ? [r.vm.vmm] : []), ...(r.vm.helpers ?? [])];

export function jsonLines(file: string): Array<Record<string, unknown>> {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
}
