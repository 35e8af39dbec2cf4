/* cnnelm CPU backend, private: the context (thread pool, scratch, error message), host
 * buffers, and the kernels each op file provides to cpu_backend.c. */
#ifndef CNNELM_CPU_INTERNAL_H
#define CNNELM_CPU_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cnnelm/backend.h"
#include "cnnelm/backend_util.h"

#define CPU_ALIGN 64
#define CPU_MAX_THREADS 256

/* A host allocation owned by one context; contexts keep a list so context_close frees all. */
struct cnnelm_buffer {
    uint32_t magic;              /* CPU_BUFFER_MAGIC while alive */
    cnnelm_backend_ctx *ctx;     /* owner */
    size_t bytes;
    float *data;                 /* CPU_ALIGN-aligned, at least `bytes` long */
    CNNELM_BUFFER_LINKS;         /* in the context's list */
};
#define CPU_BUFFER_MAGIC 0x43505542u /* "CPUB" */

/* Kernel variants, chosen at context_open from the CPU (CNNELM_CPU_ISA=generic|avx2|avx512 may
 * pick a lower one, for tests and comparisons). */
enum { CPU_ISA_GENERIC = 0, CPU_ISA_AVX2 = 1, CPU_ISA_AVX512 = 2 };

/* One range of tasks handed to one thread: tasks [begin, end), `thread` in [0, threads). */
typedef void (*cpu_task_fn)(void *arg, int begin, int end, int thread);

typedef struct cpu_scratch {
    void *p;
    size_t bytes;
} cpu_scratch;

struct cnnelm_backend_ctx {
    uint32_t magic;              /* CPU_CTX_MAGIC while open */
    int threads;                 /* worker threads including the caller */
    int isa;                     /* CPU_ISA_*: the kernels this context runs */
    char err[512];               /* last_error() */
    struct cnnelm_buffer *buffers;

    /* Per-thread scratch (index = thread) and one shared scratch for cross-thread partials. */
    cpu_scratch scratch[CPU_MAX_THREADS];
    cpu_scratch shared;

    /* Thread pool: threads-1 pthreads, started at context_open, parked between jobs. `state`
     * packs the job's generation (high 32 bits) and the next unclaimed task (low 32 bits), so
     * a thread claims tasks with one compare-and-swap that fails once the job has changed. */
    pthread_t *tid;
    int started;
    _Atomic unsigned long long state;
    _Atomic int done_tasks;            /* tasks of the current job finished (a futex word) */
    _Atomic int wake_seq;              /* bumped per job: the futex word idle workers sleep on */
    _Atomic int sleepers;              /* workers asleep (or about to sleep) on wake_seq */
    _Atomic int caller_waiting;        /* the caller asleep (or about to) on done_tasks */
    _Atomic int quit;
    _Atomic(cpu_task_fn) job_fn;
    _Atomic(void *) job_arg;
    _Atomic int job_tasks, job_chunk;
};
#define CPU_CTX_MAGIC 0x43505543u /* "CPUC" */

/* Sets the context's message and returns `st`. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
cnnelm_status cpu_fail(cnnelm_backend_ctx *ctx, cnnelm_status st, const char *fmt, ...);

/* A context with `threads` threads (at least 1; the pool started, the kernel variant chosen)
 * and its end (the pool stopped, scratch freed; buffers are the caller's) (cpu_context.c). */
cnnelm_status cpu_context_create(int threads, cnnelm_backend_ctx **out, char *error, size_t error_size);
void cpu_context_destroy(cnnelm_backend_ctx *ctx);

/* Thread pool (cpu_threads.c). Runs fn over `tasks` tasks, handed out in contiguous ranges
 * that threads claim as they come free (a thread the OS has descheduled does not hold up the
 * rest); returns when every task is done. fn may be called several times per thread per job.
 * Outputs of a task must not depend on which thread runs it or on the range it came in:
 * results then do not depend on the thread count or on the scheduling either. */
cnnelm_status cpu_thread_pool_start(cnnelm_backend_ctx *ctx);
void cpu_thread_pool_stop(cnnelm_backend_ctx *ctx);
void cpu_parallel(cnnelm_backend_ctx *ctx, int tasks, cpu_task_fn fn, void *arg);

/* Scratch: makes every thread's scratch (or the shared one) at least `bytes` long. The
 * contents are not kept. */
cnnelm_status cpu_scratch_reserve(cnnelm_backend_ctx *ctx, size_t bytes);
cnnelm_status cpu_shared_reserve(cnnelm_backend_ctx *ctx, size_t bytes);
void cpu_scratch_free(cnnelm_backend_ctx *ctx);
void *cpu_aligned_alloc(size_t bytes);

/* Kernels, called with arguments the core has checked (see backend.h). */
cnnelm_status cpu_conv_forward(cnnelm_backend_ctx *ctx, const cnnelm_conv_shape *s,
                               cnnelm_activation act, const float *x, const float *w,
                               const float *b, float *y);
cnnelm_status cpu_conv_backward_data(cnnelm_backend_ctx *ctx, const cnnelm_conv_shape *s,
                                     const float *dy, const float *w, float *dx);
cnnelm_status cpu_conv_backward_filter(cnnelm_backend_ctx *ctx, const cnnelm_conv_shape *s,
                                       const float *x, const float *dy, float *dw, float *db,
                                       int accumulate);
cnnelm_status cpu_pool_forward(cnnelm_backend_ctx *ctx, const cnnelm_pool_shape *s,
                               cnnelm_pooling mode, const float *x, float *y);
cnnelm_status cpu_pool_backward(cnnelm_backend_ctx *ctx, const cnnelm_pool_shape *s,
                                cnnelm_pooling mode, const float *x, const float *dy, float *dx);
cnnelm_status cpu_act_forward(cnnelm_backend_ctx *ctx, cnnelm_activation act, size_t count,
                              const float *x, float *y);
cnnelm_status cpu_act_backward(cnnelm_backend_ctx *ctx, cnnelm_activation act, size_t count,
                               const float *y, const float *dy, float *dx);
cnnelm_status cpu_elm_accumulate(cnnelm_backend_ctx *ctx, int n, int l, int c, const float *H,
                                 const float *T, float *U, float *V);
cnnelm_status cpu_elm_accumulate_f64(cnnelm_backend_ctx *ctx, int n, int l, int c, const float *H,
                                     const float *T, double *U, double *V);
cnnelm_status cpu_elm_predict(cnnelm_backend_ctx *ctx, int n, int l, int c, const float *H,
                              const float *beta, float *Y);
cnnelm_status cpu_elm_backprop(cnnelm_backend_ctx *ctx, int n, int l, int c, const float *E,
                               const float *beta, float *dH);
cnnelm_status cpu_elm_solve(cnnelm_backend_ctx *ctx, int l, int c, double lambda, const float *U,
                            const float *V, float *beta);

/* Activation applied in place to `count` floats (used by the conv kernels for opttanh). */
void cpu_act_apply(cnnelm_activation act, float *y, size_t count);

#define CPU_OPTTANH_A 1.7159f
#define CPU_OPTTANH_B (2.0f / 3.0f)

#endif
