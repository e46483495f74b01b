// Exit statuses hull reports for a process that did not report its own: the one place both front ends (the runc-style
// CLI's monitor, shim/runc/container-runner.ts, and the containerd shim, shim/containerd/service.ts) take them from.

/** Exit status of every process whose VM died under it (no status came from the guest). */
export const VM_DIED_STATUS = 255;
