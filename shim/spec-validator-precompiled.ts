// Stands in for the OCI spec validator that scripts/bundle.mjs compiles at bundle time: the bundles get ajv's
// standalone code for shim/spec-schema.ts in this module's place. From source there is none, and shim/bundle.ts
// compiles the schema at first use.
import type { ValidateFunction } from 'ajv';

export const validate: ValidateFunction | undefined = undefined;
