// The VM's agent key on the host: a per-VM secret in the VM's directory (agent.key, mode 0600, owned by the root
// process that starts the VM), made by the driver before the VMM starts and handed to the guest in a place no other
// host user can read (QEMU: a fw_cfg file, never its command line or the kernel's, which /proc shows to everyone).
// Any root process that has the VM's directory reads it to pass the agent's door check (protocol/agent-auth.ts):
// the monitor that booted the VM, a later `hull start`/`exec`, the claimer of a pooled VM.
import { closeSync, constants, fstatSync, openSync, readSync, rmSync } from 'node:fs';
import { newAgentKeyText, parseAgentKey } from '../protocol/agent-auth.js';
import { writeFileAtomic } from './atomic-write.js';
import { HypervisorError } from './errors.js';

/** The key file could not be read: gone (the VM is not running, or an older hull started it) or not a key. */
export class AgentKeyError extends HypervisorError {}

/** Longer than any key file: a file this long is not one, and is not read further. */
const READ_MAX = 128;

/** Writes a new key to `file` (replacing one a crashed earlier VM of the same directory left), mode 0600. */
export function createAgentKey(file: string): void {
  writeFileAtomic(file, newAgentKeyText(), 0o600);
}

/** The key in `file` (bounded read; refused when others than its owner may read it or it is no regular file). */
export function readAgentKey(file: string): Buffer {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new AgentKeyError(
      code === 'ENOENT' ? 'not-found' : 'failed-precondition',
      code === 'ENOENT'
        ? `the VM's agent key ${file} is missing: the VM is not running, or an older hull started it (stop it and start it again)`
        : `cannot read the VM's agent key ${file}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || (st.mode & 0o077) !== 0) {
      throw new AgentKeyError('failed-precondition', `the VM's agent key ${file} is not a regular file that only its owner can read (mode ${(st.mode & 0o777).toString(8)})`);
    }
    const buf = Buffer.alloc(READ_MAX);
    const n = readSync(fd, buf, 0, READ_MAX, 0);
    try {
      return parseAgentKey(buf.subarray(0, n).toString('latin1'), file);
    } catch (err) {
      throw new AgentKeyError('failed-precondition', (err as Error).message, { cause: err });
    }
  } finally {
    closeSync(fd);
  }
}

/** Removes the key once the VM is gone (nothing if it is gone already). */
export function removeAgentKey(file: string): void {
  rmSync(file, { force: true });
}
