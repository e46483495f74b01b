/*
 * args.c — the command line of hull-vmm-launcher (see main.c for the contract). Every value is checked here, before
 * anything is done: a bad argument is one usage line on stderr and exit status 2.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <net/if.h>

#include "launcher.h"

#define USAGE                                                                                                         \
    LAUNCHER_NAME " --uid N --gid N --jail DIR [--ro PATH] [--ro-exec PATH] [--symlink PATH=TARGET] [--copy PATH] "   \
                  "[--dev PATH] [--tap-netns PATH] [--tap NAME=FD] [--listen PATH=FD] [--connect PATH=FD] "          \
                  "[--open PATH=FD] [--rlimit NAME=N] [--env NAME=VALUE] -- VMM [ARG...]"

static _Noreturn void usage_error(const char *why, const char *arg)
{
    fprintf(stderr, LAUNCHER_NAME ": %s%s%s; usage: " USAGE "\n", why, arg ? ": " : "", arg ? arg : "");
    exit(2);
}

static int parse_ull(const char *s, unsigned long long max, unsigned long long *out)
{
    if (!s || !*s)
        return -1;
    unsigned long long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned long long d = (unsigned long long)(*p - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Absolute, and no empty, "." or ".." component: the path means the same in the new root as on the host. */
static int clean_absolute(const char *p)
{
    if (p[0] != '/' || p[1] == 0 || strlen(p) >= 4096)
        return 0;
    for (const char *c = p + 1;;) {
        const char *end = strchr(c, '/');
        size_t n = end ? (size_t)(end - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return 0;
        if (!end)
            return 1;
        c = end + 1;
    }
}

static const char *path_arg(const char *v)
{
    if (!clean_absolute(v))
        usage_error("not a clean absolute path", v);
    return v;
}

/* "WHAT=FD": splits at the last '=' (paths may hold '='); FD within the passed range. */
static void passed_arg(const char *v, struct passed_fd *p)
{
    const char *eq = strrchr(v, '=');
    unsigned long long fd;
    if (!eq || eq == v || parse_ull(eq + 1, LAST_PASSED_FD, &fd) < 0 || fd < FIRST_PASSED_FD)
        usage_error("expected NAME=FD with FD in 3..99", v);
    p->what = strndup(v, (size_t)(eq - v));
    if (!p->what)
        usage_error("out of memory", NULL);
    p->target = (int)fd;
    p->fd = -1;
}

static void socket_path_check(const struct passed_fd *p)
{
    struct sockaddr_un sa;
    if (!clean_absolute(p->what) || strlen(p->what) >= sizeof sa.sun_path)
        usage_error("socket path not absolute or too long", p->what);
}

static const struct {
    const char *name;
    int resource;
} RLIMITS[] = {
    { "NOFILE", RLIMIT_NOFILE }, { "NPROC", RLIMIT_NPROC },     { "CORE", RLIMIT_CORE },
    { "MEMLOCK", RLIMIT_MEMLOCK }, { "FSIZE", RLIMIT_FSIZE },   { "MSGQUEUE", RLIMIT_MSGQUEUE },
    { "LOCKS", RLIMIT_LOCKS },   { "SIGPENDING", RLIMIT_SIGPENDING }, { "RTPRIO", RLIMIT_RTPRIO },
};

static void rlimit_arg(const char *v, struct rlimit_req *r)
{
    const char *eq = strchr(v, '=');
    if (!eq)
        usage_error("expected NAME=N", v);
    for (size_t i = 0; i < sizeof RLIMITS / sizeof RLIMITS[0]; i++) {
        if (strlen(RLIMITS[i].name) == (size_t)(eq - v) && !strncmp(v, RLIMITS[i].name, (size_t)(eq - v))) {
            if (parse_ull(eq + 1, ~0ULL, &r->value) < 0)
                usage_error("rlimit value is not a decimal number", v);
            r->resource = RLIMITS[i].resource;
            r->name = RLIMITS[i].name;
            return;
        }
    }
    usage_error("unknown rlimit (NOFILE NPROC CORE MEMLOCK FSIZE MSGQUEUE LOCKS SIGPENDING RTPRIO)", v);
}

static unsigned int id_arg(const char *v)
{
    unsigned long long id;
    /* never 0 (root) and never (uid_t)-1 (means "unchanged" to set*id) */
    if (parse_ull(v, 4294967294ULL, &id) < 0 || id == 0)
        usage_error("--uid and --gid must be in 1..4294967294", v);
    return (unsigned int)id;
}

#define PUSH(arr, n, item)                                                                                            \
    do {                                                                                                              \
        if ((n) >= MAX_ITEMS)                                                                                         \
            usage_error("too many values for an option", opt);                                                        \
        (arr)[(n)++] = (item);                                                                                        \
    } while (0)

static void check_fds_unique(const struct launch *l)
{
    const struct passed_fd *lists[] = { l->taps, l->listens, l->connects, l->opens };
    const size_t counts[] = { l->n_taps, l->n_listens, l->n_connects, l->n_opens };
    bool used[LAST_PASSED_FD + 1] = { false };
    for (size_t k = 0; k < 4; k++) {
        for (size_t i = 0; i < counts[k]; i++) {
            if (used[lists[k][i].target])
                usage_error("two descriptors for one fd number", lists[k][i].what);
            used[lists[k][i].target] = true;
        }
    }
}

void parse_args(int argc, char **argv, struct launch *l)
{
    int i = 1;
    for (; i < argc; i++) {
        const char *opt = argv[i];
        if (!strcmp(opt, "--"))
            break;
        if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
            printf("usage: %s\n", USAGE);
            exit(0);
        }
        if (strncmp(opt, "--", 2) != 0)
            usage_error("expected an option or --", opt);
        if (i + 1 >= argc)
            usage_error("missing value for", opt);
        const char *v = argv[++i];
        if (!strcmp(opt, "--uid")) {
            l->uid = id_arg(v);
            l->have_uid = true;
        } else if (!strcmp(opt, "--gid")) {
            l->gid = id_arg(v);
            l->have_gid = true;
        } else if (!strcmp(opt, "--jail")) {
            l->jail = path_arg(v);
        } else if (!strcmp(opt, "--ro")) {
            PUSH(l->ro, l->n_ro, path_arg(v));
        } else if (!strcmp(opt, "--ro-exec")) {
            PUSH(l->ro_exec, l->n_ro_exec, path_arg(v));
        } else if (!strcmp(opt, "--symlink")) {
            const char *eq = strchr(v, '=');
            if (!eq || !eq[1] || strchr(eq + 1, '='))
                usage_error("expected PATH=TARGET", v);
            struct symlink_req s = { .path = strndup(v, (size_t)(eq - v)), .target = eq + 1 };
            if (!s.path || !clean_absolute(s.path))
                usage_error("symlink path not a clean absolute path", v);
            PUSH(l->symlinks, l->n_symlinks, s);
        } else if (!strcmp(opt, "--copy")) {
            PUSH(l->copies, l->n_copies, path_arg(v));
        } else if (!strcmp(opt, "--dev")) {
            if (strncmp(v, "/dev/", 5) != 0 || !clean_absolute(v))
                usage_error("--dev takes a path under /dev", v);
            PUSH(l->devices, l->n_devices, v);
        } else if (!strcmp(opt, "--tap-netns")) {
            l->tap_netns = path_arg(v);
        } else if (!strcmp(opt, "--tap")) {
            struct passed_fd p;
            passed_arg(v, &p);
            if (!*p.what || strlen(p.what) >= IFNAMSIZ || strchr(p.what, '/') || strchr(p.what, ' '))
                usage_error("bad tap name", p.what);
            PUSH(l->taps, l->n_taps, p);
        } else if (!strcmp(opt, "--listen") || !strcmp(opt, "--connect")) {
            struct passed_fd p;
            passed_arg(v, &p);
            socket_path_check(&p);
            if (opt[2] == 'l')
                PUSH(l->listens, l->n_listens, p);
            else
                PUSH(l->connects, l->n_connects, p);
        } else if (!strcmp(opt, "--open")) {
            struct passed_fd p;
            passed_arg(v, &p);
            if (!clean_absolute(p.what))
                usage_error("not a clean absolute path", p.what);
            PUSH(l->opens, l->n_opens, p);
        } else if (!strcmp(opt, "--env")) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v)
                usage_error("expected NAME=VALUE", v);
            PUSH(l->env, l->n_env, (char *)v);
        } else if (!strcmp(opt, "--rlimit")) {
            struct rlimit_req r;
            rlimit_arg(v, &r);
            PUSH(l->rlimits, l->n_rlimits, r);
        } else {
            usage_error("unknown option", opt);
        }
    }
    if (i >= argc - 1)
        usage_error("no VMM command after --", NULL);
    if (!l->have_uid || !l->have_gid)
        usage_error("--uid and --gid are required", NULL);
    if (!l->jail)
        usage_error("--jail is required", NULL);
    if (!clean_absolute(argv[i + 1]))
        usage_error("the VMM must be given by a clean absolute path", argv[i + 1]);
    check_fds_unique(l);
    l->vmm_argv = argv + i + 1;
}
