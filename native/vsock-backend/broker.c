/*
 * broker.c — the broker process and the worker's side of its channel (broker.h).
 *
 * The broker treats the worker as hostile: a request is exactly 4 bytes, anything else is answered with EINVAL;
 * replies are sent without blocking (a worker that stops reading cannot stall the broker); the only path it
 * connects to is "<uds-path>_<port>" for a u32 port, exactly what the worker could reach before the split.
 */
#include "broker.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "sandbox.h"

int hybrid_connect_path(const char *uds_path, uint32_t port)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int n = snprintf(sa.sun_path, sizeof sa.sun_path, "%s_%u", uds_path, port);
    if (n < 0 || (size_t)n >= sizeof sa.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        LOG_DBG("guest connection to %s refused: %s", sa.sun_path, strerror(e));
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void reply(int chan, int32_t err, int fd)
{
    char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
    struct iovec iov = { .iov_base = &err, .iov_len = sizeof err };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (fd >= 0) {
        mh.msg_control = cbuf;
        mh.msg_controllen = sizeof cbuf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    }
    if (sendmsg(chan, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        LOG_WARN("broker: cannot answer the worker: %s", strerror(errno));
}

/* One request; false once the worker's end is closed. */
static bool serve_request(int chan, const char *uds_path)
{
    uint32_t req[2];
    ssize_t n = recv(chan, req, sizeof req, MSG_DONTWAIT);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR;
    if (n == 0)
        return false;
    if (n != sizeof(uint32_t)) {
        reply(chan, EINVAL, -1);
        return true;
    }
    int fd = hybrid_connect_path(uds_path, req[0]);
    reply(chan, fd < 0 ? errno : 0, fd);
    if (fd >= 0)
        close(fd);
    return true;
}

static int exit_code_of(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    int sig = WTERMSIG(status);
    LOG_ERR("worker killed by signal %d (%s)%s", sig, strsignal(sig),
            sig == SIGSYS ? ": it made a system call outside its seccomp allowlist" : "");
    return 1;
}

/* The worker runs under another uid, so the broker (without CAP_KILL) cannot signal it: closing the channel is
 * how it asks the worker to exit (the worker watches it in its epoll set). */
static void stop_worker(int chan)
{
    if (chan >= 0)
        shutdown(chan, SHUT_RDWR);
}

static _Noreturn void run_broker(pid_t worker, int chan, const char *socket_path, const char *uds_path)
{
    /* SIGTERM/SIGINT/SIGCHLD are blocked (broker_fork's contract): they arrive only through the signalfd */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    const char *step = "create a signalfd";
    int status = 0;
    bool failed = false;
    if (sfd < 0 || sandbox_enter(SANDBOX_BROKER, 0, &step) < 0) {
        LOG_ERR("broker: cannot %s: %s", step, strerror(errno));
        failed = true;
        stop_worker(chan);
        waitpid(worker, &status, 0);
        goto done;
    }
    for (;;) {
        struct pollfd pf[2] = { { .fd = sfd, .events = POLLIN }, { .fd = chan, .events = POLLIN } };
        if (poll(pf, chan >= 0 ? 2 : 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            LOG_ERR("broker: poll: %s", strerror(errno));
            failed = true;
            stop_worker(chan);
            waitpid(worker, &status, 0);
            break;
        }
        if (pf[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) == sizeof si && si.ssi_signo != SIGCHLD) {
                LOG_INFO("signal %u: stopping the worker", si.ssi_signo);
                stop_worker(chan);
            }
            if (waitpid(worker, &status, WNOHANG) == worker)
                break;
        }
        if (chan >= 0 && (pf[1].revents & (POLLIN | POLLHUP | POLLERR)) && !serve_request(chan, uds_path)) {
            close(chan);
            chan = -1; /* the worker is exiting: SIGCHLD follows */
        }
    }
done:
    unlink(socket_path);
    unlink(uds_path);
    int code = exit_code_of(status);
    exit(failed ? 1 : code);
}

int broker_fork(const char *socket_path, const char *uds_path, const int *worker_fds, unsigned nfds, int *chan)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        errno = e;
        return -1;
    }
    if (pid > 0) {
        close(sv[1]);
        for (unsigned i = 0; i < nfds; i++)
            close(worker_fds[i]);
        run_broker(pid, sv[0], socket_path, uds_path);
    }
    close(sv[0]);
    *chan = sv[1];
    return 0;
}

int broker_connect(int chan, uint32_t port)
{
    if (send(chan, &port, sizeof port, MSG_NOSIGNAL) != sizeof port)
        return -1;
    int32_t err = 0;
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = { .iov_base = &err, .iov_len = sizeof err };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
    ssize_t n;
    do
        n = recvmsg(chan, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    int fd = -1;
    struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
    if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS && cm->cmsg_len == CMSG_LEN(sizeof(int)))
        memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    if (n != sizeof err || err != 0 || fd < 0 || (mh.msg_flags & MSG_CTRUNC)) {
        if (fd >= 0)
            close(fd);
        errno = n != sizeof err ? EPIPE : err != 0 ? err : EPROTO;
        return -1;
    }
    return fd;
}
