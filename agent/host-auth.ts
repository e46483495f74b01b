// The agent's side of the door check (protocol/agent-auth.ts): the VM's agent key, read once when the agent starts
// (never at image build time: the start-up snapshot must not hold it), and the check each new connection passes
// before the ttrpc server sees it. Without a key the agent does not serve at all: a guest that was given none would
// otherwise answer anyone who reaches its vsock port.
import { closeSync, openSync, readSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import { parseAgentKey, requireHostProof } from '../protocol/agent-auth.js';

/** How long a new connection may take to prove itself before it is closed unanswered. */
export const PROOF_TIMEOUT_MS = 10_000;

/** Longer than any key: what the host gave is read no further. */
const READ_MAX = 128;

/** The guest found no usable agent key where the VMM puts it. */
export class AgentKeyMissingError extends Error {
  constructor(
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AgentKeyMissingError';
  }
}

/** The key in `file` (the fw_cfg file in sysfs, by default; a plain file when the agent runs on a host in tests). */
export function readAgentKeyFile(file: string): Buffer {
  let text: string;
  try {
    const fd = openSync(file, 'r');
    try {
      const buf = Buffer.alloc(READ_MAX);
      text = buf.subarray(0, readSync(fd, buf, 0, READ_MAX, null)).toString('latin1');
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw new AgentKeyMissingError(
      file,
      `no agent key at ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): the VMM must give the guest ` +
        'one (QEMU: -fw_cfg name=opt/hull/agent-key,file=…, and the qemu_fw_cfg module loaded by /init)',
      { cause: err },
    );
  }
  try {
    return parseAgentKey(text, file);
  } catch (err) {
    throw new AgentKeyMissingError(file, (err as Error).message, { cause: err });
  }
}

/**
 * Hands `stream` to `serve` once its peer has proved it holds `key`; otherwise the stream is closed unanswered and
 * `refused` is told why (for the log).
 */
export function serveProven(stream: Duplex, key: Buffer, serve: (stream: Duplex) => void, refused: (err: Error) => void, timeoutMs = PROOF_TIMEOUT_MS): void {
  requireHostProof(stream, key, timeoutMs).then(
    () => serve(stream),
    (err: unknown) => refused(err instanceof Error ? err : new Error(String(err))),
  );
}
