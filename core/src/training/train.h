/* cnnelm training on one network: the ELM fit (U, V summed over the data, beta solved), SGD
 * fine-tuning of the kernels by back-propagating the ELM error (Algorithm 2), and evaluation. */
#ifndef CNNELM_TRAIN_H
#define CNNELM_TRAIN_H

#include <stdint.h>

#include "cnnelm/dataset.h"
#include "cnnelm/enums.h"
#include "cnnelm/model.h"
#include "model/elm_solve.h"
#include "model/network.h"
#include "base/progress.h"

typedef struct cnnelm_iter_stats {
    int iteration;           /* 0: the plain ELM before any fine-tuning */
    double J;                /* mean of 1/2 ||y - t||^2 per training example, and */
    double train_accuracy;   /* training accuracy: iteration 0: of the ELM; later: as seen during
                              * the iteration (each batch with the beta of its own solve) */
    double test_accuracy;    /* of the model as saved after the iteration; NAN without a test set */
    double learning_rate;    /* 0 at iteration 0 */
    double seconds;
} cnnelm_iter_stats;

typedef struct cnnelm_train_log {
    int n;                   /* entries in iters: iteration 0 .. last completed */
    cnnelm_iter_stats *iters;
    int diverged;            /* fine-tuning stopped early; the model is the last good iteration */
    char divergence[512];
    int interrupted;         /* the signal (SIGINT, ...) that stopped training, or 0 */
    int interrupted_at;      /* the iteration it stopped in */
    int kept;                /* interrupted: m holds the complete model of iteration
                              * m->iterations (0: nothing usable, stopped in iteration 0's fit) */
    cnnelm_lambda_choice lambda_choice; /* model.lambda = "auto": the last ELM fit's choice and
                                         * GCV curve (n = 0: lambda was given) */
} cnnelm_train_log;

void cnnelm_train_log_free(cnnelm_train_log *log);

/* The training and evaluation calls below return CNNELM_STATUS_INTERRUPTED (error.h) when
 * cnnelm_interrupted() (a SIGINT or SIGTERM, see atomic_file.h) stopped them between two
 * chunks; err says so. */

/* A set of examples: rows[0..n) of ds, or examples 0..n when rows is NULL. */
typedef struct cnnelm_subset {
    const cnnelm_dataset *ds;
    const size_t *rows;
    size_t n;
} cnnelm_subset;

/* How an ELM fit sums and solves: the device sums `batch` examples in float (in double with
 * exact_sums) before they are added into the double sums (0: CNNELM_UV_BATCH); lambda candidates for "auto" (n = 0: 1, 10,
 * ..., 1e6). */
typedef struct cnnelm_fit_opts {
    size_t batch;
    int exact_sums;                 /* train.sums = "double": the device sums in double */
    const double *lambda_candidates;
    int n_lambda_candidates;
    double validation;          /* > 0: "auto" by held-out accuracy on this share (train.validation) */
    uint64_t validation_seed;   /* which rows are held out */
} cnnelm_fit_opts;

/* Float holds at most this many examples' products when train.batch is 0: precision does not
 * depend on the partition size, and moving U to double costs one read of U per batch. */
#define CNNELM_UV_BATCH 10000

struct cnnelm_config;

/* The fit options of a config (lambda_candidates points into cfg: valid while cfg is). */
cnnelm_fit_opts cnnelm_fit_opts_from_config(const struct cnnelm_config *cfg);
size_t cnnelm_fit_batch(const cnnelm_fit_opts *o);
/* Logs a lambda choice and its GCV curve (one line). */
void cnnelm_lambda_choice_note(cnnelm_progress *prog, const cnnelm_lambda_choice *ch);

/* Only the sums of cnnelm_elm_fit: U (upper triangle) and V of the subset under m's kernels into
 * m->U, m->V, with n_examples; no lambda choice, no solve, beta untouched. What a refit's pass
 * over a partition needs. Returns 0, CNNELM_STATUS_INTERRUPTED or another negative status. */
int cnnelm_elm_sums(cnnelm_net *net, cnnelm_model *m, const cnnelm_subset *data,
                    const cnnelm_fit_opts *opts, cnnelm_progress *prog, const char *stage,
                    cnnelm_error *err);

/* Sums U and V over the subset with the model's kernels (device float per batch, host double
 * across batches), stores them in m (with n_examples; U whole and symmetric), chooses lambda
 * when the model's rule is "auto" (into *choice, may be NULL) and solves beta into m. Leaves the
 * kernels and beta on the device. Returns 0, CNNELM_STATUS_NOT_POSITIVE_DEFINITE when the
 * system cannot be solved (err set), CNNELM_STATUS_INTERRUPTED, or another negative status. */
int cnnelm_elm_fit(cnnelm_net *net, cnnelm_model *m, const cnnelm_subset *data,
                   const cnnelm_fit_opts *opts, cnnelm_lambda_choice *choice,
                   cnnelm_progress *prog, const char *stage, cnnelm_error *err);

/* Predicts the subset with the kernels and beta on the device; adds into confusion
 * (classes x classes, truth-major). */
int cnnelm_predict_confusion(cnnelm_net *net, const cnnelm_subset *data, uint64_t *confusion,
                             cnnelm_progress *prog, const char *stage, cnnelm_error *err);

/* Accuracy of m on the subset (uploads m's kernels and beta). */
int cnnelm_evaluate(cnnelm_net *net, const cnnelm_model *m, const cnnelm_subset *data,
                    uint64_t *confusion, cnnelm_progress *prog, const char *stage,
                    cnnelm_error *err);

/* What training reads of a run's settings (train.* and model.lambda_candidates). */
typedef struct cnnelm_train_params {
    int iterations;                  /* fine-tuning iterations after the ELM fit; 0: plain ELM */
    size_t batch;                    /* ELM update interval in examples; 0: the whole subset */
    double learning_rate;            /* alpha */
    cnnelm_lr_schedule lr_schedule;  /* constant, or alpha / iteration */
    double momentum;                 /* in [0, 1) */
    cnnelm_fit_opts fit;             /* how each ELM fit sums and solves */
} cnnelm_train_params;

/* The training parameters of a config (fit.lambda_candidates points into cfg). */
cnnelm_train_params cnnelm_train_params_from_config(const struct cnnelm_config *cfg);

/* Cost of one fine-tuning image in forward passes, for the whole-run ETA. */
double cnnelm_finetune_weight(const cnnelm_train_params *p, int chunk);

/* Trains m (initialised kernels in, trained model out) on `train`: iteration 0 is the ELM fit;
 * then p->iterations of fine-tuning, each followed by beta solved once more on its final
 * kernels (so the saved model is consistent, and the series shows what would be saved).
 * `test` (n = 0: none) is evaluated after every iteration for the log. Divergence is not an
 * error: training stops, m holds the last good iteration, the call returns 0 and
 * log->diverged says why. An interrupt returns CNNELM_STATUS_INTERRUPTED with m back at the
 * last complete iteration (beta, U and V solved again on its kernels, one pass that is not
 * interruptible) and log->kept set. Other failures: a negative status, err set. */
int cnnelm_train_model(cnnelm_net *net, cnnelm_model *m, const cnnelm_subset *train,
                       const cnnelm_subset *test, const cnnelm_train_params *p, cnnelm_progress *prog,
                       cnnelm_train_log *log, cnnelm_error *err);

/* A fine-tuning in progress, resumable batch range by batch range: cnnelm_train_model is
 * start, then per iteration epoch_begin, batches, epoch_end, then finish; training/sync.c
 * drives several (one per partition) on the worker pool and averages their kernels between
 * batch ranges. Everything a partition needs between two ranges is here (kernels and beta in
 * m, the epoch's running U and V in m, the momentum velocity, the batch position); on the
 * device only the kernels matter between ranges, and epoch_begin/batches upload them. */
typedef struct cnnelm_finetune {
    cnnelm_model *m;
    const cnnelm_subset *train, *test;
    cnnelm_train_params tp;
    cnnelm_train_log *log;
    float *grads, *velocity, *good, *Y, *E; /* good: the last complete iteration's kernels */
    double j0;                  /* iteration 0's mean J (the divergence test's scale) */
    int it;                     /* the iteration in progress (1..iterations) */
    double lr, t_epoch;         /* its learning rate; when it began */
    size_t b0;                  /* first example of its next batch */
    double jsum;                /* its J and correct predictions so far */
    size_t correct;
    cnnelm_iter_stats s;        /* its entry in the series, filled by batches and epoch_end */
    int done;                   /* the last complete iteration */
    int stopped;                /* the iteration an interrupt stopped (0: none) */
    /* a shared beta (train.sync_beta; NULL: the partition's own): gU, gV the sums of every
     * partition at the last average (the caller's), dU, dV this one's increments since */
    const double *gU, *gV;
    double *dU, *dV;
    int pending;                /* the batch at b0 is forwarded and accumulated, not yet solved */
} cnnelm_finetune;

/* Iteration 0 (the ELM fit, and both accuracies when p->iterations > 0) and the state for
 * the iterations after it. Returns 0 or what cnnelm_train_model returns for iteration 0;
 * on failure nothing is left to free. */
int cnnelm_finetune_start(cnnelm_finetune *ft, cnnelm_net *net, cnnelm_model *m,
                          const cnnelm_subset *train, const cnnelm_subset *test,
                          const cnnelm_train_params *p, cnnelm_progress *prog,
                          cnnelm_train_log *log, cnnelm_error *err);
/* Iteration `it` begins: its learning rate, empty running U and V (host and device). */
int cnnelm_finetune_epoch_begin(cnnelm_finetune *ft, cnnelm_net *net, int it, cnnelm_error *err);
/* Batches left in the iteration in progress. */
size_t cnnelm_finetune_batches_left(const cnnelm_finetune *ft);
/* Examples per ELM update (batch) while fine-tuning n examples: train.batch, or all n. */
size_t cnnelm_train_batch_size(const cnnelm_train_params *tp, size_t n);
/* Runs the iteration's next `max` batches (fewer when it has fewer left) with the kernels in
 * ft->m (uploaded first). Returns 0 (ft->log->diverged set when it diverged),
 * CNNELM_STATUS_INTERRUPTED or another negative status. */
int cnnelm_finetune_batches(cnnelm_finetune *ft, cnnelm_net *net, size_t max, cnnelm_progress *prog,
                            cnnelm_error *err);
/* The iteration's last batch is done: its J and training accuracy into ft->s. */
void cnnelm_finetune_epoch_stats(cnnelm_finetune *ft);
/* After epoch_stats: the ELM fit on the kernels in ft->m, the test accuracy, the series entry;
 * the kernels become the last good ones. Returns 0 (ft->log->diverged set when the new system
 * is not positive definite; ft->stopped when interrupted), or a negative status. */
int cnnelm_finetune_epoch_end(cnnelm_finetune *ft, cnnelm_net *net, cnnelm_progress *prog,
                              cnnelm_error *err);
/* After the last iteration, an interrupt (ft->stopped) or a divergence (ft->log->diverged):
 * the model of the last complete iteration, as cnnelm_train_model leaves it; frees ft. */
int cnnelm_finetune_finish(cnnelm_finetune *ft, cnnelm_net *net, cnnelm_progress *prog,
                           cnnelm_error *err);
void cnnelm_finetune_free(cnnelm_finetune *ft);
/* After start: every batch solves beta from gU + dU, gV + dV (L x L upper, L x C), where the
 * caller keeps gU, gV (and clears dU, dV when it folds them in) between batch ranges. */
int cnnelm_finetune_share(cnnelm_finetune *ft, const double *gU, const double *gV, cnnelm_error *err);
/* The first half of the next batch (forward, U and V into dU, dV or the running sums), so that
 * the sums can be shared before its beta is solved; the next cnnelm_finetune_batches completes
 * it. Nothing when the iteration has no batch left. */
int cnnelm_finetune_accumulate(cnnelm_finetune *ft, cnnelm_net *net, cnnelm_error *err);

#endif
