// The versions `hull check` and `hull env` report: QEMU's and virtiofsd's from their own --version (the first line),
// hull's, Node's, and the guest image's from its manifest.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export const HULL_VERSION = '0.1.0';

export type ToolVersion = { path: string; version: string } | { path: string; problem: string };

/** `<path> --version`, first line, the words after "version" (e.g. "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"). */
export function toolVersion(path: string): ToolVersion {
  if (!existsSync(path)) return { path, problem: `not found at ${path}` };
  const r = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 5_000 });
  if (r.error) return { path, problem: `${path} --version failed: ${r.error.message}` };
  if (r.status !== 0) return { path, problem: `${path} --version exited ${r.status ?? r.signal}: ${r.stderr.trim().split('\n')[0] ?? ''}` };
  const first = r.stdout.split('\n')[0]?.trim() ?? '';
  const m = /\bversion\s+(.+)$/i.exec(first);
  return { path, version: m?.[1] ?? first };
}
