/*
 * main.c — hull-vmm-launcher: confines one VMM and execs it (so the VMM keeps this pid).
 *
 *   hull-vmm-launcher --uid N --gid N --jail DIR [options] -- VMM [ARG...]
 *
 * Run as root by hull (hypervisor/vmm-launcher.ts builds the command line). The steps, in this order, each one a
 * single place that can fail (one line on stderr naming it, exit status 1; a bad command line: exit status 2):
 *   1. every inherited descriptor above stderr is marked close-on-exec: the VMM gets only what step 7 places
 *   2. in the caller's namespaces, as root: listening and connected Unix sockets, files to pass (handles.c)
 *   3. taps, opened in --tap-netns (or created in the next namespace), and the VMM's own empty network namespace
 *   4. new mount, IPC and UTS namespaces; the new root on a tmpfs, pivoted into, read-only (jail.c)
 *   5. resource limits (creds.c)
 *   6. no capabilities in any set, the VMM's uid and gid, no supplementary groups, no_new_privs (creds.c)
 *   7. the passed descriptors at the numbers the VMM's command line names (handles.c)
 *   8. execve of the VMM with the --env variables as its whole environment
 * The VMM's own seccomp filter (QEMU's -sandbox) is installed by the VMM.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/close_range.h>
#include <sys/syscall.h>

#include "launcher.h"

_Noreturn void fail(const char *step, const char *arg)
{
    int err = errno;
    fprintf(stderr, LAUNCHER_NAME ": cannot %s%s%s: %s\n", step, arg ? " " : "", arg ? arg : "", strerror(err));
    exit(1);
}

_Noreturn void failx(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs(LAUNCHER_NAME ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

int main(int argc, char **argv)
{
    static struct launch l;
    parse_args(argc, argv, &l);
    setvbuf(stderr, NULL, _IOLBF, 0);
    if (geteuid() != 0)
        failx("must be started as root (it hands the VMM an unprivileged uid)");

    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        fail("mark inherited descriptors close-on-exec", NULL);
    open_host_handles(&l);
    open_taps_and_netns(&l);
    enter_jail(&l);
    apply_rlimits(&l);
    drop_privileges(&l);
    place_passed_fds(&l);
    execve(l.vmm_argv[0], l.vmm_argv, l.env);
    fail("exec", l.vmm_argv[0]);
}
