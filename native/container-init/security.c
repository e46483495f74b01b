/* Security settings: seams only for now (see security.h). */
#include "security.h"

void apply_sysctls(const struct plan *p) { (void)p; }
void apply_masked_and_readonly_paths(const struct plan *p) { (void)p; }
void apply_no_new_privs(const struct plan *p) { (void)p; }
void apply_capabilities_before_setuid(const struct plan *p) { (void)p; }
void apply_capabilities_after_setuid(const struct plan *p) { (void)p; }
void apply_seccomp(const struct plan *p) { (void)p; }
