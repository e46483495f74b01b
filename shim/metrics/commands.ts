// `hull metrics` as the CLI (shim/runc/cli.ts) calls it: one scrape to stdout (a textfile collector's cron job), or
// with --listen an HTTP endpoint for Prometheus. docs/metrics.md.
import type { Logger } from 'pino';
import { hullContainerdRoot } from '../containerd/address.js';
import { GUEST_TIMEOUT_MS, scrape } from './collect.js';
import { DEFAULT_LISTEN, parseListen } from './listen.js';
import { serveUntilSignal } from './serve.js';

export interface MetricsFlags {
  /** true: --listen without a value (the default address). */
  listen?: string | boolean;
}

export async function metrics(root: string, logger: Logger, flags: MetricsFlags): Promise<number> {
  const once = (): Promise<string> => scrape({ root, containerdRoot: hullContainerdRoot(), timeoutMs: GUEST_TIMEOUT_MS, logger });
  if (flags.listen === undefined || flags.listen === false) {
    process.stdout.write(await once());
    return 0;
  }
  const address = parseListen(flags.listen === true ? DEFAULT_LISTEN : flags.listen);
  return serveUntilSignal(address, once, logger);
}
