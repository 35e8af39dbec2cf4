/* cnnelm error reporting: every core function that can fail fills a cnnelm_error with a
 * one-line message naming the file or setting at fault, and returns a negative status. */
#ifndef CNNELM_ERROR_H
#define CNNELM_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cnnelm_error {
    char msg[1024];
} cnnelm_error;

/* The core's one convention: a function returns 0 on success, or a negative status with the
 * message in its cnnelm_error. The code says what kind of failure, for callers that act on it
 * (a refit whose system is not positive definite, an interrupted run); the message says the
 * rest. Outcomes that are not failures are fields of the result, not codes: fine-tuning that
 * diverged keeps its last good iteration (cnnelm_train_log.diverged), a plugin that fails some
 * checks is a report (cnnelm_plugin_check_summary.failed). Not the plugin ABI's cnnelm_status
 * (backend.h): that one is what a plugin returns, positive codes, and the core turns them into
 * these. */
typedef enum cnnelm_core_status {
    CNNELM_STATUS_OK = 0,
    CNNELM_STATUS_FAILED = -1,                /* a failure the message describes (cnnelm_fail) */
    CNNELM_STATUS_INVALID_ARGUMENT = -2,      /* an argument or setting the call cannot accept */
    CNNELM_STATUS_OUT_OF_MEMORY = -3,
    CNNELM_STATUS_IO = -4,                    /* a file could not be opened, read or written */
    CNNELM_STATUS_DATA = -5,                  /* a data set or model file is malformed */
    CNNELM_STATUS_DEVICE = -6,                /* a backend or its device failed */
    CNNELM_STATUS_NOT_POSITIVE_DEFINITE = -7, /* the ELM system I/lambda + U could not be solved:
                                               * not positive definite, or beta not finite */
    CNNELM_STATUS_INTERRUPTED = -8            /* a signal (SIGINT, SIGTERM) stopped the call */
} cnnelm_core_status;

/* "not positive definite", ...; "unknown status" for other values. */
const char *cnnelm_core_status_name(int status);

/* Formats the message into err (which may be NULL) and returns CNNELM_STATUS_FAILED (-1), so
 * call sites read `return cnnelm_fail(err, "%s: truncated", path);`. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
int cnnelm_fail(cnnelm_error *err, const char *fmt, ...);

/* The same, returning `status` (a negative cnnelm_core_status) instead of -1. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
int cnnelm_fail_status(cnnelm_error *err, int status, const char *fmt, ...);

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
