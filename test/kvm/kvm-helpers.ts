// What the KVM suite files share: hull under HULL_ACCEL=kvm (so a KVM that stops working fails loudly instead of
// falling back to TCG), and reading what a VM's record and logs say about how it runs.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { hull, hullDetached, type HullOptions, type Result } from '../helpers/hull.js';
import type { VmRecord } from '../../hypervisor/record.js';

export const KVM_ENV = { HULL_ACCEL: 'kvm' };

export function hullKvm(args: string[], options: HullOptions): Promise<Result> {
  return hull(args, { ...options, env: { ...KVM_ENV, ...options.env } });
}

export function hullKvmDetached(args: string[], options: HullOptions & { stdout: string; stderr: string }): Promise<Result> {
  return hullDetached(args, { ...options, env: { ...KVM_ENV, ...options.env } });
}

/** The VMM's record (hypervisor/record.ts) of the VM that lives in `vmDir`. */
export function vmRecord(vmDir: string): VmRecord {
  return JSON.parse(readFileSync(path.join(vmDir, 'vmm.json'), 'utf8')) as VmRecord;
}

/** The QEMU command line hull wrote as the first line of the VM's qemu.log. */
export function qemuArgv(vmDir: string): string {
  return readFileSync(path.join(vmDir, 'qemu.log'), 'utf8').split('\n')[0] ?? '';
}

/** A JSON log (--log-format json) as records. */
export function jsonLog(file: string): Array<Record<string, unknown>> {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Asserts what makes a VM a KVM + kernel vhost-vsock one, from its record and QEMU's command line. */
export function kvmFacts(vmDir: string): { accel: string; transport: string; guestCid: number; argv: string } {
  const r = vmRecord(vmDir);
  return { accel: r.accel.accel, transport: r.transport, guestCid: r.guestCid, argv: qemuArgv(vmDir) };
}
