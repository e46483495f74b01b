// linux.seccomp → the plan's seccomp keys. Checked and bounded here; the helper builds the filter with libseccomp
// (native/container-init/seccomp.c), skipping syscall names it does not know, as runc does.
import { SpecError } from './errors.js';
import { arrMax, asObject, str } from './spec-fields.js';

export type SeccompAction = 'allow' | 'errno' | 'kill_thread' | 'kill_process' | 'trap' | 'log' | 'trace';
export type SeccompOp = 'ne' | 'lt' | 'le' | 'eq' | 'ge' | 'gt' | 'masked_eq';

export interface SeccompArg {
  index: number;
  /** uint64, as decimal strings (JSON numbers above 2^53 have already lost precision; kept as given). */
  value: string;
  valueTwo: string;
  op: SeccompOp;
}

/** One rule per syscall name (the spec's `names` lists are expanded). */
export interface SeccompRule {
  name: string;
  action: SeccompAction;
  errnoRet: number;
  args: SeccompArg[];
}

export interface PlanSeccomp {
  defaultAction: SeccompAction;
  defaultErrnoRet: number;
  /** libseccomp names: x86_64, x86, x32, aarch64, ... */
  architectures: string[];
  rules: SeccompRule[];
}

const ACTIONS: Record<string, SeccompAction> = {
  SCMP_ACT_ALLOW: 'allow',
  SCMP_ACT_ERRNO: 'errno',
  SCMP_ACT_KILL: 'kill_thread',
  SCMP_ACT_KILL_THREAD: 'kill_thread',
  SCMP_ACT_KILL_PROCESS: 'kill_process',
  SCMP_ACT_TRAP: 'trap',
  SCMP_ACT_LOG: 'log',
  SCMP_ACT_TRACE: 'trace',
};

const OPS: Record<string, SeccompOp> = {
  SCMP_CMP_NE: 'ne',
  SCMP_CMP_LT: 'lt',
  SCMP_CMP_LE: 'le',
  SCMP_CMP_EQ: 'eq',
  SCMP_CMP_GE: 'ge',
  SCMP_CMP_GT: 'gt',
  SCMP_CMP_MASKED_EQ: 'masked_eq',
};

const ARCHES = new Set([
  'x86', 'x86_64', 'x32', 'arm', 'aarch64', 'mips', 'mips64', 'mips64n32', 'mipsel', 'mipsel64', 'mipsel64n32', 'ppc',
  'ppc64', 'ppc64le', 's390', 's390x', 'riscv64', 'parisc', 'parisc64',
]);

/** What the helper accepts (PLAN_MAX_* in plan.h): the expanded rules, and entries per list. */
const MAX_RULES = 4096;
const MAX_SYSCALL_ENTRIES = 1024;
const MAX_NAMES = 1024;
const MAX_ARGS = 6;
const MAX_ARCHES = 16;
const EPERM = 1;
const MAX_ERRNO = 4095;

export function seccompFrom(value: unknown, warnings: string[]): PlanSeccomp {
  const at = 'linux.seccomp';
  const o = asObject(value, at);
  if (o.listenerPath !== undefined && o.listenerPath !== '') {
    throw new SpecError(`${at}.listenerPath: seccomp notify is not supported (no listener in the guest)`);
  }
  const defaultAction = action(o.defaultAction, `${at}.defaultAction`);
  const defaultErrnoRet = errnoRet(o.defaultErrnoRet, defaultAction, `${at}.defaultErrnoRet`);
  const architectures = o.architectures === undefined || o.architectures === null
    ? []
    : arrMax(o.architectures, `${at}.architectures`, MAX_ARCHES).map((a, i) => arch(a, `${at}.architectures[${i}]`));
  if (o.flags !== undefined && o.flags !== null) {
    const flags = arrMax(o.flags, `${at}.flags`, 16).map((f, i) => str(f, `${at}.flags[${i}]`));
    if (flags.length) warnings.push(`${at}.flags ${flags.join(',').slice(0, 200)} are not supported; ignored`);
  }

  const rules: SeccompRule[] = [];
  const syscalls = o.syscalls === undefined || o.syscalls === null ? [] : arrMax(o.syscalls, `${at}.syscalls`, MAX_SYSCALL_ENTRIES);
  syscalls.forEach((s, i) => {
    const sat = `${at}.syscalls[${i}]`;
    const so = asObject(s, sat);
    const names = arrMax(so.names, `${sat}.names`, MAX_NAMES).map((n, j) => syscallName(n, `${sat}.names[${j}]`));
    if (names.length === 0) throw new SpecError(`${sat}.names must name at least one syscall`);
    const act = action(so.action, `${sat}.action`);
    const ret = errnoRet(so.errnoRet, act, `${sat}.errnoRet`);
    const args = so.args === undefined || so.args === null
      ? []
      : arrMax(so.args, `${sat}.args`, MAX_ARGS).map((a, j) => seccompArg(a, `${sat}.args[${j}]`));
    if (rules.length + names.length > MAX_RULES) throw new SpecError(`${at}.syscalls names more than ${MAX_RULES} syscalls in all`);
    for (const name of names) rules.push({ name, action: act, errnoRet: ret, args });
  });
  return { defaultAction, defaultErrnoRet, architectures, rules };
}

function action(v: unknown, at: string): SeccompAction {
  const s = str(v, at);
  if (s === 'SCMP_ACT_NOTIFY') throw new SpecError(`${at}: SCMP_ACT_NOTIFY is not supported (no seccomp listener in the guest)`);
  const a = ACTIONS[s];
  if (a === undefined) throw new SpecError(`${at} "${s.slice(0, 64)}" is not a seccomp action (${Object.keys(ACTIONS).join(', ')})`);
  return a;
}

/** errnoRet: only for SCMP_ACT_ERRNO and SCMP_ACT_TRACE, EPERM when absent (as runc). */
function errnoRet(v: unknown, act: SeccompAction, at: string): number {
  if (v === undefined || v === null) return act === 'errno' || act === 'trace' ? EPERM : 0;
  if (act !== 'errno' && act !== 'trace') throw new SpecError(`${at} is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE`);
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_ERRNO) throw new SpecError(`${at} must be an errno number (0-${MAX_ERRNO})`);
  return v;
}

function arch(v: unknown, at: string): string {
  const s = str(v, at);
  const name = s.startsWith('SCMP_ARCH_') ? s.slice('SCMP_ARCH_'.length).toLowerCase() : '';
  if (!ARCHES.has(name)) throw new SpecError(`${at} "${s.slice(0, 64)}" is not a seccomp architecture (SCMP_ARCH_X86_64, ...)`);
  return name;
}

function syscallName(v: unknown, at: string): string {
  const s = str(v, at);
  if (!/^[a-z0-9_]{1,64}$/.test(s)) throw new SpecError(`${at} "${s.slice(0, 64)}" is not a syscall name`);
  return s;
}

function seccompArg(v: unknown, at: string): SeccompArg {
  const o = asObject(v, at);
  const index = o.index;
  if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= MAX_ARGS) {
    throw new SpecError(`${at}.index must be an integer from 0 to ${MAX_ARGS - 1}`);
  }
  const op = OPS[str(o.op, `${at}.op`)];
  if (op === undefined) throw new SpecError(`${at}.op "${String(o.op).slice(0, 64)}" is not one of ${Object.keys(OPS).join(', ')}`);
  return { index, value: u64(o.value, `${at}.value`), valueTwo: o.valueTwo === undefined ? '0' : u64(o.valueTwo, `${at}.valueTwo`), op };
}

function u64(v: unknown, at: string): string {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= 2 ** 64) throw new SpecError(`${at} must be an unsigned 64-bit integer`);
  return BigInt(v).toString();
}
