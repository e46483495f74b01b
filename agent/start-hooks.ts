// startContainer hooks (runtime-spec config.md "POSIX-platform Hooks"; docs/hooks.md): run by the agent inside the
// container, after StartContainer was asked and before the workload execs. runc runs them from the container's init
// just before its exec (libcontainer/standard_init_linux.go), so they have what the init has by then; here each runs
// through the container-init helper's exec mode, which gives it the same: the waiting init's namespaces (mount, so the
// container's root; pid; uts; ipc; cgroup) and cgroup, the container process's user, capabilities, rlimits,
// no_new_privs and seccomp filter, its cwd, and the hook's env (the process's env when the hook sets none: runc's
// de facto behaviour). The state on stdin is runc's too: status "created", pid the init's pid as seen inside the
// container, bundle the host's bundle directory.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { HookError, SpecError } from './errors.js';
import type { OciSpec } from './oci.js';
import type { OutputBuffer } from './output-buffer.js';
import { encodePlan } from './plan-encode.js';
import { HelperProcess } from './process.js';
import { arr, asObject, isObject, str, strArr } from './spec-fields.js';
import { computeExecPlan } from './spec-plan.js';
import type { PlanSeccomp } from './spec-seccomp.js';

export interface StartHook {
  path: string;
  args: string[];
  env?: string[];
  timeoutSeconds?: number;
}

/** The state a startContainer hook reads, except its pid (known once the init runs). */
export interface StartHookState {
  ociVersion: string;
  id: string;
  bundle: string;
  annotations?: Record<string, string>;
}

/** What CreateContainer keeps for StartContainer. */
export interface StartHooks {
  hooks: StartHook[];
  /** spec.process as the host sent it (checked when the container was created). */
  process: unknown;
  state: StartHookState;
}

export interface StartHookRun extends StartHooks {
  initPid: number;
  cgroupPath?: string;
  seccomp?: PlanSeccomp;
  helperPath: string;
  setupTimeoutMs?: number;
  startTimeoutMs?: number;
  procRoot?: string;
  log: Logger;
}

/** Bytes of a hook's stdout and of its stderr kept (for the error); the rest is read and dropped. */
export const HOOK_OUTPUT_CAP = 64 * 1024;
/** After a hook exited, how long something it left behind may keep its output open before we stop reading. */
const PIPE_GRACE_MS = 500;
const QUOTED_MAX = 512;

/** spec.hooks.startContainer, checked (SpecError naming the field); the other kinds are the host's. */
export function startContainerHooksFrom(spec: OciSpec): StartHook[] {
  const hooks = (spec as { hooks?: unknown }).hooks;
  if (hooks === undefined || hooks === null) return [];
  const list = asObject(hooks, 'hooks').startContainer;
  if (list === undefined || list === null) return [];
  return arr(list, 'hooks.startContainer').map((value, i) => {
    const at = `hooks.startContainer[${i}]`;
    const h = asObject(value, at);
    const hookPath = str(h.path, `${at}.path`);
    if (!path.posix.isAbsolute(hookPath)) throw new SpecError(`${at}.path "${hookPath}" must be an absolute path`);
    const hook: StartHook = { path: hookPath, args: h.args === undefined || h.args === null ? [] : strArr(h.args, `${at}.args`) };
    if (h.env !== undefined && h.env !== null) {
      hook.env = strArr(h.env, `${at}.env`);
      hook.env.forEach((e, j) => {
        if (e.indexOf('=') <= 0) throw new SpecError(`${at}.env[${j}] "${e}" is not KEY=VALUE`);
      });
    }
    if (h.timeout !== undefined && h.timeout !== null) {
      if (typeof h.timeout !== 'number' || !Number.isInteger(h.timeout) || h.timeout <= 0) {
        throw new SpecError(`${at}.timeout must be a whole number of seconds > 0`);
      }
      hook.timeoutSeconds = h.timeout;
    }
    return hook;
  });
}

/** Runs the hooks in order; the first failure is thrown (HookError) and the rest do not run. */
export async function runStartContainerHooks(run: StartHookRun): Promise<void> {
  const { ociVersion, id, bundle, annotations } = run.state;
  const stdin = JSON.stringify({
    ociVersion,
    id,
    status: 'created',
    pid: pidInContainer(run.procRoot ?? '/proc', run.initPid),
    bundle,
    ...(annotations && Object.keys(annotations).length ? { annotations } : {}),
  });
  for (const [i, hook] of run.hooks.entries()) await runOne(run, i, hook, stdin);
}

async function runOne(run: StartHookRun, index: number, hook: StartHook, stdin: string): Promise<void> {
  const label = `startContainer hook #${index} (${printable(hook.path)})`;
  const processSpec = isObject(run.process) ? run.process : {};
  const { plan, warnings } = computeExecPlan({
    process: {
      ...processSpec,
      terminal: false,
      args: hook.args.length ? hook.args : [hook.path],
      env: hook.env ?? processSpec.env,
    },
    joinPid: run.initPid,
    cgroupPath: run.cgroupPath,
    ...(run.seccomp ? { seccomp: run.seccomp } : {}),
  });
  plan.execPath = hook.path;
  const log = run.log.child({ hook: index });
  for (const w of warnings) log.warn(w);

  let helper: HelperProcess;
  try {
    helper = await HelperProcess.spawn({
      helperPath: run.helperPath,
      plan: encodePlan(plan),
      stdin: true,
      label,
      outputCap: HOOK_OUTPUT_CAP,
      setupTimeoutMs: run.setupTimeoutMs,
      log,
    });
  } catch (err) {
    throw new HookError(`${(err as Error).message}`);
  }
  // Into the pipe before the hook runs; a hook that never reads it gets EOF after the state all the same.
  await helper.writeStdin(Buffer.from(stdin)).catch((err: unknown) => log.debug({ err: (err as Error).message }, 'hook stdin'));
  helper.closeStdin();
  const outputs = Promise.all([capped(helper.stdout), capped(helper.stderr)]);

  let timedOut = false;
  const timer = hook.timeoutSeconds
    ? setTimeout(() => {
        timedOut = true;
        helper.kill('SIGKILL');
      }, hook.timeoutSeconds * 1000)
    : undefined;
  try {
    await helper.start(run.startTimeoutMs);
  } catch (err) {
    clearTimeout(timer);
    helper.kill('SIGKILL');
    helper.destroyStdio();
    throw new HookError(`${(err as Error).message}`);
  }
  const exit = await helper.exited;
  clearTimeout(timer);
  await Promise.race([outputs, new Promise((resolve) => setTimeout(resolve, PIPE_GRACE_MS))]);
  helper.destroyStdio();
  const [, stderr] = await outputs;

  const line = firstLine(stderr);
  const quoted = line ? `: ${line}` : '';
  if (timedOut) throw new HookError(`${label} timed out after ${hook.timeoutSeconds} s (killed)${quoted}`);
  if (exit.exitStatus !== 0) throw new HookError(`${label} failed: exit status ${exit.exitStatus}${quoted}`);
  log.debug('startContainer hook ran');
}

/** Reads a stream to its end, keeping the first HOOK_OUTPUT_CAP bytes. */
async function capped(buffer: OutputBuffer): Promise<string> {
  const kept: Buffer[] = [];
  let size = 0;
  for (;;) {
    const chunk = await buffer.read(HOOK_OUTPUT_CAP);
    if (chunk.length === 0) return Buffer.concat(kept).toString('utf8');
    if (size < HOOK_OUTPUT_CAP) {
      const part = chunk.subarray(0, HOOK_OUTPUT_CAP - size);
      kept.push(part);
      size += part.length;
    }
  }
}

/** The init's pid in its innermost pid namespace (the container's): the last NSpid entry; the guest pid if unknown. */
export function pidInContainer(procRoot: string, pid: number): number {
  try {
    const nspid = /^NSpid:\s*(.+)$/m.exec(readFileSync(path.join(procRoot, String(pid), 'status'), 'utf8'))?.[1];
    const last = Number(nspid?.trim().split(/\s+/).pop());
    return Number.isInteger(last) && last > 0 ? last : pid;
  } catch {
    return pid;
  }
}

function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return clean.length > QUOTED_MAX ? `${clean.slice(0, QUOTED_MAX)}…` : clean;
}

function firstLine(text: string): string {
  return printable((text.split('\n').find((l) => l.trim() !== '') ?? '').trim());
}
