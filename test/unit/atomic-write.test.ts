// hypervisor/atomic-write.ts: the content and exact mode land, a failed write leaves no temp file, and writers in
// separate processes racing on one file never leave a reader a torn file (each read is one writer's whole content).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildSync } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileAtomic } from '../../hypervisor/atomic-write.js';

const HELPER = path.resolve(import.meta.dirname, '../../hypervisor/atomic-write.ts');
let tmp: string;

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-atomic-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

function freshDir(name: string): string {
  const dir = path.join(tmp, name);
  mkdirSync(dir);
  return dir;
}

describe('writeFileAtomic', () => {
  it('writes the content with exactly the mode asked for, whatever the umask, and leaves only the target', () => {
    const dir = freshDir('content');
    const file = path.join(dir, 'state.json');
    const old = process.umask(0o077);
    try {
      writeFileAtomic(file, '{"a":1}', 0o644);
    } finally {
      process.umask(old);
    }
    expect(readFileSync(file, 'utf8')).toBe('{"a":1}');
    expect(statSync(file).mode & 0o777).toBe(0o644);
    writeFileAtomic(file, Buffer.from('second'), 0o600);
    expect(readFileSync(file, 'utf8')).toBe('second');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['state.json']);
  });

  it('resolves a relative path against the working directory', () => {
    const dir = freshDir('relative');
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      writeFileAtomic('pid', '1234', 0o644);
    } finally {
      process.chdir(cwd);
    }
    expect(readFileSync(path.join(dir, 'pid'), 'utf8')).toBe('1234');
    expect(readdirSync(dir)).toEqual(['pid']);
  });

  it('fails with the file system error and leaves no temp file when the rename fails', () => {
    const dir = freshDir('rename-fails');
    const target = path.join(dir, 'target');
    mkdirSync(target);
    writeFileSync(path.join(target, 'inside'), 'x');
    expect(() => writeFileAtomic(target, 'data', 0o600)).toThrow(expect.objectContaining({ code: expect.stringMatching(/^(EISDIR|ENOTEMPTY|EEXIST)$/) }));
    expect(readdirSync(dir)).toEqual(['target']);
  });

  it('fails with ENOENT, creating nothing, when the directory does not exist', () => {
    const dir = freshDir('no-dir');
    expect(() => writeFileAtomic(path.join(dir, 'missing', 'file'), 'data', 0o600)).toThrow(
      expect.objectContaining({ code: 'ENOENT' }),
    );
    expect(readdirSync(dir)).toEqual([]);
  });

  it('never lets a reader see a torn file while processes race to replace it', async () => {
    const dir = freshDir('race');
    const file = path.join(dir, 'state.json');
    // The helper as plain JavaScript, so child processes of plain node can run it.
    const bundle = path.join(tmp, 'atomic-write.mjs');
    buildSync({ entryPoints: [HELPER], outfile: bundle, bundle: true, platform: 'node', format: 'esm', logLevel: 'error' });

    const writers = 4;
    const rounds = 150;
    // Each writer's content is large (several pages) and different from the others' all the way through, so a torn
    // or mixed file can never equal one of them.
    const contentOf = (w: number): string => JSON.stringify({ writer: w, fill: String(w).repeat(256 * 1024) });
    const contents = new Set(Array.from({ length: writers }, (_, w) => contentOf(w)));
    writeFileAtomic(file, contentOf(0), 0o600);

    const script = `
      const { writeFileAtomic } = await import(${JSON.stringify(bundle)});
      const w = Number(process.argv[1]);
      const data = JSON.stringify({ writer: w, fill: String(w).repeat(256 * 1024) });
      for (let i = 0; i < ${rounds}; i++) writeFileAtomic(${JSON.stringify(file)}, data, 0o600);
    `;
    const exits = Array.from({ length: writers }, (_, w) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script, String(w)], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      return new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
        child.once('error', reject);
        child.once('exit', (code) => resolve({ code, stderr }));
      });
    });
    let running = writers;
    for (const e of exits) void e.then(() => running--);

    let reads = 0;
    let torn = 0;
    while (running > 0) {
      const seen = readFileSync(file, 'utf8');
      reads++;
      if (!contents.has(seen)) torn++;
      await new Promise((r) => setImmediate(r));
    }
    for (const e of await Promise.all(exits)) expect(e.code, e.stderr).toBe(0);
    expect(reads).toBeGreaterThan(0);
    expect(torn).toBe(0);
    expect(contents.has(readFileSync(file, 'utf8'))).toBe(true);
    expect(readdirSync(dir)).toEqual(['state.json']);
  });
});
