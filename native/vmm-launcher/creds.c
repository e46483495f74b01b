/*
 * creds.c — what the VMM keeps of the launcher's privileges: nothing. Resource limits first (lowering needs no
 * capability; raising a hard limit would, and is refused by the kernel then), then the bounding and ambient sets
 * (dropping from the bounding set needs CAP_SETPCAP, so before the uid change), then groups, gid and uid, then the
 * inheritable set, then no_new_privs. Checked at the end: a way back to root must not exist.
 */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "launcher.h"

void apply_rlimits(const struct launch *l)
{
    for (size_t i = 0; i < l->n_rlimits; i++) {
        struct rlimit r = { .rlim_cur = l->rlimits[i].value, .rlim_max = l->rlimits[i].value };
        if (setrlimit(l->rlimits[i].resource, &r) < 0)
            fail("set rlimit", l->rlimits[i].name);
    }
}

static void read_caps(struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3])
{
    struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    if (syscall(SYS_capget, &hdr, data) < 0)
        fail("read the capability sets", NULL);
}

void drop_privileges(const struct launch *l)
{
    for (int cap = 0; cap < 64; cap++) {
        int r = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
        if (r < 0 && errno == EINVAL)
            break; /* past the kernel's last capability */
        if (r == 1 && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            fail("drop a capability from the bounding set", NULL);
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        fail("clear the ambient capabilities", NULL);
    if (setgroups(0, NULL) < 0)
        fail("drop the supplementary groups", NULL);
    if (setresgid(l->gid, l->gid, l->gid) < 0)
        fail("switch to the VMM's gid", NULL);
    /* all three uids non-zero: the kernel clears the permitted and effective sets */
    if (setresuid(l->uid, l->uid, l->uid) < 0)
        fail("switch to the VMM's uid", NULL);
    struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3] = { { 0, 0, 0 }, { 0, 0, 0 } };
    if (syscall(SYS_capset, &hdr, none) < 0)
        fail("clear the inheritable capabilities", NULL);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        fail("set no_new_privs", NULL);

    struct __user_cap_data_struct now[_LINUX_CAPABILITY_U32S_3];
    read_caps(now);
    for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++) {
        if (now[i].effective || now[i].permitted || now[i].inheritable)
            failx("capabilities are left after the uid change");
    }
    if (setresuid(0, 0, 0) == 0 || setresgid(0, 0, 0) == 0)
        failx("the switch away from root could be undone");
}
