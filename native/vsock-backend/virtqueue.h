/*
 * virtqueue.h — split virtqueue (virtio 1.x) as seen by the device: popping descriptor chains from the avail ring,
 * returning them on the used ring, and notification suppression (VIRTIO_RING_F_EVENT_IDX).
 *
 * The ring memory is shared with a hostile guest: indices are validated, every descriptor is copied once before use
 * and its buffer translated through the guest memory table, chains are capped at the queue size, indirect
 * descriptors are refused (never offered), and a device-readable descriptor after a device-writable one is refused.
 */
#ifndef HV_VIRTQUEUE_H
#define HV_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "guest_memory.h"

#define VQ_MAX_SIZE 1024u          /* largest queue size we accept (QEMU's vsock uses 128) */
#define VQ_MAX_IOV 1024u           /* host segments per chain */
#define VQ_MAX_CHAIN_BYTES (1u << 24) /* 16 MiB per chain, far above any vsock packet */

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VRING_AVAIL_F_NO_INTERRUPT 1

struct vring_desc_raw {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct vq_chain {
    uint16_t head;
    unsigned ndesc;
    unsigned nread;      /* iov[0 .. nread) are device-readable */
    unsigned nwrite;     /* iov[nread .. nread+nwrite) are device-writable */
    uint64_t read_len;
    uint64_t write_len;
    struct iovec iov[VQ_MAX_IOV];
};

struct vq {
    /* configuration from the front end */
    uint16_t num;
    bool addr_set;
    bool enabled;        /* SET_VRING_ENABLE */
    bool started;        /* kick fd given; cleared by GET_VRING_BASE */
    bool broken;         /* guest corrupted the ring; stays off until the ring is reconfigured */
    bool event_idx;
    uint64_t desc_uva, avail_uva, used_uva;
    /* translated ring pointers (host addresses inside guest memory) */
    uint8_t *desc;
    uint8_t *avail;
    uint8_t *used;
    /* device state */
    uint16_t last_avail_idx;
    uint16_t used_idx;
    uint16_t signalled_used;
    bool signalled_used_valid;
    bool need_signal;    /* used entries added since the last signal decision */
    int kick_fd, call_fd, err_fd;
    const struct guest_memory *mem;
};

enum vq_pop_result {
    VQ_POP_EMPTY = 0,    /* nothing available */
    VQ_POP_OK = 1,       /* chain in *c */
    VQ_POP_BAD_CHAIN = 2,/* head valid but chain malformed: caller returns it with vq_push(head, 0) */
    VQ_POP_BROKEN = 3,   /* ring unusable (not ready or corrupted indices) */
};

void vq_init(struct vq *vq, const struct guest_memory *mem);
/* Reset device-side state (keeps fds). */
void vq_reset(struct vq *vq);
/* Translate the ring addresses through the memory table; validates sizes and alignment. */
enum hv_err vq_map(struct vq *vq);
bool vq_ready(const struct vq *vq);

/* Number of chains the guest has made available (0 when not ready). Sets broken on bad indices. */
unsigned vq_avail_count(struct vq *vq);
enum vq_pop_result vq_pop(struct vq *vq, struct vq_chain *c, enum hv_err *err);
enum vq_next {
    VQ_NEXT_STOP = 0,    /* nothing more now: ring empty (kicks re-enabled) or broken */
    VQ_NEXT_READY = 1,   /* a well-formed chain is in *c */
    VQ_NEXT_RETRY = 2,   /* a malformed chain was returned (length 0), or buffers arrived while re-enabling kicks */
};
/* vq_pop plus the handling every consumer needs; callers loop on VQ_NEXT_RETRY (counting it against any batch). */
enum vq_next vq_next_chain(struct vq *vq, struct vq_chain *c);
/* Give back the last popped chain without using it (only before anything was pushed for it). */
void vq_unpop(struct vq *vq);
void vq_push(struct vq *vq, uint16_t head, uint32_t len);
/* Decide whether the guest wants an interrupt for what was pushed; returns true if call_fd should be written. */
bool vq_should_signal(struct vq *vq);
/* Write call_fd if the guest wants it. */
void vq_signal(struct vq *vq);
/* Ask the guest to kick for any new buffer; returns true if buffers arrived meanwhile (re-check). */
bool vq_enable_kicks(struct vq *vq);

/* iovec helpers over a chain part */
size_t iov_copy_from(const struct iovec *iov, unsigned n, size_t off, void *dst, size_t len);
size_t iov_copy_to(const struct iovec *iov, unsigned n, size_t off, const void *src, size_t len);
/* Build dst as the sub-range [off, off+len) of iov; returns number of entries (≤ max). */
unsigned iov_slice(const struct iovec *iov, unsigned n, size_t off, size_t len, struct iovec *dst, unsigned max);

#endif
