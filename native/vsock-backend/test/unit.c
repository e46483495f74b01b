/*
 * unit.c — unit tests for hull-vsock-backend: vhost-user message handling with crafted messages, guest memory
 * translation edge cases, descriptor chain validation, packet header parsing, connection credit accounting and
 * the hybrid CONNECT line parser. Built with ASan + UBSan; prints "N passed, M failed" and exits non-zero on failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest_memory.h"
#include "sandbox.h"
#include "vhost_user.h"
#include "virtqueue.h"
#include "vsock_device.h"
#include "vsock_packet.h"

static int passed, failed;
static const char *current;

#define CHECK(cond)                                                                                                   \
    do {                                                                                                              \
        if (cond) {                                                                                                   \
            passed++;                                                                                                 \
        } else {                                                                                                      \
            failed++;                                                                                                 \
            fprintf(stderr, "FAIL %s:%d [%s]: %s\n", __FILE__, __LINE__, current, #cond);                            \
        }                                                                                                             \
    } while (0)
#define TEST(name) current = name

/* ---------------------------------------------------------------------------------------------------------------
 * fake guest: one region of guest memory at GPA G_BASE, rings at fixed offsets
 * --------------------------------------------------------------------------------------------------------------- */
#define G_BASE 0x100000ull
#define G_SIZE (1u << 20)
#define G_UVA 0x7f0000000000ull
#define QN 16
/* ring layout (offsets in guest memory) for queue q */
#define DESC_OFF(q) (0x1000u + (q) * 0x2000u)
#define AVAIL_OFF(q) (DESC_OFF(q) + 16u * QN)
#define USED_OFF(q) (DESC_OFF(q) + 0x1000u)
#define BUF_OFF 0x10000u

static uint8_t *gmem;

static void g_desc(int q, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    struct vring_desc_raw d = { addr, len, flags, next };
    memcpy(gmem + DESC_OFF(q) + 16 * i, &d, 16);
}
static uint16_t g_avail_idx(int q)
{
    uint16_t v;
    memcpy(&v, gmem + AVAIL_OFF(q) + 2, 2);
    return v;
}
static void g_avail_push(int q, uint16_t head)
{
    uint16_t idx = g_avail_idx(q);
    memcpy(gmem + AVAIL_OFF(q) + 4 + 2 * (idx % QN), &head, 2);
    idx++;
    memcpy(gmem + AVAIL_OFF(q) + 2, &idx, 2);
}
static void g_set_avail_idx(int q, uint16_t idx) { memcpy(gmem + AVAIL_OFF(q) + 2, &idx, 2); }
static uint16_t g_used_idx(int q)
{
    uint16_t v;
    memcpy(&v, gmem + USED_OFF(q) + 2, 2);
    return v;
}
static void g_used_elem(int q, unsigned slot, uint32_t *id, uint32_t *len)
{
    memcpy(id, gmem + USED_OFF(q) + 4 + 8 * slot, 4);
    memcpy(len, gmem + USED_OFF(q) + 8 + 8 * slot, 4);
}

static void setup_vq(struct vq *vq, const struct guest_memory *gm, int q)
{
    vq_init(vq, gm);
    vq->num = QN;
    vq->desc_uva = G_UVA + DESC_OFF(q);
    vq->avail_uva = G_UVA + AVAIL_OFF(q);
    vq->used_uva = G_UVA + USED_OFF(q);
    vq->addr_set = true;
    vq->enabled = vq->started = true;
    vq_map(vq);
}

static void fresh_guest(struct guest_memory *gm)
{
    memset(gmem, 0, G_SIZE);
    gm_init(gm);
    gm_add_region(gm, G_BASE, G_SIZE, G_UVA, gmem);
}

/* ---------------------------------------------------------------------------------------------------------------
 * guest memory
 * --------------------------------------------------------------------------------------------------------------- */
static void test_guest_memory(void)
{
    static uint8_t a[4096], b[4096], c[4096];
    struct guest_memory gm;
    uint8_t *p;
    struct iovec iov[4];
    unsigned n;

    TEST("gm: region validation");
    gm_init(&gm);
    CHECK(gm_add_region(&gm, 0, 0, 0x1000, a) == HV_ERR_GM_BAD_REGION);                 /* zero size */
    CHECK(gm_add_region(&gm, UINT64_MAX - 10, 4096, 0x1000, a) == HV_ERR_GM_BAD_REGION);/* gpa overflow */
    CHECK(gm_add_region(&gm, 0, 4096, UINT64_MAX - 10, a) == HV_ERR_GM_BAD_REGION);      /* uva overflow */
    CHECK(gm_add_region(&gm, 0x1000, 4096, 0x10000, a) == HV_OK);
    CHECK(gm_add_region(&gm, 0x1800, 4096, 0x20000, b) == HV_ERR_GM_BAD_REGION);        /* overlaps gpa */
    CHECK(gm_add_region(&gm, 0x2000, 4096, 0x10800, b) == HV_ERR_GM_BAD_REGION);        /* overlaps uva */
    CHECK(gm_add_region(&gm, 0x2000, 4096, 0x11000, b) == HV_OK);                        /* adjacent to first */
    CHECK(gm_add_region(&gm, 0x4000, 4096, 0x20000, c) == HV_OK);                        /* after a hole */

    TEST("gm: translate inside, at edges, outside");
    CHECK(gm_translate(&gm, 0x1000, 4096, &p) == HV_OK && p == a);
    CHECK(gm_translate(&gm, 0x1fff, 1, &p) == HV_OK && p == a + 4095);
    CHECK(gm_translate(&gm, 0x1fff, 2, &p) == HV_ERR_GM_ADDR_NOT_MAPPED); /* crosses into next region */
    CHECK(gm_translate(&gm, 0x0fff, 1, &p) == HV_ERR_GM_ADDR_NOT_MAPPED);
    CHECK(gm_translate(&gm, 0x3000, 1, &p) == HV_ERR_GM_ADDR_NOT_MAPPED); /* hole */
    CHECK(gm_translate(&gm, 0x1000, UINT64_MAX, &p) == HV_ERR_GM_ADDR_NOT_MAPPED);
    CHECK(gm_translate(&gm, UINT64_MAX, 2, &p) == HV_ERR_GM_ADDR_NOT_MAPPED);
    CHECK(gm_translate(&gm, 0x1800, UINT64_MAX - 0x1000, &p) == HV_ERR_GM_ADDR_NOT_MAPPED);

    TEST("gm: iov spanning adjacent regions");
    n = 0;
    CHECK(gm_translate_iov(&gm, 0x1f00, 0x200, iov, 4, &n) == HV_OK);
    CHECK(n == 2 && iov[0].iov_base == a + 0xf00 && iov[0].iov_len == 0x100 && iov[1].iov_base == b &&
          iov[1].iov_len == 0x100);
    TEST("gm: iov spanning into a hole is rejected");
    n = 0;
    CHECK(gm_translate_iov(&gm, 0x2f00, 0x200, iov, 4, &n) == HV_ERR_GM_ADDR_NOT_MAPPED);
    CHECK(n == 0);
    TEST("gm: iov capacity");
    n = 3;
    CHECK(gm_translate_iov(&gm, 0x1f00, 0x200, iov, 4, &n) == HV_ERR_GM_TOO_MANY_SEGMENTS);
    TEST("gm: huge length does not wrap");
    n = 0;
    CHECK(gm_translate_iov(&gm, 0x1000, UINT64_MAX, iov, 4, &n) == HV_ERR_GM_ADDR_NOT_MAPPED);
    TEST("gm: zero length must still point into memory");
    n = 0;
    CHECK(gm_translate_iov(&gm, 0x1000, 0, iov, 4, &n) == HV_OK && n == 0);
    CHECK(gm_translate_iov(&gm, 0x3000, 0, iov, 4, &n) == HV_ERR_GM_ADDR_NOT_MAPPED);
    TEST("gm: user addresses");
    CHECK(gm_uva_to_host(&gm, 0x10010, 16, &p) == HV_OK && p == a + 0x10);
    CHECK(gm_uva_to_host(&gm, 0x10ff0, 32, &p) == HV_ERR_GM_ADDR_NOT_MAPPED); /* spans two mappings */
    CHECK(gm_uva_to_host(&gm, 0x30000, 1, &p) == HV_ERR_GM_ADDR_NOT_MAPPED);
    gm_clear(&gm);
    CHECK(gm.n == 0);
}

/* ---------------------------------------------------------------------------------------------------------------
 * virtqueue
 * --------------------------------------------------------------------------------------------------------------- */
static void test_virtqueue(void)
{
    struct guest_memory gm;
    struct vq vq;
    static struct vq_chain ch;
    enum hv_err err;

    TEST("vq: empty ring");
    fresh_guest(&gm);
    setup_vq(&vq, &gm, 0);
    CHECK(vq_ready(&vq));
    CHECK(vq_pop(&vq, &ch, &err) == VQ_POP_EMPTY);

    TEST("vq: readable then writable chain");
    g_desc(0, 0, G_BASE + BUF_OFF, 44, VIRTQ_DESC_F_NEXT, 1);
    g_desc(0, 1, G_BASE + BUF_OFF + 100, 100, VIRTQ_DESC_F_NEXT, 2);
    g_desc(0, 2, G_BASE + BUF_OFF + 1000, 512, VIRTQ_DESC_F_WRITE, 0);
    g_avail_push(0, 0);
    CHECK(vq_pop(&vq, &ch, &err) == VQ_POP_OK);
    CHECK(ch.head == 0 && ch.ndesc == 3 && ch.nread == 2 && ch.nwrite == 1 && ch.read_len == 144 &&
          ch.write_len == 512);
    CHECK(ch.iov[0].iov_base == gmem + BUF_OFF && ch.iov[2].iov_base == gmem + BUF_OFF + 1000);
    vq_push(&vq, ch.head, 7);
    uint32_t id, len;
    g_used_elem(0, 0, &id, &len);
    CHECK(g_used_idx(0) == 1 && id == 0 && len == 7);

    TEST("vq: descriptor loop is capped at queue size");
    g_desc(0, 3, G_BASE + BUF_OFF, 8, VIRTQ_DESC_F_NEXT, 4);
    g_desc(0, 4, G_BASE + BUF_OFF, 8, VIRTQ_DESC_F_NEXT, 3);
    g_avail_push(0, 3);
    CHECK(vq_pop(&vq, &ch, &err) == VQ_POP_BAD_CHAIN && err == HV_ERR_VQ_CHAIN_TOO_LONG && ch.head == 3);

    TEST("vq: chain of exactly queue size is fine");
    for (unsigned i = 0; i < QN; i++)
        g_desc(0, i, G_BASE + BUF_OFF + i, 1, i + 1 < QN ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
    g_avail_push(0, 0);
    CHECK(vq_pop(&vq, &ch, &err) == VQ_POP_OK && ch.ndesc == QN && ch.read_len == QN);

    TEST("vq: next out of range");
    g_desc(0, 5, G_BASE + BUF_OFF, 8, VIRTQ_DESC_F_NEXT, QN);
    g_avail_push(0, 5);
    CHECK(vq_pop(&vq, &ch, &err) == VQ_POP_BAD_CHAIN && err == HV_ERR_VQ_NEXT_OUT_OF_RANGE);

    TEST("vq: head out of range");
    g_avail_push(0, 999);
    CHECK(vq_pop(&vq, &ch, &err) == VQ_POP_BAD_CHAIN && err == HV_ERR_VQ_HEAD_OUT_OF_RANGE);

    TEST("vq: buffer outside guest memory");
    g_desc(0, 6, G_BASE + G_SIZE - 4, 8, 0, 0);
    g_avail_push(0, 6);
    CHECK(vq_pop(&vq, &ch, &err) == VQ_POP_BAD_CHAIN && err == HV_ERR_VQ_DESC_NOT_MAPPED);
    g_desc(0, 6, UINT64_MAX - 2, 8, 0, 0);
    g_avail_push(0, 6);
    CHECK(vq_pop(&vq, &ch, &err) == VQ_POP_BAD_CHAIN && err == HV_ERR_VQ_DESC_NOT_MAPPED);
    g_desc(0, 6, 0, 8, 0, 0);
    g_avail_push(0, 6);
    CHECK(vq_pop(&vq, &ch, &err) == VQ_POP_BAD_CHAIN && err == HV_ERR_VQ_DESC_NOT_MAPPED);

    TEST("vq: readable after writable");
    g_desc(0, 7, G_BASE + BUF_OFF, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 8);
    g_desc(0, 8, G_BASE + BUF_OFF, 8, 0, 0);
    g_avail_push(0, 7);
    CHECK(vq_pop(&vq, &ch, &err) == VQ_POP_BAD_CHAIN && err == HV_ERR_VQ_READABLE_AFTER_WRITABLE);

    TEST("vq: indirect descriptors refused");
    g_desc(0, 9, G_BASE + BUF_OFF, 32, VIRTQ_DESC_F_INDIRECT, 0);
    g_avail_push(0, 9);
    CHECK(vq_pop(&vq, &ch, &err) == VQ_POP_BAD_CHAIN && err == HV_ERR_VQ_INDIRECT_NOT_SUPPORTED);

    TEST("vq: huge lengths are capped");
    g_desc(0, 10, G_BASE, 0xffffffffu, 0, 0);
    g_avail_push(0, 10);
    CHECK(vq_pop(&vq, &ch, &err) == VQ_POP_BAD_CHAIN && err == HV_ERR_VQ_CHAIN_TOO_BIG);

    TEST("vq: zero-length descriptors are skipped");
    g_desc(0, 11, G_BASE + BUF_OFF, 0, VIRTQ_DESC_F_NEXT, 12);
    g_desc(0, 12, G_BASE + BUF_OFF, 4, 0, 0);
    g_avail_push(0, 11);
    CHECK(vq_pop(&vq, &ch, &err) == VQ_POP_OK && ch.nread == 1 && ch.read_len == 4);

    TEST("vq: avail idx running too far ahead breaks the ring");
    g_set_avail_idx(0, (uint16_t)(vq.last_avail_idx + QN + 1));
    CHECK(vq_pop(&vq, &ch, &err) == VQ_POP_BROKEN && err == HV_ERR_VQ_AVAIL_IDX_TOO_FAR);
    CHECK(!vq_ready(&vq));
    CHECK(vq_avail_count(&vq) == 0);

    TEST("vq: unpop gives the chain back");
    fresh_guest(&gm);
    setup_vq(&vq, &gm, 0);
    g_desc(0, 0, G_BASE + BUF_OFF, 4, 0, 0);
    g_avail_push(0, 0);
    CHECK(vq_pop(&vq, &ch, &err) == VQ_POP_OK);
    vq_unpop(&vq);
    CHECK(vq_avail_count(&vq) == 1);

    TEST("vq: not ready when disabled or unmapped");
    vq.enabled = false;
    CHECK(vq_pop(&vq, &ch, &err) == VQ_POP_EMPTY);
    vq.enabled = true;
    vq.used_uva = G_UVA + G_SIZE - 8; /* used ring would run past the region */
    CHECK(vq_map(&vq) == HV_ERR_VU_BAD_RING_ADDR && !vq_ready(&vq));
    vq.used_uva = G_UVA + USED_OFF(0) + 2; /* misaligned */
    CHECK(vq_map(&vq) == HV_ERR_VU_BAD_RING_ADDR);

    TEST("vq: event idx notification suppression");
    fresh_guest(&gm);
    setup_vq(&vq, &gm, 0);
    vq.event_idx = true;
    vq.call_fd = -1;
    vq_push(&vq, 0, 0);
    CHECK(vq_should_signal(&vq)); /* first signal always */
    uint16_t used_event = 5;      /* guest wants an interrupt when used idx passes 5 */
    memcpy(gmem + AVAIL_OFF(0) + 4 + 2 * QN, &used_event, 2);
    vq_push(&vq, 0, 0);
    CHECK(!vq_should_signal(&vq)); /* idx 2 */
    for (int i = 0; i < 4; i++)
        vq_push(&vq, 0, 0);
    CHECK(vq_should_signal(&vq)); /* idx 6 crosses 5 */
    CHECK(!vq_should_signal(&vq)); /* nothing new */
    TEST("vq: NO_INTERRUPT without event idx");
    vq.event_idx = false;
    uint16_t flags = VRING_AVAIL_F_NO_INTERRUPT;
    memcpy(gmem + AVAIL_OFF(0), &flags, 2);
    vq_push(&vq, 0, 0);
    CHECK(!vq_should_signal(&vq));
    TEST("vq: enable kicks writes avail_event");
    vq.event_idx = true;
    vq.last_avail_idx = 9;
    g_set_avail_idx(0, 9);
    CHECK(!vq_enable_kicks(&vq));
    uint16_t avail_event;
    memcpy(&avail_event, gmem + USED_OFF(0) + 4 + 8 * QN, 2);
    CHECK(avail_event == 9);

    TEST("iov helpers");
    uint8_t x[3] = { 1, 2, 3 }, y[4] = { 0 }, out[7];
    struct iovec v[2] = { { x, 3 }, { y, 4 } };
    CHECK(iov_copy_to(v, 2, 2, "abcd", 4) == 4 && x[2] == 'a' && y[2] == 'd');
    CHECK(iov_copy_from(v, 2, 0, out, 10) == 7 && out[3] == 'b');
    CHECK(iov_copy_from(v, 2, 7, out, 10) == 0);
    struct iovec s[2];
    CHECK(iov_slice(v, 2, 1, 4, s, 2) == 2 && s[0].iov_len == 2 && s[1].iov_len == 2 && s[1].iov_base == y);
    CHECK(iov_slice(v, 2, 1, 4, s, 1) == 1);
}

/* ---------------------------------------------------------------------------------------------------------------
 * packets
 * --------------------------------------------------------------------------------------------------------------- */
static struct vq_chain *chain_of(uint8_t *buf, size_t len)
{
    static struct vq_chain ch;
    memset(&ch, 0, offsetof(struct vq_chain, iov));
    ch.iov[0].iov_base = buf;
    ch.iov[0].iov_len = len;
    ch.nread = 1;
    ch.read_len = len;
    return &ch;
}

static size_t make_pkt(uint8_t *buf, uint64_t src_cid, uint32_t src_port, uint32_t dst_port, uint16_t op,
                       uint16_t type, uint32_t len, uint32_t flags, uint32_t buf_alloc, uint32_t fwd_cnt)
{
    struct vsock_hdr h = { src_cid, VSOCK_HOST_CID, src_port, dst_port, len, type, op, flags, buf_alloc, fwd_cnt };
    pkt_hdr_encode(&h, buf);
    return VSOCK_HDR_SIZE + len;
}

static void test_packets(void)
{
    uint8_t buf[256];
    struct vsock_hdr h;
    enum hv_err err;

    TEST("pkt: encode/decode round trip");
    struct vsock_hdr a = { 3, 2, 1234, 5678, 9, 1, 5, 3, 65536, 42 }, b;
    pkt_hdr_encode(&a, buf);
    pkt_hdr_decode(buf, &b);
    CHECK(!memcmp(&a, &b, sizeof a));
    CHECK(buf[0] == 3 && buf[16] == (1234 & 0xff) && buf[30] == 5); /* little-endian, spec offsets */

    TEST("pkt: good RW");
    size_t n = make_pkt(buf, 3, 100, 200, VSOCK_OP_RW, VSOCK_TYPE_STREAM, 10, 0, 4096, 0);
    CHECK(pkt_parse_tx(chain_of(buf, n), 3, &h, &err) == PKT_OK && h.len == 10);

    TEST("pkt: short header dropped");
    CHECK(pkt_parse_tx(chain_of(buf, 43), 3, &h, &err) == PKT_DROP && err == HV_ERR_PKT_HDR_TOO_SHORT);
    CHECK(pkt_parse_tx(chain_of(buf, 0), 3, &h, &err) == PKT_DROP);

    TEST("pkt: header split across descriptors");
    {
        static struct vq_chain ch;
        memset(&ch, 0, offsetof(struct vq_chain, iov));
        make_pkt(buf, 3, 100, 200, VSOCK_OP_REQUEST, VSOCK_TYPE_STREAM, 0, 0, 4096, 0);
        ch.iov[0] = (struct iovec){ buf, 10 };
        ch.iov[1] = (struct iovec){ buf + 10, 34 };
        ch.nread = 2;
        ch.read_len = 44;
        CHECK(pkt_parse_tx(&ch, 3, &h, &err) == PKT_OK && h.op == VSOCK_OP_REQUEST && h.dst_port == 200);
    }

    TEST("pkt: wrong source CID dropped (no spoofing)");
    n = make_pkt(buf, 4, 100, 200, VSOCK_OP_RW, VSOCK_TYPE_STREAM, 0, 0, 4096, 0);
    CHECK(pkt_parse_tx(chain_of(buf, n), 3, &h, &err) == PKT_DROP && err == HV_ERR_PKT_BAD_SRC_CID);
    TEST("pkt: wrong destination CID dropped");
    n = make_pkt(buf, 3, 100, 200, VSOCK_OP_RW, VSOCK_TYPE_STREAM, 0, 0, 4096, 0);
    buf[8] = 7;
    CHECK(pkt_parse_tx(chain_of(buf, n), 3, &h, &err) == PKT_DROP && err == HV_ERR_PKT_BAD_DST_CID);

    TEST("pkt: bad type → RST");
    n = make_pkt(buf, 3, 100, 200, VSOCK_OP_REQUEST, VSOCK_TYPE_SEQPACKET, 0, 0, 4096, 0);
    CHECK(pkt_parse_tx(chain_of(buf, n), 3, &h, &err) == PKT_RST && err == HV_ERR_PKT_BAD_TYPE);
    n = make_pkt(buf, 3, 100, 200, VSOCK_OP_REQUEST, 77, 0, 0, 4096, 0);
    CHECK(pkt_parse_tx(chain_of(buf, n), 3, &h, &err) == PKT_RST);
    TEST("pkt: bad op → RST");
    n = make_pkt(buf, 3, 100, 200, 0, VSOCK_TYPE_STREAM, 0, 0, 4096, 0);
    CHECK(pkt_parse_tx(chain_of(buf, n), 3, &h, &err) == PKT_RST && err == HV_ERR_PKT_BAD_OP);
    n = make_pkt(buf, 3, 100, 200, 8, VSOCK_TYPE_STREAM, 0, 0, 4096, 0);
    CHECK(pkt_parse_tx(chain_of(buf, n), 3, &h, &err) == PKT_RST && err == HV_ERR_PKT_BAD_OP);
    TEST("pkt: RST with bad type is still an RST (never answered)");
    n = make_pkt(buf, 3, 100, 200, VSOCK_OP_RST, 77, 0, 0, 4096, 0);
    CHECK(pkt_parse_tx(chain_of(buf, n), 3, &h, &err) == PKT_OK && h.op == VSOCK_OP_RST);

    TEST("pkt: len beyond chain → RST");
    make_pkt(buf, 3, 100, 200, VSOCK_OP_RW, VSOCK_TYPE_STREAM, 100, 0, 4096, 0);
    CHECK(pkt_parse_tx(chain_of(buf, 44 + 99), 3, &h, &err) == PKT_RST && err == HV_ERR_PKT_LEN_EXCEEDS_CHAIN);
    TEST("pkt: len beyond 64 KiB → RST");
    make_pkt(buf, 3, 100, 200, VSOCK_OP_RW, VSOCK_TYPE_STREAM, 0x10001, 0, 4096, 0);
    CHECK(pkt_parse_tx(chain_of(buf, 200), 3, &h, &err) == PKT_RST && err == HV_ERR_PKT_LEN_TOO_BIG);

    TEST("pkt: tx chain with writable part dropped");
    {
        struct vq_chain *ch = chain_of(buf, 44);
        ch->nwrite = 1;
        CHECK(pkt_parse_tx(ch, 3, &h, &err) == PKT_DROP && err == HV_ERR_PKT_TX_HAS_WRITABLE);
    }
}

/* ---------------------------------------------------------------------------------------------------------------
 * hybrid CONNECT line
 * --------------------------------------------------------------------------------------------------------------- */
static void test_connect_line(void)
{
    uint32_t port = 0;
    TEST("hybrid: CONNECT parsing");
    CHECK(hybrid_parse_connect("CONNECT 1024\n", 13, &port) == 0 && port == 1024);
    CHECK(hybrid_parse_connect("connect 5\n", 10, &port) == 0 && port == 5);
    CHECK(hybrid_parse_connect("CoNnEcT 4294967295\n", 19, &port) == 0 && port == 4294967295u);
    CHECK(hybrid_parse_connect("CONNECT 7\r\n", 11, &port) == 0 && port == 7);
    CHECK(hybrid_parse_connect("CONNECT 4294967296\n", 19, &port) < 0);
    CHECK(hybrid_parse_connect("CONNECT\n", 8, &port) < 0);
    CHECK(hybrid_parse_connect("CONNECT \n", 9, &port) < 0);
    CHECK(hybrid_parse_connect("CONNECT -1\n", 11, &port) < 0);
    CHECK(hybrid_parse_connect("CONNECT 12x\n", 12, &port) < 0);
    CHECK(hybrid_parse_connect("CONNECTX 12\n", 12, &port) < 0);
    CHECK(hybrid_parse_connect("LISTEN 12\n", 10, &port) < 0);
    CHECK(hybrid_parse_connect("CONNECT 000000000000000000000012\n", 33, &port) < 0); /* > 32 bytes */
    CHECK(hybrid_parse_connect("", 0, &port) < 0);
}

/* ---------------------------------------------------------------------------------------------------------------
 * device + connections, with real Unix sockets on the host side
 * --------------------------------------------------------------------------------------------------------------- */
static char tmpdir[64];
static char uds[128];

static int listen_at(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path)
        return -1;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 8) < 0)
        return -1;
    return fd;
}

/* Build a tx packet in guest memory at BUF_OFF + slot*0x1000 and run it through the device directly. */
static void send_from_guest(struct vsock_dev *dev, uint32_t src_port, uint32_t dst_port, uint16_t op, const void *payload,
                            uint32_t len, uint32_t flags, uint32_t buf_alloc, uint32_t fwd_cnt)
{
    static uint8_t pkt[70000];
    static struct vq_chain ch;
    make_pkt(pkt, 3, src_port, dst_port, op, VSOCK_TYPE_STREAM, len, flags, buf_alloc, fwd_cnt);
    if (len)
        memcpy(pkt + VSOCK_HDR_SIZE, payload, len);
    memset(&ch, 0, offsetof(struct vq_chain, iov));
    ch.iov[0] = (struct iovec){ pkt, VSOCK_HDR_SIZE + len };
    ch.nread = 1;
    ch.read_len = VSOCK_HDR_SIZE + len;
    dev_handle_tx_chain(dev, &ch);
}

/* Give the device one rx buffer and let it fill it; returns used length (0 if nothing was sent). */
static uint32_t take_from_device(struct vsock_dev *dev, struct vsock_hdr *h, uint8_t *payload, size_t cap)
{
    static unsigned slot;
    unsigned d = (slot++) % QN;
    uint64_t buf = G_BASE + BUF_OFF + 0x20000 + d * 0x1000;
    g_desc(HV_RXQ, d, buf, 4096, VIRTQ_DESC_F_WRITE, 0);
    uint16_t before = g_used_idx(HV_RXQ);
    g_avail_push(HV_RXQ, (uint16_t)d);
    dev_process_rx(dev);
    if (g_used_idx(HV_RXQ) == before) {
        /* nothing sent: take the buffer back so the ring stays consistent */
        g_set_avail_idx(HV_RXQ, (uint16_t)(g_avail_idx(HV_RXQ) - 1));
        return 0;
    }
    uint32_t id, len;
    g_used_elem(HV_RXQ, before % QN, &id, &len);
    uint8_t *p = gmem + BUF_OFF + 0x20000 + id * 0x1000;
    pkt_hdr_decode(p, h);
    if (payload && len > VSOCK_HDR_SIZE)
        memcpy(payload, p + VSOCK_HDR_SIZE, len - VSOCK_HDR_SIZE < cap ? len - VSOCK_HDR_SIZE : cap);
    return len;
}

static void test_device(void)
{
    static struct vsock_dev dev;
    struct guest_memory *gm = &dev.mem;
    struct vsock_hdr h;
    static uint8_t payload[70000];

    snprintf(tmpdir, sizeof tmpdir, "/tmp/hvsk-unit-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        failed++;
        return;
    }
    snprintf(uds, sizeof uds, "%s/v.sock", tmpdir);
    dev_init(&dev, 3, uds, -1);
    memset(gmem, 0, G_SIZE);
    gm_add_region(gm, G_BASE, G_SIZE, G_UVA, gmem);
    setup_vq(&dev.vqs[HV_RXQ], gm, HV_RXQ);
    setup_vq(&dev.vqs[HV_TXQ], gm, HV_TXQ);

    char path[160];
    snprintf(path, sizeof path, "%s_%u", uds, 700);
    int lfd = listen_at(path);
    CHECK(lfd >= 0);

    TEST("dev: REQUEST to a port nobody listens on → RST");
    send_from_guest(&dev, 5555, 701, VSOCK_OP_REQUEST, NULL, 0, 0, 65536, 0);
    CHECK(take_from_device(&dev, &h, NULL, 0) == VSOCK_HDR_SIZE && h.op == VSOCK_OP_RST && h.dst_port == 5555 &&
          h.src_port == 701 && h.dst_cid == 3 && h.src_cid == 2);
    CHECK(take_from_device(&dev, &h, NULL, 0) == 0);

    TEST("dev: packet for an unknown connection → RST; RST for unknown → nothing");
    send_from_guest(&dev, 5555, 702, VSOCK_OP_RW, "x", 1, 0, 65536, 0);
    CHECK(take_from_device(&dev, &h, NULL, 0) && h.op == VSOCK_OP_RST);
    send_from_guest(&dev, 5555, 702, VSOCK_OP_RST, NULL, 0, 0, 65536, 0);
    CHECK(take_from_device(&dev, &h, NULL, 0) == 0);

    TEST("dev: guest-initiated connection to <uds>_700");
    send_from_guest(&dev, 4000, 700, VSOCK_OP_REQUEST, NULL, 0, 0, 65536, 0);
    CHECK(take_from_device(&dev, &h, NULL, 0) && h.op == VSOCK_OP_RESPONSE && h.src_port == 700 &&
          h.dst_port == 4000 && h.buf_alloc == HV_CONN_BUF_ALLOC);
    int hfd = accept(lfd, NULL, NULL);
    CHECK(hfd >= 0);
    struct conn *c = dev_conn_find(&dev, 700, 4000);
    CHECK(c != NULL && c->state == CONN_ESTABLISHED);

    TEST("dev: guest → host data");
    send_from_guest(&dev, 4000, 700, VSOCK_OP_RW, "hello", 5, 0, 65536, 0);
    char rb[64];
    CHECK(read(hfd, rb, sizeof rb) == 5 && !memcmp(rb, "hello", 5));
    CHECK(c->rx_cnt == 5 && c->fwd_cnt == 5);

    TEST("dev: host → guest data limited by guest credit");
    c->peer_buf_alloc = 100; /* the guest said it can hold 100 bytes */
    CHECK(conn_read_budget(c) == 100);
    memset(payload, 'z', 300);
    CHECK(write(hfd, payload, 300) == 300);
    hybrid_read_h2g(&dev, c);
    conn_update(&dev, c);
    CHECK(c->h2g.len == 100);           /* read only what the guest has credit for */
    CHECK(conn_read_budget(c) == 0);    /* and then stop reading */
    uint32_t got = take_from_device(&dev, &h, payload, sizeof payload);
    CHECK(got == VSOCK_HDR_SIZE + 100 && h.op == VSOCK_OP_RW && h.len == 100 && payload[99] == 'z');
    CHECK(conn_peer_free(c) == 0 && c->tx_cnt == 100);
    TEST("dev: no credit → CREDIT_REQUEST, no data");
    hybrid_read_h2g(&dev, c);
    CHECK(c->h2g.len == 0);
    TEST("dev: credit update from the guest reopens the window");
    send_from_guest(&dev, 4000, 700, VSOCK_OP_CREDIT_UPDATE, NULL, 0, 0, 100, 100);
    CHECK(conn_peer_free(c) == 100 && conn_read_budget(c) == 100);
    hybrid_read_h2g(&dev, c);
    conn_update(&dev, c);
    got = take_from_device(&dev, &h, payload, sizeof payload);
    CHECK(got == VSOCK_HDR_SIZE + 100 && h.op == VSOCK_OP_RW);
    TEST("dev: guest shrinking buf_alloc below in-flight does not underflow");
    send_from_guest(&dev, 4000, 700, VSOCK_OP_CREDIT_UPDATE, NULL, 0, 0, 10, 100);
    CHECK(conn_peer_free(c) == 0 && conn_read_budget(c) == 0);
    hybrid_read_h2g(&dev, c);
    conn_update(&dev, c);
    while (take_from_device(&dev, &h, NULL, 0))
        CHECK(h.op != VSOCK_OP_RW);

    TEST("dev: a 44-byte rx buffer with data pending is consumed, not spun on");
    {
        send_from_guest(&dev, 4000, 700, VSOCK_OP_CREDIT_UPDATE, NULL, 0, 0, 65536, 200);
        hybrid_read_h2g(&dev, c); /* the 100 bytes still waiting in the host socket */
        conn_update(&dev, c);
        CHECK(c->h2g.len == 100);
        unsigned d = 15;
        g_desc(HV_RXQ, d, G_BASE + BUF_OFF + 0x30000, VSOCK_HDR_SIZE, VIRTQ_DESC_F_WRITE, 0);
        uint16_t before = g_used_idx(HV_RXQ);
        g_avail_push(HV_RXQ, (uint16_t)d);
        dev_process_rx(&dev); /* must return */
        CHECK(g_used_idx(HV_RXQ) == (uint16_t)(before + 1));
        got = take_from_device(&dev, &h, payload, sizeof payload);
        CHECK(got == VSOCK_HDR_SIZE + 100 && h.op == VSOCK_OP_RW);
    }

    TEST("dev: CREDIT_REQUEST is answered with CREDIT_UPDATE");
    send_from_guest(&dev, 4000, 700, VSOCK_OP_CREDIT_REQUEST, NULL, 0, 0, 65536, 200);
    CHECK(take_from_device(&dev, &h, NULL, 0) && h.op == VSOCK_OP_CREDIT_UPDATE && h.fwd_cnt == 5);

    TEST("dev: credit update after enough bytes were forwarded");
    {
        uint32_t sent = 0;
        while (sent < HV_CREDIT_UPDATE_THRESHOLD) {
            send_from_guest(&dev, 4000, 700, VSOCK_OP_RW, payload, 60000, 0, 65536, 200);
            sent += 60000;
            /* drain the host side so nothing stays buffered */
            static char sinkb[70000];
            size_t left = 60000;
            while (left) {
                ssize_t r = read(hfd, sinkb, left < sizeof sinkb ? left : sizeof sinkb);
                if (r <= 0)
                    break;
                left -= (size_t)r;
            }
        }
        CHECK(c->send_credit_update);
        CHECK(take_from_device(&dev, &h, NULL, 0) && h.op == VSOCK_OP_CREDIT_UPDATE && h.fwd_cnt == c->fwd_cnt);
    }

    TEST("dev: guest exceeding its credit gets RST");
    {
        /* fill the host socket so data stays in our buffer, then push past buf_alloc */
        int sz = 4096;
        setsockopt(hfd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        uint32_t outstanding = 0;
        int rounds = 0;
        while (c->state == CONN_ESTABLISHED && rounds++ < 20) {
            send_from_guest(&dev, 4000, 700, VSOCK_OP_RW, payload, 60000, 0, 65536, 200);
            outstanding = c->rx_cnt - c->fwd_cnt;
        }
        (void)outstanding;
        CHECK(c->state == CONN_RST_PENDING);
        CHECK(hv_err_count[HV_ERR_CONN_CREDIT_VIOLATION] >= 1);
        CHECK(take_from_device(&dev, &h, NULL, 0) && h.op == VSOCK_OP_RST && h.dst_port == 4000);
        CHECK(dev_conn_find(&dev, 700, 4000) == NULL);
        char x;
        ssize_t r;
        while ((r = read(hfd, payload, sizeof payload)) > 0)
            ;
        CHECK(r == 0 || (r < 0 && errno == ECONNRESET)); /* host side closed */
        (void)x;
    }
    close(hfd);
    dev_reap(&dev);

    TEST("dev: orderly close — guest SHUTDOWN both → host EOF + RST to guest");
    send_from_guest(&dev, 4001, 700, VSOCK_OP_REQUEST, NULL, 0, 0, 65536, 0);
    CHECK(take_from_device(&dev, &h, NULL, 0) && h.op == VSOCK_OP_RESPONSE);
    hfd = accept(lfd, NULL, NULL);
    send_from_guest(&dev, 4001, 700, VSOCK_OP_RW, "bye", 3, 0, 65536, 0);
    send_from_guest(&dev, 4001, 700, VSOCK_OP_SHUTDOWN, NULL, 0, VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND, 65536, 0);
    CHECK(read(hfd, rb, sizeof rb) == 3);
    CHECK(read(hfd, rb, sizeof rb) == 0);
    CHECK(take_from_device(&dev, &h, NULL, 0) && h.op == VSOCK_OP_RST && h.dst_port == 4001);
    CHECK(dev_conn_find(&dev, 700, 4001) == NULL);
    close(hfd);

    TEST("dev: host EOF → SHUTDOWN(SEND) to guest, then SHUTDOWN both + timeout RST");
    send_from_guest(&dev, 4002, 700, VSOCK_OP_REQUEST, NULL, 0, 0, 65536, 0);
    CHECK(take_from_device(&dev, &h, NULL, 0) && h.op == VSOCK_OP_RESPONSE);
    hfd = accept(lfd, NULL, NULL);
    c = dev_conn_find(&dev, 700, 4002);
    CHECK(write(hfd, "ab", 2) == 2);
    shutdown(hfd, SHUT_WR);
    hybrid_read_h2g(&dev, c);
    hybrid_read_h2g(&dev, c);
    conn_update(&dev, c);
    CHECK(c->host_eof);
    CHECK(take_from_device(&dev, &h, payload, 10) && h.op == VSOCK_OP_RW && h.len == 2);
    CHECK(take_from_device(&dev, &h, NULL, 0) && h.op == VSOCK_OP_SHUTDOWN && h.flags == VSOCK_SHUTDOWN_SEND);
    send_from_guest(&dev, 4002, 700, VSOCK_OP_SHUTDOWN, NULL, 0, VSOCK_SHUTDOWN_SEND, 65536, 2);
    CHECK(c->state == CONN_CLOSING);
    CHECK(take_from_device(&dev, &h, NULL, 0) && h.op == VSOCK_OP_SHUTDOWN && h.flags == 3);
    dev_timers(&dev, hv_now_ms() + HV_SHUTDOWN_TIMEOUT_MS + 1);
    CHECK(take_from_device(&dev, &h, NULL, 0) && h.op == VSOCK_OP_RST);
    CHECK(dev_conn_find(&dev, 700, 4002) == NULL);
    close(hfd);

    TEST("dev: host-initiated connection: REQUEST, RESPONSE → OK line");
    {
        int sp[2];
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp);
        c = dev_conn_new(&dev, sp[0], CONN_LOCAL_INIT);
        dev_conn_bind(&dev, c, dev_alloc_local_port(&dev, 1024), 1024);
        c->send_request = true;
        conn_set_deadline(&dev, c, hv_now_ms() + HV_CONN_REQUEST_TIMEOUT_MS);
        conn_update(&dev, c);
        CHECK(take_from_device(&dev, &h, NULL, 0) && h.op == VSOCK_OP_REQUEST && h.dst_port == 1024 &&
              h.src_port >= HV_LOCAL_PORT_BASE);
        uint32_t lp = h.src_port;
        send_from_guest(&dev, 1024, lp, VSOCK_OP_RESPONSE, NULL, 0, 0, 65536, 0);
        char line[32] = { 0 };
        CHECK(read(sp[1], line, sizeof line - 1) > 0);
        char want[32];
        snprintf(want, sizeof want, "OK %u\n", lp);
        CHECK(!strcmp(line, want));
        CHECK(c->fwd_cnt == 0); /* the OK line is not guest payload */
        TEST("dev: unexpected RESPONSE on an established connection → RST");
        send_from_guest(&dev, 1024, lp, VSOCK_OP_RESPONSE, NULL, 0, 0, 65536, 0);
        CHECK(take_from_device(&dev, &h, NULL, 0) && h.op == VSOCK_OP_RST);
        close(sp[1]);
    }

    TEST("dev: host-initiated connection refused (guest RST) / timed out");
    {
        int sp[2];
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp);
        c = dev_conn_new(&dev, sp[0], CONN_LOCAL_INIT);
        dev_conn_bind(&dev, c, dev_alloc_local_port(&dev, 1025), 1025);
        c->send_request = true;
        conn_update(&dev, c);
        CHECK(take_from_device(&dev, &h, NULL, 0) && h.op == VSOCK_OP_REQUEST);
        send_from_guest(&dev, 1025, h.src_port, VSOCK_OP_RST, NULL, 0, 0, 0, 0);
        char x;
        CHECK(read(sp[1], &x, 1) == 0); /* client closed, no OK */
        close(sp[1]);

        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp);
        c = dev_conn_new(&dev, sp[0], CONN_LOCAL_INIT);
        dev_conn_bind(&dev, c, dev_alloc_local_port(&dev, 1026), 1026);
        c->send_request = true;
        conn_set_deadline(&dev, c, hv_now_ms() + HV_CONN_REQUEST_TIMEOUT_MS);
        conn_update(&dev, c);
        CHECK(take_from_device(&dev, &h, NULL, 0) && h.op == VSOCK_OP_REQUEST);
        dev_timers(&dev, hv_now_ms() + HV_CONN_REQUEST_TIMEOUT_MS + 1);
        CHECK(read(sp[1], &x, 1) == 0);
        CHECK(take_from_device(&dev, &h, NULL, 0) && h.op == VSOCK_OP_RST && h.dst_port == 1026);
        close(sp[1]);
    }

    TEST("dev: a request the guest never saw times out without an RST");
    {
        int sp[2];
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp);
        c = dev_conn_new(&dev, sp[0], CONN_LOCAL_INIT);
        dev_conn_bind(&dev, c, dev_alloc_local_port(&dev, 1027), 1027);
        c->send_request = true;
        conn_set_deadline(&dev, c, hv_now_ms() + HV_CONN_REQUEST_TIMEOUT_MS);
        conn_update(&dev, c);
        unsigned before = dev.nconns;
        dev_timers(&dev, hv_now_ms() + HV_CONN_REQUEST_TIMEOUT_MS + 1);
        char x;
        CHECK(read(sp[1], &x, 1) == 0);
        CHECK(dev.nconns == before - 1);
        CHECK(take_from_device(&dev, &h, NULL, 0) == 0);
        close(sp[1]);
        dev_reap(&dev);
    }

    TEST("dev: malformed packets → RST, never a crash");
    send_from_guest(&dev, 4003, 700, 99, NULL, 0, 0, 65536, 0);
    CHECK(take_from_device(&dev, &h, NULL, 0) && h.op == VSOCK_OP_RST && h.dst_port == 4003);

    TEST("dev: RST queue is bounded when the guest gives no rx buffers");
    for (int i = 0; i < HV_RSTQ_LEN + 50; i++)
        send_from_guest(&dev, 9000, 701, VSOCK_OP_RW, "x", 1, 0, 65536, 0);
    CHECK(dev.rstq_len == HV_RSTQ_LEN);
    CHECK(hv_err_count[HV_ERR_CONN_RST_QUEUE_FULL] >= 50);
    dev.rstq_len = 0;

    TEST("dev: connection limit");
    {
        unsigned before = dev.nconns;
        struct conn *extra[HV_MAX_CONNS];
        unsigned k = 0;
        while (dev.nconns < HV_MAX_CONNS)
            extra[k++] = dev_conn_new(&dev, -1, CONN_AWAIT_LINE);
        CHECK(dev_conn_new(&dev, -1, CONN_AWAIT_LINE) == NULL);
        send_from_guest(&dev, 4004, 700, VSOCK_OP_REQUEST, NULL, 0, 0, 65536, 0);
        CHECK(dev.rstq_len == 1);
        dev.rstq_len = 0;
        for (unsigned i = 0; i < k; i++)
            dev_conn_destroy(&dev, extra[i]);
        CHECK(dev.nconns == before);
    }

    dev_fini(&dev);
    close(lfd);
    unlink(path);
    rmdir(tmpdir);
}

/* ---------------------------------------------------------------------------------------------------------------
 * vhost-user messages
 * --------------------------------------------------------------------------------------------------------------- */
static enum vu_result msg(struct vsock_dev *dev, uint32_t req, uint32_t flags, const void *payload, uint32_t size,
                          int *fds, unsigned nfds, struct vu_reply *r)
{
    struct vu_hdr h = { req, VU_FLAG_VERSION | flags, size };
    static uint8_t buf[VU_MAX_PAYLOAD];
    if (size && size <= sizeof buf)
        memcpy(buf, payload, size);
    enum vu_result res = vu_handle(dev, &h, buf, fds, nfds, r);
    for (unsigned i = 0; i < nfds; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
    return res;
}

static uint64_t reply_u64(const struct vu_reply *r)
{
    uint64_t v = ~0ull;
    if (r->hdr.size == 8)
        memcpy(&v, r->payload, 8);
    return v;
}

static void test_vhost_user(void)
{
    static struct vsock_dev dev;
    static struct vu_reply r;
    dev_init(&dev, 42, "/nonexistent/v.sock", -1);

    TEST("vu: GET_FEATURES offers VERSION_1, EVENT_IDX, PROTOCOL_FEATURES, not INDIRECT");
    CHECK(msg(&dev, VU_GET_FEATURES, 0, NULL, 0, NULL, 0, &r) == VU_REPLY);
    uint64_t f = reply_u64(&r);
    CHECK(f & (1ull << VIRTIO_F_VERSION_1));
    CHECK(f & (1ull << VIRTIO_RING_F_EVENT_IDX));
    CHECK(f & (1ull << VHOST_USER_F_PROTOCOL_FEATURES));
    CHECK(!(f & (1ull << VIRTIO_RING_F_INDIRECT_DESC)));
    CHECK(r.hdr.flags == (VU_FLAG_VERSION | VU_FLAG_REPLY) && r.hdr.request == VU_GET_FEATURES);

    TEST("vu: protocol features MQ, CONFIG, REPLY_ACK");
    CHECK(msg(&dev, VU_GET_PROTOCOL_FEATURES, 0, NULL, 0, NULL, 0, &r) == VU_REPLY);
    uint64_t pf = reply_u64(&r);
    CHECK(pf & (1ull << VU_PROTOCOL_F_MQ));
    CHECK(pf & (1ull << VU_PROTOCOL_F_CONFIG));
    CHECK(pf & (1ull << VU_PROTOCOL_F_REPLY_ACK));
    CHECK(msg(&dev, VU_SET_PROTOCOL_FEATURES, 0, &pf, 8, NULL, 0, &r) == VU_NO_REPLY);

    TEST("vu: SET_FEATURES");
    uint64_t bad = f | (1ull << VIRTIO_RING_F_INDIRECT_DESC);
    CHECK(msg(&dev, VU_SET_FEATURES, VU_FLAG_NEED_REPLY, &bad, 8, NULL, 0, &r) == VU_REPLY && reply_u64(&r) == 1);
    CHECK(msg(&dev, VU_SET_FEATURES, VU_FLAG_NEED_REPLY, &f, 8, NULL, 0, &r) == VU_REPLY && reply_u64(&r) == 0);
    CHECK(dev.vqs[0].event_idx && !dev.vqs[0].enabled); /* PROTOCOL_FEATURES: rings start disabled */
    CHECK(msg(&dev, VU_SET_FEATURES, VU_FLAG_NEED_REPLY, &f, 4, NULL, 0, &r) == VU_REPLY && reply_u64(&r) == 1);

    TEST("vu: SET_OWNER, GET_QUEUE_NUM, GET_MAX_MEM_SLOTS");
    CHECK(msg(&dev, VU_SET_OWNER, 0, NULL, 0, NULL, 0, &r) == VU_NO_REPLY && dev.owner);
    CHECK(msg(&dev, VU_GET_QUEUE_NUM, 0, NULL, 0, NULL, 0, &r) == VU_REPLY && reply_u64(&r) == HV_NUM_QUEUES);
    CHECK(msg(&dev, VU_GET_MAX_MEM_SLOTS, 0, NULL, 0, NULL, 0, &r) == VU_REPLY && reply_u64(&r) == GM_MAX_REGIONS);

    TEST("vu: GET_CONFIG returns the guest CID");
    struct { uint32_t offset, size, flags; uint8_t data[8]; } cfg = { 0, 8, 0, { 0 } };
    CHECK(msg(&dev, VU_GET_CONFIG, 0, &cfg, 20, NULL, 0, &r) == VU_REPLY && r.hdr.size == 20);
    uint64_t cid;
    memcpy(&cid, r.payload + 12, 8);
    CHECK(cid == 42);
    TEST("vu: GET_CONFIG out of range → empty reply");
    cfg.offset = 4;
    CHECK(msg(&dev, VU_GET_CONFIG, 0, &cfg, 20, NULL, 0, &r) == VU_REPLY && r.hdr.size == 0);
    cfg.offset = 0;
    cfg.size = 300;
    CHECK(msg(&dev, VU_GET_CONFIG, 0, &cfg, 20, NULL, 0, &r) == VU_REPLY && r.hdr.size == 0);
    CHECK(msg(&dev, VU_GET_CONFIG, 0, &cfg, 4, NULL, 0, &r) == VU_REPLY && r.hdr.size == 0);
    cfg.offset = 4;
    cfg.size = 4;
    CHECK(msg(&dev, VU_GET_CONFIG, 0, &cfg, 16, NULL, 0, &r) == VU_REPLY && r.hdr.size == 16);

    TEST("vu: SET_MEM_TABLE maps memfd regions");
    int mfd = memfd_create("guest", 0);
    CHECK(ftruncate(mfd, 2 << 20) == 0);
    struct {
        uint32_t n, pad;
        struct gm_region_desc r[2];
    } mt = { 2, 0, { { 0, 0x100000, 0x7f0000000000ull, 0 }, { 0x100000, 0x100000, 0x7f0000100000ull, 0x100000 } } };
    int fds[8] = { dup(mfd), dup(mfd) };
    CHECK(msg(&dev, VU_SET_MEM_TABLE, VU_FLAG_NEED_REPLY, &mt, 8 + 64, fds, 2, &r) == VU_REPLY && reply_u64(&r) == 0);
    CHECK(dev.mem.n == 2);
    uint8_t *p1, *p2;
    CHECK(gm_translate(&dev.mem, 0x0ffff0, 16, &p1) == HV_OK && gm_translate(&dev.mem, 0x100000, 16, &p2) == HV_OK);
    p2[0] = 0x5a;
    uint8_t back = 0;
    CHECK(pread(mfd, &back, 1, 0x100000) == 1 && back == 0x5a); /* MAP_SHARED of the right offset */

    TEST("vu: SET_MEM_TABLE with bad region count / missing fds / overflow is rejected");
    fds[0] = dup(mfd);
    CHECK(msg(&dev, VU_SET_MEM_TABLE, VU_FLAG_NEED_REPLY, &mt, 8 + 64, fds, 1, &r) == VU_REPLY && reply_u64(&r) == 1);
    mt.n = 9;
    CHECK(msg(&dev, VU_SET_MEM_TABLE, VU_FLAG_NEED_REPLY, &mt, 8 + 64, NULL, 0, &r) == VU_REPLY && reply_u64(&r) == 1);
    mt.n = 2;
    mt.r[1].mmap_offset = UINT64_MAX - 10;
    fds[0] = dup(mfd);
    fds[1] = dup(mfd);
    CHECK(msg(&dev, VU_SET_MEM_TABLE, VU_FLAG_NEED_REPLY, &mt, 8 + 64, fds, 2, &r) == VU_REPLY && reply_u64(&r) == 1);
    CHECK(dev.mem.n == 0); /* a rejected table leaves nothing mapped */
    mt.r[1].mmap_offset = 0x100000;
    fds[0] = dup(mfd);
    fds[1] = dup(mfd);
    CHECK(msg(&dev, VU_SET_MEM_TABLE, VU_FLAG_NEED_REPLY, &mt, 8 + 64, fds, 2, &r) == VU_REPLY && reply_u64(&r) == 0);

    TEST("vu: vring num validation");
    struct { uint32_t index, num; } st = { 0, 3 };
    CHECK(msg(&dev, VU_SET_VRING_NUM, VU_FLAG_NEED_REPLY, &st, 8, NULL, 0, &r) == VU_REPLY && reply_u64(&r) == 1);
    st.num = 0;
    CHECK(msg(&dev, VU_SET_VRING_NUM, VU_FLAG_NEED_REPLY, &st, 8, NULL, 0, &r) == VU_REPLY && reply_u64(&r) == 1);
    st.num = 2048;
    CHECK(msg(&dev, VU_SET_VRING_NUM, VU_FLAG_NEED_REPLY, &st, 8, NULL, 0, &r) == VU_REPLY && reply_u64(&r) == 1);
    st.index = 3;
    st.num = 16;
    CHECK(msg(&dev, VU_SET_VRING_NUM, VU_FLAG_NEED_REPLY, &st, 8, NULL, 0, &r) == VU_REPLY && reply_u64(&r) == 1);
    for (unsigned q = 0; q < 2; q++) {
        st.index = q;
        st.num = 16;
        CHECK(msg(&dev, VU_SET_VRING_NUM, VU_FLAG_NEED_REPLY, &st, 8, NULL, 0, &r) == VU_REPLY && reply_u64(&r) == 0);
        st.num = 0;
        CHECK(msg(&dev, VU_SET_VRING_BASE, 0, &st, 8, NULL, 0, &r) == VU_NO_REPLY);
    }

    TEST("vu: vring addresses must be mapped");
    struct { uint32_t index, flags; uint64_t desc, used, avail, log; } ad = {
        0, 0, 0x7f0000000000ull + 0x1000, 0x7f0000000000ull + 0x3000, 0x7f0000000000ull + 0x2000, 0 };
    CHECK(msg(&dev, VU_SET_VRING_ADDR, VU_FLAG_NEED_REPLY, &ad, sizeof ad, NULL, 0, &r) == VU_REPLY &&
          reply_u64(&r) == 0);
    CHECK(dev.vqs[0].desc != NULL);
    ad.index = 1;
    ad.used = 0x7f0000000000ull + 0x200000 - 8; /* runs off the end of guest memory */
    CHECK(msg(&dev, VU_SET_VRING_ADDR, VU_FLAG_NEED_REPLY, &ad, sizeof ad, NULL, 0, &r) == VU_REPLY &&
          reply_u64(&r) == 1);
    CHECK(dev.vqs[1].desc == NULL);
    ad.used = 0x7f0000000000ull + 0x13000;
    ad.desc = 0x7f0000000000ull + 0x11000;
    ad.avail = 0x7f0000000000ull + 0x12000;
    CHECK(msg(&dev, VU_SET_VRING_ADDR, VU_FLAG_NEED_REPLY, &ad, sizeof ad, NULL, 0, &r) == VU_REPLY &&
          reply_u64(&r) == 0);
    ad.index = 7;
    CHECK(msg(&dev, VU_SET_VRING_ADDR, VU_FLAG_NEED_REPLY, &ad, sizeof ad, NULL, 0, &r) == VU_REPLY &&
          reply_u64(&r) == 1);

    TEST("vu: kick/call fds, enable, ring becomes ready");
    uint64_t idx = 0;
    int kfd[1] = { eventfd(0, EFD_NONBLOCK) };
    CHECK(msg(&dev, VU_SET_VRING_KICK, 0, &idx, 8, kfd, 1, &r) == VU_NO_REPLY);
    CHECK(dev.vqs[0].started && dev.vqs[0].kick_fd >= 0);
    CHECK(!vq_ready(&dev.vqs[0])); /* still disabled */
    st.index = 0;
    st.num = 1;
    CHECK(msg(&dev, VU_SET_VRING_ENABLE, 0, &st, 8, NULL, 0, &r) == VU_NO_REPLY);
    CHECK(vq_ready(&dev.vqs[0]));
    int cfd[1] = { eventfd(0, EFD_NONBLOCK) };
    CHECK(msg(&dev, VU_SET_VRING_CALL, 0, &idx, 8, cfd, 1, &r) == VU_NO_REPLY && dev.vqs[0].call_fd >= 0);
    uint64_t nofd = 0 | VU_VRING_NOFD_MASK;
    CHECK(msg(&dev, VU_SET_VRING_CALL, 0, &nofd, 8, NULL, 0, &r) == VU_NO_REPLY && dev.vqs[0].call_fd == -1);
    TEST("vu: kick without fd is refused");
    CHECK(msg(&dev, VU_SET_VRING_KICK, VU_FLAG_NEED_REPLY, &idx, 8, NULL, 0, &r) == VU_REPLY && reply_u64(&r) == 1);
    CHECK(msg(&dev, VU_SET_VRING_KICK, VU_FLAG_NEED_REPLY, &nofd, 8, NULL, 0, &r) == VU_REPLY && reply_u64(&r) == 1);
    uint64_t badidx = 9;
    int efd[1] = { eventfd(0, 0) };
    CHECK(msg(&dev, VU_SET_VRING_ERR, VU_FLAG_NEED_REPLY, &badidx, 8, efd, 1, &r) == VU_REPLY && reply_u64(&r) == 1);

    TEST("vu: GET_VRING_BASE stops the ring and returns the avail index");
    dev.vqs[0].last_avail_idx = 77;
    st.index = 0;
    st.num = 0;
    CHECK(msg(&dev, VU_GET_VRING_BASE, 0, &st, 8, NULL, 0, &r) == VU_REPLY && r.hdr.size == 8);
    struct { uint32_t index, num; } got;
    memcpy(&got, r.payload, 8);
    CHECK(got.index == 0 && got.num == 77);
    CHECK(!dev.vqs[0].started && !vq_ready(&dev.vqs[0]));

    TEST("vu: resume at the same base keeps connections; a different base drops them");
    struct conn *c = dev_conn_new(&dev, -1, CONN_ESTABLISHED);
    dev_conn_bind(&dev, c, 1, 2);
    st.num = 77;
    msg(&dev, VU_SET_VRING_BASE, 0, &st, 8, NULL, 0, &r);
    CHECK(dev.nconns == 1);
    msg(&dev, VU_GET_VRING_BASE, 0, &st, 8, NULL, 0, &r);
    st.num = 0;
    msg(&dev, VU_SET_VRING_BASE, 0, &st, 8, NULL, 0, &r);
    CHECK(dev.nconns == 0);
    dev_reap(&dev);

    TEST("vu: unknown request, oversize payload");
    CHECK(msg(&dev, 200, VU_FLAG_NEED_REPLY, NULL, 0, NULL, 0, &r) == VU_REPLY && reply_u64(&r) == 1);
    CHECK(msg(&dev, 200, 0, NULL, 0, NULL, 0, &r) == VU_NO_REPLY);
    {
        struct vu_hdr h = { VU_SET_FEATURES, 1, VU_MAX_PAYLOAD + 1 };
        static uint8_t big[VU_MAX_PAYLOAD];
        CHECK(vu_handle(&dev, &h, big, NULL, 0, &r) == VU_FATAL);
    }
    TEST("vu: short payloads are errors");
    CHECK(msg(&dev, VU_SET_VRING_NUM, VU_FLAG_NEED_REPLY, &st, 4, NULL, 0, &r) == VU_REPLY && reply_u64(&r) == 1);
    CHECK(msg(&dev, VU_SET_VRING_ADDR, VU_FLAG_NEED_REPLY, &ad, 8, NULL, 0, &r) == VU_REPLY && reply_u64(&r) == 1);
    CHECK(msg(&dev, VU_SET_MEM_TABLE, VU_FLAG_NEED_REPLY, &mt, 4, NULL, 0, &r) == VU_REPLY && reply_u64(&r) == 1);

    TEST("vu: RESET_DEVICE clears rings");
    CHECK(msg(&dev, VU_RESET_DEVICE, 0, NULL, 0, NULL, 0, &r) == VU_NO_REPLY);
    CHECK(dev.vqs[0].kick_fd == -1 && dev.vqs[0].num == 0 && dev.features == 0);

    TEST("vu: vu_serve_one over a socketpair, with fds in SCM_RIGHTS");
    {
        int sp[2];
        socketpair(AF_UNIX, SOCK_STREAM, 0, sp);
        struct vu_hdr h = { VU_GET_FEATURES, VU_FLAG_VERSION, 0 };
        CHECK(write(sp[1], &h, sizeof h) == sizeof h);
        CHECK(vu_serve_one(&dev, sp[0]) == 0);
        struct vu_hdr rh;
        uint64_t v;
        CHECK(read(sp[1], &rh, sizeof rh) == sizeof rh && rh.size == 8 && (rh.flags & VU_FLAG_REPLY));
        CHECK(read(sp[1], &v, 8) == 8 && v == f);
        /* kick with an fd */
        int efd2 = eventfd(0, EFD_NONBLOCK);
        uint64_t idx1 = 1;
        struct vu_hdr kh = { VU_SET_VRING_KICK, VU_FLAG_VERSION, 8 };
        uint8_t body[20];
        memcpy(body, &kh, 12);
        memcpy(body + 12, &idx1, 8);
        union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr a; } cb;
        struct iovec iov = { body, 20 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb.buf, .msg_controllen = sizeof cb.buf };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &efd2, sizeof(int));
        CHECK(sendmsg(sp[1], &mh, 0) == 20);
        close(efd2);
        CHECK(vu_serve_one(&dev, sp[0]) == 0);
        CHECK(dev.vqs[1].kick_fd >= 0 && dev.vqs[1].started);
        /* disconnect → -1 */
        close(sp[1]);
        CHECK(vu_serve_one(&dev, sp[0]) == -1);
        close(sp[0]);
    }

    dev_fini(&dev);
    close(mfd);
}

/* ---------------------------------------------------------------------------------------------------------------
 * ring buffer
 * --------------------------------------------------------------------------------------------------------------- */
static void test_ringbuf(void)
{
    struct ringbuf rb;
    uint8_t data[100000], out[100000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7);
    TEST("ringbuf: append, wrap, grow, bound");
    rb_init(&rb, 40000);
    CHECK(rb_append(&rb, data, 10000) == 10000);
    struct iovec sp[2];
    rb_consume(&rb, 9000);
    CHECK(rb_append(&rb, data + 10000, 12000) == 12000); /* wraps or grows */
    CHECK(rb.len == 13000);
    unsigned n = rb_data_spans(&rb, rb.len, sp);
    size_t k = 0;
    for (unsigned i = 0; i < n; i++) {
        memcpy(out + k, sp[i].iov_base, sp[i].iov_len);
        k += sp[i].iov_len;
    }
    CHECK(k == 13000 && !memcmp(out, data + 9000, 13000));
    CHECK(rb_append(&rb, data, 50000) == 40000 - 13000); /* capped at max */
    CHECK(rb.len == 40000 && rb_room(&rb) == 0);
    size_t before = rb_total_bytes;
    rb_free(&rb);
    CHECK(rb_total_bytes < before);
    TEST("ringbuf: global budget");
    size_t saved = rb_total_limit;
    rb_total_limit = rb_total_bytes + 1000;
    rb_init(&rb, 40000);
    CHECK(rb_append(&rb, data, 5000) == 0);
    rb_total_limit = saved;
    rb_free(&rb);
}

/* ---------------------------------------------------------------------------------------------------------------
 * seccomp allowlists: each probe runs in a forked child that installs a filter and makes one system call
 * --------------------------------------------------------------------------------------------------------------- */
enum probe { PROBE_ALLOWED, PROBE_SOCKET_UNIX, PROBE_SOCKET_INET, PROBE_MMAP_EXEC, PROBE_UNLINK, PROBE_X32_GETPID };

/* The child's wait status: exit 0 when the call returned (whatever its result), killed by a signal otherwise. */
static int run_probe(enum sandbox_role role, enum probe p)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (sandbox_install_filter(role) < 0)
            _exit(3);
        switch (p) {
        case PROBE_ALLOWED: syscall(SYS_getpid); syscall(SYS_write, -1, "", 0); break;
        case PROBE_SOCKET_UNIX: syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0); break;
        case PROBE_SOCKET_INET: syscall(SYS_socket, AF_INET, SOCK_STREAM, 0); break;
        case PROBE_MMAP_EXEC:
            syscall(SYS_mmap, NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            break;
        case PROBE_UNLINK: syscall(SYS_unlinkat, AT_FDCWD, "/nonexistent/hull-seccomp-probe", 0); break;
        case PROBE_X32_GETPID: syscall(0x40000000 /* __X32_SYSCALL_BIT */ | SYS_getpid); break;
        }
        syscall(SYS_exit_group, 0); /* not _exit(): that may run sanitizer hooks the probe is not about */
    }
    int st = -1;
    if (pid > 0)
        waitpid(pid, &st, 0);
    return st;
}
#define KILLED_BY_SECCOMP(st) (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS)
#define RETURNED(st) (WIFEXITED(st) && WEXITSTATUS(st) == 0)

static void test_seccomp(void)
{
    TEST("seccomp: the worker may run its loop but not create sockets, map code or unlink");
    CHECK(RETURNED(run_probe(SANDBOX_WORKER, PROBE_ALLOWED)));
    CHECK(KILLED_BY_SECCOMP(run_probe(SANDBOX_WORKER, PROBE_SOCKET_UNIX)));
    CHECK(KILLED_BY_SECCOMP(run_probe(SANDBOX_WORKER, PROBE_MMAP_EXEC)));
    CHECK(KILLED_BY_SECCOMP(run_probe(SANDBOX_WORKER, PROBE_UNLINK)));
    /* an allowed number through another ABI is still refused */
    CHECK(KILLED_BY_SECCOMP(run_probe(SANDBOX_WORKER, PROBE_X32_GETPID)));

    TEST("seccomp: the broker may create Unix sockets and unlink, nothing else");
    CHECK(RETURNED(run_probe(SANDBOX_BROKER, PROBE_ALLOWED)));
    CHECK(RETURNED(run_probe(SANDBOX_BROKER, PROBE_SOCKET_UNIX)));
    CHECK(RETURNED(run_probe(SANDBOX_BROKER, PROBE_UNLINK)));
    CHECK(KILLED_BY_SECCOMP(run_probe(SANDBOX_BROKER, PROBE_SOCKET_INET)));
    CHECK(KILLED_BY_SECCOMP(run_probe(SANDBOX_BROKER, PROBE_MMAP_EXEC)));
}

int main(void)
{
    hv_log_level = -1; /* quiet: errors are expected here */
    gmem = mmap(NULL, G_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (gmem == MAP_FAILED)
        return 1;
    test_guest_memory();
    test_virtqueue();
    test_packets();
    test_connect_line();
    test_ringbuf();
    test_device();
    test_vhost_user();
    test_seccomp();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
