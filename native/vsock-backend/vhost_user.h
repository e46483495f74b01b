/*
 * vhost_user.h — the vhost-user back-end protocol (QEMU docs/interop/vhost-user.rst) for a vsock device.
 *
 * vu_handle() is the pure message handler (crafted messages in unit tests and the fuzzer go through it);
 * vu_serve_one() reads one message with its file descriptors from the socket, handles it and sends the reply.
 */
#ifndef HV_VHOST_USER_H
#define HV_VHOST_USER_H

#include <stdint.h>

#include "vsock_device.h"

#define VU_HDR_SIZE 12
#define VU_MAX_PAYLOAD 4096
#define VU_MAX_FDS 8

#define VU_FLAG_VERSION 0x1u
#define VU_FLAG_REPLY (1u << 2)
#define VU_FLAG_NEED_REPLY (1u << 3)

enum vu_request {
    VU_GET_FEATURES = 1,
    VU_SET_FEATURES = 2,
    VU_SET_OWNER = 3,
    VU_RESET_OWNER = 4,
    VU_SET_MEM_TABLE = 5,
    VU_SET_LOG_BASE = 6,
    VU_SET_LOG_FD = 7,
    VU_SET_VRING_NUM = 8,
    VU_SET_VRING_ADDR = 9,
    VU_SET_VRING_BASE = 10,
    VU_GET_VRING_BASE = 11,
    VU_SET_VRING_KICK = 12,
    VU_SET_VRING_CALL = 13,
    VU_SET_VRING_ERR = 14,
    VU_GET_PROTOCOL_FEATURES = 15,
    VU_SET_PROTOCOL_FEATURES = 16,
    VU_GET_QUEUE_NUM = 17,
    VU_SET_VRING_ENABLE = 18,
    VU_SEND_RARP = 19,
    VU_NET_SET_MTU = 20,
    VU_SET_BACKEND_REQ_FD = 21,
    VU_GET_CONFIG = 24,
    VU_SET_CONFIG = 25,
    VU_RESET_DEVICE = 34,
    VU_GET_MAX_MEM_SLOTS = 36,
};

/* feature bits */
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX 29
#define VHOST_USER_F_PROTOCOL_FEATURES 30

#define VU_PROTOCOL_F_MQ 0
#define VU_PROTOCOL_F_REPLY_ACK 3
#define VU_PROTOCOL_F_CONFIG 9
#define VU_PROTOCOL_F_RESET_DEVICE 13

#define VU_OFFERED_FEATURES                                                                                           \
    ((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_RING_F_EVENT_IDX) | (1ull << VHOST_USER_F_PROTOCOL_FEATURES))
#define VU_OFFERED_PROTOCOL_FEATURES                                                                                  \
    ((1ull << VU_PROTOCOL_F_MQ) | (1ull << VU_PROTOCOL_F_REPLY_ACK) | (1ull << VU_PROTOCOL_F_CONFIG) |                \
     (1ull << VU_PROTOCOL_F_RESET_DEVICE))

#define VU_VRING_INDEX_MASK 0xffu
#define VU_VRING_NOFD_MASK (1u << 8)

struct vu_hdr {
    uint32_t request;
    uint32_t flags;
    uint32_t size;
};

struct vu_reply {
    struct vu_hdr hdr;
    uint8_t payload[VU_MAX_PAYLOAD];
};

enum vu_result { VU_NO_REPLY = 0, VU_REPLY = 1, VU_FATAL = -1 };

/* Handle one message. fds[] entries that are kept are set to -1; the caller closes the rest.
 * Fills *reply when VU_REPLY is returned. */
enum vu_result vu_handle(struct vsock_dev *dev, const struct vu_hdr *hdr, const uint8_t *payload, int *fds,
                         unsigned nfds, struct vu_reply *reply);
/* Read one message from sock, handle it, reply. Returns -1 when the front end disconnected or broke the
 * protocol, 0 otherwise. */
int vu_serve_one(struct vsock_dev *dev, int sock);
/* Drop all rings and connections (RESET_OWNER / RESET_DEVICE / disconnect). */
void vu_reset_device(struct vsock_dev *dev);
const char *vu_request_name(uint32_t req);

#endif
