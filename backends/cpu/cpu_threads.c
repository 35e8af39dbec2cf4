/* cnnelm CPU backend: the per-context thread pool (threads-1 parked pthreads plus the caller)
 * and per-thread scratch memory. No process-global state: every context has its own pool. */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu_internal.h"

/* A waiting thread spins this long for the next job (or the end of the current one) before it
 * sleeps on a condition variable: ops come back to back during training and a futex wake costs
 * tens of microseconds, but a spinner takes a core from whatever else runs there (another
 * process, or the pool's own thread holding the next task), so the spin is short and bounded. */
#define CPU_SPIN_NS 30000L
/* Tasks are claimed in ranges of about tasks / (threads * CPU_CHUNKS_PER_THREAD): small enough
 * that a late thread leaves its share to the others, large enough that claiming is rare. */
#define CPU_CHUNKS_PER_THREAD 8
/* The low half of `state` while a job is being set up: no claim can succeed. */
#define CPU_CLOSED 0xffffffffull

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Spins until cond(ctx, v) holds or CPU_SPIN_NS pass; returns whether it holds. */
static int spin_until(int (*cond)(cnnelm_backend_ctx *, unsigned long long), cnnelm_backend_ctx *ctx,
                      unsigned long long v)
{
    long long deadline = 0;
    for (int i = 0;; i++) {
        if (cond(ctx, v))
            return 1;
        cpu_relax();
        if ((i & 63) == 63) {
            long long t = now_ns();
            if (deadline == 0)
                deadline = t + CPU_SPIN_NS;
            else if (t >= deadline)
                return cond(ctx, v);
        }
    }
}

static int job_changed(cnnelm_backend_ctx *ctx, unsigned long long gen)
{
    return (atomic_load(&ctx->state) >> 32) != gen || atomic_load(&ctx->quit);
}

static int job_done(cnnelm_backend_ctx *ctx, unsigned long long tasks)
{
    return (unsigned long long)atomic_load(&ctx->done_tasks) == tasks;
}

typedef struct worker_arg {
    cnnelm_backend_ctx *ctx;
    int index;
} worker_arg;

/* Claims and runs ranges of job `gen` until none is left (or the job is no longer `gen`: a
 * thread that wakes late finds the state changed and its compare-and-swap fails). The job's
 * fields are read before the claim and used only when the claim on `gen` succeeds: the caller
 * rewrites them only after it has closed `gen`, which makes every such claim fail. */
static void work(cnnelm_backend_ctx *ctx, unsigned long long gen, int thread)
{
    for (;;) {
        unsigned long long s = atomic_load(&ctx->state);
        if ((s >> 32) != gen)
            return;
        unsigned long long next = s & 0xffffffffull;
        int tasks = atomic_load(&ctx->job_tasks), chunk = atomic_load(&ctx->job_chunk);
        cpu_task_fn fn = atomic_load(&ctx->job_fn);
        void *arg = atomic_load(&ctx->job_arg);
        if (next >= (unsigned long long)tasks)
            return;
        int begin = (int)next, end = tasks - begin > chunk ? begin + chunk : tasks;
        if (!atomic_compare_exchange_weak(&ctx->state, &s, (gen << 32) | (unsigned long long)end))
            continue;
        fn(arg, begin, end, thread);
        if (atomic_fetch_add(&ctx->done_tasks, end - begin) + (end - begin) == tasks) {
            pthread_mutex_lock(&ctx->mu);
            pthread_cond_signal(&ctx->done);
            pthread_mutex_unlock(&ctx->mu);
        }
    }
}

static void *worker_main(void *p)
{
    worker_arg wa = *(worker_arg *)p;
    free(p);
    cnnelm_backend_ctx *ctx = wa.ctx;
    unsigned long long seen = atomic_load(&ctx->state) >> 32;
    for (;;) {
        if (!spin_until(job_changed, ctx, seen)) {
            pthread_mutex_lock(&ctx->mu);
            while (!job_changed(ctx, seen))
                pthread_cond_wait(&ctx->wake, &ctx->mu);
            pthread_mutex_unlock(&ctx->mu);
        }
        if (atomic_load(&ctx->quit))
            return NULL;
        seen = atomic_load(&ctx->state) >> 32;
        work(ctx, seen, wa.index);
    }
}

cnnelm_status cpu_pool_start(cnnelm_backend_ctx *ctx)
{
    ctx->started = 0;
    atomic_store(&ctx->state, CPU_CLOSED);
    atomic_store(&ctx->done_tasks, 0);
    atomic_store(&ctx->quit, 0);
    atomic_store(&ctx->job_tasks, 0);
    atomic_store(&ctx->job_chunk, 1);
    atomic_store(&ctx->job_fn, (cpu_task_fn)NULL);
    atomic_store(&ctx->job_arg, (void *)NULL);
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
    if (ctx->started > 0) {
        pthread_mutex_lock(&ctx->mu);
        atomic_store(&ctx->quit, 1);
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
    /* Close the previous job before rewriting the fields a late thread may still read, then
     * publish the new generation with the first task unclaimed. */
    unsigned long long gen = (atomic_load(&ctx->state) >> 32) + 1;
    atomic_store(&ctx->state, ((gen - 1) << 32) | CPU_CLOSED);
    int chunk = tasks / (ctx->threads * CPU_CHUNKS_PER_THREAD);
    atomic_store(&ctx->job_fn, fn);
    atomic_store(&ctx->job_arg, arg);
    atomic_store(&ctx->job_tasks, tasks);
    atomic_store(&ctx->job_chunk, chunk > 1 ? chunk : 1);
    atomic_store(&ctx->done_tasks, 0);
    pthread_mutex_lock(&ctx->mu);
    atomic_store(&ctx->state, gen << 32);
    pthread_cond_broadcast(&ctx->wake);
    pthread_mutex_unlock(&ctx->mu);
    work(ctx, gen, 0);
    /* Every range is claimed; wait for the ones other threads still run. */
    if (!spin_until(job_done, ctx, (unsigned long long)tasks)) {
        pthread_mutex_lock(&ctx->mu);
        while (!job_done(ctx, (unsigned long long)tasks))
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
