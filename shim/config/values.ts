// The settings the config file feeds, each resolved in one place with the precedence hull keeps everywhere:
// flag > environment variable > config file > built-in default. Callers that take a flag pass it in; each result says
// where its value came from, for `hull env`.
import { availableParallelism } from 'node:os';
import { requestedAccel, type RequestedAccel } from '../../hypervisor/acceleration.js';
import { invalidArgument } from '../errors.js';
import { DEFAULT_ROOT } from '../sandbox/paths.js';
import { hullConfig } from './load.js';
import { MAX_CONCURRENT_BOOTS, MAX_MEMORY_MIB, MIN_MEMORY_MIB, type LogLevel } from './schema.js';

export type Source = 'flag' | 'env' | 'file' | 'default';

export interface Resolved<T> {
  value: T;
  source: Source;
}

/** flag > env > file > default, for values already checked. */
export function resolve<T>(layers: { flag?: T; env?: T; file?: T; fallback: T }): Resolved<T> {
  if (layers.flag !== undefined) return { value: layers.flag, source: 'flag' };
  if (layers.env !== undefined) return { value: layers.env, source: 'env' };
  if (layers.file !== undefined) return { value: layers.file, source: 'file' };
  return { value: layers.fallback, source: 'default' };
}

/** The accelerator asked for: $HULL_ACCEL (checked), else vm.accel, else auto. */
export function configuredAccel(): Resolved<RequestedAccel> {
  const env = process.env['HULL_ACCEL'] ? requestedAccel() : undefined;
  return resolve({ env, file: hullConfig().values.vm.accel, fallback: 'auto' });
}

/** The default --root of the CLI (and the root whose pool the containerd shim takes VMs from). */
export function configuredRoot(flag?: string): Resolved<string> {
  return resolve({ flag, file: hullConfig().values.paths.root, fallback: DEFAULT_ROOT });
}

/** The level of the logs hull writes (a --log file, the pool server's, the containerd shim's); --debug means debug. */
export function configuredLogLevel(debugFlag = false): Resolved<LogLevel> {
  return resolve<LogLevel>({ flag: debugFlag ? 'debug' : undefined, file: hullConfig().values.log.level, fallback: 'info' });
}

export const MAX_CONCURRENT_BOOTS_ENV = 'HULL_MAX_CONCURRENT_BOOTS';
export const MAX_MEMORY_ENV = 'HULL_MAX_MEMORY_MIB';

/** $name as a whole number from min to max, or undefined when unset; anything else is a one-line error. */
function envInt(name: string, min: number, max: number): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min || value > max) throw invalidArgument(`${name}="${raw}" must be a whole number from ${min} to ${max}`);
  return value;
}

/**
 * How many VMs may boot cold at once on this host, across all hull processes (shim/sandbox/boot-slots.ts):
 * $HULL_MAX_CONCURRENT_BOOTS, else vm.max_concurrent_boots, else the host's CPU count (a TCG boot keeps a CPU busy).
 */
export function configuredMaxConcurrentBoots(): Resolved<number> {
  const env = envInt(MAX_CONCURRENT_BOOTS_ENV, 1, MAX_CONCURRENT_BOOTS);
  return resolve({ env, file: hullConfig().values.vm.max_concurrent_boots, fallback: availableParallelism() });
}

/**
 * The most guest RAM a VM may grow to by Update (docs/density.md "Memory that can grow"): $HULL_MAX_MEMORY_MIB, else
 * vm.max_memory_mib, else 0: VMs boot at their size and cannot grow. Headroom is not free: the guest's page
 * array for it (1/64 of it) is touched at boot, and the balloon that holds it is inflated during boot.
 */
export function configuredMaxMemoryMiB(): Resolved<number> {
  return resolve({ env: envInt(MAX_MEMORY_ENV, MIN_MEMORY_MIB, MAX_MEMORY_MIB), file: hullConfig().values.vm.max_memory_mib, fallback: 0 });
}
