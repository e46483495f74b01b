// Where things are: the repository root (for build outputs such as the vsock backend), the packaged binaries, and
// the fixed names inside a sandbox directory (docs/design.md). This module is bundled by esbuild into dist/hull.mjs,
// so the root is found by walking up from this module's own URL to hull's package.json, which works the same from
// hypervisor/paths.ts (vitest, tsx) and from dist/hull.mjs.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
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

/** hull-vmm-launcher (native/vmm-launcher): confines QEMU and execs it (vmm-launcher.ts). */
export function vmmLauncherPath(): string {
  return process.env['HULL_VMM_LAUNCHER'] ?? path.join(repoRoot(), 'build', 'native', 'hull-vmm-launcher');
}

export function vsockBackendPath(): string {
  return process.env['HULL_VSOCK_BACKEND'] ?? path.join(repoRoot(), 'build', 'native', 'hull-vsock-backend');
}

/**
 * Where sandboxes' Unix sockets live. Not under the sandbox directory: engines choose `--root` and the id (Docker:
 * `/var/run/docker/runtime-runc/moby/<64 hex>`), and sun_path holds only 107 bytes. $HULL_SOCKET_DIR overrides it.
 */
export const SOCKET_BASE_DEFAULT = '/run/hull/s';

export function socketBase(): string {
  return process.env['HULL_SOCKET_DIR'] ?? SOCKET_BASE_DEFAULT;
}

/**
 * The short per-sandbox socket directory: `<base>/<16 hex of sha256(absolute sandbox dir)>`. Deterministic, so any
 * later CLI call (or the containerd shim's delete) finds a sandbox's sockets from its directory alone.
 */
export function socketDirFor(sandboxDir: string, base = socketBase()): string {
  const digest = createHash('sha256').update(path.resolve(sandboxDir)).digest('hex').slice(0, 16);
  return path.join(base, digest);
}

/** The fixed file names of one sandbox: files in its directory, sockets in its socket directory. */
export interface SandboxPaths {
  dir: string;
  /** Holds the four sockets below and the guest-initiated `vsock.sock_<port>` ones; mode 0700, see socketDirFor. */
  socketDir: string;
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
  /** The secret the guest agent asks every connection to prove (agent-key.ts); mode 0600. */
  agentKey: string;
}

export function sandboxPaths(dir: string, base = socketBase()): SandboxPaths {
  const p = (name: string): string => path.join(dir, name);
  const socketDir = socketDirFor(dir, base);
  const s = (name: string): string => path.join(socketDir, name);
  return {
    dir,
    socketDir,
    consoleLog: p('console.log'),
    consoleFifo: p('console.fifo'),
    qmpSock: s('qmp.sock'),
    vhostVsockSock: s('vhost-vsock.sock'),
    vsockSock: s('vsock.sock'),
    virtiofsdSock: s('virtiofsd.sock'),
    qemuLog: p('qemu.log'),
    virtiofsdLog: p('virtiofsd.log'),
    vsockBackendLog: p('vsock-backend.log'),
    vmmRecord: p('vmm.json'),
    agentKey: p('agent.key'),
  };
}

/** The sockets a VM leaves behind if a helper dies without cleaning up. */
export function sandboxSockets(paths: SandboxPaths): string[] {
  return [paths.qmpSock, paths.vhostVsockSock, paths.vsockSock, paths.virtiofsdSock];
}

// sun_path is 108 bytes including the terminating NUL. `vsock.sock_<port>` (guest-initiated) adds up to 11 bytes.
const SUN_PATH_MAX = 107;
const GUEST_PORT_SUFFIX = '_4294967295';

export function checkSocketPath(p: string, reserve = 0): void {
  if (Buffer.byteLength(p) + reserve > SUN_PATH_MAX) throw new SocketPathTooLongError(p);
}

/**
 * Creates the sandbox's socket directory (0700; its parent 0711, as `--root`) before any helper listens in it, after
 * checking that every socket path fits sun_path (it does unless $HULL_SOCKET_DIR is long).
 */
export function prepareSocketDir(paths: SandboxPaths): void {
  for (const sock of sandboxSockets(paths)) checkSocketPath(sock);
  checkSocketPath(paths.vsockSock, GUEST_PORT_SUFFIX.length);
  mkdirSync(path.dirname(paths.socketDir), { recursive: true, mode: 0o711 });
  // A directory already there is what a crashed earlier sandbox of the same directory left: start afresh, so
  // that the one in use is the one made here, with this mode.
  rmSync(paths.socketDir, { recursive: true, force: true });
  mkdirSync(paths.socketDir, { mode: 0o700 });
}

/** Removes a sandbox's socket directory and whatever sockets are still in it (nothing if it is gone already). */
export function removeSocketDir(paths: Pick<SandboxPaths, 'socketDir'>): void {
  rmSync(paths.socketDir, { recursive: true, force: true });
}
