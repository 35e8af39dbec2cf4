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
    /* root only, a job over several processes (MPI ranks, fed by cluster.c): the hook, called
     * with the lock held, exchanges totals with the other ranks; `others` is what they last
     * reported (summed), for `ranks` processes in all, `reported` of the others heard from */
    void (*hook)(void *user, struct cnnelm_progress *root);
    void *hook_user;
    struct cnnelm_progress_totals {
        double planned[2], done[2];     /* as run_planned, run_done */
        double images, images_done;     /* as run_images, run_images_done */
        double seconds[2], images_timed[2]; /* as stage_seconds, stage_images */
    } others;
    int ranks, reported;
} cnnelm_progress;

typedef struct cnnelm_progress_totals cnnelm_progress_totals;

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

/* ---- a job over several processes (MPI ranks; cluster.c feeds these) ---- */
/* `hook` (NULL: none) is called with the root's lock held, on whatever thread reports or draws
 * (at every add, before every line and draw, and from cnnelm_progress_poll): it sends this
 * process's totals or takes the others'. Only the functions marked "lock held" below may be
 * called from it. `ranks` > 1: the whole-run figures cover the job of `ranks` processes, each
 * one not heard from yet counted as planning what this one plans. */
void cnnelm_progress_set_hook(cnnelm_progress *p, void (*hook)(void *user, cnnelm_progress *root),
                              void *user, int ranks);
/* lock held: the whole job's totals (this process's alone without other ranks) */
void cnnelm_progress_job_totals(const cnnelm_progress *root, cnnelm_progress_totals *t);
/* lock held: this process's own totals */
void cnnelm_progress_own_totals(const cnnelm_progress *root, cnnelm_progress_totals *t);
/* lock held: the other processes' totals, summed over the `reported` ones heard from */
void cnnelm_progress_set_others(cnnelm_progress *root, const cnnelm_progress_totals *sum, int reported);
/* Calls the hook now (and redraws the live line when due): for a thread that waits. */
void cnnelm_progress_poll(cnnelm_progress *p);

double cnnelm_now(void); /* monotonic seconds */

#endif
