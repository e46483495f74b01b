/*
 * hybrid.c — the host side of hybrid vsock (Firecracker-compatible), on plain Unix stream sockets.
 *
 *  - Host-initiated: a client connects to --uds-path and writes "CONNECT <port>\n" (keyword case-insensitive,
 *    decimal u32 port, line ≤ 32 bytes). We send REQUEST to the guest; on RESPONSE the client gets "OK <n>\n"
 *    (n = our host-side port, allocated from 2^30 up) and the socket becomes the byte stream. On RST or no answer
 *    within 2 s the client is closed.
 *  - Guest-initiated: a REQUEST to host port P is relayed by connecting to "<uds-path>_P" (through the broker,
 *    broker.h, when sandboxed); if nothing listens there, the guest gets an RST.
 * Also the socket I/O of established connections: guest→host writes (buffered when the socket is full) and
 * host→guest reads limited by the guest's credit.
 */
#include "vsock_device.h"

#include "broker.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int hybrid_listen(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 128) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int hybrid_parse_connect(const char *line, size_t len, uint32_t *port)
{
    static const char kw[] = "connect";
    size_t i = 0;
    if (len > HV_CONNECT_LINE_MAX)
        return -1;
    /* strip the newline and an optional CR */
    if (len && line[len - 1] == '\n')
        len--;
    if (len && line[len - 1] == '\r')
        len--;
    for (; i < sizeof kw - 1; i++) {
        if (i >= len)
            return -1;
        char ch = line[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if (ch != kw[i])
            return -1;
    }
    if (i >= len || line[i] != ' ')
        return -1;
    while (i < len && line[i] == ' ')
        i++;
    uint64_t v = 0;
    size_t digits = 0;
    for (; i < len && line[i] >= '0' && line[i] <= '9'; i++, digits++) {
        v = v * 10 + (uint64_t)(line[i] - '0');
        if (v > UINT32_MAX)
            return -1;
    }
    if (digits == 0)
        return -1;
    while (i < len && line[i] == ' ')
        i++;
    if (i != len)
        return -1;
    *port = (uint32_t)v;
    return 0;
}

void hybrid_accept(struct vsock_dev *dev, int listen_fd)
{
    for (int k = 0; k < 64; k++) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                LOG_ERR("accept on hybrid socket: %s", strerror(errno));
            return;
        }
        struct conn *c = dev_conn_new(dev, fd, CONN_AWAIT_LINE);
        if (!c) {
            close(fd);
            continue;
        }
        conn_set_deadline(dev, c, hv_now_ms() + HV_CONNECT_LINE_TIMEOUT_MS);
        conn_update(dev, c);
    }
}

/* Read the CONNECT line without consuming anything after its newline. */
static void read_connect_line(struct vsock_dev *dev, struct conn *c)
{
    char buf[HV_CONNECT_LINE_MAX + 1];
    size_t want = HV_CONNECT_LINE_MAX - c->line_len;
    ssize_t n = recv(c->fd, buf, want, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        dev_conn_destroy(dev, c);
        return;
    }
    char *nl = memchr(buf, '\n', (size_t)n);
    size_t take = nl ? (size_t)(nl - buf) + 1 : (size_t)n;
    ssize_t got = recv(c->fd, c->line + c->line_len, take, 0);
    if (got != (ssize_t)take) {
        dev_conn_destroy(dev, c);
        return;
    }
    c->line_len += (unsigned)take;
    if (!nl) {
        if (c->line_len >= HV_CONNECT_LINE_MAX) {
            LOG_INFO("hybrid client: CONNECT line too long");
            dev_conn_destroy(dev, c);
        }
        return;
    }
    uint32_t port;
    if (hybrid_parse_connect(c->line, c->line_len, &port) < 0) {
        c->line[c->line_len - 1] = 0;
        LOG_INFO("hybrid client: invalid request line");
        dev_conn_destroy(dev, c);
        return;
    }
    dev_conn_bind(dev, c, dev_alloc_local_port(dev, port), port);
    c->state = CONN_LOCAL_INIT;
    c->send_request = true;
    conn_set_deadline(dev, c, hv_now_ms() + HV_CONN_REQUEST_TIMEOUT_MS);
    LOG_DBG("hybrid client connecting to guest port %u as host port %u", port, c->local_port);
    conn_update(dev, c);
}

int hybrid_connect_guest_port(const struct vsock_dev *dev, uint32_t port)
{
    if (dev->broker_fd >= 0)
        return broker_connect(dev->broker_fd, port); /* the sandboxed worker may not connect(2) itself */
    return hybrid_connect_path(dev->uds_path, port);
}

static void account_written(struct conn *c, size_t n)
{
    uint32_t ours = c->g2h_uncounted < n ? c->g2h_uncounted : (uint32_t)n;
    c->g2h_uncounted -= ours;
    c->fwd_cnt += (uint32_t)n - ours;
    if (c->fwd_cnt - c->last_fwd_cnt_sent >= HV_CREDIT_UPDATE_THRESHOLD)
        c->send_credit_update = true;
}

/* Non-blocking sendmsg, retried on EINTR: bytes sent, or -errno (-EAGAIN when the socket is full). */
static ssize_t send_nb(int fd, struct iovec *iov, unsigned n)
{
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = n };
    for (;;) {
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w >= 0)
            return w;
        if (errno != EINTR)
            return -errno;
    }
}

static bool write_failed(struct vsock_dev *dev, struct conn *c, int err)
{
    LOG_DBG("host socket of %u<->%u: write failed: %s", c->local_port, c->peer_port, strerror(err));
    conn_abort(dev, c);
    return false;
}

bool hybrid_write_g2h(struct vsock_dev *dev, struct conn *c, const struct vq_chain *ch, size_t off, size_t len)
{
    struct iovec iov[64];
    size_t done = 0;
    if (c->g2h.len == 0) {
        /* fast path: straight from guest memory to the socket */
        while (done < len) {
            unsigned n = iov_slice(ch->iov, ch->nread, off + done, len - done, iov, 64);
            if (n == 0)
                break;
            ssize_t w = send_nb(c->fd, iov, n);
            if (w == -EAGAIN)
                break;
            if (w < 0)
                return write_failed(dev, c, (int)-w);
            done += (size_t)w;
            account_written(c, (size_t)w);
        }
    }
    while (done < len) {
        unsigned n = iov_slice(ch->iov, ch->nread, off + done, len - done, iov, 64);
        size_t sliced = 0;
        for (unsigned i = 0; i < n; i++)
            sliced += iov[i].iov_len;
        uint32_t got = n ? rb_append_iov(&c->g2h, iov, n, sliced) : 0;
        if (got != sliced || sliced == 0) {
            hv_fail(HV_ERR_CONN_BUFFER_LIMIT, "cannot buffer %zu guest bytes for %u<->%u", len - done,
                    c->local_port, c->peer_port);
            conn_abort(dev, c);
            return false;
        }
        done += sliced;
    }
    return true;
}

bool hybrid_flush_g2h(struct vsock_dev *dev, struct conn *c)
{
    while (c->g2h.len > 0 && c->fd >= 0) {
        struct iovec sp[2];
        unsigned ns = rb_data_spans(&c->g2h, c->g2h.len, sp);
        ssize_t w = send_nb(c->fd, sp, ns);
        if (w == -EAGAIN)
            break;
        if (w < 0)
            return write_failed(dev, c, (int)-w);
        rb_consume(&c->g2h, (uint32_t)w);
        account_written(c, (size_t)w);
    }
    if (c->g2h.len == 0)
        rb_clear(&c->g2h);
    return true;
}

bool hybrid_read_h2g(struct vsock_dev *dev, struct conn *c)
{
    uint32_t budget = conn_read_budget(c);
    if (budget == 0)
        return true;
    uint32_t got = rb_reserve(&c->h2g, budget);
    if (got == 0) {
        c->budget_wait = true;
        dev->budget_blocked = true;
        return true;
    }
    struct iovec sp[2];
    unsigned ns = rb_free_spans(&c->h2g, got, sp);
    ssize_t n = readv(c->fd, sp, (int)ns);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return true;
        LOG_DBG("host socket of %u<->%u: read failed: %s", c->local_port, c->peer_port, strerror(errno));
        conn_abort(dev, c);
        return false;
    }
    if (n == 0) {
        c->host_eof = true;
        return true;
    }
    rb_commit(&c->h2g, (uint32_t)n);
    return true;
}

void hybrid_on_event(struct vsock_dev *dev, struct conn *c, uint32_t events)
{
    if (c->state == CONN_DEAD)
        return;
    if (c->state == CONN_AWAIT_LINE) {
        read_connect_line(dev, c);
        return;
    }
    if (c->state != CONN_ESTABLISHED || c->fd < 0)
        return;
    if (events & EPOLLOUT) {
        if (!hybrid_flush_g2h(dev, c)) {
            conn_update(dev, c);
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (conn_read_budget(c) > 0)
            hybrid_read_h2g(dev, c);
        else if (events & EPOLLERR)
            conn_abort(dev, c);
    }
    conn_update(dev, c);
}
