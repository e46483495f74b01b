// test/helpers/prerequisites.ts: a missing prerequisite fails with one line naming it, unless the developer opted out
// with HULL_TEST_ALLOW_MISSING=1, which CI ignores.
import { describe, expect, it } from 'vitest';
import { ALLOW_MISSING_ENV, MissingPrerequisiteError, missingPrerequisitesAllowed } from '../helpers/prerequisites.js';

describe('test prerequisites', () => {
  it('allows missing prerequisites only when opted out with =1, and never under CI', () => {
    expect(missingPrerequisitesAllowed({})).toBe(false);
    expect(missingPrerequisitesAllowed({ [ALLOW_MISSING_ENV]: '1' })).toBe(true);
    expect(missingPrerequisitesAllowed({ [ALLOW_MISSING_ENV]: '0' })).toBe(false);
    expect(missingPrerequisitesAllowed({ [ALLOW_MISSING_ENV]: '1', CI: 'true' })).toBe(false);
  });

  it('names the suite, each missing prerequisite and how to get it, in one line', () => {
    const err = new MissingPrerequisiteError('containerd tests', ['containerd (apt-get install containerd)', 'ctr (apt-get install containerd)']);
    expect(err.message).not.toContain('\n');
    expect(err.message).toMatch(/^containerd tests: missing containerd \(apt-get install containerd\), ctr \(apt-get install containerd\); install them/);
    expect(err.suite).toBe('containerd tests');
  });
});
