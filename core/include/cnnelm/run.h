/* cnnelm commands as library calls: what `cnnelm train` and `cnnelm eval` do, so the
 * command-line tool stays a thin argument parser and other programs can run the same jobs. */
#ifndef CNNELM_RUN_H
#define CNNELM_RUN_H

#include <stdio.h>

#include "cnnelm/config.h"
#include "cnnelm/error.h"
#include "cnnelm/reduce.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cnnelm_run_options {
    const char *config_path;        /* -c */
    const char *const *overrides;   /* -s key=value, in order */
    int n_overrides;
    const char *model_path;         /* train: where to save (-o); eval: what to load (-m) */
    const char *report_path;        /* --report FILE.json, or NULL */
    int quiet;                      /* no progress on stderr */
    int resume;                     /* train --resume: reuse partitions in train.checkpoint_dir */
    const struct cnnelm_cluster *cluster; /* the MPI job, or NULL for one process */
    int verbose;                    /* -v: plugin messages (program cache, build logs) on stderr */
    int strict;                     /* train --strict: any warning makes the run fail (after the
                                     * model and report are written) */
    FILE *out;                      /* where the results (tables, confusion matrix, "model saved
                                     * to") are printed; NULL: nowhere (the tool passes stdout) */
} cnnelm_run_options;

/* Train as the config says, evaluate on its test set, save the model and the report.
 * Prints the results on o->out. Returns 0, or -1 with err set. A first SIGINT, SIGTERM or
 * SIGHUP during the call stops training between two chunks: with one partition the last
 * complete iteration is saved to model_path, with several the finished partitions stay in
 * train.checkpoint_dir; it returns -1 and err says what was kept (a second signal ends the
 * process at once). */
int cnnelm_run_train(const cnnelm_run_options *o, cnnelm_error *err);
/* The signal that interrupted cnnelm_run_train (SIGINT, ...), or 0: the tool exits 128 + it. */
int cnnelm_run_interrupted(void);

/* Evaluate a saved model on the config's test set. */
int cnnelm_run_eval(const cnnelm_run_options *o, cnnelm_error *err);

/* cnnelm average: cnnelm_run_average and its options are in cnnelm/reduce.h. */

/* Nonzero when a worker's watchdog (workers[i].op_timeout) gave up on a device in this
 * process: a thread may still be inside its plugin, so end with _Exit() after flushing. */
int cnnelm_workers_abandoned(void);

/* Print every backend found and its devices to `out`; returns the number of backends. Each
 * plugin is probed in a child process: one that crashes, or takes longer than timeout_s seconds
 * (<= 0: 30), is listed as broken. */
int cnnelm_run_devices(const char *plugin_path, int verbose, FILE *out, cnnelm_error *err);
int cnnelm_run_devices_timeout(const char *plugin_path, int verbose, double timeout_s, FILE *out,
                               cnnelm_error *err);

#ifdef __cplusplus
}
#endif
#endif
