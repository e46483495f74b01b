// vmm.json in the sandbox directory: what a later hull process needs to reattach to a detached VM or clean it up
// (pids with start times, the acceleration and transport chosen). Written atomically: temp file + rename.
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { VmRecordError } from './errors.js';
import type { TransportKind } from './transport.js';
import type { AccelerationChoice, VmConfig, VmProcesses } from './types.js';

export interface VmRecord {
  version: 1;
  config: VmConfig;
  accel: AccelerationChoice;
  /** 'none' when the VM has no vsock device. */
  transport: TransportKind | 'none';
  guestCid: number;
  processes: VmProcesses;
}

export function writeVmRecord(file: string, record: VmRecord): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

export function readVmRecord(file: string): VmRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new VmRecordError(`cannot read VM record ${file}: ${(err as Error).message}`, { cause: err });
  }
  const r = parsed as Partial<VmRecord>;
  if (r?.version !== 1 || typeof r.config !== 'object' || typeof r.processes !== 'object' || r.accel === undefined) {
    throw new VmRecordError(`VM record ${file} is not a version 1 record`);
  }
  return r as VmRecord;
}

export function removeVmRecord(file: string): void {
  rmSync(file, { force: true });
}
