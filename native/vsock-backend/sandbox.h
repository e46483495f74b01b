/*
 * sandbox.h — what hull-vsock-backend gives up once its sockets exist (see README.md, "Privileges").
 *
 * Both processes drop every capability (bounding, ambient, effective, permitted, inheritable) and set
 * no_new_privs, then install a seccomp allowlist that kills the process on any other syscall:
 *  - the worker (parses guest memory) also switches to uid/gid `worker_id` when started as root (hull passes the
 *    sandbox's own VMM uid, --worker-id; default HV_WORKER_ID_DEFAULT), and may only
 *    run its event loop: epoll, socket I/O on fds it already has or accepts, mmap of the memory fds QEMU sends;
 *    no open, no connect, no unlink, no socket creation;
 *  - the broker (the parent: connects <uds>_<port> for the worker, cleans up) stays uid 0 without capabilities
 *    and may only do that.
 */
#ifndef HV_SANDBOX_H
#define HV_SANDBOX_H

/* nobody/nogroup on Debian and most distributions: the worker's uid/gid without --worker-id */
#define HV_WORKER_ID_DEFAULT 65534

enum sandbox_role { SANDBOX_WORKER, SANDBOX_BROKER };

/* Returns 0, or -1 with errno set and *failed_step naming what could not be done. */
/* `worker_id` (uid and gid; never 0) is used by SANDBOX_WORKER only. */
int sandbox_enter(enum sandbox_role role, unsigned int worker_id, const char **failed_step);

/* Install the seccomp filter of `role` only (no_new_privs included), e.g. for tests. */
int sandbox_install_filter(enum sandbox_role role);

#endif
