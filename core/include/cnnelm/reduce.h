/* cnnelm reduce: combines k models trained from the same initial weights. Every sum is exact
 * integer arithmetic on rounded contributions (docs/reduce.md), so the result never depends on
 * the order of the models, which worker finished first or how many ranks took part. */
#ifndef CNNELM_REDUCE_H
#define CNNELM_REDUCE_H

#include "cnnelm/enums.h"
#include "cnnelm/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Checks that every model has the same architecture, initial seed and lambda; the message
 * names the first that differs (by its index, or by names[i] when names is non-NULL). */
int cnnelm_reduce_check(const cnnelm_model *const *models, int k, const char *const *names,
                        cnnelm_error *err);

/* out = the combination of models[0..k):
 *   MEAN:     kernels, biases and beta averaged (the paper);
 *   WEIGHTED: the same, weighted by each model's n_examples;
 *   REFIT:    kernels and biases averaged; beta is NOT solved here: the caller runs the
 *             averaged kernels over the data, sums U and V, and solves (cnnelm_reduce_solve
 *             when the sums are already in out->U, out->V).
 * In every mode out->U, out->V and out->n_examples are the sums of the models' (exactly
 * right for REFIT only when the kernels were identical, i.e. without fine-tuning). Means are
 * sums divided once (WEIGHTED: sum of n_i x_i over sum of n_i); identical kernels are copied. */
int cnnelm_reduce_models(const cnnelm_model *const *models, int k, cnnelm_reduce mode,
                         cnnelm_model *out, cnnelm_error *err);

/* beta = (I/lambda + U)^-1 V from m->U and m->V, on the host in double (Cholesky on the upper
 * triangle of U; the same solver as training). A model whose lambda rule is "auto" chooses
 * lambda first (GCV over 1, 10, ..., 1e6). U is left whole and symmetric. */
int cnnelm_reduce_solve(cnnelm_model *m, cnnelm_error *err);

/* 1 when every model has bit-for-bit the same kernels and biases (none was fine-tuned): then
 * the sum of their U and V is exactly what one pass over all their data would give. */
int cnnelm_reduce_same_kernels(const cnnelm_model *const *models, int k);

typedef struct cnnelm_average_options {
    const char *output;             /* -o */
    cnnelm_reduce reduce;           /* --reduce */
    const char *const *models;      /* the model files, in partition order */
    int n_models;
    const char *config_path;        /* -c: the training data and workers, for refit */
    const char *const *overrides;
    int n_overrides;
    int quiet;
} cnnelm_average_options;

/* Combine model files (cnnelm average): mean, weighted, or refit over the config's training data.
 * Models with different architectures, initial seeds or lambda are refused. */
int cnnelm_run_average(const cnnelm_average_options *o, cnnelm_error *err);

/* The same: model files combined one at a time (memory: one model and the sums), saved to
 * o->output; *n_examples (may be NULL) gets the combined model's count. Prints nothing: the
 * caller reports. */
int cnnelm_average_models(const struct cnnelm_average_options *o, uint64_t *n_examples,
                          cnnelm_error *err);

#ifdef __cplusplus
}
#endif
#endif
