// Values that come back from the guest agent are untrusted: the guest may be hostile. These turn them into values
// that are safe to use on the host (exit codes, text shown on a terminal).

/** An exit status as the host can report it: 0..255, anything else (a lying guest) becomes 255. */
export function exitStatusFromGuest(value: unknown): number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 255 ? value : 255;
}

/** Text for a terminal: control characters (escape sequences) replaced, length capped. */
export function printableFromGuest(value: unknown, max = 256): string {
  const text = typeof value === 'string' ? value : '';
  // eslint-disable-next-line no-control-regex
  return text.slice(0, max).replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

/** A guest pid: a positive 32-bit integer, else 0 (unknown). */
export function pidFromGuest(value: unknown): number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 && value < 2 ** 31 ? value : 0;
}
