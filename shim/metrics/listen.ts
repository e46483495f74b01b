// The address `hull metrics --listen` serves on: HOST:PORT, an IPv6 host in brackets ([::1]:9099). Checked before
// anything listens, so a bad one is one line.
import net from 'node:net';
import { invalidArgument } from '../errors.js';

/** kata-monitor listens on 127.0.0.1:8090; hull's default stays on loopback too. */
export const DEFAULT_LISTEN = '127.0.0.1:9099';

export interface ListenAddress {
  host: string;
  port: number;
}

export function parseListen(text: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const bad = (why: string) => invalidArgument(`--listen "${text}": ${why}`);
  if (!m) throw bad('expected HOST:PORT, e.g. 127.0.0.1:9099 or [::1]:9099');
  const host = m[1] ?? m[2]!;
  if (m[1] !== undefined && net.isIPv6(host) === false) throw bad(`${host} is not an IPv6 address`);
  if (m[2] !== undefined && !net.isIPv4(host) && !/^[a-zA-Z0-9.-]+$/.test(host)) throw bad(`${host} is not a host name or IPv4 address`);
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw bad('the port must be 1-65535');
  return { host, port };
}
