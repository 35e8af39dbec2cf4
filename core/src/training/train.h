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

#endif
