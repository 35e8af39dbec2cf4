/* cnnelm trials x folds: the runs of one `cnnelm train` (train.trials seeds, each with
 * train.folds folds, then k-fold's final model on all the data), each one experiment on the
 * worker pool, its results added to the report; and what an interrupt keeps. */
#ifndef CNNELM_TRIALS_H
#define CNNELM_TRIALS_H

#include "cnnelm/cluster.h"
#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "cnnelm/model.h"
#include "base/progress.h"
#include "report/report.h"
#include "training/workers.h"

typedef struct cnnelm_trials {
    const cnnelm_config *cfg;
    const cnnelm_dataset *train, *test;
    cnnelm_worker_pool *pool;
    const cnnelm_cluster *cluster;  /* NULL: one process */
    int rank;                       /* 0 unless under MPI: only rank 0 reports and keeps */
    int resume;
    const char *rank_prefix;        /* "" or "rank R: " */
    cnnelm_progress *prog;
    const char *model_path;         /* -o: where an interrupted one-partition run is saved */
    cnnelm_report *report;          /* rank 0: the runs and the kept model's test figures */
    cnnelm_model *model;            /* out (rank 0): the model to save (the first run's reduced
                                     * model, or k-fold's final model on all the data) */
} cnnelm_trials;

/* Runs every trial and fold; sets the whole run's work on the progress first. Returns 0, or -1
 * with err set (an interrupt: err says what was kept). */
int cnnelm_trials_run(const cnnelm_trials *t, const cnnelm_arch *arch, cnnelm_error *err);

/* What a trained model file records beyond the weights: partitions, reduce, class names. */
int cnnelm_model_set_provenance(cnnelm_model *m, int partitions, const cnnelm_config *c,
                                const cnnelm_dataset *train, cnnelm_error *err);

/* Saves to path; when that fails the model goes beside the checkpoints or into $TMPDIR and the
 * error names where. */
int cnnelm_model_save_keeping(const cnnelm_model *m, const char *path, const char *checkpoint_dir,
                              cnnelm_error *err);

#endif
