/* The workload's working directory and program: runc's create-time checks of both, and the exec itself.
 * Messages use runc's words (libcontainer/standard_init_linux.go, init_linux.go and Go's exec.LookPath), so a user,
 * or an engine matching on them (Docker and podman map "no such file or directory" / "executable file not found"
 * to exit status 127 and "permission denied" to 126), reads what runc would have said. */
#ifndef HULL_CI_EXEC_H
#define HULL_CI_EXEC_H

#include "plan.h"

#include <stdbool.h>

/* chdir to the plan's cwd while still root (runc: "before we drop privileges"). Returns false when that was refused
 * with EACCES/EPERM: enter_cwd_as_user() tries again once the user is set. Any other error fails the child with
 * `chdir to cwd ("<cwd>") set in config.json failed: <reason>`. */
bool enter_cwd_as_root(const struct plan *p);
void enter_cwd_as_user(const struct plan *p);

/* Go's exec.LookPath as runc calls it before it reports ready: the program (exec_path, else arg 0 looked up in the
 * container's PATH) must exist, not be a directory, and be executable for the current credentials. Fails the child
 * with `exec: "<name>": <reason>` otherwise. Run after the user change, in the working directory. */
void check_executable(const struct plan *p);

/* execve()s the program; on failure reports `exec <path>: <reason>` and exits 127. */
_Noreturn void exec_workload(const struct plan *p);

#endif
