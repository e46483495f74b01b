/* The plan's device nodes (linux.devices), made in the new root before pivot_root. Parent directories are looked up
 * with openat2(RESOLVE_IN_ROOT) (rootfs.c), so a symlink in the image cannot place a node outside the container. */
#include "devices.h"
#include "rootfs.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static void make_node(int dirfd, const char *name, const struct plan_device *d)
{
	dev_t dev = d->type == S_IFIFO ? 0 : makedev(d->major, d->minor);
	if (mknodat(dirfd, name, d->type | d->mode, dev) == 0)
		return;
	if (errno != EEXIST)
		fail_arg("mknod", d->path);
	/* A default node (or a file of the image) of that name: the spec's device replaces it. */
	if (unlinkat(dirfd, name, 0) < 0)
		fail_arg("replace existing", d->path);
	if (mknodat(dirfd, name, d->type | d->mode, dev) < 0)
		fail_arg("mknod", d->path);
}

void devices_create(const struct plan *p)
{
	for (size_t i = 0; i < p->n_devices; i++) {
		const struct plan_device *d = &p->devices[i];
		char *dir = strdup(d->path);
		if (!dir)
			fail("device path");
		char *slash = strrchr(dir, '/'); /* the plan parser checked: absolute, a last component after it */
		const char *name = d->path + (slash - dir) + 1;
		*slash = '\0';
		if (dir[0])
			mkdir_all_in_root(dir, 0);
		int dirfd = open_in_root(dir[0] ? dir : "/", O_PATH | O_DIRECTORY);
		if (dirfd < 0)
			fail_arg("open device directory", d->path);
		make_node(dirfd, name, d);
		/* mknod applies the umask: the mode is set again; the node was just made, so it is no symlink. */
		if (fchownat(dirfd, name, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0)
			fail_arg("chown", d->path);
		if (fchmodat(dirfd, name, d->mode, 0) < 0)
			fail_arg("chmod", d->path);
		close(dirfd);
		free(dir);
	}
}
