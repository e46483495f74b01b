// The subset of the OCI runtime spec (config.json) that hull reads on the host. The agent reads the rest in the
// guest; the host only needs enough to validate input early, size the VM and find the rootfs.

export interface OciUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
  umask?: number;
}

export interface OciRlimit {
  type: string;
  hard: number;
  soft: number;
}

export interface OciProcess {
  terminal?: boolean;
  args: string[];
  env?: string[];
  cwd: string;
  user: OciUser;
  rlimits?: OciRlimit[];
  noNewPrivileges?: boolean;
}

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface OciLinuxResources {
  memory?: { limit?: number; reservation?: number; swap?: number };
  cpu?: { shares?: number; quota?: number; period?: number; cpus?: string };
  pids?: { limit?: number };
}

export interface OciSpec {
  ociVersion: string;
  process?: OciProcess;
  root: { path: string; readonly?: boolean };
  hostname?: string;
  mounts?: OciMount[];
  annotations?: Record<string, string>;
  linux?: {
    resources?: OciLinuxResources;
    namespaces?: { type: string; path?: string }[];
    [key: string]: unknown;
  };
  [key: string]: unknown;
}
