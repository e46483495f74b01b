// Same-user check for the shim socket (containerd's UnixSocketRequireSameUser): a connection whose peer's effective
// uid/gid differ from ours is closed before any request is read. Node cannot read SO_PEERCRED; the hull addon can.
import { createRequire } from 'node:module';
import type net from 'node:net';
import { addonPath } from '../native/addon/index.js';

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

type PeerCredFn = (fd: number) => PeerCredentials | number;
let fn: PeerCredFn | null | undefined;

function load(): PeerCredFn | null {
  if (fn !== undefined) return fn;
  try {
    const addon = createRequire(import.meta.url)(addonPath()) as { peerCredentials?: PeerCredFn };
    fn = typeof addon.peerCredentials === 'function' ? addon.peerCredentials : null;
  } catch {
    fn = null;
  }
  return fn;
}

/** The peer of a connected unix socket; undefined when the addon (or the fd) is unavailable. */
export function peerCredentials(socket: net.Socket): PeerCredentials | undefined {
  const f = load();
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (!f || typeof fd !== 'number' || fd < 0) return undefined;
  const r = f(fd);
  return typeof r === 'number' ? undefined : r;
}

export type PeerCheck = { ok: true; creds?: PeerCredentials } | { ok: false; reason: string };

export function checkSameUser(socket: net.Socket, uid = process.geteuid?.() ?? 0, gid = process.getegid?.() ?? 0): PeerCheck {
  const creds = peerCredentials(socket);
  // Without the addon the socket's 0600 mode is the only guard (it admits the same uid, and root).
  if (!creds) return { ok: true };
  if (creds.uid !== uid || creds.gid !== gid) {
    return { ok: false, reason: `peer pid ${creds.pid} runs as ${creds.uid}:${creds.gid}, not ${uid}:${gid}` };
  }
  return { ok: true, creds };
}

export const peerCredentialsAvailable = (): boolean => load() !== null;
