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

#endif
