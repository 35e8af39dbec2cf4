/* What cnnelm predict's job (predict.c: the chunk and the CSV writer) and its input readers
 * (predict_input.c) share. Internal to report/. */
#ifndef CNNELM_PREDICT_JOB_H
#define CNNELM_PREDICT_JOB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cnnelm/error.h"
#include "cnnelm/model.h"
#include "cnnelm/predict.h"

typedef struct predict_job {
    const cnnelm_predict_options *o;
    const cnnelm_model *m;
    cnnelm_predictor *p;
    FILE *out;
    int chunk;
    size_t ex;              /* bytes per example */
    uint8_t *x;             /* chunk inputs */
    int *truth;             /* chunk labels, -1 unknown */
    char **source;          /* chunk source names */
    float *y;               /* chunk scores */
    unsigned char *taken;   /* classes, for the top-K selection */
    int fill;               /* examples in the chunk */
    uint64_t rows, labelled, right;
    int header_done;
} predict_job;

/* Claims the next slot of the chunk (flushing a full one); returns its index or -1. */
int cnnelm_predict_next_slot(predict_job *j, const char *source, int truth, cnnelm_error *err);
/* Predicts one input: an IDX images file, an image, a folder of images or a CSV file. */
int cnnelm_predict_input(predict_job *j, const char *path, cnnelm_error *err);

#endif
