/* The workload's working directory and program (see exec.h). */
#include "exec.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static const char *plan_env(const struct plan *p, const char *name)
{
	size_t len = strlen(name);
	for (size_t i = 0; i < p->n_env; i++)
		if (strncmp(p->env[i], name, len) == 0 && p->env[i][len] == '=')
			return p->env[i] + len + 1;
	return NULL;
}

static const char *program(const struct plan *p)
{
	return p->exec_path ? p->exec_path : p->argv[0];
}

/* buf = the PATH entry dir[0..dlen) joined with file; an empty entry is the working directory. buf holds
 * dlen + flen + 2 bytes. */
static void path_entry(char *buf, const char *dir, size_t dlen, const char *file, size_t flen)
{
	if (dlen == 0) {
		memcpy(buf, file, flen + 1);
		return;
	}
	memcpy(buf, dir, dlen);
	buf[dlen] = '/';
	memcpy(buf + dlen + 1, file, flen + 1);
}

/* ---------------------------------------------------------------- working directory */

static const char *cwd_of(const struct plan *p)
{
	return p->cwd ? p->cwd : "/";
}

static _Noreturn void fail_cwd(const struct plan *p)
{
	failx("chdir to cwd (\"%s\") set in config.json failed: %s", cwd_of(p), errno_text(errno));
}

bool enter_cwd_as_root(const struct plan *p)
{
	if (chdir(cwd_of(p)) == 0)
		return true;
	/* runc: the container's user may reach a directory root cannot (a volume chowned to it, root squashed). */
	if (errno == EACCES || errno == EPERM)
		return false;
	fail_cwd(p);
}

void enter_cwd_as_user(const struct plan *p)
{
	if (chdir(cwd_of(p)) < 0)
		fail_cwd(p);
}

/* ---------------------------------------------------------------- program lookup */

/* Go's findExecutable: 0, or the errno that rules `path` out. *at_stat: the error came from stat (Go then says
 * "stat <path>: <reason>"). */
static int find_executable(const char *path, bool *at_stat)
{
	struct stat st;
	*at_stat = false;
	if (stat(path, &st) < 0) {
		*at_stat = true;
		return errno;
	}
	if (S_ISDIR(st.st_mode))
		return EISDIR;
	if (faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) == 0)
		return 0;
	/* As Go: without a usable faccessat (ENOSYS, or EPERM from a seccomp filter) the mode bits decide. */
	if (errno != ENOSYS && errno != EPERM)
		return errno;
	return (st.st_mode & 0111) ? 0 : EACCES;
}

void check_executable(const struct plan *p)
{
	const char *file = program(p);
	bool at_stat;
	if (strchr(file, '/')) {
		int err = find_executable(file, &at_stat);
		if (err == 0)
			return;
		if (at_stat)
			failx("exec: \"%s\": stat %s: %s", file, file, errno_text(err));
		failx("exec: \"%s\": %s", file, errno_text(err));
	}
	const char *path = plan_env(p, "PATH");
	if (!path)
		path = DEFAULT_PATH;
	size_t flen = strlen(file);
	char *buf = malloc(strlen(path) + flen + 3);
	if (!buf)
		fail("look up the program");
	for (const char *dir = path;;) {
		const char *colon = strchr(dir, ':');
		size_t dlen = colon ? (size_t)(colon - dir) : strlen(dir);
		path_entry(buf, dir, dlen, file, flen);
		if (flen > 0 && find_executable(buf, &at_stat) == 0) {
			free(buf);
			return;
		}
		if (!colon)
			break;
		dir = colon + 1;
	}
	failx("exec: \"%s\": executable file not found in $PATH", file);
}

/* ---------------------------------------------------------------- exec */

/* execvpe with the container's PATH (not the helper's); exec_path (an OCI hook's path) is executed as is, with
 * argv[0] left as the plan gives it. */
_Noreturn void exec_workload(const struct plan *p)
{
	const char *file = program(p);
	if (strchr(file, '/')) {
		execve(file, p->argv, p->env);
		failx("exec %s: %s", file, errno_text(errno));
	}
	const char *path = plan_env(p, "PATH");
	if (!path)
		path = DEFAULT_PATH;
	size_t flen = strlen(file);
	char *buf = malloc(strlen(path) + flen + 3);
	if (!buf)
		fail("exec");
	int err = ENOENT;
	bool saw_eacces = false;
	const char *dir = path;
	for (;;) {
		const char *colon = strchr(dir, ':');
		size_t dlen = colon ? (size_t)(colon - dir) : strlen(dir);
		path_entry(buf, dir, dlen, file, flen);
		execve(buf, p->argv, p->env);
		switch (errno) {
		case EACCES:
			saw_eacces = true;
			/* fallthrough */
		case ENOENT:
		case ENOTDIR:
		case ESTALE:
		case ENODEV:
		case ETIMEDOUT:
			break;
		default:
			err = errno;
			goto out;
		}
		if (!colon)
			break;
		dir = colon + 1;
	}
	if (saw_eacces)
		err = EACCES;
out:
	failx("exec %s: %s", file, errno_text(err));
}
