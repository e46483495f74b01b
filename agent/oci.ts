// The parts of the OCI runtime spec (config.json) the agent reads. The JSON comes from the host; every field is
// checked in spec-plan.ts before use, so these types describe the expected shape, not a guarantee.

export interface OciUser {
  uid?: number;
  gid?: number;
  additionalGids?: number[];
  umask?: number;
}

export interface OciRlimit {
  type: string;
  soft: number;
  hard: number;
}

export interface OciProcess {
  terminal?: boolean;
  args?: string[];
  env?: string[];
  cwd?: string;
  user?: OciUser;
  rlimits?: OciRlimit[];
  noNewPrivileges?: boolean;
  capabilities?: Record<string, string[] | undefined>;
  apparmorProfile?: string;
  selinuxLabel?: string;
  oomScoreAdj?: number;
  consoleSize?: { height?: number; width?: number };
}

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface OciNamespace {
  type: string;
  path?: string;
}

export interface OciLinuxResources {
  memory?: { limit?: number; reservation?: number; swap?: number };
  cpu?: { shares?: number; quota?: number; period?: number; cpus?: string; mems?: string };
  pids?: { limit?: number };
  devices?: unknown[];
}

export interface OciLinux {
  namespaces?: OciNamespace[];
  resources?: OciLinuxResources;
  cgroupsPath?: string;
  sysctl?: Record<string, string>;
  seccomp?: unknown;
  maskedPaths?: string[];
  readonlyPaths?: string[];
  devices?: unknown[];
  rootfsPropagation?: unknown;
  uidMappings?: unknown[];
  gidMappings?: unknown[];
}

export interface OciSpec {
  ociVersion?: string;
  process?: OciProcess;
  root?: { path?: string; readonly?: boolean };
  hostname?: string;
  mounts?: OciMount[];
  linux?: OciLinux;
  annotations?: Record<string, string>;
}
