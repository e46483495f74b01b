/*
 * log.h — logging and named errors for hull-vsock-backend.
 *
 * Every failure the guest can cause has a name in enum hv_err; guest-caused errors are counted and logged with
 * rate limiting (a hostile guest must not be able to flood the host's logs). Log lines go to stderr, one line each.
 */
#ifndef HV_LOG_H
#define HV_LOG_H

#include <stdint.h>

enum hv_log_level { HV_LOG_ERROR = 0, HV_LOG_WARN = 1, HV_LOG_INFO = 2, HV_LOG_DEBUG = 3 };

extern int hv_log_level;

void hv_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_ERR(...) hv_log(HV_LOG_ERROR, __VA_ARGS__)
#define LOG_WARN(...) hv_log(HV_LOG_WARN, __VA_ARGS__)
#define LOG_INFO(...) hv_log(HV_LOG_INFO, __VA_ARGS__)
#define LOG_DBG(...) do { if (hv_log_level >= HV_LOG_DEBUG) hv_log(HV_LOG_DEBUG, __VA_ARGS__); } while (0)

/* Named errors. HV_OK is 0; everything else is a failure with a stable name. */
#define HV_ERRORS(X)                                                                                                  \
    /* guest memory translation */                                                                                    \
    X(GM_ADDR_NOT_MAPPED)          /* guest-physical / user address not inside any region */                         \
    X(GM_TOO_MANY_SEGMENTS)        /* buffer spans more regions than the iovec can hold */                            \
    X(GM_BAD_REGION)               /* region table entry invalid (zero size, overflow, overlap) */                   \
    /* virtqueue */                                                                                                   \
    X(VQ_NOT_READY)                /* ring not configured/enabled/started */                                           \
    X(VQ_AVAIL_IDX_TOO_FAR)        /* avail idx more than queue size ahead of what we consumed */                      \
    X(VQ_HEAD_OUT_OF_RANGE)        /* avail ring entry >= queue size */                                                \
    X(VQ_NEXT_OUT_OF_RANGE)        /* descriptor next >= queue size */                                                 \
    X(VQ_CHAIN_TOO_LONG)           /* more descriptors than the queue size (loop) */                                   \
    X(VQ_INDIRECT_NOT_SUPPORTED)   /* VIRTQ_DESC_F_INDIRECT used but never offered */                                  \
    X(VQ_READABLE_AFTER_WRITABLE)  /* device-readable descriptor after a device-writable one */                        \
    X(VQ_DESC_NOT_MAPPED)          /* descriptor buffer outside guest memory */                                        \
    X(VQ_CHAIN_TOO_BIG)            /* chain total length beyond the cap */                                             \
    /* packets */                                                                                                     \
    X(PKT_HDR_TOO_SHORT)           /* tx chain has fewer than 44 readable bytes */                                     \
    X(PKT_TX_HAS_WRITABLE)         /* tx chain has device-writable descriptors */                                      \
    X(PKT_RX_HAS_READABLE)         /* rx chain has device-readable descriptors */                                      \
    X(PKT_RX_TOO_SMALL)            /* rx chain cannot hold a header */                                                 \
    X(PKT_BAD_SRC_CID)             /* src_cid is not the guest's CID */                                                \
    X(PKT_BAD_DST_CID)             /* dst_cid is not the host (2) */                                                   \
    X(PKT_BAD_TYPE)                /* type is not STREAM */                                                            \
    X(PKT_BAD_OP)                  /* op unknown */                                                                    \
    X(PKT_LEN_TOO_BIG)             /* len beyond 64 KiB */                                                             \
    X(PKT_LEN_EXCEEDS_CHAIN)       /* len larger than the bytes the chain carries */                                   \
    /* connections */                                                                                                 \
    X(CONN_CREDIT_VIOLATION)       /* guest sent more than the credit we gave */                                       \
    X(CONN_UNEXPECTED_OP)          /* op not valid in the connection's state */                                        \
    X(CONN_LIMIT)                  /* too many connections */                                                          \
    X(CONN_BUFFER_LIMIT)           /* global buffer budget exhausted */                                                \
    X(CONN_RST_QUEUE_FULL)         /* RST replies for unknown connections dropped */                                   \
    /* vhost-user (front-end) */                                                                                      \
    X(VU_BAD_SIZE)                 /* payload size wrong for the request */                                            \
    X(VU_BAD_INDEX)                /* vring index out of range */                                                      \
    X(VU_BAD_NUM)                  /* vring size not a power of two within limits */                                   \
    X(VU_BAD_MEM_TABLE)            /* memory table invalid or mmap failed */                                           \
    X(VU_BAD_RING_ADDR)            /* ring addresses not mapped / misaligned */                                        \
    X(VU_MISSING_FD)               /* expected a file descriptor */                                                    \
    X(VU_BAD_FEATURES)             /* features acked that were not offered */                                          \
    X(VU_UNKNOWN_REQUEST)          /* request not implemented */                                                       \
    X(VU_BAD_CONFIG)               /* GET/SET_CONFIG out of range */

enum hv_err {
    HV_OK = 0,
#define HV_ERR_ENUM(name) HV_ERR_##name,
    HV_ERRORS(HV_ERR_ENUM)
#undef HV_ERR_ENUM
    HV_ERR__COUNT
};

const char *hv_err_name(enum hv_err e);

/* Per-error counters (tests read them). */
extern uint64_t hv_err_count[HV_ERR__COUNT];

/* Count a guest-caused (or front-end-caused) error and log it, rate limited per error name. Returns e. */
enum hv_err hv_fail(enum hv_err e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
