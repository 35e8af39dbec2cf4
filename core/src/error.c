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
        /* "prefix: old", cut to fit (built by hand: snprintf of two strings warns on truncation) */
        size_t n = strlen(prefix), cap = sizeof err->msg - 1;
        if (n > cap)
            n = cap;
        memcpy(err->msg, prefix, n);
        for (const char *s = ": "; *s && n < cap; s++)
            err->msg[n++] = *s;
        for (const char *s = old; *s && n < cap; s++)
            err->msg[n++] = *s;
        err->msg[n] = '\0';
    }
    return -1;
}
