/* cnnelm CPU backend: the ELM products (OpenBLAS, single-threaded calls split into fixed tiles
 * across the context's threads; the sums in float, or exactly in double for train.sums =
 * "double") and the ELM solve (LAPACKE Cholesky in double). */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

/* Tiles are a fixed size, never derived from the thread count, so that every element of the
 * result is computed by the same BLAS call whatever the number of threads. */
#define ELM_TILE 64
#define ELM_ROWS 256

/* ---- U += H^T H, V += H^T T -------------------------------------------------------------- */

typedef struct acc_job {
    int n, l, c, tiles; /* tiles: upper-triangle tiles of U; then V row tiles */
    const float *H, *T;
    float *U, *V;
    cnnelm_backend_ctx *ctx;
} acc_job;

static void tile_of(int l, int index, int *ti, int *tj)
{
    int nt = (l + ELM_TILE - 1) / ELM_TILE;
    for (int i = 0; i < nt; i++) {
        int row = nt - i; /* tiles (i, i..nt-1) */
        if (index < row) {
            *ti = i;
            *tj = i + index;
            return;
        }
        index -= row;
    }
    *ti = *tj = 0;
}

static void acc_task(void *arg, int begin, int end, int thread)
{
    acc_job *j = arg;
    float *G = j->ctx->scratch[thread].p; /* ELM_TILE x ELM_TILE */
    int l = j->l;
    for (int t = begin; t < end; t++) {
        if (t >= j->tiles) { /* V rows [r0, r1) += H[:, r0:r1]^T T */
            int r0 = (t - j->tiles) * ELM_TILE, r1 = r0 + ELM_TILE < l ? r0 + ELM_TILE : l;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1 - r0, j->c, j->n, 1.0f,
                        j->H + r0, l, j->T, j->c, 1.0f, j->V + (size_t)r0 * j->c, j->c);
            continue;
        }
        int ti, tj;
        tile_of(l, t, &ti, &tj);
        int i0 = ti * ELM_TILE, j0 = tj * ELM_TILE;
        int bi = i0 + ELM_TILE < l ? ELM_TILE : l - i0, bj = j0 + ELM_TILE < l ? ELM_TILE : l - j0;
        if (ti == tj) {
            /* G (upper) = H_I^T H_I; U_II += G on both triangles, from the same values. */
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, bi, j->n, 1.0f, j->H + i0, l, 0.0f,
                        G, ELM_TILE);
            for (int a = 0; a < bi; a++) {
                float *urow = j->U + (size_t)(i0 + a) * l + i0;
                urow[a] += G[a * ELM_TILE + a];
                for (int b = a + 1; b < bi; b++) {
                    float g = G[a * ELM_TILE + b];
                    urow[b] += g;
                    j->U[(size_t)(i0 + b) * l + i0 + a] += g;
                }
            }
        } else {
            /* G = H_I^T H_J; U_IJ += G and U_JI += G^T. */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, bi, bj, j->n, 1.0f, j->H + i0, l,
                        j->H + j0, l, 0.0f, G, ELM_TILE);
            for (int a = 0; a < bi; a++) {
                float *urow = j->U + (size_t)(i0 + a) * l + j0;
                for (int b = 0; b < bj; b++)
                    urow[b] += G[a * ELM_TILE + b];
            }
            for (int b = 0; b < bj; b++) {
                float *urow = j->U + (size_t)(j0 + b) * l + i0;
                for (int a = 0; a < bi; a++)
                    urow[a] += G[a * ELM_TILE + b];
            }
        }
    }
}

cnnelm_status cpu_elm_accumulate(cnnelm_backend_ctx *ctx, int n, int l, int c, const float *H,
                                 const float *T, float *U, float *V)
{
    cnnelm_status st = cpu_scratch_reserve(ctx, sizeof(float) * ELM_TILE * ELM_TILE);
    if (st != CNNELM_OK)
        return st;
    int nt = (l + ELM_TILE - 1) / ELM_TILE;
    acc_job j = { n, l, c, nt * (nt + 1) / 2, H, T, U, V, ctx };
    cpu_parallel(ctx, j.tiles + nt, acc_task, &j);
    return CNNELM_OK;
}

/* ---- exact sums: U (upper) += H^T H, V += H^T T in double -------------------------------
 * H and T are widened to double once (products of floats are exact in double); the tiles are
 * the float version's, each computed by one BLAS call straight into U or V, so the result does
 * not depend on the thread count. Only U's upper triangle is touched. */

typedef struct widen_job {
    size_t count;
    const float *src;
    double *dst;
} widen_job;

#define WIDEN_BLOCK 65536

static void widen_task(void *arg, int begin, int end, int thread)
{
    (void)thread;
    widen_job *j = arg;
    size_t b = (size_t)begin * WIDEN_BLOCK, e = (size_t)end * WIDEN_BLOCK;
    if (e > j->count)
        e = j->count;
    for (size_t i = b; i < e; i++)
        j->dst[i] = j->src[i];
}

static void widen(cnnelm_backend_ctx *ctx, const float *src, double *dst, size_t count)
{
    widen_job j = { count, src, dst };
    cpu_parallel(ctx, (int)((count + WIDEN_BLOCK - 1) / WIDEN_BLOCK), widen_task, &j);
}

typedef struct acc64_job {
    int n, l, c, tiles;
    const double *H, *T;
    double *U, *V;
} acc64_job;

static void acc64_task(void *arg, int begin, int end, int thread)
{
    (void)thread;
    acc64_job *j = arg;
    int l = j->l;
    for (int t = begin; t < end; t++) {
        if (t >= j->tiles) {
            int r0 = (t - j->tiles) * ELM_TILE, r1 = r0 + ELM_TILE < l ? r0 + ELM_TILE : l;
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1 - r0, j->c, j->n, 1.0,
                        j->H + r0, l, j->T, j->c, 1.0, j->V + (size_t)r0 * j->c, j->c);
            continue;
        }
        int ti, tj;
        tile_of(l, t, &ti, &tj);
        int i0 = ti * ELM_TILE, j0 = tj * ELM_TILE;
        int bi = i0 + ELM_TILE < l ? ELM_TILE : l - i0, bj = j0 + ELM_TILE < l ? ELM_TILE : l - j0;
        double *u = j->U + (size_t)i0 * l + j0;
        if (ti == tj)
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, bi, j->n, 1.0, j->H + i0, l, 1.0, u, l);
        else
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, bi, bj, j->n, 1.0, j->H + i0, l,
                        j->H + j0, l, 1.0, u, l);
    }
}

cnnelm_status cpu_elm_accumulate_f64(cnnelm_backend_ctx *ctx, int n, int l, int c, const float *H,
                                     const float *T, double *U, double *V)
{
    size_t nl = (size_t)n * l, nc = (size_t)n * c;
    cnnelm_status st = cpu_shared_reserve(ctx, sizeof(double) * (nl + nc));
    if (st != CNNELM_OK)
        return st;
    double *Hd = ctx->shared.p, *Td = Hd + nl;
    widen(ctx, H, Hd, nl);
    widen(ctx, T, Td, nc);
    int nt = (l + ELM_TILE - 1) / ELM_TILE;
    acc64_job j = { n, l, c, nt * (nt + 1) / 2, Hd, Td, U, V };
    cpu_parallel(ctx, j.tiles + nt, acc64_task, &j);
    return CNNELM_OK;
}

/* ---- Y = H beta, dH = E beta^T ----------------------------------------------------------- */

typedef struct rows_job {
    int n, l, c;
    const float *A, *beta;
    float *out;
    int backprop;
} rows_job;

static void rows_task(void *arg, int begin, int end, int thread)
{
    (void)thread;
    rows_job *j = arg;
    for (int t = begin; t < end; t++) {
        int r0 = t * ELM_ROWS, r1 = r0 + ELM_ROWS < j->n ? r0 + ELM_ROWS : j->n;
        if (!j->backprop) /* Y rows = H rows beta */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, j->c, j->l, 1.0f,
                        j->A + (size_t)r0 * j->l, j->l, j->beta, j->c, 0.0f,
                        j->out + (size_t)r0 * j->c, j->c);
        else /* dH rows = E rows beta^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, j->l, j->c, 1.0f,
                        j->A + (size_t)r0 * j->c, j->c, j->beta, j->c, 0.0f,
                        j->out + (size_t)r0 * j->l, j->l);
    }
}

cnnelm_status cpu_elm_predict(cnnelm_backend_ctx *ctx, int n, int l, int c, const float *H,
                              const float *beta, float *Y)
{
    rows_job j = { n, l, c, H, beta, Y, 0 };
    cpu_parallel(ctx, (n + ELM_ROWS - 1) / ELM_ROWS, rows_task, &j);
    return CNNELM_OK;
}

cnnelm_status cpu_elm_backprop(cnnelm_backend_ctx *ctx, int n, int l, int c, const float *E,
                               const float *beta, float *dH)
{
    rows_job j = { n, l, c, E, beta, dH, 1 };
    cpu_parallel(ctx, (n + ELM_ROWS - 1) / ELM_ROWS, rows_task, &j);
    return CNNELM_OK;
}

/* ---- beta = (I/lambda + U)^-1 V ---------------------------------------------------------- */

cnnelm_status cpu_elm_solve(cnnelm_backend_ctx *ctx, int l, int c, double lambda, const float *U,
                            const float *V, float *beta)
{
    size_t L = (size_t)l, C = (size_t)c;
    if (L > ((size_t)-1 / sizeof(double)) / L)
        return cpu_fail(ctx, CNNELM_ERR_OUT_OF_MEMORY, "elm_solve: l = %d is too large", l);
    double *A = malloc(sizeof(double) * (L * L + L * C));
    if (!A)
        return cpu_fail(ctx, CNNELM_ERR_OUT_OF_MEMORY,
                        "elm_solve: out of host memory (%zu bytes of workspace)",
                        sizeof(double) * (L * L + L * C));
    double *B = A + L * L;
    /* A = I/lambda + (U + U^T)/2: U is symmetric up to rounding; use both triangles alike. */
    for (size_t i = 0; i < L; i++) {
        for (size_t j = 0; j < L; j++)
            A[i * L + j] = 0.5 * ((double)U[i * L + j] + (double)U[j * L + i]);
        A[i * L + i] += 1.0 / lambda;
    }
    for (size_t i = 0; i < L * C; i++)
        B[i] = V[i];
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', l, A, l);
    if (info > 0) {
        free(A);
        return cpu_fail(ctx, CNNELM_ERR_NOT_POSITIVE_DEFINITE,
                        "elm_solve: I/lambda + U is not positive definite (lambda = %g; the leading "
                        "minor of order %d is not positive)", lambda, (int)info);
    }
    if (info < 0) {
        free(A);
        return cpu_fail(ctx, CNNELM_ERR_INTERNAL, "elm_solve: LAPACKE_dpotrf argument %d is invalid",
                        (int)-info);
    }
    info = LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'L', l, c, A, l, B, c);
    if (info != 0) {
        free(A);
        return cpu_fail(ctx, CNNELM_ERR_INTERNAL, "elm_solve: the triangular solves rejected "
                        "argument %d", (int)-info);
    }
    for (size_t i = 0; i < L * C; i++) {
        if (!isfinite(B[i]) || !isfinite((float)B[i])) {
            free(A);
            return cpu_fail(ctx, CNNELM_ERR_NOT_POSITIVE_DEFINITE,
                            "elm_solve: the solution is not finite in float (lambda = %g): "
                            "I/lambda + U is numerically singular", lambda);
        }
    }
    for (size_t i = 0; i < L * C; i++)
        beta[i] = (float)B[i];
    free(A);
    return CNNELM_OK;
}
