/* cnnelm error reporting: every core function that can fail fills a cnnelm_error with a
 * one-line message naming the file or setting at fault, and returns a non-zero status. */
#ifndef CNNELM_ERROR_H
#define CNNELM_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cnnelm_error {
    char msg[1024];
} cnnelm_error;

/* Formats the message into err (which may be NULL) and returns -1, so call sites read
 * `return cnnelm_fail(err, "%s: truncated", path);`. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
int cnnelm_fail(cnnelm_error *err, const char *fmt, ...);

/* Prepends "prefix: " to an existing message (for adding context on the way up). */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
int cnnelm_fail_prefix(cnnelm_error *err, const char *fmt, ...);

/* Copies the first n bytes of `in` (up to a NUL) into out as printable text for a one-line
 * message: control and non-ASCII bytes as \xNN, backslash and '"' escaped; cut with "..." to
 * fit `cap`. Returns out. Bytes from files and from -s go through this before they are shown. */
char *cnnelm_escape(const char *in, size_t n, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
