/* cnnelm evaluation metrics: confusion matrix, accuracy, Cohen's kappa and its standard error. */
#ifndef CNNELM_METRICS_H
#define CNNELM_METRICS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cnnelm_metrics {
    uint64_t n;          /* examples counted */
    double accuracy;     /* observed agreement p_o */
    double kappa;        /* (p_o - p_e) / (1 - p_e) */
    double kappa_se;     /* sqrt(p_o (1 - p_o) / (n (1 - p_e)^2)), Cohen (1960) */
} cnnelm_metrics;

/* confusion[truth * classes + predicted]. With 1 - p_e == 0 (one class only), kappa is 0. */
void cnnelm_metrics_compute(const uint64_t *confusion, int classes, cnnelm_metrics *out);

/* Per-class figures from a confusion matrix (confusion[truth * classes + predicted]):
 * precision = tp / predicted as the class, recall = tp / truly the class, F1 their harmonic
 * mean; 0 where the denominator is 0 (a class never predicted or never present). */
typedef struct cnnelm_class_metrics {
    uint64_t support;    /* examples truly of the class */
    double precision, recall, f1;
} cnnelm_class_metrics;
void cnnelm_metrics_per_class(const uint64_t *confusion, int classes, cnnelm_class_metrics *out);

/* Index of the largest of n scores (the first on ties). */
int cnnelm_argmax(const float *scores, int n);

#ifdef __cplusplus
}
#endif
#endif
