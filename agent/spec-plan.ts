// OCI spec → container-init plan (docs/design.md "Container init helper"). Pure: no I/O except through the
// injected `resolvePath`, so every rule here is unit-tested. The spec comes from the host and is checked field by
// field; anything the helper cannot do is refused (SpecError) or reported as a warning, never silently changed.
import path from 'node:path';
import { SpecError } from './errors.js';
import { MS, parseMountOptions, PROPAGATION } from './mount-options.js';
import type { OciProcess, OciSpec } from './oci.js';
import { rlimitValue, RLIMITS } from './rlimits.js';
import { arr, arrMax, asObject, bool, id, limit, str, strArr } from './spec-fields.js';
import { deviceCgroupFrom, devicesFrom, type PlanDevice, type PlanDeviceCgroup } from './spec-devices.js';
import { seccompFrom, type PlanSeccomp } from './spec-seccomp.js';
import { capabilitiesFrom, securityPathsFrom, sysctlsFrom, type PlanCapabilities } from './spec-security.js';

export type NamespaceName = 'user' | 'mount' | 'pid' | 'uts' | 'ipc' | 'cgroup' | 'net';

/** Namespaces a new container may join (another container's) instead of creating: what CRI shares within a pod. */
export type JoinableNamespace = 'pid' | 'ipc' | 'uts' | 'cgroup';
const JOINABLE: readonly JoinableNamespace[] = ['pid', 'ipc', 'uts', 'cgroup'];

/** "setns() into namespace `type` of `pid`", which must still be the namespace with this nsfs inode. */
export interface NamespaceJoin {
  type: JoinableNamespace;
  pid: number;
  inode: number;
}

export interface PlanMount {
  type: string;
  source: string;
  destination: string;
  /** MS_* bits without propagation ones. */
  flags: number;
  data: string;
  /** The options' propagation changes (MS_SHARED etc., MS_REC for the r- forms), made in order after the mount. */
  propagation?: number[];
}

/** The helper's bound (PLAN_MAX_MOUNT_PROPAGATION). */
const MAX_PROPAGATION_OPTIONS = 8;

export interface PlanRlimit {
  resource: number;
  /** Decimal, or "-1" for infinity. */
  soft: string;
  hard: string;
}

export interface Plan {
  mode: 'create' | 'exec';
  joinPid?: number;
  namespaces: NamespaceName[];
  /** create: namespaces joined (before the `namespaces` are created); none of their types is in `namespaces`. */
  joins: NamespaceJoin[];
  rootfs?: string;
  readonlyRoot: boolean;
  hostname?: string;
  mounts: PlanMount[];
  cgroup?: string;
  rlimits: PlanRlimit[];
  uid: number;
  gid: number;
  groups: number[];
  cwd: string;
  env: string[];
  args: string[];
  /** process.terminal: the helper gets `console -` (docs/design.md). */
  terminal?: boolean;
  /**
   * process.consoleSize (terminal only, both non-zero, as runc): the pty's first window size, set by the agent before
   * the process runs, so that it never reads 0x0 before the first ResizePty. Not part of the helper's plan.
   */
  consoleSize?: { rows: number; cols: number };
  /** What is executed when it is not args[0] (an OCI hook's path, its args[0] being only argv[0]). */
  execPath?: string;
  /** process.capabilities; undefined: left as they are (root keeps all, as runc without the field). */
  capabilities?: PlanCapabilities;
  noNewPrivileges: boolean;
  /** create only: linux.maskedPaths, linux.readonlyPaths, linux.sysctl ([key, value], dotted keys). */
  maskedPaths: string[];
  readonlyPaths: string[];
  sysctls: Array<[string, string]>;
  /** linux.seccomp: the container's filter, for its init and for every exec. */
  seccomp?: PlanSeccomp;
  /** process.oomScoreAdj (-1000..1000): written to /proc/self/oom_score_adj before exec; undefined: inherited. */
  oomScoreAdj?: number;
  /** create only: linux.devices, made in the container's root after its mounts. */
  devices: PlanDevice[];
  /** create only: linux.resources.devices with runc's defaults, as the container's cgroup device filter. */
  deviceCgroup?: PlanDeviceCgroup;
  /** create only: linux.rootfsPropagation as MS_* bits; undefined: runc's default (rslave). */
  rootfsPropagation?: number;
  /** create with a user namespace only: linux.uidMappings / gidMappings. */
  uidMappings?: PlanIdMapping[];
  gidMappings?: PlanIdMapping[];
}

export interface PlanIdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

/** The kernel's limit of lines in /proc/<pid>/uid_map (and the helper's, PLAN_MAX_ID_MAPS). */
const MAX_ID_MAPPINGS = 340;

export interface PlanResult {
  plan: Plan;
  /** One line each, for the agent log: things requested but ignored. */
  warnings: string[];
}

export interface CreatePlanInput {
  /** Parsed config.json (unknown: validated here). */
  spec: unknown;
  /** Guest path of the container root. */
  rootfsPath: string;
  /** Guest cgroup v2 directory for the container, if cgroups are in use. */
  cgroupPath?: string;
  /**
   * The container's directory in the virtio-fs share, which stands for the bundle directory: relative bind sources
   * resolve against it, and bind sources must stay inside it. Default: the parent of rootfsPath.
   */
  shareDir?: string;
  /** Resolves symlinks of a bind source (fs.realpathSync in the agent); identity by default. */
  resolvePath?: (p: string) => string;
  /**
   * The nsfs inode of namespace `type` of `pid` when pid is the init of a running container this agent created;
   * undefined for any other pid (the agent itself, an exec, a stranger). Default: undefined for every pid, so no
   * namespace path is accepted.
   */
  containerNamespace?: (pid: number, type: JoinableNamespace) => number | undefined;
  /**
   * The node's hostname, sent by the host: a container that keeps the host's UTS namespace (none in linux.namespaces,
   * none joined) sees it, in a UTS namespace of its own (the VM's is not the node's). Undefined: the guest's.
   */
  hostHostname?: string;
}

export interface ExecPlanInput {
  /** Parsed OCI "process" object. */
  process: unknown;
  /** Guest pid of the container's init (the workload), whose namespaces the exec joins. */
  joinPid: number;
  cgroupPath?: string;
  /** The container's filter (its create plan's): an exec runs under it too, as with runc. */
  seccomp?: PlanSeccomp;
}

const SPEC_NAMESPACES: Record<string, NamespaceName | null> = {
  mount: 'mount',
  pid: 'pid',
  uts: 'uts',
  ipc: 'ipc',
  cgroup: 'cgroup',
  network: null, // not supported yet: the container shares the guest's network
  user: 'user',
  time: null,
};

/** Guest paths a bind mount may use as its source besides the container's share: harmless character devices. */
const GUEST_SAFE_SOURCES = new Set(['/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom']);

/** Filesystems a container may mount itself: virtual ones only, never a guest block device. */
const ALLOWED_FS_TYPES = new Set(['proc', 'sysfs', 'tmpfs', 'devpts', 'mqueue', 'cgroup2', 'ramfs']);

/** Mounts every container gets unless the spec mounts the same destination (runc's spec defaults). */
export const DEFAULT_MOUNTS: readonly PlanMount[] = [
  { type: 'proc', source: 'proc', destination: '/proc', flags: MS.NOSUID | MS.NOEXEC | MS.NODEV, data: '' },
  { type: 'tmpfs', source: 'tmpfs', destination: '/dev', flags: MS.NOSUID | MS.STRICTATIME, data: 'mode=755,size=65536k' },
  { type: 'devpts', source: 'devpts', destination: '/dev/pts', flags: MS.NOSUID | MS.NOEXEC, data: 'newinstance,ptmxmode=0666,mode=0620,gid=5' },
  { type: 'tmpfs', source: 'shm', destination: '/dev/shm', flags: MS.NOSUID | MS.NOEXEC | MS.NODEV, data: 'mode=1777,size=65536k' },
  { type: 'mqueue', source: 'mqueue', destination: '/dev/mqueue', flags: MS.NOSUID | MS.NOEXEC | MS.NODEV, data: '' },
  { type: 'sysfs', source: 'sysfs', destination: '/sys', flags: MS.NOSUID | MS.NOEXEC | MS.NODEV | MS.RDONLY, data: '' },
];

export function computeCreatePlan(input: CreatePlanInput): PlanResult {
  const warnings: string[] = [];
  const spec = asObject(input.spec, 'spec') as OciSpec;
  if (!path.posix.isAbsolute(input.rootfsPath)) throw new SpecError(`rootfs path "${input.rootfsPath}" must be absolute`);
  const rootfs = path.posix.normalize(input.rootfsPath);
  const shareDir = path.posix.normalize(input.shareDir ?? path.posix.dirname(rootfs));

  const proc = processFields(spec.process, 'process', warnings);
  const { namespaces, joins } = namespacesFrom(spec, input.containerNamespace ?? (() => undefined), warnings);

  let hostname: string | undefined;
  const hostUts = !namespaces.includes('uts') && !joins.some((j) => j.type === 'uts');
  if (spec.hostname !== undefined && spec.hostname !== '') {
    hostname = str(spec.hostname, 'hostname');
    // As runc: a joined UTS namespace counts (the hostname is then set in the namespace shared with its owner).
    if (hostUts) throw new SpecError('hostname needs a private UTS namespace (add "uts" to linux.namespaces)');
  } else if (hostUts && input.hostHostname !== undefined && input.hostHostname !== '') {
    hostname = hostHostnameFrom(input.hostHostname);
    namespaces.push('uts');
    namespaces.sort((a, b) => NAMESPACE_ORDER.indexOf(a) - NAMESPACE_ORDER.indexOf(b));
  }

  const root = spec.root === undefined ? {} : asObject(spec.root, 'root');
  const rootfsPropagation = rootfsPropagationFrom(spec.linux);
  const readonlyRoot = root.readonly === undefined ? false : bool(root.readonly, 'root.readonly');

  const specMounts = spec.mounts === undefined ? [] : arr(spec.mounts, 'mounts');
  const planned: PlanMount[] = [];
  specMounts.forEach((m, i) => {
    const pm = mountFrom(m, `mounts[${i}]`, { rootfs, shareDir, resolvePath: input.resolvePath ?? ((p) => p) }, warnings);
    if (pm) planned.push(pm);
  });

  const linux = spec.linux === undefined ? {} : asObject(spec.linux, 'linux');
  const maskedPaths = securityPathsFrom(linux.maskedPaths, 'linux.maskedPaths');
  const readonlyPaths = securityPathsFrom(linux.readonlyPaths, 'linux.readonlyPaths');
  const joined = (t: JoinableNamespace): boolean => joins.some((j) => j.type === t);
  const sysctls = sysctlsFrom(linux.sysctl, {
    ipc: namespaces.includes('ipc') || joined('ipc'),
    uts: namespaces.includes('uts') || joined('uts'),
    net: hasNetworkNamespace(linux.namespaces),
  });
  const seccomp = linux.seccomp === undefined || linux.seccomp === null ? undefined : seccompFrom(linux.seccomp, warnings);
  const devices = devicesFrom(linux.devices);
  const idMappings = userNamespaceFrom(linux, namespaces, joins, devices);
  const resources = linux.resources === undefined || linux.resources === null ? {} : asObject(linux.resources, 'linux.resources');
  // As runc, the filter applies to every container (its defaults are appended to the spec's rules); it needs the
  // container's cgroup, which the agent has unless the guest has no cgroup v2 hierarchy.
  const deviceCgroup = deviceCgroupFrom(resources.devices, devices);
  if (input.cgroupPath === undefined && Array.isArray(resources.devices) && resources.devices.length > 0) {
    warnings.push(`linux.resources.devices (${resources.devices.length} rules) not enforced: the guest has no cgroup for the container`);
  }

  return {
    plan: {
      mode: 'create',
      namespaces,
      joins,
      rootfs,
      readonlyRoot,
      hostname,
      mounts: withDefaultMounts(planned),
      cgroup: input.cgroupPath,
      ...proc.fields,
      maskedPaths,
      readonlyPaths,
      sysctls,
      ...(seccomp ? { seccomp } : {}),
      devices,
      ...(input.cgroupPath !== undefined ? { deviceCgroup } : {}),
      ...(rootfsPropagation !== undefined ? { rootfsPropagation } : {}),
      ...idMappings,
    },
    warnings,
  };
}

export function computeExecPlan(input: ExecPlanInput): PlanResult {
  const warnings: string[] = [];
  if (!Number.isInteger(input.joinPid) || input.joinPid <= 0) throw new SpecError(`bad pid to join: ${input.joinPid}`);
  const proc = processFields(input.process, 'process', warnings);
  return {
    plan: {
      mode: 'exec',
      joinPid: input.joinPid,
      namespaces: [],
      joins: [],
      readonlyRoot: false,
      mounts: [],
      cgroup: input.cgroupPath,
      ...proc.fields,
      maskedPaths: [],
      readonlyPaths: [],
      sysctls: [],
      ...(input.seccomp ? { seccomp: input.seccomp } : {}),
      devices: [],
    },
    warnings,
  };
}

type ProcessPlanFields = Pick<
  Plan,
  | 'rlimits' | 'uid' | 'gid' | 'groups' | 'cwd' | 'env' | 'args' | 'terminal' | 'consoleSize' | 'capabilities'
  | 'noNewPrivileges' | 'oomScoreAdj'
>;

function processFields(value: unknown, where: string, warnings: string[]): { fields: ProcessPlanFields } {
  if (value === undefined || value === null) throw new SpecError(`${where} is required`);
  const p = asObject(value, where) as OciProcess;

  const args = p.args === undefined ? [] : strArr(p.args, `${where}.args`);
  if (args.length === 0 || args[0] === '') throw new SpecError(`${where}.args must name a program`);

  const env = p.env === undefined || p.env === null ? [] : strArr(p.env, `${where}.env`);
  env.forEach((e, i) => {
    if (!e.includes('=') || e.startsWith('=')) throw new SpecError(`${where}.env[${i}] "${e}" is not KEY=VALUE`);
  });

  const cwd = p.cwd === undefined || p.cwd === '' ? '/' : str(p.cwd, `${where}.cwd`);
  if (!path.posix.isAbsolute(cwd)) throw new SpecError(`${where}.cwd "${cwd}" must be an absolute path`);

  const user = p.user === undefined ? {} : asObject(p.user, `${where}.user`);
  const uid = user.uid === undefined ? 0 : id(user.uid, `${where}.user.uid`);
  const gid = user.gid === undefined ? 0 : id(user.gid, `${where}.user.gid`);
  const groups = user.additionalGids === undefined || user.additionalGids === null
    ? []
    : arr(user.additionalGids, `${where}.user.additionalGids`).map((g, i) => id(g, `${where}.user.additionalGids[${i}]`));

  const rlimits: PlanRlimit[] = [];
  const seen = new Set<string>();
  const specRlimits = p.rlimits === undefined || p.rlimits === null ? [] : arr(p.rlimits, `${where}.rlimits`);
  specRlimits.forEach((r, i) => {
    const at = `${where}.rlimits[${i}]`;
    const o = asObject(r, at);
    const type = str(o.type, `${at}.type`);
    const resource = RLIMITS[type];
    if (resource === undefined) throw new SpecError(`${at}.type "${type}" is not a Linux rlimit`);
    if (seen.has(type)) throw new SpecError(`${at}: ${type} is set twice`);
    seen.add(type);
    const soft = limit(o.soft, `${at}.soft`);
    const hard = limit(o.hard, `${at}.hard`);
    if (soft > hard) throw new SpecError(`${at}: soft limit ${soft} is above hard limit ${hard}`);
    rlimits.push({ resource, soft: rlimitValue(soft), hard: rlimitValue(hard) });
  });

  const noNewPrivileges = p.noNewPrivileges === undefined || p.noNewPrivileges === null ? false : bool(p.noNewPrivileges, `${where}.noNewPrivileges`);
  const fields: ProcessPlanFields = { rlimits, uid, gid, groups, cwd, env, args, noNewPrivileges };
  if (p.capabilities !== undefined && p.capabilities !== null) fields.capabilities = capabilitiesFrom(p.capabilities, `${where}.capabilities`, warnings);
  if (p.terminal === true) fields.terminal = true;
  // The spec says to ignore consoleSize without a terminal; it is still checked, as every other field.
  const consoleSize = consoleSizeFrom(p.consoleSize, `${where}.consoleSize`);
  if (fields.terminal && consoleSize) fields.consoleSize = consoleSize;
  if (p.oomScoreAdj !== undefined && p.oomScoreAdj !== null) {
    const adj: unknown = p.oomScoreAdj;
    if (typeof adj !== 'number' || !Number.isInteger(adj) || adj < -1000 || adj > 1000) {
      throw new SpecError(`${where}.oomScoreAdj must be an integer -1000..1000`);
    }
    fields.oomScoreAdj = adj;
  }
  return { fields };
}

/** process.consoleSize as rows × columns; undefined when absent or either is 0 (runc then leaves the size alone). */
function consoleSizeFrom(value: unknown, where: string): { rows: number; cols: number } | undefined {
  if (value === undefined || value === null) return undefined;
  const o = asObject(value, where);
  const dimension = (v: unknown, name: string): number => {
    if (v === undefined || v === null) return 0;
    // struct winsize holds unsigned shorts.
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffff) {
      throw new SpecError(`${where}.${name} must be an integer 0..65535`);
    }
    return v;
  };
  const rows = dimension(o.height, 'height');
  const cols = dimension(o.width, 'width');
  return rows > 0 && cols > 0 ? { rows, cols } : undefined;
}

type ContainerNamespaceLookup = NonNullable<CreatePlanInput['containerNamespace']>;

function namespacesFrom(
  spec: OciSpec,
  containerNamespace: ContainerNamespaceLookup,
  warnings: string[],
): { namespaces: NamespaceName[]; joins: NamespaceJoin[] } {
  const linux = spec.linux === undefined ? {} : asObject(spec.linux, 'linux');
  const list = linux.namespaces === undefined || linux.namespaces === null ? [] : arr(linux.namespaces, 'linux.namespaces');
  const out = new Set<NamespaceName>();
  const joins: NamespaceJoin[] = [];
  const seen = new Set<string>();
  list.forEach((n, i) => {
    const at = `linux.namespaces[${i}]`;
    const o = asObject(n, at);
    const type = str(o.type, `${at}.type`);
    if (!(type in SPEC_NAMESPACES)) throw new SpecError(`${at}.type "${type}" is not a namespace type`);
    if (seen.has(type)) throw new SpecError(`${at}: namespace ${type} is listed twice`);
    seen.add(type);
    const nsPath = o.path === undefined || o.path === '' ? undefined : str(o.path, `${at}.path`);
    if (type === 'network') {
      warnings.push("network namespace ignored: the container shares the VM's network, which holds the pod's interfaces");
      return;
    }
    if (type === 'time') throw new SpecError('time namespaces are not supported');
    if (nsPath !== undefined) {
      joins.push(namespaceJoin(type, nsPath, at, containerNamespace));
      return;
    }
    out.add(SPEC_NAMESPACES[type]!);
  });
  if (!out.has('mount')) {
    // The helper pivots into the rootfs, which needs its own mount namespace; it never touches the guest's.
    warnings.push('mount namespace added: every container gets its own');
    out.add('mount');
  }
  return { namespaces: NAMESPACE_ORDER.filter((n) => out.has(n)), joins };
}

const NAMESPACE_ORDER: readonly NamespaceName[] = ['user', 'mount', 'pid', 'uts', 'ipc', 'cgroup', 'net'];

/** The host's hostname as the kernel takes it: 1..64 bytes (HOST_NAME_MAX), no NUL. */
function hostHostnameFrom(name: string): string {
  if (name.includes('\0') || Buffer.byteLength(name) > 64) throw new SpecError(`the host's hostname "${name.slice(0, 80)}" is not a valid hostname`);
  return name;
}

/**
 * A namespace path is accepted only as exactly /proc/<pid>/ns/<type> where pid is the init of a running container of
 * this agent: never the agent, an exec or any other guest process, and never a mount namespace.
 */
function namespaceJoin(type: string, nsPath: string, at: string, containerNamespace: ContainerNamespaceLookup): NamespaceJoin {
  if (type === 'mount') {
    throw new SpecError(`${at}: joining another mount namespace (${nsPath}) is not supported: every container pivots into its own root`);
  }
  const joinable = JOINABLE.find((j) => j === type);
  if (joinable === undefined) throw new SpecError(`${at}: joining an existing ${type} namespace (${nsPath}) is not supported`);
  const m = /^\/proc\/([1-9][0-9]{0,9})\/ns\/([a-z]+)$/.exec(nsPath);
  if (!m || m[2] !== joinable) throw new SpecError(`${at}: ${type} namespace path "${nsPath}" must be /proc/<pid>/ns/${joinable}`);
  const pid = Number(m[1]);
  const inode = containerNamespace(pid, joinable);
  if (inode === undefined) throw new SpecError(`${at}: ${nsPath}: pid ${pid} is not the init of a running container in this sandbox`);
  return { type: joinable, pid, inode };
}

interface MountContext {
  rootfs: string;
  shareDir: string;
  resolvePath: (p: string) => string;
}

function mountFrom(value: unknown, at: string, ctx: MountContext, warnings: string[]): PlanMount | null {
  const m = asObject(value, at);
  const destination = str(m.destination, `${at}.destination`);
  if (!path.posix.isAbsolute(destination) || destination.split('/').includes('..')) {
    throw new SpecError(`${at}.destination "${destination}" must be an absolute path without ".."`);
  }
  const allOptions = m.options === undefined || m.options === null ? [] : strArr(m.options, `${at}.options`);
  const parsed = parseMountOptions(allOptions);
  const { propagation } = parsed;
  if (propagation.length > MAX_PROPAGATION_OPTIONS) {
    throw new SpecError(`${at}.options has ${propagation.length} propagation options; at most ${MAX_PROPAGATION_OPTIONS} are supported`);
  }
  const withPropagation = (pm: PlanMount): PlanMount => (propagation.length ? { ...pm, propagation } : pm);
  if (parsed.ignored.length) warnings.push(`${at} (${destination}): options ${parsed.ignored.join(',')} are not supported; ignored`);
  let type = m.type === undefined || m.type === null ? '' : str(m.type, `${at}.type`);
  const source = m.source === undefined || m.source === null ? '' : str(m.source, `${at}.source`);
  const dest = path.posix.normalize(destination);
  const isBind = (parsed.flags & MS.BIND) !== 0 || type === 'bind';

  if (isBind) {
    const guestSource = bindSource(source, at, ctx, warnings);
    if (guestSource === null) return null;
    return withPropagation({ type: 'bind', source: guestSource, destination: dest, flags: (parsed.flags | MS.BIND) >>> 0, data: '' });
  }
  if (type === 'cgroup') {
    warnings.push(`${at} (${dest}): cgroup v1 mount turned into cgroup2 (the guest has cgroup v2 only)`);
    type = 'cgroup2';
  }
  if (!ALLOWED_FS_TYPES.has(type)) {
    throw new SpecError(`${at} (${dest}): filesystem type "${type}" is not supported (use bind or one of ${[...ALLOWED_FS_TYPES].join(', ')})`);
  }
  return withPropagation({ type, source: source || type, destination: dest, flags: parsed.flags, data: parsed.data });
}

/**
 * Where a bind mount's source is in the guest, or null when it is a host path the guest cannot see (skipped with a
 * warning). A source may be inside the container's share (the bundle) or a harmless device node; after symlinks
 * are resolved it must still be there, so an image cannot point a bind at the agent's own files.
 */
function bindSource(source: string, at: string, ctx: MountContext, warnings: string[]): string | null {
  if (source === '') throw new SpecError(`${at}: a bind mount needs a source`);
  const inside = (p: string, dir: string): boolean => p === dir || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
  const allowed = (p: string): boolean => inside(p, ctx.shareDir) || GUEST_SAFE_SOURCES.has(p);
  const candidate = path.posix.resolve(ctx.shareDir, source);
  if (!allowed(candidate)) {
    warnings.push(`${at}: bind source ${source} is a host path the guest does not share; mount skipped`);
    return null;
  }
  let real: string;
  try {
    real = ctx.resolvePath(candidate);
  } catch (err) {
    throw new SpecError(`${at}: bind source ${source} does not exist in the guest (${(err as Error).message})`);
  }
  if (!allowed(real)) throw new SpecError(`${at}: bind source ${source} resolves to ${real}, outside the container`);
  return real;
}

/**
 * Adds the default mounts the spec does not provide itself. A default goes right after the last spec mount of one
 * of its ancestors (so a spec's own /dev does not hide the default /dev/pts), otherwise before all spec mounts.
 */
function withDefaultMounts(specMounts: PlanMount[]): PlanMount[] {
  const dests = new Set(specMounts.map((m) => m.destination));
  const isAncestor = (a: string, d: string): boolean => a === '/' || d.startsWith(`${a}/`);
  const front: PlanMount[] = [];
  const after = new Map<number, PlanMount[]>();
  for (const d of DEFAULT_MOUNTS) {
    if (dests.has(d.destination)) continue;
    let parent = -1;
    specMounts.forEach((m, i) => {
      if (isAncestor(m.destination, d.destination)) parent = i;
    });
    if (parent < 0) front.push({ ...d });
    else after.set(parent, [...(after.get(parent) ?? []), { ...d }]);
  }
  const out = [...front];
  specMounts.forEach((m, i) => out.push(m, ...(after.get(i) ?? [])));
  return out;
}

/** linux.namespaces lists a network namespace (the pod's: in hull, the VM's own network). */
function hasNetworkNamespace(value: unknown): boolean {
  return Array.isArray(value) && value.some((n) => typeof n === 'object' && n !== null && (n as { type?: unknown }).type === 'network');
}

/**
 * linux.rootfsPropagation: one of runc's eight names. The helper applies it inside the VM only: the container's root
 * is a virtio-fs share of a host directory, so no mount the container makes can propagate to the host's mount table
 * (nor one of the host's into the container), whatever the spec asks.
 */
function rootfsPropagationFrom(linux: unknown): number | undefined {
  if (linux === undefined || linux === null) return undefined;
  const v = asObject(linux, 'linux').rootfsPropagation;
  if (v === undefined || v === null || v === '') return undefined;
  const name = str(v, 'linux.rootfsPropagation');
  const flags = PROPAGATION[name];
  if (flags === undefined) throw new SpecError(`linux.rootfsPropagation "${name.slice(0, 32)}" must be one of ${Object.keys(PROPAGATION).join(', ')}`);
  return flags;
}

/**
 * linux.uidMappings / gidMappings for a "user" namespace, as runc takes them: both are needed with one, and refused
 * without one. The helper creates the user namespace first and writes the maps from outside it (native/container-init
 * main.c). Like runc, hull does not chown the rootfs: the container sees its files with the owners the host gave them
 * (through virtio-fs), so an image meant for a mapping must be owned by the mapped host ids already.
 */
function userNamespaceFrom(
  linux: Record<string, unknown>,
  namespaces: readonly NamespaceName[],
  joins: readonly NamespaceJoin[],
  devices: readonly PlanDevice[],
): { uidMappings?: PlanIdMapping[]; gidMappings?: PlanIdMapping[] } {
  const given = (v: unknown): boolean => v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0);
  if (!namespaces.includes('user')) {
    if (given(linux.uidMappings) || given(linux.gidMappings)) {
      throw new SpecError('linux.uidMappings and linux.gidMappings need a "user" namespace in linux.namespaces');
    }
    return {};
  }
  if (!given(linux.uidMappings)) throw new SpecError('linux.uidMappings is required with a "user" namespace');
  if (!given(linux.gidMappings)) throw new SpecError('linux.gidMappings is required with a "user" namespace');
  if (joins.length) throw new SpecError(`a "user" namespace with a joined ${joins[0]!.type} namespace is not supported (the joined one belongs to another user namespace)`);
  // mknod of a device is refused in a user namespace; runc binds the host's node instead, which the guest does not have.
  if (devices.length) throw new SpecError('linux.devices with a "user" namespace is not supported (a user namespace cannot make device nodes)');
  return { uidMappings: idMappingsFrom(linux.uidMappings, 'linux.uidMappings'), gidMappings: idMappingsFrom(linux.gidMappings, 'linux.gidMappings') };
}

function idMappingsFrom(value: unknown, at: string): PlanIdMapping[] {
  const maps = arrMax(value, at, MAX_ID_MAPPINGS).map((m, i) => {
    const o = asObject(m, `${at}[${i}]`);
    const n = (v: unknown, name: string, min: number): number => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > 0xffffffff) throw new SpecError(`${at}[${i}].${name} must be an integer ${min}..4294967295`);
      return v;
    };
    const containerID = n(o.containerID, 'containerID', 0);
    const hostID = n(o.hostID, 'hostID', 0);
    const size = n(o.size, 'size', 1);
    if (containerID + size > 2 ** 32 || hostID + size > 2 ** 32) throw new SpecError(`${at}[${i}]: the range ends past 4294967295`);
    return { containerID, hostID, size };
  });
  // The helper writes the map in one write(2), which the kernel takes only when shorter than a page.
  const bytes = maps.reduce((n, m) => n + `${m.containerID} ${m.hostID} ${m.size}\n`.length, 0);
  if (bytes >= 4096) throw new SpecError(`${at}: ${maps.length} mappings take ${bytes} bytes in /proc/<pid>/${at.endsWith('uidMappings') ? 'uid' : 'gid'}_map; the kernel takes at most 4095`);
  return maps;
}
