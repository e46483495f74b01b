// What the engine suites (podman, Docker, CRI) share: running an engine's CLI with a time limit, an HTTP GET from the
// host with bounded retries while a container's server comes up, a report of what a network namespace holds for
// failure messages, and the busybox image they import (no registry is reachable here).
import { chmodSync, copyFileSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import * as tar from 'tar';

export interface ToolResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  ms: number;
}

/** Runs `cmd` to completion with `input` on stdin; SIGKILLed after timeoutMs. */
export function runTool(cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs: number }): Promise<ToolResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut, ms: Date.now() - started });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

export interface HttpAnswer {
  status: number;
  body: string;
}

/** One GET, at most 3 s. */
export function httpGet(url: string): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: 3000, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out after 3 s')));
    req.on('error', reject);
  });
}

/** Bounded retries while the container's server comes up: at most `tries` attempts, `intervalMs` apart. */
export async function fetchWithRetries(url: string, tries: number, intervalMs = 1000): Promise<HttpAnswer> {
  let last: unknown;
  for (let i = 0; i < tries; i++) {
    try {
      return await httpGet(url);
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
  throw new Error(`GET ${url}: no answer in ${tries} tries: ${String(last)}`);
}

/** What a network namespace holds (addresses, routes, qdiscs, eth0's ingress filters), for failure messages. */
export function netnsReport(netnsPath: string): string {
  const sh = (args: string[]): string => {
    const r = spawnSync('nsenter', [`--net=${netnsPath}`, ...args], { encoding: 'utf8' });
    return `$ nsenter --net=${netnsPath} ${args.join(' ')}\n${r.stdout}${r.stderr}`;
  };
  return [sh(['ip', 'addr']), sh(['ip', 'route']), sh(['tc', 'qdisc', 'show']), sh(['tc', 'filter', 'show', 'dev', 'eth0', 'ingress'])].join('');
}

/**
 * A tarball (for `podman import` / `docker import`) of a busybox-static rootfs with every applet (httpd included) and
 * `files` written into it; made under `dir`. The caller removes it.
 */
export async function busyboxRootfsTar(dir: string, files: Record<string, string> = {}): Promise<string> {
  const root = path.join(dir, 'image-root');
  const dirs = ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root', 'run'];
  for (const d of dirs) mkdirSync(path.join(root, d), { recursive: true });
  chmodSync(path.join(root, 'tmp'), 0o1777);
  copyFileSync('/bin/busybox', path.join(root, 'bin/busybox'));
  chmodSync(path.join(root, 'bin/busybox'), 0o755);
  const applets = spawnSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  for (const a of applets) if (a !== 'busybox') symlinkSync('busybox', path.join(root, 'bin', a));
  writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n');
  writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\nnobody:x:65534:\n');
  const top = new Set(dirs);
  for (const [file, content] of Object.entries(files)) {
    const dest = path.join(root, file);
    mkdirSync(path.dirname(dest), { recursive: true });
    writeFileSync(dest, content);
    top.add(file.split('/').filter(Boolean)[0]!);
  }
  const tarball = path.join(dir, 'image.tar');
  try {
    await tar.c({ file: tarball, cwd: root, portable: true }, [...top]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return tarball;
}
