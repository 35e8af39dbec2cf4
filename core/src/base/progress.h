/* cnnelm progress on stderr: on a terminal, one live line for the whole run (done/total images,
 * images/s, ETA) with one line per busy worker below it; otherwise timestamped lines, one per
 * finished stage; nothing when quiet (warnings excepted). Thread-safe. */
#ifndef CNNELM_PROGRESS_H
#define CNNELM_PROGRESS_H

#include <pthread.h>
#include <stddef.h>

typedef enum cnnelm_progress_mode {
    CNNELM_PROGRESS_QUIET = 0,
    CNNELM_PROGRESS_LINES = 1,
    CNNELM_PROGRESS_TTY = 2
} cnnelm_progress_mode;

/* Worker lines shown under the live line (workers beyond are counted, not shown). */
#define CNNELM_PROGRESS_SLOTS 16

typedef struct cnnelm_progress {
    cnnelm_progress_mode mode;
    pthread_mutex_t lock;
    char prefix[96];    /* printed before every line, e.g. "partition 2/4 [cpu:0]: " */
    char stage[160];
    size_t total, done;
    double start, last_draw;
    double weight;      /* work units per image of the current stage (a forward pass is 1) */
    struct cnnelm_progress *root; /* holds the whole-run accounting: itself when top-level */
    int slot;           /* the worker line this progress updates; -1: none */
    /* root only: the whole run's images, forward-only ([0]) and fine-tuning ([1]), planned and
     * done, and the seconds per image each kind took so far (their ratio weighs the ETA) */
    double run_planned[2], run_done[2], run_start, tune_weight;
    double stage_seconds[2], stage_images[2];
    size_t run_images, run_images_done;
    int drawn;          /* worker lines on the screen below the live line */
    int n_slots;
    struct cnnelm_progress *slot_p[CNNELM_PROGRESS_SLOTS]; /* busy workers' progress, or NULL */
} cnnelm_progress;

/* quiet != 0: nothing; otherwise TTY or LINES depending on isatty(stderr). */
void cnnelm_progress_init(cnnelm_progress *p, int quiet);
void cnnelm_progress_destroy(cnnelm_progress *p);
/* A progress for one of several concurrent workers: its stages end with a line of their own
 * and count towards the parent's whole run. */
void cnnelm_progress_init_child(cnnelm_progress *p, const cnnelm_progress *parent, const char *prefix);
/* The same, shown on worker line `slot` (the worker's index) under the live line. */
void cnnelm_progress_init_worker(cnnelm_progress *p, cnnelm_progress *parent, const char *prefix,
                                 int slot);
/* Sets the whole run's expected work: images through forward-only stages and through
 * fine-tuning stages (begin_weighted with weight > 1), and the cost of a fine-tuning image in
 * forward passes to assume until both kinds have been timed; the ETA counts from here. */
void cnnelm_progress_set_run(cnnelm_progress *p, double forward_images, double tune_images,
                             double tune_weight);
/* Starts a stage of `total` images (0: unknown), each one work unit. */
void cnnelm_progress_begin(cnnelm_progress *p, const char *stage, size_t total);
/* Starts a stage whose images cost about `weight` forward passes each (> 1: fine-tuning, whose
 * real cost is then measured). */
void cnnelm_progress_begin_weighted(cnnelm_progress *p, const char *stage, size_t total, double weight);
void cnnelm_progress_add(cnnelm_progress *p, size_t images);
/* Ends the stage, printing its summary line, followed by `detail` if non-NULL. */
void cnnelm_progress_end(cnnelm_progress *p, const char *detail);
/* A message line (not a stage); suppressed when quiet. */
void cnnelm_progress_note(cnnelm_progress *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* "cnnelm: warning: ..." on stderr, printed even when quiet (the report counts its warnings). */
void cnnelm_progress_warn(cnnelm_progress *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* The run is over: the live line goes (so what is printed next starts on a clean line) and a
 * summary line says how many images took how long. */
void cnnelm_progress_finish(cnnelm_progress *p);
/* Whole-run fraction done (0..1) and ETA in seconds (< 0: unknown yet). */
void cnnelm_progress_run_state(cnnelm_progress *p, double *fraction, double *eta);

double cnnelm_now(void); /* monotonic seconds */

#endif
