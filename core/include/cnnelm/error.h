/* cnnelm error reporting: every core function that can fail fills a cnnelm_error with a
 * one-line message naming the file or setting at fault, and returns a non-zero status. */
#ifndef CNNELM_ERROR_H
#define CNNELM_ERROR_H

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

#ifdef __cplusplus
}
#endif
#endif
