// For tests of the agent's door check (protocol/agent-auth.ts): what a peer without the key sends, and what it gets
// back before the agent closes the connection.
import type net from 'node:net';
import { AgentClient } from '../../protocol/agent-client.js';
import { duplexPair } from '../../protocol/ttrpc/duplex-pair.js';

/** Everything the peer sends until it closes the connection (bounded, so a connection left open fails the test). */
export function collectUntilClose(sock: net.Socket, timeoutMs = 20_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`the agent did not close the connection within ${timeoutMs} ms (got ${Buffer.concat(chunks).length} bytes)`));
    }, timeoutMs);
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', () => undefined);
    sock.once('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
  });
}

/** The bytes of one ttrpc Health request, as a host side without the key would send them. */
export async function healthRequestFrame(): Promise<Buffer> {
  const [a, b] = duplexPair();
  const client = new AgentClient(a);
  const frame = new Promise<Buffer>((resolve) => b.once('data', (c: Buffer) => resolve(Buffer.from(c))));
  void client.health().catch(() => undefined);
  const bytes = await frame;
  client.close();
  return bytes;
}
