// What /etc/hull/config.toml may hold: every section and key, the kind of value each takes, and the check that
// turns a parsed TOML document into a FileConfig or one ConfigError. The file holds only what the operator set: the
// built-in defaults stay with the code that uses them (vm-sizing.ts, acceleration.ts, …) and docs/config.md lists
// them; `hull env` shows the values in force and where each came from. Hand checks, not ajv: this runs on every
// `hull` call, and compiling a schema would cost more than reading the file.
import { ACCEL_CHOICES, type RequestedAccel } from '../../hypervisor/acceleration.js';
import { VmmUidRangeError } from '../../hypervisor/errors.js';
import { parseUidRange } from '../../hypervisor/vmm-uid.js';
import { MAX_NICS } from '../sandbox/network/plan.js';
import { ConfigError } from './errors.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A config file's settings, as written (snake_case, as in the file); absent keys are absent. */
export interface FileConfig {
  vm: { vcpus?: number; memory_mib?: number; max_memory_mib?: number; accel?: RequestedAccel; max_concurrent_boots?: number };
  pool: { size?: number; vcpus?: number; memory_mib?: number; nics?: number };
  log: { level?: LogLevel };
  paths: { root?: string; guest_dir?: string };
  vmm: { uid_range?: string };
}

type KeySpec =
  | { kind: 'int'; min: number; max: number }
  | { kind: 'choice'; choices: readonly string[] }
  | { kind: 'abs-path' }
  | { kind: 'uid-range' };

const MAX_VCPUS = 64;
export const MIN_MEMORY_MIB = 128;
/** 1 TiB: a bigger number is more likely bytes or KiB written by mistake than a VM. */
export const MAX_MEMORY_MIB = 1 << 20;

const vcpus: KeySpec = { kind: 'int', min: 1, max: MAX_VCPUS };
const memory: KeySpec = { kind: 'int', min: MIN_MEMORY_MIB, max: MAX_MEMORY_MIB };
/** Cold boots at once on the host (shim/sandbox/boot-slots.ts); more than 1024 is no admission at all. */
export const MAX_CONCURRENT_BOOTS = 1024;

/** Every section and key the file may have (docs/config.md documents each one). */
export const CONFIG_SCHEMA: { readonly [S in keyof FileConfig]-?: { readonly [K in keyof FileConfig[S]]-?: KeySpec } } = {
  vm: {
    vcpus,
    memory_mib: memory,
    max_memory_mib: memory,
    accel: { kind: 'choice', choices: ACCEL_CHOICES },
    max_concurrent_boots: { kind: 'int', min: 1, max: MAX_CONCURRENT_BOOTS },
  },
  pool: { size: { kind: 'int', min: 0, max: 1024 }, vcpus, memory_mib: memory, nics: { kind: 'int', min: 0, max: MAX_NICS } },
  log: { level: { kind: 'choice', choices: LOG_LEVELS } },
  paths: { root: { kind: 'abs-path' }, guest_dir: { kind: 'abs-path' } },
  vmm: { uid_range: { kind: 'uid-range' } },
};

const isTable = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);

/** A TOML value as the error quotes it. */
const shown = (v: unknown): string => (Array.isArray(v) ? 'an array' : isTable(v) ? 'a table' : JSON.stringify(v) ?? String(v));

/** The value of `key` checked against `spec`, or the problem with it. */
function checkValue(file: string, key: string, spec: KeySpec, value: unknown): number | string {
  const fail = (problem: string): never => {
    throw new ConfigError(file, key, `${problem}, got ${shown(value)}`);
  };
  switch (spec.kind) {
    case 'int':
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < spec.min || value > spec.max) {
        return fail(`must be a whole number from ${spec.min} to ${spec.max}`);
      }
      return value;
    case 'choice':
      if (typeof value !== 'string' || !spec.choices.includes(value)) return fail(`must be one of ${spec.choices.map((c) => `"${c}"`).join(', ')}`);
      return value;
    case 'abs-path':
      if (typeof value !== 'string' || !value.startsWith('/') || value.includes('\0')) return fail('must be an absolute path (a string starting with /)');
      return value;
    case 'uid-range':
      if (typeof value !== 'string') return fail('must be a string "FIRST-LAST"');
      try {
        parseUidRange(value, key);
      } catch (err) {
        if (err instanceof VmmUidRangeError) throw new ConfigError(file, undefined, err.message, { cause: err });
        throw err;
      }
      return value;
  }
}

/** Checks a parsed TOML document; the first problem found is thrown as a ConfigError naming `file` and the key. */
export function checkConfig(file: string, doc: Record<string, unknown>): FileConfig {
  const config: FileConfig = { vm: {}, pool: {}, log: {}, paths: {}, vmm: {} };
  const sections = Object.keys(CONFIG_SCHEMA) as (keyof FileConfig)[];
  for (const [name, body] of Object.entries(doc)) {
    const section = sections.find((s) => s === name);
    if (section === undefined) {
      const what = isTable(body) ? `[${name}]` : name;
      throw new ConfigError(file, what, `unknown ${isTable(body) ? 'section' : 'top-level key'}; the sections are ${sections.map((s) => `[${s}]`).join(', ')}`);
    }
    if (!isTable(body)) throw new ConfigError(file, name, `must be a section ([${name}]), got ${shown(body)}`);
    const specs: Record<string, KeySpec> = CONFIG_SCHEMA[section];
    const out: Record<string, unknown> = config[section];
    for (const [key, value] of Object.entries(body)) {
      const spec = specs[key];
      if (spec === undefined) throw new ConfigError(file, `${name}.${key}`, `unknown key; [${name}] has ${Object.keys(specs).join(', ')}`);
      out[key] = checkValue(file, `${name}.${key}`, spec, value);
    }
  }
  return config;
}
