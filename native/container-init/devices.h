/* linux.devices: the plan's device nodes, made inside the rootfs (runc's createDevices). */
#ifndef HULL_CI_DEVICES_H
#define HULL_CI_DEVICES_H

#include "plan.h"

/* After the mounts, before pivot_root: each `device` of the plan is made with mknod at its path in the rootfs
 * (missing parent directories created), replacing what is there (a default node of the same name: the spec's wins,
 * as runc), then given the plan's owner and mode. Fails through fail_arg(). */
void devices_create(const struct plan *p);

#endif
