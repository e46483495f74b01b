// pino to stderr (the guest console), synchronous so nothing is lost right before power-off. Terse: no pid or
// hostname in every line; `hull.debug=1` on the kernel command line turns on debug lines.
import { readFileSync } from 'node:fs';
import pino, { type Logger } from 'pino';

export function kernelDebugFlag(cmdlinePath = '/proc/cmdline'): boolean {
  try {
    return readFileSync(cmdlinePath, 'utf8').split(/\s+/).includes('hull.debug=1');
  } catch {
    return false;
  }
}

export function createLogger(level: string): Logger {
  return pino(
    { name: 'hull-agent', level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ fd: 2, sync: true }),
  );
}
