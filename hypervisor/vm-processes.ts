// The VM's host processes as records keep them (vmm.json `processes`, state.json and pod.json `vm`): reading them
// back, including the shape hull wrote before drivers and helper lists, and ending them from the record alone.
import { VmRecordError } from './errors.js';
import { readdirSync, readFileSync } from 'node:fs';
import { HostProcess, procStartTime, type RecordedProcess } from './process.js';
import type { VmProcess, VmProcesses } from './types.js';

/** The role of the VMM process itself in VmProcesses. */
export const VMM_ROLE = 'vmm';

/**
 * The shape hull wrote before drivers: QEMU's three processes as fixed fields. Its helpers' roles, in the order they
 * started, are the ones the QEMU driver (qemu.ts) uses today.
 */
interface LegacyVmProcesses {
  vmm?: number;
  virtiofsd?: number;
  vsockBackend?: number;
  startTimes?: { vmm?: number; virtiofsd?: number; vsockBackend?: number };
}
const LEGACY_HELPERS = [
  ['vsockBackend', 'vsock-backend'],
  ['virtiofsd', 'virtiofsd'],
] as const;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Reads the VM's processes from a parsed record field; `source` names the record in errors. Absent means none.
 * Throws VmRecordError when the field is neither shape: a pid hull cannot trust must never be signalled.
 */
export function parseVmProcesses(value: unknown, source: string): VmProcesses {
  if (value === undefined || value === null) return {};
  if (!isObject(value)) throw new VmRecordError('internal', `${source}: the VM's processes are not an object`);
  if (typeof value['vmm'] === 'number' || 'virtiofsd' in value || 'vsockBackend' in value || 'startTimes' in value) {
    return fromLegacy(value as LegacyVmProcesses, source);
  }
  const out: VmProcesses = {};
  if (value['driver'] !== undefined) {
    if (typeof value['driver'] !== 'string') throw new VmRecordError('internal', `${source}: the VM's driver is not a string`);
    out.driver = value['driver'];
  }
  if (value['vmm'] !== undefined) out.vmm = parseProcess(value['vmm'], `${source}: vmm`);
  if (value['helpers'] !== undefined) {
    if (!Array.isArray(value['helpers'])) throw new VmRecordError('internal', `${source}: the VM's helpers are not a list`);
    out.helpers = value['helpers'].map((h, i) => parseProcess(h, `${source}: helpers[${i}]`));
  }
  return out;
}

function parseProcess(value: unknown, where: string): VmProcess {
  if (!isObject(value)) throw new VmRecordError('internal', `${where} is not an object`);
  const { role, pid, startTime } = value;
  if (typeof role !== 'string' || role === '') throw new VmRecordError('internal', `${where} has no role`);
  if (!isPid(pid)) throw new VmRecordError('internal', `${where} has no valid pid`);
  if (startTime === undefined) return { role, pid };
  if (!isTicks(startTime)) throw new VmRecordError('internal', `${where} has an invalid start time`);
  return { role, pid, startTime };
}

function fromLegacy(value: LegacyVmProcesses, source: string): VmProcesses {
  const entry = (field: 'vmm' | 'virtiofsd' | 'vsockBackend', role: string): VmProcess | undefined => {
    const pid = value[field];
    if (pid === undefined) return undefined;
    if (!isPid(pid)) throw new VmRecordError('internal', `${source}: ${field} is not a pid`);
    const startTime = value.startTimes?.[field];
    if (startTime === undefined) return { role, pid };
    if (!isTicks(startTime)) throw new VmRecordError('internal', `${source}: the start time of ${field} is invalid`);
    return { role, pid, startTime };
  };
  const out: VmProcesses = {};
  const vmm = entry('vmm', VMM_ROLE);
  if (vmm) out.vmm = vmm;
  const helpers = LEGACY_HELPERS.map(([field, role]) => entry(field, role)).filter((p): p is VmProcess => p !== undefined);
  if (helpers.length > 0) out.helpers = helpers;
  return out;
}

const isPid = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;
const isTicks = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/**
 * Ends a VM's processes from their record alone (crashed monitor or shim, `delete`): the VMM first, then its helpers
 * in reverse start order, each SIGTERM then SIGKILL after graceMs. A pid whose start time no longer matches belongs
 * to another process by now and is left alone.
 */
export async function endRecordedProcesses(processes: VmProcesses, graceMs: number): Promise<void> {
  const order = [...(processes.vmm ? [processes.vmm] : []), ...[...(processes.helpers ?? [])].reverse()];
  for (const p of order) {
    await HostProcess.adopt(p.role, p).terminate(graceMs);
  }
}

/**
 * Ends every process whose command line or environment contains `marker` (SIGTERM, then SIGKILL after graceMs): the
 * VM's processes that no record names. The marker must be unique to one VM (its socket dir is: a hash of its sandbox
 * directory; QEMU, which gets descriptors instead of socket paths, has it in its environment, vmm-launcher.ts).
 * Processes this one cannot read are skipped; this process itself never matches.
 */
export async function endProcessesNaming(marker: string, graceMs: number): Promise<void> {
  const strays = processesNaming(marker);
  await Promise.all(strays.map((p) => HostProcess.adopt('stray', p).terminate(graceMs)));
}

function processesNaming(marker: string): RecordedProcess[] {
  const found: RecordedProcess[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) continue;
    if (!procFileHas(pid, 'cmdline', marker) && !procFileHas(pid, 'environ', marker)) continue;
    const startTime = procStartTime(pid);
    found.push(startTime === undefined ? { pid } : { pid, startTime });
  }
  return found;
}

function procFileHas(pid: number, file: 'cmdline' | 'environ', marker: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'latin1').includes(marker);
  } catch {
    return false; // exited, or not ours to read
  }
}
