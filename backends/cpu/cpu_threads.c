/* cnnelm CPU backend: the per-context thread pool (threads-1 parked pthreads plus the caller)
 * and per-thread scratch memory. No process-global state: every context has its own pool. */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

/* A worker spins this many times for the next job before sleeping on the condition variable:
 * ops come back to back during training, and a futex wake costs tens of microseconds. */
#define CPU_SPIN 20000

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

typedef struct worker_arg {
    cnnelm_backend_ctx *ctx;
    int index;
} worker_arg;

static void run_range(cnnelm_backend_ctx *ctx, int t)
{
    int T = ctx->threads, n = ctx->job_tasks;
    int begin = (int)((long long)n * t / T), end = (int)((long long)n * (t + 1) / T);
    if (begin < end)
        ctx->job_fn(ctx->job_arg, begin, end, t);
}

static void *worker_main(void *p)
{
    worker_arg wa = *(worker_arg *)p;
    free(p);
    cnnelm_backend_ctx *ctx = wa.ctx;
    _Atomic unsigned long *gen = &ctx->generation;
    _Atomic int *pending = &ctx->pending;
    unsigned long seen = 0;
    for (;;) {
        unsigned long g = atomic_load_explicit(gen, memory_order_acquire);
        for (int i = 0; g == seen && i < CPU_SPIN; i++) {
            cpu_relax();
            g = atomic_load_explicit(gen, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&ctx->mu);
            while ((g = atomic_load_explicit(gen, memory_order_acquire)) == seen)
                pthread_cond_wait(&ctx->wake, &ctx->mu);
            pthread_mutex_unlock(&ctx->mu);
        }
        seen = g;
        if (ctx->quit)
            return NULL;
        run_range(ctx, wa.index);
        if (atomic_fetch_sub_explicit(pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&ctx->mu);
            pthread_cond_signal(&ctx->done);
            pthread_mutex_unlock(&ctx->mu);
        }
    }
}

cnnelm_status cpu_pool_start(cnnelm_backend_ctx *ctx)
{
    ctx->started = 0;
    if (pthread_mutex_init(&ctx->mu, NULL) != 0)
        return cpu_fail(ctx, CNNELM_ERR_INTERNAL, "pthread_mutex_init failed");
    if (pthread_cond_init(&ctx->wake, NULL) != 0) {
        pthread_mutex_destroy(&ctx->mu);
        return cpu_fail(ctx, CNNELM_ERR_INTERNAL, "pthread_cond_init failed");
    }
    if (pthread_cond_init(&ctx->done, NULL) != 0) {
        pthread_cond_destroy(&ctx->wake);
        pthread_mutex_destroy(&ctx->mu);
        return cpu_fail(ctx, CNNELM_ERR_INTERNAL, "pthread_cond_init failed");
    }
    ctx->tid = NULL;
    if (ctx->threads > 1) {
        ctx->tid = calloc((size_t)ctx->threads - 1, sizeof *ctx->tid);
        if (!ctx->tid)
            goto oom;
        for (int i = 1; i < ctx->threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (!wa)
                goto oom;
            wa->ctx = ctx;
            wa->index = i;
            if (pthread_create(&ctx->tid[i - 1], NULL, worker_main, wa) != 0) {
                free(wa);
                cpu_pool_stop(ctx);
                return cpu_fail(ctx, CNNELM_ERR_INTERNAL, "cannot start worker thread %d of %d", i,
                                ctx->threads);
            }
            ctx->started = i;
        }
    }
    return CNNELM_OK;
oom:
    cpu_pool_stop(ctx);
    return cpu_fail(ctx, CNNELM_ERR_OUT_OF_MEMORY, "out of memory starting %d threads", ctx->threads);
}

void cpu_pool_stop(cnnelm_backend_ctx *ctx)
{
    _Atomic unsigned long *gen = &ctx->generation;
    if (ctx->started > 0) {
        pthread_mutex_lock(&ctx->mu);
        ctx->quit = 1;
        atomic_fetch_add_explicit(gen, 1, memory_order_acq_rel);
        pthread_cond_broadcast(&ctx->wake);
        pthread_mutex_unlock(&ctx->mu);
        for (int i = 0; i < ctx->started; i++)
            pthread_join(ctx->tid[i], NULL);
    }
    ctx->started = 0;
    free(ctx->tid);
    ctx->tid = NULL;
    pthread_cond_destroy(&ctx->done);
    pthread_cond_destroy(&ctx->wake);
    pthread_mutex_destroy(&ctx->mu);
}

void cpu_parallel(cnnelm_backend_ctx *ctx, int tasks, cpu_task_fn fn, void *arg)
{
    if (tasks <= 0)
        return;
    if (ctx->threads <= 1 || tasks == 1) {
        fn(arg, 0, tasks, 0);
        return;
    }
    _Atomic unsigned long *gen = &ctx->generation;
    _Atomic int *pending = &ctx->pending;
    ctx->job_fn = fn;
    ctx->job_arg = arg;
    ctx->job_tasks = tasks;
    atomic_store_explicit(pending, ctx->threads - 1, memory_order_release);
    pthread_mutex_lock(&ctx->mu);
    atomic_fetch_add_explicit(gen, 1, memory_order_acq_rel);
    pthread_cond_broadcast(&ctx->wake);
    pthread_mutex_unlock(&ctx->mu);
    run_range(ctx, 0);
    for (int i = 0; atomic_load_explicit(pending, memory_order_acquire) != 0 && i < CPU_SPIN; i++)
        cpu_relax();
    if (atomic_load_explicit(pending, memory_order_acquire) != 0) {
        pthread_mutex_lock(&ctx->mu);
        while (atomic_load_explicit(pending, memory_order_acquire) != 0)
            pthread_cond_wait(&ctx->done, &ctx->mu);
        pthread_mutex_unlock(&ctx->mu);
    }
}

void *cpu_aligned_alloc(size_t bytes)
{
    void *p = NULL;
    if (bytes == 0)
        bytes = CPU_ALIGN;
    /* Round up so vector tails may touch the whole last cache line. */
    bytes = (bytes + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN;
    if (posix_memalign(&p, CPU_ALIGN, bytes) != 0)
        return NULL;
    return p;
}

static cnnelm_status reserve(cnnelm_backend_ctx *ctx, cpu_scratch *s, size_t bytes)
{
    if (s->bytes >= bytes)
        return CNNELM_OK;
    size_t want = bytes + bytes / 4;
    void *p = cpu_aligned_alloc(want);
    if (!p)
        return cpu_fail(ctx, CNNELM_ERR_OUT_OF_MEMORY, "out of host memory (scratch of %zu bytes)", want);
    free(s->p);
    s->p = p;
    s->bytes = want;
    return CNNELM_OK;
}

cnnelm_status cpu_scratch_reserve(cnnelm_backend_ctx *ctx, size_t bytes)
{
    for (int t = 0; t < ctx->threads; t++) {
        cnnelm_status st = reserve(ctx, &ctx->scratch[t], bytes);
        if (st != CNNELM_OK)
            return st;
    }
    return CNNELM_OK;
}

cnnelm_status cpu_shared_reserve(cnnelm_backend_ctx *ctx, size_t bytes)
{
    return reserve(ctx, &ctx->shared, bytes);
}

void cpu_scratch_free(cnnelm_backend_ctx *ctx)
{
    for (int t = 0; t < CPU_MAX_THREADS; t++) {
        free(ctx->scratch[t].p);
        ctx->scratch[t].p = NULL;
        ctx->scratch[t].bytes = 0;
    }
    free(ctx->shared.p);
    ctx->shared.p = NULL;
    ctx->shared.bytes = 0;
}
