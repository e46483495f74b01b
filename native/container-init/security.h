/* Seams for the security settings a later issue fills in. Each runs in the child at runc's point in the order
 * (libcontainer/standard_init_linux.go); today each is a no-op. */
#ifndef HULL_CI_SECURITY_H
#define HULL_CI_SECURITY_H

#include "plan.h"

/* After pivot_root, before the readonly root remount. TODO(OCI linux.sysctl): write /proc/sys/<key>. */
void apply_sysctls(const struct plan *p);
/* After the readonly root. TODO(OCI linux.maskedPaths, linux.readonlyPaths): bind /dev/null or an empty ro tmpfs
 * over masked paths; bind-remount readonly paths MS_RDONLY. */
void apply_masked_and_readonly_paths(const struct plan *p);
/* Just before exec. TODO(OCI process.noNewPrivileges): prctl(PR_SET_NO_NEW_PRIVS, 1). */
void apply_no_new_privs(const struct plan *p);
/* Before setuid (keep caps over the uid change with PR_SET_KEEPCAPS) and after it.
 * TODO(OCI process.capabilities: bounding, effective, inheritable, permitted, ambient). */
void apply_capabilities_before_setuid(const struct plan *p);
void apply_capabilities_after_setuid(const struct plan *p);
/* Last step before exec. TODO(OCI linux.seccomp): load the filter (SECCOMP_SET_MODE_FILTER). */
void apply_seccomp(const struct plan *p);

#endif
