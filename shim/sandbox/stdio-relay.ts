// Moves a guest process's stdio between the agent and host streams. Output is pulled with ReadStdout/ReadStderr
// until the agent says EOF (an empty read), so everything the process wrote arrives before we report its exit.
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';

/** Largest chunk the host asks for or sends at once; well under ttrpc's 4 MiB frame limit. */
export const STDIO_CHUNK = 1 << 20;

export type ReadChunk = () => Promise<Buffer>;

export async function pumpOutput(read: ReadChunk, out: Writable): Promise<void> {
  for (;;) {
    const data = await read();
    if (data.length === 0) return;
    if (!out.write(data)) await once(out, 'drain');
  }
}

export interface InputPump {
  /** Resolves when stdin reached EOF and the guest side was closed, or the pump was stopped. */
  done: Promise<void>;
  stop(): void;
}

export function pumpInput(
  input: Readable,
  write: (data: Buffer) => Promise<void>,
  close: () => Promise<void>,
): InputPump {
  let stopped = false;
  const done = (async () => {
    try {
      for await (const chunk of input) {
        if (stopped) return;
        const data = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
        for (let offset = 0; offset < data.length; offset += STDIO_CHUNK) {
          await write(data.subarray(offset, offset + STDIO_CHUNK));
        }
      }
      if (!stopped) await close();
    } catch (err) {
      // Once the process has exited, the agent refuses stdin: that is the normal end of an unread stdin.
      if (!stopped) throw err;
    }
  })();
  return {
    done,
    stop() {
      stopped = true;
      input.destroy();
    },
  };
}

/** Resolves once everything queued on the stream has been handed to the OS. */
export function flush(out: Writable): Promise<void> {
  return new Promise((resolve) => {
    if (out.writableLength === 0) resolve();
    else out.write('', () => resolve());
  });
}

/** The agent calls one guest process's stdio relay needs (AgentClient has them). */
export interface ProcessStdio {
  readStdout(containerId: string, execId: string, maxLen: number): Promise<Buffer>;
  readStderr(containerId: string, execId: string, maxLen: number): Promise<Buffer>;
  writeStdin(containerId: string, execId: string, data: Buffer): Promise<void>;
  closeStdin(containerId: string, execId: string): Promise<void>;
}

export interface AttachedStdio {
  /** Resolves when stdout and stderr both reached EOF (everything the process wrote was delivered). */
  outputs: Promise<void>;
  input: InputPump;
}

/** Attaches this process's stdin/stdout/stderr to one guest process. */
export function attachStdio(agent: ProcessStdio, containerId: string, execId: string): AttachedStdio {
  const outputs = Promise.all([
    pumpOutput(() => agent.readStdout(containerId, execId, STDIO_CHUNK), process.stdout),
    pumpOutput(() => agent.readStderr(containerId, execId, STDIO_CHUNK), process.stderr),
  ]).then(() => undefined);
  // Awaited by the caller only after the process's own exit; when the VM dies first the reads fail with the connection,
  // which must not surface as an unhandled rejection (it ended `hull run` before its teardown). Awaiters still see it.
  outputs.catch(() => undefined);
  const input = pumpInput(
    process.stdin,
    (data) => agent.writeStdin(containerId, execId, data),
    () => agent.closeStdin(containerId, execId),
  );
  return { outputs, input };
}
