/* cnnelm CPU backend: the per-context thread pool (threads-1 parked pthreads plus the caller)
 * and per-thread scratch memory. No process-global state: every context has its own pool. */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* syscall(SYS_futex) */
#endif
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#include "cpu_internal.h"

/* Sleeping and waking go through futexes, not condition variables: glibc's broadcast waits for
 * woken waiters that have not run yet, so one descheduled worker would hold up the caller's
 * next job. A wake never blocks here. (Elsewhere than Linux: 50 us naps.) */
static void futex_wait(_Atomic int *word, int expected)
{
#if defined(__linux__)
    syscall(SYS_futex, (int *)word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
#else
    (void)word;
    (void)expected;
    struct timespec ts = { 0, 50000 };
    nanosleep(&ts, NULL);
#endif
}

static void futex_wake_all(_Atomic int *word)
{
#if defined(__linux__)
    syscall(SYS_futex, (int *)word, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
#else
    (void)word;
#endif
}

/* A waiting thread spins this long for the next job (or the end of the current one) before it
 * sleeps on a futex: ops come back to back during training and a futex wake costs
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
        /* A wake only when the caller sleeps. It registers before it reads done_tasks, and the
         * count is added before caller_waiting is read, so no wake-up is lost. */
        if (atomic_fetch_add(&ctx->done_tasks, end - begin) + (end - begin) == tasks &&
            atomic_load(&ctx->caller_waiting))
            futex_wake_all(&ctx->done_tasks);
    }
}

static void *worker_main(void *p)
{
    worker_arg wa = *(worker_arg *)p;
    free(p);
    cnnelm_backend_ctx *ctx = wa.ctx;
    unsigned long long seen = atomic_load(&ctx->state) >> 32;
    for (;;) {
        int seq = atomic_load(&ctx->wake_seq);
        if (!spin_until(job_changed, ctx, seen)) {
            /* Registered before the last check: a job published after it sees the sleeper
             * and bumps wake_seq, so futex_wait returns at once or is woken. */
            atomic_fetch_add(&ctx->sleepers, 1);
            while (!job_changed(ctx, seen)) {
                futex_wait(&ctx->wake_seq, seq);
                seq = atomic_load(&ctx->wake_seq);
            }
            atomic_fetch_sub(&ctx->sleepers, 1);
        }
        if (atomic_load(&ctx->quit))
            return NULL;
        seen = atomic_load(&ctx->state) >> 32;
        work(ctx, seen, wa.index);
    }
}

cnnelm_status cpu_thread_pool_start(cnnelm_backend_ctx *ctx)
{
    ctx->started = 0;
    atomic_store(&ctx->state, CPU_CLOSED);
    atomic_store(&ctx->done_tasks, 0);
    atomic_store(&ctx->sleepers, 0);
    atomic_store(&ctx->wake_seq, 0);
    atomic_store(&ctx->caller_waiting, 0);
    atomic_store(&ctx->quit, 0);
    atomic_store(&ctx->job_tasks, 0);
    atomic_store(&ctx->job_chunk, 1);
    atomic_store(&ctx->job_fn, (cpu_task_fn)NULL);
    atomic_store(&ctx->job_arg, (void *)NULL);
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
                cpu_thread_pool_stop(ctx);
                return cpu_fail(ctx, CNNELM_ERR_INTERNAL, "cannot start worker thread %d of %d", i,
                                ctx->threads);
            }
            ctx->started = i;
        }
    }
    return CNNELM_OK;
oom:
    cpu_thread_pool_stop(ctx);
    return cpu_fail(ctx, CNNELM_ERR_OUT_OF_MEMORY, "out of memory starting %d threads", ctx->threads);
}

void cpu_thread_pool_stop(cnnelm_backend_ctx *ctx)
{
    if (ctx->started > 0) {
        atomic_store(&ctx->quit, 1);
        atomic_fetch_add(&ctx->wake_seq, 1);
        futex_wake_all(&ctx->wake_seq);
        for (int i = 0; i < ctx->started; i++)
            pthread_join(ctx->tid[i], NULL);
    }
    ctx->started = 0;
    free(ctx->tid);
    ctx->tid = NULL;
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
    atomic_store(&ctx->state, gen << 32);
    atomic_fetch_add(&ctx->wake_seq, 1);
    if (atomic_load(&ctx->sleepers) > 0) /* spinning workers see the state change */
        futex_wake_all(&ctx->wake_seq);
    work(ctx, gen, 0);
    /* Every range is claimed; wait for the ones other threads still run. */
    if (!spin_until(job_done, ctx, (unsigned long long)tasks)) {
        atomic_store(&ctx->caller_waiting, 1);
        for (int d; (d = atomic_load(&ctx->done_tasks)) != tasks;)
            futex_wait(&ctx->done_tasks, d);
        atomic_store(&ctx->caller_waiting, 0);
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
