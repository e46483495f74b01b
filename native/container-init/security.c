/* Capabilities, no_new_privs, masked and readonly paths, sysctls (see security.h); seccomp is in seccomp.c. */
#include "security.h"
#include "rootfs.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---------------------------------------------------------------- sysctls */

void apply_sysctls(const struct plan *p)
{
	for (size_t i = 0; i < p->n_sysctls; i++) {
		const struct plan_sysctl *s = &p->sysctls[i];
		char path[300];
		/* The key was checked in plan.c: dotted components only, so this stays under /proc/sys. */
		snprintf(path, sizeof(path), "/proc/sys/%s", s->key);
		for (char *c = path + strlen("/proc/sys/"); *c; c++)
			if (*c == '.')
				*c = '/';
		int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			fail_arg("sysctl", s->key);
		if (write_all(fd, s->value, strlen(s->value)) < 0)
			fail_arg("sysctl", s->key);
		if (close(fd) < 0)
			fail_arg("sysctl", s->key);
	}
}

/* ---------------------------------------------------------------- masked and readonly paths */

static void readonly_path(const char *path)
{
	if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
		if (errno == ENOENT)
			return;
		fail_arg("readonly path", path);
	}
	unsigned long keep = kept_mount_flags(path);
	if (mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | keep, NULL) < 0)
		fail_arg("readonly path remount", path);
}

static void mask_path(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		if (errno == ENOENT)
			return;
		fail_arg("masked path", path);
	}
	if (S_ISDIR(st.st_mode)) {
		if (mount("tmpfs", path, "tmpfs", MS_RDONLY, NULL) < 0)
			fail_arg("masked path", path);
	} else if (mount("/dev/null", path, NULL, MS_BIND, NULL) < 0) {
		fail_arg("masked path", path);
	}
}

/* runc's order: readonly paths first, then masks (a mask inside a readonly path still applies). */
void apply_masked_and_readonly_paths(const struct plan *p)
{
	for (size_t i = 0; i < p->n_readonly_paths; i++)
		readonly_path(p->readonly_paths[i]);
	for (size_t i = 0; i < p->n_masked_paths; i++)
		mask_path(p->masked_paths[i]);
}

/* ---------------------------------------------------------------- no_new_privs */

void apply_no_new_privs(const struct plan *p)
{
	if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fail("prctl no_new_privs");
}

/* ---------------------------------------------------------------- capabilities */

/* The highest capability this kernel knows: PR_CAPBSET_READ fails with EINVAL past it. Bits above it are ignored,
 * as runc ignores capabilities the kernel does not have. */
static int last_cap(void)
{
	int cap = 0;
	while (cap < 63 && prctl(PR_CAPBSET_READ, cap + 1, 0, 0, 0) >= 0)
		cap++;
	return cap;
}

static uint64_t known_caps_mask(void)
{
	int last = last_cap();
	return last >= 63 ? UINT64_MAX : (UINT64_C(1) << (last + 1)) - 1;
}

void apply_capabilities_before_setuid(const struct plan *p)
{
	if (!p->has_caps)
		return;
	int last = last_cap();
	for (int cap = 0; cap <= last; cap++) {
		if (p->caps[CAPSET_BOUNDING] & (UINT64_C(1) << cap))
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
			char what[16];
			snprintf(what, sizeof(what), "%d", cap);
			fail_arg("drop bounding capability", what);
		}
	}
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		fail("prctl keepcaps");
}

void apply_capabilities_after_setuid(const struct plan *p)
{
	if (!p->has_caps)
		return;
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		fail("prctl keepcaps");
	uint64_t known = known_caps_mask();
	uint64_t eff = p->caps[CAPSET_EFFECTIVE] & known, perm = p->caps[CAPSET_PERMITTED] & known;
	uint64_t inh = p->caps[CAPSET_INHERITABLE] & known, amb = p->caps[CAPSET_AMBIENT] & known;
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2] = {
		{ .effective = (uint32_t)eff, .permitted = (uint32_t)perm, .inheritable = (uint32_t)inh },
		{ .effective = (uint32_t)(eff >> 32), .permitted = (uint32_t)(perm >> 32), .inheritable = (uint32_t)(inh >> 32) },
	};
	if (syscall(SYS_capset, &hdr, data) < 0)
		fail("capset");
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		fail("prctl clear ambient capabilities");
	for (int cap = 0; cap < 64; cap++) {
		if (!(amb & (UINT64_C(1) << cap)))
			continue;
		/* An ambient capability must be permitted and inheritable (capabilities(7)). */
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0) {
			char what[16];
			snprintf(what, sizeof(what), "%d", cap);
			fail_arg("raise ambient capability", what);
		}
	}
}
