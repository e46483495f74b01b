// endProcessesNaming: the last line of a VM's teardown, for a process that started in the instant before its pid went
// on record. It must end every process naming the marker and nothing else.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterEach, expect, it } from 'vitest';
import { isAlive } from '../../hypervisor/process.js';
import { endProcessesNaming } from '../../hypervisor/vm-processes.js';

const children: Array<ReturnType<typeof spawn>> = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

/** An idle process whose command line carries `word`, standing for a VM helper with a socket path in its argv. */
async function sleeper(word: string): Promise<{ pid: number; exited: Promise<unknown> }> {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 300_000)', word], { stdio: 'ignore' });
  children.push(child);
  await new Promise((r) => child.once('spawn', r));
  return { pid: child.pid!, exited: new Promise((r) => child.once('exit', r)) };
}

it('ends the processes whose command line names the marker, and only those', async () => {
  const marker = `/run/hull/s/${randomBytes(8).toString('hex')}/`;
  const a = await sleeper(`${marker}qmp.sock`);
  const b = await sleeper(`--socket-path=${marker}virtiofsd.sock`);
  const other = await sleeper(`/run/hull/s/${randomBytes(8).toString('hex')}/qmp.sock`);
  await endProcessesNaming(marker, 1_000);
  await Promise.all([a.exited, b.exited]);
  expect(isAlive({ pid: a.pid })).toBe(false);
  expect(isAlive({ pid: b.pid })).toBe(false);
  expect(isAlive({ pid: other.pid })).toBe(true);
});

it('ends a process whose environment names the marker (QEMU: its sockets are descriptors, docs/confinement.md)', async () => {
  const marker = `/run/hull/s/${randomBytes(8).toString('hex')}/`;
  const qemu = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 300_000)'], { stdio: 'ignore', env: { HULL_VM_SOCKETS: marker } });
  children.push(qemu);
  await new Promise((r) => qemu.once('spawn', r));
  const exited = new Promise((r) => qemu.once('exit', r));
  const other = await sleeper('unrelated');
  await endProcessesNaming(marker, 1_000);
  await exited;
  expect(isAlive({ pid: qemu.pid! })).toBe(false);
  expect(isAlive({ pid: other.pid })).toBe(true);
});
