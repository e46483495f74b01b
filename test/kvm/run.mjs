#!/usr/bin/env node
// `npm run test:kvm`: the end-to-end suite under KVM with the kernel's vhost-vsock (test/kvm/*.kvm.ts, run by
// vitest with test/kvm/vitest.config.ts; `npm test` never picks these files up). First asks preflight.ts whether this
// host can run it: where it cannot (no usable KVM, no vhost_vsock) it prints one line saying why and exits 0, or 1
// with HULL_TEST_REQUIRE_KVM=1; a set-up problem (not root, something not built) is one line and exit 1.
// Arguments are passed on to vitest (e.g. a file filter).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildSync } from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
// The bundle lives in a temp dir, where the addon's own search (next to the module) would not find the build.
const addon = path.join(repo, 'native', 'addon', 'build', 'Release', 'hull_native.node');
if (!process.env.HULL_NATIVE_ADDON && existsSync(addon)) process.env.HULL_NATIVE_ADDON = addon;

const tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-kvm-preflight-'));
let preflight;
try {
  const out = path.join(tmp, 'preflight.mjs');
  buildSync({ entryPoints: [path.join(here, 'preflight.ts')], outfile: out, bundle: true, platform: 'node', format: 'esm', logLevel: 'error' });
  preflight = (await import(pathToFileURL(out).href)).kvmSuitePreflight();
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

if (preflight.kind === 'host') {
  const required = process.env.HULL_TEST_REQUIRE_KVM === '1';
  process.stdout.write(`hull KVM suite: not run: ${preflight.why}${required ? ' (HULL_TEST_REQUIRE_KVM=1: failing)' : ''}\n`);
  process.exit(required ? 1 : 0);
}
if (preflight.kind === 'setup') {
  process.stderr.write(`hull KVM suite: cannot start: ${preflight.why}\n`);
  process.exit(1);
}
const vitest = path.join(repo, 'node_modules', '.bin', 'vitest');
const r = spawnSync(vitest, ['run', '--config', path.join(here, 'vitest.config.ts'), ...process.argv.slice(2)], { stdio: 'inherit', cwd: repo });
process.exit(r.status ?? 1);
