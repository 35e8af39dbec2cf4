/* cnnelm metrics: accuracy, Cohen's kappa and per-class precision, recall, F1 from a confusion
 * matrix. */
#include "cnnelm/metrics.h"

#include <math.h>
#include <stdlib.h>

void cnnelm_metrics_compute(const uint64_t *confusion, int classes, cnnelm_metrics *out)
{
    uint64_t n = 0, agree = 0;
    double pe = 0;
    for (int i = 0; i < classes; i++)
        for (int j = 0; j < classes; j++)
            n += confusion[(size_t)i * classes + j];
    out->n = n;
    if (n == 0) {
        out->accuracy = out->kappa = out->kappa_se = 0;
        return;
    }
    for (int i = 0; i < classes; i++) {
        uint64_t row = 0, col = 0;
        for (int j = 0; j < classes; j++) {
            row += confusion[(size_t)i * classes + j];
            col += confusion[(size_t)j * classes + i];
        }
        agree += confusion[(size_t)i * classes + i];
        pe += ((double)row / (double)n) * ((double)col / (double)n);
    }
    double po = (double)agree / (double)n;
    out->accuracy = po;
    if (1.0 - pe <= 0) {
        out->kappa = 0;
        out->kappa_se = 0;
        return;
    }
    out->kappa = (po - pe) / (1.0 - pe);
    out->kappa_se = sqrt(po * (1.0 - po) / ((double)n * (1.0 - pe) * (1.0 - pe)));
}

int cnnelm_argmax(const float *scores, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (scores[i] > scores[best])
            best = i;
    return best;
}

void cnnelm_metrics_per_class(const uint64_t *confusion, int classes, cnnelm_class_metrics *out)
{
    for (int k = 0; k < classes; k++) {
        uint64_t tp = confusion[(size_t)k * classes + k], row = 0, col = 0;
        for (int j = 0; j < classes; j++) {
            row += confusion[(size_t)k * classes + j];
            col += confusion[(size_t)j * classes + k];
        }
        cnnelm_class_metrics *m = &out[k];
        m->support = row;
        m->precision = col ? (double)tp / (double)col : 0;
        m->recall = row ? (double)tp / (double)row : 0;
        m->f1 = m->precision + m->recall > 0 ? 2 * m->precision * m->recall / (m->precision + m->recall) : 0;
    }
}
