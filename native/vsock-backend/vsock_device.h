/*
 * vsock_device.h — the virtio-vsock device: its queues, the connection table and the shared types of the
 * connection state machine (vsock_conn.c) and the Unix-socket side (hybrid.c).
 *
 * Queue 0 (rx) carries packets host→guest, queue 1 (tx) guest→host. The event queue (2) stays inside QEMU
 * for vhost-user-vsock, so it is accepted but never used here.
 */
#ifndef HV_VSOCK_DEVICE_H
#define HV_VSOCK_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "guest_memory.h"
#include "ringbuf.h"
#include "virtqueue.h"
#include "vsock_packet.h"

#define HV_NUM_QUEUES 3
#define HV_RXQ 0
#define HV_TXQ 1
#define HV_EVQ 2

#define HV_MAX_CONNS 1024u                /* live connections, all kinds */
#define HV_CONN_BUF_ALLOC (256u * 1024)   /* credit we give the guest per connection */
#define HV_H2G_BUF_MAX (256u * 1024)      /* host→guest bytes we hold per connection */
#define HV_G2H_BUF_MAX (HV_CONN_BUF_ALLOC + 64) /* guest→host bytes held (+ room for the "OK n\n" line) */
#define HV_CREDIT_UPDATE_THRESHOLD (HV_CONN_BUF_ALLOC / 4)
#define HV_CONN_REQUEST_TIMEOUT_MS 2000
#define HV_SHUTDOWN_TIMEOUT_MS 2000
#define HV_CONNECT_LINE_TIMEOUT_MS 5000
#define HV_CONNECT_LINE_MAX 32
#define HV_LOCAL_PORT_BASE (1u << 30)
#define HV_RSTQ_LEN 256
#define HV_CONN_HASH 1024
#define HV_TX_BATCH 512                   /* tx chains per pass before yielding to other fds */

enum ev_kind { EV_VU_LISTEN = 1, EV_VU_CONN, EV_HYBRID_LISTEN, EV_KICK, EV_CONN, EV_SIGNAL, EV_BROKER };

struct ev_tag {
    int kind;
    int index;
};

enum conn_state {
    CONN_AWAIT_LINE,    /* hybrid client connected; waiting for "CONNECT <port>\n" */
    CONN_LOCAL_INIT,    /* REQUEST queued/sent to the guest; waiting for RESPONSE (timeout 2 s) */
    CONN_ESTABLISHED,
    CONN_CLOSING,       /* both directions finished; SHUTDOWN sent, waiting for the guest's RST (timeout 2 s) */
    CONN_RST_PENDING,   /* host side gone; an RST must reach the guest, then the connection is freed */
    CONN_DEAD,          /* destroyed; memory freed by dev_reap() at the end of the loop iteration */
};

struct conn {
    struct ev_tag tag;          /* EV_CONN; must stay first */
    int fd;                     /* Unix stream socket, -1 once closed */
    uint32_t ep_mask;
    bool ep_registered;
    enum conn_state state;
    uint32_t local_port;        /* host-side vsock port */
    uint32_t peer_port;         /* guest-side vsock port */
    bool host_initiated;
    bool guest_knows;           /* the guest has seen this connection (REQUEST delivered, or it asked) */

    /* control packets owed to the guest */
    bool send_request, send_response, send_credit_update, send_credit_request;
    uint32_t send_shutdown;     /* SHUTDOWN flags to send (0 = none) */

    /* half-close bookkeeping */
    bool peer_shut_send;        /* guest will send no more */
    bool peer_shut_rcv;         /* guest will receive no more */
    bool host_eof;              /* host socket read hit EOF */
    bool host_wr_shut;          /* we shut down writing to the host socket */
    bool sent_shut_send;        /* we told the guest we send no more */

    /* guest→host: we are the receiver */
    uint32_t rx_cnt;            /* payload bytes received from the guest */
    uint32_t fwd_cnt;           /* of those, bytes passed on (written or discarded) */
    uint32_t last_fwd_cnt_sent; /* fwd_cnt last told to the guest */
    uint32_t g2h_uncounted;     /* leading bytes of g2h that are ours ("OK n\n"), not guest payload */
    struct ringbuf g2h;

    /* host→guest: the guest is the receiver */
    uint32_t peer_buf_alloc, peer_fwd_cnt;
    uint32_t tx_cnt;            /* payload bytes put on the rx queue */
    bool credit_requested;
    bool budget_wait;           /* could not grow h2g: global buffer budget exhausted */
    struct ringbuf h2g;

    uint64_t deadline_ms;       /* 0 = none */
    char line[HV_CONNECT_LINE_MAX + 1];
    unsigned line_len;

    struct conn *hnext;         /* hash chain */
    struct conn *pprev, *pnext; /* rx work list */
    bool pending;
    struct conn *aprev, *anext; /* all connections */
};

struct vsock_stats {
    uint64_t tx_pkts, rx_pkts, g2h_bytes, h2g_bytes, conns_opened, conns_closed;
};

struct vsock_dev {
    uint64_t guest_cid;
    char uds_path[108];
    int epfd;                   /* -1 in unit tests / fuzzing: no epoll */
    int broker_fd;              /* channel to the broker (broker.h); -1: connect <uds>_<port> directly */

    struct guest_memory mem;
    struct vq vqs[HV_NUM_QUEUES];
    struct ev_tag kick_tags[HV_NUM_QUEUES];
    uint32_t kick_mask[HV_NUM_QUEUES];
    bool kick_reg[HV_NUM_QUEUES];
    uint16_t stopped_base[HV_NUM_QUEUES];  /* value returned by GET_VRING_BASE */
    bool stopped_valid[HV_NUM_QUEUES];

    /* vhost-user negotiation */
    uint64_t features;          /* acked by the front end */
    uint64_t protocol_features;
    bool owner;

    struct vq_chain chain;      /* scratch */

    struct conn *hash[HV_CONN_HASH];
    struct conn *all;
    struct conn *zombies;       /* destroyed, not yet freed (events of this epoll batch may still name them) */
    struct conn *pend_head, *pend_tail;
    unsigned nconns;
    unsigned ndeadline;
    uint32_t next_local_port;

    struct { uint32_t local_port, peer_port; } rstq[HV_RSTQ_LEN];
    unsigned rstq_head, rstq_len;

    bool tx_more;               /* tx processing yielded with chains left */
    bool budget_blocked;        /* some connection waits for the global buffer budget */
    struct vsock_stats stats;
};

uint64_t hv_now_ms(void);

void dev_init(struct vsock_dev *dev, uint64_t guest_cid, const char *uds_path, int epfd);
void dev_destroy_all_conns(struct vsock_dev *dev);
void dev_fini(struct vsock_dev *dev);
/* Free destroyed connections; call when no pointer to them can be in use (end of a loop iteration). */
void dev_reap(struct vsock_dev *dev);

/* queue processing */
void dev_process_tx(struct vsock_dev *dev);
void dev_process_rx(struct vsock_dev *dev);
void dev_signal(struct vsock_dev *dev);
/* Handle one validated-or-not tx chain (exposed for fuzzing and tests). */
void dev_handle_tx_chain(struct vsock_dev *dev, const struct vq_chain *c);
void dev_timers(struct vsock_dev *dev, uint64_t now);
void dev_queue_rst(struct vsock_dev *dev, uint32_t local_port, uint32_t peer_port);

/* connection table */
struct conn *dev_conn_find(struct vsock_dev *dev, uint32_t local_port, uint32_t peer_port);
struct conn *dev_conn_new(struct vsock_dev *dev, int fd, enum conn_state st);
void dev_conn_bind(struct vsock_dev *dev, struct conn *c, uint32_t local_port, uint32_t peer_port);
void dev_conn_destroy(struct vsock_dev *dev, struct conn *c);
/* put on / take off the rx work list */
void dev_pend_set(struct vsock_dev *dev, struct conn *c, bool want);
uint32_t dev_alloc_local_port(struct vsock_dev *dev, uint32_t peer_port);
void dev_epoll_set(struct vsock_dev *dev, int fd, void *tag, uint32_t want, uint32_t *cur, bool *registered);

/* vsock_conn.c: connection state machine */
void conn_on_guest_pkt(struct vsock_dev *dev, struct conn *c, const struct vsock_hdr *h, const struct vq_chain *ch);
/* Fill an rx chain with the next packet this connection owes; returns used length (0 = nothing to send).
 * *destroy is set if the connection must be freed once the chain is pushed. */
uint32_t conn_fill_rx(struct vsock_dev *dev, struct conn *c, const struct vq_chain *ch, bool *destroy);
bool conn_has_rx_work(const struct conn *c);
uint32_t conn_peer_free(const struct conn *c);
/* Reconcile: close/transition as needed, update rx work list, epoll interest, deadlines. Returns false if c
 * was destroyed. */
bool conn_update(struct vsock_dev *dev, struct conn *c);
/* Abortive close of the host side: close fd, drop buffers, owe the guest an RST. */
void conn_abort(struct vsock_dev *dev, struct conn *c);
void conn_set_deadline(struct vsock_dev *dev, struct conn *c, uint64_t deadline_ms);

/* hybrid.c: Unix socket side */
int hybrid_listen(const char *path);
void hybrid_accept(struct vsock_dev *dev, int listen_fd);
void hybrid_on_event(struct vsock_dev *dev, struct conn *c, uint32_t events);
int hybrid_connect_guest_port(const struct vsock_dev *dev, uint32_t port);
/* 0 = ok with *port set, -1 = invalid line */
int hybrid_parse_connect(const char *line, size_t len, uint32_t *port);
/* Pass guest payload (chain bytes [off, off+len)) to the host socket, buffering what does not fit.
 * Returns false if the connection was aborted. */
bool hybrid_write_g2h(struct vsock_dev *dev, struct conn *c, const struct vq_chain *ch, size_t off, size_t len);
/* Flush buffered guest→host bytes; returns false if aborted. */
bool hybrid_flush_g2h(struct vsock_dev *dev, struct conn *c);
/* Read host→guest bytes within credit and buffer limits; returns false if aborted. */
bool hybrid_read_h2g(struct vsock_dev *dev, struct conn *c);
/* bytes we may read from the host right now */
uint32_t conn_read_budget(const struct conn *c);

#endif
