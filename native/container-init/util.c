/* Status reporting: every message is one text line on the status fd (see docs/design.md). */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int g_status_fd = 4;

int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void vstatus_line(const char *fmt, va_list ap)
{
	char buf[4096];
	int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	for (int i = 0; i < n; i++)
		if (buf[i] == '\n' || buf[i] == '\r' || buf[i] == '\0')
			buf[i] = ' ';
	buf[n++] = '\n';
	int saved = errno;
	(void)write_all(g_status_fd, buf, (size_t)n);
	errno = saved;
}

void status_line(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vstatus_line(fmt, ap);
	va_end(ap);
}

static bool g_trace;

void trace_init(void)
{
	g_trace = getenv("HULL_INIT_TRACE") != NULL;
}

void trace_step(const char *step)
{
	if (!g_trace)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	status_line("trace %s %lld", step, (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

_Noreturn void fail(const char *step)
{
	status_line("error %s: %s", step, strerror(errno));
	_exit(127);
}

_Noreturn void fail_arg(const char *step, const char *arg)
{
	status_line("error %s %s: %s", step, arg, strerror(errno));
	_exit(127);
}

_Noreturn void failx(const char *fmt, ...)
{
	char msg[4000];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	status_line("error %s", msg);
	_exit(127);
}

const char *errno_text(int err)
{
	static char buf[128];
	snprintf(buf, sizeof(buf), "%s", strerror(err));
	buf[0] = (char)tolower((unsigned char)buf[0]);
	return buf;
}
