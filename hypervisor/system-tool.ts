// Absolute paths of the system tools hull runs (nsenter, ip, tc): containerd may start the shim with a PATH that
// lacks /usr/sbin, so they are looked up in the usual directories rather than through PATH.
import { existsSync } from 'node:fs';
import { BinaryNotFoundError } from './errors.js';

const SEARCH = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];
const found = new Map<string, string>();

/** The tool's path; throws one line naming the Debian package to install when it is nowhere. */
export function systemTool(name: string, debianPackage: string): string {
  const hit = found.get(name) ?? SEARCH.map((d) => `${d}/${name}`).find((p) => existsSync(p));
  if (!hit) throw new BinaryNotFoundError(name, SEARCH.map((d) => `${d}/${name}`).join(', '), `install Debian package ${debianPackage}`);
  found.set(name, hit);
  return hit;
}
