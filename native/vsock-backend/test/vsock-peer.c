/*
 * vsock-peer.c — AF_VSOCK test peer that runs inside test guests (built -static).
 *
 *   vsock-peer server <port> echo      echo every byte back; on EOF shut down writing and close
 *   vsock-peer server <port> sink      read to EOF, then reply "<bytes> <sha256hex>\n" and close
 *   vsock-peer server <port> source    read a line "<bytes> <seed>\n", send gen(bytes, seed), close
 *   vsock-peer server <port> discard   read to EOF, then reply "<bytes>\n" and close (benchmarks: no hashing)
 *   vsock-peer server <port> zeros     read a line "<bytes>\n", send that many zero bytes, close (benchmarks)
 *   vsock-peer server <port> reboot    read a line, then reboot the guest (device-reset test)
 *   vsock-peer client <cid> <port> <bytes> <seed> [tries]
 *        connect (retrying every 100 ms), send gen(bytes, seed) while reading whatever comes back until EOF,
 *        then print "PEER-CLIENT port=<port> sent=<n> recv=<m> sha256=<hex of received>" on stdout.
 *
 * gen(n, seed): xorshift32 (x ^= x<<13; x ^= x>>17; x ^= x<<5), starting at seed (0 → 1), each step emitting
 * 4 little-endian bytes; truncated to n. The host tests implement the same generator.
 * Servers fork one child per connection, so connections are served concurrently.
 */
#include <errno.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- SHA-256 (FIPS 180-4) ---- */
struct sha256 { uint32_t h[8]; uint64_t len; uint8_t buf[64]; unsigned n; };
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2 };
#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
static void sha_block(struct sha256 *s, const uint8_t *p)
{
    uint32_t w[64], a, b, c, d, e, f, g, h;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = s->h[0]; b = s->h[1]; c = s->h[2]; d = s->h[3]; e = s->h[4]; f = s->h[5]; g = s->h[6]; h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d; s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}
static void sha_init(struct sha256 *s)
{
    static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c,
                                    0x1f83d9ab, 0x5be0cd19 };
    memcpy(s->h, iv, sizeof iv);
    s->len = 0;
    s->n = 0;
}
static void sha_update(struct sha256 *s, const uint8_t *p, size_t n)
{
    s->len += n;
    while (n) {
        if (s->n == 0 && n >= 64) {
            sha_block(s, p);
            p += 64;
            n -= 64;
            continue;
        }
        size_t t = 64 - s->n < n ? 64 - s->n : n;
        memcpy(s->buf + s->n, p, t);
        s->n += (unsigned)t;
        p += t;
        n -= t;
        if (s->n == 64) {
            sha_block(s, s->buf);
            s->n = 0;
        }
    }
}
static void sha_hex(struct sha256 *s, char out[65])
{
    uint64_t bits = s->len * 8;
    uint8_t pad = 0x80, z = 0, lenb[8];
    sha_update(s, &pad, 1);
    while (s->n != 56)
        sha_update(s, &z, 1);
    for (int i = 0; i < 8; i++)
        lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha_update(s, lenb, 8);
    for (int i = 0; i < 8; i++)
        sprintf(out + 8 * i, "%08x", s->h[i]);
}

/* ---- generator ---- */
struct gen { uint32_t x; uint8_t pend[4]; unsigned npend; };
static void gen_init(struct gen *g, uint32_t seed) { g->x = seed ? seed : 1; g->npend = 0; }
static void gen_fill(struct gen *g, uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (g->npend == 0) {
            uint32_t x = g->x;
            x ^= x << 13; x ^= x >> 17; x ^= x << 5;
            g->x = x;
            g->pend[0] = (uint8_t)x; g->pend[1] = (uint8_t)(x >> 8); g->pend[2] = (uint8_t)(x >> 16);
            g->pend[3] = (uint8_t)(x >> 24);
            g->npend = 4;
        }
        p[i++] = g->pend[4 - g->npend];
        g->npend--;
    }
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read up to and including the first '\n' (at most size - 1 bytes, one at a time so nothing past the line is
 * consumed) and NUL-terminate. */
static void read_line(int fd, char *line, size_t size)
{
    size_t l = 0;
    while (l < size - 1) {
        ssize_t n = read(fd, line + l, 1);
        if (n <= 0)
            break;
        if (line[l++] == '\n')
            break;
    }
    line[l] = 0;
}

static uint8_t buf[256 * 1024];

static void serve_conn(int fd, const char *mode)
{
    if (!strcmp(mode, "echo")) {
        for (;;) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n <= 0)
                break;
            if (write_all(fd, buf, (size_t)n) < 0)
                break;
        }
        shutdown(fd, SHUT_WR);
    } else if (!strcmp(mode, "sink")) {
        struct sha256 s;
        sha_init(&s);
        for (;;) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n <= 0)
                break;
            sha_update(&s, buf, (size_t)n);
        }
        char hex[65], line[128];
        unsigned long long total = (unsigned long long)s.len;
        sha_hex(&s, hex);
        int l = snprintf(line, sizeof line, "%llu %s\n", total, hex);
        write_all(fd, line, (size_t)l);
    } else if (!strcmp(mode, "source")) {
        char line[64];
        read_line(fd, line, sizeof line);
        unsigned long long total = 0;
        unsigned long seed = 1;
        if (sscanf(line, "%llu %lu", &total, &seed) < 1)
            total = 0;
        struct gen g;
        gen_init(&g, (uint32_t)seed);
        while (total) {
            size_t n = total < sizeof buf ? (size_t)total : sizeof buf;
            gen_fill(&g, buf, n);
            if (write_all(fd, buf, n) < 0)
                break;
            total -= n;
        }
    } else if (!strcmp(mode, "discard")) {
        unsigned long long total = 0;
        for (;;) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n <= 0)
                break;
            total += (unsigned long long)n;
        }
        char line[32];
        int l = snprintf(line, sizeof line, "%llu\n", total);
        write_all(fd, line, (size_t)l);
    } else if (!strcmp(mode, "zeros")) {
        char line[32];
        read_line(fd, line, sizeof line);
        unsigned long long total = strtoull(line, NULL, 10);
        memset(buf, 0, sizeof buf);
        while (total) {
            size_t n = total < sizeof buf ? (size_t)total : sizeof buf;
            if (write_all(fd, buf, n) < 0)
                break;
            total -= n;
        }
    } else if (!strcmp(mode, "reboot")) {
        /* Only once the host has its OK (it writes a line after it): a guest rebooting at accept can reset the device
         * before our RESPONSE reached the back end (or was even sent), and the host's connect then fails. */
        char line[32];
        read_line(fd, line, sizeof line);
        printf("PEER-REBOOT\n");
        fflush(stdout);
        sync();
        reboot(RB_AUTOBOOT);
    }
    close(fd);
}

static int server(unsigned port, const char *mode)
{
    int ls = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (ls < 0) {
        perror("vsock-peer: socket");
        return 1;
    }
    struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_port = port, .svm_cid = VMADDR_CID_ANY };
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 64) < 0) {
        perror("vsock-peer: bind/listen");
        return 1;
    }
    signal(SIGCHLD, SIG_IGN);
    printf("PEER-LISTEN port=%u mode=%s\n", port, mode);
    fflush(stdout);
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            perror("vsock-peer: accept");
            return 1;
        }
        pid_t p = fork();
        if (p == 0) {
            close(ls);
            serve_conn(fd, mode);
            _exit(0);
        }
        close(fd);
    }
}

static int client(unsigned cid, unsigned port, unsigned long long total, uint32_t seed, int tries)
{
    int fd = -1;
    for (int t = 0; t < tries; t++) {
        fd = socket(AF_VSOCK, SOCK_STREAM, 0);
        struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_port = port, .svm_cid = cid };
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            break;
        close(fd);
        fd = -1;
        usleep(100000);
    }
    if (fd < 0) {
        printf("PEER-CLIENT port=%u error=connect\n", port);
        return 1;
    }
    struct gen g;
    gen_init(&g, seed);
    struct sha256 s;
    sha_init(&s);
    static uint8_t out[64 * 1024];
    size_t out_len = 0, out_off = 0;
    unsigned long long sent = 0;
    int wr_open = 1;
    for (;;) {
        if (wr_open && out_off == out_len && sent < total) {
            out_len = total - sent < sizeof out ? (size_t)(total - sent) : sizeof out;
            gen_fill(&g, out, out_len);
            out_off = 0;
        }
        if (wr_open && sent == total && out_off == out_len) {
            shutdown(fd, SHUT_WR);
            wr_open = 0;
        }
        struct pollfd pf = { .fd = fd, .events = POLLIN | (wr_open ? POLLOUT : 0) };
        if (poll(&pf, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n == 0)
                break;
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN)
                    continue;
                break;
            }
            sha_update(&s, buf, (size_t)n);
        }
        if (wr_open && (pf.revents & POLLOUT)) {
            ssize_t w = send(fd, out + out_off, out_len - out_off, MSG_DONTWAIT);
            if (w > 0) {
                out_off += (size_t)w;
                sent += (unsigned long long)w;
            } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                break;
            }
        }
    }
    char hex[65];
    unsigned long long recv_total = (unsigned long long)s.len;
    sha_hex(&s, hex);
    printf("PEER-CLIENT port=%u sent=%llu recv=%llu sha256=%s\n", port, sent, recv_total, hex);
    fflush(stdout);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && !strcmp(argv[1], "server"))
        return server((unsigned)strtoul(argv[2], NULL, 10), argv[3]);
    if ((argc == 6 || argc == 7) && !strcmp(argv[1], "client"))
        return client((unsigned)strtoul(argv[2], NULL, 10), (unsigned)strtoul(argv[3], NULL, 10),
                      strtoull(argv[4], NULL, 10), (uint32_t)strtoul(argv[5], NULL, 10),
                      argc == 7 ? atoi(argv[6]) : 100);
    fprintf(stderr, "usage: vsock-peer server <port> echo|sink|source|discard|zeros|reboot | client <cid> <port> <bytes> <seed> [tries]\n");
    return 2;
}
