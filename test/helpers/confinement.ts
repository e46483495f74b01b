// What /proc says about a process's confinement (docs/confinement.md): its ids, capability sets, no_new_privs and
// seccomp mode, parsed, so tests can assert them and print them in one line; and the whole promise for one VM.
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { expect } from 'vitest';
import type { VmProcesses } from '../../hypervisor/types.js';
import type { UidRange } from '../../hypervisor/vmm-uid.js';

export interface ProcConfinement {
  uid: number[];
  gid: number[];
  groups: number[];
  caps: { CapInh: bigint; CapPrm: bigint; CapEff: bigint; CapBnd: bigint; CapAmb: bigint };
  noNewPrivs: number;
  /** 0 none, 1 strict, 2 filter. */
  seccomp: number;
}

export function procStatus(pid: number, task = pid): ProcConfinement {
  const fields = new Map<string, string>();
  for (const line of readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8').split('\n')) {
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (m) fields.set(m[1] as string, (m[2] as string).trim());
  }
  const ids = (name: string): number[] => (fields.get(name) ?? '').split(/\s+/).filter(Boolean).map(Number);
  const cap = (name: string): bigint => BigInt(`0x${fields.get(name) ?? 'x'}`);
  return {
    uid: ids('Uid'),
    gid: ids('Gid'),
    groups: ids('Groups'),
    caps: { CapInh: cap('CapInh'), CapPrm: cap('CapPrm'), CapEff: cap('CapEff'), CapBnd: cap('CapBnd'), CapAmb: cap('CapAmb') },
    noNewPrivs: Number(fields.get('NoNewPrivs')),
    seccomp: Number(fields.get('Seccomp')),
  };
}

/** One line for logs and reports: "uid 1000000001 gid … caps eff 0 bnd 0 nnp 1 seccomp 2". */
export function describeConfinement(c: ProcConfinement): string {
  const hex = (v: bigint): string => v.toString(16);
  return `uid ${c.uid[0]} gid ${c.gid[0]} caps eff ${hex(c.caps.CapEff)} prm ${hex(c.caps.CapPrm)} bnd ${hex(c.caps.CapBnd)} nnp ${c.noNewPrivs} seccomp ${c.seccomp}`;
}

/** Tasks (threads) of a process. */
function tasks(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).map(Number);
}

/** The only child of `pid` (the vsock broker's worker, virtiofsd's serving process). */
function onlyChild(pid: number): number {
  const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  expect(kids, `process ${pid} should have exactly one child`).toHaveLength(1);
  return kids[0] as number;
}

const NO_CAPS = { CapInh: 0n, CapPrm: 0n, CapEff: 0n, CapBnd: 0n, CapAmb: 0n };
/** What virtiofsd serves files with (hypervisor/virtiofsd.ts): chown, dac_override, fowner, fsetid, setgid, setuid. */
const VIRTIOFSD_SERVING = 0xdbn;
/** Its bounding set from setpriv: those and sys_admin, setpcap (its own sandbox's set-up). */
const VIRTIOFSD_BOUNDING = 0x2001dbn;

export interface ConfinementLine {
  role: string;
  pid: number;
  line: string;
}

/**
 * Asserts what docs/confinement.md promises of each host process of a running QEMU VM, from /proc alone, and returns
 * one line per process (for logs and reports):
 * - QEMU, every thread: the VM's own uid/gid from `range`, no supplementary groups, no capability in any set,
 *   no_new_privs, seccomp filter; own mount, network, IPC and UTS namespaces; no path of its socket dir reachable or open.
 * - vsock broker: root without capabilities, no_new_privs, seccomp; its worker: QEMU's uid, likewise.
 * - virtiofsd: root; its serving process (the child in its own namespaces) with only the serving capabilities, an empty
 *   bounding set, no_new_privs and seccomp; no thread of either with more than VIRTIOFSD_BOUNDING, none without nnp.
 */
export function expectVmConfined(p: VmProcesses, range: UidRange): ConfinementLine[] {
  const out: ConfinementLine[] = [];
  const report = (role: string, pid: number): ProcConfinement => {
    const c = procStatus(pid);
    out.push({ role, pid, line: describeConfinement(c) });
    return c;
  };
  const vmm = p.vmm?.pid;
  expect(vmm, 'the VM has a QEMU pid').toBeTypeOf('number');
  const q = report('qemu', vmm as number);
  const uid = q.uid[0] as number;
  expect(uid).toBeGreaterThanOrEqual(range.first);
  expect(uid).toBeLessThanOrEqual(range.last);
  for (const t of tasks(vmm as number)) {
    const c = procStatus(vmm as number, t);
    expect({ uid: c.uid, gid: c.gid, groups: c.groups, caps: c.caps, nnp: c.noNewPrivs, seccomp: c.seccomp }, `QEMU thread ${t}`).toEqual({
      uid: [uid, uid, uid, uid],
      gid: [uid, uid, uid, uid],
      groups: [],
      caps: NO_CAPS,
      nnp: 1,
      seccomp: 2,
    });
  }
  for (const ns of ['mnt', 'net', 'ipc', 'uts']) {
    expect(readlinkSync(`/proc/${vmm}/ns/${ns}`), `QEMU's ${ns} namespace`).not.toBe(readlinkSync(`/proc/self/ns/${ns}`));
  }
  const marker = /^HULL_VM_SOCKETS=(.*)\0$/.exec(readFileSync(`/proc/${vmm}/environ`, 'utf8'))?.[1];
  expect(marker, "QEMU's whole environment is its socket dir marker").toMatch(/^\/.*\/$/);
  const socketDir = (marker as string).slice(0, -1);
  expect(existsSync(`/proc/${vmm}/root${socketDir}`), 'the socket dir is not in QEMU’s root').toBe(false);
  const openPaths = readdirSync(`/proc/${vmm}/fd`).map((fd) => readlinkSync(`/proc/${vmm}/fd/${fd}`));
  expect(openPaths.filter((f) => f.startsWith(`${socketDir}/`))).toEqual([]);

  const helper = (role: string): number => {
    const h = p.helpers?.find((x) => x.role === role);
    expect(h, `the VM has a ${role}`).toBeDefined();
    return (h as { pid: number }).pid;
  };
  const broker = helper('vsock-backend');
  const worker = onlyChild(broker);
  for (const [role, pid, id] of [['vsock-broker', broker, 0], ['vsock-worker', worker, uid]] as const) {
    const c = report(role, pid);
    expect({ uid: c.uid, gid: c.gid, caps: c.caps, nnp: c.noNewPrivs, seccomp: c.seccomp }, role).toEqual({
      uid: [id, id, id, id],
      gid: [id, id, id, id],
      caps: NO_CAPS,
      nnp: 1,
      seccomp: 2,
    });
  }

  const vfsd = helper('virtiofsd');
  const serving = onlyChild(vfsd);
  report('virtiofsd', vfsd);
  const s = report('virtiofsd-serving', serving);
  expect({ uid: s.uid, eff: s.caps.CapEff, bnd: s.caps.CapBnd, nnp: s.noNewPrivs, seccomp: s.seccomp }).toEqual({
    uid: [0, 0, 0, 0],
    eff: VIRTIOFSD_SERVING,
    bnd: 0n,
    nnp: 1,
    seccomp: 2,
  });
  expect(readlinkSync(`/proc/${serving}/ns/mnt`)).not.toBe(readlinkSync('/proc/self/ns/mnt'));
  for (const pid of [vfsd, serving]) {
    for (const t of tasks(pid)) {
      const c = procStatus(pid, t);
      expect([(c.caps.CapBnd | c.caps.CapPrm) & ~VIRTIOFSD_BOUNDING, c.noNewPrivs], `virtiofsd ${pid} thread ${t}`).toEqual([0n, 1]);
    }
  }
  return out;
}
