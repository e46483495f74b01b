// The runc-compatible commands. Each takes parsed options and returns the exit code; errors are thrown as
// HullError and turned into one line on stderr by cli.ts.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import type { Logger } from 'pino';
import { runContainer, type RunOptions } from './container-runner.js';
import { spawnDetached, statusReporter } from './detach.js';
import { loadBundle } from '../bundle.js';
import { alreadyExists, failedPrecondition, invalidArgument, oneLine } from '../errors.js';
import { VM_DIED_STATUS } from '../exit-status.js';
import { pidFromGuest, printableFromGuest } from '../guest-values.js';
import { validateId } from '../ids.js';
import type { OciProcess, OciSpec } from '../oci-spec.js';
import { writePidFile } from './pid-file.js';
import { connectToSandbox } from '../sandbox/sandbox.js';
import { explainVmLoss, superviseProcess } from '../sandbox/supervisor.js';
import { planHostBinds } from '../sandbox/share-mounts.js';
import { planHostCgroup } from '../sandbox/cgroups/host-cgroup.js';
import { requireNetns, specNetwork } from '../sandbox/network/spec-netns.js';
import { forwardSignals, parseSignal } from './signals.js';
import { listIds, monitorOf, moveStatus, readState, readStateQuietly, sandboxDir, updateState } from './state.js';
import { currentStatus, ociState } from './status.js';
import { attachStdio, flush } from '../sandbox/stdio-relay.js';
import { attachHostTerminal } from './terminal.js';
import { destroySandbox, waitForExit } from './teardown.js';
import { runPoststartHooks, runPoststopHooks, startCallOptions } from './lifecycle-hooks.js';

export interface Globals {
  root: string;
  logger: Logger;
  /** Flags to pass on when this CLI re-executes itself (monitor, detached exec). */
  passThrough: string[];
  /** --systemd-cgroup: linux.cgroupsPath is in systemd's `slice:prefix:name` form. */
  systemdCgroup?: boolean;
}

const MONITOR_WAIT_MS = 15_000;

export async function run(g: Globals, id: string, opts: { bundle: string; pidFile?: string; detach?: boolean }): Promise<number> {
  validateId(id);
  if (opts.detach) {
    await create(g, id, opts);
    await start(g, id);
    return 0;
  }
  // Only what this run created is deleted afterwards: a duplicate id must leave the existing container alone, and
  // a failed create has already cleaned up after itself.
  let created = false;
  try {
    return await runContainer(
      monitorOptions(g, id, opts.bundle, 'run', (result) => {
        created = result.ok;
        if (result.ok && opts.pidFile) writePidFile(opts.pidFile, result.pid);
      }),
    );
  } finally {
    if (created) {
      const last = readStateQuietly(g.root, id);
      await destroySandbox(g.root, id, 0).catch((err: unknown) => g.logger.warn({ err: oneLine(err) }, 'cleanup after run'));
      await runPoststopHooks(last, g.logger);
    }
  }
}

/** The monitor's options: `run` starts at once and keeps this terminal; `create` waits for `hull start`, detached. */
function monitorOptions(g: Globals, id: string, bundleDir: string, mode: 'run' | 'create', onCreated: RunOptions['onCreated']): RunOptions {
  return {
    root: g.root,
    id,
    bundleDir,
    logger: g.logger,
    startImmediately: mode === 'run',
    detached: mode === 'create',
    systemdCgroup: g.systemdCgroup === true,
    onCreated,
  };
}

export async function create(g: Globals, id: string, opts: { bundle: string; pidFile?: string }): Promise<number> {
  validateId(id);
  // Fail fast, before a monitor is spawned, on what can be checked here.
  const bundle = loadBundle(opts.bundle, { requireProcess: true });
  planHostBinds(bundle.specJson, id, bundle.dir);
  const network = specNetwork(bundle.spec);
  if (network.kind === 'path') requireNetns(network.path);
  if (existsSync(sandboxDir(g.root, id))) throw alreadyExists(`container ${id} already exists`);
  planHostCgroup(bundle.spec, id, { systemd: g.systemdCgroup === true }); // after: a duplicate's cgroup is in use
  const pid = await spawnDetached([...g.passThrough, '_monitor', '--bundle', opts.bundle, id]);
  if (opts.pidFile) writePidFile(opts.pidFile, pid);
  return 0;
}

/**
 * The detached process behind `create`: boots, creates, reports on fd 3, then supervises until exit. A failure
 * before the report goes to the parent, which prints it; after it, the container's stderr gets it.
 */
export async function monitor(g: Globals, id: string, opts: { bundle: string }): Promise<number> {
  const report = statusReporter(true);
  let created = false;
  try {
    return await runContainer(
      monitorOptions(g, id, opts.bundle, 'create', (result) => {
        created = result.ok;
        report(result.ok ? `ok ${result.pid}` : `error ${oneLine(result.error)}`);
      }),
    );
  } catch (err) {
    if (created) throw err;
    report(`error ${oneLine(err)}`); // no-op when onCreated already reported the failure
    g.logger.error(oneLine(err));
    return 1;
  }
}

export async function start(g: Globals, id: string): Promise<number> {
  validateId(id);
  const state = readState(g.root, id);
  const status = currentStatus(state);
  if (status !== 'created') throw failedPrecondition(`cannot start container ${id}: it is ${status}, not created`);
  const { agent, gone, close } = await connectToSandbox(sandboxDir(g.root, id), state);
  try {
    const current = updateState(g.root, id, (s) => moveStatus(s, 'running'));
    await agent.startContainer(id, startCallOptions(current));
    await runPoststartHooks(g.root, id, g.logger, (signal) => agent.signalProcess(id, '', signal, true));
  } catch (err) {
    throw await explainVmLoss(err, gone, `cannot start container ${id}`);
  } finally {
    close();
  }
  return 0;
}

export function state(g: Globals, id: string): number {
  validateId(id);
  process.stdout.write(`${JSON.stringify(ociState(readState(g.root, id)), null, 2)}\n`);
  return 0;
}

export async function kill(g: Globals, id: string, signal: string | undefined, all: boolean): Promise<number> {
  validateId(id);
  const number = parseSignal(signal);
  const current = readState(g.root, id);
  const status = currentStatus(current);
  if (status !== 'created' && status !== 'running') {
    throw failedPrecondition(`cannot kill container ${id}: it is ${status}`);
  }
  const { agent, gone, close } = await connectToSandbox(sandboxDir(g.root, id), current);
  try {
    await agent.signalProcess(id, '', number, all);
  } catch (err) {
    throw await explainVmLoss(err, gone, `cannot kill container ${id}`);
  } finally {
    close();
  }
  return 0;
}

export async function remove(g: Globals, id: string, force: boolean): Promise<number> {
  validateId(id);
  let current;
  try {
    current = readState(g.root, id);
  } catch (err) {
    if (force) return 0;
    throw err;
  }
  const status = currentStatus(current);
  if (status === 'running' && !force) {
    throw failedPrecondition(`cannot delete container ${id} that is not stopped: running`);
  }
  if (status !== 'stopped') {
    // runc kills a created container on delete; --force kills a running one.
    try {
      const { agent, close } = await connectToSandbox(sandboxDir(g.root, id), current);
      await agent.signalProcess(id, '', constants.signals.SIGKILL, true).finally(close);
    } catch (err) {
      g.logger.warn({ err: oneLine(err) }, 'could not signal the container; destroying its VM');
    }
    await waitForExit(monitorOf(current), MONITOR_WAIT_MS);
  }
  await destroySandbox(g.root, id, MONITOR_WAIT_MS);
  await runPoststopHooks(current, g.logger);
  return 0;
}

export interface ExecOptions {
  process?: string;
  cwd?: string;
  env: string[];
  user?: string;
  tty?: boolean;
  detach?: boolean;
  pidFile?: string;
}

function parseUser(raw: string): { uid: number; gid: number } {
  const match = /^(\d+)(?::(\d+))?$/.exec(raw);
  if (!match) throw invalidArgument(`invalid --user "${raw}": expected UID[:GID]`);
  return { uid: Number(match[1]), gid: Number(match[2] ?? 0) };
}

function execProcessSpec(bundle: string, opts: ExecOptions, args: string[]): OciProcess {
  if (opts.process) {
    let parsed: OciProcess;
    try {
      parsed = JSON.parse(readFileSync(opts.process, 'utf8')) as OciProcess;
    } catch (err) {
      throw invalidArgument(`--process ${opts.process}: ${(err as Error).message}`);
    }
    if (!Array.isArray(parsed.args) || parsed.args.length === 0) {
      throw invalidArgument(`--process ${opts.process}: field args must be a non-empty array`);
    }
    return { ...parsed, cwd: parsed.cwd ?? '/', user: parsed.user ?? { uid: 0, gid: 0 } };
  }
  if (args.length === 0) throw invalidArgument('exec needs a command (or --process FILE)');
  const spec = JSON.parse(readFileSync(`${bundle}/config.json`, 'utf8')) as OciSpec;
  const base: OciProcess = spec.process ?? { args, cwd: '/', user: { uid: 0, gid: 0 } };
  return {
    ...base,
    terminal: opts.tty ?? false,
    args,
    cwd: opts.cwd ?? base.cwd,
    env: [...(base.env ?? []), ...opts.env],
    user: opts.user ? { ...parseUser(opts.user) } : base.user,
  };
}

export async function exec(g: Globals, id: string, args: string[], opts: ExecOptions): Promise<number> {
  validateId(id);
  const current = readState(g.root, id);
  const status = currentStatus(current);
  if (status !== 'running') throw failedPrecondition(`cannot exec in container ${id}: it is ${status}, not running`);
  const processSpec = execProcessSpec(current.bundle, opts, args);
  if (processSpec.terminal && opts.detach) {
    throw invalidArgument('exec --tty --detach needs --console-socket, which hull does not support (the pty lives in the VM)');
  }
  if (opts.detach) {
    const forwarded = ['_exec', '--process-json', JSON.stringify(processSpec), id];
    const pid = await spawnDetached([...g.passThrough, ...forwarded]);
    if (opts.pidFile) writePidFile(opts.pidFile, pid);
    return 0;
  }
  return execAttached(g, id, processSpec, () => undefined);
}

/** Runs one process in the container with this process's stdio, and returns its exit status. */
export async function execAttached(
  g: Globals,
  id: string,
  processSpec: OciProcess,
  onStarted: (pid: number) => void,
): Promise<number> {
  const recorded = readState(g.root, id);
  const { agent, gone, close } = await connectToSandbox(sandboxDir(g.root, id), recorded);
  const execId = `exec-${randomBytes(6).toString('hex')}`;
  try {
    await agent
      .execProcess({ containerId: id, execId, processJson: JSON.stringify(processSpec), stdin: true })
      .catch(async (err: unknown) => {
        throw await explainVmLoss(err, gone, `cannot exec in container ${id}`);
      });
    onStarted(process.pid);
    const restoreTerminal = processSpec.terminal
      ? attachHostTerminal((width, height) => agent.resizePty({ containerId: id, execId, width, height }), g.logger)
      : () => undefined;
    const { outputs, input } = attachStdio(agent, id, execId);
    input.done.catch((err: unknown) => g.logger.debug({ err: oneLine(err) }, 'exec stdin relay ended'));
    const stopForwarding = forwardSignals(
      (signal) => agent.signalProcess(id, execId, signal),
      (err) => g.logger.warn({ err: oneLine(err) }, 'forwarding a signal to the exec'),
    );
    let exitStatus: number;
    try {
      const outcome = await superviseProcess(agent, gone, id, execId);
      if (outcome.kind === 'exited') {
        exitStatus = outcome.status;
        await outputs;
        // Status and output are ours now: the agent can forget the exec (else a long-lived container's execs pile up).
        await agent.removeProcess(id, execId).catch((err: unknown) => g.logger.warn({ err: oneLine(err) }, 'forget the exec in the agent'));
      } else {
        exitStatus = VM_DIED_STATUS;
        const why = outcome.kind === 'vm-gone' ? `the VM died: ${outcome.reason}` : `lost the agent: ${outcome.reason}`;
        process.stderr.write(`hull: exec in container ${id}: ${why}\n`);
      }
    } finally {
      stopForwarding();
      restoreTerminal();
    }
    input.stop();
    await Promise.all([flush(process.stdout), flush(process.stderr)]);
    return exitStatus;
  } finally {
    close();
  }
}

/** The detached process behind `exec --detach`. */
export async function execMonitor(g: Globals, id: string, processJson: string): Promise<number> {
  const report = statusReporter(true);
  let started = false;
  try {
    return await execAttached(g, id, JSON.parse(processJson) as OciProcess, (pid) => {
      started = true;
      report(`ok ${pid}`);
    });
  } catch (err) {
    if (started) throw err;
    // Before `ok`, the parent prints the error (one line on the shared stderr): printing it here too would double it.
    report(`error ${oneLine(err)}`);
    g.logger.error(oneLine(err));
    return 255;
  }
}

export async function ps(g: Globals, id: string, format: string): Promise<number> {
  validateId(id);
  const current = readState(g.root, id);
  if (currentStatus(current) === 'stopped') {
    if (format === 'json') process.stdout.write('[]\n');
    return 0;
  }
  const { agent, close } = await connectToSandbox(sandboxDir(g.root, id), current);
  try {
    const processes = await agent.listProcesses(id);
    if (format === 'json') {
      process.stdout.write(`${JSON.stringify(processes.map((p) => pidFromGuest(p.pid)))}\n`);
    } else if (format === 'table') {
      const rows = processes.map(
        (p) => `${String(pidFromGuest(p.pid)).padEnd(8)}${(printableFromGuest(p.execId, 64) || '-').padEnd(20)}${printableFromGuest(p.command)}`,
      );
      process.stdout.write(`${['PID     EXEC                CMD', ...rows].join('\n')}\n`);
    } else {
      throw invalidArgument(`invalid format "${format}": use table or json`);
    }
  } finally {
    close();
  }
  return 0;
}

export function list(g: Globals, format: string, quiet: boolean): number {
  const states = listIds(g.root).flatMap((id) => {
    try {
      return [ociState(readState(g.root, id))];
    } catch {
      return [];
    }
  });
  if (quiet) {
    process.stdout.write(states.map((s) => `${s.id}\n`).join(''));
  } else if (format === 'json') {
    process.stdout.write(`${JSON.stringify(states)}\n`);
  } else if (format === 'table') {
    const rows = states.map((s) =>
      [s.id.padEnd(20), String(s.pid).padEnd(10), s.status.padEnd(10), s.bundle.padEnd(40), s.created.padEnd(32), s.owner].join(''),
    );
    process.stdout.write(`${['ID'.padEnd(20) + 'PID'.padEnd(10) + 'STATUS'.padEnd(10) + 'BUNDLE'.padEnd(40) + 'CREATED'.padEnd(32) + 'OWNER', ...rows].join('\n')}\n`);
  } else {
    throw invalidArgument(`invalid format "${format}": use table or json`);
  }
  return 0;
}

