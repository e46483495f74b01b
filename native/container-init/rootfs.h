/* Root filesystem setup in the new mount namespace: mounts, /dev, pivot_root, readonly root. */
#ifndef HULL_CI_ROOTFS_H
#define HULL_CI_ROOTFS_H

#include "plan.h"

/* Run in the forked child (PID 1 of the new pid namespace) before pivot; they fail through fail()/failx().
 * rootfs_prepare: private propagation, rootfs bound onto itself.
 * rootfs_mount_all: the plan's mounts in order, then device nodes and links when /dev is a tmpfs, then the plan's
 *   devices (linux.devices). */
void rootfs_prepare(const struct plan *p);
void rootfs_mount_all(const struct plan *p);
/* Between rootfs_prepare and rootfs_pivot: open path inside the rootfs with openat2(RESOLVE_IN_ROOT), so no symlink
 * of the image leads out of it (-1 and errno on failure); create every missing directory of path inside the rootfs,
 * the last component as an empty file when as_file (fails through fail_arg()). */
int open_in_root(const char *path, int flags);
void mkdir_all_in_root(const char *path, int as_file);
/* pivot_root(rootfs, rootfs) + detach the old root, chdir("/"). */
void rootfs_pivot(const struct plan *p);
/* Remounts / read-only if the plan asks for it (after pivot). */
void rootfs_finish(const struct plan *p);
/* The nosuid/nodev/noexec (and atime) flags the mount at `path` has: a bind remount must repeat them, as it replaces
 * them all. Fails through fail_arg(). */
unsigned long kept_mount_flags(const char *path);

#endif
