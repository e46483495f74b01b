// `containerd-shim-hull-v2 … start`: find or start the pod's shim daemon and print its address. containerd reads
// stdout and stderr together (CombinedOutput) until both close, so the only output is the address, and the daemon
// gets neither: it is spawned in its own session with /dev/null stdio, binds the socket, and says "ready" on fd 4.
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { writeFileAtomic } from '../../hypervisor/atomic-write.js';
import { READY_FD_ENV, groupIdForBundle, socketAddress, socketPath } from './address.js';
import { daemonArgs, type ShimFlags } from './flags.js';
import { IDLE_NODE_FLAGS, idleNodeEnv } from '../idle-node.js';

/** Writes <bundle>/address atomically (containerd reads it when it restarts). */
export function writeAddressFile(bundle: string, address: string): void {
  writeFileAtomic(path.join(bundle, 'address'), address, 0o644);
}

function connect(sockPath: string, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(sockPath);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`connect ${sockPath}: timed out`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** True when a live daemon accepts connections on sockPath. */
export async function socketInUse(sockPath: string): Promise<boolean> {
  try {
    (await connect(sockPath, 1000)).destroy();
    return true;
  } catch {
    return false;
  }
}

/** Exit code of a daemon that found another daemon already serving its socket. */
export const EXIT_ADDRESS_IN_USE = 3;

function spawnDaemon(flags: ShimFlags, bundle: string, scriptPath: string): Promise<'ready' | 'in-use'> {
  const child = spawn(process.execPath, [...IDLE_NODE_FLAGS, scriptPath, ...daemonArgs({ ...flags, bundle })], {
    cwd: bundle,
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'ignore', 'pipe'],
    // Each stdin FIFO whose client has not opened it yet holds a libuv thread-pool thread (stdin-fifo.ts); the default
    // of 4 would let a few such processes stall every other fs call of the daemon.
    // MALLOC_ARENA_MAX (shim/idle-node.ts) also keeps those 32 threads from taking an arena each.
    env: { ...idleNodeEnv(), [READY_FD_ENV]: '4', UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE || '32' },
  });
  child.unref();
  const ready = child.stdio[4] as net.Socket;
  return new Promise<'ready' | 'in-use'>((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error('the shim daemon did not become ready within 20 s')), 20_000);
    ready.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('ready')) {
        clearTimeout(timer);
        ready.destroy();
        resolve('ready');
      }
    });
    ready.on('error', () => undefined);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === EXIT_ADDRESS_IN_USE) resolve('in-use');
      else reject(new Error(`the shim daemon exited at once (${signal ?? `code ${code}`}); see its log`));
    });
  });
}

export async function startShim(flags: ShimFlags, scriptPath: string): Promise<string> {
  const bundle = flags.bundle || process.cwd();
  const groupId = groupIdForBundle(bundle, flags.id);
  const address = socketAddress(flags.address, flags.namespace, groupId);
  const sockPath = socketPath(address);
  if (!(await socketInUse(sockPath))) {
    // The daemon binds the socket itself (an inherited listening fd would leak into QEMU and the other helpers).
    await spawnDaemon(flags, bundle, scriptPath);
  }
  writeAddressFile(bundle, address);
  return address;
}
