// Typed errors of the host side. Each carries a one-line message meant for a person, and the exit code the CLI
// uses. Errors become exit codes (or ttrpc codes in the containerd shim) only at the edge.
import { HypervisorError, type ErrorKind } from '../hypervisor/errors.js';

/** The kinds of hull's errors: the VMM layer's HypervisorError carries the same ones. */
export type HullErrorKind = ErrorKind;

export class HullError extends Error {
  constructor(
    readonly kind: HullErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'HullError';
  }
}

/**
 * The kind an error was raised with: a HullError's, or a HypervisorError's (the VMM layer chooses one where it raises
 * it); undefined for any other error, which the edges treat as unknown (containerd) or internal (the CLI's log).
 */
export function errorKind(err: unknown): HullErrorKind | undefined {
  return err instanceof HullError || err instanceof HypervisorError ? err.kind : undefined;
}

export const invalidArgument = (message: string): HullError => new HullError('invalid-argument', message);
export const notFound = (message: string): HullError => new HullError('not-found', message);
export const alreadyExists = (message: string): HullError => new HullError('already-exists', message);
export const failedPrecondition = (message: string): HullError => new HullError('failed-precondition', message);

/** Longest message oneLine returns: error texts may quote the guest (agent replies, console tails), which is untrusted. */
export const ONE_LINE_MAX = 16 * 1024;

/**
 * One line, whatever the error was: multi-line messages (console tails) keep only what a terminal can show. Other
 * control characters (escape sequences a hostile guest put in an error reply) become '?', and the length is capped.
 */
export function oneLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const line = message
    .replace(/\s*\n\s*/g, ' | ')
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u001f\u007f-\u009f]/g, '?')
    .trim();
  return line.length > ONE_LINE_MAX ? `${line.slice(0, ONE_LINE_MAX)}…` : line;
}
