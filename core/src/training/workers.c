/* cnnelm workers (see workers.h). */
#define _GNU_SOURCE
#include "training/workers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Pools whose watchdog gave up on a device: their thread may still be inside plugin code, so
 * the workers, their plugins and the reference are kept (never freed or unloaded) for the
 * rest of the process; this list keeps them reachable for leak checkers. */
#define MAX_KEPT 64
static void *kept[MAX_KEPT];
static atomic_int n_kept;

static void keep(void *p)
{
    int i = atomic_fetch_add(&n_kept, 1);
    if (i < MAX_KEPT)
        kept[i] = p;
}

int cnnelm_workers_abandoned(void) { return atomic_load(&n_kept) > 0; }

/* The device index of a worker: its `match` text against device names and vendors, or `device`. */
static int pick_device(const cnnelm_plugin *p, const cnnelm_worker_config *wc, int *device,
                       cnnelm_error *err)
{
    *device = wc->device;
    if (!wc->match[0])
        return 0;
    int n = 0;
    char why[512] = "";
    cnnelm_status st = cnnelm_plugin_device_count(p, &n, why, sizeof why);
    if (st != CNNELM_OK)
        return cnnelm_fail(err, "backend '%s' cannot count its devices: %s: %s", p->name,
                           cnnelm_status_name(st), why);
    for (int d = 0; d < n; d++) {
        cnnelm_device_info info;
        memset(&info, 0, sizeof info);
        if (cnnelm_plugin_device_info(p, d, &info) != CNNELM_OK)
            continue;
        info.name[sizeof info.name - 1] = info.vendor[sizeof info.vendor - 1] = '\0';
        if (strstr(info.name, wc->match) || strstr(info.vendor, wc->match)) {
            *device = d;
            return 0;
        }
    }
    return cnnelm_fail(err, "backend '%s' has no device whose name or vendor contains \"%s\" "
                       "(%d device%s; see `cnnelm devices`)", p->name, wc->match, n, n == 1 ? "" : "s");
}

/* The CPU reference, loaded the first time any worker's fallback needs it (from any thread). */
static const cnnelm_plugin *load_reference(void *user, cnnelm_error *err)
{
    cnnelm_worker_pool *pool = user;
    pthread_mutex_lock(&pool->reference_lock);
    if (!pool->reference_tried) {
        pool->reference_tried = 1;
        if (cnnelm_plugin_load("cpu", pool->plugin_path, &pool->reference, &pool->reference_err) != 0)
            pool->reference = NULL;
    }
    const cnnelm_plugin *ref = pool->reference;
    if (!ref)
        *err = pool->reference_err;
    pthread_mutex_unlock(&pool->reference_lock);
    return ref;
}

int cnnelm_worker_pool_open(cnnelm_worker_pool *pool, const cnnelm_config *cfg, const cnnelm_arch *arch,
                     cnnelm_error *err)
{
    memset(pool, 0, sizeof *pool);
    pthread_mutex_init(&pool->reference_lock, NULL);
    pool->w = calloc((size_t)cfg->n_workers, sizeof *pool->w);
    pool->plugin_path = strdup(cfg->plugin_path);
    if (!pool->w || !pool->plugin_path) {
        free(pool->w);
        free(pool->plugin_path);
        pthread_mutex_destroy(&pool->reference_lock);
        memset(pool, 0, sizeof *pool);
        return cnnelm_fail(err, "out of memory");
    }
    pool->n = cfg->n_workers;
    cnnelm_reference_source ref = { .load = load_reference, .user = pool };
    for (int i = 0; i < cfg->n_workers; i++) {
        cnnelm_worker *w = &pool->w[i];
        w->index = i;
        w->cfg = cfg->workers[i];
        int device = 0;
        if (cnnelm_plugin_load(w->cfg.backend, cfg->plugin_path, &w->plugin, err) ||
            pick_device(w->plugin, &w->cfg, &device, err) ||
            cnnelm_net_open_ex(&w->net, w->plugin, device, w->cfg.threads, arch, cfg->train.chunk,
                               &ref, err)) {
            cnnelm_fail_prefix(err, "worker %d", i + 1);
            cnnelm_worker_pool_close(pool);
            return -1;
        }
        w->open = 1;
    }
    return 0;
}

void cnnelm_worker_pool_close(cnnelm_worker_pool *pool)
{
    int hung = 0;
    for (int i = 0; i < pool->n; i++)
        hung |= pool->w[i].open && cnnelm_watch_abandoned(&pool->w[i].net.watch);
    if (hung) {
        /* a thread may still be inside a plugin (or the reference, in a fallback): close the
         * contexts of the others, keep everything it could touch */
        for (int i = 0; i < pool->n; i++)
            if (pool->w[i].open && !cnnelm_watch_abandoned(&pool->w[i].net.watch))
                cnnelm_net_close(&pool->w[i].net);
        keep(pool->w);
        for (int i = 0; i < pool->n; i++)
            keep(pool->w[i].plugin);
        keep(pool->reference);
        memset(pool, 0, sizeof *pool);
        return;
    }
    /* contexts first, libraries last: no plugin code may run after its dlclose */
    for (int i = 0; i < pool->n; i++)
        if (pool->w[i].open)
            cnnelm_net_close(&pool->w[i].net);
    for (int i = 0; i < pool->n; i++)
        cnnelm_plugin_unload(pool->w[i].plugin);
    cnnelm_plugin_unload(pool->reference);
    free(pool->w);
    free(pool->plugin_path);
    pthread_mutex_destroy(&pool->reference_lock);
    memset(pool, 0, sizeof *pool);
}

int cnnelm_worker_pool_describe(const cnnelm_worker_pool *pool, int i, cnnelm_worker_desc *d)
{
    memset(d, 0, sizeof *d);
    if (!pool || i < 0 || i >= pool->n)
        return -1;
    const cnnelm_worker *w = &pool->w[i];
    /* "#index" only when another worker has the same device, so lines tell them apart */
    int shared = 0;
    for (int o = 0; o < pool->n; o++)
        shared += o != i && strcmp(pool->w[o].net.where, w->net.where) == 0;
    if (shared)
        snprintf(d->label, sizeof d->label, "%.40s#%d", w->net.where, w->index);
    else
        snprintf(d->label, sizeof d->label, "%.40s", w->net.where);
    d->device = w->net.where;
    d->plugin_path = w->plugin ? w->plugin->path : "";
    d->backend = w->plugin ? w->plugin->name : "";
    d->threads = w->cfg.threads;
    d->chunk = w->net.chunk;
    d->classes = w->net.arch.classes;
    d->fell_back = w->net.ops.fell_back;
    d->failed = w->failed;
    return 0;
}

void cnnelm_worker_pool_report_chunks(const cnnelm_worker_pool *pool, void (*note)(void *user, const char *line),
                                      void *user)
{
    for (int i = 0; i < pool->n; i++) {
        const cnnelm_net *net = &pool->w[i].net;
        if (net->chunk_requested <= 0)
            continue;
        char line[512];
        snprintf(line, sizeof line, "worker %d (%s): train.chunk lowered from %d to %d examples, so "
                 "that every buffer fits the device's largest allocation (%.1f MiB); the model "
                 "changes only by float rounding", i + 1, net->where, net->chunk_requested, net->chunk,
                 (double)net->max_alloc / 1048576.0);
        note(user, line);
    }
}

void cnnelm_worker_pool_report_fallbacks(const cnnelm_worker_pool *pool, void (*note)(void *user, const char *line),
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
    cnnelm_worker_pool *pool;
    int n_tasks, next;
    int *requeued, n_requeued;   /* tasks given back by workers whose device failed */
    int alive;                   /* workers still running tasks */
    int failed_task;             /* lowest task that failed for good, or n_tasks */
    cnnelm_error first;
    cnnelm_task_fn fn;
    void *user;
    void (*note)(void *user, const char *line);
    void *note_user;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int busy;                    /* tasks being run right now */
} run_state;

typedef struct thread_arg {
    run_state *s;
    cnnelm_worker *w;
    int task;       /* the task it runs, -1: none (guarded by s->lock) */
    int finished;   /* its thread is done with the run state (guarded by s->lock) */
} thread_arg;

/* Next task for a worker: a requeued one first; -1 when there is none left to start (a worker
 * waits while others still run tasks that could come back). */
static int take_task(run_state *s, thread_arg *a)
{
    pthread_mutex_lock(&s->lock);
    int task = -1;
    for (;;) {
        if (s->failed_task < s->n_tasks)
            break;
        if (s->n_requeued > 0) {
            task = s->requeued[--s->n_requeued];
            break;
        }
        if (s->next < s->n_tasks) {
            task = s->next++;
            break;
        }
        if (s->busy == 0)
            break;
        pthread_cond_wait(&s->changed, &s->lock);
    }
    if (task >= 0)
        s->busy++;
    a->task = task;
    pthread_mutex_unlock(&s->lock);
    return task;
}

static void *worker_main(void *arg)
{
    thread_arg *a = arg;
    run_state *s = a->s;
    for (;;) {
        int task = take_task(s, a);
        if (task < 0)
            break;
        cnnelm_error e = { "" };
        int rc = s->fn(a->w, task, s->user, &e);
        /* given up on by the watchdog while in a device call: the run (and *s) may be gone */
        if (cnnelm_watch_abandoned(&a->w->net.watch))
            return NULL;
        pthread_mutex_lock(&s->lock);
        s->busy--;
        a->task = -1;
        int stop = 0;
        if (rc != 0 && a->w->net.device_lost && s->alive > 1) {
            /* the device is gone: give the task back, leave the run to the other workers */
            s->requeued[s->n_requeued++] = task;
            s->alive--;
            stop = 1;
            if (s->note) {
                char line[1400];
                snprintf(line, sizeof line, "worker %d (%s) failed and stops: %.1000s; task %d goes "
                         "back to the queue, %d worker%s left", a->w->index + 1, a->w->net.where,
                         e.msg, task + 1, s->alive, s->alive == 1 ? "" : "s");
                s->note(s->note_user, line);
            }
            a->w->failed = 1;
        } else if (rc != 0) {
            if (task < s->failed_task) {
                s->failed_task = task;
                s->first = e;
            }
            stop = 1;
        }
        pthread_cond_broadcast(&s->changed);
        pthread_mutex_unlock(&s->lock);
        if (stop)
            break;
    }
    pthread_mutex_lock(&s->lock);
    a->finished = 1;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* The watchdog, on the calling thread while the workers run (s->lock held): a worker whose
 * device call has run past its op_timeout is given up on. Its task goes back to the queue when
 * another worker is left; otherwise the run fails with a message naming the call. */
static void watch_workers(run_state *s, thread_arg *args, int n)
{
    for (int i = 0; i < n; i++) {
        thread_arg *a = &args[i];
        char what[200];
        if (a->finished || !cnnelm_watch_expire(&a->w->net.watch, a->w->cfg.op_timeout, what, sizeof what))
            continue;
        a->finished = 1; /* its thread will not touch the run state again */
        a->w->failed = 1;
        a->w->net.device_lost = 1;
        s->alive--;
        char line[1024];
        snprintf(line, sizeof line, "worker %d (%s): %s did not return within %g s (workers[%d].op_timeout); "
                 "the device is treated as lost", a->w->index + 1, a->w->net.where, what, a->w->cfg.op_timeout,
                 a->w->index);
        if (a->task >= 0) {
            s->busy--;
            if (s->alive > 0) {
                s->requeued[s->n_requeued++] = a->task;
                if (s->note) {
                    char note[1400];
                    snprintf(note, sizeof note, "%s; task %d goes back to the queue, %d worker%s left", line,
                             a->task + 1, s->alive, s->alive == 1 ? "" : "s");
                    s->note(s->note_user, note);
                }
            } else if (a->task < s->failed_task) {
                s->failed_task = a->task;
                snprintf(s->first.msg, sizeof s->first.msg, "%s", line);
            }
        }
        pthread_cond_broadcast(&s->changed);
    }
}

/* Starts a thread per usable worker and waits for them, watching their device calls. A thread
 * given up on is detached and its arguments are kept: it may still be running. */
static int run_watched(run_state *s, cnnelm_worker_pool *pool, const int *usable, int n_usable)
{
    thread_arg *args = calloc((size_t)n_usable, sizeof *args);
    pthread_t *tid = calloc((size_t)n_usable, sizeof *tid);
    if (!args || !tid) {
        free(args);
        free(tid);
        return -1;
    }
    int started = 0;
    for (int i = 0; i < n_usable; i++) {
        args[i] = (thread_arg){ s, &pool->w[usable[i]], -1, 0 };
        if (pthread_create(&tid[i], NULL, worker_main, &args[i]) != 0)
            break; /* run on the threads we have; the queue still drains */
        started++;
    }
    if (started == 0) {
        free(args);
        free(tid);
        return -1;
    }
    pthread_mutex_lock(&s->lock);
    s->alive = started;
    for (;;) {
        int running = 0;
        for (int i = 0; i < started; i++)
            running += !args[i].finished;
        if (running == 0)
            break;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000000L; /* a tenth of a second: timeouts are seconds */
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->changed, &s->lock, &until);
        watch_workers(s, args, started);
    }
    pthread_mutex_unlock(&s->lock);
    int abandoned = 0;
    for (int i = 0; i < started; i++) {
        if (cnnelm_watch_abandoned(&args[i].w->net.watch) && args[i].task >= 0) {
            pthread_detach(tid[i]);
            abandoned = 1;
        } else {
            pthread_join(tid[i], NULL);
        }
    }
    if (abandoned)
        keep(args); /* the detached thread still holds a pointer to its argument */
    else
        free(args);
    free(tid);
    return 0;
}

int cnnelm_worker_pool_run(cnnelm_worker_pool *pool, int n_tasks, cnnelm_task_fn fn, void *user,
                    cnnelm_error *err)
{
    run_state s = { .pool = pool, .n_tasks = n_tasks, .failed_task = n_tasks, .fn = fn,
                    .user = user, .note = pool->note, .note_user = pool->note_user };
    s.requeued = malloc(((size_t)n_tasks + 1) * sizeof *s.requeued);
    if (!s.requeued)
        return cnnelm_fail(err, "out of memory");
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.changed, NULL);
    thread_arg args[CNNELM_MAX_WORKERS];
    pthread_t tid[CNNELM_MAX_WORKERS];
    int started = 0, usable[CNNELM_MAX_WORKERS], n_usable = 0;
    for (int i = 0; i < pool->n; i++)
        if (!pool->w[i].failed)
            usable[n_usable++] = i;
    s.alive = n_usable;
    if (n_usable == 0) {
        free(s.requeued);
        return cnnelm_fail(err, "no worker left: every device has failed");
    }
    int watched = 0;
    for (int i = 0; i < n_usable; i++)
        watched |= pool->w[usable[i]].cfg.op_timeout > 0;
    if (watched && run_watched(&s, pool, usable, n_usable) == 0) {
        /* done: every worker on its own thread, this one the watchdog */
    } else if (n_usable == 1 || n_tasks <= 1) {
        args[0] = (thread_arg){ &s, &pool->w[usable[0]], -1, 0 };
        s.alive = 1; /* one worker runs everything: nothing to hand tasks back to */
        worker_main(&args[0]);
    } else {
        for (int i = 0; i < n_usable; i++) {
            args[i] = (thread_arg){ &s, &pool->w[usable[i]], -1, 0 };
            if (pthread_create(&tid[i], NULL, worker_main, &args[i]) != 0)
                break; /* run on the threads we have; the queue still drains */
            started++;
        }
        pthread_mutex_lock(&s.lock);
        s.alive = started > 0 ? started : 1;
        pthread_mutex_unlock(&s.lock);
        if (started == 0) {
            args[0] = (thread_arg){ &s, &pool->w[usable[0]], -1, 0 };
            worker_main(&args[0]);
        }
        for (int i = 0; i < started; i++)
            pthread_join(tid[i], NULL);
    }
    pthread_cond_destroy(&s.changed);
    pthread_mutex_destroy(&s.lock);
    int left = s.n_requeued;
    free(s.requeued);
    if (s.failed_task < n_tasks) {
        if (err)
            *err = s.first;
        return -1;
    }
    if (left > 0 || s.next < n_tasks)
        return cnnelm_fail(err, "%d task%s could not run: every worker's device failed", left,
                           left == 1 ? "" : "s");
    return 0;
}

void cnnelm_worker_label(const cnnelm_worker_pool *pool, const cnnelm_worker *w, char *out, size_t cap)
{
    cnnelm_worker_desc d;
    if (cnnelm_worker_pool_describe(pool, w->index, &d) != 0)
        snprintf(d.label, sizeof d.label, "worker %d", w->index);
    snprintf(out, cap, "%s", d.label);
}
