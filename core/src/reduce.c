/* cnnelm reduce: model averaging (mean, weighted) and the exact refit solve (see reduce.h). */
#include "cnnelm/reduce.h"

#include "elm_solve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cnnelm_reduce_check(const cnnelm_model *const *models, int k, const char *const *names,
                        cnnelm_error *err)
{
    if (k < 1)
        return cnnelm_fail(err, "nothing to combine: no models");
    char a[64], b[64];
    for (int i = 1; i < k; i++) {
        snprintf(a, sizeof a, "model %d", 1);
        snprintf(b, sizeof b, "model %d", i + 1);
        const char *na = names ? names[0] : a, *nb = names ? names[i] : b;
        const cnnelm_model *m0 = models[0], *mi = models[i];
        if (!cnnelm_arch_equal(&m0->arch, &mi->arch))
            return cnnelm_fail(err, "%s and %s have different architectures (%s k%d %dx%d, %d classes "
                               "vs %s k%d %dx%d, %d classes, or different activations)", na, nb,
                               m0->arch.layers, m0->arch.kernel, m0->arch.in_h, m0->arch.in_w,
                               m0->arch.classes, mi->arch.layers, mi->arch.kernel, mi->arch.in_h,
                               mi->arch.in_w, mi->arch.classes);
        if (m0->seed != mi->seed)
            return cnnelm_fail(err, "%s and %s start from different initial weights (seed %llu vs "
                               "%llu): averaging them is meaningless", na, nb,
                               (unsigned long long)m0->seed, (unsigned long long)mi->seed);
        /* with lambda = "auto" each partition chose its own; the reduce chooses again */
        int both_auto = (m0->flags & mi->flags & CNNELM_MODEL_LAMBDA_AUTO) != 0;
        if ((m0->flags ^ mi->flags) & CNNELM_MODEL_LAMBDA_AUTO)
            return cnnelm_fail(err, "%s and %s chose lambda by different rules (one \"auto\", one "
                               "fixed)", na, nb);
        if (!both_auto && m0->lambda != mi->lambda)
            return cnnelm_fail(err, "%s and %s have different lambda (%g vs %g)", na, nb, m0->lambda,
                               mi->lambda);
    }
    return 0;
}

int cnnelm_reduce_models(const cnnelm_model *const *models, int k, cnnelm_reduce mode,
                         cnnelm_model *out, cnnelm_error *err)
{
    if (cnnelm_reduce_check(models, k, NULL, err))
        return -1;
    const cnnelm_model *m0 = models[0];
    if (cnnelm_model_init(out, &m0->arch, m0->lambda, m0->seed, 0, err))
        return -1;
    size_t P = m0->arch.n_params, L = (size_t)m0->arch.hidden, C = (size_t)m0->arch.classes;
    uint64_t total = 0;
    for (int i = 0; i < k; i++)
        total += models[i]->n_examples;
    double *acc = calloc(P > L * C ? P : L * C, sizeof *acc);
    if (!acc) {
        cnnelm_model_free(out);
        return cnnelm_fail(err, "out of memory");
    }
    double w[1024];
    double *weights = k <= 1024 ? w : malloc((size_t)k * sizeof *weights);
    if (!weights) {
        free(acc);
        cnnelm_model_free(out);
        return cnnelm_fail(err, "out of memory");
    }
    for (int i = 0; i < k; i++)
        weights[i] = (mode == CNNELM_REDUCE_WEIGHTED && total > 0)
                         ? (double)models[i]->n_examples / (double)total
                         : 1.0 / k;
    /* kernels and biases: mean (weighted for WEIGHTED) */
    for (int i = 0; i < k; i++)
        for (size_t j = 0; j < P; j++)
            acc[j] += weights[i] * models[i]->params[j];
    for (size_t j = 0; j < P; j++)
        out->params[j] = (float)acc[j];
    if (cnnelm_reduce_same_kernels(models, k)) /* not fine-tuned: exactly the initial kernels */
        memcpy(out->params, m0->params, P * sizeof *out->params);
    if (mode != CNNELM_REDUCE_REFIT) {
        memset(acc, 0, L * C * sizeof *acc);
        for (int i = 0; i < k; i++)
            for (size_t j = 0; j < L * C; j++)
                acc[j] += weights[i] * models[i]->beta[j];
        for (size_t j = 0; j < L * C; j++)
            out->beta[j] = (float)acc[j];
    }
    for (int i = 0; i < k; i++) {
        for (size_t j = 0; j < L * L; j++)
            out->U[j] += models[i]->U[j];
        for (size_t j = 0; j < L * C; j++)
            out->V[j] += models[i]->V[j];
        out->flags |= models[i]->flags;
        if (i == 0 || models[i]->iterations < out->iterations)
            out->iterations = models[i]->iterations;
    }
    out->n_examples = total;
    if (weights != w)
        free(weights);
    free(acc);
    return 0;
}

int cnnelm_reduce_solve(cnnelm_model *m, cnnelm_error *err)
{
    /* the same solver as every training run: refit's beta and a single model's agree */
    int rc = cnnelm_elm_solve_model(m, NULL, 0, NULL, err);
    cnnelm_elm_symmetrize(m->U, m->arch.hidden);
    return rc ? -1 : 0;
}

int cnnelm_reduce_same_kernels(const cnnelm_model *const *models, int k)
{
    for (int i = 1; i < k; i++)
        if (memcmp(models[i]->params, models[0]->params, models[0]->arch.n_params * sizeof(float)))
            return 0;
    return 1;
}
