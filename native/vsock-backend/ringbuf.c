/*
 * ringbuf.c — growable byte ring used for per-connection buffering in both directions.
 */
#include "ringbuf.h"

#include <stdlib.h>
#include <string.h>

size_t rb_total_bytes;
size_t rb_total_limit = 64u << 20;

#define RB_MIN_CAP 16384u

void rb_init(struct ringbuf *rb, uint32_t max)
{
    memset(rb, 0, sizeof *rb);
    rb->max = max;
}

void rb_free(struct ringbuf *rb)
{
    if (rb->buf) {
        free(rb->buf);
        rb_total_bytes -= rb->cap;
    }
    rb->buf = NULL;
    rb->cap = rb->start = rb->len = 0;
}

void rb_clear(struct ringbuf *rb)
{
    rb_free(rb); /* give the memory back: a cleared ring is usually idle */
}

static bool rb_grow(struct ringbuf *rb, uint32_t need)
{
    uint32_t ncap = rb->cap ? rb->cap : RB_MIN_CAP;
    while (ncap < need && ncap < rb->max)
        ncap *= 2;
    if (ncap > rb->max)
        ncap = rb->max;
    if (ncap <= rb->cap)
        return false;
    if (rb_total_bytes + (ncap - rb->cap) > rb_total_limit)
        return false;
    uint8_t *nb = malloc(ncap);
    if (!nb)
        return false;
    /* linearise */
    uint32_t first = rb->cap - rb->start < rb->len ? rb->cap - rb->start : rb->len;
    if (rb->len) {
        memcpy(nb, rb->buf + rb->start, first);
        memcpy(nb + first, rb->buf, rb->len - first);
    }
    free(rb->buf);
    rb_total_bytes += ncap - rb->cap;
    rb->buf = nb;
    rb->cap = ncap;
    rb->start = 0;
    return true;
}

uint32_t rb_reserve(struct ringbuf *rb, uint32_t want)
{
    if (want > rb_room(rb))
        want = rb_room(rb);
    if (rb->cap - rb->len < want)
        rb_grow(rb, rb->len + want);
    uint32_t freeb = rb->cap - rb->len;
    return freeb < want ? freeb : want;
}

/* The ≤ 2 contiguous pieces of the ring range [start + off, start + off + limit), wrapping at cap. */
static unsigned rb_spans(const struct ringbuf *rb, uint32_t off, uint32_t limit, struct iovec iov[2])
{
    if (!limit)
        return 0;
    uint32_t pos = (rb->start + off) % rb->cap;
    uint32_t first = rb->cap - pos;
    if (first > limit)
        first = limit;
    iov[0].iov_base = rb->buf + pos;
    iov[0].iov_len = first;
    if (first == limit)
        return 1;
    iov[1].iov_base = rb->buf;
    iov[1].iov_len = limit - first;
    return 2;
}

unsigned rb_free_spans(const struct ringbuf *rb, uint32_t limit, struct iovec iov[2])
{
    uint32_t freeb = rb->cap - rb->len;
    if (limit > freeb)
        limit = freeb;
    return rb_spans(rb, rb->len, limit, iov);
}

unsigned rb_data_spans(const struct ringbuf *rb, uint32_t limit, struct iovec iov[2])
{
    if (limit > rb->len)
        limit = rb->len;
    return rb_spans(rb, 0, limit, iov);
}

void rb_commit(struct ringbuf *rb, uint32_t n)
{
    rb->len += n;
}

void rb_consume(struct ringbuf *rb, uint32_t n)
{
    if (n > rb->len)
        n = rb->len;
    rb->len -= n;
    rb->start = rb->cap ? (rb->start + n) % rb->cap : 0;
    if (rb->len == 0)
        rb->start = 0;
}

uint32_t rb_append(struct ringbuf *rb, const void *src, uint32_t n)
{
    struct iovec one = { (void *)src, n };
    return rb_append_iov(rb, &one, 1, n);
}

uint32_t rb_append_iov(struct ringbuf *rb, const struct iovec *iov, unsigned n, size_t len)
{
    uint32_t want = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
    uint32_t got = rb_reserve(rb, want);
    struct iovec sp[2];
    unsigned ns = rb_free_spans(rb, got, sp);
    uint32_t done = 0;
    for (unsigned s = 0; s < ns; s++) {
        size_t c = 0;
        /* copy from iov at offset `done` */
        size_t off = done;
        for (unsigned i = 0; i < n && c < sp[s].iov_len; i++) {
            size_t l = iov[i].iov_len;
            if (off >= l) {
                off -= l;
                continue;
            }
            size_t take = l - off;
            if (take > sp[s].iov_len - c)
                take = sp[s].iov_len - c;
            memcpy((uint8_t *)sp[s].iov_base + c, (const uint8_t *)iov[i].iov_base + off, take);
            c += take;
            off = 0;
        }
        done += (uint32_t)c;
    }
    rb_commit(rb, done);
    return done;
}
