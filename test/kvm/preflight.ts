// Whether `npm run test:kvm` can run on this host, in one line when it cannot. Two kinds of "no":
// - the host: no usable KVM (hull's own probe, hypervisor/acceleration.ts, decides, so the suite runs exactly where
//   `HULL_ACCEL=kvm` works) or no kernel vhost-vsock (/dev/vhost-vsock that root can open). Nothing to fix in hull's
//   checkout: run.mjs says why and exits 0 (1 with HULL_TEST_REQUIRE_KVM=1, for a CI runner that must have KVM).
// - the set-up: not root, or a part of hull not built. run.mjs says what and exits 1.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { probeKvm } from '../../hypervisor/acceleration.js';
import { vhostVsockUsable } from '../../hypervisor/transport.js';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export type Preflight = { kind: 'run' } | { kind: 'host'; why: string } | { kind: 'setup'; why: string };

export function kvmSuitePreflight(): Preflight {
  const kvm = probeKvm();
  const kvmWhy = kvm.usable ? undefined : kvm.why;
  const vsockWhy = vhostVsockUsable()
    ? undefined
    : existsSync('/dev/vhost-vsock')
      ? '/dev/vhost-vsock cannot be opened read-write (run as root)'
      : 'the host kernel has no vhost-vsock (/dev/vhost-vsock is absent: modprobe vhost_vsock)';
  const host = [kvmWhy && `no usable KVM (${kvmWhy})`, vsockWhy].filter(Boolean);
  if (host.length > 0) return { kind: 'host', why: host.join('; ') };

  const missing = [
    process.getuid?.() !== 0 && 'root (run it as root)',
    !existsSync(path.join(repo, 'dist', 'hull.mjs')) && 'dist/hull.mjs (npm run build)',
    !existsSync(path.join(repo, 'build', 'guest', 'current', 'manifest.json')) && 'the guest image (npm run build)',
    !existsSync(path.join(repo, 'native', 'addon', 'build', 'Release', 'hull_native.node')) && 'the native addon (npm run build:addon)',
    !existsSync('/bin/busybox') && '/bin/busybox (apt-get install busybox-static)',
  ].filter((m): m is string => typeof m === 'string');
  if (missing.length > 0) return { kind: 'setup', why: `missing ${missing.join(', ')}` };
  return { kind: 'run' };
}

/** For each suite file's beforeAll: run directly with vitest on a host that cannot, it fails with the one line. */
export function requireKvmHost(): void {
  const p = kvmSuitePreflight();
  if (p.kind !== 'run') throw new Error(`the KVM suite cannot run here: ${p.why}`);
}
