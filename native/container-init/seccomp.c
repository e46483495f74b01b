/* linux.seccomp: builds the filter from the plan with libseccomp (linked statically) and loads it. */
#include "security.h"
#include "util.h"

#include <errno.h>
#include <seccomp.h>
#include <string.h>

static uint32_t action_of(enum plan_seccomp_action a, unsigned errno_ret)
{
	switch (a) {
	case SECCOMP_ALLOW:
		return SCMP_ACT_ALLOW;
	case SECCOMP_ERRNO:
		return SCMP_ACT_ERRNO(errno_ret);
	case SECCOMP_KILL_THREAD:
		return SCMP_ACT_KILL_THREAD;
	case SECCOMP_KILL_PROCESS:
		return SCMP_ACT_KILL_PROCESS;
	case SECCOMP_TRAP:
		return SCMP_ACT_TRAP;
	case SECCOMP_LOG:
		return SCMP_ACT_LOG;
	case SECCOMP_TRACE:
		return SCMP_ACT_TRACE(errno_ret);
	}
	return SCMP_ACT_KILL_PROCESS; /* unreachable: plan.c only produces the values above */
}

static struct scmp_arg_cmp condition_of(const struct plan_seccomp_arg *a)
{
	static const enum scmp_compare ops[] = {
		[SECCOMP_OP_NE] = SCMP_CMP_NE, [SECCOMP_OP_LT] = SCMP_CMP_LT, [SECCOMP_OP_LE] = SCMP_CMP_LE,
		[SECCOMP_OP_EQ] = SCMP_CMP_EQ, [SECCOMP_OP_GE] = SCMP_CMP_GE, [SECCOMP_OP_GT] = SCMP_CMP_GT,
		[SECCOMP_OP_MASKED_EQ] = SCMP_CMP_MASKED_EQ,
	};
	return (struct scmp_arg_cmp){ .arg = a->index, .op = ops[a->op], .datum_a = a->value, .datum_b = a->value_two };
}

/* libseccomp returns -errno. */
static _Noreturn void fail_scmp(const char *step, const char *arg, int rc)
{
	errno = -rc;
	fail_arg(step, arg);
}

static void add_rule(scmp_filter_ctx ctx, const struct plan_seccomp_rule *r, uint32_t action, int nr)
{
	struct scmp_arg_cmp conds[PLAN_MAX_SYSCALL_ARGS];
	bool repeated_index = false;
	for (size_t i = 0; i < r->n_args; i++) {
		conds[i] = condition_of(&r->args[i]);
		for (size_t j = 0; j < i; j++)
			repeated_index |= r->args[j].index == r->args[i].index;
	}
	int rc;
	if (!repeated_index) {
		/* All conditions must hold (AND). */
		rc = seccomp_rule_add_array(ctx, action, nr, (unsigned)r->n_args, conds);
		if (rc < 0)
			fail_scmp("seccomp rule", r->syscall, rc);
		return;
	}
	/* libseccomp cannot AND two conditions on one argument: as runc, each becomes a rule of its own (OR). */
	for (size_t i = 0; i < r->n_args; i++) {
		rc = seccomp_rule_add_array(ctx, action, nr, 1, &conds[i]);
		if (rc < 0)
			fail_scmp("seccomp rule", r->syscall, rc);
	}
}

/* Built before "ready" so a filter libseccomp refuses fails the create, not the start; loaded later. */
static scmp_filter_ctx g_filter;

static scmp_filter_ctx build_filter(const struct plan_seccomp *sc)
{
	uint32_t default_action = action_of(sc->default_action, sc->default_errno);
	scmp_filter_ctx ctx = seccomp_init(default_action);
	if (!ctx)
		failx("seccomp: cannot create the filter");
	/* no_new_privs is the plan's decision, not libseccomp's (it would set it by default). */
	int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	if (rc < 0)
		fail_scmp("seccomp", "attribute nnp", rc);
	for (size_t i = 0; i < sc->n_arches; i++) {
		uint32_t arch = seccomp_arch_resolve_name(sc->arches[i]);
		if (arch == 0)
			failx("seccomp: unknown architecture %s", sc->arches[i]);
		rc = seccomp_arch_add(ctx, arch);
		if (rc < 0 && rc != -EEXIST)
			fail_scmp("seccomp architecture", sc->arches[i], rc);
	}
	for (size_t i = 0; i < sc->n_rules; i++) {
		const struct plan_seccomp_rule *r = &sc->rules[i];
		uint32_t action = action_of(r->action, r->errno_ret);
		/* libseccomp refuses a rule with the default action; it would change nothing anyway. */
		if (action == default_action)
			continue;
		int nr = seccomp_syscall_resolve_name(r->syscall);
		if (nr == __NR_SCMP_ERROR)
			continue; /* unknown to this libseccomp: skipped, as runc does */
		add_rule(ctx, r, action, nr);
	}
	return ctx;
}

void prepare_seccomp(const struct plan *p)
{
	if (p->seccomp)
		g_filter = build_filter(p->seccomp);
}

void apply_seccomp(const struct plan *p)
{
	(void)p;
	if (!g_filter)
		return;
	int rc = seccomp_load(g_filter);
	if (rc < 0)
		fail_scmp("seccomp", "load", rc);
	seccomp_release(g_filter);
	g_filter = NULL;
}
