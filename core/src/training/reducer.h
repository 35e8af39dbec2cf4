/* cnnelm reducer: every reduce of a run or of `cnnelm average` (mean, weighted, refit), folding
 * one model at a time into order-independent sums (fixsum.h), so memory is O(L^2) whatever the
 * number of partitions and the result has the same bits for any number of workers or ranks.
 * See docs/reduce.md. */
#ifndef CNNELM_REDUCER_H
#define CNNELM_REDUCER_H

#include <pthread.h>
#include <stdint.h>

#include "cnnelm/cluster.h"
#include "cnnelm/config.h"
#include "cnnelm/model.h"
#include "model/elm_solve.h"
#include "base/fixsum.h"
#include "base/progress.h"
#include "training/train.h"
#include "training/workers.h"

typedef struct cnnelm_reducer {
    cnnelm_reduce mode;
    const char *ref_name;       /* the reference in messages (NULL: "the first model") */
    cnnelm_model ref;           /* architecture, seed, lambda rule and kernels every model must share
                                 * (kernels: "not fine-tuned" means bitwise these) */
    cnnelm_fixsum params, beta; /* kernels and biases; beta (mean, weighted) */
    cnnelm_fixsum U, V;         /* upper triangle of U; V */
    int64_t count;              /* models folded */
    int64_t n_examples;
    int64_t flags;              /* OR of the models' flags */
    int64_t iterations;         /* the fewest fine-tuning iterations of any model */
    int64_t differ;             /* some model's kernels are not the reference's */
    float *shared;              /* the first model folded on this rank: its kernels and biases */
    int64_t apart;              /* some model's kernels are not the first one's (on this rank) */
    double first_lambda;        /* lambda of the model with index 0 (kept in the reduced file) */
    int have_first;
    pthread_mutex_t lock;       /* workers fold concurrently */
} cnnelm_reducer;

/* ref: the initial model of a run (or the first of the models combined); its weights are
 * copied, its U and V are not. */
int cnnelm_reducer_init(cnnelm_reducer *r, const cnnelm_model *ref, cnnelm_reduce mode,
                        cnnelm_error *err);
void cnnelm_reducer_free(cnnelm_reducer *r);

/* Folds model m (partition `index`; `name` for messages, NULL: "partition index+1") into the
 * sums after checking it against the reference. Thread-safe. */
int cnnelm_reducer_add(cnnelm_reducer *r, const cnnelm_model *m, int index, const char *name,
                       cnnelm_error *err);

/* Combines every rank's sums (cluster NULL or one process: nothing to do): kernels and beta on
 * every rank, U and V on rank 0. One step per matrix is agreed first (MIN of the steps), so the
 * 128-bit integers add exactly. */
int cnnelm_reducer_combine(cnnelm_reducer *r, const cnnelm_cluster *c, cnnelm_error *err);

/* Sums n <= 4 fixsums over the ranks (cluster NULL or one process: nothing to do): one step
 * each, agreed first (MIN of the steps), then the limbs added; to_all[i]: on every rank, else on
 * rank 0. names[i] for messages. */
int cnnelm_fixsum_combine(const cnnelm_cluster *c, cnnelm_fixsum **s, const int *to_all, int n,
                          const char *const *names, cnnelm_error *err);

/* The combined model (after combine): mean or weighted kernels and beta (refit: mean kernels,
 * beta left 0), U, V and n_examples the sums (on rank 0; other ranks get zeros). */
int cnnelm_reducer_model(const cnnelm_reducer *r, int rank, cnnelm_model *out, cnnelm_error *err);

/* The refit reduce after combine: the mean kernels, then, when the models were fine-tuned, one
 * pass of them over this rank's partitions (parts, owned by rank p mod size) folded into U, V
 * and summed to rank 0; without fine-tuning the models' own U and V are the same sums. Rank 0
 * solves beta once (the training solver), and beta and lambda go to every rank, so each can
 * evaluate *out. choice (rank 0, may be NULL): lambda = "auto"'s choice. */
int cnnelm_reducer_refit(cnnelm_reducer *r, cnnelm_worker_pool *pool, const cnnelm_cluster *cluster,
                         const cnnelm_subset *parts, int n_parts, const cnnelm_fit_opts *opts,
                         cnnelm_progress *prog, cnnelm_model *out, cnnelm_lambda_choice *choice,
                         cnnelm_error *err);

/* dst = a model with src's architecture, seed, lambda, flags and weights (kernels, beta) and
 * zeroed U and V; src's own U and V may be NULL (they are never copied: O(L^2) saved). */
int cnnelm_model_like(cnnelm_model *dst, const cnnelm_model *src, cnnelm_error *err);

#endif
