// What hull reads from CreateTaskRequest.options: only `systemd_cgroup` (field 9) of runc's options
// (containerd.runc.v1.Options), the one way a containerd client says "systemd cgroup driver" to a shim. containerd's
// CRI plugin sends runc's options only to runc's runtime types; for io.containerd.hull.v2 it sends
// runtimeoptions.v1.Options (type_url, config_path), without that flag — which is why the path's own form counts too
// (cgroups/path.ts looksLikeSystemdPath). Any other type is ignored, as the runc shim ignores what it does not know.
import protobuf from 'protobufjs';
import { HullError } from '../errors.js';
import type { AnyMessage } from './protos.js';

const RUNC_OPTIONS_TYPES = new Set(['containerd.runc.v1.Options', 'type.googleapis.com/containerd.runc.v1.Options']);
const SYSTEMD_CGROUP_FIELD = 9;
const VARINT = 0;

/** True when the options are runc's with systemd_cgroup set. */
export function systemdCgroupRequested(options: AnyMessage | null | undefined): boolean {
  if (!options || !RUNC_OPTIONS_TYPES.has(options.typeUrl)) return false;
  try {
    const reader = protobuf.Reader.create(options.value);
    let systemd = false;
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      if (tag >>> 3 === SYSTEMD_CGROUP_FIELD && (tag & 7) === VARINT) systemd = reader.bool();
      else reader.skipType(tag & 7);
    }
    return systemd;
  } catch (err) {
    throw new HullError('invalid-argument', `the create request's runc options do not decode: ${(err as Error).message}`, { cause: err });
  }
}
