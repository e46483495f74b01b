// The OCI process security settings other than seccomp (spec-seccomp.ts): capabilities, no_new_privs, masked and
// readonly paths, sysctls. Checked here; the helper applies them (native/container-init/security.c).
import path from 'node:path';
import { SpecError } from './errors.js';
import { arrMax, asObject, str } from './spec-fields.js';

export const CAPABILITY_SETS = ['bounding', 'effective', 'permitted', 'inheritable', 'ambient'] as const;
export type CapabilitySet = (typeof CAPABILITY_SETS)[number];
/** Capability numbers per set (linux/capability.h). */
export type PlanCapabilities = Record<CapabilitySet, number[]>;

/** linux/capability.h, CAP_CHOWN (0) to CAP_CHECKPOINT_RESTORE (40). */
const CAPABILITIES: readonly string[] = [
  'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP',
  'LINUX_IMMUTABLE', 'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER',
  'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE', 'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE',
  'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE', 'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP',
  'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF',
  'CHECKPOINT_RESTORE',
].map((c) => `CAP_${c}`);

const MAX_CAPS_PER_SET = 256;
const MAX_PATHS = 1024;
const MAX_SYSCTLS = 1024;
const MAX_PATH_BYTES = 4095;
const MAX_SYSCTL_VALUE_BYTES = 4096;

/**
 * process.capabilities: a missing set is empty (as in runc). Unknown names are skipped with a warning, as runc does
 * (a newer spec may name capabilities this kernel lacks).
 */
export function capabilitiesFrom(value: unknown, at: string, warnings: string[]): PlanCapabilities {
  const o = asObject(value, at);
  for (const k of Object.keys(o)) {
    if (!(CAPABILITY_SETS as readonly string[]).includes(k)) throw new SpecError(`${at}.${k} is not a capability set (${CAPABILITY_SETS.join(', ')})`);
  }
  const unknown = new Set<string>();
  const out = {} as PlanCapabilities;
  for (const set of CAPABILITY_SETS) {
    const list = o[set] === undefined || o[set] === null ? [] : arrMax(o[set], `${at}.${set}`, MAX_CAPS_PER_SET);
    const nums = new Set<number>();
    list.forEach((c, i) => {
      const name = str(c, `${at}.${set}[${i}]`);
      const n = CAPABILITIES.indexOf(name);
      if (n < 0) unknown.add(name);
      else nums.add(n);
    });
    out[set] = [...nums].sort((a, b) => a - b);
  }
  for (const name of unknown) warnings.push(`${at}: unknown capability "${name.slice(0, 64)}" ignored`);
  return out;
}

/** linux.maskedPaths / linux.readonlyPaths: absolute container paths without "..". */
export function securityPathsFrom(value: unknown, at: string): string[] {
  if (value === undefined || value === null) return [];
  return arrMax(value, at, MAX_PATHS).map((v, i) => {
    const p = str(v, `${at}[${i}]`);
    if (!path.posix.isAbsolute(p) || p.split('/').includes('..') || Buffer.byteLength(p) > MAX_PATH_BYTES) {
      throw new SpecError(`${at}[${i}] "${p.slice(0, 200)}" must be an absolute path without ".." (at most ${MAX_PATH_BYTES} bytes)`);
    }
    return path.posix.normalize(p);
  });
}

/** Sysctls of the IPC namespace (runc's libcontainer/configs/validate), besides every fs.mqueue.* key. */
const IPC_SYSCTLS = new Set([
  'kernel.msgmax', 'kernel.msgmnb', 'kernel.msgmni', 'kernel.sem', 'kernel.shmall', 'kernel.shmmax', 'kernel.shmmni',
  'kernel.shm_rmid_forced',
]);

export interface SysctlNamespaces {
  /** The container has an IPC namespace of its own or its pod's (created or joined), not the guest's. */
  ipc: boolean;
  uts: boolean;
  /**
   * The spec gives the container a network namespace. In hull that is the VM's own (the pod's containers share the
   * guest's network, which holds only the pod's interfaces), so net.* keys change only this pod.
   */
  net: boolean;
}

/**
 * linux.sysctl: only keys that belong to a namespace the container does not share with the guest, as runc's
 * validator allows; anything else would change the whole VM and is refused. "kernel/shmmax" is read as
 * "kernel.shmmax" (runc accepts both separators).
 */
export function sysctlsFrom(value: unknown, ns: SysctlNamespaces): Array<[string, string]> {
  if (value === undefined || value === null) return [];
  const o = asObject(value, 'linux.sysctl');
  const entries = Object.entries(o);
  if (entries.length > MAX_SYSCTLS) throw new SpecError(`linux.sysctl has ${entries.length} keys; at most ${MAX_SYSCTLS} are supported`);
  return entries.map(([rawKey, v]): [string, string] => {
    const at = `linux.sysctl["${rawKey.slice(0, 64)}"]`;
    const key = /^[^./]*\//.test(rawKey) ? rawKey.replace(/[./]/g, (c) => (c === '/' ? '.' : '/')) : rawKey;
    if (key.length > 255 || !/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$/.test(key)) throw new SpecError(`${at}: not a sysctl key`);
    const val = str(v, at);
    if (Buffer.byteLength(val) > MAX_SYSCTL_VALUE_BYTES) throw new SpecError(`${at}: value longer than ${MAX_SYSCTL_VALUE_BYTES} bytes`);
    if (IPC_SYSCTLS.has(key) || key.startsWith('fs.mqueue.')) {
      if (!ns.ipc) throw new SpecError(`sysctl ${key} needs a private IPC namespace (add "ipc" to linux.namespaces)`);
    } else if (key.startsWith('net.')) {
      if (!ns.net) throw new SpecError(`sysctl ${key} needs a private network namespace (add "network" to linux.namespaces)`);
    } else if (key === 'kernel.domainname' && ns.uts) {
      // namespaced, and no OCI field sets it
    } else if (key === 'kernel.hostname' && ns.uts) {
      throw new SpecError('sysctl kernel.hostname is not allowed: set the OCI "hostname" field instead');
    } else {
      throw new SpecError(`sysctl ${key} is not in a separate kernel namespace: it would change the whole VM`);
    }
    return [key, val];
  });
}
