// The guest agent's door check, shared by both sides: on every new connection, before the agent serves one ttrpc
// request, the host side proves that it holds the VM's agent key (a per-VM secret that only root can read on the
// host; hypervisor/agent-key.ts makes it, the VMM hands it to the guest). Transport-agnostic: any Duplex, so the same
// code serves the hybrid vsock Unix socket, AF_VSOCK on KVM hosts, and in-memory streams in tests.
//
// Wire (fixed sizes, before any ttrpc frame):
//   agent → host, as soon as it accepts:  "HULLAUTH" | version (1 byte, 1) | nonce (32 random bytes)   41 bytes
//   host → agent:                         HMAC-SHA256(key, "hull-agent-auth-v1\0" | nonce)              32 bytes
// then ttrpc both ways. A fresh nonce per connection means a recorded proof is worth nothing on another connection,
// and the key itself never crosses the wire. The agent reads exactly 32 bytes (ttrpc frames the host sends right
// behind its proof stay buffered for the server), compares in constant time, and on a wrong proof, a short one or
// none within its deadline closes the connection without having read a frame. The host reads exactly 41 bytes and
// checks them before it writes anything: the guest is untrusted, nothing it sends here is buffered beyond that.
// The agent does not prove itself to the host (the host reaches it only through the VM's own socket or CID).
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { ConnectionClosedError } from './errors.js';

export const AGENT_KEY_BYTES = 32;
const MAGIC = Buffer.from('HULLAUTH', 'latin1');
const VERSION = 1;
const NONCE_BYTES = 32;
export const CHALLENGE_BYTES = MAGIC.length + 1 + NONCE_BYTES;
export const PROOF_BYTES = 32;
const CONTEXT = Buffer.from('hull-agent-auth-v1\0', 'latin1');
const OLD_IMAGE_HINT = ' (is the guest image current? an agent older than this check sends no challenge; "npm run build" rebuilds the image)';
/**
 * Where a QEMU guest finds the key: QEMU gives it as this fw_cfg file (hypervisor/qemu-command.ts), which the guest
 * kernel's qemu_fw_cfg module shows, to root only, at GUEST_AGENT_KEY_PATH.
 */
export const AGENT_KEY_FW_CFG = 'opt/hull/agent-key';
export const GUEST_AGENT_KEY_PATH = `/sys/firmware/qemu_fw_cfg/by_name/${AGENT_KEY_FW_CFG}/raw`;
/** The key's text form, in the host's file and in what the guest is given: 64 lowercase hex digits and a newline. */
const KEY_TEXT = /^[0-9a-f]{64}\n?$/;

/** The handshake failed: `side` says whose view (the host's: the guest refused or broke it; the agent's: the peer). */
export class AgentAuthError extends ConnectionClosedError {
  constructor(
    readonly side: 'host' | 'agent',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AgentAuthError';
  }
}

/** A new random key in its text form. */
export function newAgentKeyText(): string {
  return `${randomBytes(AGENT_KEY_BYTES).toString('hex')}\n`;
}

/** The key bytes from its text form; `source` names where it came from, for the error. */
export function parseAgentKey(text: string, source: string): Buffer {
  if (!KEY_TEXT.test(text)) {
    throw new AgentAuthError('host', `${source} is not an agent key (${AGENT_KEY_BYTES * 2} hex digits expected, ${text.length} characters found)`);
  }
  return Buffer.from(text.slice(0, AGENT_KEY_BYTES * 2), 'hex');
}

function proofOf(key: Buffer, nonce: Buffer): Buffer {
  return createHmac('sha256', key).update(CONTEXT).update(nonce).digest();
}

/**
 * Host side: waits for the agent's challenge (at most timeoutMs), answers it with the proof, and resolves with the
 * stream ready for ttrpc. On any failure the stream is destroyed and an AgentAuthError says why.
 */
export async function proveToAgent(stream: Duplex, key: Buffer, timeoutMs: number): Promise<void> {
  try {
    const challenge = await readExactly(stream, CHALLENGE_BYTES, timeoutMs, 'host', 'challenge from the agent', OLD_IMAGE_HINT);
    if (!challenge.subarray(0, MAGIC.length).equals(MAGIC) || challenge[MAGIC.length] !== VERSION) {
      throw new AgentAuthError(
        'host',
        `the agent did not open with a hull v${VERSION} challenge${OLD_IMAGE_HINT}`,
      );
    }
    stream.write(proofOf(key, challenge.subarray(MAGIC.length + 1)));
  } catch (err) {
    stream.destroy();
    throw err;
  }
}

/**
 * Agent side: sends a fresh challenge and resolves once the peer's proof is right (within timeoutMs); the stream is
 * then ready for ttrpc. Otherwise the stream is destroyed, nothing having been read past the proof, and an
 * AgentAuthError says why (for the agent's log).
 */
export async function requireHostProof(stream: Duplex, key: Buffer, timeoutMs: number): Promise<void> {
  try {
    const nonce = randomBytes(NONCE_BYTES);
    stream.write(Buffer.concat([MAGIC, Buffer.of(VERSION), nonce]));
    const proof = await readExactly(stream, PROOF_BYTES, timeoutMs, 'agent', 'proof from the host');
    if (!timingSafeEqual(proof, proofOf(key, nonce))) throw new AgentAuthError('agent', 'the peer does not hold the agent key');
  } catch (err) {
    stream.destroy();
    throw err;
  }
}

/**
 * Exactly `n` bytes from `stream`, leaving whatever follows them buffered in it; fails when the stream ends, errs or
 * the deadline passes first. Nothing beyond `n` bytes is asked of the stream (read(n)), so a peer cannot make this
 * buffer more.
 */
function readExactly(stream: Duplex, n: number, timeoutMs: number, side: 'host' | 'agent', what: string, timeoutHint = ''): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (err: Error | undefined, data?: Buffer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      stream.off('error', onError);
      if (err) reject(err);
      else resolve(data as Buffer);
    };
    const onReadable = (): void => {
      const chunk = stream.read(n) as Buffer | null;
      if (chunk === null) return; // fewer than n bytes so far
      if (chunk.length < n) finish(new AgentAuthError(side, `the connection ended after ${chunk.length} of the ${n} bytes of the ${what}`));
      else finish(undefined, chunk);
    };
    const onEnd = (): void => finish(new AgentAuthError(side, `the connection closed before the ${what} arrived`));
    const onError = (err: Error): void => finish(new AgentAuthError(side, `the connection failed before the ${what} arrived: ${err.message}`, { cause: err }));
    const timer = setTimeout(() => finish(new AgentAuthError(side, `no ${what} within ${timeoutMs} ms${timeoutHint}`)), timeoutMs);
    stream.on('readable', onReadable);
    stream.on('end', onEnd);
    stream.on('close', onEnd);
    stream.on('error', onError);
    if (stream.destroyed) onEnd();
    else onReadable();
  });
}
