/*
 * fuzz_vsock.c — libFuzzer target for hull-vsock-backend: everything a hostile guest (or a confused front end) can
 * feed us.
 *
 * Input byte 0 selects the mode:
 *   even: "queues" — the rest is guest memory (three regions: two adjacent, one after a hole) holding the tx and rx
 *         split rings, descriptors and packets. Byte 1..4 of the input pick queue size, EVENT_IDX and the starting
 *         ring indices. Two connections exist beforehand (one established, one waiting for RESPONSE), backed by
 *         socketpairs, so packets can hit live connection state. tx and rx are processed for a few rounds with
 *         timers advancing.
 *   odd:  "vhost-user" — the rest is a sequence of vhost-user messages (12-byte header + payload) handed to
 *         vu_handle(); SET_MEM_TABLE gets memfds, SET_VRING_KICK/CALL/ERR get eventfds. Afterwards the rings that
 *         ended up configured are processed.
 *
 * With HV_FUZZ_WRITE_SEEDS=<dir> in the environment the binary writes a small seed corpus there and exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vhost_user.h"
#include "vsock_device.h"

/* guest memory layout for the queues mode */
#define R0_GPA 0x0u
#define R0_SIZE 0x8000u
#define R1_GPA 0x8000u   /* adjacent to region 0: buffers may span both */
#define R1_SIZE 0x8000u
#define R2_GPA 0x20000u  /* after a hole */
#define R2_SIZE 0x1000u
#define MEM_BYTES (R0_SIZE + R1_SIZE + R2_SIZE)
#define UVA_BASE 0x500000000000ull
#define CFG_BYTES 4
#define TXQ_DESC 0x0000u
#define TXQ_AVAIL 0x0400u
#define TXQ_USED 0x0600u
#define RXQ_DESC 0x1000u
#define RXQ_AVAIL 0x1400u
#define RXQ_USED 0x1600u
#define CID 3
#define EST_LOCAL 1000u
#define EST_PEER 2000u
#define INIT_PEER 1024u

static uint8_t *mem; /* R0 | R1 contiguous, then R2 */
static int memfd = -1;

static void setup_vq(struct vsock_dev *dev, int q, uint16_t num, uint32_t desc, uint32_t avail, uint32_t used,
                     bool event_idx, uint16_t base)
{
    struct vq *vq = &dev->vqs[q];
    vq->num = num;
    vq->desc_uva = UVA_BASE + desc;
    vq->avail_uva = UVA_BASE + avail;
    vq->used_uva = UVA_BASE + used;
    vq->addr_set = true;
    vq->enabled = vq->started = true;
    vq->event_idx = event_idx;
    vq->last_avail_idx = vq->used_idx = base;
    vq_map(vq);
}

static void fuzz_queues(const uint8_t *data, size_t size)
{
    static struct vsock_dev dev;
    uint8_t cfg[CFG_BYTES] = { 0 };
    memcpy(cfg, data, size < CFG_BYTES ? size : CFG_BYTES);
    data += size < CFG_BYTES ? size : CFG_BYTES;
    size -= size < CFG_BYTES ? size : CFG_BYTES;

    memset(mem, 0, MEM_BYTES);
    memcpy(mem, data, size < MEM_BYTES ? size : MEM_BYTES);

    dev_init(&dev, CID, "/nonexistent-hull-fuzz/v.sock", -1);
    gm_add_region(&dev.mem, R0_GPA, R0_SIZE, UVA_BASE + R0_GPA, mem);
    gm_add_region(&dev.mem, R1_GPA, R1_SIZE, UVA_BASE + R1_GPA, mem + R0_SIZE);
    gm_add_region(&dev.mem, R2_GPA, R2_SIZE, UVA_BASE + R2_GPA, mem + R0_SIZE + R1_SIZE);
    uint16_t num = (uint16_t)(4u << (cfg[0] % 5)); /* 4..64 */
    bool eidx = cfg[1] & 1;
    setup_vq(&dev, HV_TXQ, num, TXQ_DESC, TXQ_AVAIL, TXQ_USED, eidx, (uint16_t)(cfg[2] * 257u));
    setup_vq(&dev, HV_RXQ, num, RXQ_DESC, RXQ_AVAIL, RXQ_USED, eidx, (uint16_t)(cfg[3] * 257u));

    /* live connections the packets can hit */
    int a[2], b[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a);
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b);
    struct conn *est = dev_conn_new(&dev, a[0], CONN_ESTABLISHED);
    dev_conn_bind(&dev, est, EST_LOCAL, EST_PEER);
    est->peer_buf_alloc = 65536;
    if (cfg[1] & 2) {
        ssize_t w = write(a[1], "host data for the guest", 23);
        (void)w;
        hybrid_read_h2g(&dev, est);
    }
    if (cfg[1] & 4)
        shutdown(a[1], SHUT_WR); /* host EOF */
    conn_update(&dev, est);
    struct conn *init = dev_conn_new(&dev, b[0], CONN_LOCAL_INIT);
    dev_conn_bind(&dev, init, HV_LOCAL_PORT_BASE, INIT_PEER);
    init->send_request = true;
    conn_set_deadline(&dev, init, hv_now_ms() + HV_CONN_REQUEST_TIMEOUT_MS);
    conn_update(&dev, init);

    uint64_t now = hv_now_ms();
    for (int round = 0; round < 3; round++) {
        dev_process_tx(&dev);
        dev_process_rx(&dev);
        dev_signal(&dev);
        now += 2500;
        dev_timers(&dev, now);
        dev_reap(&dev);
    }
    dev_fini(&dev);
    close(a[1]);
    close(b[1]);
}

static void fuzz_vhost_user(const uint8_t *data, size_t size)
{
    static struct vsock_dev dev;
    static struct vu_reply reply;
    static uint8_t payload[VU_MAX_PAYLOAD];
    dev_init(&dev, CID, "/nonexistent-hull-fuzz/v.sock", -1);
    for (int n = 0; n < 64 && size >= VU_HDR_SIZE; n++) {
        struct vu_hdr h;
        memcpy(&h, data, VU_HDR_SIZE);
        data += VU_HDR_SIZE;
        size -= VU_HDR_SIZE;
        uint32_t psize = h.size;
        if (psize > VU_MAX_PAYLOAD)
            psize = VU_MAX_PAYLOAD + 1; /* exercise the fatal path, but never read past our buffers */
        size_t take = psize <= VU_MAX_PAYLOAD ? (psize < size ? psize : size) : 0;
        memset(payload, 0, sizeof payload);
        memcpy(payload, data, take);
        data += take;
        size -= take;
        h.size = psize;

        int fds[VU_MAX_FDS];
        unsigned nfds = 0;
        if (h.request == VU_SET_MEM_TABLE) {
            for (; nfds < 8; nfds++)
                fds[nfds] = dup(memfd);
        } else if (h.request == VU_SET_VRING_KICK || h.request == VU_SET_VRING_CALL || h.request == VU_SET_VRING_ERR) {
            fds[nfds++] = eventfd(0, EFD_NONBLOCK);
        }
        /* SET_MEM_TABLE wants exactly one fd per region */
        if (h.request == VU_SET_MEM_TABLE && h.size >= 4) {
            uint32_t nr;
            memcpy(&nr, payload, 4);
            while (nfds > nr && nfds > 0)
                close(fds[--nfds]);
        }
        enum vu_result r = vu_handle(&dev, &h, payload, fds, nfds, &reply);
        for (unsigned i = 0; i < nfds; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        if (r == VU_FATAL)
            break;
        if (r == VU_REPLY && reply.hdr.size > VU_MAX_PAYLOAD)
            abort();
    }
    /* whatever rings got configured: run them */
    dev_process_tx(&dev);
    dev_process_rx(&dev);
    dev_signal(&dev);
    dev_fini(&dev);
}

/* ---- seed corpus ---- */

static void put_desc(uint8_t *m, uint32_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    struct vring_desc_raw d = { addr, len, flags, next };
    memcpy(m + table + 16 * i, &d, 16);
}
static void put_avail(uint8_t *m, uint32_t avail, uint16_t base, unsigned n, const uint16_t *heads, uint16_t num)
{
    uint16_t idx = (uint16_t)(base + n);
    memcpy(m + avail + 2, &idx, 2);
    for (unsigned i = 0; i < n; i++)
        memcpy(m + avail + 4 + 2 * ((base + i) % num), &heads[i], 2);
}
static void put_hdr(uint8_t *m, uint32_t off, uint32_t src_port, uint32_t dst_port, uint16_t op, uint32_t len,
                    uint32_t flags)
{
    struct vsock_hdr h = { CID, VSOCK_HOST_CID, src_port, dst_port, len, VSOCK_TYPE_STREAM, op, flags, 65536, 0 };
    pkt_hdr_encode(&h, m + off);
}

static void write_seed(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fwrite(p, 1, n, f);
    fclose(f);
}

static void write_seeds(const char *dir)
{
    /* queues-mode seeds: [mode][cfg 4][memory] — keep only the memory prefix that matters (small files) */
    static uint8_t s[1 + CFG_BYTES + 0x9000];
    const size_t used = 1 + CFG_BYTES + 0x2000;
    uint8_t *m = s + 1 + CFG_BYTES;
    uint16_t heads[8];
    const uint16_t num = 16;

    /* 1: REQUEST to an unbound port (→ RST), rx buffers available */
    memset(s, 0, sizeof s);
    s[0] = 0;
    s[1] = 2; /* num 16 */
    put_hdr(m, 0x1800, 5000, 1024, VSOCK_OP_REQUEST, 0, 0);
    put_desc(m, TXQ_DESC, 0, 0x1800, 44, 0, 0);
    heads[0] = 0;
    put_avail(m, TXQ_AVAIL, 0, 1, heads, num);
    for (unsigned i = 0; i < 4; i++) {
        put_desc(m, RXQ_DESC, 2 * i, 0x1a00 + 0x100 * i, 44, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, (uint16_t)(2 * i + 1));
        put_desc(m, RXQ_DESC, 2 * i + 1, 0x4000 + 0x400 * i, 0x400, VIRTQ_DESC_F_WRITE, 0);
        heads[i] = (uint16_t)(2 * i);
    }
    put_avail(m, RXQ_AVAIL, 0, 4, heads, num);
    write_seed(dir, "q-request-refused", s, used);

    /* 2: RW on the established connection, header split, payload spanning regions 0 and 1 */
    memset(m, 0, 0x9000);
    s[2] = 1; /* event idx */
    put_hdr(m, 0x1800, EST_PEER, EST_LOCAL, VSOCK_OP_RW, 64, 0);
    put_desc(m, TXQ_DESC, 0, 0x1800, 20, VIRTQ_DESC_F_NEXT, 1);
    put_desc(m, TXQ_DESC, 1, 0x1800 + 20, 24, VIRTQ_DESC_F_NEXT, 2);
    put_desc(m, TXQ_DESC, 2, R1_GPA - 32, 64, 0, 0);
    heads[0] = 0;
    put_avail(m, TXQ_AVAIL, 0, 1, heads, num);
    put_desc(m, RXQ_DESC, 0, 0x1a00, 0x200, VIRTQ_DESC_F_WRITE, 0);
    put_avail(m, RXQ_AVAIL, 0, 1, heads, num);
    write_seed(dir, "q-rw-spanning", s, 1 + CFG_BYTES + 0x8020 < sizeof s ? 1 + CFG_BYTES + 0x8020 : sizeof s);

    /* 3: descriptor loop and a head out of range */
    memset(m, 0, 0x9000);
    s[2] = 2 | 4; /* host data + host EOF */
    put_desc(m, TXQ_DESC, 0, 0x1800, 44, VIRTQ_DESC_F_NEXT, 1);
    put_desc(m, TXQ_DESC, 1, 0x1800, 44, VIRTQ_DESC_F_NEXT, 0);
    heads[0] = 0;
    heads[1] = 999;
    put_avail(m, TXQ_AVAIL, 0, 2, heads, num);
    put_desc(m, RXQ_DESC, 0, 0x1a00, 0x200, VIRTQ_DESC_F_WRITE, 0);
    heads[0] = 0;
    put_avail(m, RXQ_AVAIL, 0, 1, heads, num);
    write_seed(dir, "q-loop", s, used);

    /* 4: RESPONSE for the waiting connection, then CREDIT_REQUEST and SHUTDOWN on the established one */
    memset(m, 0, 0x9000);
    s[2] = 2;
    put_hdr(m, 0x1800, INIT_PEER, HV_LOCAL_PORT_BASE, VSOCK_OP_RESPONSE, 0, 0);
    put_hdr(m, 0x1840, EST_PEER, EST_LOCAL, VSOCK_OP_CREDIT_REQUEST, 0, 0);
    put_hdr(m, 0x1880, EST_PEER, EST_LOCAL, VSOCK_OP_SHUTDOWN, 0, 3);
    for (unsigned i = 0; i < 3; i++) {
        put_desc(m, TXQ_DESC, i, 0x1800 + 0x40 * i, 44, 0, 0);
        heads[i] = (uint16_t)i;
    }
    put_avail(m, TXQ_AVAIL, 0, 3, heads, num);
    for (unsigned i = 0; i < 4; i++) {
        put_desc(m, RXQ_DESC, i, 0x1a00 + 0x100 * i, 0x100, VIRTQ_DESC_F_WRITE, 0);
        heads[i] = (uint16_t)i;
    }
    put_avail(m, RXQ_AVAIL, 0, 4, heads, num);
    write_seed(dir, "q-response-shutdown", s, used);

    /* 5: vhost-user session: features, protocol features, config, mem table, ring setup, base, reset */
    static uint8_t v[2048];
    size_t o = 0;
    v[o++] = 1;
#define MSG(req, fl, sz)                                                                                              \
    do {                                                                                                              \
        struct vu_hdr hh = { req, VU_FLAG_VERSION | (fl), sz };                                                       \
        memcpy(v + o, &hh, 12);                                                                                       \
        o += 12;                                                                                                      \
    } while (0)
#define U64(x)                                                                                                        \
    do {                                                                                                              \
        uint64_t vv = (x);                                                                                            \
        memcpy(v + o, &vv, 8);                                                                                        \
        o += 8;                                                                                                       \
    } while (0)
#define U32(x)                                                                                                        \
    do {                                                                                                              \
        uint32_t vv = (x);                                                                                            \
        memcpy(v + o, &vv, 4);                                                                                        \
        o += 4;                                                                                                       \
    } while (0)
    MSG(VU_GET_FEATURES, 0, 0);
    MSG(VU_GET_PROTOCOL_FEATURES, 0, 0);
    MSG(VU_SET_PROTOCOL_FEATURES, 0, 8);
    U64(VU_OFFERED_PROTOCOL_FEATURES);
    MSG(VU_GET_QUEUE_NUM, 0, 0);
    MSG(VU_SET_OWNER, 0, 0);
    MSG(VU_GET_CONFIG, 0, 20);
    U32(0);
    U32(8);
    U32(0);
    U64(0);
    MSG(VU_SET_FEATURES, 0, 8);
    U64(VU_OFFERED_FEATURES);
    MSG(VU_SET_MEM_TABLE, VU_FLAG_NEED_REPLY, 8 + 32);
    U32(1);
    U32(0);
    U64(0);
    U64(0x100000);
    U64(UVA_BASE);
    U64(0);
    for (uint32_t q = 0; q < 2; q++) {
        MSG(VU_SET_VRING_NUM, 0, 8);
        U32(q);
        U32(16);
        MSG(VU_SET_VRING_BASE, 0, 8);
        U32(q);
        U32(0);
        MSG(VU_SET_VRING_ADDR, 0, 40);
        U32(q);
        U32(0);
        U64(UVA_BASE + 0x1000 + 0x1000 * q);
        U64(UVA_BASE + 0x1800 + 0x1000 * q);
        U64(UVA_BASE + 0x1400 + 0x1000 * q);
        U64(0);
        MSG(VU_SET_VRING_KICK, 0, 8);
        U64(q);
        MSG(VU_SET_VRING_CALL, 0, 8);
        U64(q);
        MSG(VU_SET_VRING_ENABLE, 0, 8);
        U32(q);
        U32(1);
    }
    MSG(VU_GET_VRING_BASE, 0, 8);
    U32(1);
    U32(0);
    MSG(VU_SET_VRING_BASE, 0, 8);
    U32(1);
    U32(5);
    MSG(VU_RESET_DEVICE, 0, 0);
    write_seed(dir, "vu-session", v, o);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    hv_log_level = -1;
    const char *seeds = getenv("HV_FUZZ_WRITE_SEEDS");
    if (seeds && *seeds) {
        write_seeds(seeds);
        exit(0);
    }
    mem = mmap(NULL, MEM_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memfd = memfd_create("hv-fuzz-guest", MFD_CLOEXEC);
    if (mem == MAP_FAILED || memfd < 0 || ftruncate(memfd, 1 << 20) < 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        fuzz_vhost_user(data + 1, size - 1);
    else
        fuzz_queues(data + 1, size - 1);
    return 0;
}
