/* Root filesystem setup, in runc's order (libcontainer/rootfs_linux.go): "/" rslave (or the spec's rootfsPropagation),
 * the rootfs's parent mount private, rootfs bound onto itself, the plan's mounts with their propagation changes,
 * default device nodes, pivot_root, the root's propagation, readonly root.
 *
 * Propagation is honoured inside the VM, between the container's mount namespace and the guest's: the rootfs and the
 * bind sources are a virtio-fs share of host directories, so nothing mounted here can ever reach the host's mount
 * table, and no host mount made later reaches the container, whatever the spec asks.
 *
 * Every path inside the rootfs is resolved with openat2(RESOLVE_IN_ROOT), so a symlink in the (untrusted) image
 * cannot redirect a mount to a guest path; the mount then targets the opened fd through /proc/self/fd/N. */
#include "rootfs.h"
#include "devices.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define PROPAGATION_FLAGS (MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE)

static int g_rootfd = -1;
static bool g_userns; /* the plan creates a user namespace */

int open_in_root(const char *path, int flags)
{
	while (*path == '/')
		path++;
	if (!*path)
		path = ".";
	struct open_how how = {
		.flags = (unsigned long long)(flags | O_CLOEXEC),
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	return (int)syscall(SYS_openat2, g_rootfd, path, &how, sizeof(how));
}

void mkdir_all_in_root(const char *path, int as_file)
{
	size_t len = strlen(path);
	char *buf = malloc(len + 1);
	if (!buf)
		fail("mkdir");
	for (size_t i = 1; i <= len; i++) {
		if (i < len && path[i] != '/')
			continue;
		if (path[i - 1] == '/')
			continue;
		memcpy(buf, path, i);
		buf[i] = '\0';
		int last = i == len;
		int fd = open_in_root(buf, O_PATH | (last && as_file ? 0 : O_DIRECTORY));
		if (fd >= 0) {
			close(fd);
			continue;
		}
		if (errno != ENOENT)
			fail_arg("mkdir", path);
		/* Create this component in its (already resolved) parent. */
		char *slash = strrchr(buf, '/');
		char *name = slash + 1;
		*slash = '\0';
		int parent = open_in_root(buf[0] ? buf : "/", O_PATH | O_DIRECTORY);
		if (parent < 0)
			fail_arg("mkdir", path);
		int rc;
		if (last && as_file) {
			rc = openat(parent, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
			if (rc >= 0)
				close(rc);
		} else {
			rc = mkdirat(parent, name, 0755);
		}
		if (rc < 0 && errno != EEXIST)
			fail_arg("mkdir", path);
		close(parent);
		*slash = '/';
		fd = open_in_root(buf, O_PATH | (last && as_file ? 0 : O_DIRECTORY));
		if (fd < 0)
			fail_arg("mkdir", path); /* e.g. a dangling symlink in the image */
		close(fd);
	}
	free(buf);
}

static void fd_path(int fd, char *out, size_t outlen)
{
	snprintf(out, outlen, "/proc/self/fd/%d", fd);
}

static void mount_one(const struct plan_mount *m)
{
	unsigned long flags = m->flags;
	int is_bind = (flags & MS_BIND) != 0;
	int as_file = 0;
	if (is_bind) {
		struct stat st;
		if (stat(m->source, &st) < 0)
			fail_arg("mount source", m->source);
		as_file = !S_ISDIR(st.st_mode);
	}
	mkdir_all_in_root(m->destination, as_file);
	int fd = open_in_root(m->destination, O_PATH | (as_file ? 0 : O_DIRECTORY));
	if (fd < 0)
		fail_arg("open mount point", m->destination);
	char target[64];
	fd_path(fd, target, sizeof(target));

	unsigned long base = flags & ~(PROPAGATION_FLAGS); /* the parser refuses propagation bits here: belt and braces */
	if (is_bind) {
		if (mount(m->source, target, NULL, MS_BIND | (base & MS_REC), NULL) < 0)
			fail_arg("mount", m->destination);
		/* A bind mount ignores the other flags: apply them with a remount of the new mount. */
		unsigned long extra = base & ~(MS_BIND | MS_REC | MS_REMOUNT);
		if (extra) {
			close(fd);
			fd = open_in_root(m->destination, O_PATH | (as_file ? 0 : O_DIRECTORY));
			if (fd < 0)
				fail_arg("open mount point", m->destination);
			fd_path(fd, target, sizeof(target));
			if (mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | extra, NULL) < 0)
				fail_arg("remount", m->destination);
		}
	} else if (mount(m->source, target, m->type, base, m->data) < 0) {
		/* runc: sysfs cannot be mounted in a user namespace without a network namespace of its own (the container
		 * shares the VM's): the guest's /sys is bound instead, with the spec's flags (the guest's nosuid, nodev and
		 * noexec are locked on it, so they are kept). */
		if (!(errno == EPERM && g_userns && strcmp(m->type, "sysfs") == 0))
			fail_arg("mount", m->destination);
		if (mount("/sys", target, NULL, MS_BIND | MS_REC, NULL) < 0)
			fail_arg("bind /sys for", m->destination);
		close(fd);
		fd = open_in_root(m->destination, O_PATH | O_DIRECTORY);
		if (fd < 0)
			fail_arg("open mount point", m->destination);
		fd_path(fd, target, sizeof(target));
		unsigned long extra = base & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
		if (mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | extra | kept_mount_flags(target), NULL) < 0)
			fail_arg("remount", m->destination);
	}
	/* runc's mountPropagate: each propagation option is its own change, in the spec's order, on the new mount (the fd
	 * is opened again so it names the mount just made, not the directory under it). */
	if (m->n_propagation) {
		close(fd);
		fd = open_in_root(m->destination, O_PATH | (as_file ? 0 : O_DIRECTORY));
		if (fd < 0)
			fail_arg("open mount point", m->destination);
		fd_path(fd, target, sizeof(target));
	}
	for (size_t i = 0; i < m->n_propagation; i++)
		if (mount(NULL, target, NULL, m->propagation[i], NULL) < 0)
			fail_arg("mount propagation", m->destination);
	close(fd);
}

/* The default devices of an OCI container (runtime-spec config-linux.md, "Default Devices"). */
static void create_devices(void)
{
	static const struct {
		const char *name;
		unsigned maj, min;
	} devs[] = {
		{ "null", 1, 3 }, { "zero", 1, 5 }, { "full", 1, 7 }, { "random", 1, 8 }, { "urandom", 1, 9 }, { "tty", 5, 0 },
	};
	int devfd = open_in_root("/dev", O_PATH | O_DIRECTORY);
	if (devfd < 0)
		fail("open /dev");
	for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++) {
		if (mknodat(devfd, devs[i].name, S_IFCHR | 0666, makedev(devs[i].maj, devs[i].min)) == 0) {
			if (fchmodat(devfd, devs[i].name, 0666, 0) < 0)
				fail_arg("chmod /dev", devs[i].name);
			continue;
		}
		if (errno == EEXIST)
			continue;
		/* No mknod (e.g. a user namespace or a device cgroup): bind the guest's node instead. */
		int f = openat(devfd, devs[i].name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0666);
		if (f < 0)
			fail_arg("mknod /dev", devs[i].name);
		close(f);
		char src[64], target[64];
		snprintf(src, sizeof(src), "/dev/%s", devs[i].name);
		snprintf(target, sizeof(target), "/dev/%s", devs[i].name);
		int fd = open_in_root(target, O_PATH);
		if (fd < 0)
			fail_arg("open", target);
		fd_path(fd, target, sizeof(target));
		if (mount(src, target, NULL, MS_BIND, NULL) < 0)
			fail_arg("bind device", src);
		close(fd);
	}
	static const struct {
		const char *name, *target;
	} links[] = {
		{ "fd", "/proc/self/fd" },          { "stdin", "/proc/self/fd/0" }, { "stdout", "/proc/self/fd/1" },
		{ "stderr", "/proc/self/fd/2" },    { "ptmx", "pts/ptmx" },
	};
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++)
		if (symlinkat(links[i].target, devfd, links[i].name) < 0 && errno != EEXIST)
			fail_arg("symlink /dev", links[i].name);
	close(devfd);
}

/* runc's rootfsParentMountPropagation: the mount the rootfs lives on must not be shared, or pivot_root fails and the
 * rootfs's bind would propagate back into the guest's namespace. mount(2) says EINVAL for a path that is not a mount
 * point: walk up until one is. */
static void rootfs_parent_propagation(const char *rootfs, unsigned long flag)
{
	char *path = strdup(rootfs);
	if (!path)
		fail("rootfs parent");
	for (;;) {
		if (mount(NULL, path, NULL, flag, NULL) == 0)
			break;
		if (errno != EINVAL || strcmp(path, "/") == 0)
			fail_arg("make the rootfs's parent mount private", path);
		char *slash = strrchr(path, '/');
		if (slash == path)
			slash[1] = '\0';
		else
			*slash = '\0';
	}
	free(path);
}

void rootfs_prepare(const struct plan *p)
{
	g_userns = (p->ns_flags & CLONE_NEWUSER) != 0;
	/* runc's prepareRoot: rslave by default, so the container sees what the guest mounts later (nothing, today) but
	 * nothing it mounts reaches the guest's namespace. */
	unsigned long root_flag = p->root_propagation ? p->root_propagation : MS_SLAVE | MS_REC;
	if (mount(NULL, "/", NULL, root_flag, NULL) < 0)
		fail("set the propagation of /");
	rootfs_parent_propagation(p->rootfs, (root_flag & MS_SLAVE) ? MS_SLAVE : MS_PRIVATE);
	if (mount(p->rootfs, p->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
		fail_arg("bind rootfs", p->rootfs);
	/* Opened after the self-bind so lookups from it see the mounts made below. */
	g_rootfd = open(p->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (g_rootfd < 0)
		fail_arg("open rootfs", p->rootfs);
}

void rootfs_mount_all(const struct plan *p)
{
	int dev_is_tmpfs = 0;
	for (size_t i = 0; i < p->n_mounts; i++) {
		mount_one(&p->mounts[i]);
		if (strcmp(p->mounts[i].destination, "/dev") == 0)
			dev_is_tmpfs = strcmp(p->mounts[i].type, "tmpfs") == 0 && !(p->mounts[i].flags & MS_BIND);
	}
	if (dev_is_tmpfs)
		create_devices();
	devices_create(p);
}

void rootfs_pivot(const struct plan *p)
{
	if (chdir(p->rootfs) < 0)
		fail_arg("chdir", p->rootfs);
	/* pivot_root(".", ".") stacks the old root on top of the new one; detaching "." then removes it, so no
	 * put_old directory is needed (runc's pivotRoot). */
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		fail("pivot_root");
	if (umount2(".", MNT_DETACH) < 0)
		fail("umount old root");
	if (chdir("/") < 0)
		fail("chdir /");
	close(g_rootfd);
	g_rootfd = -1;
	/* linux.rootfsPropagation shared or unbindable applies to the new root, after pivot_root (runc: made before, it
	 * would be the guest's root that changes); private and slave were done by rootfs_prepare. */
	unsigned long rp = p->root_propagation;
	if (rp && !(rp & (MS_PRIVATE | MS_SLAVE)) && mount(NULL, "/", NULL, rp, NULL) < 0)
		fail("set rootfsPropagation on /");
}

unsigned long kept_mount_flags(const char *path)
{
	struct statvfs sv;
	if (statvfs(path, &sv) < 0)
		fail_arg("statvfs", path);
	unsigned long keep = 0;
	if (sv.f_flag & ST_NOSUID)
		keep |= MS_NOSUID;
	if (sv.f_flag & ST_NODEV)
		keep |= MS_NODEV;
	if (sv.f_flag & ST_NOEXEC)
		keep |= MS_NOEXEC;
	if (sv.f_flag & ST_NOATIME)
		keep |= MS_NOATIME;
	if (sv.f_flag & ST_NODIRATIME)
		keep |= MS_NODIRATIME;
	if (sv.f_flag & ST_RELATIME)
		keep |= MS_RELATIME;
	return keep;
}

void rootfs_finish(const struct plan *p)
{
	if (!p->readonly_root)
		return;
	if (mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | kept_mount_flags("/"), NULL) < 0)
		fail("remount root readonly");
}
