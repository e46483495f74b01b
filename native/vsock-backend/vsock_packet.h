/*
 * vsock_packet.h — the virtio-vsock packet header (44 bytes, little-endian) and its validation.
 *
 * A tx chain from the guest is: header (possibly split over descriptors) followed by `len` payload bytes.
 * pkt_parse_tx classifies a chain into: usable, "reply RST" (well-formed addressing but bad type/op/len) or
 * "drop" (cannot be answered: too short or wrong CIDs).
 */
#ifndef HV_VSOCK_PACKET_H
#define HV_VSOCK_PACKET_H

#include <stdint.h>

#include "log.h"
#include "virtqueue.h"

#define VSOCK_HDR_SIZE 44
#define VSOCK_HOST_CID 2
#define VSOCK_MAX_PKT_PAYLOAD (64u * 1024)

#define VSOCK_TYPE_STREAM 1
#define VSOCK_TYPE_SEQPACKET 2

enum vsock_op {
    VSOCK_OP_INVALID = 0,
    VSOCK_OP_REQUEST = 1,
    VSOCK_OP_RESPONSE = 2,
    VSOCK_OP_RST = 3,
    VSOCK_OP_SHUTDOWN = 4,
    VSOCK_OP_RW = 5,
    VSOCK_OP_CREDIT_UPDATE = 6,
    VSOCK_OP_CREDIT_REQUEST = 7,
};

#define VSOCK_SHUTDOWN_RCV 1u
#define VSOCK_SHUTDOWN_SEND 2u

struct vsock_hdr {
    uint64_t src_cid;
    uint64_t dst_cid;
    uint32_t src_port;
    uint32_t dst_port;
    uint32_t len;
    uint16_t type;
    uint16_t op;
    uint32_t flags;
    uint32_t buf_alloc;
    uint32_t fwd_cnt;
};

enum pkt_verdict {
    PKT_OK = 0,      /* deliver */
    PKT_RST = 1,     /* answer with RST (addresses valid) */
    PKT_DROP = 2,    /* silently drop (cannot be answered safely) */
};

void pkt_hdr_decode(const uint8_t raw[VSOCK_HDR_SIZE], struct vsock_hdr *h);
void pkt_hdr_encode(const struct vsock_hdr *h, uint8_t raw[VSOCK_HDR_SIZE]);
/* Parse and validate a tx chain. *err names the problem when the verdict is not PKT_OK. */
enum pkt_verdict pkt_parse_tx(const struct vq_chain *c, uint64_t guest_cid, struct vsock_hdr *h, enum hv_err *err);
const char *pkt_op_name(uint16_t op);

#endif
