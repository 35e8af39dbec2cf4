/* cnnelm reduce: model averaging (mean, weighted) and the exact refit solve (see reduce.h). */
#include "cnnelm/reduce.h"

#include <math.h>
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
        if (m0->lambda != mi->lambda)
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
    size_t L = (size_t)m->arch.hidden, C = (size_t)m->arch.classes;
    double *A = malloc(L * L * sizeof *A), *B = malloc(L * C * sizeof *B);
    if (!A || !B) {
        free(A);
        free(B);
        return cnnelm_fail(err, "out of memory");
    }
    memcpy(A, m->U, L * L * sizeof *A);
    memcpy(B, m->V, L * C * sizeof *B);
    for (size_t i = 0; i < L; i++)
        A[i * L + i] += 1.0 / m->lambda; /* I/lambda once, at the solve, never per partition */
    /* Cholesky A = R R^T in place (lower triangle), then two triangular solves per column. */
    int rc = 0;
    for (size_t j = 0; j < L && rc == 0; j++) {
        double d = A[j * L + j];
        for (size_t p = 0; p < j; p++)
            d -= A[j * L + p] * A[j * L + p];
        if (!(d > 0) || !isfinite(d)) {
            rc = cnnelm_fail(err, "the ELM system I/lambda + U is not positive definite (pivot %zu; "
                             "lambda = %g)", j, m->lambda);
            break;
        }
        d = sqrt(d);
        A[j * L + j] = d;
        for (size_t i = j + 1; i < L; i++) {
            double s = A[i * L + j];
            for (size_t p = 0; p < j; p++)
                s -= A[i * L + p] * A[j * L + p];
            A[i * L + j] = s / d;
        }
    }
    if (rc == 0) {
        for (size_t c = 0; c < C; c++) {
            for (size_t i = 0; i < L; i++) { /* forward: R y = b */
                double s = B[i * C + c];
                for (size_t p = 0; p < i; p++)
                    s -= A[i * L + p] * B[p * C + c];
                B[i * C + c] = s / A[i * L + i];
            }
            for (size_t i = L; i-- > 0;) { /* backward: R^T x = y */
                double s = B[i * C + c];
                for (size_t p = i + 1; p < L; p++)
                    s -= A[p * L + i] * B[p * C + c];
                B[i * C + c] = s / A[i * L + i];
            }
        }
        for (size_t j = 0; j < L * C; j++) {
            if (!isfinite(B[j])) {
                rc = cnnelm_fail(err, "the ELM solve gave a non-finite beta (lambda = %g)", m->lambda);
                break;
            }
        }
        if (rc == 0)
            for (size_t j = 0; j < L * C; j++)
                m->beta[j] = (float)B[j];
    }
    free(A);
    free(B);
    return rc;
}
