import { constants } from 'node:os';
import { invalidArgument } from '../errors.js';

/** Accepts what runc's kill accepts: a number, a name, or a SIG-prefixed name, in any case. */
export function parseSignal(raw: string | undefined): number {
  if (raw === undefined || raw === '') return constants.signals.SIGTERM;
  if (/^\d+$/.test(raw)) {
    const value = Number(raw);
    if (value < 1 || value > 64) throw invalidArgument(`invalid signal "${raw}"`);
    return value;
  }
  const upper = raw.toUpperCase();
  const name = (upper.startsWith('SIG') ? upper : `SIG${upper}`) as keyof typeof constants.signals;
  const value = constants.signals[name];
  if (value === undefined) throw invalidArgument(`invalid signal "${raw}"`);
  return value;
}

/** What `hull run` and the monitor pass on to the container, as `runc run` does (SIGKILL and SIGSTOP cannot be caught). */
const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

/**
 * Sends the signals this process receives to the container instead of dying of them: the process stands for the
 * container, and dying would leave the VM running without its owner. Returns the function that stops forwarding.
 */
export function forwardSignals(send: (signal: number) => Promise<void>, onError: (err: unknown) => void): () => void {
  const handlers = FORWARDED_SIGNALS.map((name) => {
    const handler = (): void => void send(constants.signals[name]).catch(onError);
    process.on(name, handler);
    return [name, handler] as const;
  });
  return () => {
    for (const [name, handler] of handlers) process.off(name, handler);
  };
}
