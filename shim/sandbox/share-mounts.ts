// Host paths that a container's spec bind-mounts (CRI's /etc/hosts, /etc/hostname, /etc/resolv.conf and /dev/shm,
// podman's, `ctr run --mount`, `-v`) exist only on the host; the guest sees host files only through the VM's
// virtio-fs share. So each such source is bind-mounted into the container's part of the share
// (<share>/<id>/mounts/<n>, n = its index in `mounts`) and the spec handed to the agent names the guest path of that
// mount point instead, which the agent's rule (a bind source must lie inside the container's share) accepts.
//
// A relative source is relative to the bundle directory (runtime-spec). Refused, with one line naming the mount: a
// source that does not exist, one that is neither a
// file nor a directory (sockets, FIFOs and device nodes mean nothing across the VM boundary), one that resolves
// under the host's /proc, /sys or /dev (host kernel and device state are not for a guest), and one inside the
// sandbox's own directory. The harmless character devices the agent maps to the guest's own nodes (/dev/null,
// /dev/zero, /dev/full, /dev/random, /dev/urandom) are not host mounts: they stay as they are.
import { realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { invalidArgument } from '../errors.js';
import { bindMount, type BindOptions } from './host-mounts.js';
import type { OciMount, OciSpec } from '../oci-spec.js';
import { guestHostMount, hostMountTarget } from './paths.js';

/** Kept in step with the agent's GUEST_SAFE_SOURCES (agent/spec-plan.ts): sources the guest provides itself. */
const GUEST_DEVICE_SOURCES = new Set(['/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom']);
/** Host trees never shared into a VM. */
const HOST_ONLY_TREES = ['/proc', '/sys', '/dev'];

export interface SourceInfo {
  /** The source with every symlink resolved. */
  real: string;
  kind: 'file' | 'directory' | 'other';
}

/** Looks a host path up: undefined when it does not exist. */
export type InspectSource = (source: string) => SourceInfo | undefined;

/** One host bind source of a spec, to be mounted into the share. */
export interface HostBind {
  /** Index in the spec's `mounts`: names the mount point in the share. */
  index: number;
  /** Resolved host path (what gets mounted, so a symlink swapped later changes nothing). */
  source: string;
  file: boolean;
  recursive: boolean;
  readonly: boolean;
}

export interface HostBindPlan {
  binds: HostBind[];
  /** The spec for the agent: host bind sources replaced by their guest paths. The input text when nothing changed. */
  specJson: string;
}

export const inspectHostSource: InspectSource = (source) => {
  let real: string;
  let st;
  try {
    real = realpathSync(source);
    st = statSync(real);
  } catch {
    return undefined;
  }
  return { real, kind: st.isFile() ? 'file' : st.isDirectory() ? 'directory' : 'other' };
};

const within = (p: string, dir: string): boolean => p === dir || p.startsWith(`${dir}/`);

/** A bind mount in the OCI sense: type "bind", or the bind/rbind option (what the agent treats as one). */
function isBind(m: OciMount): boolean {
  const options = m.options ?? [];
  return m.type === 'bind' || options.includes('bind') || options.includes('rbind');
}

/** The last of ro/rw wins, as in mount(8). */
function isReadonly(options: string[]): boolean {
  let readonly = false;
  for (const o of options) {
    if (o === 'ro') readonly = true;
    else if (o === 'rw') readonly = false;
  }
  return readonly;
}

/**
 * Decides which mounts of the spec are host binds and rewrites their sources to guest paths. Reads nothing but the
 * sources (through `inspect`); mounts nothing. Throws invalid-argument for a refused source.
 */
export function planHostBinds(
  specJson: string,
  containerId: string,
  bundleDir: string,
  inspect: InspectSource = inspectHostSource,
): HostBindPlan {
  const spec = JSON.parse(specJson) as OciSpec;
  const binds: HostBind[] = [];
  const mounts = (spec.mounts ?? []).map((m, index): OciMount => {
    if (!isBind(m)) return m;
    const written = m.source ?? '';
    if (GUEST_DEVICE_SOURCES.has(written)) return m;
    const refuse = (why: string) => invalidArgument(`config.json: mounts[${index}] (${m.destination}): bind source "${written}" ${why}`);
    if (written === '') throw refuse('is empty');
    const source = path.resolve(bundleDir, written);
    if (HOST_ONLY_TREES.some((t) => within(path.normalize(source), t))) throw refuse('is under the host\'s /proc, /sys or /dev, which are not shared into the VM');
    const info = inspect(source);
    if (!info) throw refuse('does not exist');
    if (HOST_ONLY_TREES.some((t) => within(info.real, t))) {
      throw refuse(`resolves to ${info.real}, under the host's /proc, /sys or /dev, which are not shared into the VM`);
    }
    if (info.kind === 'other') throw refuse('is neither a file nor a directory (only those can be shared into the VM)');
    const options = m.options ?? [];
    binds.push({
      index,
      source: info.real,
      file: info.kind === 'file',
      recursive: options.includes('rbind'),
      readonly: isReadonly(options),
    });
    return { ...m, source: guestHostMount(containerId, index) };
  });
  if (binds.length === 0) return { binds, specJson };
  return { binds, specJson: JSON.stringify({ ...spec, mounts }) };
}

/**
 * Mounts a plan's binds into the share of sandbox `dir`. `record` gets every target before the first mount is made,
 * so teardown finds them after a crash; on failure the caller releases the container's share as usual.
 */
export function mountHostBinds(dir: string, containerId: string, binds: HostBind[], record: (targets: string[]) => void): void {
  if (binds.length === 0) return;
  for (const b of binds) {
    if (within(b.source, dir)) {
      throw invalidArgument(`config.json: mounts[${b.index}]: bind source ${b.source} is inside the sandbox directory ${dir}`);
    }
  }
  const targets = binds.map((b) => hostMountTarget(dir, containerId, b.index));
  record(targets);
  binds.forEach((b, i) => {
    const options: BindOptions = { file: b.file, recursive: b.recursive, readonly: b.readonly };
    bindMount(b.source, targets[i]!, options);
  });
}
