/* cnnelm predictions: a trained model applied to new inputs (IDX, image files and folders, CSV),
 * chunk by chunk on any backend; the library call behind `cnnelm predict`. */
#ifndef CNNELM_PREDICT_H
#define CNNELM_PREDICT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cnnelm/config.h"
#include "cnnelm/error.h"
#include "cnnelm/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A model opened on one device (the config's first worker; NULL config: one CPU worker). */
typedef struct cnnelm_predictor cnnelm_predictor;

int cnnelm_predictor_open(cnnelm_predictor **p, const cnnelm_model *m, const cnnelm_config *cfg,
                          cnnelm_error *err);
void cnnelm_predictor_close(cnnelm_predictor *p);

/* The device it runs on ("cpu:0"), and how many examples it takes per device call. */
const char *cnnelm_predictor_device(const cnnelm_predictor *p);
int cnnelm_predictor_chunk(const cnnelm_predictor *p);

/* Scores (n x classes, row-major: H beta, the class is the argmax) of n inputs laid out as the
 * model takes them: uint8, n x in_c x in_h x in_w (planar). Any n: it is cut into chunks. */
int cnnelm_predictor_run(cnnelm_predictor *p, const uint8_t *inputs, size_t n, float *scores,
                         cnnelm_error *err);

typedef struct cnnelm_predict_options {
    const char *model_path;         /* -m */
    const char *const *inputs;      /* IDX image files, image files, image folders, CSV files */
    int n_inputs;
    const char *labels_path;        /* --labels for an IDX input; NULL: a sibling labels file is
                                     * used when there is one (t10k-images-idx3-ubyte ->
                                     * t10k-labels-idx1-ubyte) */
    const char *output_path;        /* -o FILE.csv; NULL: stdout */
    int top_k;                      /* --top K: the K best classes and their scores per row */
    int scores;                     /* --scores: every class's score */
    int resize;                     /* --resize: images of another size resized to the model's */
    const char *config_path;        /* -c: the worker (backend, device) and train.chunk; NULL: cpu */
    const char *const *overrides;   /* -s key=value */
    int n_overrides;
    int quiet;                      /* no progress on stderr */
    FILE *out;                      /* the CSV without output_path, the "N predictions written"
                                     * and accuracy lines with it; NULL: nowhere (the tool passes
                                     * stdout) */
} cnnelm_predict_options;

/* Writes one CSV row per input example: source (image file, or FILE:INDEX for IDX and CSV
 * rows), predicted class (and its name when the model has class names), the true label when
 * known, then the top K or every score. Memory is bounded by the chunk, not by the number of
 * inputs. With labels, prints "accuracy X% (N examples)". */
int cnnelm_run_predict(const cnnelm_predict_options *o, cnnelm_error *err);

/* cnnelm info: what a model file is (architecture, input, classes and names, lambda, examples,
 * iterations, diverged, reduce, partitions, checksum, format version), as text or JSON, to out. */
int cnnelm_run_info(const char *model_path, int json, FILE *out, cnnelm_error *err);

#ifdef __cplusplus
}
#endif
#endif
