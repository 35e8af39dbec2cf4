/* cnnelm error messages: formatting helpers behind cnnelm_fail and cnnelm_fail_prefix. */
#include "cnnelm/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int cnnelm_fail(cnnelm_error *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int cnnelm_fail_prefix(cnnelm_error *err, const char *fmt, ...)
{
    if (err) {
        char prefix[512], old[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
    }
    return -1;
}
