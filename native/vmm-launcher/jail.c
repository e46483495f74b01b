/*
 * jail.c — the VMM's mount namespace (with new IPC and UTS namespaces): a tmpfs mounted on l->jail (in the new
 * namespace only) becomes the root, holding nothing but
 *   - the --ro / --ro-exec paths, bound read-only (nosuid, nodev; noexec unless --ro-exec) at their host paths;
 *   - the --copy files, copied in at their host paths, readable by the VMM's uid only;
 *   - the --dev character devices, recreated in a /dev tmpfs, owned by the VMM's uid, mode 0600;
 *   - the --symlink links (e.g. /lib64 -> usr/lib64 on a merged-/usr host);
 * then the process pivots into it, detaches the old root and remounts the new one read-only.
 *
 * Paths inside the new root are only ever created on its own tmpfs: every component is checked with lstat, so no
 * step can follow a symlink or write through a bind mount into the host. A path under another bound directory is not
 * bound again (it is visible through that one already).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "launcher.h"

#define COPY_MAX (1 << 20)

static dev_t g_jail_dev; /* st_dev of the new root's tmpfs */

static void jail_path(const struct launch *l, const char *path, char *out)
{
    if ((size_t)snprintf(out, PATH_MAX, "%s%s", l->jail, path) >= PATH_MAX)
        failx("path too long in the new root: %s%s", l->jail, path);
}

/* mkdir -p of the parent directories of `path` (absolute, inside the new root), on the tmpfs only. */
static void make_parents(const struct launch *l, const char *path)
{
    char buf[PATH_MAX];
    jail_path(l, path, buf);
    size_t skip = strlen(l->jail);
    for (char *p = buf + skip + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = 0;
        struct stat st;
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            fail("create the directory in the new root", buf);
        if (lstat(buf, &st) < 0)
            fail("inspect the directory in the new root", buf);
        if (!S_ISDIR(st.st_mode) || st.st_dev != g_jail_dev)
            failx("%s in the new root is not a directory of its own (a symlink or a bound path is in the way)", buf + skip);
        *p = '/';
    }
}

/* Is `path` inside `dir` (or equal to it)? Both clean absolute paths. */
static int under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return !strncmp(path, dir, n) && (path[n] == 0 || path[n] == '/');
}

static int covered_by_other(const struct launch *l, const char *path, size_t self_list, size_t self_idx)
{
    const char *const *lists[] = { l->ro, l->ro_exec };
    const size_t counts[] = { l->n_ro, l->n_ro_exec };
    for (size_t k = 0; k < 2; k++) {
        for (size_t i = 0; i < counts[k]; i++) {
            if (k == self_list && i == self_idx)
                continue;
            const char *other = lists[k][i];
            /* equal paths: the first one binds; a proper ancestor: it binds */
            if (!strcmp(other, path) ? (k < self_list || (k == self_list && i < self_idx)) : under(path, other))
                return 1;
        }
    }
    return 0;
}

static void bind_read_only(const struct launch *l, const char *path, int exec)
{
    struct stat src;
    char target[PATH_MAX];
    if (stat(path, &src) < 0)
        fail("find", path);
    make_parents(l, path);
    jail_path(l, path, target);
    if (S_ISDIR(src.st_mode)) {
        if (mkdir(target, 0755) < 0)
            fail("create the mount point", target);
    } else {
        int fd = open(target, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0444);
        if (fd < 0)
            fail("create the mount point", target);
        close(fd);
    }
    if (mount(path, target, NULL, MS_BIND | MS_REC, NULL) < 0)
        fail("bind", path);
    unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | (exec ? 0 : MS_NOEXEC);
    if (mount(NULL, target, NULL, flags, NULL) < 0)
        fail("make read-only", path);
}

static void copy_in(const struct launch *l, const char *path)
{
    static char data[COPY_MAX];
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        fail("open", path);
    ssize_t n = read(in, data, sizeof data);
    if (n < 0)
        fail("read", path);
    char extra;
    if ((size_t)n == sizeof data && read(in, &extra, 1) != 0)
        failx("%s is larger than %d bytes: not a file to copy into the new root", path, COPY_MAX);
    close(in);
    char target[PATH_MAX];
    make_parents(l, path);
    jail_path(l, path, target);
    int out = open(target, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0400);
    if (out < 0)
        fail("create the copy", target);
    for (ssize_t done = 0; done < n;) {
        ssize_t w = write(out, data + done, (size_t)(n - done));
        if (w < 0)
            fail("write the copy", target);
        done += w;
    }
    if (fchown(out, l->uid, l->gid) < 0)
        fail("hand the copy to the VMM's uid:", target);
    close(out);
}

static void make_device(const struct launch *l, const char *path)
{
    struct stat st;
    char target[PATH_MAX];
    if (stat(path, &st) < 0)
        fail("find the device", path);
    if (!S_ISCHR(st.st_mode))
        failx("%s is not a character device", path);
    make_parents(l, path);
    jail_path(l, path, target);
    if (mknod(target, S_IFCHR | 0600, st.st_rdev) < 0)
        fail("create the device node", target);
    if (chown(target, l->uid, l->gid) < 0)
        fail("hand the device node to the VMM's uid:", target);
}

void enter_jail(const struct launch *l)
{
    if (unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS) < 0)
        fail("create the mount, IPC and UTS namespaces", NULL);
    /* nothing mounted from here on reaches the host, nor the host's later mounts us */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        fail("make the mounts private", NULL);
    if (mount("tmpfs", l->jail, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=4m,nr_inodes=4096") < 0)
        fail("mount the new root's tmpfs on", l->jail);
    struct stat st;
    if (stat(l->jail, &st) < 0)
        fail("inspect the new root", l->jail);
    g_jail_dev = st.st_dev;

    for (size_t i = 0; i < l->n_ro_exec; i++)
        if (!covered_by_other(l, l->ro_exec[i], 1, i))
            bind_read_only(l, l->ro_exec[i], 1);
    for (size_t i = 0; i < l->n_ro; i++)
        if (!covered_by_other(l, l->ro[i], 0, i))
            bind_read_only(l, l->ro[i], 0);
    for (size_t i = 0; i < l->n_copies; i++)
        copy_in(l, l->copies[i]);
    if (l->n_devices > 0) {
        char dev[PATH_MAX];
        jail_path(l, "/dev", dev);
        if (mkdir(dev, 0755) < 0)
            fail("create", dev);
        /* its own tmpfs: the root's is nodev */
        if (mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64") < 0)
            fail("mount a tmpfs on", dev);
        if (stat(dev, &st) < 0)
            fail("inspect", dev);
        dev_t root_dev = g_jail_dev;
        g_jail_dev = st.st_dev; /* make_parents stays on this tmpfs for /dev/... */
        for (size_t i = 0; i < l->n_devices; i++)
            make_device(l, l->devices[i]);
        g_jail_dev = root_dev;
        if (mount(NULL, dev, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL) < 0)
            fail("make read-only", dev);
    }
    /* last: no later step may resolve a path through one of them */
    for (size_t i = 0; i < l->n_symlinks; i++) {
        char target[PATH_MAX];
        make_parents(l, l->symlinks[i].path);
        jail_path(l, l->symlinks[i].path, target);
        if (symlink(l->symlinks[i].target, target) < 0)
            fail("create the symlink", target);
    }

    /* pivot_root(".", "."): the old root ends up stacked on the new one, then detached (runc's way; no put_old dir) */
    if (chdir(l->jail) < 0)
        fail("enter the new root", l->jail);
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        fail("pivot_root into", l->jail);
    if (umount2(".", MNT_DETACH) < 0)
        fail("detach the old root", NULL);
    if (chdir("/") < 0)
        fail("enter /", NULL);
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        fail("make the new root read-only", NULL);
}
