/* The OCI process security settings. Each runs in the child at runc's point in the order
 * (libcontainer/standard_init_linux.go); a failure reports "error <step>: <reason>" and exits 127. */
#ifndef HULL_CI_SECURITY_H
#define HULL_CI_SECURITY_H

#include "plan.h"

/* After pivot_root, before the readonly root remount: writes /proc/sys/<key> in the container's namespaces (the
 * agent allows only namespaced keys). */
void apply_sysctls(const struct plan *p);
/* After the readonly root: readonly paths are bind-remounted MS_RDONLY (keeping nosuid/nodev/noexec), then masked
 * paths get /dev/null (files) or an empty read-only tmpfs (directories). Missing paths are skipped. */
void apply_masked_and_readonly_paths(const struct plan *p);
/* Just before exec: prctl(PR_SET_NO_NEW_PRIVS, 1) when asked. */
void apply_no_new_privs(const struct plan *p);
/* Before setuid: drops the bounding set and sets PR_SET_KEEPCAPS so the permitted set survives the uid change. After
 * it: sets effective/permitted/inheritable (capset) and the ambient set. Nothing when the plan has no capabilities. */
void apply_capabilities_before_setuid(const struct plan *p);
void apply_capabilities_after_setuid(const struct plan *p);
/* Builds the seccomp filter, if any, before the child reports "ready" (a filter libseccomp refuses fails the create). */
void prepare_seccomp(const struct plan *p);
/* Loads the prepared filter. Without no_new_privs that needs CAP_SYS_ADMIN, so the caller loads it before the
 * capabilities are dropped; with it, as the last step before exec (as runc does). */
void apply_seccomp(const struct plan *p);

#endif
