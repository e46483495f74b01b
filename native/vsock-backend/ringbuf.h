/*
 * ringbuf.h — a byte ring that grows on demand up to a fixed maximum, with a process-wide budget on the total
 * bytes allocated by all rings (so many connections cannot exhaust host memory).
 */
#ifndef HV_RINGBUF_H
#define HV_RINGBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct ringbuf {
    uint8_t *buf;
    uint32_t cap;   /* allocated bytes */
    uint32_t max;   /* never grow beyond */
    uint32_t start; /* read position */
    uint32_t len;   /* bytes held */
};

/* Total bytes allocated by all rings, and the budget. */
extern size_t rb_total_bytes;
extern size_t rb_total_limit;

void rb_init(struct ringbuf *rb, uint32_t max);
void rb_free(struct ringbuf *rb);
static inline uint32_t rb_room(const struct ringbuf *rb) { return rb->max - rb->len; }
/* Make at least min(want, room) bytes writable without wrapping the logical content; returns the writable
 * bytes now available (may be less than want if the budget is exhausted). */
uint32_t rb_reserve(struct ringbuf *rb, uint32_t want);
/* Up to 2 spans of free space (after rb_reserve), limited to `limit` bytes; returns count. */
unsigned rb_free_spans(const struct ringbuf *rb, uint32_t limit, struct iovec iov[2]);
/* Up to 2 spans of held data, limited to `limit` bytes; returns count. */
unsigned rb_data_spans(const struct ringbuf *rb, uint32_t limit, struct iovec iov[2]);
void rb_commit(struct ringbuf *rb, uint32_t n);   /* n bytes were written into the free spans */
void rb_consume(struct ringbuf *rb, uint32_t n);  /* n bytes were taken from the front */
/* Append bytes (grows as needed); returns bytes appended. */
uint32_t rb_append(struct ringbuf *rb, const void *src, uint32_t n);
uint32_t rb_append_iov(struct ringbuf *rb, const struct iovec *iov, unsigned n, size_t len);
void rb_clear(struct ringbuf *rb);

#endif
