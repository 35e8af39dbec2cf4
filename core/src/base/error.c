/* cnnelm error messages: formatting helpers behind cnnelm_fail and cnnelm_fail_prefix, and the
 * names of the core's status codes. */
#include "cnnelm/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *cnnelm_core_status_name(int status)
{
    switch (status) {
    case CNNELM_STATUS_OK: return "ok";
    case CNNELM_STATUS_FAILED: return "failed";
    case CNNELM_STATUS_INVALID_ARGUMENT: return "invalid argument";
    case CNNELM_STATUS_OUT_OF_MEMORY: return "out of memory";
    case CNNELM_STATUS_IO: return "input/output error";
    case CNNELM_STATUS_DATA: return "bad data";
    case CNNELM_STATUS_DEVICE: return "device error";
    case CNNELM_STATUS_NOT_POSITIVE_DEFINITE: return "not positive definite";
    case CNNELM_STATUS_INTERRUPTED: return "interrupted";
    default: return "unknown status";
    }
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 0)))
#endif
static void set_message(cnnelm_error *err, const char *fmt, va_list ap)
{
    if (err)
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
}

int cnnelm_fail(cnnelm_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(err, fmt, ap);
    va_end(ap);
    return CNNELM_STATUS_FAILED;
}

int cnnelm_fail_status(cnnelm_error *err, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(err, fmt, ap);
    va_end(ap);
    return status;
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

char *cnnelm_escape(const char *in, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    if (cap == 0)
        return out;
    for (size_t i = 0; i < n && in[i]; i++) {
        unsigned char c = (unsigned char)in[i];
        char piece[8];
        if (c == '\\' || c == '"')
            snprintf(piece, sizeof piece, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            snprintf(piece, sizeof piece, "\\x%02x", c);
        else
            snprintf(piece, sizeof piece, "%c", c);
        size_t len = strlen(piece);
        if (o + len + 4 > cap) { /* room for "..." and the NUL */
            if (o + 4 <= cap)
                memcpy(out + o, "...", 3), o += 3;
            break;
        }
        memcpy(out + o, piece, len);
        o += len;
    }
    out[o < cap ? o : cap - 1] = '\0';
    return out;
}
