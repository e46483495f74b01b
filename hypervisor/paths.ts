// Where things are: the repository root (for build outputs such as the vsock backend), the packaged binaries, and
// the fixed names inside a sandbox directory (docs/design.md). This module is bundled by esbuild into dist/hull.mjs,
// so the root is found by walking up from this module's own URL to hull's package.json, which works the same from
// hypervisor/paths.ts (vitest, tsx) and from dist/hull.mjs.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SocketPathTooLongError } from './errors.js';

let cachedRoot: string | undefined;

/** Finds the directory holding hull's package.json above `startDir` (default: this module's directory). */
export function findRepoRoot(startDir = path.dirname(fileURLToPath(import.meta.url))): string {
  let dir = startDir;
  for (let i = 0; i < 8; i++) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name === 'hull') return dir;
      } catch {
        // not ours (or unreadable): keep walking up
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  // Installed somewhere without package.json: both hypervisor/ and dist/ sit one level below the root.
  return path.dirname(startDir);
}

export function repoRoot(): string {
  cachedRoot ??= process.env['HULL_ROOT'] ?? findRepoRoot();
  return cachedRoot;
}

export const QEMU_PATH_DEFAULT = '/usr/bin/qemu-system-x86_64';
export const VIRTIOFSD_PATH_DEFAULT = '/usr/lib/qemu/virtiofsd';

export function qemuPath(): string {
  return process.env['HULL_QEMU'] ?? QEMU_PATH_DEFAULT;
}

export function virtiofsdPath(): string {
  return process.env['HULL_VIRTIOFSD'] ?? VIRTIOFSD_PATH_DEFAULT;
}

export function vsockBackendPath(): string {
  return process.env['HULL_VSOCK_BACKEND'] ?? path.join(repoRoot(), 'build', 'native', 'hull-vsock-backend');
}

/** The fixed file names inside one sandbox directory. */
export interface SandboxPaths {
  dir: string;
  consoleLog: string;
  /** The FIFO QEMU's console goes through; unlinked as soon as both ends are open (console-log.ts). */
  consoleFifo: string;
  qmpSock: string;
  vhostVsockSock: string;
  vsockSock: string;
  virtiofsdSock: string;
  qemuLog: string;
  virtiofsdLog: string;
  vsockBackendLog: string;
  /** Pids and settings of the running VM, so a later process can reattach or clean up (see record.ts). */
  vmmRecord: string;
}

export function sandboxPaths(dir: string): SandboxPaths {
  const p = (name: string): string => path.join(dir, name);
  return {
    dir,
    consoleLog: p('console.log'),
    consoleFifo: p('console.fifo'),
    qmpSock: p('qmp.sock'),
    vhostVsockSock: p('vhost-vsock.sock'),
    vsockSock: p('vsock.sock'),
    virtiofsdSock: p('virtiofsd.sock'),
    qemuLog: p('qemu.log'),
    virtiofsdLog: p('virtiofsd.log'),
    vsockBackendLog: p('vsock-backend.log'),
    vmmRecord: p('vmm.json'),
  };
}

/** The sockets a VM leaves behind if a helper dies without cleaning up. */
export function sandboxSockets(paths: SandboxPaths): string[] {
  return [paths.qmpSock, paths.vhostVsockSock, paths.vsockSock, paths.virtiofsdSock];
}

// sun_path is 108 bytes including the terminating NUL. `vsock.sock_<port>` (guest-initiated) adds up to 11 bytes.
const SUN_PATH_MAX = 107;

export function checkSocketPath(p: string, reserve = 0): void {
  if (Buffer.byteLength(p) + reserve > SUN_PATH_MAX) throw new SocketPathTooLongError(p);
}
