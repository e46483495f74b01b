// OCI hooks on the host (config.json "hooks"; where and when each kind runs: docs/hooks.md). This file holds what is
// independent of a container's life: reading and checking the spec's hook entries, and running one list of them the
// way runc's libcontainer/configs Command.Run does (the state JSON on stdin; exactly the hook's env; args[0] as argv0
// and path as what is executed; `timeout` seconds then SIGKILL), plus what hull adds: stdout and stderr captured up
// to a cap, a hook that never closes its output cannot hang us, a timed-out hook's whole process group is killed,
// and every failure is one line that names the hook.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { HullError, invalidArgument } from './errors.js';

export type HookKind = 'prestart' | 'createRuntime' | 'createContainer' | 'startContainer' | 'poststart' | 'poststop';
export const HOOK_KINDS: readonly HookKind[] = ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'];

/** One entry of a hooks list (runtime-spec config.md "POSIX-platform Hooks"). */
export interface OciHook {
  path: string;
  args?: string[];
  env?: string[];
  /** Seconds; > 0. */
  timeout?: number;
}

export type OciHooks = Partial<Record<HookKind, OciHook[]>>;

/** What a hook reads on stdin: the runtime-spec state (runc marshals specs.State: pid and annotations omitempty). */
export interface HookState {
  ociVersion: string;
  id: string;
  status: 'creating' | 'created' | 'running' | 'stopped';
  pid?: number;
  bundle: string;
  annotations?: Record<string, string>;
}

/** Bytes of stdout and of stderr kept per hook; what comes after is read and dropped, so the hook never blocks. */
export const HOOK_OUTPUT_CAP = 64 * 1024;
/** After a hook exited, how long a process it left behind may keep its stdout/stderr open before we stop reading. */
const PIPE_GRACE_MS = 500;
/** Longest stderr line quoted in an error. */
const QUOTED_MAX = 512;

export interface HookRunOptions {
  outputCap?: number;
  /**
   * Wraps the (synchronous) spawn of each hook. Hooks run in the runtime's namespaces: a caller whose main thread sits
   * in another network namespace can move it back around the fork here.
   */
  spawnWith?: (start: () => ChildProcess) => ChildProcess;
}

export interface HookOutput {
  stdout: string;
  stderr: string;
}

/** A hook that could not run, failed or timed out. The message is one line naming the kind, index and path. */
export class HookError extends HullError {
  constructor(
    readonly hookKind: HookKind,
    readonly index: number,
    readonly hook: OciHook,
    /** "failed: exit status 3", "timed out after 2 s", "could not run: …" */
    readonly reason: string,
    readonly output: HookOutput,
  ) {
    const line = firstLine(output.stderr);
    super('failed-precondition', `${hookKind} hook #${index} (${printable(hook.path)}) ${reason}${line ? `: ${line}` : ''}`);
    this.name = 'HookError';
  }
}

// ------------------------------------------------------------------------------------------------ reading the spec

/** The spec's hooks, checked: paths absolute, args and env strings (env KEY=VALUE), timeouts integers > 0. */
export function hooksOf(spec: object): OciHooks {
  const raw = (spec as { hooks?: unknown }).hooks;
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalidArgument('config.json: field hooks must be an object');
  const out: OciHooks = {};
  for (const kind of HOOK_KINDS) {
    const list = (raw as Record<string, unknown>)[kind];
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list)) throw invalidArgument(`config.json: hooks.${kind} must be an array`);
    if (list.length) out[kind] = list.map((h, i) => hookFrom(h, `hooks.${kind}[${i}]`));
  }
  return out;
}

function hookFrom(value: unknown, at: string): OciHook {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalidArgument(`config.json: ${at} must be an object`);
  const h = value as Record<string, unknown>;
  if (typeof h.path !== 'string' || !h.path.startsWith('/') || h.path.includes('\0')) {
    throw invalidArgument(`config.json: ${at}.path must be an absolute path, not ${JSON.stringify(h.path ?? null)}`);
  }
  const hook: OciHook = { path: h.path };
  const strings = (field: 'args' | 'env'): string[] | undefined => {
    const v = h[field];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || s.includes('\0'))) {
      throw invalidArgument(`config.json: ${at}.${field} must be an array of strings`);
    }
    return v as string[];
  };
  const args = strings('args');
  if (args) hook.args = args;
  const env = strings('env');
  if (env) {
    const bad = env.findIndex((e) => e.indexOf('=') <= 0);
    if (bad >= 0) throw invalidArgument(`config.json: ${at}.env[${bad}] ${JSON.stringify(env[bad])} is not KEY=VALUE`);
    hook.env = env;
  }
  if (h.timeout !== undefined && h.timeout !== null) {
    if (typeof h.timeout !== 'number' || !Number.isInteger(h.timeout) || h.timeout <= 0) {
      throw invalidArgument(`config.json: ${at}.timeout must be a whole number of seconds > 0, not ${JSON.stringify(h.timeout)}`);
    }
    hook.timeout = h.timeout;
  }
  return hook;
}

// ------------------------------------------------------------------------------------------------ running them

/** Runs the hooks of one kind in order; the first failure stops the list and is thrown (runc's Hooks.Run). */
export async function runHooks(kind: HookKind, hooks: readonly OciHook[] | undefined, state: HookState, options: HookRunOptions = {}): Promise<void> {
  for (const [i, hook] of (hooks ?? []).entries()) await runHook(kind, i, hook, state, options);
}

/** Runs one hook to its end. Resolves with its (capped) output when it exits 0; throws HookError otherwise. */
export async function runHook(kind: HookKind, index: number, hook: OciHook, state: HookState, options: HookRunOptions = {}): Promise<HookOutput> {
  const cap = options.outputCap ?? HOOK_OUTPUT_CAP;
  const argv = hook.args?.length ? hook.args : [hook.path];
  const start = (): ChildProcess =>
    spawn(hook.path, argv.slice(1), {
      argv0: argv[0],
      env: environment(hook.env ?? []),
      stdio: ['pipe', 'pipe', 'pipe'],
      // Its own process group, so a timeout kills what it started too.
      detached: true,
    });
  let child: ChildProcess;
  try {
    child = options.spawnWith ? options.spawnWith(start) : start();
  } catch (err) {
    throw new HookError(kind, index, hook, `could not run: ${(err as Error).message}`, { stdout: '', stderr: '' });
  }

  const stdout = new CappedText(child.stdout, cap);
  const stderr = new CappedText(child.stderr, cap);
  // A hook that does not read its stdin makes the write fail with EPIPE: an ordinary end here (as in Go's os/exec).
  child.stdin?.on('error', () => undefined);
  child.stdin?.end(JSON.stringify(state));

  let timedOut = false;
  const timer = hook.timeout
    ? setTimeout(() => {
        timedOut = true;
        killGroup(child);
      }, hook.timeout * 1000)
    : undefined;
  const ended = await new Promise<{ code: number | null; signal: NodeJS.Signals | null } | { spawnError: Error }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    // 'error' without a pid: spawn failed, and no 'exit' follows. Later ones (a failed kill) change nothing here.
    child.on('error', (err) => {
      if (child.pid === undefined) resolve({ spawnError: err });
    });
  });
  clearTimeout(timer);
  await Promise.race([Promise.all([stdout.ended, stderr.ended]), delay(PIPE_GRACE_MS)]);
  stdout.stop();
  stderr.stop();
  const output = { stdout: stdout.text(), stderr: stderr.text() };

  if ('spawnError' in ended) throw new HookError(kind, index, hook, `could not run: ${ended.spawnError.message}`, output);
  if (timedOut) throw new HookError(kind, index, hook, `timed out after ${hook.timeout} s (killed)`, output);
  if (ended.signal) throw new HookError(kind, index, hook, `failed: killed by ${ended.signal}`, output);
  if (ended.code !== 0) throw new HookError(kind, index, hook, `failed: exit status ${ended.code}`, output);
  return output;
}

/** KEY=VALUE entries as the object spawn takes; a later entry for the same key wins (as Go's os/exec dedupEnv). */
function environment(entries: readonly string[]): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const e of entries) {
    const eq = e.indexOf('=');
    env[e.slice(0, eq)] = e.slice(eq + 1);
  }
  return env;
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    child.kill('SIGKILL'); // not a group leader (a spawnWith that did its own fork): the hook alone
  }
}

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

/** Keeps the first `cap` bytes of a stream and reads (and drops) the rest. */
class CappedText {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private truncated = false;
  readonly ended: Promise<void>;

  constructor(
    private readonly stream: Readable | null,
    private readonly cap: number,
  ) {
    this.ended = new Promise((resolve) => {
      if (!stream) return resolve();
      stream.on('data', (chunk: Buffer) => this.add(chunk));
      stream.on('close', () => resolve());
      stream.on('end', () => resolve());
      stream.on('error', () => resolve());
    });
  }

  private add(chunk: Buffer): void {
    const room = this.cap - this.size;
    if (room <= 0) {
      this.truncated = true;
      return;
    }
    const kept = chunk.length > room ? chunk.subarray(0, room) : chunk;
    if (kept.length < chunk.length) this.truncated = true;
    this.chunks.push(kept);
    this.size += kept.length;
  }

  stop(): void {
    this.stream?.destroy();
  }

  text(): string {
    const text = Buffer.concat(this.chunks).toString('utf8');
    return this.truncated ? `${text}…` : text;
  }
}

/** Control characters (escape sequences) become '?', length capped: hook output is shown on terminals and in logs. */
function printable(text: string, max = QUOTED_MAX): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

/** The first non-empty line of a hook's output, printable. */
function firstLine(text: string): string {
  const line = text.split('\n').find((l) => l.trim() !== '') ?? '';
  return printable(line.trim());
}
