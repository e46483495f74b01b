/*
 * virtqueue.c — split-ring descriptor chain walking with hostile-guest checks, used-ring updates and
 * EVENT_IDX notification logic.
 *
 * Layout (virtio 1.x, split):  desc[num] 16 bytes each;  avail: flags u16, idx u16, ring[num] u16, used_event u16;
 * used: flags u16, idx u16, ring[num] {u32 id, u32 len}, avail_event u16. All little-endian (x86 host only).
 */
#include "virtqueue.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static inline uint16_t load16_acquire(const uint8_t *p)
{
    return __atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_ACQUIRE);
}
static inline uint16_t load16(const uint8_t *p)
{
    return __atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_RELAXED);
}
static inline void store16_release(uint8_t *p, uint16_t v)
{
    __atomic_store_n((uint16_t *)(void *)p, v, __ATOMIC_RELEASE);
}
static inline void store16(uint8_t *p, uint16_t v)
{
    __atomic_store_n((uint16_t *)(void *)p, v, __ATOMIC_RELAXED);
}
static inline void store32(uint8_t *p, uint32_t v)
{
    __atomic_store_n((uint32_t *)(void *)p, v, __ATOMIC_RELAXED);
}

void vq_init(struct vq *vq, const struct guest_memory *mem)
{
    memset(vq, 0, sizeof *vq);
    vq->kick_fd = vq->call_fd = vq->err_fd = -1;
    vq->mem = mem;
}

void vq_reset(struct vq *vq)
{
    vq->num = 0;
    vq->addr_set = false;
    vq->enabled = false;
    vq->started = false;
    vq->broken = false;
    vq->desc = vq->avail = vq->used = NULL;
    vq->last_avail_idx = vq->used_idx = 0;
    vq->signalled_used_valid = false;
    vq->need_signal = false;
}

enum hv_err vq_map(struct vq *vq)
{
    vq->desc = vq->avail = vq->used = NULL;
    if (!vq->addr_set || vq->num == 0)
        return HV_OK; /* not configured yet; mapped again when both are known */
    uint64_t n = vq->num;
    uint8_t *d, *a, *u;
    if (gm_uva_to_host(vq->mem, vq->desc_uva, 16 * n, &d) ||
        gm_uva_to_host(vq->mem, vq->avail_uva, 6 + 2 * n, &a) ||
        gm_uva_to_host(vq->mem, vq->used_uva, 6 + 8 * n, &u))
        return hv_fail(HV_ERR_VU_BAD_RING_ADDR, "ring addresses desc=0x%llx avail=0x%llx used=0x%llx not mapped",
                       (unsigned long long)vq->desc_uva, (unsigned long long)vq->avail_uva,
                       (unsigned long long)vq->used_uva);
    if (((uintptr_t)d & 15) || ((uintptr_t)a & 1) || ((uintptr_t)u & 3))
        return hv_fail(HV_ERR_VU_BAD_RING_ADDR, "ring addresses misaligned");
    vq->desc = d;
    vq->avail = a;
    vq->used = u;
    vq->broken = false;
    return HV_OK;
}

bool vq_ready(const struct vq *vq)
{
    return vq->desc && vq->enabled && vq->started && !vq->broken && vq->num;
}

unsigned vq_avail_count(struct vq *vq)
{
    if (!vq_ready(vq))
        return 0;
    uint16_t idx = load16_acquire(vq->avail + 2);
    uint16_t cnt = (uint16_t)(idx - vq->last_avail_idx);
    if (cnt > vq->num) {
        hv_fail(HV_ERR_VQ_AVAIL_IDX_TOO_FAR, "avail idx %u is %u ahead of %u (queue size %u)", idx, cnt,
                vq->last_avail_idx, vq->num);
        vq->broken = true;
        return 0;
    }
    return cnt;
}

static void read_desc(const struct vq *vq, uint16_t i, struct vring_desc_raw *out)
{
    /* copy once: the guest may change it under us */
    memcpy(out, vq->desc + 16u * i, sizeof *out);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

enum vq_pop_result vq_pop(struct vq *vq, struct vq_chain *c, enum hv_err *err)
{
    *err = HV_OK;
    if (!vq_ready(vq))
        return vq->broken ? VQ_POP_BROKEN : VQ_POP_EMPTY;
    unsigned avail = vq_avail_count(vq);
    if (vq->broken) {
        *err = HV_ERR_VQ_AVAIL_IDX_TOO_FAR;
        return VQ_POP_BROKEN;
    }
    if (avail == 0)
        return VQ_POP_EMPTY;
    uint16_t slot = vq->last_avail_idx % vq->num;
    uint16_t head = load16(vq->avail + 4 + 2u * slot);
    vq->last_avail_idx++;
    c->head = head;
    c->ndesc = c->nread = c->nwrite = 0;
    c->read_len = c->write_len = 0;
    if (head >= vq->num) {
        /* cannot return a chain we cannot name; skip the slot */
        *err = hv_fail(HV_ERR_VQ_HEAD_OUT_OF_RANGE, "head %u >= queue size %u", head, vq->num);
        return VQ_POP_BAD_CHAIN;
    }
    unsigned niov = 0;
    uint16_t i = head;
    for (;;) {
        struct vring_desc_raw d;
        if (c->ndesc >= vq->num) {
            *err = hv_fail(HV_ERR_VQ_CHAIN_TOO_LONG, "chain from head %u longer than queue size %u", head, vq->num);
            return VQ_POP_BAD_CHAIN;
        }
        read_desc(vq, i, &d);
        c->ndesc++;
        if (d.flags & VIRTQ_DESC_F_INDIRECT) {
            *err = hv_fail(HV_ERR_VQ_INDIRECT_NOT_SUPPORTED, "indirect descriptor %u", i);
            return VQ_POP_BAD_CHAIN;
        }
        bool w = d.flags & VIRTQ_DESC_F_WRITE;
        if (!w && c->nwrite) {
            *err = hv_fail(HV_ERR_VQ_READABLE_AFTER_WRITABLE, "readable descriptor %u after writable", i);
            return VQ_POP_BAD_CHAIN;
        }
        if (d.len) {
            if ((w ? c->write_len : c->read_len) + d.len > VQ_MAX_CHAIN_BYTES) {
                *err = hv_fail(HV_ERR_VQ_CHAIN_TOO_BIG, "chain from head %u exceeds %u bytes", head, VQ_MAX_CHAIN_BYTES);
                return VQ_POP_BAD_CHAIN;
            }
            unsigned before = niov;
            enum hv_err e = gm_translate_iov(vq->mem, d.addr, d.len, c->iov, VQ_MAX_IOV, &niov);
            if (e) {
                *err = hv_fail(e == HV_ERR_GM_TOO_MANY_SEGMENTS ? e : HV_ERR_VQ_DESC_NOT_MAPPED,
                               "descriptor %u addr=0x%llx len=%u outside guest memory", i,
                               (unsigned long long)d.addr, d.len);
                return VQ_POP_BAD_CHAIN;
            }
            if (w) {
                c->nwrite += niov - before;
                c->write_len += d.len;
            } else {
                c->nread += niov - before;
                c->read_len += d.len;
            }
        }
        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            break;
        if (d.next >= vq->num) {
            *err = hv_fail(HV_ERR_VQ_NEXT_OUT_OF_RANGE, "descriptor %u next %u >= queue size %u", i, d.next, vq->num);
            return VQ_POP_BAD_CHAIN;
        }
        i = d.next;
    }
    return VQ_POP_OK;
}

enum vq_next vq_next_chain(struct vq *vq, struct vq_chain *c)
{
    enum hv_err err;
    switch (vq_pop(vq, c, &err)) {
    case VQ_POP_OK:
        return VQ_NEXT_READY;
    case VQ_POP_EMPTY:
        return vq_enable_kicks(vq) ? VQ_NEXT_RETRY : VQ_NEXT_STOP;
    case VQ_POP_BAD_CHAIN:
        if (err != HV_ERR_VQ_HEAD_OUT_OF_RANGE)
            vq_push(vq, c->head, 0);
        return VQ_NEXT_RETRY;
    case VQ_POP_BROKEN:
        break;
    }
    return VQ_NEXT_STOP;
}

void vq_unpop(struct vq *vq)
{
    vq->last_avail_idx--;
}

void vq_push(struct vq *vq, uint16_t head, uint32_t len)
{
    if (!vq->used || !vq->num)
        return;
    uint16_t slot = vq->used_idx % vq->num;
    uint8_t *e = vq->used + 4 + 8u * slot;
    store32(e, head);
    store32(e + 4, len);
    vq->used_idx++;
    store16_release(vq->used + 2, vq->used_idx);
    vq->need_signal = true;
}

static inline bool vring_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old)
{
    return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old);
}

bool vq_should_signal(struct vq *vq)
{
    if (!vq->need_signal || !vq->used || !vq->avail)
        return false;
    vq->need_signal = false;
    /* used idx store must be visible before we read the guest's suppression state */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (vq->event_idx) {
        uint16_t old = vq->signalled_used;
        bool valid = vq->signalled_used_valid;
        uint16_t new_idx = vq->used_idx;
        vq->signalled_used = new_idx;
        vq->signalled_used_valid = true;
        if (!valid)
            return true;
        uint16_t used_event = load16(vq->avail + 4 + 2u * vq->num);
        return vring_need_event(used_event, new_idx, old);
    }
    return !(load16(vq->avail) & VRING_AVAIL_F_NO_INTERRUPT);
}

void vq_signal(struct vq *vq)
{
    if (vq->call_fd < 0)
        return;
    if (vq_should_signal(vq)) {
        uint64_t one = 1;
        ssize_t r = write(vq->call_fd, &one, sizeof one);
        (void)r;
    }
}

bool vq_enable_kicks(struct vq *vq)
{
    if (!vq_ready(vq))
        return false;
    if (vq->event_idx)
        store16(vq->used + 4 + 8u * vq->num, vq->last_avail_idx);
    else
        store16(vq->used, 0); /* clear VRING_USED_F_NO_NOTIFY */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return vq_avail_count(vq) > 0;
}

/* Copy len bytes between buf and the iovec range starting at off; to_iov picks the direction. */
static size_t iov_copy(const struct iovec *iov, unsigned n, size_t off, uint8_t *buf, size_t len, bool to_iov)
{
    size_t done = 0;
    for (unsigned i = 0; i < n && done < len; i++) {
        size_t l = iov[i].iov_len;
        if (off >= l) {
            off -= l;
            continue;
        }
        size_t take = l - off;
        if (take > len - done)
            take = len - done;
        uint8_t *seg = (uint8_t *)iov[i].iov_base + off;
        if (to_iov)
            memcpy(seg, buf + done, take);
        else
            memcpy(buf + done, seg, take);
        done += take;
        off = 0;
    }
    return done;
}

size_t iov_copy_from(const struct iovec *iov, unsigned n, size_t off, void *dst, size_t len)
{
    return iov_copy(iov, n, off, dst, len, false);
}

size_t iov_copy_to(const struct iovec *iov, unsigned n, size_t off, const void *src, size_t len)
{
    return iov_copy(iov, n, off, (uint8_t *)(uintptr_t)src, len, true);
}

unsigned iov_slice(const struct iovec *iov, unsigned n, size_t off, size_t len, struct iovec *dst, unsigned max)
{
    unsigned k = 0;
    for (unsigned i = 0; i < n && len > 0 && k < max; i++) {
        size_t l = iov[i].iov_len;
        if (off >= l) {
            off -= l;
            continue;
        }
        size_t take = l - off;
        if (take > len)
            take = len;
        dst[k].iov_base = (uint8_t *)iov[i].iov_base + off;
        dst[k].iov_len = take;
        k++;
        len -= take;
        off = 0;
    }
    return k;
}
