// `hull pool serve`: keeps `size` VMs booted and ready for the sandboxes of one root, in the foreground (systemd runs
// it), until SIGTERM or SIGINT drains it. layout.ts fixes the directory and claim contract with the claimers.
//
// A VM goes booting → ready → claimed, once: the pool boots it in <poolDir>/vms/<id>/ with no NIC, marks it ready
// once its agent answered, and then lets go of its control connections (QEMU serves one QMP client; the claimer
// reattaches). When a claim file appears the VM is the claimer's: the pool forgets it — no kill, no removal, whatever
// the VM does later (the pool still reaps QEMU, its child; the driver's own teardown of sockets and vmm.json when
// QEMU exits is the same one the claimer's teardown runs) — and boots a replacement. The pool takes a VM back only by
// claiming it itself, so it and a claimer can never both have one: to replace a ready VM that died, to drop VMs of a
// stale guest image, and to drain.
//
// What a dead pool (kill -9) left is cleaned, not adopted: its VMs lost the process that copied their console (the
// pipe's reader died with it, so their console.log stays silent) and the parent that saw them exit; a sandbox handed
// such a VM could not be diagnosed from its console. A new VM costs one boot. VMs claimed from the dead pool belong to
// their claimers and are left alone while those live; a claim whose claimer died is an orphan, cleaned like the rest.
import { existsSync, mkdirSync, chmodSync, rmdirSync } from 'node:fs';
import os from 'node:os';
import type { Logger } from 'pino';
import { chooseAcceleration } from '../../hypervisor/acceleration.js';
import { configuredAccel } from '../config/values.js';
import { killRecordedVm } from '../../hypervisor/registry.js';
import type { Acceleration, Hypervisor, VmExit } from '../../hypervisor/types.js';
import { oneLine } from '../errors.js';
import { findGuestAssets } from '../sandbox/guest-assets.js';
import { directVmFactory, type BootedVm, type VmFactory } from '../sandbox/vm-factory.js';
import type { VmSize } from '../sandbox/vm-sizing.js';
import { takeVm, vmAlive } from './claim.js';
import { sweepDeadTemps } from './exclusive-file.js';
import { claimPath, newPooledNics, newVmId, POOL_DIR_MODE, poolDir, pooledVmDir, vmSharedDir, vmsDir } from './layout.js';
import { sameProcess, selfRef, writePoolVm, type PoolVmRecord } from './records.js';
import { claimOwner, scanPool, type PoolVmEntry } from './scan.js';
import { acquireServeLock, releaseServeLock } from './serve-lock.js';
import { BOOT_NICE, mayBootNow, READY_NICE, setVmNice } from './boot-priority.js';
import { discardVmDir, powerOff } from './vm-cleanup.js';

export interface PoolServeOptions {
  root: string;
  /** Ready VMs to keep. */
  size: number;
  vmSize: VmSize;
  /** NICs per VM, for sandboxes with a pod network (0: sandboxes with interfaces boot cold). */
  nics: number;
  logger: Logger;
  /** Where VMs come from; default: booted through the driver registry. */
  vms?: VmFactory;
  /** How often claims, deaths and leftovers are looked for. Default 200 ms. */
  pollMs?: number;
}

/** Boots at once: one per two host CPUs, at most 2 (boots under TCG each want a whole CPU). */
const MAX_BOOTING = Math.max(1, Math.min(2, Math.floor(os.availableParallelism() / 2)));
/** Checks that need not run every poll: helper liveness, the guest image, leftovers and orphans. */
const SLOW_CHECK_MS = 1_000;
/** How long a VM still booting may finish before the pool kills it to power it off. */
const BOOT_FINISH_MS = 10_000;
/** Boot failures back off from 1 s to this. */
const MAX_BACKOFF_MS = 30_000;
/** A leftover that could not be removed is tried again after this. */
const DISCARD_RETRY_MS = 30_000;

interface PooledVm {
  id: string;
  dir: string;
  record: PoolVmRecord;
  /** Settles when the boot has ended: the booted VM, or undefined when it failed (the factory stopped it). */
  booting: Promise<BootedVm | undefined>;
  hypervisor?: Hypervisor;
  exited: boolean;
  /** Set once the pool takes the VM back (it holds the claim) to power it off. */
  retiring?: Promise<void>;
}

/** Serves the pool of `options.root` until SIGTERM or SIGINT; resolves with the exit code once drained. */
export async function servePool(options: PoolServeOptions): Promise<number> {
  return new PoolServer(options).run();
}

class PoolServer {
  private readonly pool: string;
  private readonly log: Logger;
  private readonly vms: VmFactory;
  /** VMs this process booted and still owns (booting, ready, or being powered off). */
  private readonly tracked = new Map<string, PooledVm>();
  /** Leftovers and orphans being removed, by id; and when a failed removal may be tried again. */
  private readonly discarding = new Map<string, Promise<void>>();
  private readonly retryAt = new Map<string, number>();
  private image: string;
  private readonly accel: Acceleration;
  private draining = false;
  private failures = 0;
  private nextBootAt = 0;
  /** When a claim was last noticed: the replacement's boot waits a moment while VMs are still ready (mayBootNow). */
  private lastClaimAt = 0;
  private lastSlowCheck = 0;
  /** Errors while draining: the exit code says whether everything was left clean. */
  private drainErrors = 0;
  private stop!: (signal: NodeJS.Signals) => void;
  private readonly stopped = new Promise<NodeJS.Signals>((resolve) => (this.stop = resolve));

  constructor(private readonly options: PoolServeOptions) {
    this.pool = poolDir(options.root);
    this.log = options.logger.child({ component: 'pool' });
    this.vms = options.vms ?? directVmFactory();
    // Both fail here, before anything exists, when there is no guest image or KVM was demanded and is missing.
    this.image = findGuestAssets().hash;
    this.accel = chooseAcceleration(configuredAccel().value).accel;
  }

  async run(): Promise<number> {
    const { root, size, vmSize } = this.options;
    mkdirSync(this.pool, { recursive: true, mode: POOL_DIR_MODE });
    chmodSync(this.pool, POOL_DIR_MODE);
    try {
      const settings = { size, vcpus: vmSize.vcpus, memoryMiB: vmSize.memoryMiB, nics: this.options.nics, startedAt: new Date().toISOString() };
      acquireServeLock(this.pool, root, settings);
    } catch (err) {
      removeIfEmpty(this.pool);
      throw err;
    }
    const onSignal = (signal: NodeJS.Signals): void => {
      if (this.draining) this.log.info({ signal }, 'already draining');
      else this.stop(signal);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    // Also keeps the event loop alive until the very end: the VMs' processes are detached and hold nothing.
    const timer = setInterval(() => this.tick(), this.options.pollMs ?? 200);
    try {
      mkdirSync(vmsDir(this.pool), { recursive: true, mode: POOL_DIR_MODE });
      this.log.info({ root, pool: this.pool, size, ...vmSize, nics: this.options.nics, image: this.image, accel: this.accel, maxBooting: MAX_BOOTING }, 'pool serving');
      this.reapUntracked();
      const signal = await this.stopped;
      await this.drain(signal);
      return this.drainErrors === 0 ? 0 : 1;
    } finally {
      clearInterval(timer);
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      releaseServeLock(this.pool);
      removeIfEmpty(vmsDir(this.pool));
      removeIfEmpty(this.pool);
    }
  }

  private tick(): void {
    if (this.draining) return;
    try {
      this.noticeClaims();
      if (Date.now() - this.lastSlowCheck >= SLOW_CHECK_MS) {
        this.lastSlowCheck = Date.now();
        this.checkImage();
        this.checkHealth();
        this.reapUntracked();
      }
      this.refill();
    } catch (err) {
      this.log.error({ err: oneLine(err) }, 'pool check failed');
    }
  }

  /** A claim file on a VM of ours means a claimer took it: it is the claimer's from now on. */
  private noticeClaims(): void {
    for (const vm of this.tracked.values()) {
      if (!vm.retiring && existsSync(claimPath(vm.dir))) this.forget(vm);
    }
  }

  private forget(vm: PooledVm): void {
    this.tracked.delete(vm.id);
    this.lastClaimAt = Date.now();
    this.log.info({ vm: vm.id }, 'VM claimed');
  }

  private refill(): void {
    const live = [...this.tracked.values()].filter((vm) => !vm.retiring);
    let booting = live.filter((vm) => vm.record.state === 'booting').length;
    let missing = this.options.size - live.length;
    const ready = live.length - booting;
    if (!mayBootNow(ready, Date.now(), this.lastClaimAt)) return;
    while (missing > 0 && booting < MAX_BOOTING && Date.now() >= this.nextBootAt) {
      this.startBoot();
      missing--;
      booting++;
    }
  }

  private startBoot(): void {
    const id = newVmId();
    const { vcpus, memoryMiB, maxMemoryMiB } = this.options.vmSize;
    const nics = newPooledNics(this.options.nics);
    const vm: PooledVm = {
      id,
      dir: pooledVmDir(this.pool, id),
      record: {
        version: 1,
        id,
        state: 'booting',
        shape: { vcpus, memoryMiB, ...(maxMemoryMiB === undefined ? {} : { maxMemoryMiB }), image: this.image, accel: this.accel, nics: nics.length },
        nics,
        vm: {},
        pool: selfRef(),
        createdAt: new Date().toISOString(),
      },
      booting: Promise.resolve(undefined),
      exited: false,
    };
    this.tracked.set(id, vm); // before its directory exists, so the reaper never takes it for a leftover
    vm.booting = this.boot(vm);
  }

  private async boot(vm: PooledVm): Promise<BootedVm | undefined> {
    const log = this.log.child({ vm: vm.id });
    const started = Date.now();
    let booted: BootedVm;
    try {
      mkdirSync(vm.dir, { mode: POOL_DIR_MODE });
      mkdirSync(vmSharedDir(vm.dir));
      writePoolVm(vm.dir, vm.record); // on record before any process exists
      log.info('booting a VM');
      booted = await this.vms.boot({
        id: vm.id,
        dir: vm.dir,
        sharedDir: vmSharedDir(vm.dir),
        size: this.options.vmSize,
        logger: log,
        detached: true,
        virtiofsdSandbox: 'chroot', // a claimer shares its containers into the running VM's share
        spareNics: vm.record.nics, // no MTU: up to the claimer's pod interface
        onProcesses: (processes) => {
          vm.record.vm = processes;
          writePoolVm(vm.dir, vm.record);
          setVmNice(processes, BOOT_NICE);
        },
        prepareShare: () => undefined, // the share exists already, and stays empty until a claimer fills it
      });
    } catch (err) {
      this.failures++;
      const backoff = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (this.failures - 1));
      this.nextBootAt = Date.now() + backoff;
      log.error({ err: oneLine(err), retryInMs: backoff }, 'pooled VM failed to boot');
      if (!vm.retiring) {
        this.tracked.delete(vm.id);
        this.discard({ id: vm.id, dir: vm.dir, record: vm.record, claimed: false }, 'it failed to boot');
      }
      return undefined;
    }
    this.failures = 0;
    const { hypervisor } = booted;
    vm.hypervisor = hypervisor;
    void hypervisor.wait().then((exit) => {
      vm.exited = true;
      this.onExit(vm, exit);
    });
    // Parked: nothing of the pool stays connected (QEMU serves one QMP client at a time), so a claimer's reattach
    // gets QMP and the agent at once.
    booted.agent.close();
    hypervisor.release();
    if (vm.retiring) return booted; // retire() powers it off
    try {
      vm.record.state = 'ready';
      vm.record.readyAt = new Date().toISOString();
      vm.record.shape.accel = hypervisor.accel.accel;
      vm.record.vm = hypervisor.processes();
      setVmNice(vm.record.vm, READY_NICE); // before it can be claimed: the sandbox runs at normal priority
      writePoolVm(vm.dir, vm.record);
      log.info({ ms: Date.now() - started }, 'VM ready');
    } catch (err) {
      log.error({ err: oneLine(err) }, 'marking the VM ready failed');
      void this.retire(vm, 'it could not be marked ready');
    }
    return booted;
  }

  private onExit(vm: PooledVm, exit: VmExit): void {
    if (this.tracked.get(vm.id) !== vm || vm.retiring) return; // claimed (the claimer's), or being powered off
    if (existsSync(claimPath(vm.dir))) {
      this.forget(vm);
      return;
    }
    void this.retire(vm, `its VMM exited (${exit.reason}${exit.detail ? `: ${exit.detail}` : ''})`);
  }

  /** Replaces ready VMs that lost a helper (the VMM's own exit is seen at once, by onExit). */
  private checkHealth(): void {
    for (const vm of this.tracked.values()) {
      if (vm.retiring || vm.record.state !== 'ready') continue;
      if (!vmAlive(vm.record.vm)) void this.retire(vm, 'a process of it died');
      else sweepDeadTemps(vm.dir); // a claimer killed before its claim landed left its temp file
    }
  }

  /** A rebuilt guest image makes the VMs booted from the old one useless: nobody asks for it any more. */
  private checkImage(): void {
    let image: string;
    try {
      image = findGuestAssets().hash;
    } catch (err) {
      this.log.warn({ err: oneLine(err) }, 'the guest image cannot be read (being rebuilt?); keeping the VMs');
      return;
    }
    if (image === this.image) return;
    this.log.info({ from: this.image, to: image }, 'the guest image changed: replacing the VMs');
    this.image = image;
    for (const vm of this.tracked.values()) {
      if (vm.record.shape.image !== image) void this.retire(vm, 'its guest image is outdated');
    }
  }

  /**
   * Takes a VM of ours back to power it off: claimed first, so no claimer can take it meanwhile (when one was
   * quicker, the VM is the claimer's). Removes it from `tracked` when done; a VM that could not be removed stays
   * claimed by this process, and the reaper tries again.
   */
  private retire(vm: PooledVm, why: string): Promise<void> {
    vm.retiring ??= (async () => {
      const log = this.log.child({ vm: vm.id });
      try {
        if (!takeVm(vm.dir)) {
          if (existsSync(claimPath(vm.dir))) {
            this.forget(vm); // a claimer was quicker: the VM is its
          } else {
            // Its directory is gone (a claimer's teardown removes it after ending the VM): end what is left, if any.
            this.tracked.delete(vm.id);
            await killRecordedVm(vm.record.vm);
          }
          return;
        }
        log.info({ why }, 'taking a VM back to remove it');
        let booted = await settledWithin(vm.booting, BOOT_FINISH_MS);
        if (booted === 'timeout') {
          log.warn({ ms: BOOT_FINISH_MS }, 'the VM is still booting; killing it');
          await killRecordedVm(vm.record.vm);
          booted = await vm.booting;
        }
        if (booted && !vm.exited) await powerOff(booted.hypervisor, booted.dir, log);
        await discardVmDir(vm.dir, vm.record);
        log.info('VM removed');
      } catch (err) {
        if (this.draining) this.drainErrors++;
        log.error({ err: oneLine(err) }, 'removing a VM failed; trying again later');
        this.retryAt.set(vm.id, Date.now() + DISCARD_RETRY_MS);
      } finally {
        this.tracked.delete(vm.id);
      }
    })();
    return vm.retiring;
  }

  /**
   * Cleans what no one owns: VMs a dead pool left (claimed first, so no claimer takes them), VMs whose claimer died or
   * gave them up, and our own that could not be removed before. VMs of live claimers are never touched.
   */
  private reapUntracked(): void {
    for (const entry of scanPool(this.pool)) {
      if (this.tracked.has(entry.id) || this.discarding.has(entry.id)) continue;
      if ((this.retryAt.get(entry.id) ?? 0) > Date.now()) continue;
      const why = this.leftoverReason(entry);
      if (why) this.discard(entry, why);
    }
  }

  /** Why the pool may remove an untracked VM, or undefined when it must leave it alone. */
  private leftoverReason(entry: PoolVmEntry): string | undefined {
    switch (claimOwner(entry)) {
      case 'unclaimed': {
        if (!takeVm(entry.dir)) return undefined; // claimed meanwhile: looked at again next time
        const pool = entry.record?.pool;
        if (!entry.record) return `it has no readable record (${entry.recordError ?? 'none written'})`;
        return pool && sameProcess(pool, selfRef()) ? 'it is ours and lost' : `an earlier pool (pid ${entry.record.pool.pid}) left it ${entry.record.state}`;
      }
      case 'orphaned':
        return entry.claim?.released ? 'its claimer gave it up' : `its claimer (pid ${entry.claim?.pid}) died`;
      case 'in-use':
        // Our own claim on a VM we no longer track: a removal that failed before.
        return entry.claim && sameProcess(entry.claim, selfRef()) ? 'an earlier removal of it failed' : undefined;
    }
  }

  private discard(entry: PoolVmEntry, why: string): void {
    const log = this.log.child({ vm: entry.id });
    log.info({ why }, 'removing a VM');
    const done = discardVmDir(entry.dir, entry.record)
      .then(() => {
        this.retryAt.delete(entry.id);
        log.info('VM removed');
      })
      .catch((err: unknown) => {
        if (this.draining) this.drainErrors++;
        this.retryAt.set(entry.id, Date.now() + DISCARD_RETRY_MS);
        log.error({ err: oneLine(err) }, 'removing a VM failed; trying again later');
      })
      .finally(() => this.discarding.delete(entry.id));
    this.discarding.set(entry.id, done);
  }

  /** Powers off every VM the pool holds and removes orphans; VMs of live claimers stay. */
  private async drain(signal: NodeJS.Signals): Promise<void> {
    this.draining = true;
    this.log.info({ signal, vms: this.tracked.size }, 'draining the pool');
    this.noticeClaims(); // a VM claimed just now is the claimer's
    await Promise.all([...this.tracked.values()].map((vm) => this.retire(vm, 'the pool is stopping')));
    await Promise.all(this.discarding.values());
    this.retryAt.clear();
    this.reapUntracked();
    await Promise.all(this.discarding.values());
    const left = scanPool(this.pool).filter((e) => claimOwner(e) === 'in-use');
    this.log.info({ claimedLeft: left.map((e) => e.id), errors: this.drainErrors }, 'pool drained');
  }
}

/** `promise`'s value, or 'timeout' after `ms`; leaves no timer behind. */
async function settledWithin<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Removes a directory when it is empty; one that still holds something (claimed VMs) stays. */
function removeIfEmpty(dir: string): void {
  try {
    rmdirSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOENT') throw err;
  }
}
