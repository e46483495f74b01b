// The shim's non-FIFO stdio (shim/containerd/stdio.ts) against containerd 1.6's contract (pkg/process io.go):
// file:// creates its directories and takes stdout and stderr; binary:// runs a logging binary with fds 3/4/5, the
// URI query as args, only CONTAINER_ID/CONTAINER_NAMESPACE as env, and SIGTERM once the output is closed.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { openProcessIo, type ProcessIo } from '../../shim/containerd/stdio.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'hull-stdio-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const ctx = { containerId: 'c1', namespace: 'ns1' };
const uriOnly = (uri: string) => ({ stdin: '', stdout: uri, stderr: uri, terminal: false });

async function writeBoth(io: ProcessIo, out: string, err: string): Promise<void> {
  await new Promise<void>((resolve) => io.stdout.write(out, () => resolve()));
  await new Promise<void>((resolve) => io.stderr.write(err, () => resolve()));
}

test('file://: missing directories are created; stdout and stderr are appended to the one file', async () => {
  const file = path.join(dir, 'a', 'b', 'task.log');
  const io = await openProcessIo(uriOnly(`file://${file}`), ctx);
  await writeBoth(io, 'out\n', 'err\n');
  await io.close();
  expect(readFileSync(file, 'utf8')).toBe('out\nerr\n');
});

test('file://: a path that cannot be written fails the open (the output is not silently lost)', async () => {
  writeFileSync(path.join(dir, 'plain'), '');
  await expect(openProcessIo(uriOnly(`file://${path.join(dir, 'plain', 'task.log')}`), ctx)).rejects.toThrow(/ENOTDIR|EEXIST/);
});

function logger(body: string[]): string {
  const file = path.join(dir, 'logger.sh');
  writeFileSync(file, ['#!/bin/sh', ...body, ''].join('\n'), { mode: 0o755 });
  return file;
}

test('binary://: args from the query (a bare key gets an empty value), env only the id and namespace, fds 3 and 4', async () => {
  const bin = logger([
    `out=${dir}`,
    'for a in "$@"; do echo "[$a]"; done > "$out/args"',
    'env > "$out/env"',
    'cat <&3 > "$out/stdout" 5>&- &',
    'cat <&4 > "$out/stderr" 5>&- &',
    'exec 5>&-',
    'wait',
  ]);
  const io = await openProcessIo(uriOnly(`binary://${bin}?mode=fast&bare`), ctx);
  await writeBoth(io, 'to stdout\n', 'to stderr\n');
  const started = Date.now();
  await io.close();
  expect(Date.now() - started).toBeLessThan(900); // it exits on EOF: no SIGTERM wait
  expect(readFileSync(path.join(dir, 'args'), 'utf8')).toBe('[mode]\n[fast]\n[bare]\n[]\n');
  const env = readFileSync(path.join(dir, 'env'), 'utf8').split('\n').filter((l) => l && !/^(PWD|SHLVL|_)=/.test(l)).sort();
  expect(env).toEqual(['CONTAINER_ID=c1', 'CONTAINER_NAMESPACE=ns1']);
  expect(readFileSync(path.join(dir, 'stdout'), 'utf8')).toBe('to stdout\n');
  expect(readFileSync(path.join(dir, 'stderr'), 'utf8')).toBe('to stderr\n');
});

test('binary://: a logger that waits for SIGTERM gets it after EOF and may finish its work', async () => {
  const bin = logger([
    `out=${dir}`,
    'cat <&3 > "$out/stdout" 5>&- &',
    `trap 'wait; echo terminated > "$out/exit"; exit 0' TERM`,
    'exec 5>&-',
    'while :; do sleep 0.1; done',
  ]);
  const io = await openProcessIo(uriOnly(`binary://${bin}`), ctx);
  await writeBoth(io, 'line\n', '');
  await io.close();
  expect(readFileSync(path.join(dir, 'stdout'), 'utf8')).toBe('line\n');
  expect(readFileSync(path.join(dir, 'exit'), 'utf8')).toBe('terminated\n');
});

test('binary://: a logger that cannot start fails the open', async () => {
  await expect(openProcessIo(uriOnly(`binary://${path.join(dir, 'missing')}`), ctx)).rejects.toThrow(/logging binary/);
});
