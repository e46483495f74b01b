// CreateTaskRequest.options: the shim takes runc's systemd_cgroup (field 9 of containerd.runc.v1.Options) and
// nothing else (shim/containerd/runtime-options.ts).
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { systemdCgroupRequested } from '../../shim/containerd/runtime-options.js';

/** runc's Options with binary_name (6), root (7) and systemd_cgroup (9) as containerd encodes them. */
function runcOptions(systemd: boolean): Buffer {
  const w = protobuf.Writer.create();
  w.uint32((6 << 3) | 2).string('runc');
  w.uint32((7 << 3) | 2).string('/run/containerd/runc');
  if (systemd) w.uint32((9 << 3) | 0).bool(true);
  return Buffer.from(w.finish());
}

describe('runtime options', () => {
  it("reads systemd_cgroup from runc's options", () => {
    expect(systemdCgroupRequested({ typeUrl: 'containerd.runc.v1.Options', value: runcOptions(true) })).toBe(true);
    expect(systemdCgroupRequested({ typeUrl: 'containerd.runc.v1.Options', value: runcOptions(false) })).toBe(false);
  });

  it('ignores no options and other types (CRI sends runtimeoptions.v1.Options to non-runc runtimes)', () => {
    expect(systemdCgroupRequested(undefined)).toBe(false);
    expect(systemdCgroupRequested(null)).toBe(false);
    expect(systemdCgroupRequested({ typeUrl: 'runtimeoptions.v1.Options', value: runcOptions(true) })).toBe(false);
  });

  it('a runc options message that does not decode is one invalid-argument line', () => {
    expect(() => systemdCgroupRequested({ typeUrl: 'containerd.runc.v1.Options', value: Buffer.from([0x4a, 0x05, 0x01]) })).toThrow(
      /^the create request's runc options do not decode: /,
    );
  });
});
