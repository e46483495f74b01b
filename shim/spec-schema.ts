// JSON schema for the parts of config.json that hull depends on. ajv reports the first failing field by its JSON
// pointer, which becomes the one-line error a user sees.

/** How ajv compiles it, at bundle time (scripts/bundle.mjs) and, from source, at first use (shim/bundle.ts). The schema
 * is hull's own and checked against the meta-schema by a unit test, so ajv skips that pass. */
export const specAjvOptions = { allErrors: false, strict: false, validateSchema: false } as const;
export const specSchema = {
  type: 'object',
  required: ['ociVersion', 'root'],
  properties: {
    ociVersion: { type: 'string', minLength: 1 },
    root: {
      type: 'object',
      required: ['path'],
      properties: { path: { type: 'string', minLength: 1 }, readonly: { type: 'boolean' } },
    },
    process: {
      type: 'object',
      required: ['args', 'cwd', 'user'],
      properties: {
        terminal: { type: 'boolean' },
        args: { type: 'array', minItems: 1, items: { type: 'string' } },
        env: { type: 'array', items: { type: 'string' } },
        cwd: { type: 'string', minLength: 1 },
        user: {
          type: 'object',
          required: ['uid', 'gid'],
          properties: {
            uid: { type: 'integer', minimum: 0 },
            gid: { type: 'integer', minimum: 0 },
            additionalGids: { type: 'array', items: { type: 'integer', minimum: 0 } },
          },
        },
        rlimits: {
          type: 'array',
          items: {
            type: 'object',
            required: ['type', 'hard', 'soft'],
            properties: { type: { type: 'string' }, hard: { type: 'integer' }, soft: { type: 'integer' } },
          },
        },
      },
    },
    hostname: { type: 'string' },
    mounts: {
      type: 'array',
      items: {
        type: 'object',
        required: ['destination'],
        properties: {
          destination: { type: 'string', minLength: 1 },
          type: { type: 'string' },
          source: { type: 'string' },
          options: { type: 'array', items: { type: 'string' } },
        },
      },
    },
    annotations: { type: 'object', additionalProperties: { type: 'string' } },
    linux: {
      type: 'object',
      properties: {
        resources: {
          type: 'object',
          properties: {
            memory: {
              type: 'object',
              properties: { limit: { type: 'integer' }, reservation: { type: 'integer' }, swap: { type: 'integer' } },
            },
            cpu: {
              type: 'object',
              properties: {
                shares: { type: 'integer', minimum: 0 },
                quota: { type: 'integer' },
                period: { type: 'integer', minimum: 0 },
                cpus: { type: 'string' },
              },
            },
            pids: { type: 'object', properties: { limit: { type: 'integer' } } },
          },
        },
        namespaces: {
          type: 'array',
          items: {
            type: 'object',
            required: ['type'],
            properties: { type: { type: 'string' }, path: { type: 'string' } },
          },
        },
      },
    },
  },
} as const;
