// Bundles the host CLI (shim/runc/cli.ts → dist/hull.mjs), the containerd shim (shim/containerd/main.ts →
// dist/containerd-shim-hull-v2.mjs) and the guest agent (agent/main.ts → dist/agent.mjs) with
// esbuild: one ESM file each for Node 20. `.proto?raw` imports (protocol/proto-text.d.ts) are inlined as text, so
// the bundles carry their .proto files; native addons (*.node) stay external and are loaded at run time.
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// CJS dependencies (pino, protobufjs) call require(); ESM output has none, so define it, plus __filename/__dirname.
// `__hullT0`: ms since the process started (performance.now()) when the bundle's first line ran; the agent reports it
// under hull.debug=1 to split Node's own start-up from module evaluation.
const banner = [
  'const __hullT0 = performance.now();',
  "import { createRequire as __hullCreateRequire } from 'node:module';",
  "import { fileURLToPath as __hullFileURLToPath } from 'node:url';",
  "import { dirname as __hullDirname } from 'node:path';",
  'const require = __hullCreateRequire(import.meta.url);',
  'const __filename = __hullFileURLToPath(import.meta.url);',
  'const __dirname = __hullDirname(__filename);',
].join('\n');

/** Same behaviour as vite's `?raw`: the import's default export is the file's text. */
const rawTextPlugin = {
  name: 'raw-text',
  setup(build) {
    build.onResolve({ filter: /\?raw$/ }, (args) => ({
      path: path.resolve(args.resolveDir, args.path.slice(0, -'?raw'.length)),
      namespace: 'raw-text',
    }));
    build.onLoad({ filter: /.*/, namespace: 'raw-text' }, async (args) => ({
      contents: await readFile(args.path, 'utf8'),
      loader: 'text',
      watchFiles: [args.path],
    }));
  },
};

/**
 * shim/spec-validator-precompiled.ts becomes ajv's standalone code for shim/spec-schema.ts, compiled here with the
 * options shim/bundle.ts uses from source: no schema compile at each CLI or shim start.
 */
const specValidatorPlugin = {
  name: 'spec-validator',
  setup(build) {
    build.onLoad({ filter: /[\\/]shim[\\/]spec-validator-precompiled\.ts$/ }, async () => ({
      contents: await specValidatorCode(),
      loader: 'js',
      resolveDir: repo, // its require("ajv/dist/runtime/…") calls are bundled from node_modules
    }));
  },
};

let specValidatorText;
async function specValidatorCode() {
  if (specValidatorText) return specValidatorText;
  const schemaModule = await esbuild.build({
    entryPoints: [path.join(repo, 'shim', 'spec-schema.ts')], bundle: true, write: false, format: 'esm', platform: 'node', logLevel: 'error',
  });
  const { specSchema, specAjvOptions } = await import(`data:text/javascript;base64,${Buffer.from(schemaModule.outputFiles[0].text).toString('base64')}`);
  const { Ajv } = await import('ajv');
  const { default: standaloneCode } = await import('ajv/dist/standalone/index.js');
  const ajv = new Ajv({ ...specAjvOptions, code: { source: true, esm: true } });
  specValidatorText = standaloneCode(ajv, ajv.compile(specSchema));
  return specValidatorText;
}

// The guest agent's start-up snapshot entry is CommonJS: `node --build-snapshot` runs a script, not a module. It only
// ever runs in the guest, where it is /hull/agent-snapshot.cjs: import.meta.url (the addon loader's base) says so.
const snapshotBanner = "var __hullImportMetaUrl = 'file:///hull/agent-snapshot.cjs';";

const entries = [
  { in: 'shim/runc/cli.ts', out: 'dist/hull.mjs' },
  { in: 'agent/main.ts', out: 'dist/agent.mjs' },
  {
    in: 'agent/snapshot.ts',
    out: 'dist/agent-snapshot.cjs',
    options: { format: 'cjs', banner: { js: snapshotBanner }, define: { 'import.meta.url': '__hullImportMetaUrl' } },
  },
  { in: 'shim/containerd/main.ts', out: 'dist/containerd-shim-hull-v2.mjs' },
];

// esbuild escapes non-ASCII in strings, regexps and identifiers but keeps the comments it preserves (JSDoc on class
// members) as they are. One such character makes V8 hold the whole bundle's source as a two-byte string: 2.1 MiB
// instead of 1.1 for dist/hull.mjs, in every monitor and shim (docs/density.md). Escaping them in comments is harmless.
async function asciiOnly(file) {
  const text = await readFile(file, 'utf8');
  const ascii = text.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (ascii !== text) await writeFile(file, ascii);
}

// Each entry builds on its own, so a broken host CLI does not stop the agent bundle (and vice versa).
let failed = 0;
for (const entry of entries) {
  const input = path.join(repo, entry.in);
  if (!existsSync(input)) {
    console.warn(`bundle: ${entry.in} does not exist yet; skipping ${entry.out}`);
    continue;
  }
  try {
    await esbuild.build({
      entryPoints: [input],
      outfile: path.join(repo, entry.out),
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      sourcemap: 'linked',
      legalComments: 'none',
      banner: { js: banner },
      external: ['*.node'],
      plugins: [rawTextPlugin, specValidatorPlugin],
      logLevel: 'error',
      ...entry.options,
    });
    await asciiOnly(path.join(repo, entry.out));
    console.log(`bundle: ${entry.in} → ${entry.out}`);
  } catch {
    // esbuild has printed the errors already.
    console.error(`bundle: ${entry.out} failed`);
    failed++;
  }
}
if (failed > 0) process.exit(1);
