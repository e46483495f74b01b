// vmm.json in the sandbox directory: what a later hull process needs to reattach to a detached VM or clean it up
// (the driver, pids with start times, the acceleration and transport chosen). Written atomically: temp file + rename.
// Records of earlier hull versions (no driver, the processes as fixed fields) are read into today's shape.
import { readFileSync, rmSync } from 'node:fs';
import { writeFileAtomic } from './atomic-write.js';
import { VmRecordError } from './errors.js';
import type { TransportKind } from './transport.js';
import type { AccelerationChoice, VmConfig, VmProcesses } from './types.js';
import { parseVmProcesses } from './vm-processes.js';

export interface VmRecord {
  version: 1;
  /** The driver that started the VM (hypervisor/registry.ts); absent in records of earlier hull: 'qemu-microvm'. */
  driver?: string;
  config: VmConfig;
  accel: AccelerationChoice;
  /** 'none' when the VM has no vsock device. */
  transport: TransportKind | 'none';
  guestCid: number;
  processes: VmProcesses;
}

export function writeVmRecord(file: string, record: VmRecord): void {
  writeFileAtomic(file, `${JSON.stringify(record, null, 2)}\n`, 0o600);
}

export function readVmRecord(file: string): VmRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    const kind = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not-found' : 'internal';
    throw new VmRecordError(kind, `cannot read VM record ${file}: ${(err as Error).message}`, { cause: err });
  }
  const r = parsed as Partial<VmRecord>;
  if (r?.version !== 1 || typeof r.config !== 'object' || typeof r.processes !== 'object' || r.accel === undefined) {
    throw new VmRecordError('internal', `VM record ${file} is not a version 1 record`);
  }
  const processes = parseVmProcesses(r.processes, file);
  const driver = r.driver ?? processes.driver;
  if (driver !== undefined && typeof driver !== 'string') throw new VmRecordError('internal', `VM record ${file}: driver is not a string`);
  return { ...(r as VmRecord), ...(driver !== undefined ? { driver } : {}), processes };
}

export function removeVmRecord(file: string): void {
  rmSync(file, { force: true });
}
