/* cnnelm training, internal: what train.c (ELM fit, prediction, evaluation) and finetune.c
 * (Algorithm 2) share. Not for other files: they use train.h. */
#ifndef CNNELM_TRAIN_INTERNAL_H
#define CNNELM_TRAIN_INTERNAL_H

#include <stddef.h>

#include "training/train.h"

/* Between two chunks: CNNELM_STATUS_INTERRUPTED when a signal asked to stop (interruptible
 * calls only), else 0. */
int cnnelm_train_stop_now(int interruptible, cnnelm_error *err);

/* The examples of the next chunk: the net's chunk, or what is left of total after done. */
int cnnelm_train_chunk_len(const cnnelm_net *net, size_t done, size_t total);

/* cnnelm_elm_fit, with interruptible 0 for the fits that keep a model after a stop. */
int cnnelm_train_elm_fit(cnnelm_net *net, cnnelm_model *m, const cnnelm_subset *data,
                         const cnnelm_fit_opts *opts, cnnelm_lambda_choice *choice,
                         int interruptible, cnnelm_progress *prog, const char *stage,
                         cnnelm_error *err);

/* Accuracy of the kernels and beta currently on the device; NAN for an empty subset. */
int cnnelm_train_device_accuracy(cnnelm_net *net, const cnnelm_subset *data,
                                 cnnelm_progress *prog, const char *stage, double *acc,
                                 cnnelm_error *err);

/* ---- lambda "auto" by held-out accuracy (train.validation; holdout.c) ---- */
/* Splits data's rows: of each class, the share `share` (rounded) with the smallest keys of
 * (seed, row) goes to held, the rest to fit, both in data's order (arrays of data->n). */
int cnnelm_holdout_split(const cnnelm_subset *data, double share, uint64_t seed, size_t *fit,
                         size_t *n_fit, size_t *held, size_t *n_held, cnnelm_error *err);
/* One pass over the held rows: their U and V are added into m->U, m->V (ELM batches of
 * `batch`), and right[c] counts the rows candidate c's beta (betas: n_cand x L x C, row-major)
 * classifies correctly (UINT64_MAX: a candidate with a non-finite beta). Leaves the last
 * candidate's beta on the device. */
int cnnelm_holdout_score(cnnelm_net *net, cnnelm_model *m, const cnnelm_subset *held,
                         const double *betas, int n_cand, size_t batch, int interruptible,
                         cnnelm_progress *prog, uint64_t *right, cnnelm_error *err);
/* The candidate with the best held-out accuracy (ties: the smaller lambda); -1: none. */
int cnnelm_holdout_pick(const cnnelm_lambda_choice *ch);

#endif
