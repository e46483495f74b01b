/*
 * log.c — stderr logging and the named-error table with rate-limited reporting.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

int hv_log_level = HV_LOG_WARN;
uint64_t hv_err_count[HV_ERR__COUNT];

static const char *const hv_err_names[HV_ERR__COUNT] = {
    [HV_OK] = "Ok",
#define HV_ERR_NAME(name) [HV_ERR_##name] = #name,
    HV_ERRORS(HV_ERR_NAME)
#undef HV_ERR_NAME
};

const char *hv_err_name(enum hv_err e)
{
    if ((unsigned)e >= HV_ERR__COUNT)
        return "Unknown";
    return hv_err_names[e];
}

static const char *const level_names[] = { "error", "warn", "info", "debug" };

static void vlog(int level, const char *prefix, const char *fmt, va_list ap)
{
    char buf[512];
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    if (n < 0)
        return;
    /* keep it one line */
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    fprintf(stderr, "hull-vsock-backend: %s: %s%s\n", level_names[level & 3], prefix, buf);
}

void hv_log(int level, const char *fmt, ...)
{
    if (level > hv_log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, "", fmt, ap);
    va_end(ap);
}

enum hv_err hv_fail(enum hv_err e, const char *fmt, ...)
{
    if ((unsigned)e >= HV_ERR__COUNT || e == HV_OK)
        return e;
    uint64_t n = ++hv_err_count[e];
    /* first 10 of each kind, then every 1000th */
    if (hv_log_level >= HV_LOG_WARN && (n <= 10 || n % 1000 == 0)) {
        char prefix[96];
        snprintf(prefix, sizeof prefix, "%s (#%llu): ", hv_err_name(e), (unsigned long long)n);
        va_list ap;
        va_start(ap, fmt);
        vlog(HV_LOG_WARN, prefix, fmt, ap);
        va_end(ap);
    }
    return e;
}
