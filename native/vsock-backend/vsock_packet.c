/*
 * vsock_packet.c — virtio-vsock header (de)serialisation and validation of packets the guest sends.
 */
#include "vsock_packet.h"

#include <string.h>

static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "little-endian host assumed (virtio is little-endian)"
#endif

void pkt_hdr_decode(const uint8_t raw[VSOCK_HDR_SIZE], struct vsock_hdr *h)
{
    h->src_cid = get64(raw + 0);
    h->dst_cid = get64(raw + 8);
    h->src_port = get32(raw + 16);
    h->dst_port = get32(raw + 20);
    h->len = get32(raw + 24);
    h->type = get16(raw + 28);
    h->op = get16(raw + 30);
    h->flags = get32(raw + 32);
    h->buf_alloc = get32(raw + 36);
    h->fwd_cnt = get32(raw + 40);
}

void pkt_hdr_encode(const struct vsock_hdr *h, uint8_t raw[VSOCK_HDR_SIZE])
{
    put64(raw + 0, h->src_cid);
    put64(raw + 8, h->dst_cid);
    put32(raw + 16, h->src_port);
    put32(raw + 20, h->dst_port);
    put32(raw + 24, h->len);
    put16(raw + 28, h->type);
    put16(raw + 30, h->op);
    put32(raw + 32, h->flags);
    put32(raw + 36, h->buf_alloc);
    put32(raw + 40, h->fwd_cnt);
}

const char *pkt_op_name(uint16_t op)
{
    static const char *const names[] = { "INVALID", "REQUEST", "RESPONSE", "RST", "SHUTDOWN", "RW", "CREDIT_UPDATE",
                                         "CREDIT_REQUEST" };
    return op < sizeof names / sizeof names[0] ? names[op] : "?";
}

enum pkt_verdict pkt_parse_tx(const struct vq_chain *c, uint64_t guest_cid, struct vsock_hdr *h, enum hv_err *err)
{
    uint8_t raw[VSOCK_HDR_SIZE];
    *err = HV_OK;
    if (c->nwrite) {
        *err = hv_fail(HV_ERR_PKT_TX_HAS_WRITABLE, "tx chain %u has %u writable segments", c->head, c->nwrite);
        return PKT_DROP;
    }
    if (c->read_len < VSOCK_HDR_SIZE ||
        iov_copy_from(c->iov, c->nread, 0, raw, VSOCK_HDR_SIZE) != VSOCK_HDR_SIZE) {
        *err = hv_fail(HV_ERR_PKT_HDR_TOO_SHORT, "tx chain %u carries %llu bytes", c->head,
                       (unsigned long long)c->read_len);
        return PKT_DROP;
    }
    pkt_hdr_decode(raw, h);
    if (h->src_cid != guest_cid) {
        *err = hv_fail(HV_ERR_PKT_BAD_SRC_CID, "src_cid %llu, guest is %llu", (unsigned long long)h->src_cid,
                       (unsigned long long)guest_cid);
        return PKT_DROP;
    }
    if (h->dst_cid != VSOCK_HOST_CID) {
        *err = hv_fail(HV_ERR_PKT_BAD_DST_CID, "dst_cid %llu", (unsigned long long)h->dst_cid);
        return PKT_DROP;
    }
    if (h->op == VSOCK_OP_RST) {
        /* never answer an RST with an RST, whatever else is wrong with it */
        return PKT_OK;
    }
    if (h->type != VSOCK_TYPE_STREAM) {
        *err = hv_fail(HV_ERR_PKT_BAD_TYPE, "type %u", h->type);
        return PKT_RST;
    }
    if (h->op == VSOCK_OP_INVALID || h->op > VSOCK_OP_CREDIT_REQUEST) {
        *err = hv_fail(HV_ERR_PKT_BAD_OP, "op %u", h->op);
        return PKT_RST;
    }
    if (h->op == VSOCK_OP_RW) {
        if (h->len > VSOCK_MAX_PKT_PAYLOAD) {
            *err = hv_fail(HV_ERR_PKT_LEN_TOO_BIG, "len %u", h->len);
            return PKT_RST;
        }
        if (h->len > c->read_len - VSOCK_HDR_SIZE) {
            *err = hv_fail(HV_ERR_PKT_LEN_EXCEEDS_CHAIN, "len %u but chain carries %llu", h->len,
                           (unsigned long long)(c->read_len - VSOCK_HDR_SIZE));
            return PKT_RST;
        }
    }
    return PKT_OK;
}
