/*
 * seccomp.c — builds and installs the BPF program described in seccomp.h. Kept free of libseccomp: the list is
 * fixed and short, and the program shape is simple enough to check by reading it.
 *
 *   ld arch; jeq AUDIT_ARCH → continue, else kill      (syscall numbers differ per ABI)
 *   ld nr;   [x86_64: nr >= x32 bit → kill]            (x32 calls share the arch value)
 *   per rule: jeq nr → [check one argument →] allow     (argument mismatch: reload nr, next rule)
 *   kill
 * Every jump is short (at most 5 instructions forward), so the 8-bit BPF jump offsets never overflow.
 */
#include "seccomp.h"

#include <errno.h>
#include <stddef.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define SC_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SC_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "seccomp.c: add the AUDIT_ARCH of this architecture"
#endif

#define SC_MAX_INSNS 512
#define SC_KILL SECCOMP_RET_KILL_PROCESS

/* the low 32 bits of args[i] (little-endian) */
#define ARG_LO(i) ((uint32_t)(offsetof(struct seccomp_data, args) + (size_t)(i) * sizeof(uint64_t)))

int sc_install(const struct sc_rule *rules, unsigned n)
{
    struct sock_filter prog[SC_MAX_INSNS];
    unsigned k = 0;
#define EMIT(insn)                                                                                                    \
    do {                                                                                                              \
        if (k >= SC_MAX_INSNS) {                                                                                      \
            errno = EINVAL;                                                                                           \
            return -1;                                                                                                \
        }                                                                                                             \
        prog[k++] = (struct sock_filter)insn;                                                                         \
    } while (0)

    EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
    EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SC_AUDIT_ARCH, 1, 0));
    EMIT(BPF_STMT(BPF_RET | BPF_K, SC_KILL));
    EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
#if defined(__x86_64__)
    EMIT(BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u /* __X32_SYSCALL_BIT */, 0, 1));
    EMIT(BPF_STMT(BPF_RET | BPF_K, SC_KILL));
#endif
    for (unsigned i = 0; i < n; i++) {
        const struct sc_rule *r = &rules[i];
        if (r->nr < 0 || r->arg > 5) {
            errno = EINVAL;
            return -1;
        }
        if (r->arg < 0) {
            EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)r->nr, 0, 1));
            EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
            continue;
        }
        /* nr matched: allow if the argument does, else reload nr (A was overwritten) and try the next rules */
        EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)r->nr, 0, 5));
        EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(r->arg)));
        EMIT(BPF_STMT(BPF_ALU | BPF_AND | BPF_K, r->mask));
        EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, r->value, 0, 1));
        EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
        EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
    }
    EMIT(BPF_STMT(BPF_RET | BPF_K, SC_KILL));
#undef EMIT

    struct sock_fprog fprog = { .len = (unsigned short)k, .filter = prog };
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog);
}
