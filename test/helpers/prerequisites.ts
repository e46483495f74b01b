import { expect, test } from 'vitest';

/**
 * Whether a suite's prerequisites are here. On a developer's machine a missing one skips the suite and says why;
 * under CI (where scripts/setup.sh installs everything) it is a failing test, never a silent skip.
 */
export function prerequisitesMet(suite: string, checks: (string | false | null | undefined)[]): boolean {
  const missing = checks.filter((c): c is string => typeof c === 'string' && c.length > 0);
  if (missing.length === 0) return true;
  if (process.env.CI) {
    test(`${suite}: every prerequisite is installed`, () => expect(missing).toEqual([]));
  } else {
    console.warn(`${suite} skipped: missing ${missing.join(', ')}`);
  }
  return false;
}
