// The `hull pool` commands as the CLI (shim/runc/cli.ts) calls them: flags checked before anything exists, so bad
// input leaves nothing behind.
import type { Logger } from 'pino';
import { invalidArgument } from '../errors.js';
import { createLogger, type LogFormat } from '../log.js';
import { MAX_NICS } from '../sandbox/network/plan.js';
import { withHeadroom, type VmSize } from '../sandbox/vm-sizing.js';
import { poolSettings } from '../config/pool-defaults.js';
import { configuredLogLevel } from '../config/values.js';
import { servePool } from './serve.js';

export { printPoolStatus } from './status.js';

export interface PoolServeFlags {
  size?: string;
  vcpus?: string;
  memory?: string;
  nics?: string;
}

/** A whole number from a flag: at least `min`, written in plain digits (no 1e3, no 0x10, no 1.5). */
function count(flag: string, value: string, min: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw invalidArgument(`${flag} "${value}" must be a whole number of at least ${min}`);
  }
  return n;
}

/** The shape of a pooled VM: the flags, else config/pool-defaults.ts (env, [pool], what an unlimited container gets). */
function pooledVmShape(flags: PoolServeFlags): { size: number; vmSize: VmSize; nics: number } {
  const settings = poolSettings({
    ...(flags.size === undefined ? {} : { size: count('--size', flags.size, 0) }),
    ...(flags.vcpus === undefined ? {} : { vcpus: count('--vcpus', flags.vcpus, 1) }),
    ...(flags.memory === undefined ? {} : { memoryMiB: count('--memory', flags.memory, 128) }),
    ...(flags.nics === undefined ? {} : { nics: count('--nics', flags.nics, 0) }),
  });
  const size = settings.size.value;
  if (size === undefined) throw invalidArgument('pool serve needs --size (or pool.size in the config file, docs/config.md)');
  return { size, vmSize: withHeadroom({ vcpus: settings.vcpus.value, memoryMiB: settings.memoryMiB.value }), nics: settings.nics.value };
}

/**
 * The pool server's log: the --log file, or stderr (journald reads it under systemd) — at log.level of the config file
 * (default info) unless --debug, where other commands log nothing without --log: a long-running server is expected to
 * say what it does.
 */
export function poolLogger(flags: { log?: string; logFormat: LogFormat; debug: boolean }): Logger {
  const logger = createLogger({ ...(flags.log ? { file: flags.log } : {}), format: flags.logFormat, debug: true });
  logger.level = configuredLogLevel(flags.debug).value;
  return logger;
}

/** `hull pool serve`: serves until SIGTERM/SIGINT and returns the exit code once drained. */
export function poolServe(root: string, logger: Logger, flags: PoolServeFlags): Promise<number> {
  const { size, vmSize, nics } = pooledVmShape(flags);
  if (nics > MAX_NICS) throw invalidArgument(`--nics ${nics}: a microVM takes at most ${MAX_NICS}`);
  return servePool({ root, size, vmSize, nics, logger });
}
