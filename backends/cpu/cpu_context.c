/* cnnelm CPU backend: a context's life (threads, kernel variant, thread pool, scratch) and its
 * error message, apart from the plugin table so that a test plugin can run these kernels too
 * (tests/stubs/convonly_cpu.c links this file with the kernel files). */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

cnnelm_status cpu_fail(cnnelm_backend_ctx *ctx, cnnelm_status st, const char *fmt, ...)
{
    if (ctx) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* OpenBLAS's thread count is process-global; this backend parallelises inside each context with
 * its own threads and calls BLAS from several contexts at once, so BLAS must run in the
 * calling thread. Done once, at the first context_open. */
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_single_thread(void) { openblas_set_num_threads(1); }

/* The best kernel variant this CPU runs; CNNELM_CPU_ISA=generic|avx2|avx512 may choose a lower
 * one (never a higher one). */
static int detect_isa(void)
{
    int best = CPU_ISA_GENERIC;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        best = CPU_ISA_AVX2;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
            best = CPU_ISA_AVX512;
    }
#endif
    const char *want = getenv("CNNELM_CPU_ISA");
    int w = best;
    if (want && strcmp(want, "generic") == 0)
        w = CPU_ISA_GENERIC;
    else if (want && strcmp(want, "avx2") == 0)
        w = CPU_ISA_AVX2;
    return w < best ? w : best;
}

cnnelm_status cpu_context_create(int threads, cnnelm_backend_ctx **out, char *error, size_t error_size)
{
    *out = NULL;
    if (threads < 1)
        threads = 1;
    if (threads > CPU_MAX_THREADS)
        threads = CPU_MAX_THREADS;
    pthread_once(&blas_once, blas_single_thread);
    cnnelm_backend_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        if (error && error_size)
            snprintf(error, error_size, "out of host memory for a context");
        return CNNELM_ERR_OUT_OF_MEMORY;
    }
    ctx->magic = CPU_CTX_MAGIC;
    ctx->threads = threads;
    ctx->isa = detect_isa();
    cnnelm_status st = cpu_thread_pool_start(ctx);
    if (st != CNNELM_OK) {
        if (error && error_size)
            snprintf(error, error_size, "%s", ctx->err);
        free(ctx);
        return st;
    }
    *out = ctx;
    return CNNELM_OK;
}

void cpu_context_destroy(cnnelm_backend_ctx *ctx)
{
    cpu_thread_pool_stop(ctx);
    cpu_scratch_free(ctx);
    ctx->magic = 0;
    free(ctx);
}
