// Runs the libFuzzer target of native/vsock-backend (guest memory + ring state + packets, and vhost-user message
// sequences) for a bounded time. The seed corpus is written by the fuzz binary itself (HV_FUZZ_WRITE_SEEDS), so the
// ring layout lives in one place (native/vsock-backend/fuzz/fuzz_vsock.c).
// HULL_FUZZ_SECONDS sets the time budget (default 30).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const FUZZ = path.join(ROOT, 'build/native/vsock-backend-fuzz');
const SECONDS = Math.max(1, Number(process.env['HULL_FUZZ_SECONDS'] ?? 30) || 30);

describe('vsock backend fuzzing', () => {
  let dir = '';
  beforeAll(() => {
    if (!existsSync(FUZZ)) {
      execFileSync('make', ['-C', path.join(ROOT, 'native'), '-s', 'vsock-backend-fuzz'], { stdio: 'inherit' });
    }
    dir = mkdtempSync('/tmp/hvsk-fuzz-');
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`survives ${SECONDS} s of libFuzzer without a crash`, () => {
    const seeds = path.join(dir, 'seeds');
    const corpus = path.join(dir, 'corpus');
    const artifacts = path.join(dir, 'artifacts');
    for (const d of [seeds, corpus, artifacts]) mkdirSync(d);
    const w = spawnSync(FUZZ, [], { env: { ...process.env, HV_FUZZ_WRITE_SEEDS: seeds }, encoding: 'utf8' });
    expect(w.status, w.stderr).toBe(0);
    expect(readdirSync(seeds).length).toBeGreaterThanOrEqual(5);

    const r = spawnSync(FUZZ, [
      `-max_total_time=${SECONDS}`, '-timeout=10', '-rss_limit_mb=1024', '-print_final_stats=1',
      `-artifact_prefix=${artifacts}/`, corpus, seeds,
    ], { cwd: dir, encoding: 'utf8', timeout: (SECONDS + 60) * 1000, maxBuffer: 64 << 20 });
    const tail = r.stderr.slice(-4000);
    expect(r.status, tail).toBe(0);
    expect(r.stderr).toMatch(/Done \d+ runs/);
    const crashes = readdirSync(artifacts);
    expect(crashes, tail).toEqual([]);
    const runs = /stat::number_of_executed_units:\s*(\d+)/.exec(r.stderr);
    console.log(`vsock-backend-fuzz: ${runs?.[1] ?? '?'} runs in ${SECONDS} s`);
  }, (SECONDS + 90) * 1000);
});
