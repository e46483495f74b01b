// Whether a suite's prerequisites (root, QEMU, containerd, CNI plugins, podman, Docker, the guest image, ...) are on
// this machine. A test that depends on the machine never passes by skipping: a missing prerequisite is a failing test
// whose one-line message names what to install. Outside CI, HULL_TEST_ALLOW_MISSING=1 opts out: the suite is then
// skipped with a warning instead. Under CI (where scripts/setup.sh installs everything) the opt-out does not apply.
import { test } from 'vitest';

/** The environment variable that lets a developer's machine skip suites whose prerequisites are missing. */
export const ALLOW_MISSING_ENV = 'HULL_TEST_ALLOW_MISSING';

/** One or more prerequisites of a suite are missing; the message is one line naming them and how to get them. */
export class MissingPrerequisiteError extends Error {
  constructor(
    readonly suite: string,
    readonly missing: string[],
  ) {
    super(
      `${suite}: missing ${missing.join(', ')}; install them (./scripts/setup.sh installs everything)` +
        (process.env.CI ? '' : `, or set ${ALLOW_MISSING_ENV}=1 to skip this suite`),
    );
    this.name = new.target.name;
  }
}

/** True when the developer opted out of failing on missing prerequisites (never under CI). */
export function missingPrerequisitesAllowed(env: NodeJS.ProcessEnv = process.env): boolean {
  return !env.CI && env[ALLOW_MISSING_ENV] === '1';
}

/**
 * Each check is a description of a missing prerequisite (what it is and what installs it), or false-ish when it is
 * here. Returns true when nothing is missing. Otherwise registers one failing test that says what is missing and
 * returns false (the caller's `describe.runIf` then leaves the suite out), or, with the opt-out, only warns.
 */
export function prerequisitesMet(suite: string, checks: (string | false | null | undefined)[]): boolean {
  const missing = checks.filter((c): c is string => typeof c === 'string' && c.length > 0);
  if (missing.length === 0) return true;
  if (missingPrerequisitesAllowed()) {
    console.warn(`${suite} skipped (${ALLOW_MISSING_ENV}=1): missing ${missing.join(', ')}`);
  } else {
    const error = new MissingPrerequisiteError(suite, missing);
    error.stack = `${error.name}: ${error.message}`; // the line is the whole report: no frames into this helper
    test(`${suite}: every prerequisite is installed`, () => {
      throw error;
    });
  }
  return false;
}

/** The check for suites that need root: `prerequisitesMet(suite, [needRoot(), ...])`. */
export function needRoot(): string | false {
  return process.getuid?.() !== 0 && 'root (run the tests as root)';
}
