/* linux.resources.devices on cgroup v2: an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE attached to the
 * container's cgroup, as runc's devicefilter does. The agent has already reduced the spec's rules to runc's clean
 * form (agent/spec-devices.ts: a default plus exceptions that all take the other action), so the order of the
 * exceptions does not matter here. */
#ifndef HULL_CI_DEVFILTER_H
#define HULL_CI_DEVFILTER_H

#include "plan.h"

#include <linux/bpf.h>
#include <stddef.h>

/* Instructions the program for d takes (the bound the plan parser keeps under the verifier's limit). */
size_t devfilter_len(const struct plan_devcg *d);
/* Writes the program into out (devfilter_len(d) entries). */
void devfilter_build(const struct plan_devcg *d, struct bpf_insn *out);
/* Loads the program and attaches it to the cgroup directory cgroup_fd (BPF_F_ALLOW_MULTI, as runc: a program the
 * container attaches below can only deny more). Fails the container with a one-line error. */
void devfilter_attach(const struct plan_devcg *d, int cgroup_fd);

#endif
