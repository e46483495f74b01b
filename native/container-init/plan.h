/* The plan the agent writes on fd 3: NUL-terminated strings, a key then its fixed number of values
 * (docs/design.md, "Container init helper"). */
#ifndef HULL_CI_PLAN_H
#define HULL_CI_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

/* The plan is read to EOF; anything larger is refused. */
#define PLAN_MAX_BYTES (16u << 20)

enum plan_mode { MODE_NONE = 0, MODE_CREATE, MODE_EXEC };

/* mount_propagation [flags]: after a mount, one propagation change of it, in order (MS_SHARED, MS_SLAVE, MS_PRIVATE or
 * MS_UNBINDABLE, with or without MS_REC); rootfs_propagation [flags]: linux.rootfsPropagation, the same values. */
#define PLAN_MAX_MOUNT_PROPAGATION 8
struct plan_mount {
	const char *type;
	const char *source;
	const char *destination;
	unsigned long flags; /* MS_* bits, no propagation ones */
	const char *data;    /* NULL when empty */
	unsigned long propagation[PLAN_MAX_MOUNT_PROPAGATION];
	size_t n_propagation;
};

struct plan_rlimit {
	int resource;
	struct rlimit limit;
};

/* create: setns() into namespace `name` of pid, which must still be the one with nsfs inode `inode` (the agent read
 * it while checking that pid is another container's init). Only pid, ipc, uts and cgroup can be joined. */
#define PLAN_MAX_JOINS 4
struct plan_join {
	const char *name; /* "pid", "ipc", "uts", "cgroup": the file under /proc/<pid>/ns/ */
	int type;         /* CLONE_NEW* */
	pid_t pid;
	unsigned long long inode;
};

/* capabilities: the five sets as bit masks of capability numbers (CAP_CHOWN = bit 0). */
enum plan_cap_set { CAPSET_BOUNDING, CAPSET_EFFECTIVE, CAPSET_PERMITTED, CAPSET_INHERITABLE, CAPSET_AMBIENT, CAPSET_COUNT };

struct plan_sysctl {
	const char *key; /* dotted, checked: [a-z0-9_-] components */
	const char *value;
};

/* device [path] [c|b|p|u] [major] [minor] [mode] [uid] [gid]: linux.devices, made in the rootfs after the mounts. */
#define PLAN_MAX_DEVICES 1024
struct plan_device {
	const char *path; /* absolute, no ".." component, not "/" */
	mode_t type;      /* S_IFCHR, S_IFBLK or S_IFIFO */
	unsigned major, minor;
	mode_t mode; /* permission bits only (07777) */
	uid_t uid;
	gid_t gid;
};

/* devcgroup [allow|deny], then devcgroup_rule [c|b] [major|*] [minor|*] [access]: linux.resources.devices in runc's
 * clean form (agent/spec-devices.ts): the default, and exceptions that each take the other action. */
#define PLAN_MAX_DEVCG_RULES 2048
struct plan_devcg_rule {
	char type;          /* 'c' or 'b' */
	long long major;    /* 0..UINT32_MAX, -1: any */
	long long minor;    /* 0..UINT32_MAX, -1: any */
	unsigned access;    /* BPF_DEVCG_ACC_* bits, not 0 */
};
struct plan_devcg {
	bool default_allow;
	struct plan_devcg_rule *rules;
	size_t n_rules;
};

/* uid_map / gid_map [container id] [host id] [size]: linux.uidMappings / gidMappings, for a created user namespace.
 * At most 340 lines each (the kernel's limit for /proc/<pid>/uid_map). */
#define PLAN_MAX_ID_MAPS 340
struct plan_idmap {
	uint32_t container, host, size;
};

/* Bounds on the repeated security keys (the agent's limits are the same or lower). */
#define PLAN_MAX_PATHS 1024
#define PLAN_MAX_SYSCTLS 1024
#define PLAN_MAX_SYSCALL_RULES 8192
#define PLAN_MAX_SYSCALL_ARGS 6 /* seccomp(2) compares at most the six syscall arguments */
#define PLAN_MAX_SECCOMP_ARCHES 16

/* Seccomp actions, as the plan spells them (allow, errno, kill_thread, kill_process, trap, log, trace). */
enum plan_seccomp_action { SECCOMP_ALLOW, SECCOMP_ERRNO, SECCOMP_KILL_THREAD, SECCOMP_KILL_PROCESS, SECCOMP_TRAP,
			   SECCOMP_LOG, SECCOMP_TRACE };
/* Argument comparisons: ne, lt, le, eq, ge, gt, masked_eq. */
enum plan_seccomp_op { SECCOMP_OP_NE, SECCOMP_OP_LT, SECCOMP_OP_LE, SECCOMP_OP_EQ, SECCOMP_OP_GE, SECCOMP_OP_GT,
		       SECCOMP_OP_MASKED_EQ };

struct plan_seccomp_arg {
	unsigned index; /* 0-5 */
	uint64_t value;
	uint64_t value_two;
	enum plan_seccomp_op op;
};

struct plan_seccomp_rule {
	const char *syscall; /* name; resolved (or skipped when unknown) at load time */
	enum plan_seccomp_action action;
	unsigned errno_ret; /* for errno and trace */
	struct plan_seccomp_arg args[PLAN_MAX_SYSCALL_ARGS];
	size_t n_args;
};

struct plan_seccomp {
	enum plan_seccomp_action default_action;
	unsigned default_errno;
	const char *arches[PLAN_MAX_SECCOMP_ARCHES]; /* libseccomp names: x86_64, x86, x32, aarch64, ... */
	size_t n_arches;
	struct plan_seccomp_rule *rules;
	size_t n_rules;
};

struct plan {
	enum plan_mode mode;
	pid_t join_pid;
	int ns_flags; /* CLONE_NEW*: created (create mode) */
	struct plan_join joins[PLAN_MAX_JOINS];
	size_t n_joins;
	const char *rootfs;
	unsigned long root_propagation; /* 0: runc's default, MS_SLAVE | MS_REC */
	bool readonly_root;
	const char *hostname; /* NULL: leave as is */
	const char *cgroup;   /* NULL: stay in the agent's cgroup */
	const char *cwd;      /* NULL: "/" */
	const char *console;  /* NULL: keep the agent's stdio; "-": slave path follows the start byte on fd 5 */
	const char *exec_path; /* NULL: argv[0], looked up in the plan's PATH; else executed as is, argv[0] kept */
	uid_t uid;
	gid_t gid;
	bool has_groups;
	gid_t *groups;
	size_t n_groups;
	struct plan_mount *mounts;
	size_t n_mounts;
	struct plan_rlimit *rlimits;
	size_t n_rlimits;
	char **env; /* NULL-terminated */
	size_t n_env;
	char **argv; /* NULL-terminated */
	size_t n_args;
	bool has_caps; /* false: capabilities are left as they are (root keeps all) */
	uint64_t caps[CAPSET_COUNT];
	bool no_new_privs;
	char **masked_paths;
	size_t n_masked_paths;
	char **readonly_paths;
	size_t n_readonly_paths;
	struct plan_sysctl *sysctls;
	size_t n_sysctls;
	struct plan_seccomp *seccomp; /* NULL: no filter */
	struct plan_device *devices;  /* create only */
	size_t n_devices;
	struct plan_devcg *devcg; /* create only; NULL: no device filter */
	struct plan_idmap uid_maps[PLAN_MAX_ID_MAPS]; /* create with CLONE_NEWUSER only */
	size_t n_uid_maps;
	struct plan_idmap gid_maps[PLAN_MAX_ID_MAPS];
	size_t n_gid_maps;
	bool has_oom_score_adj; /* false: inherited from the agent */
	int oom_score_adj;      /* -1000..1000 */
};

/* Reads fd to EOF and parses it into *p (strings point into a heap buffer that lives as long as the process).
 * Returns 0, or -1 with a one-line reason in err. */
int plan_read(int fd, struct plan *p, char *err, size_t errlen);

#endif
