/* cnnelm workers: one thread per configured worker, each with its own backend context, pulling
 * tasks (partitions) from a shared queue so that a fast device takes more of them. */
#ifndef CNNELM_WORKERS_H
#define CNNELM_WORKERS_H

#include "cnnelm/config.h"
#include "cnnelm/model.h"
#include "cnnelm/plugin.h"
#include <pthread.h>

#include "model/network.h"

typedef struct cnnelm_worker {
    int index;
    cnnelm_worker_config cfg;
    cnnelm_plugin *plugin;
    cnnelm_net net;
    int open;
    int failed;                /* its device failed during a run: it takes no more tasks */
} cnnelm_worker;

typedef struct cnnelm_worker_pool {
    int n;
    cnnelm_worker *w;
    cnnelm_plugin *reference;  /* the CPU plugin, for ops another backend lacks; loaded only
                                  when a fallback needs it (NULL until then) */
    char *plugin_path;         /* where the reference is looked for */
    cnnelm_error reference_err; /* why it could not be loaded, once tried */
    int reference_tried;
    pthread_mutex_t reference_lock;
    void (*note)(void *user, const char *line); /* where worker failures are told; may be NULL */
    void *note_user;
} cnnelm_worker_pool;

/* Loads each worker's backend and opens its device with buffers for cfg->train.chunk examples.
 * The CPU backend is loaded as the fallback for ops a plugin lacks only when one needs it; when
 * it is needed and cannot be loaded, that is an error naming why. */
int cnnelm_worker_pool_open(cnnelm_worker_pool *pool, const cnnelm_config *cfg, const cnnelm_arch *arch,
                     cnnelm_error *err);
void cnnelm_worker_pool_close(cnnelm_worker_pool *pool);

/* What a worker is, for reports and messages, without reaching into its network or plugin. */
typedef struct cnnelm_worker_desc {
    char label[64];            /* its device ("cpu:0"), "#index" added when workers share it */
    const char *device;        /* the device name ("cpu:0"); owned by the pool */
    const char *plugin_path;   /* the plugin file it runs ("" when none is loaded) */
    const char *backend;       /* the plugin's name ("cpu") */
    int threads;               /* workers[i].threads as configured */
    int chunk;                 /* examples per device call */
    int classes;               /* the architecture's classes */
    uint32_t fell_back;        /* bit op (cnnelm_op_id): ran on the CPU reference */
    int failed;                /* its device failed during a run */
} cnnelm_worker_desc;

/* Describes worker i (0 <= i < pool->n). Returns 0, or -1 when i is out of range. */
int cnnelm_worker_pool_describe(const cnnelm_worker_pool *pool, int i, cnnelm_worker_desc *d);

/* A worker's name in messages: its describe label ("cpu:0", "cpu:0#1" when workers share it). */
void cnnelm_worker_label(const cnnelm_worker_pool *pool, const cnnelm_worker *w, char *out, size_t cap);

/* One line per worker whose device made the network lower train.chunk (max_alloc_bytes). */
void cnnelm_worker_pool_report_chunks(const cnnelm_worker_pool *pool, void (*note)(void *user, const char *line),
                                      void *user);
/* Prints (once per run, through `note`) which ops each worker ran on the CPU reference. */
void cnnelm_worker_pool_report_fallbacks(const cnnelm_worker_pool *pool, void (*note)(void *user, const char *line),
                                  void *user);

/* A task: returns 0 or -1 with err set. Runs on the worker's thread. */
typedef int (*cnnelm_task_fn)(cnnelm_worker *w, int task, void *user, cnnelm_error *err);

/* Runs tasks 0..n_tasks-1 on the workers (each worker takes the next task when free). A worker
 * whose device fails (an op returned CNNELM_ERR_DEVICE) gives its task back to the queue and
 * stops, and the run goes on with the others; the run fails only when no worker is left. Any
 * other failure stops the run: the other workers finish their current task, and the error
 * returned is that of the lowest-numbered failed task. A task may run more than once (after a
 * device failure): it must reset its outputs.
 * Watchdog: when a worker has an op_timeout, every worker runs on its own thread and this
 * thread watches their device calls; a call that runs past its worker's op_timeout makes that
 * device lost for good (its thread is abandoned: a hung call cannot be interrupted), its task
 * goes back to the queue when another worker is left, or the run fails with a message naming
 * the worker, op and shape. Without op_timeouts, one worker runs the tasks on this thread. */
int cnnelm_worker_pool_run(cnnelm_worker_pool *pool, int n_tasks, cnnelm_task_fn fn, void *user,
                    cnnelm_error *err);

/* Nonzero when a watchdog gave up on a device in this process: a thread may still be inside
 * plugin code, so the process should end with _Exit() after flushing its output rather than
 * run library destructors under it. */
int cnnelm_workers_abandoned(void);

#endif
