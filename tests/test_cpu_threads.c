/* The CPU backend's thread pool (backends/cpu/cpu_threads.c), compiled into this test: every
 * task of every job runs exactly once, before cpu_parallel returns, on a valid thread index,
 * for many back-to-back jobs of random sizes, with more threads than cores and with busy
 * threads competing for the cores (so workers are descheduled and wake late). */
#define _DEFAULT_SOURCE /* syscall(SYS_futex) in cpu_threads.c */
#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <signal.h>
#include <time.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backends/cpu/cpu_threads.c"

cnnelm_status cpu_fail(cnnelm_backend_ctx *ctx, cnnelm_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    return st;
}

#define MAX_TASKS 5000

typedef struct job {
    _Atomic int hits[MAX_TASKS];
    _Atomic int bad_thread, calls;
    int threads;
    unsigned spin; /* work per task, so ranges overlap in time */
} job;

static void count_task(void *arg, int begin, int end, int thread)
{
    job *j = arg;
    if (thread < 0 || thread >= j->threads || begin >= end)
        atomic_fetch_add(&j->bad_thread, 1);
    atomic_fetch_add(&j->calls, 1);
    for (int i = begin; i < end; i++) {
        volatile unsigned x = 0;
        for (unsigned k = 0; k < j->spin; k++)
            x += k;
        atomic_fetch_add(&j->hits[i], 1);
    }
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static unsigned next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng >> 33);
}

static _Atomic int stop_busy;
static void *busy_main(void *p)
{
    (void)p;
    volatile unsigned long x = 0;
    while (!atomic_load(&stop_busy))
        x++;
    return NULL;
}

static void run_jobs(int threads, int jobs, int with_busy)
{
    cnnelm_backend_ctx *ctx = calloc(1, sizeof *ctx);
    ck_assert_ptr_nonnull(ctx);
    ctx->threads = threads;
    ck_assert_int_eq(cpu_thread_pool_start(ctx), CNNELM_OK);
    pthread_t busy[2];
    atomic_store(&stop_busy, 0);
    if (with_busy)
        for (int i = 0; i < 2; i++)
            ck_assert_int_eq(pthread_create(&busy[i], NULL, busy_main, NULL), 0);
    job *j = calloc(1, sizeof *j);
    ck_assert_ptr_nonnull(j);
    j->threads = threads;
    for (int n = 0; n < jobs; n++) {
        unsigned r = next_rand();
        int tasks = r % 16 == 0 ? MAX_TASKS : (int)(r % 300) + 1;
        for (int i = 0; i < tasks; i++)
            atomic_store(&j->hits[i], 0);
        atomic_store(&j->calls, 0);
        j->spin = (r >> 8) % 4 == 0 ? 200 : 0;
        cpu_parallel(ctx, tasks, count_task, j);
        /* Everything is done at return, each task once. */
        for (int i = 0; i < tasks; i++)
            ck_assert_msg(atomic_load(&j->hits[i]) == 1,
                          "%d threads, job %d: task %d of %d ran %d times", threads, n, i, tasks,
                          atomic_load(&j->hits[i]));
        ck_assert_int_eq(atomic_load(&j->bad_thread), 0);
        ck_assert_int_ge(atomic_load(&j->calls), 1);
    }
    if (with_busy) {
        atomic_store(&stop_busy, 1);
        for (int i = 0; i < 2; i++)
            pthread_join(busy[i], NULL);
    }
    cpu_thread_pool_stop(ctx);
    free(j);
    free(ctx);
}

START_TEST(every_task_once)
{
    const int counts[] = { 1, 2, 3, 8 };
    for (int c = 0; c < 4; c++)
        run_jobs(counts[c], 500, 0);
}
END_TEST

START_TEST(every_task_once_beside_busy_threads)
{
    run_jobs(2, 300, 1);
    run_jobs(5, 100, 1);
}
END_TEST

/* A worker the OS does not run (here: held in a signal handler until the jobs are done, 60 s
 * at most) must not hold up jobs it has not started: the other threads take its share. A
 * static split (one range per thread) waits for it on the first job, until the 60 s pass. */
static _Atomic int in_handler, release_handler, handler_timed_out;
static void hold_thread(int sig)
{
    (void)sig;
    atomic_store(&in_handler, 1);
    for (int ms = 0; !atomic_load(&release_handler); ms++) {
        if (ms == 60000) {
            atomic_store(&handler_timed_out, 1);
            break;
        }
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
}

START_TEST(stalled_worker_does_not_hold_up_jobs)
{
    cnnelm_backend_ctx *ctx = calloc(1, sizeof *ctx);
    ck_assert_ptr_nonnull(ctx);
    ctx->threads = 3;
    ck_assert_int_eq(cpu_thread_pool_start(ctx), CNNELM_OK);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = hold_thread;
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
    atomic_store(&in_handler, 0);
    atomic_store(&release_handler, 0);
    atomic_store(&handler_timed_out, 0);
    /* Signal the worker once it is parked (not between taking the mutex and waiting). */
    while (atomic_load(&ctx->sleepers) < 2) {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    struct timespec settle = { 0, 20000000 };
    nanosleep(&settle, NULL);
    ck_assert_int_eq(pthread_kill(ctx->tid[0], SIGUSR1), 0);
    while (!atomic_load(&in_handler)) {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    job *j = calloc(1, sizeof *j);
    ck_assert_ptr_nonnull(j);
    j->threads = 3;
    for (int n = 0; n < 50; n++) {
        int tasks = 64;
        for (int i = 0; i < tasks; i++)
            atomic_store(&j->hits[i], 0);
        cpu_parallel(ctx, tasks, count_task, j);
        for (int i = 0; i < tasks; i++)
            ck_assert_int_eq(atomic_load(&j->hits[i]), 1);
    }
    ck_assert_msg(!atomic_load(&handler_timed_out), "50 small jobs waited for the stalled worker");
    atomic_store(&release_handler, 1);
    cpu_thread_pool_stop(ctx); /* joins the worker once its handler returns */
    ck_assert_int_eq(atomic_load(&j->bad_thread), 0);
    signal(SIGUSR1, SIG_DFL);
    free(j);
    free(ctx);
}
END_TEST

START_TEST(pool_start_stop_without_jobs)
{
    for (int t = 1; t <= 4; t++) {
        cnnelm_backend_ctx *ctx = calloc(1, sizeof *ctx);
        ck_assert_ptr_nonnull(ctx);
        ctx->threads = t;
        ck_assert_int_eq(cpu_thread_pool_start(ctx), CNNELM_OK);
        cpu_thread_pool_stop(ctx);
        free(ctx);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cpu_threads");
    TCase *tc = tcase_create("pool");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, every_task_once);
    tcase_add_test(tc, every_task_once_beside_busy_threads);
    tcase_add_test(tc, stalled_worker_does_not_hold_up_jobs);
    tcase_add_test(tc, pool_start_stop_without_jobs);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
