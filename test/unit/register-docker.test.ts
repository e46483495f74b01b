// scripts/register-docker.mjs, which scripts/setup.sh runs where dockerd is installed: hull merged into daemon.json's
// runtimes with every other key kept, nothing written when it is there already, a file that is not JSON left alone.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const script = path.resolve(import.meta.dirname, '../../scripts/register-docker.mjs');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-docker-json-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let seq = 0;
const register = (file: string) => spawnSync(process.execPath, [script, '--file', file, '--path', '/usr/local/bin/hull'], { encoding: 'utf8' });
const json = (file: string): unknown => JSON.parse(readFileSync(file, 'utf8'));

describe('register-docker', () => {
  it('creates daemon.json (and its directory) when there is none', () => {
    const file = path.join(tmp, `d${seq++}`, 'docker', 'daemon.json');
    expect(register(file).status).toBe(0);
    expect(json(file)).toEqual({ runtimes: { hull: { path: '/usr/local/bin/hull' } } });
  });

  it('merges into an existing file, keeping its other keys, runtimes and mode', () => {
    const file = path.join(tmp, `d${seq++}.json`);
    const before = { 'log-driver': 'journald', 'default-runtime': 'runc', runtimes: { runsc: { path: '/usr/bin/runsc' } } };
    writeFileSync(file, JSON.stringify(before), { mode: 0o600 });
    expect(register(file).status).toBe(0);
    expect(json(file)).toEqual({ ...before, runtimes: { runsc: { path: '/usr/bin/runsc' }, hull: { path: '/usr/local/bin/hull' } } });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const mtime = statSync(file).mtimeMs;
    const again = register(file);
    expect(again.stdout).toMatch(/already registers "hull"/);
    expect(statSync(file).mtimeMs).toBe(mtime);
  });

  for (const [what, text] of [['not JSON', '{"runtimes": {'], ['not an object', '[1, 2]'], ['runtimes not an object', '{"runtimes": 5}']]) {
    it(`leaves a file that is ${what} alone and says so in one line`, () => {
      const file = path.join(tmp, `d${seq++}.json`);
      writeFileSync(file, text!);
      const r = register(file);
      expect(r.status).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain(`register-docker: ${file}: `);
      expect(readFileSync(file, 'utf8')).toBe(text);
    });
  }
});
