/*
 * seccomp.h — a hand-written seccomp BPF allowlist: the architecture is checked first, then each allowed syscall
 * number (optionally with one argument condition); anything else kills the whole process.
 */
#ifndef HV_SECCOMP_H
#define HV_SECCOMP_H

#include <stdint.h>

/* Allow syscall `nr`; when arg >= 0, only if (low 32 bits of args[arg] & mask) == value. Rules are tried in
 * order; a call no rule allows kills the process. */
struct sc_rule {
    int nr;
    int arg;
    uint32_t mask;
    uint32_t value;
};

#define SC_ALLOW(nr) { (nr), -1, 0, 0 }
#define SC_ALLOW_IF(nr, arg, mask, value) { (nr), (arg), (mask), (value) }

/* Install the filter for the calling thread (and its future children). no_new_privs must already be set.
 * Returns 0, or -1 with errno set (EINVAL for an unknown architecture or too many rules). */
int sc_install(const struct sc_rule *rules, unsigned n);

#endif
