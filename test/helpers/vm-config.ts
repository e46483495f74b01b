// A VmConfig for tests that start the QEMU driver against fake binaries: nothing in it is booted for real.
import path from 'node:path';
import type { VmConfig } from '../../hypervisor/types.js';

export function fakeVmConfig(id: string, dir: string): VmConfig {
  return {
    id,
    dir,
    vcpus: 1,
    memoryMiB: 128,
    kernelPath: '/nonexistent/vmlinux',
    initrdPath: '/nonexistent/initrd',
    kernelCmdline: '',
    sharedDir: path.join(dir, 'shared'),
    accel: 'tcg',
    guestCid: 3,
  };
}
