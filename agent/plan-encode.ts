// The plan's wire form on the helper's fd 3 (docs/design.md): NUL-terminated strings, each key followed by its
// fixed number of values. The helper refuses unknown keys, so only keys it knows are written.
import { SpecError } from './errors.js';
import type { Plan } from './spec-plan.js';
import type { PlanSeccomp } from './spec-seccomp.js';
import { CAPABILITY_SETS } from './spec-security.js';

export function encodePlan(plan: Plan): Buffer {
  const out: string[] = [];
  const put = (key: string, ...values: Array<string | number>): void => {
    out.push(key);
    for (const v of values) {
      const s = String(v);
      // A NUL would shift every later key; the checks in spec-plan.ts should make this unreachable.
      if (s.includes('\0')) throw new SpecError(`plan value for ${key} contains NUL`);
      out.push(s);
    }
  };

  put('mode', plan.mode);
  if (plan.mode === 'exec') put('join_pid', plan.joinPid ?? 0);
  if (plan.namespaces.length) put('namespaces', plan.namespaces.join(','));
  for (const j of plan.joins) put('join_ns', j.type, j.pid, j.inode);
  if (plan.rootfs !== undefined) put('rootfs', plan.rootfs);
  put('readonly_root', plan.readonlyRoot ? '1' : '0');
  if (plan.hostname !== undefined) put('hostname', plan.hostname);
  if (plan.rootfsPropagation !== undefined) put('rootfs_propagation', plan.rootfsPropagation);
  for (const m of plan.uidMappings ?? []) put('uid_map', m.containerID, m.hostID, m.size);
  for (const m of plan.gidMappings ?? []) put('gid_map', m.containerID, m.hostID, m.size);
  for (const m of plan.mounts) {
    put('mount', m.type, m.source, m.destination, m.flags >>> 0, m.data);
    for (const f of m.propagation ?? []) put('mount_propagation', f);
  }
  if (plan.cgroup !== undefined) put('cgroup', plan.cgroup);
  for (const r of plan.rlimits) put('rlimit', r.resource, r.soft, r.hard);
  put('uid', plan.uid);
  put('gid', plan.gid);
  put('groups', plan.groups.join(','));
  put('cwd', plan.cwd);
  if (plan.terminal) put('console', '-');
  if (plan.execPath !== undefined) put('exec_path', plan.execPath);
  if (plan.capabilities) put('capabilities', ...CAPABILITY_SETS.map((set) => capabilityMask(plan.capabilities![set])));
  if (plan.noNewPrivileges) put('no_new_privs', '1');
  for (const p of plan.readonlyPaths) put('readonly_path', p);
  for (const p of plan.maskedPaths) put('masked_path', p);
  for (const [k, v] of plan.sysctls) put('sysctl', k, v);
  for (const d of plan.devices) put('device', d.path, d.type, d.major, d.minor, d.mode, d.uid, d.gid);
  if (plan.oomScoreAdj !== undefined) put('oom_score_adj', plan.oomScoreAdj);
  if (plan.deviceCgroup) {
    put('devcgroup', plan.deviceCgroup.defaultAllow ? 'allow' : 'deny');
    const n = (v: number): string => (v < 0 ? '*' : String(v));
    for (const r of plan.deviceCgroup.rules) put('devcgroup_rule', r.type, n(r.major), n(r.minor), r.access);
  }
  if (plan.seccomp) putSeccomp(plan.seccomp, put);
  for (const e of plan.env) put('env', e);
  for (const a of plan.args) put('arg', a);
  put('end'); // the helper stops reading here instead of waiting for EOF (docs/design.md)
  return Buffer.from(out.map((s) => `${s}\0`).join(''), 'utf8');
}

/** Capability numbers → the decimal 64-bit mask the helper reads. */
function capabilityMask(caps: number[]): string {
  let mask = 0n;
  for (const c of caps) mask |= 1n << BigInt(c);
  return mask.toString();
}

function putSeccomp(sc: PlanSeccomp, put: (key: string, ...values: Array<string | number>) => void): void {
  put('seccomp', sc.defaultAction, sc.defaultErrnoRet);
  for (const a of sc.architectures) put('seccomp_arch', a);
  for (const r of sc.rules) {
    put('seccomp_syscall', r.name, r.action, r.errnoRet);
    for (const a of r.args) put('seccomp_arg', a.index, a.value, a.valueTwo, a.op);
  }
}

/** Inverse of encodePlan's framing, for tests and debugging: [key, values[]] pairs. */
export function decodePlanStrings(buf: Buffer): string[] {
  const s = buf.toString('utf8');
  if (s.length && !s.endsWith('\0')) throw new Error('plan does not end with NUL');
  return s.length ? s.slice(0, -1).split('\0') : [];
}
