// Unit tests of the per-sandbox socket directory (hypervisor/paths.ts): socket paths do not depend on the length of
// `--root` and the id (Docker's exec root and 64-hex ids), later calls find the same directory, and every teardown
// path removes it. Real files only; the failed-start case runs the real vsock backend when it is built.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BinaryNotFoundError, SocketPathTooLongError } from '../../hypervisor/errors.js';
import {
  checkSocketPath,
  prepareSocketDir,
  removeSocketDir,
  sandboxPaths,
  sandboxSockets,
  SOCKET_BASE_DEFAULT,
  socketDirFor,
  vsockBackendPath,
} from '../../hypervisor/paths.js';
import { QemuMicrovm } from '../../hypervisor/qemu.js';
import { createSandboxDir, removeSandboxDir, sandboxDir } from '../../shim/runc/state.js';
import { fakeVmConfig } from '../helpers/vm-config.js';

const DOCKER_ROOT = '/var/run/docker/runtime-runc/moby';
const DOCKER_ID = 'f'.repeat(64);
/** The longest suffix the vsock backend adds: guest-initiated connections go to `vsock.sock_<port>`. */
const PORT_SUFFIX = '_4294967295';

let tmp: string;
let base: string;
const savedEnv = process.env['HULL_SOCKET_DIR'];

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-sockdir-'));
  base = path.join(tmp, 's');
  process.env['HULL_SOCKET_DIR'] = base;
});
afterAll(() => {
  if (savedEnv === undefined) delete process.env['HULL_SOCKET_DIR'];
  else process.env['HULL_SOCKET_DIR'] = savedEnv;
  rmSync(tmp, { recursive: true, force: true });
});

describe('socket paths', () => {
  it('fit sun_path for Docker’s exec root and a 64-character id, and for a root far longer than that', () => {
    for (const root of [DOCKER_ROOT, `/${'deep/'.repeat(40)}root`]) {
      const dir = path.join(root, DOCKER_ID);
      const paths = sandboxPaths(dir, SOCKET_BASE_DEFAULT);
      expect(dir.length + '/vhost-vsock.sock'.length).toBeGreaterThan(107); // where the old layout failed
      expect(paths.socketDir).toMatch(/^\/run\/hull\/s\/[0-9a-f]{16}$/);
      for (const sock of sandboxSockets(paths)) {
        expect(path.dirname(sock)).toBe(paths.socketDir);
        expect(() => checkSocketPath(sock)).not.toThrow();
      }
      expect(Buffer.byteLength(paths.vsockSock + PORT_SUFFIX)).toBeLessThanOrEqual(107);
      // Everything that is not a socket stays in the sandbox directory.
      expect(path.dirname(paths.vmmRecord)).toBe(dir);
      expect(path.dirname(paths.consoleLog)).toBe(dir);
    }
  });

  it('are the same for every later call on the same sandbox directory, and differ between sandboxes', () => {
    const dir = path.join(DOCKER_ROOT, DOCKER_ID);
    expect(socketDirFor(dir)).toBe(socketDirFor(`${dir}/`));
    expect(socketDirFor(dir)).toBe(socketDirFor(path.join(DOCKER_ROOT, '.', DOCKER_ID)));
    expect(socketDirFor(dir)).not.toBe(socketDirFor(path.join(DOCKER_ROOT, 'e'.repeat(64))));
    expect(socketDirFor(dir)).not.toBe(socketDirFor(path.join('/run/hull', DOCKER_ID)));
    expect(path.dirname(socketDirFor(dir))).toBe(base); // $HULL_SOCKET_DIR
  });

  it('refuses a socket base too long for sun_path, naming the way out', () => {
    const paths = sandboxPaths('/run/hull/x', `/${'b'.repeat(100)}`);
    expect(() => prepareSocketDir(paths)).toThrow(SocketPathTooLongError);
    expect(() => prepareSocketDir(paths)).toThrow(/HULL_SOCKET_DIR/);
    expect(existsSync(paths.socketDir)).toBe(false);
  });
});

describe('the socket directory', () => {
  it('is created 0700 and empty, replacing what a crashed sandbox of the same directory left', () => {
    const paths = sandboxPaths(path.join(tmp, 'root', 'one'));
    mkdirSync(paths.socketDir, { recursive: true, mode: 0o755 });
    writeFileSync(paths.qmpSock, 'stale');
    prepareSocketDir(paths);
    expect(statSync(paths.socketDir).mode & 0o777).toBe(0o700);
    expect(readdirSync(paths.socketDir)).toEqual([]);
    writeFileSync(`${paths.vsockSock}_1024`, '');
    removeSocketDir(paths);
    expect(existsSync(paths.socketDir)).toBe(false);
    expect(() => removeSocketDir(paths)).not.toThrow(); // gone already: nothing to do
  });

  it('is removed by killRecorded (hull delete after a crash, the containerd shim’s delete)', async () => {
    const dir = path.join(tmp, 'root', DOCKER_ID);
    mkdirSync(dir, { recursive: true });
    const paths = sandboxPaths(dir);
    prepareSocketDir(paths);
    writeFileSync(paths.vsockSock, '');
    await QemuMicrovm.killRecorded({}, dir);
    expect(existsSync(paths.socketDir)).toBe(false);
  });

  it('is removed with the sandbox directory (hull delete, a failed create)', () => {
    const root = path.join(tmp, 'long', 'x'.repeat(60), 'root');
    const dir = createSandboxDir(root, DOCKER_ID);
    const paths = sandboxPaths(dir);
    prepareSocketDir(paths);
    removeSandboxDir(root, DOCKER_ID);
    expect(existsSync(sandboxDir(root, DOCKER_ID))).toBe(false);
    expect(existsSync(paths.socketDir)).toBe(false);
  });

  it('is removed when a start fails after the helpers began listening in it', async () => {
    const backend = vsockBackendPath();
    const haveBackend = existsSync(backend);
    const dir = path.join(tmp, 'docker-like', 'runtime-runc', 'moby', 'a'.repeat(64));
    mkdirSync(path.join(dir, 'shared'), { recursive: true });
    const vm = new QemuMicrovm(
      fakeVmConfig('a'.repeat(64), dir),
      {
        logger: pino({ level: 'silent' }),
        vsock: 'hybrid',
        qemuPath: '/bin/true',
        // With the real backend its sockets exist when virtiofsd turns out to be missing; without it, the start
        // fails one step earlier, still after the directory was made.
        vsockBackendPath: haveBackend ? backend : '/nonexistent/hull-vsock-backend',
        virtiofsdPath: '/nonexistent/virtiofsd',
        startTimeoutMs: 5000,
      },
    );
    await expect(vm.start()).rejects.toBeInstanceOf(BinaryNotFoundError);
    await vm.wait();
    expect(existsSync(sandboxPaths(dir).socketDir)).toBe(false);
    expect(existsSync(sandboxPaths(dir).vmmRecord)).toBe(false);
  });
});
