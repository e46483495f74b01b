/* Status reporting and small helpers shared by the container init helper. */
#ifndef HULL_CI_UTIL_H
#define HULL_CI_UTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Where status lines go: fd 4 in the supervising parent, the sync pipe in the forked child. */
extern int g_status_fd;

int write_all(int fd, const void *buf, size_t len);

/* Step timings for debugging a slow create: with HULL_INIT_TRACE in the environment (the agent sets it under
 * hull.debug=1), trace_step() writes "trace <step> <CLOCK_MONOTONIC µs>"; otherwise it does nothing. */
void trace_init(void);
void trace_step(const char *step);

/* Writes one status line ("<text>\n"); newlines inside the text become spaces so the line protocol holds. */
void status_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* strerror(err) the way Go (and so runc) prints an errno: "no such file or directory". The text lives until the next
 * call. */
const char *errno_text(int err);

/* "error <step>: <strerror(errno)>" then _exit(127). */
_Noreturn void fail(const char *step);
/* "error <step> <arg>: <strerror(errno)>" then _exit(127). */
_Noreturn void fail_arg(const char *step, const char *arg);
/* "error <message>" then _exit(127). */
_Noreturn void failx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
