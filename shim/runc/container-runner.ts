// Runs one container from bundle to exit: the body of `hull run` and of the detached monitor that `hull create`
// leaves behind. The process running this stands for the container on the host: it holds the container's stdio
// and exits with its status, which is what conmon and runc users expect of the pid in --pid-file.
import { existsSync } from 'node:fs';
import os from 'node:os';
import type { Logger } from 'pino';
import { loadBundle } from '../bundle.js';
import { procStartTime } from '../../hypervisor/process.js';
import { alreadyExists, oneLine } from '../errors.js';
import { VM_DIED_STATUS } from '../exit-status.js';
import { pidFromGuest } from '../guest-values.js';
import { Sandbox } from '../sandbox/sandbox.js';
import { planHostBinds } from '../sandbox/share-mounts.js';
import { planHostCgroup } from '../sandbox/cgroups/host-cgroup.js';
import { explainVmLoss, superviseProcess } from '../sandbox/supervisor.js';
import { directVmFactory, type VmFactory } from '../sandbox/vm-factory.js';
import { pooledVmFactory } from '../pool/pooled-vm-factory.js';
import {
  createSandboxDir,
  moveStatus,
  readStateQuietly,
  removeSandboxDir,
  sandboxDir,
  stateRecordStore,
  updateState,
  writeState,
  type ContainerState,
} from './state.js';
import { forwardSignals } from './signals.js';
import { attachStdio, flush, type AttachedStdio } from '../sandbox/stdio-relay.js';
import { attachHostTerminal } from './terminal.js';
import { vmSizeFor } from '../sandbox/vm-sizing.js';
import { hooksOf } from '../hooks.js';
import { runCreateHooks, runPoststartHooks, runPoststopHooks, startCallOptions } from './lifecycle-hooks.js';
import { enterNetns, unshareNetns } from '../../native/addon/index.js';
import { requireNetns, specNetwork, type SpecNetwork } from '../sandbox/network/spec-netns.js';

export interface RunOptions {
  root: string;
  id: string;
  bundleDir: string;
  logger: Logger;
  /** run: start right away. create: wait for `hull start`. */
  startImmediately: boolean;
  detached: boolean;
  /** Where the VM comes from; default: a new one through the driver registry (tests pass a fake). */
  vms?: VmFactory;
  /** --systemd-cgroup: linux.cgroupsPath is systemd's `slice:prefix:name` (cgroups/path.ts). */
  systemdCgroup?: boolean;
  /** No host cgroup (tests with a fake VM); default: the one linux.cgroupsPath names. */
  noHostCgroup?: boolean;
  /** Puts this process into the container's network namespace and returns its path; default joinNetwork below. */
  joinNetwork?: (network: SpecNetwork) => string;
  /** Told once the container is created (or failed to be), before it starts. */
  onCreated: (result: { ok: true; pid: number } | { ok: false; error: Error }) => void;
}

export { VM_DIED_STATUS };

export async function runContainer(options: RunOptions): Promise<number> {
  const { root, id, logger } = options;
  const bundle = loadBundle(options.bundleDir, { requireProcess: true });
  // Checked before anything exists, so a refused bind source leaves nothing behind.
  const hostBinds = planHostBinds(bundle.specJson, id, bundle.dir);
  // A duplicate id is refused as such, before its cgroup (the first container's, in use) is.
  if (existsSync(sandboxDir(root, id))) throw alreadyExists(`container ${id} already exists`);
  const cgroup = options.noHostCgroup ? undefined : planHostCgroup(bundle.spec, id, { systemd: options.systemdCgroup === true });
  const network = specNetwork(bundle.spec);
  if (network.kind === 'path') requireNetns(network.path);
  // This process stands for the container, so it lives in the container's network namespace: hooks that enter
  // /proc/<pid>/ns/net (Docker's prestart hook) find it there, and QEMU, spawned from here, starts there.
  const netnsPath = (options.joinNetwork ?? joinNetwork)(network);
  const dir = createSandboxDir(root, id);
  const state: ContainerState = {
    ociVersion: bundle.spec.ociVersion,
    id,
    bundle: bundle.dir,
    rootfs: bundle.rootfs,
    status: 'creating',
    pid: process.pid,
    pidStartTime: procStartTime(process.pid),
    annotations: bundle.spec.annotations ?? {},
    created: new Date().toISOString(),
    owner: os.userInfo().username,
    vm: {},
    mounts: [],
  };
  writeState(root, state);

  // A ready VM of `hull pool serve` on this root when one fits (docs/pool.md), else a new one.
  const vms = options.vms ?? pooledVmFactory(root, directVmFactory());
  const sandbox = new Sandbox({ id, dir, logger, record: stateRecordStore(root, id), vms });
  try {
    // OCI hooks prestart, createRuntime, createContainer (docs/hooks.md): on the host, after the state is written (they
    // read it: pid is this process) and before anything is shared or booted.
    await runCreateHooks(root, id, bundle.spec, logger);
    // Before boot: this VM's virtiofsd pins its view of the share when it starts. The network is mirrored at boot,
    // after the create-time hooks, which may have put interfaces into the namespace (no NIC hotplug).
    const rootfsPath = sandbox.addContainer(id, bundle.rootfs, hostBinds.binds);
    // A namespace made here holds only loopback unless a create-time hook put something in: nothing to read then.
    const mirrored = network.kind === 'new' && !hasCreateTimeHooks(bundle.spec) ? undefined : netnsPath;
    await sandbox.boot({
      size: vmSizeFor(bundle.spec),
      detached: options.detached,
      ...(mirrored ? { netnsPath: mirrored } : {}),
      ...(cgroup ? { cgroup } : {}),
    });
    const { pid } = await sandbox.agent.createContainer({
      containerId: id,
      specJson: hostBinds.specJson,
      rootfsPath,
      stdin: true,
      bundle: bundle.dir,
    });
    updateState(root, id, (s) => {
      moveStatus(s, 'created');
      s.guestPid = pidFromGuest(pid);
    });
    logger.info({ guestPid: pid }, 'container created');
  } catch (err) {
    // A VM that died under an agent call is said as such (before teardown settles `died` with its own reason).
    const error = (await explainVmLoss(err, sandbox.died, `container ${id}`)) as Error;
    await teardownFailedCreate(root, id, sandbox, logger);
    options.onCreated({ ok: false, error });
    throw error;
  }

  options.onCreated({ ok: true, pid: process.pid });
  const exitStatus = await superviseContainer(options, sandbox, bundle.spec.process?.terminal === true);
  return exitStatus;
}

/** Hooks that run on the host before the VM boots, in the container's namespace (they may add interfaces). */
function hasCreateTimeHooks(spec: object): boolean {
  const hooks = hooksOf(spec);
  return Boolean(hooks.prestart?.length || hooks.createRuntime?.length || hooks.createContainer?.length);
}

async function teardownFailedCreate(root: string, id: string, sandbox: Sandbox, logger: Logger): Promise<void> {
  const state = readStateQuietly(root, id);
  await sandbox.shutdown().catch((err: unknown) => logger.warn({ err: oneLine(err) }, 'teardown after failed create'));
  removeSandboxDir(root, id);
  await runPoststopHooks(state, logger); // runtime-spec: a failed create ends like a delete
}

/** Relays stdio, starts the container when asked, waits for its exit or the VM's death, then powers off. */
async function superviseContainer(options: RunOptions, sandbox: Sandbox, terminal: boolean): Promise<number> {
  const { id, logger } = options;
  const agent = sandbox.agent;
  const restoreTerminal = terminal && !options.detached
    ? attachHostTerminal((width, height) => agent.resizePty({ containerId: id, execId: '', width, height }), logger)
    : () => undefined;
  try {
    return await superviseAttached(options, sandbox);
  } finally {
    restoreTerminal();
  }
}

async function superviseAttached(options: RunOptions, sandbox: Sandbox): Promise<number> {
  const { id, logger } = options;
  const agent = sandbox.agent;
  const { outputs, input } = attachStdio(agent, id, '');
  input.done.catch((err: unknown) => logger.debug({ err: oneLine(err) }, 'stdin relay ended'));
  const stopForwarding = forwardSignals(
    (signal) => agent.signalProcess(id, '', signal),
    (err) => logger.warn({ err: oneLine(err) }, 'forwarding a signal to the container'),
  );
  try {
    return await superviseUntilExit(options, sandbox, { outputs, input });
  } finally {
    stopForwarding();
  }
}

async function superviseUntilExit(options: RunOptions, sandbox: Sandbox, { outputs, input }: AttachedStdio): Promise<number> {
  const { root, id, logger } = options;
  const agent = sandbox.agent;

  const startError = options.startImmediately ? await startForRun(options, agent) : undefined;

  let exitStatus: number;
  let stopReason: string | undefined;
  const outcome = await superviseProcess(agent, sandbox.died, id, '');
  if (outcome.kind === 'exited') {
    exitStatus = outcome.status;
    await outputs.catch((err: unknown) => logger.warn({ err: oneLine(err) }, 'output relay failed'));
  } else {
    exitStatus = VM_DIED_STATUS;
    stopReason = outcome.kind === 'vm-gone' ? `the VM died: ${outcome.reason}` : `lost the agent: ${outcome.reason}`;
    logger.error({ reason: stopReason }, 'container stopped because its VM died');
    process.stderr.write(`hull: container ${id}: ${stopReason}\n`);
  }
  input.stop();
  await Promise.all([flush(process.stdout), flush(process.stderr)]);

  updateState(root, id, (s) => {
    moveStatus(s, 'stopped');
    s.exitStatus = exitStatus;
    s.exitedAt = new Date().toISOString();
    if (stopReason) s.stopReason = stopReason;
  });
  // What cannot be released stays on record: `hull delete` tries again.
  await sandbox.shutdown().catch((err: unknown) => logger.warn({ err: oneLine(err) }, 'shutdown'));
  logger.info({ exitStatus }, 'container exited');
  // When the VM died, the line above said so and the start's failure (a closed connection) is only its echo.
  if (startError && stopReason) logger.warn({ err: oneLine(startError) }, 'start failed as the VM died');
  else if (startError) throw startError;
  return exitStatus;
}

/**
 * `hull run`'s start: StartContainer (the agent runs the startContainer hooks before the exec), then the poststart
 * hooks. A failure is returned, to be thrown once the VM is down: the container is killed (as runc destroys it), so
 * the supervision that follows collects its exit and powers off as usual.
 */
async function startForRun(options: RunOptions, agent: Sandbox['agent']): Promise<unknown> {
  const { root, id, logger } = options;
  try {
    const state = updateState(root, id, (s) => moveStatus(s, 'running'));
    await agent.startContainer(id, startCallOptions(state));
    logger.info('container started');
    await runPoststartHooks(root, id, logger, (signal) => agent.signalProcess(id, '', signal, true));
    return undefined;
  } catch (err) {
    await agent
      .signalProcess(id, '', os.constants.signals.SIGKILL, true)
      .catch((e: unknown) => logger.debug({ err: oneLine(e) }, 'kill after a failed start (already stopped)'));
    return err;
  }
}

/**
 * Puts this process into the container's network namespace (made here when the spec asks for a new one). Returns
 * the path that names it for later calls: the engine's, or this process's own (the namespace lives as long as this
 * process and the VM it starts).
 */
function joinNetwork(network: SpecNetwork): string {
  if (network.kind === 'path') {
    enterNetns(network.path);
    return network.path;
  }
  unshareNetns();
  return `/proc/${process.pid}/ns/net`;
}
