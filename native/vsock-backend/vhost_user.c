/*
 * vhost_user.c — vhost-user back end: feature negotiation, memory table, vring setup and lifecycle, config space
 * (the guest CID), device reset. QEMU is the only peer, but its messages are still checked (sizes, indices, fds)
 * because they carry guest-influenced values and a mistake here would map or touch the wrong memory.
 *
 * Ring lifecycle: a ring is usable when it has num + addresses (mapped through the memory table), a kick fd
 * (started), and is enabled (SET_VRING_ENABLE, or implicitly when PROTOCOL_FEATURES was not negotiated).
 * GET_VRING_BASE stops it and returns the next avail index. If a later SET_VRING_BASE does not resume from that
 * index, the guest driver was reset (reboot): every connection is dropped.
 */
#include "vhost_user.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

const char *vu_request_name(uint32_t req)
{
    switch (req) {
#define N(x) case VU_##x: return #x;
        N(GET_FEATURES) N(SET_FEATURES) N(SET_OWNER) N(RESET_OWNER) N(SET_MEM_TABLE) N(SET_LOG_BASE) N(SET_LOG_FD)
        N(SET_VRING_NUM) N(SET_VRING_ADDR) N(SET_VRING_BASE) N(GET_VRING_BASE) N(SET_VRING_KICK) N(SET_VRING_CALL)
        N(SET_VRING_ERR) N(GET_PROTOCOL_FEATURES) N(SET_PROTOCOL_FEATURES) N(GET_QUEUE_NUM) N(SET_VRING_ENABLE)
        N(SEND_RARP) N(NET_SET_MTU) N(SET_BACKEND_REQ_FD) N(GET_CONFIG) N(SET_CONFIG) N(RESET_DEVICE)
        N(GET_MAX_MEM_SLOTS)
#undef N
    default:
        return "UNKNOWN";
    }
}

static void set_kick_fd(struct vsock_dev *dev, unsigned i, int fd)
{
    struct vq *vq = &dev->vqs[i];
    if (vq->kick_fd >= 0) {
        dev_epoll_set(dev, vq->kick_fd, &dev->kick_tags[i], 0, &dev->kick_mask[i], &dev->kick_reg[i]);
        close(vq->kick_fd);
    }
    dev->kick_reg[i] = false;
    dev->kick_mask[i] = 0;
    vq->kick_fd = fd;
    if (fd >= 0)
        dev_epoll_set(dev, fd, &dev->kick_tags[i], EPOLLIN, &dev->kick_mask[i], &dev->kick_reg[i]);
}

static void replace_fd(int *slot, int fd)
{
    if (*slot >= 0)
        close(*slot);
    *slot = fd;
}

void vu_reset_device(struct vsock_dev *dev)
{
    dev_destroy_all_conns(dev);
    for (unsigned i = 0; i < HV_NUM_QUEUES; i++) {
        struct vq *vq = &dev->vqs[i];
        set_kick_fd(dev, i, -1);
        replace_fd(&vq->call_fd, -1);
        replace_fd(&vq->err_fd, -1);
        vq_reset(vq);
        dev->stopped_valid[i] = false;
    }
    dev->features = 0;
}

static bool protocol_features_negotiated(const struct vsock_dev *dev)
{
    return dev->features & (1ull << VHOST_USER_F_PROTOCOL_FEATURES);
}

static void set_u64_reply(struct vu_reply *r, uint64_t v)
{
    r->hdr.size = 8;
    memcpy(r->payload, &v, 8);
}

static int take_fd(int *fds, unsigned nfds)
{
    if (nfds < 1)
        return -1;
    int fd = fds[0];
    fds[0] = -1;
    return fd;
}

/* returns 0 on success, or the named error */
static enum hv_err handle_mem_table(struct vsock_dev *dev, const uint8_t *p, uint32_t size, int *fds, unsigned nfds)
{
    uint32_t nregions;
    if (size < 8)
        return hv_fail(HV_ERR_VU_BAD_SIZE, "SET_MEM_TABLE size %u", size);
    memcpy(&nregions, p, 4);
    if (nregions == 0 || nregions > GM_MAX_REGIONS || size != 8 + 32u * nregions)
        return hv_fail(HV_ERR_VU_BAD_MEM_TABLE, "SET_MEM_TABLE nregions %u size %u", nregions, size);
    if (nfds != nregions)
        return hv_fail(HV_ERR_VU_MISSING_FD, "SET_MEM_TABLE has %u regions but %u fds", nregions, nfds);
    struct gm_region_desc regions[GM_MAX_REGIONS];
    memcpy(regions, p + 8, 32u * nregions);
    enum hv_err e = gm_set_table(&dev->mem, regions, fds, nregions);
    /* the mappings stay valid after the fds are closed (by the caller) */
    for (unsigned i = 0; i < HV_NUM_QUEUES; i++)
        if (vq_map(&dev->vqs[i]))
            dev->vqs[i].desc = NULL;
    return e ? hv_fail(HV_ERR_VU_BAD_MEM_TABLE, "memory table rejected") : HV_OK;
}

enum vu_result vu_handle(struct vsock_dev *dev, const struct vu_hdr *hdr, const uint8_t *p, int *fds, unsigned nfds,
                         struct vu_reply *reply)
{
    uint32_t req = hdr->request, size = hdr->size;
    bool has_reply = false;
    enum hv_err err = HV_OK;
    uint64_t u64 = 0;
    struct { uint32_t index, num; } state = { 0, 0 };

    memset(&reply->hdr, 0, sizeof reply->hdr);
    reply->hdr.request = req;
    reply->hdr.flags = VU_FLAG_VERSION | VU_FLAG_REPLY;

    if (size > VU_MAX_PAYLOAD)
        return VU_FATAL;
    if (size >= 8)
        memcpy(&u64, p, 8);
    if (size >= 8)
        memcpy(&state, p, 8);

    LOG_DBG("vhost-user %s (%u) size=%u flags=0x%x nfds=%u", vu_request_name(req), req, size, hdr->flags, nfds);

    switch (req) {
    case VU_GET_FEATURES:
        set_u64_reply(reply, VU_OFFERED_FEATURES);
        has_reply = true;
        break;
    case VU_SET_FEATURES:
        if (size != 8) {
            err = hv_fail(HV_ERR_VU_BAD_SIZE, "SET_FEATURES size %u", size);
            break;
        }
        if (u64 & ~VU_OFFERED_FEATURES) {
            err = hv_fail(HV_ERR_VU_BAD_FEATURES, "features 0x%llx not offered", (unsigned long long)u64);
            u64 &= VU_OFFERED_FEATURES;
        }
        dev->features = u64;
        for (unsigned i = 0; i < HV_NUM_QUEUES; i++) {
            dev->vqs[i].event_idx = u64 & (1ull << VIRTIO_RING_F_EVENT_IDX);
            if (!protocol_features_negotiated(dev))
                dev->vqs[i].enabled = true;
        }
        LOG_INFO("features acked: 0x%llx (event_idx %s)", (unsigned long long)u64,
                 dev->vqs[0].event_idx ? "on" : "off");
        break;
    case VU_SET_OWNER:
        dev->owner = true;
        break;
    case VU_RESET_OWNER:
    case VU_RESET_DEVICE:
        LOG_INFO("%s", vu_request_name(req));
        vu_reset_device(dev);
        break;
    case VU_SET_MEM_TABLE:
        err = handle_mem_table(dev, p, size, fds, nfds);
        break;
    case VU_SET_VRING_NUM:
    case VU_SET_VRING_BASE:
    case VU_GET_VRING_BASE:
    case VU_SET_VRING_ENABLE:
        if (size != 8) {
            err = hv_fail(HV_ERR_VU_BAD_SIZE, "%s size %u", vu_request_name(req), size);
            break;
        }
        if (state.index >= HV_NUM_QUEUES) {
            err = hv_fail(HV_ERR_VU_BAD_INDEX, "%s index %u", vu_request_name(req), state.index);
            break;
        }
        {
            struct vq *vq = &dev->vqs[state.index];
            if (req == VU_SET_VRING_NUM) {
                if (state.num == 0 || state.num > VQ_MAX_SIZE || (state.num & (state.num - 1))) {
                    err = hv_fail(HV_ERR_VU_BAD_NUM, "ring %u size %u", state.index, state.num);
                    vq->num = 0;
                    vq->desc = NULL;
                    break;
                }
                vq->num = (uint16_t)state.num;
                if (vq_map(vq))
                    err = HV_ERR_VU_BAD_RING_ADDR;
            } else if (req == VU_SET_VRING_BASE) {
                if (state.num > 0xffff) {
                    err = hv_fail(HV_ERR_VU_BAD_NUM, "ring %u base %u", state.index, state.num);
                    break;
                }
                if (dev->stopped_valid[state.index] && dev->stopped_base[state.index] != state.num &&
                    state.index != HV_EVQ) {
                    LOG_INFO("ring %u restarts at %u (stopped at %u): guest driver reset, dropping connections",
                             state.index, state.num, dev->stopped_base[state.index]);
                    dev_destroy_all_conns(dev);
                }
                dev->stopped_valid[state.index] = false;
                vq->last_avail_idx = (uint16_t)state.num;
                vq->used_idx = (uint16_t)state.num;
                vq->signalled_used_valid = false;
                vq->broken = false;
            } else if (req == VU_GET_VRING_BASE) {
                vq->started = false;
                dev->stopped_base[state.index] = vq->last_avail_idx;
                dev->stopped_valid[state.index] = true;
                state.num = vq->last_avail_idx;
                reply->hdr.size = 8;
                memcpy(reply->payload, &state, 8);
                has_reply = true;
                LOG_INFO("ring %u stopped at %u", state.index, state.num);
                /* the kick fd belongs to the stopped ring */
                set_kick_fd(dev, state.index, -1);
            } else {
                vq->enabled = state.num != 0;
                LOG_INFO("ring %u %s", state.index, vq->enabled ? "enabled" : "disabled");
            }
        }
        break;
    case VU_SET_VRING_ADDR: {
        struct { uint32_t index, flags; uint64_t desc, used, avail, log; } a;
        if (size != sizeof a) {
            err = hv_fail(HV_ERR_VU_BAD_SIZE, "SET_VRING_ADDR size %u", size);
            break;
        }
        memcpy(&a, p, sizeof a);
        if (a.index >= HV_NUM_QUEUES) {
            err = hv_fail(HV_ERR_VU_BAD_INDEX, "SET_VRING_ADDR index %u", a.index);
            break;
        }
        struct vq *vq = &dev->vqs[a.index];
        vq->desc_uva = a.desc;
        vq->avail_uva = a.avail;
        vq->used_uva = a.used;
        vq->addr_set = true;
        err = vq_map(vq);
        if (!err && vq->used) {
            /* resume from what the used ring says (0 for a fresh ring) */
            uint16_t used_idx;
            memcpy(&used_idx, vq->used + 2, 2);
            vq->used_idx = used_idx;
        }
        break;
    }
    case VU_SET_VRING_KICK:
    case VU_SET_VRING_CALL:
    case VU_SET_VRING_ERR: {
        if (size != 8) {
            err = hv_fail(HV_ERR_VU_BAD_SIZE, "%s size %u", vu_request_name(req), size);
            break;
        }
        unsigned index = (unsigned)(u64 & VU_VRING_INDEX_MASK);
        bool nofd = u64 & VU_VRING_NOFD_MASK;
        if (index >= HV_NUM_QUEUES) {
            err = hv_fail(HV_ERR_VU_BAD_INDEX, "%s index %u", vu_request_name(req), index);
            break;
        }
        int fd = -1;
        if (!nofd) {
            fd = take_fd(fds, nfds);
            if (fd < 0) {
                err = hv_fail(HV_ERR_VU_MISSING_FD, "%s without fd", vu_request_name(req));
                break;
            }
        }
        struct vq *vq = &dev->vqs[index];
        if (req == VU_SET_VRING_KICK) {
            if (nofd) {
                err = hv_fail(HV_ERR_VU_MISSING_FD, "polling mode (no kick fd) not supported");
                break;
            }
            set_kick_fd(dev, index, fd);
            vq->started = true;
            if (!protocol_features_negotiated(dev))
                vq->enabled = true;
            LOG_INFO("ring %u started (num %u, enabled %d, mapped %d)", index, vq->num, vq->enabled, vq->desc != NULL);
        } else if (req == VU_SET_VRING_CALL) {
            replace_fd(&vq->call_fd, fd);
            vq->signalled_used_valid = false;
        } else {
            replace_fd(&vq->err_fd, fd);
        }
        break;
    }
    case VU_GET_PROTOCOL_FEATURES:
        set_u64_reply(reply, VU_OFFERED_PROTOCOL_FEATURES);
        has_reply = true;
        break;
    case VU_SET_PROTOCOL_FEATURES:
        if (size != 8) {
            err = hv_fail(HV_ERR_VU_BAD_SIZE, "SET_PROTOCOL_FEATURES size %u", size);
            break;
        }
        if (u64 & ~VU_OFFERED_PROTOCOL_FEATURES)
            err = hv_fail(HV_ERR_VU_BAD_FEATURES, "protocol features 0x%llx not offered", (unsigned long long)u64);
        dev->protocol_features = u64 & VU_OFFERED_PROTOCOL_FEATURES;
        break;
    case VU_GET_QUEUE_NUM:
        set_u64_reply(reply, HV_NUM_QUEUES);
        has_reply = true;
        break;
    case VU_GET_MAX_MEM_SLOTS:
        set_u64_reply(reply, GM_MAX_REGIONS);
        has_reply = true;
        break;
    case VU_GET_CONFIG: {
        struct { uint32_t offset, size, flags; } c;
        has_reply = true;
        reply->hdr.size = 0; /* zero-length payload = error */
        if (size < sizeof c) {
            hv_fail(HV_ERR_VU_BAD_SIZE, "GET_CONFIG size %u", size);
            break;
        }
        memcpy(&c, p, sizeof c);
        if (c.size > 256 || size != sizeof c + c.size || c.offset > 8 || c.size > 8 - c.offset) {
            hv_fail(HV_ERR_VU_BAD_CONFIG, "GET_CONFIG offset %u size %u", c.offset, c.size);
            break;
        }
        uint8_t cfg[8];
        memcpy(cfg, &dev->guest_cid, 8);
        memcpy(reply->payload, &c, sizeof c);
        memcpy(reply->payload + sizeof c, cfg + c.offset, c.size);
        reply->hdr.size = (uint32_t)sizeof c + c.size;
        break;
    }
    case VU_SET_CONFIG:
        /* the CID is ours to decide; the guest cannot change it */
        break;
    case VU_SET_BACKEND_REQ_FD:
    case VU_SET_LOG_FD:
    case VU_SET_LOG_BASE:
    default:
        err = hv_fail(HV_ERR_VU_UNKNOWN_REQUEST, "request %u (%s) not supported", req, vu_request_name(req));
        break;
    }

    if (!has_reply && (hdr->flags & VU_FLAG_NEED_REPLY)) {
        set_u64_reply(reply, err ? 1 : 0);
        has_reply = true;
    }
    return has_reply ? VU_REPLY : VU_NO_REPLY;
}

int vu_serve_one(struct vsock_dev *dev, int sock)
{
    struct vu_hdr hdr;
    static uint8_t payload[VU_MAX_PAYLOAD];
    static struct vu_reply reply;
    int fds[VU_MAX_FDS];
    unsigned nfds = 0;
    union {
        char buf[CMSG_SPACE(sizeof(int) * VU_MAX_FDS)];
        struct cmsghdr align;
    } cbuf;
    struct iovec iov = { &hdr, sizeof hdr };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf, .msg_controllen = sizeof cbuf.buf };
    ssize_t n;
    do
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
    while (n < 0 && errno == EINTR);
    if (n == 0)
        return -1;
    if (n < 0) {
        LOG_ERR("vhost-user socket: %s", strerror(errno));
        return -1;
    }
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            unsigned k = (unsigned)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int *src = (int *)(void *)CMSG_DATA(cm);
            for (unsigned i = 0; i < k; i++) {
                if (nfds < VU_MAX_FDS)
                    fds[nfds++] = src[i];
                else
                    close(src[i]);
            }
        }
    }
    int rc = 0;
    if (n != sizeof hdr || (mh.msg_flags & MSG_CTRUNC)) {
        LOG_ERR("vhost-user: short or truncated header");
        rc = -1;
        goto out;
    }
    if (hdr.size > VU_MAX_PAYLOAD) {
        LOG_ERR("vhost-user: %s payload %u too large", vu_request_name(hdr.request), hdr.size);
        rc = -1;
        goto out;
    }
    if (hdr.size) {
        size_t got = 0;
        while (got < hdr.size) {
            ssize_t r = recv(sock, payload + got, hdr.size - got, MSG_WAITALL);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                rc = -1;
                goto out;
            }
            got += (size_t)r;
        }
    }
    enum vu_result res = vu_handle(dev, &hdr, payload, fds, nfds, &reply);
    if (res == VU_FATAL) {
        rc = -1;
        goto out;
    }
    if (res == VU_REPLY) {
        struct iovec riov[2] = { { &reply.hdr, sizeof reply.hdr }, { reply.payload, reply.hdr.size } };
        struct msghdr rmh = { .msg_iov = riov, .msg_iovlen = reply.hdr.size ? 2 : 1 };
        ssize_t w;
        do
            w = sendmsg(sock, &rmh, MSG_NOSIGNAL);
        while (w < 0 && errno == EINTR);
        if (w != (ssize_t)(sizeof reply.hdr + reply.hdr.size)) {
            LOG_ERR("vhost-user: reply failed");
            rc = -1;
        }
    }
out:
    for (unsigned i = 0; i < nfds; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return rc;
}
