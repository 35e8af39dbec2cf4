/* cnnelm experiments: Map (k partitions trained from the same initial weights on the worker
 * pool, each folded into the reduce's sums as it finishes), the exchange of per-partition facts,
 * Reduce (reducer.h), and the evaluation of each partition's model, the reduced model (by every
 * rank on its share of the test set) and optionally a single model trained on all the data. */
#ifndef CNNELM_EXPERIMENT_H
#define CNNELM_EXPERIMENT_H

#include "cnnelm/cluster.h"
#include "cnnelm/config.h"
#include "cnnelm/metrics.h"
#include "cnnelm/model.h"
#include "data/partition.h"
#include "base/progress.h"
#include "training/train.h"
#include "training/workers.h"

typedef struct cnnelm_part_result {
    cnnelm_model model;         /* once folded into the reduce (k > 1): its facts only (iterations,
                                 * flags, n_examples, lambda); the weights are freed */
    uint64_t weights_digest;    /* FNV-1a of its kernels, biases and beta before they were freed
                                 * (on the rank that trained it; 0 elsewhere) */
    uint64_t kernels_digest;    /* the same of its kernels and biases alone (train.sync_every:
                                 * every partition's is the same) */
    cnnelm_train_log log;
    int worker;                 /* index of the worker that trained it (on its rank) */
    int rank;                   /* the process that trained it */
    int resumed;                /* loaded from its checkpoint, not trained in this run */
    double seconds;
    size_t examples;
    cnnelm_metrics test;
    uint64_t class_examples[256]; /* training examples of each class in the partition (non-IID splits) */
} cnnelm_part_result;

typedef struct cnnelm_experiment {
    /* inputs */
    const cnnelm_config *cfg;
    uint64_t seed;              /* initial weights and partitioning */
    cnnelm_subset train;        /* all training rows of this run */
    cnnelm_subset test;         /* n = 0: no evaluation */
    cnnelm_progress *prog;
    cnnelm_worker_pool *pool;
    const cnnelm_cluster *cluster; /* NULL: one process */
    int fold;                   /* for checkpoint names */
    int resume;                 /* reuse partitions found in train.checkpoint_dir */
    const char *rank_prefix;    /* "" or "rank R: " for messages */
    /* outputs (on rank 0; other ranks hold their own partitions' results). Once folded into the
     * reduce's sums a partition's model is freed: its facts and weights digest stay. */
    int k;
    cnnelm_part_result *parts;  /* k */
    cnnelm_model reduced;       /* the combined model (k = 1: the partition's model), on every
                                 * rank; its U and V only on rank 0 */
    cnnelm_metrics reduced_test;
    cnnelm_lambda_choice reduced_lambda; /* refit with lambda = "auto": its choice (n = 0: none) */
    uint64_t *reduced_confusion;/* classes x classes */
    int has_single;
    cnnelm_part_result single;  /* a model trained on all the data (train.compare_single) */
    double map_seconds, reduce_seconds;
} cnnelm_experiment;


/* The Map over some subsets (the partitions, or all the data for the single model). */
typedef struct cnnelm_map_job {
    cnnelm_experiment *x;
    const cnnelm_model *init;
    const cnnelm_subset *parts;   /* the subsets to train on */
    cnnelm_part_result *res;      /* one per subset */
    int n;                        /* subsets in all */
    const int *ids;               /* task -> subset (this rank's share); NULL: task = subset */
    int checkpoints;              /* partitions are checkpointed (not the single model) */
    const char *what;             /* "partition" or "single model" */
    struct cnnelm_reducer *red;   /* each trained model is folded in, then freed; NULL: kept */
    const char *run_text;         /* the fingerprints' run part, made once (with checkpoints) */
} cnnelm_map_job;

/* For the Map's tasks (experiment.c, sync.c), on the worker's thread: partition p's progress
 * line, and what follows its training (rc: its outcome so far): checkpoint, evaluation, fold
 * into the reduce, weights freed. Returns the final outcome. */
void cnnelm_experiment_part_progress(cnnelm_experiment *x, const cnnelm_map_job *j, cnnelm_worker *w,
                                     int p, cnnelm_progress *child);
int cnnelm_experiment_part_done(cnnelm_experiment *x, const cnnelm_map_job *j, cnnelm_worker *w, int p,
                                double t0, int rc, cnnelm_progress *prog, cnnelm_error *err);

/* Runs one experiment (inputs filled in by the caller). */
int cnnelm_experiment_run(cnnelm_experiment *x, const cnnelm_arch *arch, cnnelm_error *err);
void cnnelm_experiment_free(cnnelm_experiment *x);

#endif
