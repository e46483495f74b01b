// Configures the guest's network from what the host read in the pod's network namespace (SetupNetwork): each
// virtio-net NIC, found by the MAC the host gave it (a pooled VM's: the pool's, replaced by the interface's), gets the pod interface's name, MTU and addresses; then routes
// (on-link first) and static neighbours. The pod's containers share this network. Busybox `ip` and `arp` do the
// work, in one busybox sh script whose every word is quoted.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { NetRoute, SetupNetworkRequest } from '../protocol/agent-types.js';
import { InternalError, SpecError } from './errors.js';
import { checkNetworkRequest } from './network-check.js';

export interface NetworkOptions {
  log: Logger;
  /** Runs a busybox sh script; rejects with what failed. Default: init's helper shell (helperScript). */
  runScript?: (script: string) => Promise<void>;
  sysClassNet?: string;
  /** How long a NIC may take to appear after boot. */
  nicWaitMs?: number;
}

/** One step of the configuration: a command, or a value written to a /proc/sys file. */
export type NetworkStep = { argv: string[] } | { write: string; value: string };

const BUSYBOX = '/bin/busybox';

/** Every value reaches sh between single quotes (the checks allow none in them anyway). */
function quote(word: string): string {
  return `'${word.replaceAll("'", "'\\''")}'`;
}

/**
 * One script for all steps: under TCG every process the agent (a large Node process) spawns costs tens of ms, a
 * fork of busybox sh a few. Each step stops the script with its own words on failure.
 */
export function renderScript(steps: NetworkStep[]): string {
  return steps
    .map((step) => {
      const line = 'argv' in step ? step.argv.map(quote).join(' ') : `echo ${quote(step.value)} > ${quote(step.write)}`;
      return `${line} || { echo ${quote(`failed: ${'argv' in step ? step.argv.join(' ') : `write ${step.write}`}`)} >&2; exit 1; }`;
    })
    .join('\n');
}

/** The FIFOs of the helper shell that guest-image/init starts when the VM has a NIC. */
export const NET_HELPER = { script: '/run/hull/net.script', status: '/run/hull/net.status', err: '/run/hull/net.err' };
const HELPER_WAIT_MS = 30_000;

/**
 * Hands the script to init's helper shell (no fork of this process); without one (an older image), busybox sh is
 * spawned. Opening a FIFO blocks until the other side opens it: libuv does that on its thread pool.
 */
export async function helperScript(script: string, helper = NET_HELPER): Promise<void> {
  if (!existsSync(helper.script)) return busyboxScript(script);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new InternalError(`the guest's network helper did not answer within ${HELPER_WAIT_MS / 1000} s`)), HELPER_WAIT_MS);
  });
  try {
    const status = await Promise.race([
      (async () => {
        await writeFile(helper.script, script);
        return (await readFile(helper.status, 'utf8')).trim();
      })(),
      timeout,
    ]);
    if (status !== '0') {
      const err = await readFile(helper.err, 'utf8').catch(() => '');
      throw new InternalError(`configuring the guest network: ${err.trim().split('\n').slice(-2).join('; ') || `exit status ${status}`}`);
    }
  } finally {
    clearTimeout(timer);
  }
}

function busyboxScript(script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(BUSYBOX, ['sh', '-c', script], { timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err) reject(new InternalError(`configuring the guest network: ${String(stderr).trim().split('\n').slice(-2).join('; ') || err.message}`));
      else resolve();
    });
  });
}

export class GuestNetwork {
  private configured = false;
  /** Settles when the script has run; never rejects (the failure is kept in `failure`). */
  private done: Promise<void> = Promise.resolve();
  private failure: Error | undefined;
  private readonly runScript: (script: string) => Promise<void>;
  private readonly sysClassNet: string;

  constructor(private readonly opts: NetworkOptions) {
    this.runScript = opts.runScript ?? helperScript;
    this.sysClassNet = opts.sysClassNet ?? '/sys/class/net';
  }

  /**
   * Checks the request and finds the NICs (errors come back at once), then configures in the background and returns:
   * the host goes on creating the first container meanwhile. Under TCG the link changes take a few hundred ms of
   * guest kernel time; `ready()` is what StartContainer waits for, so no workload ever runs before its network.
   */
  async setup(raw: SetupNetworkRequest): Promise<void> {
    if (this.configured) throw new SpecError('the guest network is configured already');
    const req = checkNetworkRequest(raw);
    this.configured = true;
    const started = Date.now();
    const current = await this.findNics(req.interfaces.map((n) => n.guestMac ?? n.mac));
    const found = Date.now();
    for (const nb of req.neighbors.filter((n) => n.family === 6)) {
      this.opts.log.warn({ neighbor: nb.address }, 'static IPv6 neighbours are not set in the guest (busybox ip has no neigh add)');
    }
    this.done = this.runScript(renderScript(networkSteps(req, current))).then(
      () => {
        const log = { interfaces: req.interfaces.map((n) => n.name), routes: req.routes.length, findMs: found - started, scriptMs: Date.now() - found };
        this.opts.log.info(log, 'guest network configured');
      },
      (err: unknown) => {
        this.failure = err instanceof Error ? err : new InternalError(String(err));
        this.opts.log.error({ err: this.failure.message }, 'configuring the guest network failed');
      },
    );
  }

  /** Resolves once the network SetupNetwork asked for is configured (at once if none was); rejects if that failed. */
  async ready(): Promise<void> {
    await this.done;
    if (this.failure) throw this.failure;
  }

  /** The guest's NICs by MAC (name and MTU), waiting for NICs the kernel has not registered yet. */
  private async findNics(macs: string[]): Promise<Map<string, GuestNic>> {
    const deadline = Date.now() + (this.opts.nicWaitMs ?? 5000);
    for (;;) {
      const byMac = new Map<string, GuestNic>();
      for (const name of readdirSync(this.sysClassNet)) {
        try {
          const read = (f: string): string => readFileSync(path.join(this.sysClassNet, name, f), 'utf8').trim();
          byMac.set(read('address').toLowerCase(), { name, mtu: Number(read('mtu')) });
        } catch {
          // a device that went away while listing
        }
      }
      const missing = macs.filter((m) => !byMac.has(m));
      if (missing.length === 0) return byMac;
      if (Date.now() > deadline) throw new SpecError(`no guest NIC has MAC ${missing.join(', ')} (is virtio_net in the guest image?)`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

export interface GuestNic {
  name: string;
  mtu: number;
}

/**
 * The steps for a checked request, given the guest's NICs by MAC. Under TCG each link change costs tens of ms in the
 * guest kernel, so only what differs is changed: a NIC already named as its pod interface (the usual eth0) is not
 * renamed, an MTU that virtio-net's host_mtu already set is not set again. Renames go through temporary names (a NIC
 * the kernel named eth0 may have to become eth1 while another becomes eth0). Then per interface up and addresses,
 * then routes (on-link first, as the host ordered them) and static IPv4 neighbours.
 */
export function networkSteps(req: SetupNetworkRequest, nicByMac: Map<string, GuestNic>): NetworkStep[] {
  const steps: NetworkStep[] = [];
  const nics = req.interfaces.map((n) => ({ want: n, nic: nicByMac.get(n.guestMac ?? n.mac)! }));
  // A pooled VM's NIC has the pool's MAC: it takes the pod interface's while down (QEMU learns it over the control
  // queue and filters on it), before anything derives an address from it.
  for (const { want, nic } of nics) {
    if (want.guestMac !== undefined) steps.push({ argv: ['ip', 'link', 'set', 'dev', nic.name, 'address', want.mac] });
  }
  const renamed = nics.filter(({ want, nic }) => want.name !== nic.name);
  renamed.forEach(({ nic }, i) => {
    steps.push({ argv: ['ip', 'link', 'set', 'dev', nic.name, 'down'] });
    steps.push({ argv: ['ip', 'link', 'set', 'dev', nic.name, 'name', `hullnic${i}`] });
  });
  renamed.forEach(({ want }, i) => steps.push({ argv: ['ip', 'link', 'set', 'dev', `hullnic${i}`, 'name', want.name] }));
  for (const { want: n, nic } of nics) {
    // The pod interface did duplicate address detection for these addresses on the same link already.
    if (n.addresses.some((a) => a.family === 6)) steps.push({ write: `/proc/sys/net/ipv6/conf/${n.name}/accept_dad`, value: '0' });
    steps.push({ argv: ['ip', 'link', 'set', 'dev', n.name, ...(nic.mtu === n.mtu ? [] : ['mtu', String(n.mtu)]), 'up'] });
    for (const a of n.addresses) steps.push({ argv: ['ip', 'addr', 'add', `${a.address}/${a.prefixLength}`, 'dev', n.name] });
  }
  for (const r of req.routes) steps.push({ argv: routeArgv(r) });
  for (const nb of req.neighbors) if (nb.family === 4) steps.push({ argv: ['arp', '-i', nb.device, '-s', nb.address, nb.mac] });
  return steps;
}

export function routeArgv(r: NetRoute): string[] {
  const argv = ['ip', '-f', r.family === 6 ? 'inet6' : 'inet', 'route', 'add', r.destination];
  if (r.gateway) argv.push('via', r.gateway);
  argv.push('dev', r.device);
  if (r.scope) argv.push('scope', r.scope);
  if (r.source) argv.push('src', r.source);
  if (r.metric) argv.push('metric', String(r.metric));
  return argv;
}
