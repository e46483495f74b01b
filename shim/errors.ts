// Typed errors of the host side. Each carries a one-line message meant for a person, and the exit code the CLI
// uses. Errors become exit codes (or ttrpc codes in the containerd shim) only at the edge.

export type HullErrorKind =
  | 'invalid-argument'
  | 'not-found'
  | 'already-exists'
  | 'failed-precondition'
  | 'unavailable'
  | 'internal';

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

export const invalidArgument = (message: string): HullError => new HullError('invalid-argument', message);
export const notFound = (message: string): HullError => new HullError('not-found', message);
export const alreadyExists = (message: string): HullError => new HullError('already-exists', message);
export const failedPrecondition = (message: string): HullError => new HullError('failed-precondition', message);

/** One line, whatever the error was: multi-line messages (console tails) keep only what a terminal can show. */
export function oneLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/\s*\n\s*/g, ' | ').trim();
}
