/* Checks for the worker pool (core/src/workers.c): a task whose device is lost goes back to the
 * queue and runs on another worker; other failures stop the run with the lowest task's error. */
#define _GNU_SOURCE
#include "training/workers.h"

#include "cnnelm/config.h"
#include "cnnelm/model.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_TASKS 8

/* What each attempt of a task did, filled from the workers' threads. */
typedef struct record {
    pthread_mutex_t lock;
    const float *params;        /* written to the device by each task (a counted call) */
    int calls;                  /* device calls per task */
    int attempts[N_TASKS];      /* times each task was started */
    int done[N_TASKS];          /* times each task succeeded */
    int done_by[N_TASKS];       /* the worker that finished it */
    int failed_on[N_TASKS];     /* the worker an attempt failed on, -1: none */
    int fail_task;              /* test_fn: task that fails without a lost device, -1: none */
    char notes[4][1600];
    int n_notes;
} record;

static void record_init(record *r, const float *params, int calls)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
    r->params = params;
    r->calls = calls;
    r->fail_task = -1;
    for (int t = 0; t < N_TASKS; t++)
        r->done_by[t] = r->failed_on[t] = -1;
}

static void note(void *user, const char *line)
{
    record *r = user;
    pthread_mutex_lock(&r->lock);
    if (r->n_notes < 4)
        snprintf(r->notes[r->n_notes++], sizeof r->notes[0], "%s", line);
    pthread_mutex_unlock(&r->lock);
}

/* A task: `calls` real device calls (parameter uploads), then a short wait so that every worker
 * gets tasks on a busy machine. */
static int device_task(cnnelm_worker *w, int task, void *user, cnnelm_error *err)
{
    record *r = user;
    pthread_mutex_lock(&r->lock);
    r->attempts[task]++;
    pthread_mutex_unlock(&r->lock);
    int rc = 0;
    for (int i = 0; i < r->calls && rc == 0; i++)
        rc = cnnelm_net_set_params(&w->net, r->params, err);
    if (rc == 0 && r->fail_task == task)
        rc = cnnelm_fail(err, "task %d broke", task + 1); /* at once: the others are still busy */
    else
        nanosleep(&(struct timespec){ 0, 20 * 1000000L }, NULL);
    pthread_mutex_lock(&r->lock);
    if (rc == 0) {
        r->done[task]++;
        r->done_by[task] = w->index;
    } else {
        r->failed_on[task] = w->index;
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

typedef struct fixture {
    cnnelm_config cfg;
    cnnelm_arch arch;
    cnnelm_worker_pool pool;
    float *params;
} fixture;

/* A pool of `n` CPU workers on the paper's small network; fail_after "N@K" (or NULL) makes the
 * K-th context lose its device after N counted calls: the workers then run the CPU backend
 * through the forwarding test plugin (tests/stubs/faulty_plugin.c, CNNELM_FAULTY_FAIL_AFTER). */
static void fixture_open(fixture *f, int n, const char *fail_after)
{
    static const char *const one = "workers=({backend=\"cpu\";threads=1;})";
    static const char *const two = "workers=({backend=\"cpu\";threads=1;},{backend=\"cpu\";threads=1;})";
    static const char *const one_faulty = "workers=({backend=\"faulty\";threads=1;})";
    static const char *const two_faulty =
        "workers=({backend=\"faulty\";threads=1;},{backend=\"faulty\";threads=1;})";
    const char *sets[] = { fail_after ? (n == 1 ? one_faulty : two_faulty) : (n == 1 ? one : two),
                           "plugin_path=\"" CNNELM_STUB_DIR "\"" };
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_config_load(&f->cfg, CNNELM_SOURCE_DIR "/conf/paper-fashion.cfg", sets, 2,
                                     &err) == 0, "%s", err.msg);
    const cnnelm_config *c = &f->cfg;
    ck_assert_msg(cnnelm_arch_init(&f->arch, c->model.layers, c->model.kernel, 1, 28, 28, 10,
                                   c->model.activation, c->model.pooling, c->model.elm_activation,
                                   &err) == 0, "%s", err.msg);
    if (fail_after)
        setenv("CNNELM_FAULTY_FAIL_AFTER", fail_after, 1);
    int rc = cnnelm_worker_pool_open(&f->pool, c, &f->arch, &err);
    unsetenv("CNNELM_FAULTY_FAIL_AFTER");
    ck_assert_msg(rc == 0, "%s", err.msg);
    ck_assert_int_eq(f->pool.n, n);
    f->params = calloc(f->arch.n_params, sizeof *f->params);
    ck_assert_ptr_nonnull(f->params);
}

static void fixture_close(fixture *f)
{
    cnnelm_worker_pool_close(&f->pool);
    cnnelm_config_free(&f->cfg);
    free(f->params);
}

/* Worker 1's device is lost in its first task: that task goes back to the queue and worker 2
 * runs it; every task succeeds exactly once; the pool says so through its note; the next run
 * leaves worker 1 out. */
START_TEST(lost_device_task_runs_on_another_worker)
{
    fixture f;
    /* a budget of 1000 calls covers the context's open and planning; a task makes 2000 */
    fixture_open(&f, 2, "1000@1");
    record r;
    record_init(&r, f.params, 2000);
    f.pool.note = note;
    f.pool.note_user = &r;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_worker_pool_run(&f.pool, N_TASKS, device_task, &r, &err) == 0, "%s", err.msg);
    int lost = -1;
    for (int t = 0; t < N_TASKS; t++) {
        ck_assert_msg(r.done[t] == 1, "task %d succeeded %d times", t + 1, r.done[t]);
        ck_assert_int_eq(r.done_by[t], 1); /* worker 1 never finished anything */
        if (r.failed_on[t] >= 0) {
            ck_assert_int_eq(r.failed_on[t], 0);
            ck_assert_int_eq(r.attempts[t], 2);
            ck_assert_int_eq(lost, -1); /* one task only: worker 1 stops at its failure */
            lost = t;
        } else {
            ck_assert_int_eq(r.attempts[t], 1);
        }
    }
    ck_assert_msg(lost >= 0, "worker 1 never lost its device");
    ck_assert(f.pool.w[0].failed && f.pool.w[0].net.device_lost);
    ck_assert(!f.pool.w[1].failed);
    ck_assert_int_eq(r.n_notes, 1);
    char want[64];
    snprintf(want, sizeof want, "task %d goes back to the queue, 1 worker left", lost + 1);
    ck_assert_msg(strstr(r.notes[0], "worker 1 (") && strstr(r.notes[0], "failed and stops") &&
                  strstr(r.notes[0], "injected device failure") && strstr(r.notes[0], want),
                  "note: %s", r.notes[0]);

    /* the next run (a later fold) runs on worker 2 alone */
    record r2;
    record_init(&r2, f.params, 1);
    f.pool.note_user = &r2;
    ck_assert_msg(cnnelm_worker_pool_run(&f.pool, N_TASKS, device_task, &r2, &err) == 0, "%s", err.msg);
    for (int t = 0; t < N_TASKS; t++)
        ck_assert(r2.done[t] == 1 && r2.done_by[t] == 1 && r2.attempts[t] == 1);
    ck_assert_int_eq(r2.n_notes, 0);
    fixture_close(&f);
}
END_TEST

/* The last worker left loses its device: nothing to give the task to, the run fails with the
 * device's message (and its context stays unusable for later runs). */
START_TEST(last_worker_lost_fails_the_run)
{
    fixture f;
    fixture_open(&f, 1, "1000");
    record r;
    record_init(&r, f.params, 2000);
    cnnelm_error err = { "" };
    ck_assert_int_eq(cnnelm_worker_pool_run(&f.pool, N_TASKS, device_task, &r, &err), -1);
    ck_assert_msg(strstr(err.msg, "injected device failure (CNNELM_FAULTY_FAIL_AFTER=1000)"), "%s", err.msg);
    ck_assert_int_eq(r.attempts[0], 1);
    ck_assert_int_eq(r.done[0], 0);
    fixture_close(&f);

    /* both workers lost, one after the other */
    fixture_open(&f, 2, "1000");
    record_init(&r, f.params, 2000);
    f.pool.note = note;
    f.pool.note_user = &r;
    ck_assert_int_eq(cnnelm_worker_pool_run(&f.pool, N_TASKS, device_task, &r, &err), -1);
    ck_assert_msg(strstr(err.msg, "injected device failure"), "%s", err.msg);
    for (int t = 0; t < N_TASKS; t++)
        ck_assert_int_eq(r.done[t], 0);
    ck_assert_int_eq(r.n_notes, 1); /* the first loss handed its task on; the second could not */
    ck_assert_int_eq(f.pool.w[0].failed + f.pool.w[1].failed, 1);
    ck_assert_int_eq(cnnelm_worker_pool_run(&f.pool, N_TASKS, device_task, &r, &err), -1);
    ck_assert_msg(strstr(err.msg, "injected device failure"), "%s", err.msg);
    fixture_close(&f);
}
END_TEST

/* A failure that is not a lost device stops the run: no task is retried, and the error is that
 * of the failed task, even while the other worker finishes its own. */
START_TEST(other_failure_stops_the_run)
{
    fixture f;
    fixture_open(&f, 2, NULL);
    record r;
    record_init(&r, f.params, 1);
    r.fail_task = 2;
    f.pool.note = note;
    f.pool.note_user = &r;
    cnnelm_error err = { "" };
    ck_assert_int_eq(cnnelm_worker_pool_run(&f.pool, N_TASKS, device_task, &r, &err), -1);
    ck_assert_str_eq(err.msg, "task 3 broke");
    ck_assert_int_eq(r.attempts[2], 1);
    ck_assert_int_eq(r.done[2], 0);
    ck_assert_int_eq(r.n_notes, 0);
    int started = 0;
    for (int t = 0; t < N_TASKS; t++) {
        ck_assert_int_le(r.attempts[t], 1);
        started += r.attempts[t];
    }
    /* the failing worker stops; the other finishes at most its current task and one more it
     * took before it saw the failure */
    ck_assert_int_lt(started, N_TASKS);
    ck_assert(!f.pool.w[0].failed && !f.pool.w[1].failed);
    /* the pool is still usable */
    record_init(&r, f.params, 1);
    ck_assert_msg(cnnelm_worker_pool_run(&f.pool, N_TASKS, device_task, &r, &err) == 0, "%s", err.msg);
    for (int t = 0; t < N_TASKS; t++)
        ck_assert_int_eq(r.done[t], 1);
    fixture_close(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("workers");
    TCase *tc = tcase_create("requeue");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, lost_device_task_runs_on_another_worker);
    tcase_add_test(tc, last_worker_lost_fails_the_run);
    tcase_add_test(tc, other_failure_stops_the_run);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
