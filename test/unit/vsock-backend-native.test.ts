// Runs the C unit tests of native/vsock-backend (ASan + UBSan build) and checks the daemon's command-line contract
// (docs/design.md): bad arguments give one usage line on stderr and exit status 2. Also its sandbox without a VM:
// the release build's processes as /proc shows them, and a forbidden syscall (test hook of the ASan build).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectSandboxed } from '../helpers/vsock-backend-sandbox.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const OUT = path.join(ROOT, 'build/native');
const TESTS = path.join(OUT, 'vsock-backend-tests');
const BACKEND = path.join(OUT, 'hull-vsock-backend');
const BACKEND_ASAN = path.join(OUT, 'hull-vsock-backend-asan');

describe('native vsock backend', () => {
  beforeAll(() => {
    // make is incremental: this only compiles what changed, and never tests stale binaries
    execFileSync('make', ['-C', path.join(ROOT, 'native'), '-s', 'vsock-backend', 'vsock-backend-asan', 'vsock-backend-tests'], {
      stdio: 'inherit',
    });
  });

  it('passes its C unit tests', () => {
    const r = spawnSync(TESTS, [], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stdout, r.stderr).toMatch(/^\d+ passed, 0 failed$/m);
    expect(r.status, r.stderr).toBe(0);
  });

  const bad: [string, string[]][] = [
    ['no arguments', []],
    ['an unknown option', ['--socket', '/tmp/a', '--uds-path', '/tmp/b', '--guest-cid', '3', '--bogus']],
    ['a missing --guest-cid', ['--socket', '/tmp/a', '--uds-path', '/tmp/b']],
    ['a reserved CID', ['--socket', '/tmp/a', '--uds-path', '/tmp/b', '--guest-cid', '2']],
    ['a non-numeric CID', ['--socket', '/tmp/a', '--uds-path', '/tmp/b', '--guest-cid', '3x']],
    ['a log level out of range', ['--socket', '/tmp/a', '--uds-path', '/tmp/b', '--guest-cid', '3', '--log-level', '4']],
    ['an option without value', ['--socket', '/tmp/a', '--uds-path', '/tmp/b', '--guest-cid']],
    ['a worker id of 0 (root)', ['--socket', '/tmp/a', '--uds-path', '/tmp/b', '--guest-cid', '3', '--worker-id', '0']],
    ['a worker id out of range', ['--socket', '/tmp/a', '--uds-path', '/tmp/b', '--guest-cid', '3', '--worker-id', '4294967295']],
    ['a too long socket path', ['--socket', `/tmp/${'x'.repeat(200)}`, '--uds-path', '/tmp/b', '--guest-cid', '3']],
  ];
  for (const [what, args] of bad) {
    it(`rejects ${what} with one usage line and exit 2`, () => {
      const r = spawnSync(BACKEND, args, { encoding: 'utf8', timeout: 10_000 });
      expect(r.status).toBe(2);
      expect(r.stdout).toBe('');
      const lines = r.stderr.split('\n').filter(Boolean);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^hull-vsock-backend: .*usage: hull-vsock-backend --socket/);
    });
  }

  it('prints READY, runs sandboxed, exits 0 on SIGTERM and removes both sockets', async () => {
    const dir = mkdtempSync('/tmp/hvsk-cli-');
    try {
      const vu = path.join(dir, 'vu.sock');
      const uds = path.join(dir, 'v.sock');
      const { spawn } = await import('node:child_process');
      // The worker's uid: the sandbox's VMM uid, as hull passes it (docs/confinement.md).
      const workerId = 1_000_065_001;
      const p = spawn(BACKEND, ['--socket', vu, '--uds-path', uds, '--guest-cid', '3', '--worker-id', String(workerId)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
      for (let i = 0; i < 100 && !out.includes('READY\n'); i++) await new Promise((r) => setTimeout(r, 50));
      expect(out).toBe('READY\n');
      expect(existsSync(vu) && existsSync(uds)).toBe(true);
      const worker = expectSandboxed(p.pid!, workerId);
      p.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(existsSync(vu) || existsSync(uds)).toBe(false);
      expect(existsSync(`/proc/${worker}`), 'the worker outlived the broker').toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is killed by a syscall outside its seccomp allowlist, reported by the broker, sockets removed', () => {
    const dir = mkdtempSync('/tmp/hvsk-cli-');
    try {
      const vu = path.join(dir, 'vu.sock');
      const uds = path.join(dir, 'v.sock');
      const r = spawnSync(BACKEND_ASAN, ['--socket', vu, '--uds-path', uds, '--guest-cid', '3'], {
        encoding: 'utf8',
        timeout: 20_000,
        env: { ...process.env, HV_TEST_FORBIDDEN_SYSCALL: '1' },
      });
      expect(r.status, r.stderr).toBe(1);
      expect(r.stdout).toBe(''); // killed before READY
      expect(r.stderr).toMatch(/worker killed by signal 31 .*seccomp allowlist/);
      expect(existsSync(vu) || existsSync(uds)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
