/* The device cgroup filter (devfilter.h). The program, for the context struct bpf_cgroup_dev_ctx
 * { u32 access_type = (access << 16) | type; u32 major; u32 minor; }:
 *
 *   w2 = ctx->access_type & 0xffff    device type (BPF_DEVCG_DEV_*)
 *   w3 = ctx->access_type >> 16       access asked for (BPF_DEVCG_ACC_*)
 *   w4 = ctx->major, w5 = ctx->minor
 *   per exception: the type, the access (skipped for rwm), the major and minor (skipped for a wildcard) must match,
 *                  else jump to the next block; a match returns the exception's action
 *   return the default
 *
 * Comparisons are 32-bit (BPF_JMP32), so every u32 major or minor compares exactly. */
#include "devfilter.h"
#include "util.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ACC_ALL (BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE)

static struct bpf_insn insn(__u8 code, __u8 dst, __u8 src, __s16 off, __s32 imm)
{
	struct bpf_insn i;
	memset(&i, 0, sizeof(i));
	i.code = code;
	i.dst_reg = dst & 0xf;
	i.src_reg = src & 0xf;
	i.off = off;
	i.imm = imm;
	return i;
}

#define LDX_W(dst, src, off) insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
#define ALU32_IMM(op, dst, imm) insn(BPF_ALU | (op) | BPF_K, dst, 0, 0, imm)
#define MOV32_REG(dst, src) insn(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)
#define JNE32_IMM(dst, imm, off) insn(BPF_JMP32 | BPF_JNE | BPF_K, dst, 0, off, imm)
#define JNE32_REG(dst, src, off) insn(BPF_JMP32 | BPF_JNE | BPF_X, dst, src, off, 0)
#define RET(v) insn(BPF_ALU | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, v), insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

enum { PROLOGUE_LEN = 6, RETURN_LEN = 2 };

static size_t rule_len(const struct plan_devcg_rule *r)
{
	return 1 + ((r->access & ACC_ALL) != ACC_ALL ? 3 : 0) + (r->major >= 0) + (r->minor >= 0) + RETURN_LEN;
}

size_t devfilter_len(const struct plan_devcg *d)
{
	size_t n = PROLOGUE_LEN + RETURN_LEN;
	for (size_t i = 0; i < d->n_rules; i++)
		n += rule_len(&d->rules[i]);
	return n;
}

void devfilter_build(const struct plan_devcg *d, struct bpf_insn *out)
{
	size_t n = 0;
	out[n++] = LDX_W(BPF_REG_2, BPF_REG_1, 0);
	out[n++] = ALU32_IMM(BPF_AND, BPF_REG_2, 0xffff);
	out[n++] = LDX_W(BPF_REG_3, BPF_REG_1, 0);
	out[n++] = ALU32_IMM(BPF_RSH, BPF_REG_3, 16);
	out[n++] = LDX_W(BPF_REG_4, BPF_REG_1, 4);
	out[n++] = LDX_W(BPF_REG_5, BPF_REG_1, 8);
	int action = d->default_allow ? 0 : 1; /* every exception takes the other action */
	for (size_t i = 0; i < d->n_rules; i++) {
		const struct plan_devcg_rule *r = &d->rules[i];
		size_t next = n + rule_len(r); /* the first instruction of the next block */
		/* A jump's offset counts from the instruction after it; blocks are at most 9 long, so it fits. */
#define TO_NEXT ((__s16)(next - (n + 1)))
		int type = r->type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR;
		out[n] = JNE32_IMM(BPF_REG_2, type, TO_NEXT);
		n++;
		if ((r->access & ACC_ALL) != ACC_ALL) {
			/* Every bit asked for must be in the rule: (w3 & access) == w3. */
			out[n++] = MOV32_REG(BPF_REG_1, BPF_REG_3);
			out[n++] = ALU32_IMM(BPF_AND, BPF_REG_1, (__s32)r->access);
			out[n] = JNE32_REG(BPF_REG_1, BPF_REG_3, TO_NEXT);
			n++;
		}
		if (r->major >= 0) {
			out[n] = JNE32_IMM(BPF_REG_4, (__s32)(__u32)r->major, TO_NEXT);
			n++;
		}
		if (r->minor >= 0) {
			out[n] = JNE32_IMM(BPF_REG_5, (__s32)(__u32)r->minor, TO_NEXT);
			n++;
		}
#undef TO_NEXT
		struct bpf_insn ret[] = { RET(action) };
		out[n++] = ret[0];
		out[n++] = ret[1];
	}
	struct bpf_insn ret[] = { RET(d->default_allow ? 1 : 0) };
	out[n++] = ret[0];
	out[n++] = ret[1];
}

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

void devfilter_attach(const struct plan_devcg *d, int cgroup_fd)
{
	size_t len = devfilter_len(d);
	struct bpf_insn *prog = calloc(len, sizeof(*prog));
	if (!prog)
		fail("device cgroup program");
	devfilter_build(d, prog);

	/* The verifier's log only on failure: a second load with it says why. */
	static char log[16384];
	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
	attr.insns = (__u64)(uintptr_t)prog;
	attr.insn_cnt = (__u32)len;
	attr.license = (__u64)(uintptr_t) "Apache";
	int progfd = (int)sys_bpf(BPF_PROG_LOAD, &attr);
	if (progfd < 0) {
		int saved = errno;
		attr.log_buf = (__u64)(uintptr_t)log;
		attr.log_size = sizeof(log);
		attr.log_level = 1;
		if (sys_bpf(BPF_PROG_LOAD, &attr) < 0 && log[0]) {
			char *nl = strrchr(log, '\n');
			while (nl && nl > log && nl[1] == '\0') {
				*nl = '\0';
				nl = strrchr(log, '\n');
			}
			failx("load the device cgroup program (linux.resources.devices): %s: %.300s", errno_text(saved),
			      nl ? nl + 1 : log);
		}
		errno = saved;
		fail("load the device cgroup program (linux.resources.devices)");
	}
	free(prog);

	memset(&attr, 0, sizeof(attr));
	attr.target_fd = (__u32)cgroup_fd;
	attr.attach_bpf_fd = (__u32)progfd;
	attr.attach_type = BPF_CGROUP_DEVICE;
	attr.attach_flags = BPF_F_ALLOW_MULTI;
	if (sys_bpf(BPF_PROG_ATTACH, &attr) < 0)
		fail("attach the device cgroup program (linux.resources.devices)");
	/* The cgroup holds the program now; our fds are not needed (the cgroup's lives until exec: CLOEXEC). */
	close(progfd);
}
