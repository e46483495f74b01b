/*
 * sandbox.c — privilege drop and the seccomp allowlists of the two hull-vsock-backend processes (sandbox.h).
 *
 * The lists were taken from `strace -f -c` of the backend during test/integration/vsock-backend.test.ts and a
 * `hull run`, plus what glibc may call on its own (malloc: brk/mmap/mremap/madvise; abort: rt_sigprocmask/tgkill
 * on ourselves). Sanitizer builds (ASan/UBSan/LSan, used only by tests) also allow what their runtime needs to
 * print a report and to run the leak check at exit (read /proc/self/maps, clone a tracer thread that ptraces us).
 */
#include "sandbox.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "seccomp.h"

#if !defined(__x86_64__)
#error "sandbox.c: the allowlists name x86_64 system calls; review them (and strace the tests) for this architecture"
#endif

#if defined(__SANITIZE_ADDRESS__)
#define HV_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HV_SANITIZED 1
#endif
#endif

#define NOT_EXEC(nr, arg) SC_ALLOW_IF(nr, arg, PROT_EXEC, 0)

/* Memory management, time, exit and signal return: what any code of ours (or glibc's) may call. */
#define COMMON_RULES(self)                                                                                            \
    SC_ALLOW(SYS_read), SC_ALLOW(SYS_write), SC_ALLOW(SYS_writev), SC_ALLOW(SYS_close),                               \
    SC_ALLOW(SYS_brk), NOT_EXEC(SYS_mmap, 2), NOT_EXEC(SYS_mprotect, 2), SC_ALLOW(SYS_munmap),                        \
    SC_ALLOW(SYS_mremap), SC_ALLOW(SYS_madvise), SC_ALLOW(SYS_futex), SC_ALLOW(SYS_getrandom),                        \
    SC_ALLOW(SYS_clock_gettime), SC_ALLOW(SYS_gettimeofday), SC_ALLOW(SYS_newfstatat), SC_ALLOW(SYS_fstat),           \
    SC_ALLOW(SYS_getpid), SC_ALLOW(SYS_gettid), SC_ALLOW_IF(SYS_tgkill, 0, 0xffffffffu, (uint32_t)(self)),            \
    SC_ALLOW(SYS_rt_sigprocmask), SC_ALLOW(SYS_rt_sigreturn), SC_ALLOW(SYS_restart_syscall),                          \
    SC_ALLOW(SYS_exit), SC_ALLOW(SYS_exit_group)

#ifdef HV_SANITIZED
#define SANITIZER_RULES                                                                                               \
    SC_ALLOW(SYS_open), SC_ALLOW(SYS_openat), SC_ALLOW(SYS_readlink), SC_ALLOW(SYS_readlinkat),                       \
    SC_ALLOW(SYS_pread64), SC_ALLOW(SYS_lseek), SC_ALLOW(SYS_getdents), SC_ALLOW(SYS_getdents64),                     \
    SC_ALLOW(SYS_access), SC_ALLOW(SYS_clone), SC_ALLOW(SYS_wait4), SC_ALLOW(SYS_ptrace), SC_ALLOW(SYS_prctl),        \
    SC_ALLOW(SYS_sched_yield), SC_ALLOW(SYS_sigaltstack), SC_ALLOW(SYS_rt_sigaction), SC_ALLOW(SYS_getppid),          \
    SC_ALLOW(SYS_nanosleep), SC_ALLOW(SYS_clock_nanosleep), SC_ALLOW(SYS_prlimit64), SC_ALLOW(SYS_getrlimit),         \
    SC_ALLOW(SYS_set_robust_list), SC_ALLOW(SYS_uname), SC_ALLOW(SYS_tgkill), SC_ALLOW(SYS_kill)
#endif

int sandbox_install_filter(enum sandbox_role role)
{
    pid_t self = getpid();
    const struct sc_rule worker[] = {
        /* the event loop first (the filter is a linear scan): epoll, vhost-user messages with fds, hybrid sockets */
        SC_ALLOW(SYS_epoll_wait), SC_ALLOW(SYS_sendmsg), SC_ALLOW(SYS_readv), SC_ALLOW(SYS_epoll_ctl),
        SC_ALLOW(SYS_epoll_pwait), SC_ALLOW(SYS_recvfrom), SC_ALLOW(SYS_recvmsg), SC_ALLOW(SYS_sendto),
        SC_ALLOW(SYS_accept4), SC_ALLOW(SYS_shutdown),
        COMMON_RULES(self),
#ifdef HV_SANITIZED
        SANITIZER_RULES,
#endif
    };
    const struct sc_rule broker[] = {
        COMMON_RULES(self),
        /* supervise the worker, connect <uds>_<port> for it, remove the sockets at the end */
        SC_ALLOW(SYS_poll), SC_ALLOW(SYS_ppoll), SC_ALLOW(SYS_recvfrom), SC_ALLOW(SYS_recvmsg), SC_ALLOW(SYS_sendmsg),
        SC_ALLOW_IF(SYS_socket, 0, 0xffffffffu, AF_UNIX), SC_ALLOW(SYS_connect), SC_ALLOW(SYS_wait4),
        SC_ALLOW(SYS_shutdown), SC_ALLOW(SYS_unlink), SC_ALLOW(SYS_unlinkat),
#ifdef HV_SANITIZED
        SANITIZER_RULES,
#endif
    };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -1;
    if (role == SANDBOX_WORKER)
        return sc_install(worker, sizeof worker / sizeof worker[0]);
    return sc_install(broker, sizeof broker / sizeof broker[0]);
}

/* Bounding and ambient sets first: dropping from the bounding set needs CAP_SETPCAP, which goes next. */
static int drop_capabilities(void)
{
    for (int cap = 0; cap < 64; cap++) {
        if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1)
            continue; /* not in the set, or past the kernel's last capability */
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && !(errno == EPERM && geteuid() != 0))
            return -1; /* an unprivileged caller cannot shrink it, but has no capabilities to lose either */
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -1;
    return 0;
}

static int clear_cap_sets(void)
{
    struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = { { 0, 0, 0 } };
    return (int)syscall(SYS_capset, &hdr, data);
}

static int switch_to_worker_id(unsigned int id)
{
    gid_t gid = (gid_t)id;
    uid_t uid = (uid_t)id;
    if (id == 0) {
        errno = EINVAL;
        return -1;
    }
    if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
        return -1;
    /* a compromised worker must not regain root by any path */
    if (setresuid(0, 0, 0) == 0) {
        errno = EPERM;
        return -1;
    }
    return 0;
}

int sandbox_enter(enum sandbox_role role, unsigned int worker_id, const char **failed_step)
{
    *failed_step = "drop the bounding and ambient capability sets";
    if (drop_capabilities() < 0)
        return -1;
    if (role == SANDBOX_WORKER && geteuid() == 0) {
        *failed_step = "switch to the unprivileged worker uid/gid";
        if (switch_to_worker_id(worker_id) < 0)
            return -1;
    }
    *failed_step = "clear the effective, permitted and inheritable capabilities";
    if (clear_cap_sets() < 0)
        return -1;
#ifdef HV_SANITIZED
    /* the uid change made us non-dumpable; LeakSanitizer's tracer (another process sharing our memory) must be
     * able to ptrace us at exit. Release builds stay non-dumpable. */
    *failed_step = "make the sanitized worker traceable";
    if (role == SANDBOX_WORKER && prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
        return -1;
#endif
    *failed_step = "install the seccomp filter";
    return sandbox_install_filter(role);
}
