/*
 * launcher.h — what hull-vmm-launcher is asked to do (parsed from its command line, args.c) and the steps that do it.
 *
 * hull-vmm-launcher confines one VMM and execs it, so the VMM keeps the launcher's pid: Firecracker's jailer for
 * hull's QEMU. Everything that needs root (sockets in hull's 0700 socket dir, taps, device nodes, the mount root) is
 * done first, in the caller's namespaces where it must be; then the process gives root up for good and execs the VMM.
 */
#ifndef HULL_VMM_LAUNCHER_H
#define HULL_VMM_LAUNCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define LAUNCHER_NAME "hull-vmm-launcher"
#define MAX_ITEMS 32
/* Descriptors handed to the VMM go to numbers in [FIRST_PASSED_FD, LAST_PASSED_FD]; the launcher's own sit above. */
#define FIRST_PASSED_FD 3
#define LAST_PASSED_FD 99
#define PRIVATE_FD_FLOOR 100

/* A descriptor the VMM gets at a number of the caller's choosing (its command line names that number). */
struct passed_fd {
    const char *what; /* a path or a tap name */
    int target;       /* the VMM's fd number */
    int fd;           /* the launcher's copy (close-on-exec), -1 until opened */
};

struct rlimit_req {
    int resource;
    const char *name;
    unsigned long long value; /* soft and hard */
};

struct symlink_req {
    const char *path;
    const char *target;
};

struct launch {
    uid_t uid;
    gid_t gid;
    bool have_uid, have_gid;
    /* An existing root-owned directory, the mount point of the new root in the launcher's mount namespace. */
    const char *jail;
    /* Bound read-only at the same path: `ro` also noexec, `ro_exec` executable (the VMM and its libraries). */
    const char *ro[MAX_ITEMS];
    size_t n_ro;
    const char *ro_exec[MAX_ITEMS];
    size_t n_ro_exec;
    struct symlink_req symlinks[MAX_ITEMS];
    size_t n_symlinks;
    /* Copied into the new root at the same path, readable by the VMM's uid only (secrets the host keeps 0600). */
    const char *copies[MAX_ITEMS];
    size_t n_copies;
    /* Character devices recreated (mknod) in the new root's /dev, owned by the VMM's uid, mode 0600. */
    const char *devices[MAX_ITEMS];
    size_t n_devices;
    /* Taps are opened in this network namespace (a path); absent: in the VMM's new one, where they are created. */
    const char *tap_netns;
    struct passed_fd taps[MAX_ITEMS];
    size_t n_taps;
    struct passed_fd listens[MAX_ITEMS]; /* Unix stream sockets bound and listening at a host path */
    size_t n_listens;
    struct passed_fd connects[MAX_ITEMS]; /* connected to a Unix socket at a host path */
    size_t n_connects;
    struct passed_fd opens[MAX_ITEMS]; /* opened read-write (e.g. /dev/vhost-net) */
    size_t n_opens;
    struct rlimit_req rlimits[MAX_ITEMS];
    size_t n_rlimits;
    /* The VMM's whole environment (NAME=VALUE), NULL-terminated: nothing of the launcher's own is passed on. */
    char *env[MAX_ITEMS + 1];
    size_t n_env;
    char **vmm_argv; /* vmm_argv[0] is the path of the VMM binary, as it is inside the new root */
};

/* args.c: fills `l` from argv or prints one usage line and exits 2. */
void parse_args(int argc, char **argv, struct launch *l);

/* handles.c: the descriptors that need root or the caller's namespaces (sockets, opens), then the taps and the
 * VMM's own network namespace; and, last of all, the passed descriptors at their numbers. */
void open_host_handles(struct launch *l);
void open_taps_and_netns(struct launch *l);
void place_passed_fds(struct launch *l);

/* jail.c: new mount/IPC/UTS namespaces; the new root built on a tmpfs at l->jail, pivoted into, made read-only. */
void enter_jail(const struct launch *l);

/* creds.c: rlimits, then uid/gid, no capabilities in any set, no_new_privs. */
void apply_rlimits(const struct launch *l);
void drop_privileges(const struct launch *l);

/* One line "hull-vmm-launcher: cannot <step>[ <arg>]: <strerror(errno)>" on stderr, exit 1. */
_Noreturn void fail(const char *step, const char *arg);
/* One line "hull-vmm-launcher: <message>" on stderr, exit 1. */
_Noreturn void failx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
