import { constants } from 'node:os';
import { invalidArgument } from './errors.js';

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
