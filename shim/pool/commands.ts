// The `hull pool` commands as the CLI (shim/runc/cli.ts) calls them: flags checked before anything exists, so bad
// input leaves nothing behind.
import type { Logger } from 'pino';
import { invalidArgument } from '../errors.js';
import { createLogger, type LogFormat } from '../log.js';
import { vmSizeFor, type VmSize } from '../sandbox/vm-sizing.js';
import { servePool } from './serve.js';

export { printPoolStatus } from './status.js';

export interface PoolServeFlags {
  size: string;
  vcpus?: string;
  memory?: string;
}

/** A whole number from a flag: at least `min`, written in plain digits (no 1e3, no 0x10, no 1.5). */
function count(flag: string, value: string, min: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw invalidArgument(`${flag} "${value}" must be a whole number of at least ${min}`);
  }
  return n;
}

/** The VM size of a pooled VM: the flags, else what hull gives a container whose spec sets no limits. */
function pooledVmSize(flags: PoolServeFlags): VmSize {
  const unlimited = vmSizeFor({ ociVersion: '1.0.2', root: { path: 'rootfs' } });
  return {
    vcpus: flags.vcpus === undefined ? unlimited.vcpus : count('--vcpus', flags.vcpus, 1),
    memoryMiB: flags.memory === undefined ? unlimited.memoryMiB : count('--memory', flags.memory, 128),
  };
}

/**
 * The pool server's log: the --log file, or stderr (journald reads it under systemd) — at info level unless --debug,
 * where other commands log nothing without --log: a long-running server is expected to say what it does.
 */
export function poolLogger(flags: { log?: string; logFormat: LogFormat; debug: boolean }): Logger {
  const logger = createLogger({ ...(flags.log ? { file: flags.log } : {}), format: flags.logFormat, debug: true });
  if (!flags.debug) logger.level = 'info';
  return logger;
}

/** `hull pool serve`: serves until SIGTERM/SIGINT and returns the exit code once drained. */
export function poolServe(root: string, logger: Logger, flags: PoolServeFlags): Promise<number> {
  const size = count('--size', flags.size, 0);
  const vmSize = pooledVmSize(flags);
  return servePool({ root, size, vmSize, logger });
}
