/*
 * vsock_device.c — the virtio-vsock device model: drains the tx queue (guest→host packets) and dispatches each
 * packet to its connection, fills the rx queue (host→guest packets) from the connections that owe the guest
 * something, answers stray packets with RST, and owns the connection table and timers.
 *
 * Deadlock rule (virtio spec): tx is always drained, even when rx is full. Everything a tx packet can cause us to
 * owe the guest is either a per-connection flag (bounded by the connection count) or an entry in a bounded RST
 * queue (dropped with CONN_RST_QUEUE_FULL when full), so tx processing never waits for rx buffers.
 */
#include "vsock_device.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

uint64_t hv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void dev_init(struct vsock_dev *dev, uint64_t guest_cid, const char *uds_path, int epfd)
{
    memset(dev, 0, sizeof *dev);
    dev->guest_cid = guest_cid;
    snprintf(dev->uds_path, sizeof dev->uds_path, "%s", uds_path ? uds_path : "");
    dev->epfd = epfd;
    dev->broker_fd = -1;
    gm_init(&dev->mem);
    for (int i = 0; i < HV_NUM_QUEUES; i++) {
        vq_init(&dev->vqs[i], &dev->mem);
        dev->kick_tags[i].kind = EV_KICK;
        dev->kick_tags[i].index = i;
    }
    dev->next_local_port = HV_LOCAL_PORT_BASE;
}

void dev_destroy_all_conns(struct vsock_dev *dev)
{
    while (dev->all)
        dev_conn_destroy(dev, dev->all);
    dev->rstq_len = dev->rstq_head = 0;
}

void dev_fini(struct vsock_dev *dev)
{
    dev_destroy_all_conns(dev);
    dev_reap(dev);
    for (int i = 0; i < HV_NUM_QUEUES; i++) {
        struct vq *vq = &dev->vqs[i];
        if (vq->kick_fd >= 0)
            close(vq->kick_fd);
        if (vq->call_fd >= 0)
            close(vq->call_fd);
        if (vq->err_fd >= 0)
            close(vq->err_fd);
        vq->kick_fd = vq->call_fd = vq->err_fd = -1;
    }
    gm_clear(&dev->mem);
}

/* ---- epoll ---- */

void dev_epoll_set(struct vsock_dev *dev, int fd, void *tag, uint32_t want, uint32_t *cur, bool *registered)
{
    if (dev->epfd < 0 || fd < 0) {
        *cur = want;
        return;
    }
    struct epoll_event ev = { .events = want, .data.ptr = tag };
    if (want == 0) {
        if (*registered)
            epoll_ctl(dev->epfd, EPOLL_CTL_DEL, fd, NULL);
        *registered = false;
    } else if (!*registered) {
        if (epoll_ctl(dev->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
            *registered = true;
        else
            LOG_ERR("epoll add fd %d: %s", fd, strerror(errno));
    } else if (want != *cur) {
        epoll_ctl(dev->epfd, EPOLL_CTL_MOD, fd, &ev);
    }
    *cur = want;
}

/* ---- connection table ---- */

static unsigned conn_hash(uint32_t local_port, uint32_t peer_port)
{
    uint32_t h = local_port * 0x9E3779B1u ^ (peer_port + 0x7F4A7C15u) * 0x85EBCA77u;
    return (h ^ (h >> 15)) % HV_CONN_HASH;
}

struct conn *dev_conn_find(struct vsock_dev *dev, uint32_t local_port, uint32_t peer_port)
{
    for (struct conn *c = dev->hash[conn_hash(local_port, peer_port)]; c; c = c->hnext)
        if (c->local_port == local_port && c->peer_port == peer_port && c->state != CONN_AWAIT_LINE)
            return c;
    return NULL;
}

struct conn *dev_conn_new(struct vsock_dev *dev, int fd, enum conn_state st)
{
    if (dev->nconns >= HV_MAX_CONNS) {
        hv_fail(HV_ERR_CONN_LIMIT, "%u connections open", dev->nconns);
        return NULL;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->tag.kind = EV_CONN;
    c->fd = fd;
    c->state = st;
    rb_init(&c->h2g, HV_H2G_BUF_MAX);
    rb_init(&c->g2h, HV_G2H_BUF_MAX);
    c->anext = dev->all;
    if (dev->all)
        dev->all->aprev = c;
    dev->all = c;
    dev->nconns++;
    dev->stats.conns_opened++;
    return c;
}

void dev_conn_bind(struct vsock_dev *dev, struct conn *c, uint32_t local_port, uint32_t peer_port)
{
    c->local_port = local_port;
    c->peer_port = peer_port;
    unsigned h = conn_hash(local_port, peer_port);
    c->hnext = dev->hash[h];
    dev->hash[h] = c;
}

static void hash_remove(struct vsock_dev *dev, struct conn *c)
{
    struct conn **pp = &dev->hash[conn_hash(c->local_port, c->peer_port)];
    for (; *pp; pp = &(*pp)->hnext)
        if (*pp == c) {
            *pp = c->hnext;
            return;
        }
}

static void pend_remove(struct vsock_dev *dev, struct conn *c)
{
    if (!c->pending)
        return;
    if (c->pprev)
        c->pprev->pnext = c->pnext;
    else
        dev->pend_head = c->pnext;
    if (c->pnext)
        c->pnext->pprev = c->pprev;
    else
        dev->pend_tail = c->pprev;
    c->pprev = c->pnext = NULL;
    c->pending = false;
}

static void pend_append(struct vsock_dev *dev, struct conn *c)
{
    if (c->pending)
        return;
    c->pnext = NULL;
    c->pprev = dev->pend_tail;
    if (dev->pend_tail)
        dev->pend_tail->pnext = c;
    else
        dev->pend_head = c;
    dev->pend_tail = c;
    c->pending = true;
}

void dev_pend_set(struct vsock_dev *dev, struct conn *c, bool want)
{
    if (want)
        pend_append(dev, c);
    else
        pend_remove(dev, c);
}

void dev_conn_destroy(struct vsock_dev *dev, struct conn *c)
{
    if (c->state == CONN_DEAD)
        return;
    LOG_DBG("conn %u<->%u destroyed", c->local_port, c->peer_port);
    if (c->fd >= 0) {
        dev_epoll_set(dev, c->fd, c, 0, &c->ep_mask, &c->ep_registered);
        close(c->fd);
        c->fd = -1;
    }
    hash_remove(dev, c);
    pend_remove(dev, c);
    if (c->deadline_ms)
        dev->ndeadline--;
    if (c->aprev)
        c->aprev->anext = c->anext;
    else
        dev->all = c->anext;
    if (c->anext)
        c->anext->aprev = c->aprev;
    rb_free(&c->h2g);
    rb_free(&c->g2h);
    dev->nconns--;
    dev->stats.conns_closed++;
    c->state = CONN_DEAD;
    c->anext = dev->zombies;
    c->aprev = NULL;
    dev->zombies = c;
}

void dev_reap(struct vsock_dev *dev)
{
    while (dev->zombies) {
        struct conn *c = dev->zombies;
        dev->zombies = c->anext;
        free(c);
    }
}

uint32_t dev_alloc_local_port(struct vsock_dev *dev, uint32_t peer_port)
{
    for (;;) {
        uint32_t p = dev->next_local_port++;
        if (dev->next_local_port == 0 || dev->next_local_port < HV_LOCAL_PORT_BASE)
            dev->next_local_port = HV_LOCAL_PORT_BASE;
        if (!dev_conn_find(dev, p, peer_port))
            return p;
    }
}

void dev_queue_rst(struct vsock_dev *dev, uint32_t local_port, uint32_t peer_port)
{
    if (dev->rstq_len >= HV_RSTQ_LEN) {
        hv_fail(HV_ERR_CONN_RST_QUEUE_FULL, "RST to guest port %u dropped", peer_port);
        return;
    }
    unsigned i = (dev->rstq_head + dev->rstq_len) % HV_RSTQ_LEN;
    dev->rstq[i].local_port = local_port;
    dev->rstq[i].peer_port = peer_port;
    dev->rstq_len++;
}

/* ---- tx: guest → host ---- */

static void handle_request(struct vsock_dev *dev, const struct vsock_hdr *h)
{
    struct conn *old = dev_conn_find(dev, h->dst_port, h->src_port);
    if (old) {
        /* the guest reused the port pair: its old socket is gone */
        LOG_INFO("guest re-requested %u->%u; dropping the old connection", h->src_port, h->dst_port);
        dev_conn_destroy(dev, old);
    }
    if (dev->nconns >= HV_MAX_CONNS) {
        hv_fail(HV_ERR_CONN_LIMIT, "guest request to port %u refused", h->dst_port);
        dev_queue_rst(dev, h->dst_port, h->src_port);
        return;
    }
    int fd = hybrid_connect_guest_port(dev, h->dst_port);
    if (fd < 0) {
        dev_queue_rst(dev, h->dst_port, h->src_port);
        return;
    }
    struct conn *c = dev_conn_new(dev, fd, CONN_ESTABLISHED);
    if (!c) {
        close(fd);
        dev_queue_rst(dev, h->dst_port, h->src_port);
        return;
    }
    dev_conn_bind(dev, c, h->dst_port, h->src_port);
    c->guest_knows = true;
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    c->send_response = true;
    LOG_DBG("guest port %u connected to host port %u", h->src_port, h->dst_port);
    conn_update(dev, c);
}

void dev_handle_tx_chain(struct vsock_dev *dev, const struct vq_chain *ch)
{
    struct vsock_hdr h;
    enum hv_err err;
    enum pkt_verdict v = pkt_parse_tx(ch, dev->guest_cid, &h, &err);
    dev->stats.tx_pkts++;
    if (v == PKT_DROP)
        return;
    if (v == PKT_RST) {
        /* malformed but answerable; also kill the connection it names, if any */
        struct conn *c = dev_conn_find(dev, h.dst_port, h.src_port);
        if (c)
            dev_conn_destroy(dev, c);
        dev_queue_rst(dev, h.dst_port, h.src_port);
        return;
    }
    LOG_DBG("tx %s %u->%u len=%u flags=%u buf_alloc=%u fwd_cnt=%u", pkt_op_name(h.op), h.src_port, h.dst_port, h.len,
            h.flags, h.buf_alloc, h.fwd_cnt);
    if (h.op == VSOCK_OP_REQUEST) {
        handle_request(dev, &h);
        return;
    }
    struct conn *c = dev_conn_find(dev, h.dst_port, h.src_port);
    if (!c) {
        if (h.op != VSOCK_OP_RST)
            dev_queue_rst(dev, h.dst_port, h.src_port);
        return;
    }
    conn_on_guest_pkt(dev, c, &h, ch);
}

void dev_process_tx(struct vsock_dev *dev)
{
    struct vq *vq = &dev->vqs[HV_TXQ];
    dev->tx_more = false;
    for (unsigned n = 0;; n++) {
        if (n >= HV_TX_BATCH) {
            dev->tx_more = true;
            break;
        }
        enum vq_next r = vq_next_chain(vq, &dev->chain);
        if (r == VQ_NEXT_STOP)
            break;
        if (r == VQ_NEXT_RETRY)
            continue;
        dev_handle_tx_chain(dev, &dev->chain);
        vq_push(vq, dev->chain.head, 0);
    }
}

/* ---- rx: host → guest ---- */

static uint32_t fill_rst(struct vsock_dev *dev, const struct vq_chain *ch, uint32_t local_port, uint32_t peer_port)
{
    struct vsock_hdr h = {
        .src_cid = VSOCK_HOST_CID,
        .dst_cid = dev->guest_cid,
        .src_port = local_port,
        .dst_port = peer_port,
        .type = VSOCK_TYPE_STREAM,
        .op = VSOCK_OP_RST,
    };
    uint8_t raw[VSOCK_HDR_SIZE];
    pkt_hdr_encode(&h, raw);
    iov_copy_to(ch->iov, ch->nwrite, 0, raw, VSOCK_HDR_SIZE);
    return VSOCK_HDR_SIZE;
}

void dev_process_rx(struct vsock_dev *dev)
{
    struct vq *vq = &dev->vqs[HV_RXQ];
    struct vq_chain *ch = &dev->chain;
    unsigned idle = 0; /* consecutive connections that had nothing to put in a buffer after all */
    while ((dev->rstq_len || dev->pend_head) && idle <= dev->nconns) {
        enum vq_next r = vq_next_chain(vq, ch);
        if (r == VQ_NEXT_STOP)
            break;
        if (r == VQ_NEXT_RETRY)
            continue;
        if (ch->nread) {
            hv_fail(HV_ERR_PKT_RX_HAS_READABLE, "rx chain %u has device-readable descriptors", ch->head);
            vq_push(vq, ch->head, 0);
            continue;
        }
        if (ch->write_len < VSOCK_HDR_SIZE) {
            hv_fail(HV_ERR_PKT_RX_TOO_SMALL, "rx chain %u holds %llu bytes", ch->head,
                    (unsigned long long)ch->write_len);
            vq_push(vq, ch->head, 0);
            continue;
        }
        if (dev->rstq_len) {
            idle = 0;
            unsigned i = dev->rstq_head;
            uint32_t len = fill_rst(dev, ch, dev->rstq[i].local_port, dev->rstq[i].peer_port);
            dev->rstq_head = (dev->rstq_head + 1) % HV_RSTQ_LEN;
            dev->rstq_len--;
            vq_push(vq, ch->head, len);
            dev->stats.rx_pkts++;
            continue;
        }
        struct conn *c = dev->pend_head;
        pend_remove(dev, c);
        bool destroy = false;
        uint32_t len = conn_fill_rx(dev, c, ch, &destroy);
        if (len == 0) {
            vq_unpop(vq);
            idle++;
        } else {
            vq_push(vq, ch->head, len);
            dev->stats.rx_pkts++;
            idle = 0;
        }
        if (destroy)
            dev_conn_destroy(dev, c);
        else
            conn_update(dev, c); /* re-queues at the tail if it owes more: round robin */
    }
}

void dev_signal(struct vsock_dev *dev)
{
    for (int i = 0; i < HV_NUM_QUEUES; i++)
        vq_signal(&dev->vqs[i]);
}

void dev_timers(struct vsock_dev *dev, uint64_t now)
{
    if (!dev->ndeadline)
        return;
    struct conn *next;
    for (struct conn *c = dev->all; c; c = next) {
        next = c->anext;
        if (!c->deadline_ms || c->deadline_ms > now)
            continue;
        conn_set_deadline(dev, c, 0);
        switch (c->state) {
        case CONN_AWAIT_LINE:
            LOG_INFO("hybrid client sent no CONNECT line in time");
            dev_conn_destroy(dev, c);
            break;
        case CONN_LOCAL_INIT:
            LOG_INFO("guest did not answer connection request to port %u in time", c->peer_port);
            conn_abort(dev, c);
            conn_update(dev, c);
            break;
        case CONN_CLOSING:
            conn_abort(dev, c);
            conn_update(dev, c);
            break;
        default:
            break;
        }
    }
}
