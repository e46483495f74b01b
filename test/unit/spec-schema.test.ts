// shim/spec-schema.ts is compiled without ajv's meta-schema check at run time (shim/bundle.ts: it costs ~40 ms of
// every create); the check happens here instead, in strict mode, so a mistyped keyword fails the build.
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { specSchema } from '../../shim/spec-schema.js';

describe('the config.json schema', () => {
  it('is a valid JSON schema (draft-07 meta-schema), with no keyword ajv does not know', () => {
    const ajv = new Ajv({ strict: true, strictTypes: false, strictTuples: false, strictRequired: false });
    expect(ajv.validateSchema(specSchema), JSON.stringify(ajv.errors)).toBe(true);
    expect(() => ajv.compile(specSchema)).not.toThrow();
  });
});
