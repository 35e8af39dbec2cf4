/* cnnelm ELM solve: beta = (I/lambda + U)^-1 V in double by Cholesky, and lambda by GCV from one
 * eigendecomposition (see elm_solve.h). Row-major matrices are handed to LAPACK as column-major
 * ones: our upper triangle is LAPACK's lower, so no L x L transposed copy is ever made. */
#include "elm_solve.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "progress.h"

void cnnelm_elm_symmetrize(double *U, int L)
{
    size_t n = (size_t)L;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            U[j * n + i] = U[i * n + j];
}

/* Finite upper triangle of U and finite V, or a message saying which is not. */
static int check_inputs(const double *U, const double *V, size_t L, size_t C, cnnelm_error *err)
{
    for (size_t i = 0; i < L; i++)
        for (size_t j = i; j < L; j++)
            if (!isfinite(U[i * L + j])) {
                cnnelm_fail(err, "the ELM sums U = H'H contain NaN or Inf (row %zu): the hidden layer "
                            "overflowed (kernels too large, or diverged fine-tuning)", i + 1);
                return 1;
            }
    for (size_t i = 0; i < L * C; i++)
        if (!isfinite(V[i])) {
            cnnelm_fail(err, "the ELM sums V = H'T contain NaN or Inf: the hidden layer overflowed");
            return 1;
        }
    return 0;
}

int cnnelm_elm_solve(const double *U, const double *V, int l, int c, double lambda, double *beta,
                     cnnelm_error *err)
{
    size_t L = (size_t)l, C = (size_t)c;
    if (l < 1 || c < 1)
        return cnnelm_fail(err, "internal: ELM solve of %d x %d", l, c);
    if (!(lambda > 0) || !isfinite(lambda))
        return cnnelm_fail(err, "lambda must be a finite number > 0 (got %g)", lambda);
    if (L > ((size_t)-1 / sizeof(double)) / L)
        return cnnelm_fail(err, "the ELM system of %d hidden units is too large to address", l);
    int rc = check_inputs(U, V, L, C, err);
    if (rc)
        return rc;
    double *A = malloc(L * L * sizeof *A), *B = malloc(L * C * sizeof *B);
    if (!A || !B) {
        free(A);
        free(B);
        return cnnelm_fail(err, "out of memory for the ELM solve (%.1f MiB for I/lambda + U)",
                           (double)(L * L * sizeof *A) / 1048576.0);
    }
    /* A: our upper triangle of U (LAPACK's column-major lower), plus I/lambda, added once here */
    for (size_t i = 0; i < L; i++) {
        memcpy(A + i * L + i, U + i * L + i, (L - i) * sizeof *A);
        A[i * L + i] += 1.0 / lambda;
    }
    for (size_t i = 0; i < L; i++) /* B column-major L x C: column j holds V[:, j] */
        for (size_t j = 0; j < C; j++)
            B[j * L + i] = V[i * C + j];
    lapack_int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', l, A, l);
    if (info > 0) {
        rc = 1;
        cnnelm_fail(err, "the ELM system I/lambda + U is not positive definite (lambda = %g; it "
                    "fails at hidden unit %d of %d): U is not a sum of H'H, or lambda is too large "
                    "for rounding; try a smaller model.lambda", lambda, (int)info, l);
    } else if (info < 0) {
        rc = cnnelm_fail(err, "internal: the Cholesky factorisation rejected argument %d", (int)-info);
    } else {
        info = LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'L', l, c, A, l, B, l);
        if (info != 0)
            rc = cnnelm_fail(err, "internal: the triangular solves rejected argument %d", (int)-info);
    }
    for (size_t i = 0; rc == 0 && i < L; i++)
        for (size_t j = 0; j < C; j++) {
            double b = B[j * L + i];
            if (!isfinite(b)) {
                rc = 1;
                cnnelm_fail(err, "the ELM solve gave a non-finite beta (lambda = %g): I/lambda + U "
                            "is numerically singular; try a smaller model.lambda", lambda);
                break;
            }
            beta[i * C + j] = b;
        }
    free(A);
    free(B);
    return rc;
}

int cnnelm_elm_solve_float(const double *U, const double *V, int l, int c, double lambda,
                           float *beta, cnnelm_error *err)
{
    size_t n = (size_t)l * (size_t)c;
    double *b = malloc((n ? n : 1) * sizeof *b);
    if (!b)
        return cnnelm_fail(err, "out of memory");
    int rc = cnnelm_elm_solve(U, V, l, c, lambda, b, err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!isfinite((float)b[i])) {
            rc = 1;
            cnnelm_fail(err, "the ELM solve gave a beta too large for float (lambda = %g): try a "
                        "smaller model.lambda", lambda);
            break;
        }
        beta[i] = (float)b[i];
    }
    free(b);
    return rc;
}

int cnnelm_elm_choose_lambda(const double *U, const double *V, int l, int c, uint64_t N,
                             const double *cand, int n_cand, cnnelm_lambda_choice *out,
                             cnnelm_error *err)
{
    size_t L = (size_t)l, C = (size_t)c;
    memset(out, 0, sizeof *out);
    if (n_cand < 1 || n_cand > CNNELM_LAMBDA_MAX_CANDIDATES)
        return cnnelm_fail(err, "lambda: %d candidates (1..%d allowed)", n_cand,
                           CNNELM_LAMBDA_MAX_CANDIDATES);
    if (N == 0)
        return cnnelm_fail(err, "lambda = \"auto\" needs training examples");
    if (check_inputs(U, V, L, C, err))
        return -1;
    double t0 = cnnelm_now();
    double *Q = malloc(L * L * sizeof *Q), *d = malloc(L * sizeof *d), *W = malloc(L * C * sizeof *W);
    double *s = malloc(L * sizeof *s);
    int rc = 0;
    if (!Q || !d || !W || !s) {
        rc = cnnelm_fail(err, "out of memory for lambda = \"auto\" (%.1f MiB for the eigenvectors)",
                         (double)(L * L * sizeof *Q) / 1048576.0);
        goto out;
    }
    for (size_t i = 0; i < L; i++)
        memcpy(Q + i * L + i, U + i * L + i, (L - i) * sizeof *Q);
    /* U = Q D Q'. Column-major Q: eigenvector k is Q[k*L .. k*L+L), so row-major Q is Q' */
    lapack_int info = LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'L', l, Q, l, d);
    if (info != 0) {
        rc = cnnelm_fail(err, "lambda = \"auto\": the eigendecomposition of U did not converge "
                         "(LAPACK dsyevd info %d)", (int)info);
        goto out;
    }
    /* W = Q'V; s_k = ||W[k, :]||^2 */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, l, c, l, 1.0, Q, l, V, c, 0.0, W, c);
    for (size_t k = 0; k < L; k++) {
        double sum = 0;
        for (size_t j = 0; j < C; j++)
            sum += W[k * C + j] * W[k * C + j];
        s[k] = sum;
        if (d[k] < 0) /* rounding of a positive semi-definite U */
            d[k] = 0;
    }
    out->n = n_cand;
    out->best = 0;
    double n = (double)N;
    for (int i = 0; i < n_cand; i++) {
        double lam = cand[i], mu = 1.0 / lam, fit = 0, df = 0;
        /* beta = Q (D + mu)^-1 W: tr(beta'V) = sum g s, tr(beta'U beta) = sum d g^2 s */
        for (size_t k = 0; k < L; k++) {
            double g = 1.0 / (d[k] + mu);
            fit += s[k] * g * (2.0 - d[k] * g);
            df += d[k] * g;
        }
        double rss = n - fit;
        if (rss < 0)
            rss = 0;
        double dof = n - df;
        out->lambda[i] = lam;
        out->df[i] = df;
        out->gcv[i] = dof > 0 ? n * rss / (dof * dof) : HUGE_VAL;
        if (out->gcv[i] < out->gcv[out->best])
            out->best = i;
    }
    out->seconds = cnnelm_now() - t0;
out:
    free(Q);
    free(d);
    free(W);
    free(s);
    return rc;
}

const double cnnelm_lambda_default_candidates[7] = { 1, 10, 100, 1e3, 1e4, 1e5, 1e6 };

int cnnelm_elm_solve_model(cnnelm_model *m, const double *cand, int n_cand,
                           cnnelm_lambda_choice *choice, cnnelm_error *err)
{
    int L = m->arch.hidden, C = m->arch.classes;
    if (m->flags & CNNELM_MODEL_LAMBDA_AUTO) {
        cnnelm_lambda_choice local;
        cnnelm_lambda_choice *ch = choice ? choice : &local;
        if (!cand || n_cand < 1) {
            cand = cnnelm_lambda_default_candidates;
            n_cand = 7;
        }
        if (cnnelm_elm_choose_lambda(m->U, m->V, L, C, m->n_examples, cand, n_cand, ch, err))
            return -1;
        m->lambda = ch->lambda[ch->best];
    }
    return cnnelm_elm_solve_float(m->U, m->V, L, C, m->lambda, m->beta, err);
}
