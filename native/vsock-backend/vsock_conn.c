/*
 * vsock_conn.c — one vsock stream connection between a guest port and a host Unix socket: the state machine,
 * credit flow control in both directions, half-close and orderly/abortive close.
 *
 * Credit (virtio spec): the sender may have at most peer_buf_alloc - (tx_cnt - peer_fwd_cnt) bytes in flight.
 *  - guest→host: we advertise HV_CONN_BUF_ALLOC; bytes the host socket does not take at once are buffered (g2h),
 *    so a guest that exceeds its credit is a protocol violation and gets an RST.
 *  - host→guest: we only read from the host socket as much as the guest has credit for and we can buffer (h2g);
 *    with no credit the socket is simply not polled for input.
 * Close: the guest's SHUTDOWN flags become shutdown(2) calls on the host socket; when both directions are done we
 * send SHUTDOWN(RCV|SEND) and wait HV_SHUTDOWN_TIMEOUT_MS for the guest's RST before sending our own. Any host
 * socket error is an abortive close: the socket is closed and the guest gets an RST.
 */
#include "vsock_device.h"

#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

uint32_t conn_peer_free(const struct conn *c)
{
    uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
    if (in_flight > c->peer_buf_alloc)
        return 0;
    return c->peer_buf_alloc - in_flight;
}

void conn_set_deadline(struct vsock_dev *dev, struct conn *c, uint64_t deadline_ms)
{
    if (c->deadline_ms && !deadline_ms)
        dev->ndeadline--;
    else if (!c->deadline_ms && deadline_ms)
        dev->ndeadline++;
    c->deadline_ms = deadline_ms;
}

static void close_host(struct vsock_dev *dev, struct conn *c)
{
    if (c->fd >= 0) {
        dev_epoll_set(dev, c->fd, c, 0, &c->ep_mask, &c->ep_registered);
        close(c->fd);
        c->fd = -1;
    }
}

void conn_abort(struct vsock_dev *dev, struct conn *c)
{
    close_host(dev, c);
    rb_clear(&c->h2g);
    rb_clear(&c->g2h);
    c->send_request = c->send_response = c->send_credit_update = c->send_credit_request = false;
    c->send_shutdown = 0;
    conn_set_deadline(dev, c, 0);
    c->state = CONN_RST_PENDING;
}

bool conn_has_rx_work(const struct conn *c)
{
    switch (c->state) {
    case CONN_AWAIT_LINE:
    case CONN_DEAD:
        return false;
    case CONN_RST_PENDING:
        return true;
    case CONN_LOCAL_INIT:
        return c->send_request;
    default:
        break;
    }
    if (c->send_response || c->send_credit_update || c->send_credit_request || c->send_shutdown)
        return true;
    return c->state == CONN_ESTABLISHED && c->h2g.len > 0 && conn_peer_free(c) > 0;
}

static void fill_hdr(const struct vsock_dev *dev, struct conn *c, struct vsock_hdr *h, uint16_t op)
{
    memset(h, 0, sizeof *h);
    h->src_cid = VSOCK_HOST_CID;
    h->dst_cid = dev->guest_cid;
    h->src_port = c->local_port;
    h->dst_port = c->peer_port;
    h->type = VSOCK_TYPE_STREAM;
    h->op = op;
    h->buf_alloc = HV_CONN_BUF_ALLOC;
    h->fwd_cnt = c->fwd_cnt;
}

uint32_t conn_fill_rx(struct vsock_dev *dev, struct conn *c, const struct vq_chain *ch, bool *destroy)
{
    struct vsock_hdr h;
    uint8_t raw[VSOCK_HDR_SIZE];
    uint32_t payload = 0;
    *destroy = false;

    if (c->state == CONN_RST_PENDING) {
        fill_hdr(dev, c, &h, VSOCK_OP_RST);
        *destroy = true;
    } else if (c->state == CONN_LOCAL_INIT && c->send_request) {
        fill_hdr(dev, c, &h, VSOCK_OP_REQUEST);
        c->send_request = false;
        c->guest_knows = true;
    } else if (c->state == CONN_LOCAL_INIT) {
        return 0;
    } else if (c->send_response) {
        fill_hdr(dev, c, &h, VSOCK_OP_RESPONSE);
        c->send_response = false;
    } else if (c->state == CONN_ESTABLISHED && c->h2g.len > 0 && conn_peer_free(c) > 0 &&
               ch->write_len == VSOCK_HDR_SIZE) {
        /* a buffer with no room for payload (only a hostile guest offers these): use it for a credit update so
         * the chain is consumed and we make progress */
        fill_hdr(dev, c, &h, VSOCK_OP_CREDIT_UPDATE);
    } else if (c->state == CONN_ESTABLISHED && c->h2g.len > 0 && conn_peer_free(c) > 0) {
        uint64_t room = ch->write_len - VSOCK_HDR_SIZE;
        uint32_t n = c->h2g.len;
        if (n > conn_peer_free(c))
            n = conn_peer_free(c);
        if (n > room)
            n = (uint32_t)room;
        if (n > VSOCK_MAX_PKT_PAYLOAD)
            n = VSOCK_MAX_PKT_PAYLOAD;
        if (n == 0)
            return 0;
        struct iovec sp[2];
        unsigned ns = rb_data_spans(&c->h2g, n, sp);
        size_t off = VSOCK_HDR_SIZE;
        for (unsigned i = 0; i < ns; i++) {
            iov_copy_to(ch->iov, ch->nwrite, off, sp[i].iov_base, sp[i].iov_len);
            off += sp[i].iov_len;
        }
        rb_consume(&c->h2g, n);
        c->tx_cnt += n;
        dev->stats.h2g_bytes += n;
        fill_hdr(dev, c, &h, VSOCK_OP_RW);
        h.len = n;
        payload = n;
    } else if (c->send_credit_update) {
        fill_hdr(dev, c, &h, VSOCK_OP_CREDIT_UPDATE);
    } else if (c->send_credit_request) {
        fill_hdr(dev, c, &h, VSOCK_OP_CREDIT_REQUEST);
        c->send_credit_request = false;
        c->credit_requested = true;
    } else if (c->send_shutdown) {
        fill_hdr(dev, c, &h, VSOCK_OP_SHUTDOWN);
        h.flags = c->send_shutdown;
        if (c->send_shutdown & VSOCK_SHUTDOWN_SEND)
            c->sent_shut_send = true;
        c->send_shutdown = 0;
    } else {
        return 0;
    }
    /* every packet carries our credit state */
    c->last_fwd_cnt_sent = c->fwd_cnt;
    c->send_credit_update = false;
    pkt_hdr_encode(&h, raw);
    iov_copy_to(ch->iov, ch->nwrite, 0, raw, VSOCK_HDR_SIZE);
    LOG_DBG("rx %s %u->%u len=%u fwd_cnt=%u", pkt_op_name(h.op), h.src_port, h.dst_port, h.len, h.fwd_cnt);
    return VSOCK_HDR_SIZE + payload;
}

/* Called after fwd_cnt moved: owe the guest a credit update once enough was freed. */
static void maybe_credit_update(struct conn *c)
{
    if (c->fwd_cnt - c->last_fwd_cnt_sent >= HV_CREDIT_UPDATE_THRESHOLD)
        c->send_credit_update = true;
}

void conn_on_guest_pkt(struct vsock_dev *dev, struct conn *c, const struct vsock_hdr *h, const struct vq_chain *ch)
{
    if (h->op == VSOCK_OP_RST) {
        /* refused (LOCAL_INIT), or the guest closed: either way the host side goes now, no reply */
        LOG_DBG("guest reset %u->%u", h->src_port, h->dst_port);
        dev_conn_destroy(dev, c);
        return;
    }
    switch (c->state) {
    case CONN_LOCAL_INIT:
        if (h->op != VSOCK_OP_RESPONSE) {
            hv_fail(HV_ERR_CONN_UNEXPECTED_OP, "%s while connecting to guest port %u", pkt_op_name(h->op),
                    c->peer_port);
            conn_abort(dev, c);
            break;
        }
        c->peer_buf_alloc = h->buf_alloc;
        c->peer_fwd_cnt = h->fwd_cnt;
        c->state = CONN_ESTABLISHED;
        conn_set_deadline(dev, c, 0);
        {
            char ok[24];
            int n = snprintf(ok, sizeof ok, "OK %u\n", c->local_port);
            c->g2h_uncounted += rb_append(&c->g2h, ok, (uint32_t)n);
        }
        if (!hybrid_flush_g2h(dev, c))
            break;
        break;
    case CONN_ESTABLISHED:
        c->peer_buf_alloc = h->buf_alloc;
        c->peer_fwd_cnt = h->fwd_cnt;
        c->credit_requested = false;
        switch (h->op) {
        case VSOCK_OP_RW:
            if (c->peer_shut_send) {
                hv_fail(HV_ERR_CONN_UNEXPECTED_OP, "RW after SHUTDOWN(SEND) on %u->%u", h->src_port, h->dst_port);
                conn_abort(dev, c);
                break;
            }
            if (h->len == 0)
                break;
            if (c->rx_cnt - c->fwd_cnt + h->len > HV_CONN_BUF_ALLOC) {
                hv_fail(HV_ERR_CONN_CREDIT_VIOLATION, "%u->%u: %u bytes with %u outstanding of %u", h->src_port,
                        h->dst_port, h->len, c->rx_cnt - c->fwd_cnt, HV_CONN_BUF_ALLOC);
                conn_abort(dev, c);
                break;
            }
            c->rx_cnt += h->len;
            dev->stats.g2h_bytes += h->len;
            if (c->fd < 0 || c->host_wr_shut) {
                c->fwd_cnt += h->len; /* nobody to deliver to: discard, keep credit flowing */
                maybe_credit_update(c);
                break;
            }
            hybrid_write_g2h(dev, c, ch, VSOCK_HDR_SIZE, h->len);
            break;
        case VSOCK_OP_SHUTDOWN:
            if (h->flags & VSOCK_SHUTDOWN_RCV) {
                c->peer_shut_rcv = true;
                rb_clear(&c->h2g);
                if (c->fd >= 0)
                    shutdown(c->fd, SHUT_RD);
            }
            if (h->flags & VSOCK_SHUTDOWN_SEND)
                c->peer_shut_send = true;
            break;
        case VSOCK_OP_CREDIT_UPDATE:
            break;
        case VSOCK_OP_CREDIT_REQUEST:
            c->send_credit_update = true;
            break;
        default: /* REQUEST is handled by the device; RESPONSE here is a protocol error */
            hv_fail(HV_ERR_CONN_UNEXPECTED_OP, "%s on established %u->%u", pkt_op_name(h->op), h->src_port,
                    h->dst_port);
            conn_abort(dev, c);
            break;
        }
        break;
    case CONN_CLOSING:
        /* host side is closed; swallow late data, keep credit sane */
        if (h->op == VSOCK_OP_RW && h->len) {
            c->rx_cnt += h->len;
            c->fwd_cnt += h->len;
        }
        if (h->op == VSOCK_OP_CREDIT_REQUEST)
            c->send_credit_update = true;
        break;
    case CONN_RST_PENDING:
    case CONN_AWAIT_LINE:
    case CONN_DEAD:
        break;
    }
    conn_update(dev, c);
}

uint32_t conn_read_budget(const struct conn *c)
{
    if (c->state != CONN_ESTABLISHED || c->fd < 0 || c->host_eof || c->peer_shut_rcv)
        return 0;
    uint32_t credit = conn_peer_free(c);
    if (credit <= c->h2g.len)
        return 0;
    uint32_t n = credit - c->h2g.len;
    if (n > rb_room(&c->h2g))
        n = rb_room(&c->h2g);
    return n;
}

bool conn_update(struct vsock_dev *dev, struct conn *c)
{
    if (c->state == CONN_DEAD)
        return false;
    if (c->state == CONN_RST_PENDING && !c->guest_knows) {
        /* the guest never heard of it (e.g. not booted yet): nothing to reset */
        dev_conn_destroy(dev, c);
        return false;
    }
    if (c->state == CONN_ESTABLISHED) {
        /* guest finished sending and everything reached the host: pass the EOF on */
        if (c->peer_shut_send && c->g2h.len == 0 && c->fd >= 0 && !c->host_wr_shut) {
            shutdown(c->fd, SHUT_WR);
            c->host_wr_shut = true;
        }
        /* host finished sending and the guest has everything: tell the guest */
        if ((c->host_eof || c->fd < 0) && c->h2g.len == 0 && !c->sent_shut_send && !c->peer_shut_rcv &&
            !(c->send_shutdown & VSOCK_SHUTDOWN_SEND))
            c->send_shutdown |= VSOCK_SHUTDOWN_SEND;
        if (c->peer_shut_send && c->peer_shut_rcv && c->g2h.len == 0) {
            /* guest closed its socket: it waits for our RST */
            close_host(dev, c);
            c->state = CONN_RST_PENDING;
            c->send_shutdown = 0;
        } else if (c->peer_shut_send && c->g2h.len == 0 && (c->host_eof || c->fd < 0) && c->h2g.len == 0 &&
                   (c->sent_shut_send || c->peer_shut_rcv) && !c->send_shutdown) {
            /* both directions done: orderly close */
            close_host(dev, c);
            c->state = CONN_CLOSING;
            c->send_shutdown = VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND;
            conn_set_deadline(dev, c, hv_now_ms() + HV_SHUTDOWN_TIMEOUT_MS);
        }
        /* out of guest credit with data waiting: ask once */
        if (c->h2g.len > 0 && conn_peer_free(c) == 0 && !c->credit_requested)
            c->send_credit_request = true;
    }

    dev_pend_set(dev, c, conn_has_rx_work(c));

    uint32_t want = 0;
    if (c->fd >= 0) {
        if (c->state == CONN_AWAIT_LINE)
            want = EPOLLIN;
        else if (c->state == CONN_ESTABLISHED) {
            if (conn_read_budget(c) > 0 && !c->budget_wait)
                want |= EPOLLIN;
            if (c->g2h.len > 0)
                want |= EPOLLOUT;
        }
        dev_epoll_set(dev, c->fd, c, want, &c->ep_mask, &c->ep_registered);
    }
    return true;
}
