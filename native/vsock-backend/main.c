/*
 * main.c — hull-vsock-backend: command line, the two listening sockets and the single-threaded epoll loop.
 *
 *   hull-vsock-backend --socket <vhost-user socket> --uds-path <hybrid socket> --guest-cid <n> [--log-level 0..3]
 *                      [--worker-id <uid>]
 *
 * --worker-id: the uid and gid the worker runs as when started as root (hull passes the sandbox's VMM uid); default
 * 65534.
 *
 * Listens on --socket for one QEMU connection (vhost-user-vsock-device) and on --uds-path for hybrid vsock
 * clients; prints READY on stdout once both listen. Exits 0 when QEMU disconnects or on SIGTERM/SIGINT, 1 on a
 * fatal error, 2 on bad arguments. Removes both sockets on exit.
 *
 * Once both sockets listen, the process forks (broker.h): the child, the worker, drops every privilege and runs
 * the loop below under a seccomp allowlist (sandbox.h); the parent, the broker, stays to connect "<uds>_<port>"
 * for it and to remove the sockets when it exits.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "broker.h"
#include "sandbox.h"
#include "vhost_user.h"
#include "vsock_device.h"

#define USAGE                                                                                                         \
    "hull-vsock-backend --socket <vhost-user socket> --uds-path <hybrid socket> --guest-cid <n> [--log-level 0..3] "  \
    "[--worker-id <uid>]"

static void usage_error(const char *why)
{
    fprintf(stderr, "hull-vsock-backend: %s; usage: %s\n", why, USAGE);
    exit(2);
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

struct args {
    const char *socket_path;
    const char *uds_path;
    uint64_t guest_cid;
    int log_level;
    unsigned int worker_id;
};

static void parse_args(int argc, char **argv, struct args *a)
{
    bool have_cid = false;
    a->log_level = HV_LOG_WARN;
    a->worker_id = HV_WORKER_ID_DEFAULT;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            printf("usage: %s\n", USAGE);
            exit(0);
        }
        const char *names[] = { "--socket", "--uds-path", "--guest-cid", "--log-level", "--worker-id" };
        int which = -1;
        const char *val = NULL;
        for (int k = 0; k < 5; k++) {
            size_t l = strlen(names[k]);
            if (!strncmp(arg, names[k], l) && (arg[l] == 0 || arg[l] == '=')) {
                which = k;
                if (arg[l] == '=')
                    val = arg + l + 1;
                else if (i + 1 < argc)
                    val = argv[++i];
                else
                    usage_error("missing value for an option");
                break;
            }
        }
        if (which < 0)
            usage_error("unknown argument");
        uint64_t v;
        switch (which) {
        case 0: a->socket_path = val; break;
        case 1: a->uds_path = val; break;
        case 2:
            if (parse_u64(val, &v) < 0)
                usage_error("--guest-cid must be a decimal number");
            if (v <= 2 || v == 0xffffffffull || v == UINT64_MAX)
                usage_error("--guest-cid must not be a reserved CID (0, 1, 2, 0xffffffff)");
            a->guest_cid = v;
            have_cid = true;
            break;
        case 3:
            if (parse_u64(val, &v) < 0 || v > 3)
                usage_error("--log-level must be 0..3");
            a->log_level = (int)v;
            break;
        case 4:
            /* never root, never (uid_t)-1 ("unchanged" to set*id) */
            if (parse_u64(val, &v) < 0 || v == 0 || v > 4294967294ull)
                usage_error("--worker-id must be in 1..4294967294");
            a->worker_id = (unsigned int)v;
            break;
        }
    }
    if (!a->socket_path || !*a->socket_path)
        usage_error("--socket is required");
    if (!a->uds_path || !*a->uds_path)
        usage_error("--uds-path is required");
    if (!have_cid)
        usage_error("--guest-cid is required");
    struct sockaddr_un sa;
    if (strlen(a->socket_path) >= sizeof sa.sun_path)
        usage_error("--socket path too long");
    if (strlen(a->uds_path) + 11 >= sizeof sa.sun_path)
        usage_error("--uds-path too long (it needs room for _<port>)");
}

static struct ev_tag tag_vu_listen = { EV_VU_LISTEN, 0 }, tag_vu_conn = { EV_VU_CONN, 0 },
                     tag_hybrid = { EV_HYBRID_LISTEN, 0 }, tag_signal = { EV_SIGNAL, 0 },
                     tag_broker = { EV_BROKER, 0 };

static int ep_add(int epfd, int fd, void *tag)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = tag };
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int main(int argc, char **argv)
{
    struct args a = { 0 };
    parse_args(argc, argv, &a);
    hv_log_level = a.log_level;
    setvbuf(stderr, NULL, _IOLBF, 0);

    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD); /* the broker learns of the worker's exit through its signalfd */
    sigprocmask(SIG_BLOCK, &set, NULL);

    int vu_listen = hybrid_listen(a.socket_path);
    if (vu_listen < 0) {
        LOG_ERR("cannot listen on %s: %s", a.socket_path, strerror(errno));
        return 1;
    }
    int hy_listen = hybrid_listen(a.uds_path);
    if (hy_listen < 0) {
        LOG_ERR("cannot listen on %s: %s", a.uds_path, strerror(errno));
        close(vu_listen);
        unlink(a.socket_path);
        return 1;
    }

    int broker_chan;
    const int listeners[] = { vu_listen, hy_listen };
    if (broker_fork(a.socket_path, a.uds_path, listeners, 2, &broker_chan) < 0) {
        LOG_ERR("fork: %s", strerror(errno));
        unlink(a.socket_path);
        unlink(a.uds_path);
        return 1;
    }
    /* from here on: the worker. Exiting is enough; the broker removes the sockets. */
    sigdelset(&set, SIGCHLD);
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (sfd < 0 || epfd < 0) {
        LOG_ERR("signalfd/epoll: %s", strerror(errno));
        return 1;
    }
    const char *step;
    if (sandbox_enter(SANDBOX_WORKER, a.worker_id, &step) < 0) {
        LOG_ERR("cannot %s: %s", step, strerror(errno));
        return 1;
    }
#ifdef HV_TEST_HOOKS
    /* test builds only: prove that a syscall outside the allowlist kills the worker (and how the broker reports it) */
    if (getenv("HV_TEST_FORBIDDEN_SYSCALL"))
        syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
#endif

    static struct vsock_dev dev;
    dev_init(&dev, a.guest_cid, a.uds_path, epfd);
    dev.broker_fd = broker_chan;

    ep_add(epfd, sfd, &tag_signal);
    ep_add(epfd, vu_listen, &tag_vu_listen);
    ep_add(epfd, hy_listen, &tag_hybrid);
    ep_add(epfd, broker_chan, &tag_broker);

    fputs("READY\n", stdout);
    fflush(stdout);
    LOG_INFO("listening: vhost-user %s, hybrid %s, guest cid %llu", a.socket_path, a.uds_path,
             (unsigned long long)a.guest_cid);

    int vu_sock = -1;
    int exit_code = 0;
    bool running = true;
    uint64_t last_timer = hv_now_ms();
    while (running) {
        int timeout = -1;
        if (dev.tx_more)
            timeout = 0;
        else if (dev.ndeadline || dev.budget_blocked)
            timeout = 100;
        struct epoll_event evs[64];
        int n = epoll_wait(epfd, evs, 64, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            LOG_ERR("epoll_wait: %s", strerror(errno));
            exit_code = 1;
            break;
        }
        bool kick_tx = dev.tx_more;
        for (int i = 0; i < n && running; i++) {
            struct ev_tag *t = evs[i].data.ptr;
            switch (t->kind) {
            case EV_SIGNAL: {
                struct signalfd_siginfo si;
                if (read(sfd, &si, sizeof si) > 0)
                    LOG_INFO("signal %u: exiting", si.ssi_signo);
                running = false;
                break;
            }
            case EV_BROKER:
                /* the only thing the broker sends unasked is EOF: SIGTERM/SIGINT reached it, or it is gone */
                LOG_INFO("broker closed the channel: exiting");
                running = false;
                break;
            case EV_VU_LISTEN: {
                int fd = accept4(vu_listen, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                    break;
                if (vu_sock >= 0) {
                    LOG_WARN("second vhost-user connection refused");
                    close(fd);
                    break;
                }
                vu_sock = fd;
                ep_add(epfd, vu_sock, &tag_vu_conn);
                epoll_ctl(epfd, EPOLL_CTL_DEL, vu_listen, NULL);
                LOG_INFO("front end connected");
                break;
            }
            case EV_VU_CONN:
                if (vu_serve_one(&dev, vu_sock) < 0) {
                    LOG_INFO("front end disconnected");
                    running = false;
                }
                /* a message may have reset the device: do not trust the rest of this batch */
                i = n;
                break;
            case EV_HYBRID_LISTEN:
                hybrid_accept(&dev, hy_listen);
                break;
            case EV_KICK: {
                uint64_t v;
                struct vq *vq = &dev.vqs[t->index];
                if (vq->kick_fd >= 0 && read(vq->kick_fd, &v, sizeof v) < 0 && errno != EAGAIN)
                    LOG_WARN("kick fd %d: %s", t->index, strerror(errno));
                if (t->index == HV_TXQ)
                    kick_tx = true;
                /* rx kicks need nothing more: rx is filled on every iteration below */
                break;
            }
            case EV_CONN:
                hybrid_on_event(&dev, (struct conn *)t, evs[i].events);
                break;
            }
        }
        if (!running)
            break;
        if (kick_tx)
            dev_process_tx(&dev);
        uint64_t now = hv_now_ms();
        if (now - last_timer >= 100) {
            last_timer = now;
            dev_timers(&dev, now);
            if (dev.budget_blocked && rb_total_bytes < rb_total_limit / 2) {
                dev.budget_blocked = false;
                struct conn *next;
                for (struct conn *c = dev.all; c; c = next) {
                    next = c->anext;
                    if (c->budget_wait) {
                        c->budget_wait = false;
                        conn_update(&dev, c);
                    }
                }
            }
        }
        dev_process_rx(&dev);
        dev_signal(&dev);
        dev_reap(&dev);
    }

    LOG_INFO("stats: tx_pkts=%llu rx_pkts=%llu g2h=%llu h2g=%llu conns=%llu", (unsigned long long)dev.stats.tx_pkts,
             (unsigned long long)dev.stats.rx_pkts, (unsigned long long)dev.stats.g2h_bytes,
             (unsigned long long)dev.stats.h2g_bytes, (unsigned long long)dev.stats.conns_opened);
    dev_fini(&dev);
    if (vu_sock >= 0)
        close(vu_sock);
    close(vu_listen);
    close(hy_listen);
    return exit_code;
}
