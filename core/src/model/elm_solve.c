/* cnnelm ELM solve: beta = (I/lambda + U)^-1 V in double by Cholesky, and lambda by GCV from one
 * eigendecomposition (see elm_solve.h). Row-major matrices are handed to LAPACK as column-major
 * ones: our upper triangle is LAPACK's lower, so no L x L transposed copy is ever made. */
#include "model/elm_solve.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/progress.h"

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
            if (!isfinite(U[i * L + j]))
                return cnnelm_fail_status(err, CNNELM_STATUS_NOT_POSITIVE_DEFINITE,
                                          "the ELM sums U = H'H contain NaN or Inf (row %zu): the hidden "
                                          "layer overflowed (kernels too large, or diverged fine-tuning)",
                                          i + 1);
    for (size_t i = 0; i < L * C; i++)
        if (!isfinite(V[i]))
            return cnnelm_fail_status(err, CNNELM_STATUS_NOT_POSITIVE_DEFINITE, "the ELM sums V = H'T "
                                      "contain NaN or Inf: the hidden layer overflowed");
    return 0;
}

int cnnelm_elm_solve(const double *U, const double *V, int l, int c, double lambda, double *beta,
                     cnnelm_error *err)
{
    size_t L = (size_t)l, C = (size_t)c;
    if (l < 1 || c < 1)
        return cnnelm_fail_status(err, CNNELM_STATUS_INVALID_ARGUMENT, "internal: ELM solve of %d x %d",
                                  l, c);
    if (!(lambda > 0) || !isfinite(lambda))
        return cnnelm_fail_status(err, CNNELM_STATUS_INVALID_ARGUMENT,
                                  "lambda must be a finite number > 0 (got %g)", lambda);
    if (L > ((size_t)-1 / sizeof(double)) / L)
        return cnnelm_fail_status(err, CNNELM_STATUS_OUT_OF_MEMORY,
                                  "the ELM system of %d hidden units is too large to address", l);
    int rc = check_inputs(U, V, L, C, err);
    if (rc)
        return rc;
    double *A = malloc(L * L * sizeof *A), *B = malloc(L * C * sizeof *B);
    if (!A || !B) {
        free(A);
        free(B);
        return cnnelm_fail_status(err, CNNELM_STATUS_OUT_OF_MEMORY,
                                  "out of memory for the ELM solve (%.1f MiB for I/lambda + U)",
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
        rc = cnnelm_fail_status(err, CNNELM_STATUS_NOT_POSITIVE_DEFINITE, "the ELM system I/lambda + U is not positive definite (lambda = %g; it "
                                "fails at hidden unit %d of %d): U is not a sum of H'H, or lambda is "
                                "too large for rounding; try a smaller model.lambda", lambda, (int)info, l);
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
                rc = cnnelm_fail_status(err, CNNELM_STATUS_NOT_POSITIVE_DEFINITE,
                                        "the ELM solve gave a non-finite beta (lambda = %g): I/lambda + "
                                        "U is numerically singular; try a smaller model.lambda", lambda);
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
        return cnnelm_fail_status(err, CNNELM_STATUS_OUT_OF_MEMORY, "out of memory");
    int rc = cnnelm_elm_solve(U, V, l, c, lambda, b, err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!isfinite((float)b[i])) {
            rc = cnnelm_fail_status(err, CNNELM_STATUS_NOT_POSITIVE_DEFINITE,
                                    "the ELM solve gave a beta too large for float (lambda = %g): try a "
                                    "smaller model.lambda", lambda);
            break;
        }
        beta[i] = (float)b[i];
    }
    free(b);
    return rc;
}

/* LAPACK's first stage of the two-stage tridiagonal reduction (full -> band by blocked
 * Householder, level-3 BLAS); LAPACKE has no wrapper for it. */
extern void dsytrd_sy2sb_(const char *uplo, const int *n, const int *kd, double *a, const int *lda,
                          double *ab, const int *ldab, double *tau, double *work, const int *lwork,
                          int *info, size_t uplo_len);

/* Below this size the one-stage tridiagonal reduction is cheap enough and simpler. */
#define GCV_BAND_MIN 512
#define GCV_BAND 64

/* GCV for every candidate from one reduction of U to a band matrix B = Q'UQ of bandwidth kd
 * (kd = 1: tridiagonal). With W = Q'V and, per candidate, X = (B + I/lambda)^-1 W (a banded
 * Cholesky solve, O(L kd^2 + L kd C)):
 *   beta = Q X, tr(beta'V) = tr(X'W) = a, tr(beta'U beta) = a - ||X||^2 / lambda,
 *   RSS = N - a - ||X||^2 / lambda, df = sum d_i / (d_i + 1/lambda) over B's eigenvalues d.
 * The full -> band stage is blocked (level-3 BLAS); a direct tridiagonal reduction is bound by
 * memory bandwidth (one pass over U per column) and costs several times more on wide L. */
static int choose(const double *U, const double *V, int l, int c, uint64_t N, const double *cand,
                  int n_cand, cnnelm_lambda_choice *out, double *beta, double *all, cnnelm_error *err);

int cnnelm_elm_choose_lambda(const double *U, const double *V, int l, int c, uint64_t N,
                             const double *cand, int n_cand, cnnelm_lambda_choice *out,
                             double *beta, cnnelm_error *err)
{
    return choose(U, V, l, c, N, cand, n_cand, out, beta, NULL, err);
}

int cnnelm_elm_lambda_path(const double *U, const double *V, int l, int c, uint64_t N,
                           const double *cand, int n_cand, cnnelm_lambda_choice *out,
                           double *betas, cnnelm_error *err)
{
    return choose(U, V, l, c, N, cand, n_cand, out, NULL, betas, err);
}

/* Q X (column-major L x C, in place) back from the reduction's basis. */
static lapack_int apply_q(int kd, int l, int c, double *A, const double *tau, double *X)
{
    if (kd == 1)
        return LAPACKE_dormtr(LAPACK_COL_MAJOR, 'L', 'L', 'N', l, c, A, l, tau, X, l);
    return LAPACKE_dormqr(LAPACK_COL_MAJOR, 'L', 'N', l - kd, c, l - kd, A + kd, l, tau, X + kd, l);
}

static int choose(const double *U, const double *V, int l, int c, uint64_t N, const double *cand,
                  int n_cand, cnnelm_lambda_choice *out, double *beta, double *all, cnnelm_error *err)
{
    size_t L = (size_t)l, C = (size_t)c;
    memset(out, 0, sizeof *out);
    if (n_cand < 1 || n_cand > CNNELM_LAMBDA_MAX_CANDIDATES)
        return cnnelm_fail(err, "lambda: %d candidates (1..%d allowed)", n_cand,
                           CNNELM_LAMBDA_MAX_CANDIDATES);
    if (N == 0)
        return cnnelm_fail(err, "lambda = \"auto\" needs training examples");
    /* non-finite sums are a plain failure here, as they always were for "auto" (the Cholesky
     * path reports them as not positive definite) */
    if (check_inputs(U, V, L, C, err))
        return CNNELM_STATUS_FAILED;
    double t0 = cnnelm_now();
    int kd = l >= GCV_BAND_MIN ? GCV_BAND : 1;
    size_t ldab = (size_t)kd + 1;
    double *A = malloc(L * L * sizeof *A), *W = malloc(L * C * sizeof *W), *X = malloc(L * C * sizeof *X);
    double *AB = malloc(ldab * L * sizeof *AB), *AB2 = malloc(ldab * L * sizeof *AB2);
    double *tau = malloc(L * sizeof *tau), *eig = malloc(L * sizeof *eig), *e = malloc(L * sizeof *e);
    double *Xbest = beta || all ? malloc(L * C * sizeof *Xbest) : NULL;
    double *work = NULL;
    int rc = 0;
    lapack_int info = 0;
    if (!A || !W || !X || !AB || !AB2 || !tau || !eig || !e || ((beta || all) && !Xbest)) {
        rc = cnnelm_fail_status(err, CNNELM_STATUS_OUT_OF_MEMORY,
                                "out of memory for lambda = \"auto\" (%.1f MiB for a copy of U)",
                                (double)(L * L * sizeof *A) / 1048576.0);
        goto out;
    }
    for (size_t i = 0; i < L; i++)
        memcpy(A + i * L + i, U + i * L + i, (L - i) * sizeof *A);
    for (size_t i = 0; i < L; i++) /* W column-major L x C */
        for (size_t j = 0; j < C; j++)
            W[j * L + i] = V[i * C + j];
    if (kd == 1) {
        /* B tridiagonal: AB row 0 the diagonal, row 1 the subdiagonal */
        info = LAPACKE_dsytrd(LAPACK_COL_MAJOR, 'L', l, A, l, eig, e, tau);
        if (info == 0)
            info = LAPACKE_dormtr(LAPACK_COL_MAJOR, 'L', 'L', 'T', l, c, A, l, tau, W, l);
        for (size_t j = 0; info == 0 && j < L; j++) {
            AB[j * 2] = eig[j];
            AB[j * 2 + 1] = j + 1 < L ? e[j] : 0;
        }
    } else {
        int n = l, kdi = kd, lda = l, ldabi = (int)ldab, lwork = -1, finfo = 0;
        double query = 0;
        dsytrd_sy2sb_("L", &n, &kdi, A, &lda, AB, &ldabi, tau, &query, &lwork, &finfo, 1);
        lwork = finfo == 0 && query >= 1 ? (int)query : n * kd;
        work = malloc((size_t)lwork * sizeof *work);
        if (!work) {
            rc = cnnelm_fail_status(err, CNNELM_STATUS_OUT_OF_MEMORY,
                                    "out of memory for lambda = \"auto\"");
            goto out;
        }
        if (finfo == 0)
            dsytrd_sy2sb_("L", &n, &kdi, A, &lda, AB, &ldabi, tau, work, &lwork, &finfo, 1);
        info = finfo;
        /* Q = H(1) ... H(L-kd), H(j) acting on rows j+kd.. : a QR-shaped product below the band */
        if (info == 0)
            info = LAPACKE_dormqr(LAPACK_COL_MAJOR, 'L', 'T', l - kd, c, l - kd, A + kd, l, tau,
                                  W + kd, l);
        if (info == 0) { /* B's eigenvalues: band -> tridiagonal (no vectors), then its roots */
            double qdummy = 0;
            memcpy(AB2, AB, ldab * L * sizeof *AB2);
            info = LAPACKE_dsbtrd(LAPACK_COL_MAJOR, 'N', 'L', l, kd, AB2, (int)ldab, eig, e, &qdummy, 1);
        }
    }
    if (info == 0)
        info = LAPACKE_dsterf(l, eig, e);
    if (info != 0) {
        rc = cnnelm_fail(err, "lambda = \"auto\": the eigenvalues of U could not be computed "
                         "(LAPACK info %d): U is not a usable sum of H'H", (int)info);
        goto out;
    }
    out->n = n_cand;
    out->best = 0;
    double n = (double)N;
    int usable = 0;
    lapack_int first_bad = 0;
    double first_bad_lambda = 0;
    for (int i = 0; i < n_cand; i++) {
        double lam = cand[i], mu = 1.0 / lam, df = 0;
        for (size_t k = 0; k < L; k++) {
            double ev = eig[k] > 0 ? eig[k] : 0; /* rounding of a positive semi-definite U */
            df += ev / (ev + mu);
        }
        memcpy(AB2, AB, ldab * L * sizeof *AB2);
        for (size_t k = 0; k < L; k++)
            AB2[k * ldab] += mu;
        memcpy(X, W, L * C * sizeof *X);
        info = LAPACKE_dpbsv(LAPACK_COL_MAJOR, 'L', l, kd, c, AB2, (int)ldab, X, l);
        if (info < 0) {
            rc = cnnelm_fail(err, "internal: lambda = \"auto\": the banded solve rejected argument %d",
                             (int)-info);
            goto out;
        }
        if (info > 0) {
            /* this candidate's system does not factor (a large lambda on a U of rank below L,
             * fewer examples than hidden units, loses I/lambda to rounding): it cannot be
             * chosen, the others still can */
            if (!first_bad) {
                first_bad = info;
                first_bad_lambda = lam;
            }
            out->lambda[i] = lam;
            out->df[i] = df;
            out->gcv[i] = HUGE_VAL;
            for (size_t k = 0; all && k < L * C; k++)
                all[(size_t)i * L * C + k] = NAN; /* no beta: never the held-out choice */
            continue;
        }
        double a = 0, b = 0;
        for (size_t k = 0; k < L * C; k++) {
            a += X[k] * W[k];
            b += X[k] * X[k];
        }
        double rss = n - a - mu * b;
        if (rss < 0)
            rss = 0;
        double dof = n - df;
        out->lambda[i] = lam;
        out->df[i] = df;
        out->gcv[i] = dof > 0 ? n * rss / (dof * dof) : HUGE_VAL;
        if (all) { /* this candidate's beta, row-major, for a held-out choice */
            memcpy(Xbest, X, L * C * sizeof *X);
            if ((info = apply_q(kd, l, c, A, tau, Xbest)) != 0) {
                rc = cnnelm_fail(err, "internal: lambda = \"auto\": applying Q failed (LAPACK info %d)",
                                 (int)info);
                goto out;
            }
            for (size_t r = 0; r < L; r++)
                for (size_t j = 0; j < C; j++)
                    all[(size_t)i * L * C + r * C + j] = Xbest[j * L + r];
        }
        if (!usable++ || out->gcv[i] < out->gcv[out->best]) {
            out->best = i;
            if (beta)
                memcpy(Xbest, X, L * C * sizeof *X);
        }
    }
    if (!usable) {
        rc = cnnelm_fail_status(err, CNNELM_STATUS_NOT_POSITIVE_DEFINITE,
                                "lambda = \"auto\": I/lambda + U is not positive definite for any "
                                "candidate (lambda = %g fails at hidden unit %d of %d)",
                                first_bad_lambda, (int)first_bad, l);
        goto out;
    }
    if (beta) {
        /* beta = Q X of the chosen lambda: no Cholesky of U is needed after the choice */
        info = apply_q(kd, l, c, A, tau, Xbest);
        if (info != 0) {
            rc = cnnelm_fail(err, "internal: lambda = \"auto\": applying Q failed (LAPACK info %d)",
                             (int)info);
            goto out;
        }
        for (size_t i = 0; i < L; i++)
            for (size_t j = 0; j < C; j++) {
                double b = Xbest[j * L + i];
                if (!isfinite(b)) {
                    rc = cnnelm_fail_status(err, CNNELM_STATUS_NOT_POSITIVE_DEFINITE,
                                            "the ELM solve gave a non-finite beta (lambda = %g): "
                                            "I/lambda + U is numerically singular", out->lambda[out->best]);
                    goto out;
                }
                beta[i * C + j] = b;
            }
    }
    out->seconds = cnnelm_now() - t0;
out:
    free(A);
    free(W);
    free(X);
    free(AB);
    free(AB2);
    free(tau);
    free(eig);
    free(e);
    free(work);
    free(Xbest);
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
        size_t n = (size_t)L * (size_t)C;
        double *b = malloc(n * sizeof *b);
        if (!b)
            return cnnelm_fail_status(err, CNNELM_STATUS_OUT_OF_MEMORY, "out of memory");
        /* the choice gives beta of the chosen lambda on the way (same reduction of U) */
        int rc = cnnelm_elm_choose_lambda(m->U, m->V, L, C, m->n_examples, cand, n_cand, ch, b, err);
        for (size_t i = 0; rc == 0 && i < n; i++) {
            if (!isfinite((float)b[i])) {
                rc = cnnelm_fail_status(err, CNNELM_STATUS_NOT_POSITIVE_DEFINITE,
                                        "the ELM solve gave a beta too large for float (lambda = %g)",
                                        ch->lambda[ch->best]);
                break;
            }
            m->beta[i] = (float)b[i];
        }
        free(b);
        if (rc == 0)
            m->lambda = ch->lambda[ch->best];
        return rc;
    }
    return cnnelm_elm_solve_float(m->U, m->V, L, C, m->lambda, m->beta, err);
}
