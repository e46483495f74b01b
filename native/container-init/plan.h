/* The plan the agent writes on fd 3: NUL-terminated strings, a key then its fixed number of values
 * (docs/design.md, "Container init helper"). */
#ifndef HULL_CI_PLAN_H
#define HULL_CI_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

/* The plan is read to EOF; anything larger is refused. */
#define PLAN_MAX_BYTES (16u << 20)

enum plan_mode { MODE_NONE = 0, MODE_CREATE, MODE_EXEC };

struct plan_mount {
	const char *type;
	const char *source;
	const char *destination;
	unsigned long flags; /* MS_* bits */
	const char *data;    /* NULL when empty */
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

struct plan {
	enum plan_mode mode;
	pid_t join_pid;
	int ns_flags; /* CLONE_NEW*: created (create mode) */
	struct plan_join joins[PLAN_MAX_JOINS];
	size_t n_joins;
	const char *rootfs;
	bool readonly_root;
	const char *hostname; /* NULL: leave as is */
	const char *cgroup;   /* NULL: stay in the agent's cgroup */
	const char *cwd;      /* NULL: "/" */
	const char *console;  /* NULL: keep the agent's stdio; "-": slave path follows the start byte on fd 5 */
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
};

/* Reads fd to EOF and parses it into *p (strings point into a heap buffer that lives as long as the process).
 * Returns 0, or -1 with a one-line reason in err. */
int plan_read(int fd, struct plan *p, char *err, size_t errlen);

#endif
