/* cnnelm experiments: Map (k partitions trained from the same initial weights on the worker
 * pool), Reduce (mean, weighted, refit), and the evaluation of each partition's model, the
 * reduced model and optionally a single model trained on all the data (the paper's tables). */
#ifndef CNNELM_EXPERIMENT_H
#define CNNELM_EXPERIMENT_H

#include "cnnelm/cluster.h"
#include "cnnelm/config.h"
#include "cnnelm/metrics.h"
#include "cnnelm/model.h"
#include "partition.h"
#include "progress.h"
#include "train.h"
#include "workers.h"

typedef struct cnnelm_part_result {
    cnnelm_model model;
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
    cnnelm_pool *pool;
    const cnnelm_cluster *cluster; /* NULL: one process */
    int fold;                   /* for checkpoint names */
    int resume;                 /* reuse partitions found in train.checkpoint_dir */
    const char *rank_prefix;    /* "" or "rank R: " for messages */
    /* outputs (on rank 0; other ranks hold their own partitions' models) */
    int k;
    cnnelm_part_result *parts;  /* k */
    cnnelm_model reduced;       /* the combined model (k = 1: the partition's model) */
    cnnelm_metrics reduced_test;
    cnnelm_lambda_choice reduced_lambda; /* refit with lambda = "auto": its choice (n = 0: none) */
    uint64_t *reduced_confusion;/* classes x classes */
    int has_single;
    cnnelm_part_result single;  /* a model trained on all the data (train.compare_single) */
    double map_seconds, reduce_seconds;
} cnnelm_experiment;

/* A worker's name in messages: its device ("cpu:0"), with "#index" when several workers share
 * that device. */
void cnnelm_worker_label(const cnnelm_pool *pool, const cnnelm_worker *w, char *out, size_t cap);

/* Runs one experiment (inputs filled in by the caller). */
int cnnelm_experiment_run(cnnelm_experiment *x, const cnnelm_arch *arch, cnnelm_error *err);
void cnnelm_experiment_free(cnnelm_experiment *x);

/* The refit reduce of trained models over partitions of the data: averaged kernels (from the
 * models, needed on rank 0 only), U and V of each partition computed by its owner rank and
 * summed in partition order on rank 0, beta solved once there (without fine-tuning the
 * models' own U and V are summed instead: no pass over the data). Used by the run and by
 * `cnnelm average` (cluster NULL). */
int cnnelm_refit(cnnelm_pool *pool, const cnnelm_cluster *cluster, const cnnelm_model *const *models,
                 int k, const cnnelm_subset *parts, int n_parts, const cnnelm_fit_opts *opts,
                 cnnelm_progress *prog, cnnelm_model *out, cnnelm_lambda_choice *choice,
                 cnnelm_error *err);

#endif
