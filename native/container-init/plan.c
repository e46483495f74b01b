/* Reads and parses the plan (fd 3). Every value is checked here so the setup code can trust the struct. */
#include "plan.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/bpf.h>

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
		else if (strcmp(tok, "user") == 0)
			f |= CLONE_NEWUSER;
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

/* Appends to a string vector of at most max entries (not NULL-terminated). */
static int push_bounded(char ***vec, size_t *n, size_t max, char *s, const char *key, char *err, size_t errlen)
{
	if (*n >= max)
		return errf(err, errlen, "plan: more than %zu %s entries", max, key);
	char **nv = realloc(*vec, (*n + 1) * sizeof(char *));
	if (!nv)
		return errf(err, errlen, "plan: out of memory");
	nv[(*n)++] = s;
	*vec = nv;
	return 0;
}

/* masked_path / readonly_path: an absolute path that fits PATH_MAX. */
static int check_security_path(const char *key, const char *s, char *err, size_t errlen)
{
	if (s[0] != '/' || strlen(s) >= PATH_MAX)
		return errf(err, errlen, "plan: %s must be an absolute path shorter than %d bytes: %.200s", key, PATH_MAX, s);
	return 0;
}

/* A sysctl key in dotted form: components of [A-Za-z0-9_-], so /proc/sys/<key with '/'> stays under /proc/sys. */
static bool sysctl_key_ok(const char *k)
{
	size_t len = strlen(k);
	if (len == 0 || len > 255 || k[0] == '.' || k[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = k[i];
		bool word = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
			    ch == '-';
		if (ch == '.' ? k[i + 1] == '.' : !word)
			return false;
	}
	return true;
}

static int parse_seccomp_action(const char *s, enum plan_seccomp_action *out)
{
	static const struct {
		const char *name;
		enum plan_seccomp_action action;
	} actions[] = {
		{ "allow", SECCOMP_ALLOW },		  { "errno", SECCOMP_ERRNO }, { "kill_thread", SECCOMP_KILL_THREAD },
		{ "kill_process", SECCOMP_KILL_PROCESS }, { "trap", SECCOMP_TRAP },   { "log", SECCOMP_LOG },
		{ "trace", SECCOMP_TRACE },
	};
	for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
		if (strcmp(s, actions[i].name) == 0) {
			*out = actions[i].action;
			return 0;
		}
	return -1;
}

static int parse_seccomp_op(const char *s, enum plan_seccomp_op *out)
{
	static const char *const ops[] = { "ne", "lt", "le", "eq", "ge", "gt", "masked_eq" };
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (strcmp(s, ops[i]) == 0) {
			*out = (enum plan_seccomp_op)i;
			return 0;
		}
	return -1;
}

/* An errno for the errno/trace actions: 0..4095 (the kernel's MAX_ERRNO). */
static int parse_errno_ret(const char *s, unsigned *out)
{
	unsigned long long n;
	if (parse_u64(s, 4095, &n))
		return -1;
	*out = (unsigned)n;
	return 0;
}

/* seccomp [default action] [default errno] */
static int parse_seccomp(char **v, struct plan *p, char *err, size_t errlen)
{
	if (p->seccomp)
		return errf(err, errlen, "plan: seccomp is given twice");
	struct plan_seccomp *sc = calloc(1, sizeof(*sc));
	if (!sc)
		return errf(err, errlen, "plan: out of memory");
	p->seccomp = sc;
	if (parse_seccomp_action(v[0], &sc->default_action))
		return errf(err, errlen, "plan: bad seccomp action \"%.32s\"", v[0]);
	if (parse_errno_ret(v[1], &sc->default_errno))
		return errf(err, errlen, "plan: bad seccomp errno \"%.32s\"", v[1]);
	return 0;
}

/* seccomp_syscall [name] [action] [errno] */
static int parse_seccomp_syscall(char **v, struct plan *p, char *err, size_t errlen)
{
	struct plan_seccomp *sc = p->seccomp;
	if (!sc)
		return errf(err, errlen, "plan: seccomp_syscall before seccomp");
	if (sc->n_rules >= PLAN_MAX_SYSCALL_RULES)
		return errf(err, errlen, "plan: more than %d seccomp_syscall entries", PLAN_MAX_SYSCALL_RULES);
	if (!v[0][0] || strlen(v[0]) > 64)
		return errf(err, errlen, "plan: bad seccomp syscall name \"%.64s\"", v[0]);
	struct plan_seccomp_rule r = { .syscall = v[0] };
	if (parse_seccomp_action(v[1], &r.action))
		return errf(err, errlen, "plan: bad seccomp action \"%.32s\"", v[1]);
	if (parse_errno_ret(v[2], &r.errno_ret))
		return errf(err, errlen, "plan: bad seccomp errno \"%.32s\"", v[2]);
	struct plan_seccomp_rule *nr = realloc(sc->rules, (sc->n_rules + 1) * sizeof(*nr));
	if (!nr)
		return errf(err, errlen, "plan: out of memory");
	sc->rules = nr;
	nr[sc->n_rules++] = r;
	return 0;
}

/* seccomp_arg [index] [value] [value_two] [op]: a condition of the seccomp_syscall before it. */
static int parse_seccomp_arg(char **v, struct plan *p, char *err, size_t errlen)
{
	struct plan_seccomp *sc = p->seccomp;
	if (!sc || sc->n_rules == 0)
		return errf(err, errlen, "plan: seccomp_arg without a seccomp_syscall before it");
	struct plan_seccomp_rule *r = &sc->rules[sc->n_rules - 1];
	if (r->n_args >= PLAN_MAX_SYSCALL_ARGS)
		return errf(err, errlen, "plan: more than %d seccomp_arg entries for %.64s", PLAN_MAX_SYSCALL_ARGS, r->syscall);
	struct plan_seccomp_arg a;
	unsigned long long n;
	if (parse_u64(v[0], PLAN_MAX_SYSCALL_ARGS - 1, &n))
		return errf(err, errlen, "plan: bad seccomp_arg index \"%.32s\"", v[0]);
	a.index = (unsigned)n;
	unsigned long long value, value_two;
	if (parse_u64(v[1], UINT64_MAX, &value) || parse_u64(v[2], UINT64_MAX, &value_two))
		return errf(err, errlen, "plan: bad seccomp_arg value for %.64s", r->syscall);
	a.value = value;
	a.value_two = value_two;
	if (parse_seccomp_op(v[3], &a.op))
		return errf(err, errlen, "plan: bad seccomp_arg op \"%.32s\"", v[3]);
	r->args[r->n_args++] = a;
	return 0;
}

static int parse_capabilities(char **v, struct plan *p, char *err, size_t errlen)
{
	if (p->has_caps)
		return errf(err, errlen, "plan: capabilities are given twice");
	for (int i = 0; i < CAPSET_COUNT; i++) {
		unsigned long long n;
		if (parse_u64(v[i], UINT64_MAX, &n))
			return errf(err, errlen, "plan: bad capability mask \"%.32s\"", v[i]);
		p->caps[i] = n;
	}
	p->has_caps = true;
	return 0;
}

/* A device path: absolute, shorter than PATH_MAX, not "/", no "." or ".." component (mknodat takes its last one). */
static bool device_path_ok(const char *s)
{
	size_t len = strlen(s);
	if (s[0] != '/' || len < 2 || len >= PATH_MAX || s[len - 1] == '/')
		return false;
	for (const char *c = s; (c = strchr(c, '/')) != NULL; c++) {
		const char *next = c + 1;
		if (*next == '/' || (next[0] == '.' && (next[1] == '/' || next[1] == '\0')) ||
		    (next[0] == '.' && next[1] == '.' && (next[2] == '/' || next[2] == '\0')))
			return false;
	}
	return true;
}

/* device [path] [c|b|p|u] [major] [minor] [mode] [uid] [gid] */
static int parse_device(char **v, struct plan *p, char *err, size_t errlen)
{
	if (p->n_devices >= PLAN_MAX_DEVICES)
		return errf(err, errlen, "plan: more than %d device entries", PLAN_MAX_DEVICES);
	if (!device_path_ok(v[0]))
		return errf(err, errlen, "plan: bad device path \"%.200s\"", v[0]);
	struct plan_device d = { .path = v[0] };
	if (strcmp(v[1], "c") == 0 || strcmp(v[1], "u") == 0)
		d.type = S_IFCHR;
	else if (strcmp(v[1], "b") == 0)
		d.type = S_IFBLK;
	else if (strcmp(v[1], "p") == 0)
		d.type = S_IFIFO;
	else
		return errf(err, errlen, "plan: bad device type \"%.8s\" for %.200s", v[1], v[0]);
	unsigned long long major, minor, mode, uid, gid;
	if (parse_u64(v[2], 0xfff, &major) || parse_u64(v[3], 0xfffff, &minor))
		return errf(err, errlen, "plan: bad device number %.16s:%.16s for %.200s", v[2], v[3], v[0]);
	if (parse_u64(v[4], 07777, &mode))
		return errf(err, errlen, "plan: bad device mode \"%.16s\" for %.200s", v[4], v[0]);
	if (parse_u64(v[5], UINT32_MAX - 1, &uid) || parse_u64(v[6], UINT32_MAX - 1, &gid))
		return errf(err, errlen, "plan: bad device owner %.16s:%.16s for %.200s", v[5], v[6], v[0]);
	d.major = (unsigned)major;
	d.minor = (unsigned)minor;
	d.mode = (mode_t)mode;
	d.uid = (uid_t)uid;
	d.gid = (gid_t)gid;
	struct plan_device *nd = realloc(p->devices, (p->n_devices + 1) * sizeof(*nd));
	if (!nd)
		return errf(err, errlen, "plan: out of memory");
	p->devices = nd;
	nd[p->n_devices++] = d;
	return 0;
}

/* devcgroup [allow|deny] */
static int parse_devcgroup(const char *s, struct plan *p, char *err, size_t errlen)
{
	if (p->devcg)
		return errf(err, errlen, "plan: devcgroup is given twice");
	bool allow = strcmp(s, "allow") == 0;
	if (!allow && strcmp(s, "deny") != 0)
		return errf(err, errlen, "plan: bad devcgroup default \"%.16s\"", s);
	p->devcg = calloc(1, sizeof(*p->devcg));
	if (!p->devcg)
		return errf(err, errlen, "plan: out of memory");
	p->devcg->default_allow = allow;
	return 0;
}

/* A device number of a devcgroup_rule: "*" (any) or 0..UINT32_MAX (bpf_cgroup_dev_ctx holds u32). */
static int parse_devcg_number(const char *s, long long *out)
{
	if (strcmp(s, "*") == 0) {
		*out = -1;
		return 0;
	}
	unsigned long long n;
	if (parse_u64(s, UINT32_MAX, &n))
		return -1;
	*out = (long long)n;
	return 0;
}

/* devcgroup_rule [c|b] [major|*] [minor|*] [access: a non-empty subset of "rwm", each letter once] */
static int parse_devcgroup_rule(char **v, struct plan *p, char *err, size_t errlen)
{
	struct plan_devcg *d = p->devcg;
	if (!d)
		return errf(err, errlen, "plan: devcgroup_rule before devcgroup");
	if (d->n_rules >= PLAN_MAX_DEVCG_RULES)
		return errf(err, errlen, "plan: more than %d devcgroup_rule entries", PLAN_MAX_DEVCG_RULES);
	struct plan_devcg_rule r = { 0 };
	if (strcmp(v[0], "c") == 0 || strcmp(v[0], "b") == 0)
		r.type = v[0][0];
	else
		return errf(err, errlen, "plan: bad devcgroup_rule type \"%.8s\"", v[0]);
	if (parse_devcg_number(v[1], &r.major) || parse_devcg_number(v[2], &r.minor))
		return errf(err, errlen, "plan: bad devcgroup_rule number %.16s:%.16s", v[1], v[2]);
	if (!v[3][0] || strlen(v[3]) > 3)
		return errf(err, errlen, "plan: bad devcgroup_rule access \"%.8s\"", v[3]);
	for (const char *c = v[3]; *c; c++) {
		unsigned bit = *c == 'r' ? BPF_DEVCG_ACC_READ : *c == 'w' ? BPF_DEVCG_ACC_WRITE : *c == 'm' ? BPF_DEVCG_ACC_MKNOD : 0;
		if (!bit || (r.access & bit))
			return errf(err, errlen, "plan: bad devcgroup_rule access \"%.8s\"", v[3]);
		r.access |= bit;
	}
	struct plan_devcg_rule *nr = realloc(d->rules, (d->n_rules + 1) * sizeof(*nr));
	if (!nr)
		return errf(err, errlen, "plan: out of memory");
	d->rules = nr;
	nr[d->n_rules++] = r;
	return 0;
}

/* A propagation change: exactly one of MS_SHARED, MS_SLAVE, MS_PRIVATE, MS_UNBINDABLE, maybe with MS_REC. */
static int parse_propagation(const char *s, unsigned long *out)
{
	unsigned long long n;
	if (parse_u64(s, ULONG_MAX, &n))
		return -1;
	unsigned long type = (unsigned long)n & ~(unsigned long)MS_REC;
	if (type != MS_SHARED && type != MS_SLAVE && type != MS_PRIVATE && type != MS_UNBINDABLE)
		return -1;
	*out = (unsigned long)n;
	return 0;
}

/* uid_map / gid_map [container id] [host id] [size]: both ranges within 32 bits, size at least 1. */
static int parse_idmap(const char *key, char **v, struct plan_idmap *maps, size_t *n, char *err, size_t errlen)
{
	if (*n >= PLAN_MAX_ID_MAPS)
		return errf(err, errlen, "plan: more than %d %s entries", PLAN_MAX_ID_MAPS, key);
	unsigned long long c, h, sz;
	if (parse_u64(v[0], UINT32_MAX, &c) || parse_u64(v[1], UINT32_MAX, &h) || parse_u64(v[2], UINT32_MAX, &sz) ||
	    sz == 0 || c + sz > (1ULL << 32) || h + sz > (1ULL << 32))
		return errf(err, errlen, "plan: bad %s %.16s %.16s %.16s", key, v[0], v[1], v[2]);
	maps[(*n)++] = (struct plan_idmap){ .container = (uint32_t)c, .host = (uint32_t)h, .size = (uint32_t)sz };
	return 0;
}

/* oom_score_adj [-1000..1000] */
static int parse_oom_score_adj(const char *s, struct plan *p, char *err, size_t errlen)
{
	bool neg = s[0] == '-';
	unsigned long long n;
	if (parse_u64(s + neg, 1000, &n))
		return errf(err, errlen, "plan: bad oom_score_adj \"%.32s\"", s);
	p->oom_score_adj = neg ? -(int)n : (int)n;
	p->has_oom_score_adj = true;
	return 0;
}

/* The security keys (docs/design.md). Returns 1 when key is not one of them. */
static int parse_security_key(const char *key, char **v, struct plan *p, char *err, size_t errlen)
{
	if (strcmp(key, "capabilities") == 0)
		return parse_capabilities(v, p, err, errlen);
	if (strcmp(key, "no_new_privs") == 0) {
		if (strcmp(v[0], "0") && strcmp(v[0], "1"))
			return errf(err, errlen, "plan: bad no_new_privs");
		p->no_new_privs = v[0][0] == '1';
		return 0;
	}
	if (strcmp(key, "masked_path") == 0) {
		if (check_security_path(key, v[0], err, errlen))
			return -1;
		return push_bounded(&p->masked_paths, &p->n_masked_paths, PLAN_MAX_PATHS, v[0], key, err, errlen);
	}
	if (strcmp(key, "readonly_path") == 0) {
		if (check_security_path(key, v[0], err, errlen))
			return -1;
		return push_bounded(&p->readonly_paths, &p->n_readonly_paths, PLAN_MAX_PATHS, v[0], key, err, errlen);
	}
	if (strcmp(key, "sysctl") == 0) {
		if (!sysctl_key_ok(v[0]))
			return errf(err, errlen, "plan: bad sysctl key \"%.64s\"", v[0]);
		if (strlen(v[1]) > 4096)
			return errf(err, errlen, "plan: sysctl %s: value longer than 4096 bytes", v[0]);
		if (p->n_sysctls >= PLAN_MAX_SYSCTLS)
			return errf(err, errlen, "plan: more than %d sysctl entries", PLAN_MAX_SYSCTLS);
		struct plan_sysctl *ns = realloc(p->sysctls, (p->n_sysctls + 1) * sizeof(*ns));
		if (!ns)
			return errf(err, errlen, "plan: out of memory");
		p->sysctls = ns;
		ns[p->n_sysctls++] = (struct plan_sysctl){ .key = v[0], .value = v[1] };
		return 0;
	}
	if (strcmp(key, "seccomp") == 0)
		return parse_seccomp(v, p, err, errlen);
	if (strcmp(key, "seccomp_arch") == 0) {
		if (!p->seccomp)
			return errf(err, errlen, "plan: seccomp_arch before seccomp");
		if (p->seccomp->n_arches >= PLAN_MAX_SECCOMP_ARCHES)
			return errf(err, errlen, "plan: more than %d seccomp_arch entries", PLAN_MAX_SECCOMP_ARCHES);
		if (!v[0][0] || strlen(v[0]) > 32)
			return errf(err, errlen, "plan: bad seccomp_arch \"%.32s\"", v[0]);
		p->seccomp->arches[p->seccomp->n_arches++] = v[0];
		return 0;
	}
	if (strcmp(key, "seccomp_syscall") == 0)
		return parse_seccomp_syscall(v, p, err, errlen);
	if (strcmp(key, "seccomp_arg") == 0)
		return parse_seccomp_arg(v, p, err, errlen);
	if (strcmp(key, "device") == 0)
		return parse_device(v, p, err, errlen);
	if (strcmp(key, "oom_score_adj") == 0)
		return parse_oom_score_adj(v[0], p, err, errlen);
	if (strcmp(key, "devcgroup") == 0)
		return parse_devcgroup(v[0], p, err, errlen);
	if (strcmp(key, "uid_map") == 0)
		return parse_idmap(key, v, p->uid_maps, &p->n_uid_maps, err, errlen);
	if (strcmp(key, "gid_map") == 0)
		return parse_idmap(key, v, p->gid_maps, &p->n_gid_maps, err, errlen);
	if (strcmp(key, "devcgroup_rule") == 0)
		return parse_devcgroup_rule(v, p, err, errlen);
	return 1;
}

/* Each key's number of values. PLAN_END_KEY (no values) ends a plan before EOF: the agent writes it so the helper
 * need not wait for the pipe to be closed, which the agent's event loop does only some ticks later (25 ms under TCG). */
#define PLAN_END_KEY "end"
static const struct {
	const char *key;
	int nvals;
} key_arities[] = {
	{ "mode", 1 }, { "join_pid", 1 }, { "namespaces", 1 }, { "rootfs", 1 }, { "readonly_root", 1 },
	{ "hostname", 1 }, { "mount", 5 }, { "cgroup", 1 }, { "rlimit", 3 }, { "uid", 1 },
	{ "gid", 1 }, { "groups", 1 }, { "cwd", 1 }, { "env", 1 }, { "arg", 1 },
	{ "console", 1 }, { "join_ns", 3 }, { "capabilities", 5 }, { "no_new_privs", 1 },
	{ "masked_path", 1 }, { "readonly_path", 1 }, { "sysctl", 2 }, { "seccomp", 2 },
	{ "seccomp_arch", 1 }, { "seccomp_syscall", 3 }, { "seccomp_arg", 4 }, { "exec_path", 1 },
	{ "device", 7 }, { "oom_score_adj", 1 }, { "devcgroup", 1 }, { "devcgroup_rule", 4 },
	{ "mount_propagation", 1 }, { "rootfs_propagation", 1 }, { "uid_map", 3 }, { "gid_map", 3 },
	{ PLAN_END_KEY, 0 },
};

/* The number of values `key` takes, or -1 for a key the plan does not have. */
static int key_arity(const char *key)
{
	for (size_t i = 0; i < sizeof(key_arities) / sizeof(key_arities[0]); i++)
		if (strcmp(key, key_arities[i].key) == 0)
			return key_arities[i].nvals;
	return -1;
}

/* Whether buf[0..len) holds a whole plan up to its end key: walked key by key with each key's arity, so a value that
 * reads "end" is not taken for the key. An unknown key or a partial string: not (yet) complete. */
static bool plan_ends(char *buf, size_t len)
{
	struct cursor c = { buf, buf + len };
	char *key;
	while ((key = next_str(&c)) != NULL) {
		if (strcmp(key, PLAN_END_KEY) == 0)
			return true;
		int nvals = key_arity(key);
		if (nvals < 0)
			return false;
		for (int i = 0; i < nvals; i++)
			if (!next_str(&c))
				return false;
	}
	return false;
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
		if (buf[len - 1] == '\0' && plan_ends(buf, len))
			break;
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
		if (strcmp(key, PLAN_END_KEY) == 0) {
			if (c.pos != c.end)
				return errf(err, errlen, "plan: data after its end");
			break;
		}
		int nvals = key_arity(key);
		if (nvals < 0)
			return errf(err, errlen, "plan: unknown key \"%.64s\"", key);
		char *v[7]; /* the largest arity above */
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
			if (parse_u64(v[3], ULONG_MAX, &n) || (n & (MS_SHARED | MS_SLAVE | MS_PRIVATE | MS_UNBINDABLE)))
				return errf(err, errlen, "plan: bad mount flags \"%.32s\" (propagation goes in mount_propagation)", v[3]);
			struct plan_mount *nm = realloc(p->mounts, (p->n_mounts + 1) * sizeof(*nm));
			if (!nm)
				return errf(err, errlen, "plan: out of memory");
			p->mounts = nm;
			nm[p->n_mounts++] = (struct plan_mount){
				.type = v[0], .source = v[1], .destination = v[2], .flags = (unsigned long)n,
				.data = v[4][0] ? v[4] : NULL, .n_propagation = 0,
			};
		} else if (strcmp(key, "mount_propagation") == 0) {
			if (p->n_mounts == 0)
				return errf(err, errlen, "plan: mount_propagation before any mount");
			struct plan_mount *m = &p->mounts[p->n_mounts - 1];
			if (m->n_propagation >= PLAN_MAX_MOUNT_PROPAGATION)
				return errf(err, errlen, "plan: more than %d mount_propagation entries for %.200s",
					    PLAN_MAX_MOUNT_PROPAGATION, m->destination);
			if (parse_propagation(v[0], &m->propagation[m->n_propagation]))
				return errf(err, errlen, "plan: bad mount_propagation \"%.32s\"", v[0]);
			m->n_propagation++;
		} else if (strcmp(key, "rootfs_propagation") == 0) {
			if (parse_propagation(v[0], &p->root_propagation))
				return errf(err, errlen, "plan: bad rootfs_propagation \"%.32s\"", v[0]);
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
		} else if (strcmp(key, "exec_path") == 0) {
			if (v[0][0] != '/')
				return errf(err, errlen, "plan: exec_path must be absolute");
			p->exec_path = v[0];
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
		} else if (parse_security_key(key, v, p, err, errlen) < 0) {
			return -1;
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
		if (p->devcg && !p->cgroup)
			return errf(err, errlen, "plan: devcgroup needs cgroup");
		bool userns = (p->ns_flags & CLONE_NEWUSER) != 0;
		if (userns != (p->n_uid_maps > 0) || userns != (p->n_gid_maps > 0))
			return errf(err, errlen, "plan: the user namespace needs uid_map and gid_map, and they need it");
		if (userns && (p->n_joins || p->n_devices))
			return errf(err, errlen, "plan: a user namespace takes no join_ns or device");
	} else {
		if (!p->join_pid)
			return errf(err, errlen, "plan: exec needs join_pid");
		if (p->ns_flags || p->n_joins || p->rootfs || p->n_mounts || p->root_propagation)
			return errf(err, errlen, "plan: exec takes no namespaces, join_ns, rootfs, mount or rootfs_propagation");
		if (p->n_masked_paths || p->n_readonly_paths || p->n_sysctls || p->n_devices || p->devcg || p->n_uid_maps ||
		    p->n_gid_maps)
			return errf(err, errlen, "plan: exec takes no masked_path, readonly_path, sysctl, device, devcgroup or id map");
	}
	return 0;
}
