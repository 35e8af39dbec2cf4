/* cnnelm OpenCL backend: the ELM products as CLBlast SGEMMs on the context's queue, and the
 * ELM solve (Cholesky in double on the host, through LAPACKE). */
#define _GNU_SOURCE
#define CL_TARGET_OPENCL_VERSION 120
#include <clblast_c.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>

#include "ocl_internal.h"

static cnnelm_status gemm(cnnelm_backend_ctx *c, const char *op, CLBlastTranspose ta, CLBlastTranspose tb,
                          size_t m, size_t n, size_t k, const cnnelm_buffer *a, size_t lda,
                          const cnnelm_buffer *b, size_t ldb, float beta, cnnelm_buffer *out, size_t ldc)
{
    CLBlastStatusCode e = CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, m, n, k, 1.0f, a->mem, 0, lda,
                                       b->mem, 0, ldb, beta, out->mem, 0, ldc, &c->queue, NULL);
    if (e != CLBlastSuccess)
        return ocl_fail(c, e == CLBlastOpenCLOutOfResources || e == CLBlastInsufficientMemoryTemp
                           ? CNNELM_ERR_OUT_OF_MEMORY : CNNELM_ERR_DEVICE,
                    "%s: CLBlast SGEMM failed (status %d)", op, (int)e);
    return CNNELM_OK;
}

/* CLBlast compiles its kernels on first use in each context (and keeps them for the context's
 * life): a tiny SGEMM in each transposition used here moves that cost to context_open. */
cnnelm_status ocl_warm_clblast(cnnelm_backend_ctx *c)
{
    cnnelm_buffer *a = NULL, *b = NULL, *o = NULL;
    cnnelm_status st = ocl_buffer_alloc(c, 64 * sizeof(float), &a);
    if (st == CNNELM_OK)
        st = ocl_buffer_alloc(c, 64 * sizeof(float), &b);
    if (st == CNNELM_OK)
        st = ocl_buffer_alloc(c, 64 * sizeof(float), &o);
    if (st == CNNELM_OK)
        st = gemm(c, "warm-up", CLBlastTransposeYes, CLBlastTransposeNo, 8, 8, 8, a, 8, b, 8, 0.0f, o, 8);
    if (st == CNNELM_OK)
        st = gemm(c, "warm-up", CLBlastTransposeNo, CLBlastTransposeNo, 8, 8, 8, a, 8, b, 8, 0.0f, o, 8);
    if (st == CNNELM_OK)
        st = gemm(c, "warm-up", CLBlastTransposeNo, CLBlastTransposeYes, 8, 8, 8, a, 8, b, 8, 0.0f, o, 8);
    if (st == CNNELM_OK && clFinish(c->queue) != CL_SUCCESS)
        st = ocl_fail(c, CNNELM_ERR_DEVICE, "%s: clFinish failed", c->name);
    ocl_buffer_free(c, a);
    ocl_buffer_free(c, b);
    ocl_buffer_free(c, o);
    return st;
}

cnnelm_status ocl_elm_accumulate(cnnelm_backend_ctx *c, int n, int l, int k,
                                 const cnnelm_buffer *H, const cnnelm_buffer *T,
                                 cnnelm_buffer *U, cnnelm_buffer *V)
{
    /* full H^T H with beta = 1: both triangles, computed identically, stay exactly symmetric */
    cnnelm_status st = gemm(c, "elm_accumulate", CLBlastTransposeYes, CLBlastTransposeNo, (size_t)l, (size_t)l,
              (size_t)n, H, (size_t)l, H, (size_t)l, 1.0f, U, (size_t)l);
    if (st == CNNELM_OK)
        st = gemm(c, "elm_accumulate", CLBlastTransposeYes, CLBlastTransposeNo, (size_t)l, (size_t)k,
                  (size_t)n, H, (size_t)l, T, (size_t)k, 1.0f, V, (size_t)k);
    return st;
}

cnnelm_status ocl_elm_predict(cnnelm_backend_ctx *c, int n, int l, int k, const cnnelm_buffer *H,
                              const cnnelm_buffer *beta, cnnelm_buffer *Y)
{
    return gemm(c, "elm_predict", CLBlastTransposeNo, CLBlastTransposeNo, (size_t)n, (size_t)k, (size_t)l,
                H, (size_t)l, beta, (size_t)k, 0.0f, Y, (size_t)k);
}

cnnelm_status ocl_elm_backprop(cnnelm_backend_ctx *c, int n, int l, int k, const cnnelm_buffer *E,
                               const cnnelm_buffer *beta, cnnelm_buffer *dH)
{
    return gemm(c, "elm_backprop", CLBlastTransposeNo, CLBlastTransposeYes, (size_t)n, (size_t)l, (size_t)k,
                E, (size_t)k, beta, (size_t)k, 0.0f, dH, (size_t)l);
}

/* A 192 x 192 Cholesky is tiny: it runs on the host in double, where it is also most accurate. */
cnnelm_status ocl_elm_solve(cnnelm_backend_ctx *c, int l, int k, double lambda,
                            const cnnelm_buffer *U, const cnnelm_buffer *V, cnnelm_buffer *beta)
{
    cnnelm_status st = CNNELM_OK;
    size_t L = (size_t)l, C = (size_t)k;
    float *uf = malloc(L * L * sizeof *uf), *vf = malloc(L * C * sizeof *vf);
    double *A = malloc(L * L * sizeof *A), *B = malloc(L * C * sizeof *B);
    if (!uf || !vf || !A || !B) {
        st = ocl_fail(c, CNNELM_ERR_OUT_OF_MEMORY, "elm_solve: out of host memory");
        goto out;
    }
    if ((st = ocl_buffer_read(c, U, 0, uf, L * L * sizeof *uf)) != CNNELM_OK ||
        (st = ocl_buffer_read(c, V, 0, vf, L * C * sizeof *vf)) != CNNELM_OK)
        goto out;
    for (size_t i = 0; i < L; i++)
        for (size_t j = 0; j < L; j++)
            A[i * L + j] = 0.5 * ((double)uf[i * L + j] + (double)uf[j * L + i]) + (i == j ? 1.0 / lambda : 0.0);
    for (size_t i = 0; i < L * C; i++)
        B[i] = vf[i];
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)L, A, (lapack_int)L);
    if (info != 0) {
        st = ocl_fail(c, CNNELM_ERR_NOT_POSITIVE_DEFINITE, "I/lambda + U is not positive definite "
                  "(lambda = %g; LAPACK dpotrf info %d)", lambda, (int)info);
        goto out;
    }
    info = LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'L', (lapack_int)L, (lapack_int)C, A, (lapack_int)L, B, (lapack_int)C);
    for (size_t i = 0; i < L * C && info == 0; i++) {
        vf[i] = (float)B[i];
        if (!isfinite(vf[i]))
            info = -1;
    }
    if (info != 0) {
        st = ocl_fail(c, CNNELM_ERR_NOT_POSITIVE_DEFINITE, "elm_solve gave a non-finite beta (lambda = %g)", lambda);
        goto out;
    }
    st = ocl_buffer_write(c, beta, 0, vf, L * C * sizeof *vf);
out:
    free(uf);
    free(vf);
    free(A);
    free(B);
    return st;
}
