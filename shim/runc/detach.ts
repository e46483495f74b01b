// Starts a long-lived child that outlives this CLI call (the monitor of `create`, a detached `exec`). The child
// inherits our stdio — that is the container's stdio — and reports on fd 3 exactly once: `ok <pid>` or
// `error <message>`. The parent returns the pid or throws the child's error.
import { spawn } from 'node:child_process';
import { closeSync, writeSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { HullError } from '../errors.js';
import { IDLE_NODE_FLAGS, idleNodeEnv } from '../idle-node.js';

const STATUS_FD = 3;

export async function spawnDetached(args: string[]): Promise<number> {
  const script = process.argv[1];
  if (!script) throw new HullError('internal', 'cannot find the hull script to re-execute');
  // The child idles for the container's life: start it lean (shim/idle-node.ts).
  const child = spawn(process.execPath, [...IDLE_NODE_FLAGS, script, ...args], {
    env: idleNodeEnv(),
    detached: true,
    stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
  });
  const status = child.stdio[STATUS_FD] as Readable | null;
  if (!status) throw new HullError('internal', 'status pipe missing');
  let text = '';
  status.setEncoding('utf8');
  status.on('data', (chunk: string) => {
    if (text.length < 64 * 1024) text += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  await Promise.race([exited, new Promise<void>((resolve) => status.once('end', resolve))]);
  const line = text.split('\n')[0] ?? '';
  if (line.startsWith('ok ')) {
    child.unref();
    (status as Readable & { unref?: () => void }).unref?.();
    return Number(line.slice(3));
  }
  // A failed child has cleaned up before reporting; wait for it to be gone so the caller sees nothing left behind.
  const code = await exited;
  if (line.startsWith('error ')) throw new HullError('failed-precondition', line.slice(6));
  throw new HullError('internal', `the detached hull process exited (${code ?? 'killed'}) without reporting`);
}

/** In the child: the reporter for fd 3, or a no-op when not started by spawnDetached. */
export function statusReporter(enabled: boolean): (line: string) => void {
  if (!enabled) return () => undefined;
  let done = false;
  // Synchronous: the caller may exit right after reporting, and the parent must see the line.
  return (line: string) => {
    if (done) return;
    done = true;
    writeSync(STATUS_FD, `${line.replace(/\n/g, ' ')}\n`);
    closeSync(STATUS_FD);
  };
}
