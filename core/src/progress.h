/* cnnelm progress on stderr: a self-updating line (images/s, elapsed, ETA) when stderr is a
 * terminal, one line per finished stage otherwise, nothing when quiet. Thread-safe. */
#ifndef CNNELM_PROGRESS_H
#define CNNELM_PROGRESS_H

#include <pthread.h>
#include <stddef.h>

typedef enum cnnelm_progress_mode {
    CNNELM_PROGRESS_QUIET = 0,
    CNNELM_PROGRESS_LINES = 1,
    CNNELM_PROGRESS_TTY = 2
} cnnelm_progress_mode;

typedef struct cnnelm_progress {
    cnnelm_progress_mode mode;
    pthread_mutex_t lock;
    char prefix[96];    /* printed before every line, e.g. "partition 2/4 [cpu:0]: " */
    char stage[160];
    size_t total, done;
    double start, last_draw;
} cnnelm_progress;

/* quiet != 0: nothing; otherwise TTY or LINES depending on isatty(stderr). */
void cnnelm_progress_init(cnnelm_progress *p, int quiet);
void cnnelm_progress_destroy(cnnelm_progress *p);
/* A progress for one of several concurrent workers: never redraws a line (TTY becomes LINES). */
void cnnelm_progress_init_child(cnnelm_progress *p, const cnnelm_progress *parent, const char *prefix);
/* Starts a stage of `total` images (0: unknown). */
void cnnelm_progress_begin(cnnelm_progress *p, const char *stage, size_t total);
void cnnelm_progress_add(cnnelm_progress *p, size_t images);
/* Ends the stage, printing its summary line, followed by `detail` if non-NULL. */
void cnnelm_progress_end(cnnelm_progress *p, const char *detail);
/* A message line (not a stage); suppressed when quiet. */
void cnnelm_progress_note(cnnelm_progress *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

double cnnelm_now(void); /* monotonic seconds */

#endif
