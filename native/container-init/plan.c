/* Reads and parses the plan (fd 3). Every value is checked here so the setup code can trust the struct. */
#include "plan.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct cursor {
	char *pos;
	char *end;
};

static int errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* Next NUL-terminated string, or NULL at the end (a trailing string without NUL is refused by the caller). */
static char *next_str(struct cursor *c)
{
	if (c->pos >= c->end)
		return NULL;
	char *s = c->pos;
	char *nul = memchr(s, '\0', (size_t)(c->end - s));
	if (!nul)
		return NULL;
	c->pos = nul + 1;
	return s;
}

static int parse_u64(const char *s, unsigned long long max, unsigned long long *out)
{
	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return -1;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_rlim(const char *s, rlim_t *out)
{
	if (strcmp(s, "-1") == 0) {
		*out = RLIM_INFINITY;
		return 0;
	}
	unsigned long long v;
	if (parse_u64(s, UINT64_MAX, &v))
		return -1;
	*out = (rlim_t)v;
	return 0;
}

static int parse_namespaces(const char *s, int *flags)
{
	char *copy = strdup(s);
	if (!copy)
		return -1;
	int f = 0, rc = 0;
	char *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "mount") == 0)
			f |= CLONE_NEWNS;
		else if (strcmp(tok, "pid") == 0)
			f |= CLONE_NEWPID;
		else if (strcmp(tok, "uts") == 0)
			f |= CLONE_NEWUTS;
		else if (strcmp(tok, "ipc") == 0)
			f |= CLONE_NEWIPC;
		else if (strcmp(tok, "cgroup") == 0)
			f |= CLONE_NEWCGROUP;
		else if (strcmp(tok, "net") == 0)
			f |= CLONE_NEWNET;
		else {
			rc = -1;
			break;
		}
	}
	free(copy);
	*flags = f;
	return rc;
}

/* join_ns [name] [pid] [inode] */
static int parse_join(char **v, struct plan *p, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		int type;
	} joinable[] = { { "pid", CLONE_NEWPID }, { "ipc", CLONE_NEWIPC }, { "uts", CLONE_NEWUTS }, { "cgroup", CLONE_NEWCGROUP } };
	struct plan_join j = { 0 };
	for (size_t i = 0; i < sizeof(joinable) / sizeof(joinable[0]); i++)
		if (strcmp(v[0], joinable[i].name) == 0) {
			j.name = joinable[i].name;
			j.type = joinable[i].type;
		}
	if (!j.name)
		return errf(err, errlen, "plan: namespace \"%.32s\" cannot be joined", v[0]);
	unsigned long long n;
	if (parse_u64(v[1], INT_MAX, &n) || n == 0)
		return errf(err, errlen, "plan: bad join_ns pid \"%.32s\"", v[1]);
	j.pid = (pid_t)n;
	if (parse_u64(v[2], UINT64_MAX, &j.inode) || j.inode == 0)
		return errf(err, errlen, "plan: bad join_ns inode \"%.32s\"", v[2]);
	for (size_t i = 0; i < p->n_joins; i++)
		if (p->joins[i].type == j.type)
			return errf(err, errlen, "plan: namespace %s is joined twice", j.name);
	p->joins[p->n_joins++] = j; /* at most one per joinable type, so it fits */
	return 0;
}

static int parse_groups(const char *s, struct plan *p)
{
	p->has_groups = true;
	p->n_groups = 0;
	if (!*s)
		return 0;
	size_t cap = 1;
	for (const char *q = s; *q; q++)
		cap += *q == ',';
	p->groups = calloc(cap, sizeof(gid_t));
	if (!p->groups)
		return -1;
	const char *q = s;
	while (*q) {
		const char *comma = strchr(q, ',');
		size_t len = comma ? (size_t)(comma - q) : strlen(q);
		char num[32];
		if (len == 0 || len >= sizeof(num))
			return -1;
		memcpy(num, q, len);
		num[len] = '\0';
		unsigned long long v;
		if (parse_u64(num, UINT32_MAX - 1, &v))
			return -1;
		p->groups[p->n_groups++] = (gid_t)v;
		q += len;
		if (*q == ',')
			q++;
	}
	return 0;
}

/* Appends to a NULL-terminated string vector. */
static int push_str(char ***vec, size_t *n, char *s)
{
	char **nv = realloc(*vec, (*n + 2) * sizeof(char *));
	if (!nv)
		return -1;
	nv[(*n)++] = s;
	nv[*n] = NULL;
	*vec = nv;
	return 0;
}

static int read_all(int fd, char **out, size_t *outlen)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		return -1;
	for (;;) {
		if (len == cap) {
			if (cap >= PLAN_MAX_BYTES) {
				free(buf);
				errno = EFBIG;
				return -1;
			}
			cap *= 2;
			char *nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				return -1;
			}
			buf = nb;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			free(buf);
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	*out = buf;
	*outlen = len;
	return 0;
}

int plan_read(int fd, struct plan *p, char *err, size_t errlen)
{
	memset(p, 0, sizeof(*p));
	char *buf;
	size_t len;
	if (read_all(fd, &buf, &len))
		return errf(err, errlen, "plan: read fd 3: %s", strerror(errno));
	if (len > 0 && buf[len - 1] != '\0')
		return errf(err, errlen, "plan: last string is not NUL-terminated");

	struct cursor c = { buf, buf + len };
	char *key;
	while ((key = next_str(&c)) != NULL) {
		static const struct {
			const char *key;
			int nvals;
		} arity[] = {
			{ "mode", 1 }, { "join_pid", 1 }, { "namespaces", 1 }, { "rootfs", 1 }, { "readonly_root", 1 },
			{ "hostname", 1 }, { "mount", 5 }, { "cgroup", 1 }, { "rlimit", 3 }, { "uid", 1 },
			{ "gid", 1 }, { "groups", 1 }, { "cwd", 1 }, { "env", 1 }, { "arg", 1 },
			{ "console", 1 }, { "join_ns", 3 },
		};
		int nvals = -1;
		for (size_t i = 0; i < sizeof(arity) / sizeof(arity[0]); i++)
			if (strcmp(key, arity[i].key) == 0)
				nvals = arity[i].nvals;
		if (nvals < 0)
			return errf(err, errlen, "plan: unknown key \"%.64s\"", key);
		char *v[5];
		for (int i = 0; i < nvals; i++) {
			v[i] = next_str(&c);
			if (!v[i])
				return errf(err, errlen, "plan: key %s needs %d values", key, nvals);
		}
		unsigned long long n;

		if (strcmp(key, "mode") == 0) {
			if (strcmp(v[0], "create") == 0)
				p->mode = MODE_CREATE;
			else if (strcmp(v[0], "exec") == 0)
				p->mode = MODE_EXEC;
			else
				return errf(err, errlen, "plan: bad mode \"%.32s\"", v[0]);
		} else if (strcmp(key, "join_pid") == 0) {
			if (parse_u64(v[0], INT_MAX, &n) || n == 0)
				return errf(err, errlen, "plan: bad join_pid \"%.32s\"", v[0]);
			p->join_pid = (pid_t)n;
		} else if (strcmp(key, "namespaces") == 0) {
			if (parse_namespaces(v[0], &p->ns_flags))
				return errf(err, errlen, "plan: bad namespaces \"%.128s\"", v[0]);
		} else if (strcmp(key, "join_ns") == 0) {
			if (parse_join(v, p, err, errlen))
				return -1;
		} else if (strcmp(key, "rootfs") == 0) {
			if (v[0][0] != '/')
				return errf(err, errlen, "plan: rootfs must be absolute");
			p->rootfs = v[0];
		} else if (strcmp(key, "readonly_root") == 0) {
			if (strcmp(v[0], "0") && strcmp(v[0], "1"))
				return errf(err, errlen, "plan: bad readonly_root");
			p->readonly_root = v[0][0] == '1';
		} else if (strcmp(key, "hostname") == 0) {
			p->hostname = v[0];
		} else if (strcmp(key, "mount") == 0) {
			if (v[2][0] != '/')
				return errf(err, errlen, "plan: mount destination must be absolute: %.200s", v[2]);
			if (parse_u64(v[3], ULONG_MAX, &n))
				return errf(err, errlen, "plan: bad mount flags \"%.32s\"", v[3]);
			struct plan_mount *nm = realloc(p->mounts, (p->n_mounts + 1) * sizeof(*nm));
			if (!nm)
				return errf(err, errlen, "plan: out of memory");
			p->mounts = nm;
			nm[p->n_mounts++] = (struct plan_mount){
				.type = v[0], .source = v[1], .destination = v[2], .flags = (unsigned long)n,
				.data = v[4][0] ? v[4] : NULL,
			};
		} else if (strcmp(key, "cgroup") == 0) {
			if (v[0][0] != '/')
				return errf(err, errlen, "plan: cgroup must be absolute");
			p->cgroup = v[0];
		} else if (strcmp(key, "rlimit") == 0) {
			struct plan_rlimit r;
			if (parse_u64(v[0], 63, &n))
				return errf(err, errlen, "plan: bad rlimit resource \"%.32s\"", v[0]);
			r.resource = (int)n;
			if (parse_rlim(v[1], &r.limit.rlim_cur) || parse_rlim(v[2], &r.limit.rlim_max))
				return errf(err, errlen, "plan: bad rlimit value for resource %d", r.resource);
			struct plan_rlimit *nr = realloc(p->rlimits, (p->n_rlimits + 1) * sizeof(*nr));
			if (!nr)
				return errf(err, errlen, "plan: out of memory");
			p->rlimits = nr;
			nr[p->n_rlimits++] = r;
		} else if (strcmp(key, "uid") == 0) {
			if (parse_u64(v[0], UINT32_MAX - 1, &n))
				return errf(err, errlen, "plan: bad uid \"%.32s\"", v[0]);
			p->uid = (uid_t)n;
		} else if (strcmp(key, "gid") == 0) {
			if (parse_u64(v[0], UINT32_MAX - 1, &n))
				return errf(err, errlen, "plan: bad gid \"%.32s\"", v[0]);
			p->gid = (gid_t)n;
		} else if (strcmp(key, "groups") == 0) {
			if (parse_groups(v[0], p))
				return errf(err, errlen, "plan: bad groups \"%.128s\"", v[0]);
		} else if (strcmp(key, "console") == 0) {
			if (strcmp(v[0], "-") != 0 && v[0][0] != '/')
				return errf(err, errlen, "plan: console must be \"-\" or an absolute path");
			p->console = v[0];
		} else if (strcmp(key, "cwd") == 0) {
			if (v[0][0] != '/')
				return errf(err, errlen, "plan: cwd must be absolute");
			p->cwd = v[0];
		} else if (strcmp(key, "env") == 0) {
			if (!strchr(v[0], '='))
				return errf(err, errlen, "plan: env entry without '=': %.64s", v[0]);
			if (push_str(&p->env, &p->n_env, v[0]))
				return errf(err, errlen, "plan: out of memory");
		} else if (strcmp(key, "arg") == 0) {
			if (push_str(&p->argv, &p->n_args, v[0]))
				return errf(err, errlen, "plan: out of memory");
		}
	}

	if (p->mode == MODE_NONE)
		return errf(err, errlen, "plan: no mode");
	if (p->n_args == 0 || p->argv[0][0] == '\0')
		return errf(err, errlen, "plan: no arg");
	if (!p->env && push_str(&p->env, &p->n_env, NULL) == 0)
		p->n_env = 0; /* an empty, NULL-terminated vector */
	if (p->mode == MODE_CREATE) {
		if (!p->rootfs)
			return errf(err, errlen, "plan: create needs rootfs");
		if (!(p->ns_flags & CLONE_NEWNS))
			return errf(err, errlen, "plan: create needs the mount namespace");
		if (p->join_pid)
			return errf(err, errlen, "plan: join_pid is for exec only");
		for (size_t i = 0; i < p->n_joins; i++)
			if (p->ns_flags & p->joins[i].type)
				return errf(err, errlen, "plan: namespace %s is both joined and created", p->joins[i].name);
	} else {
		if (!p->join_pid)
			return errf(err, errlen, "plan: exec needs join_pid");
		if (p->ns_flags || p->n_joins || p->rootfs || p->n_mounts)
			return errf(err, errlen, "plan: exec takes no namespaces, join_ns, rootfs or mount");
	}
	return 0;
}
