/* cnnelm workers (see workers.h). */
#include "workers.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cnnelm_pool_open(cnnelm_pool *pool, const cnnelm_config *cfg, const cnnelm_arch *arch,
                     cnnelm_error *err)
{
    memset(pool, 0, sizeof *pool);
    pool->w = calloc((size_t)cfg->n_workers, sizeof *pool->w);
    if (!pool->w)
        return cnnelm_fail(err, "out of memory");
    pool->n = cfg->n_workers;
    cnnelm_error ignored;
    if (cnnelm_plugin_load("cpu", cfg->plugin_path, &pool->reference, &ignored) != 0)
        pool->reference = NULL; /* no fallback: a missing op is then an error when it is called */
    for (int i = 0; i < cfg->n_workers; i++) {
        cnnelm_worker *w = &pool->w[i];
        w->index = i;
        w->cfg = cfg->workers[i];
        if (cnnelm_plugin_load(w->cfg.backend, cfg->plugin_path, &w->plugin, err) ||
            cnnelm_net_open(&w->net, w->plugin, w->cfg.device, w->cfg.threads, arch, cfg->train.chunk,
                            pool->reference, err)) {
            cnnelm_fail_prefix(err, "worker %d", i + 1);
            cnnelm_pool_close(pool);
            return -1;
        }
        w->open = 1;
    }
    return 0;
}

void cnnelm_pool_close(cnnelm_pool *pool)
{
    /* contexts first, libraries last: no plugin code may run after its dlclose */
    for (int i = 0; i < pool->n; i++)
        if (pool->w[i].open)
            cnnelm_net_close(&pool->w[i].net);
    for (int i = 0; i < pool->n; i++)
        cnnelm_plugin_unload(pool->w[i].plugin);
    cnnelm_plugin_unload(pool->reference);
    free(pool->w);
    memset(pool, 0, sizeof *pool);
}

void cnnelm_pool_report_fallbacks(const cnnelm_pool *pool, void (*note)(void *user, const char *line),
                                  void *user)
{
    for (int i = 0; i < pool->n; i++) {
        uint32_t bits = pool->w[i].net.ops.fell_back;
        if (!bits)
            continue;
        char line[512];
        int len = snprintf(line, sizeof line, "worker %d (%s): ran on the CPU reference, as the "
                           "backend lacks them:", i + 1, pool->w[i].net.where);
        for (int op = 0; op < CNNELM_OP_COUNT && len < (int)sizeof line; op++)
            if (bits >> op & 1u)
                len += snprintf(line + len, sizeof line - (size_t)len, " %s", cnnelm_op_name((cnnelm_op_id)op));
        note(user, line);
    }
}

typedef struct run_state {
    cnnelm_pool *pool;
    int n_tasks, next;
    int failed_task;         /* lowest failed task, or n_tasks */
    cnnelm_error first;
    cnnelm_task_fn fn;
    void *user;
    pthread_mutex_t lock;
} run_state;

typedef struct thread_arg {
    run_state *s;
    cnnelm_worker *w;
} thread_arg;

static void *worker_main(void *arg)
{
    thread_arg *a = arg;
    run_state *s = a->s;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        int task = s->failed_task < s->n_tasks || s->next >= s->n_tasks ? -1 : s->next++;
        pthread_mutex_unlock(&s->lock);
        if (task < 0)
            break;
        cnnelm_error e = { "" };
        if (s->fn(a->w, task, s->user, &e) != 0) {
            pthread_mutex_lock(&s->lock);
            if (task < s->failed_task) {
                s->failed_task = task;
                s->first = e;
            }
            pthread_mutex_unlock(&s->lock);
            break;
        }
    }
    return NULL;
}

int cnnelm_pool_run(cnnelm_pool *pool, int n_tasks, cnnelm_task_fn fn, void *user,
                    cnnelm_error *err)
{
    run_state s = { .pool = pool, .n_tasks = n_tasks, .failed_task = n_tasks, .fn = fn, .user = user };
    pthread_mutex_init(&s.lock, NULL);
    int n_threads = pool->n < n_tasks ? pool->n : n_tasks;
    thread_arg args[CNNELM_MAX_WORKERS];
    pthread_t tid[CNNELM_MAX_WORKERS];
    int started = 0;
    if (n_threads <= 1) {
        args[0] = (thread_arg){ &s, &pool->w[0] };
        worker_main(&args[0]);
    } else {
        for (int i = 0; i < n_threads; i++) {
            args[i] = (thread_arg){ &s, &pool->w[i] };
            if (pthread_create(&tid[i], NULL, worker_main, &args[i]) != 0) {
                /* run on the threads we have; the queue still drains */
                break;
            }
            started++;
        }
        if (started == 0) {
            args[0] = (thread_arg){ &s, &pool->w[0] };
            worker_main(&args[0]);
        }
        for (int i = 0; i < started; i++)
            pthread_join(tid[i], NULL);
    }
    pthread_mutex_destroy(&s.lock);
    if (s.failed_task < n_tasks) {
        if (err)
            *err = s.first;
        return -1;
    }
    return 0;
}
