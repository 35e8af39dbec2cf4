/* cnnelm lambda "auto" by a held-out share of the training rows (train.validation): which rows
 * are held out, and each candidate's held-out accuracy from one pass over them (train.c fits the
 * rest, reduces U once for every candidate, and refits on every row with the choice). */
#include "training/train_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "cnnelm/metrics.h"

typedef struct keyed {
    uint64_t key;
    size_t at;     /* position in the subset */
    int label;
} keyed;

static int by_label_key(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->label != y->label)
        return x->label < y->label ? -1 : 1;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->at < y->at ? -1 : x->at > y->at;
}

int cnnelm_holdout_split(const cnnelm_subset *data, double share, uint64_t seed, size_t *fit,
                         size_t *n_fit, size_t *held, size_t *n_held, cnnelm_error *err)
{
    size_t n = data->n;
    keyed *k = malloc((n ? n : 1) * sizeof *k);
    unsigned char *out = calloc(n ? n : 1, 1);
    if (!k || !out) {
        free(k);
        free(out);
        return cnnelm_fail(err, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        size_t row = data->rows ? data->rows[i] : i;
        /* a key of the row's index in the data set alone: the same rows are held out whatever
         * the partition order, worker or rank */
        uint64_t x = seed * 0x9E3779B97F4A7C15ull ^ (uint64_t)row;
        k[i] = (keyed){ cnnelm_splitmix64(&x), i, data->ds->labels[row] };
    }
    qsort(k, n, sizeof *k, by_label_key);
    for (size_t g = 0; g < n;) { /* each class: the share with the smallest keys, rounded */
        size_t e = g;
        while (e < n && k[e].label == k[g].label)
            e++;
        size_t take = (size_t)floor(share * (double)(e - g) + 0.5);
        for (size_t i = g; i < g + take; i++)
            out[k[i].at] = 1;
        g = e;
    }
    *n_fit = *n_held = 0;
    for (size_t i = 0; i < n; i++) { /* both in the subset's own order */
        size_t row = data->rows ? data->rows[i] : i;
        if (out[i])
            held[(*n_held)++] = row;
        else
            fit[(*n_fit)++] = row;
    }
    free(k);
    free(out);
    return 0;
}

int cnnelm_holdout_score(cnnelm_net *net, cnnelm_model *m, const cnnelm_subset *held,
                         const double *betas, int n_cand, size_t batch, int interruptible,
                         cnnelm_progress *prog, uint64_t *right, cnnelm_error *err)
{
    size_t L = (size_t)m->arch.hidden, C = (size_t)m->arch.classes;
    float *bf = malloc((size_t)n_cand * L * C * sizeof *bf);
    float *Y = malloc((size_t)net->chunk * C * sizeof *Y);
    int *usable = calloc((size_t)n_cand, sizeof *usable);
    int rc = -1;
    if (!bf || !Y || !usable) {
        cnnelm_fail(err, "out of memory for the held-out scores");
        goto out;
    }
    for (int c = 0; c < n_cand; c++) {
        const double *b = betas + (size_t)c * L * C;
        usable[c] = 1;
        for (size_t i = 0; i < L * C; i++) {
            bf[(size_t)c * L * C + i] = (float)b[i];
            usable[c] &= isfinite(bf[(size_t)c * L * C + i]) != 0;
        }
        right[c] = 0;
    }
    if (cnnelm_net_reset_uv(net, err))
        goto out;
    for (size_t b0 = 0; b0 < held->n; b0 += batch) {
        size_t bn = held->n - b0 < batch ? held->n - b0 : batch;
        for (size_t i = 0; i < bn;) {
            int n = cnnelm_train_chunk_len(net, i, bn);
            if ((rc = cnnelm_train_stop_now(interruptible, err)) != 0)
                goto out;
            rc = -1;
            /* the held rows count in the final sums too: their U and V go on the fit's */
            if (cnnelm_net_forward(net, held->ds, held->rows, b0 + i, n, err) || cnnelm_net_accumulate(net, err))
                goto out;
            for (int c = 0; c < n_cand; c++) {
                if (!usable[c])
                    continue;
                if (cnnelm_net_set_beta(net, bf + (size_t)c * L * C, err) || cnnelm_net_predict(net, Y, err))
                    goto out;
                for (int j = 0; j < n; j++)
                    right[c] += cnnelm_argmax(Y + (size_t)j * C, (int)C) == net->labels[j];
            }
            i += (size_t)n;
            cnnelm_progress_add(prog, (size_t)n);
        }
        if (cnnelm_net_add_uv(net, m->U, m->V, err))
            goto out;
    }
    for (int c = 0; c < n_cand; c++)
        if (!usable[c])
            right[c] = UINT64_MAX;
    rc = 0;
out:
    free(bf);
    free(Y);
    free(usable);
    return rc;
}

int cnnelm_holdout_pick(const cnnelm_lambda_choice *ch)
{
    int best = -1;
    for (int i = 0; i < ch->n; i++) {
        if (ch->held[i] < 0)
            continue;
        /* ties: the smaller lambda, the stronger regularisation (the safer of equals) */
        if (best < 0 || ch->held[i] > ch->held[best] ||
            (ch->held[i] == ch->held[best] && ch->lambda[i] < ch->lambda[best]))
            best = i;
    }
    return best;
}
