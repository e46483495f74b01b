// The host's OCI hooks at their places in a container's life (docs/hooks.md): prestart, createRuntime and
// createContainer during create, before the VM boots; poststart after start; poststop after delete removed
// everything. config.json is read once, at create: what later phases need (the poststart and poststop hooks, and the
// startContainer timeouts that bound the host's StartContainer call) is recorded in state.json then.
import { constants } from 'node:os';
import type { Logger } from 'pino';
import type { CallOptions } from '../../protocol/agent-client.js';
import { oneLine } from '../errors.js';
import { hooksOf, runHook, runHooks, type HookRunOptions, type HookState } from '../hooks.js';
import { inRuntimeNetns } from '../runtime-netns.js';
import { readState, updateState, type ContainerState, type RecordedHooks } from './state.js';

/** Every host hook runs in the runtime's network namespace, even from a process that moved into the container's. */
const inRuntime = (options: HookRunOptions): HookRunOptions => ({ spawnWith: inRuntimeNetns, ...options });

/** The StartContainer call's deadline when no startContainer hook is slower (agent-client's default). */
const START_CALL_MS = 60_000;

/** The state a hook reads on stdin, from the recorded state. Stopped: no pid (the container has none; runc omits it). */
export function hookState(state: ContainerState, status: HookState['status']): HookState {
  const annotations = Object.keys(state.annotations).length ? state.annotations : undefined;
  return {
    ociVersion: state.ociVersion,
    id: state.id,
    status,
    ...(status === 'stopped' ? {} : { pid: state.pid }),
    bundle: state.bundle,
    ...(annotations ? { annotations } : {}),
  };
}

/**
 * Create time, on the host, status "creating", pid the monitor's: prestart, createRuntime, createContainer, in that
 * order (runc: libcontainer/process_linux.go runs prestart then createRuntime from the runtime; its createContainer
 * hooks run in the container, but here the path resolves on the host and the VM does not exist yet, so on the host
 * too). Records the hooks later phases need. Throws the first failure (HookError): create fails.
 */
export async function runCreateHooks(root: string, id: string, spec: object, logger: Logger, options: HookRunOptions = {}): Promise<void> {
  const hooks = hooksOf(spec);
  const later: RecordedHooks = {};
  for (const kind of ['startContainer', 'poststart', 'poststop'] as const) if (hooks[kind]) later[kind] = hooks[kind];
  const state = Object.keys(later).length ? updateState(root, id, (s) => void (s.hooks = later)) : readState(root, id);
  const stdin = hookState(state, 'creating');
  for (const kind of ['prestart', 'createRuntime', 'createContainer'] as const) {
    if (!hooks[kind]) continue;
    logger.debug({ hooks: hooks[kind].length }, `running ${kind} hooks`);
    await runHooks(kind, hooks[kind], stdin, inRuntime(options));
  }
}

/** Options for the host's StartContainer call: its deadline grows by the startContainer hooks' timeouts; none if one has none. */
export function startCallOptions(state: ContainerState): CallOptions | undefined {
  const hooks = state.hooks?.startContainer;
  if (!hooks?.length) return undefined;
  if (hooks.some((h) => h.timeout === undefined)) return { timeoutMs: 0 };
  return { timeoutMs: START_CALL_MS + hooks.reduce((sum, h) => sum + (h.timeout ?? 0) * 1000, 0) };
}

/**
 * After the container started, on the host, status "running". As runc (libcontainer/container_linux.go postStart),
 * a failing poststart hook kills the container (SIGKILL to all its processes through `kill`) and fails start; the
 * runtime-spec asks only for a warning, but engines are built against runc.
 */
export async function runPoststartHooks(
  root: string,
  id: string,
  logger: Logger,
  kill: (signal: number) => Promise<void>,
  options: HookRunOptions = {},
): Promise<void> {
  const state = readState(root, id);
  const hooks = state.hooks?.poststart;
  if (!hooks?.length) return;
  try {
    await runHooks('poststart', hooks, hookState(state, 'running'), inRuntime(options));
  } catch (err) {
    logger.error({ err: oneLine(err) }, 'poststart hook failed; killing the container');
    await kill(constants.signals.SIGKILL).catch((e: unknown) => logger.warn({ err: oneLine(e) }, 'killing the container after a failed poststart hook'));
    throw err;
  }
}

/**
 * After delete removed the container's resources (and after a failed create was torn down), on the host, status
 * "stopped". Every hook runs; a failure is a warning and delete still succeeds (runtime-spec lifecycle step 13; runc
 * itself fails `delete` then, after having removed the container).
 */
export async function runPoststopHooks(state: ContainerState | undefined, logger: Logger, options: HookRunOptions = {}): Promise<void> {
  const hooks = state?.hooks?.poststop;
  if (!state || !hooks?.length) return;
  const stdin = hookState(state, 'stopped');
  for (const [i, hook] of hooks.entries()) {
    try {
      await runHook('poststop', i, hook, stdin, inRuntime(options));
    } catch (err) {
      warn(logger, oneLine(err));
    }
  }
}

/** Where runc's warnings go: the log when there is one (--log, --debug), else stderr. */
function warn(logger: Logger, message: string): void {
  if (logger.isLevelEnabled('warn')) logger.warn(message);
  else process.stderr.write(`hull: warning: ${message}\n`);
}
