/* cnnelm plugin-check: every op of a plugin against the CPU reference on random inputs, then a
 * short end-to-end training; loading, the entry and the device queries too. Each case runs in a
 * forked child with a time limit so that a crash or a hang becomes a row of the report (see
 * plugin_check.h for what is checked and the tolerances). The plugin's code never runs in this
 * process: runtimes such as OpenCL's do not survive fork, so each child starts its own. */
#define _GNU_SOURCE
#include "cnnelm/plugin_check.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "child.h"
#include "cnnelm/config.h"
#include "cnnelm/metrics.h"
#include "cnnelm/plugin.h"
#include "network.h"
#include "ops.h"
#include "rng.h"
#include "train.h"

#define DEFAULT_TIMEOUT_S 60
#define TIMED_CALLS 5
#define MAX_CALLS 3          /* accumulating ops: calls on one context, compared after each */
#define RACE_ROUNDS 4        /* two-thread cases: rounds, every one compared */
#define GUARD_FLOATS 16      /* tail past every tensor that an op must leave alone */
#define GUARD_BITS 0x7f8dead1u   /* a signalling NaN no op computes */
#define SENTINEL_BITS 0x7fc0feedu /* a quiet NaN with a payload: "never written" */
#define MAX_CASES 160

typedef struct check_case {
    cnnelm_op_call call;
    char shape[80];
    double tol;
    int calls;    /* times called on one context, outputs compared after each */
    int threads;  /* 2: the same op on two contexts in two threads at once */
} check_case;

/* An op's buffer arguments: sizes, which it reads and writes, names for messages. The one
 * place that knows them here, so that an op table can replace cnnelm_op_layout later. */
typedef struct case_layout {
    int nb;
    size_t bytes[6];
    unsigned in, out;
    const char *names[6];
} case_layout;

static void layout_of(const cnnelm_op_call *call, case_layout *lay)
{
    static const char *const names[CNNELM_OP_COUNT][6] = {
        [CNNELM_OP_CONV_FORWARD] = { "x", "w", "b", "y" },
        [CNNELM_OP_CONV_BACKWARD_DATA] = { "dy", "w", "dx" },
        [CNNELM_OP_CONV_BACKWARD_FILTER] = { "x", "dy", "dw", "db" },
        [CNNELM_OP_POOL_FORWARD] = { "x", "y" },
        [CNNELM_OP_POOL_BACKWARD] = { "x", "dy", "dx" },
        [CNNELM_OP_ACT_FORWARD] = { "x", "y" },
        [CNNELM_OP_ACT_BACKWARD] = { "y", "dy", "dx" },
        [CNNELM_OP_ELM_ACCUMULATE] = { "H", "T", "U", "V" },
        [CNNELM_OP_ELM_PREDICT] = { "H", "beta", "Y" },
        [CNNELM_OP_ELM_BACKPROP] = { "E", "beta", "dH" },
        [CNNELM_OP_ELM_SOLVE] = { "U", "V", "beta" },
    };
    memset(lay, 0, sizeof *lay);
    lay->nb = cnnelm_op_layout(call, lay->bytes, &lay->in, &lay->out);
    for (int i = 0; i < 6; i++)
        lay->names[i] = (unsigned)call->op < CNNELM_OP_COUNT && names[call->op][i] ? names[call->op][i] : "?";
}

static size_t floats_of(const case_layout *lay, int i) { return lay->bytes[i] / sizeof(float); }
static size_t alloc_floats(const case_layout *lay, int i) { return floats_of(lay, i) + GUARD_FLOATS; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* What buffer i holds before call k: inputs uniform in [-1, 1] (never zeros), different for
 * every (op, variant, call, buffer); the solve's U symmetric positive definite (H^T H of a
 * random H); outputs the sentinel; every tail the guard pattern. In-out buffers (U and V of
 * elm_accumulate, dw and db with accumulate) are written before the first call only. */
static void fill_buffer(const check_case *cc, const case_layout *lay, int variant, int k, int i, float *h)
{
    size_t n = floats_of(lay, i);
    cnnelm_rng r;
    cnnelm_rng_seed(&r, 20261124, (uint64_t)cc->call.op * 1000 + (uint64_t)variant * 100 + (uint64_t)k * 10 + (uint64_t)i);
    if (lay->in >> i & 1u)
        for (size_t j = 0; j < n; j++)
            h[j] = (float)(2 * cnnelm_rng_uniform(&r) - 1);
    else
        for (size_t j = 0; j < n; j++)
            h[j] = from_bits(SENTINEL_BITS);
    for (size_t j = n; j < n + GUARD_FLOATS; j++)
        h[j] = from_bits(GUARD_BITS);
    if (cc->call.op == CNNELM_OP_ELM_SOLVE && i == 0) {
        int l = cc->call.l, rows = 2 * l;
        double *g = malloc((size_t)rows * l * sizeof *g);
        for (int j = 0; g && j < rows * l; j++)
            g[j] = 2 * cnnelm_rng_uniform(&r) - 1;
        for (int a = 0; g && a < l; a++)
            for (int b = 0; b < l; b++) {
                double s = 0;
                for (int t = 0; t < rows; t++)
                    s += g[t * l + a] * g[t * l + b];
                h[a * l + b] = (float)s;
            }
        free(g);
    }
}

/* The outputs of a case's calls: out[k][i] holds buffer i (with its tail) after call k. */
typedef struct case_result {
    float *out[MAX_CALLS][6];
} case_result;

static int result_alloc(case_result *r, const check_case *cc, const case_layout *lay)
{
    memset(r, 0, sizeof *r);
    for (int k = 0; k < cc->calls; k++)
        for (int i = 0; i < lay->nb; i++)
            if (lay->out >> i & 1u) {
                r->out[k][i] = malloc(alloc_floats(lay, i) * sizeof(float));
                if (!r->out[k][i])
                    return -1;
            }
    return 0;
}

static void result_free(case_result *r)
{
    for (int k = 0; k < MAX_CALLS; k++)
        for (int i = 0; i < 6; i++)
            free(r->out[k][i]);
    memset(r, 0, sizeof *r);
}

/* Runs the case's calls on one context: before each call writes what fill_buffer says, after
 * it reads every output back with its tail into res. With `seconds`, then TIMED_CALLS more
 * calls, their median time. */
static cnnelm_status exec_case(const cnnelm_backend *be, cnnelm_backend_ctx *ctx, const check_case *cc,
                               const case_layout *lay, int variant, case_result *res, double *seconds,
                               char *changed, size_t changed_size)
{
    cnnelm_buffer *b[6] = { 0 };
    float *host[6] = { 0 }, *back = NULL;
    cnnelm_status st = CNNELM_OK;
    if (changed) {
        changed[0] = '\0';
        size_t most = 0;
        for (int i = 0; i < lay->nb; i++)
            most = alloc_floats(lay, i) > most ? alloc_floats(lay, i) : most;
        back = malloc(most * sizeof(float));
        if (!back)
            return CNNELM_ERR_OUT_OF_MEMORY;
    }
    for (int i = 0; i < lay->nb && st == CNNELM_OK; i++) {
        host[i] = malloc(alloc_floats(lay, i) * sizeof(float));
        st = host[i] ? be->buffer_alloc(ctx, alloc_floats(lay, i) * sizeof(float), &b[i])
                     : CNNELM_ERR_OUT_OF_MEMORY;
    }
    for (int k = 0; k < cc->calls && st == CNNELM_OK; k++) {
        for (int i = 0; i < lay->nb && st == CNNELM_OK; i++) {
            int in = lay->in >> i & 1u, out = lay->out >> i & 1u;
            if (k > 0 && in && out)
                continue; /* accumulating: the device keeps the running sum */
            fill_buffer(cc, lay, variant, k, i, host[i]);
            st = be->buffer_write(ctx, b[i], 0, host[i], alloc_floats(lay, i) * sizeof(float));
        }
        if (st == CNNELM_OK)
            st = cnnelm_op_dispatch(be, ctx, &cc->call, b);
        for (int i = 0; i < lay->nb && st == CNNELM_OK; i++)
            if (lay->out >> i & 1u)
                st = be->buffer_read(ctx, b[i], 0, res->out[k][i], alloc_floats(lay, i) * sizeof(float));
        /* inputs are const: an op that writes into one corrupts the caller's data */
        for (int i = 0; back && !changed[0] && i < lay->nb && st == CNNELM_OK; i++) {
            if ((lay->out >> i & 1u) || !(lay->in >> i & 1u))
                continue;
            st = be->buffer_read(ctx, b[i], 0, back, alloc_floats(lay, i) * sizeof(float));
            size_t diff = 0;
            for (size_t j = 0; st == CNNELM_OK && j < alloc_floats(lay, i); j++)
                diff += bits_of(back[j]) != bits_of(host[i][j]);
            if (diff)
                snprintf(changed, changed_size, "wrote into its input %s (%zu floats changed)%s", lay->names[i],
                         diff, cc->calls > 1 ? " on a call" : "");
        }
    }
    if (seconds && st == CNNELM_OK) {
        double t[TIMED_CALLS];
        for (int k = 0; k < TIMED_CALLS && st == CNNELM_OK; k++) {
            float sink;
            double t0 = now_s();
            st = cnnelm_op_dispatch(be, ctx, &cc->call, b);
            for (int i = 0; i < lay->nb && st == CNNELM_OK; i++) /* a read waits for queued work */
                if (lay->out >> i & 1u) {
                    st = be->buffer_read(ctx, b[i], 0, &sink, sizeof sink);
                    break;
                }
            t[k] = now_s() - t0;
        }
        if (st == CNNELM_OK) {
            qsort(t, TIMED_CALLS, sizeof t[0], cmp_double);
            *seconds = t[TIMED_CALLS / 2];
        }
    }
    for (int i = 0; i < lay->nb; i++) {
        be->buffer_free(ctx, b[i]);
        free(host[i]);
    }
    free(back);
    return st;
}

/* Compares a run with the reference's: writes past the end first (the worst bug), then
 * unwritten outputs, then values. Returns 1 when it passes; else the reason in `why`. */
static int judge(const check_case *cc, const case_layout *lay, const case_result *ref, const case_result *got,
                 const char *where, double *worst, char *why, size_t why_size)
{
    char when[64] = "";
    *worst = 0;
    for (int k = 0; k < cc->calls; k++) {
        if (cc->calls > 1)
            snprintf(when, sizeof when, " after call %d of %d", k + 1, cc->calls);
        for (int i = 0; i < lay->nb; i++) {
            if (!(lay->out >> i & 1u))
                continue;
            size_t n = floats_of(lay, i), past = 0, unwritten = 0;
            for (size_t j = n; j < n + GUARD_FLOATS; j++)
                past += bits_of(got->out[k][i][j]) != GUARD_BITS;
            if (past) {
                snprintf(why, why_size, "wrote %zu float%s past the end of %s (%zu floats)%s%s", past,
                         past == 1 ? "" : "s", lay->names[i], n, when, where);
                *worst = INFINITY;
                return 0;
            }
            for (size_t j = 0; j < n; j++)
                unwritten += bits_of(got->out[k][i][j]) == SENTINEL_BITS &&
                             bits_of(ref->out[k][i][j]) != SENTINEL_BITS;
            if (unwritten) {
                snprintf(why, why_size, "output %s not written: %zu of %zu floats left as they were%s%s",
                         lay->names[i], unwritten, n, when, where);
                *worst = INFINITY;
                return 0;
            }
            double scale = 0;
            if (cc->call.op == CNNELM_OP_ELM_SOLVE) /* beta: relative to its largest value */
                for (size_t j = 0; j < n; j++)
                    scale = fmax(scale, fabs(ref->out[k][i][j]));
            size_t at = 0;
            double bad = 0;
            for (size_t j = 0; j < n; j++) {
                double d = fabs((double)got->out[k][i][j] - ref->out[k][i][j]) /
                           (cc->call.op == CNNELM_OP_ELM_SOLVE ? scale : 1 + fabs(ref->out[k][i][j]));
                if (isnan(d))
                    d = INFINITY;
                if (d > bad) {
                    bad = d;
                    at = j;
                }
            }
            if (bad > *worst)
                *worst = bad;
            if (bad > cc->tol) {
                snprintf(why, why_size, "outside the tolerance: %s[%zu] is %g, the reference %g%s%s",
                         lay->names[i], at, (double)got->out[k][i][at], (double)ref->out[k][i][at], when, where);
                return 0;
            }
        }
    }
    return 1;
}

/* ---- the children ---- */

/* Is the op's slot filled in the plugin's table? */
static int has_op(const cnnelm_backend *be, cnnelm_op_id op)
{
    switch (op) {
    case CNNELM_OP_CONV_FORWARD: return be->conv2d_forward != NULL;
    case CNNELM_OP_CONV_BACKWARD_DATA: return be->conv2d_backward_data != NULL;
    case CNNELM_OP_CONV_BACKWARD_FILTER: return be->conv2d_backward_filter != NULL;
    case CNNELM_OP_POOL_FORWARD: return be->pool_forward != NULL;
    case CNNELM_OP_POOL_BACKWARD: return be->pool_backward != NULL;
    case CNNELM_OP_ACT_FORWARD: return be->activation_forward != NULL;
    case CNNELM_OP_ACT_BACKWARD: return be->activation_backward != NULL;
    case CNNELM_OP_ELM_ACCUMULATE: return be->elm_accumulate != NULL;
    case CNNELM_OP_ELM_PREDICT: return be->elm_predict != NULL;
    case CNNELM_OP_ELM_BACKPROP: return be->elm_backprop != NULL;
    case CNNELM_OP_ELM_SOLVE: return be->elm_solve != NULL;
    case CNNELM_OP_COUNT: break;
    }
    return 0;
}

/* Loading: dlopen, the entry, the table's checks; what the parent needs to know of the table. */
typedef struct load_reply {
    int ok;
    char message[512];
    char name[64], description[256];
    unsigned abi_major, abi_minor;
    uint32_t ops;  /* bit per cnnelm_op_id: slot filled */
} load_reply;

static void child_load(void *arg, void *reply, size_t size)
{
    (void)size;
    load_reply *r = reply;
    cnnelm_plugin *p = NULL;
    cnnelm_error e = { "" };
    if (cnnelm_plugin_load_file(arg, &p, &e) != 0) {
        snprintf(r->message, sizeof r->message, "%.500s", e.msg);
        return;
    }
    r->ok = 1;
    snprintf(r->name, sizeof r->name, "%s", p->name);
    snprintf(r->description, sizeof r->description, "%s", p->ops->description ? p->ops->description : "");
    r->abi_major = p->ops->abi_major;
    r->abi_minor = p->ops->abi_minor;
    for (int op = 0; op < CNNELM_OP_COUNT; op++)
        if (has_op(p->ops, (cnnelm_op_id)op))
            r->ops |= 1u << op;
}

/* device_count, or device_info of one device (index >= 0). */
typedef struct device_arg {
    const char *file;
    int index;
} device_arg;

typedef struct device_reply {
    int status;  /* a cnnelm_status, or -1: the plugin did not load */
    int count;
    cnnelm_device_info info;
    char message[512];
} device_reply;

static void child_device(void *arg, void *reply, size_t size)
{
    (void)size;
    const device_arg *a = arg;
    device_reply *r = reply;
    cnnelm_plugin *p = NULL;
    cnnelm_error e = { "" };
    r->status = -1;
    if (cnnelm_plugin_load_file(a->file, &p, &e) != 0) {
        snprintf(r->message, sizeof r->message, "%.500s", e.msg);
        return;
    }
    if (a->index < 0)
        r->status = p->ops->device_count(&r->count);
    else
        r->status = p->ops->device_info(a->index, &r->info);
    r->info.name[sizeof r->info.name - 1] = r->info.vendor[sizeof r->info.vendor - 1] = '\0';
}

/* One op case: the reference's results are in this process's memory (computed before the
 * fork), so the child judges its own run and sends back only the verdict. */
typedef struct op_arg {
    const char *file;
    int device;
    const check_case *cc;
    const case_layout *lay;
    const case_result *ref[2];  /* variant 0 and, for two threads, variant 1 */
} op_arg;

typedef struct op_reply {
    int status;    /* of the plugin's calls */
    int pass;
    double worst, seconds;
    char message[480];
} op_reply;

typedef struct race_thread {
    const op_arg *a;
    const cnnelm_backend *be;
    cnnelm_backend_ctx *ctx;
    pthread_barrier_t *start;
    int variant, pass;
    cnnelm_status status;
    double worst;
    char message[480];
} race_thread;

static void *race_main(void *arg)
{
    race_thread *t = arg;
    const op_arg *a = t->a;
    t->pass = 1;
    case_result got;
    if (result_alloc(&got, a->cc, a->lay) != 0) {
        t->status = CNNELM_ERR_OUT_OF_MEMORY;
        snprintf(t->message, sizeof t->message, "out of host memory");
    }
    char where[64];
    for (int round = 0; round < RACE_ROUNDS; round++) {
        pthread_barrier_wait(t->start); /* both threads call the op at the same moment */
        if (t->status != CNNELM_OK || !t->pass)
            continue;
        char changed[160];
        t->status = exec_case(t->be, t->ctx, a->cc, a->lay, t->variant, &got, NULL, changed, sizeof changed);
        if (t->status != CNNELM_OK) {
            snprintf(t->message, sizeof t->message, "%.400s", t->be->last_error(t->ctx));
            continue;
        }
        snprintf(where, sizeof where, " (thread %d, round %d of %d)", t->variant + 1, round + 1, RACE_ROUNDS);
        if (changed[0]) {
            snprintf(t->message, sizeof t->message, "%s%s", changed, where);
            t->pass = 0;
            t->worst = INFINITY;
            continue;
        }
        double w = 0;
        t->pass = judge(a->cc, a->lay, a->ref[t->variant], &got, where, &w, t->message, sizeof t->message);
        t->worst = fmax(t->worst, w);
    }
    result_free(&got);
    return NULL;
}

static void child_op(void *arg, void *reply, size_t size)
{
    (void)size;
    const op_arg *a = arg;
    op_reply *r = reply;
    cnnelm_plugin *p = NULL;
    cnnelm_error e = { "" };
    r->status = CNNELM_ERR_INTERNAL;
    if (cnnelm_plugin_load_file(a->file, &p, &e) != 0) {
        snprintf(r->message, sizeof r->message, "%.470s", e.msg);
        return;
    }
    cnnelm_backend_ctx *ctx[2] = { 0 };
    cnnelm_context_params params = { .struct_size = sizeof params, .threads = 0 };
    int nctx = a->cc->threads > 1 ? 2 : 1;
    for (int t = 0; t < nctx; t++) {
        char why[256] = "";
        cnnelm_status st = p->ops->context_open(a->device, &params, &ctx[t], why, sizeof why);
        if (st != CNNELM_OK) {
            r->status = st;
            snprintf(r->message, sizeof r->message, "context_open%s: %.400s", t ? " (a second context)" : "", why);
            return; /* the process ends: no cleanup needed */
        }
    }
    if (nctx == 1) {
        case_result got;
        if (result_alloc(&got, a->cc, a->lay) != 0) {
            snprintf(r->message, sizeof r->message, "out of host memory");
            return;
        }
        char changed[160];
        r->status = exec_case(p->ops, ctx[0], a->cc, a->lay, 0, &got, &r->seconds, changed, sizeof changed);
        if (r->status != CNNELM_OK)
            snprintf(r->message, sizeof r->message, "%.470s", p->ops->last_error(ctx[0]));
        else
            r->pass = judge(a->cc, a->lay, a->ref[0], &got, "", &r->worst, r->message, sizeof r->message);
        if (r->status == CNNELM_OK && r->pass && changed[0]) {
            snprintf(r->message, sizeof r->message, "%s", changed);
            r->pass = 0;
            r->worst = INFINITY;
        }
        result_free(&got);
    } else {
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, 2);
        race_thread t[2];
        pthread_t tid[2];
        for (int i = 0; i < 2; i++)
            t[i] = (race_thread){ .a = a, .be = p->ops, .ctx = ctx[i], .start = &start, .variant = i };
        if (pthread_create(&tid[1], NULL, race_main, &t[1]) != 0) {
            snprintf(r->message, sizeof r->message, "cannot start a second thread");
            return;
        }
        race_main(&t[0]);
        pthread_join(tid[1], NULL);
        r->status = t[0].status != CNNELM_OK ? t[0].status : t[1].status;
        r->pass = t[0].pass && t[1].pass;
        r->worst = fmax(t[0].worst, t[1].worst);
        const race_thread *bad = t[0].status != CNNELM_OK || !t[0].pass ? &t[0] : &t[1];
        snprintf(r->message, sizeof r->message, "%s", bad->message);
    }
    for (int i = 0; i < nctx; i++)
        p->ops->context_close(ctx[i]);
    cnnelm_plugin_unload(p);
}

/* The end-to-end check: a short training (ELM fit and one fine-tuning iteration of
 * 6c-2s-12c-2s on 300 random 28x28 images) on a backend, ops it lacks running on `reference`;
 * writes the predictions for the 300 images to `pred`. Returns 0 or -1 with err. */
enum { E2E_N = 300 };
static int train_small(const cnnelm_plugin *p, int device, const cnnelm_plugin *reference, int *pred,
                       cnnelm_error *err)
{
    static uint8_t images[E2E_N * 28 * 28], labels[E2E_N];
    cnnelm_rng r;
    cnnelm_rng_seed(&r, 7, 99);
    for (size_t i = 0; i < sizeof images; i++)
        images[i] = (uint8_t)cnnelm_rng_below(&r, 256);
    for (int i = 0; i < E2E_N; i++)
        labels[i] = (uint8_t)(i % 10);
    cnnelm_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.images = images;
    ds.labels = labels;
    ds.n = E2E_N;
    ds.rows = ds.cols = 28;
    ds.classes = 10;
    const char *sets[] = { "train.iterations=1", "train.batch=100", "train.chunk=100",
                           "train.learning_rate=0.05" };
    cnnelm_config cfg;
    cnnelm_arch a;
    cnnelm_model m;
    cnnelm_net net;
    memset(&m, 0, sizeof m);
    if (cnnelm_config_load(&cfg, NULL, sets, 4, err))
        return -1;
    int rc = -1;
    if (cnnelm_arch_init(&a, "6c-2s-12c-2s", 5, 1, 28, 28, 10, CNNELM_ACT_RELU, CNNELM_POOL_MEAN,
                         CNNELM_ACT_IDENTITY, err) ||
        cnnelm_model_init(&m, &a, 100, 1, 1, err) ||
        cnnelm_net_open(&net, p, device, 0, &a, 100, reference, err))
        goto out;
    cnnelm_progress prog;
    cnnelm_progress_init(&prog, 1);
    cnnelm_subset all = { &ds, NULL, E2E_N }, none = { &ds, NULL, 0 };
    cnnelm_train_log log;
    float Y[100 * 10];
    rc = cnnelm_train_model(&net, &m, &all, &none, &cfg, &prog, &log, err);
    cnnelm_train_log_free(&log);
    for (int i = 0; i < E2E_N && rc == 0; i += 100) {
        rc = cnnelm_net_forward(&net, &ds, NULL, (size_t)i, 100, err) || cnnelm_net_predict(&net, Y, err);
        for (int j = 0; j < 100 && rc == 0; j++)
            pred[i + j] = cnnelm_argmax(Y + j * 10, 10);
    }
    cnnelm_progress_destroy(&prog);
    cnnelm_net_close(&net);
out:
    cnnelm_model_free(&m);
    cnnelm_config_free(&cfg);
    return rc ? -1 : 0;
}

typedef struct e2e_arg {
    const char *file;
    int device;
    const cnnelm_plugin *ref;
} e2e_arg;

typedef struct e2e_reply {
    int status;
    char message[256];
    int pred[E2E_N];
} e2e_reply;

static void child_e2e(void *arg, void *reply, size_t size)
{
    (void)size;
    const e2e_arg *a = arg;
    e2e_reply *r = reply;
    cnnelm_plugin *p = NULL;
    cnnelm_error e = { "" };
    if (cnnelm_plugin_load_file(a->file, &p, &e) != 0 || train_small(p, a->device, a->ref, r->pred, &e) != 0) {
        r->status = 1;
        snprintf(r->message, sizeof r->message, "%.250s", e.msg);
    }
}

/* ---- the cases ---- */

static void add(check_case *cases, int *n, cnnelm_op_call call, double tol, int calls, int threads,
                const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void add(check_case *cases, int *n, cnnelm_op_call call, double tol, int calls, int threads,
                const char *fmt, ...)
{
    if (*n >= MAX_CASES)
        return;
    check_case *c = &cases[(*n)++];
    c->call = call;
    c->tol = tol;
    c->calls = calls;
    c->threads = threads;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->shape, sizeof c->shape, fmt, ap);
    va_end(ap);
    if (threads > 1) {
        size_t len = strlen(c->shape);
        snprintf(c->shape + len, sizeof c->shape - len, ", 2 threads");
    }
}

static const char *act_name(cnnelm_activation a)
{
    return a == CNNELM_ACT_RELU ? "relu" : a == CNNELM_ACT_OPTTANH ? "opttanh" : "identity";
}

/* Every op's cases, grouped by op: odd and even sizes, n = 1 and partial chunks (17, 37: not a
 * multiple of any block size), kernels 1..7, several channel counts, every pooling mode with
 * s = 1..4, every activation; accumulating calls three times; one case per op on two threads. */
static int build_cases(check_case *cases)
{
    int n = 0;
    static const cnnelm_conv_shape convs[] = {
        { 16, 1, 28, 28, 6, 5 }, { 16, 6, 12, 12, 12, 5 }, { 1, 1, 7, 7, 1, 1 }, { 3, 2, 9, 7, 3, 3 },
        { 5, 3, 8, 10, 4, 2 },   { 2, 4, 11, 9, 2, 4 },    { 7, 2, 13, 12, 5, 6 }, { 17, 3, 14, 15, 3, 7 },
    };
    enum { NCONV = sizeof convs / sizeof convs[0] };
    static const cnnelm_activation acts[3] = { CNNELM_ACT_RELU, CNNELM_ACT_OPTTANH, CNNELM_ACT_IDENTITY };
    char d[NCONV][48];
    for (int i = 0; i < NCONV; i++) {
        const cnnelm_conv_shape *s = &convs[i];
        snprintf(d[i], sizeof d[i], "n%d %d->%d %dx%d k%d", s->n, s->c_in, s->c_out, s->h, s->w, s->k);
    }
    for (int i = 0; i < NCONV; i++)
        add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_CONV_FORWARD, .conv = convs[i], .act = acts[i % 3] },
            1e-3, 1, 1, "%s %s", d[i], act_name(acts[i % 3]));
    for (int a = 1; a < 3; a++) /* the small odd shape with every activation */
        add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_CONV_FORWARD, .conv = convs[3], .act = acts[(3 + a) % 3] },
            1e-3, 1, 1, "%s %s", d[3], act_name(acts[(3 + a) % 3]));
    add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_CONV_FORWARD, .conv = convs[0], .act = CNNELM_ACT_RELU },
        1e-3, 1, 2, "%s relu", d[0]);
    for (int i = 0; i < NCONV; i++)
        add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_CONV_BACKWARD_DATA, .conv = convs[i] }, 1e-3, 1, 1, "%s", d[i]);
    add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_CONV_BACKWARD_DATA, .conv = convs[1] }, 1e-3, 1, 2, "%s", d[1]);
    for (int i = 0; i < NCONV; i++)
        add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_CONV_BACKWARD_FILTER, .conv = convs[i] }, 1e-3, 1, 1, "%s", d[i]);
    for (int i = 1; i < 4; i += 2)
        add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_CONV_BACKWARD_FILTER, .conv = convs[i], .accumulate = 1 },
            1e-3, MAX_CALLS, 1, "%s accumulate x%d", d[i], MAX_CALLS);
    add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_CONV_BACKWARD_FILTER, .conv = convs[1], .accumulate = 1 },
        1e-3, MAX_CALLS, 2, "%s accumulate x%d", d[1], MAX_CALLS);

    static const cnnelm_pool_shape pools[] = {
        { 2, 3, 5, 7, 1 }, { 16, 6, 24, 24, 2 }, { 1, 2, 6, 10, 2 }, { 3, 2, 9, 9, 3 }, { 5, 3, 8, 12, 4 },
    };
    static const cnnelm_pooling modes[2] = { CNNELM_POOL_MEAN, CNNELM_POOL_MAX };
    for (int op = CNNELM_OP_POOL_FORWARD; op <= CNNELM_OP_POOL_BACKWARD; op++) {
        for (int m = 0; m < 2; m++)
            for (size_t i = 0; i < sizeof pools / sizeof pools[0]; i++) {
                const cnnelm_pool_shape *s = &pools[i];
                add(cases, &n, (cnnelm_op_call){ .op = (cnnelm_op_id)op, .pool = *s, .mode = modes[m] }, 1e-4, 1, 1,
                    "n%d c%d %dx%d s%d %s", s->n, s->c, s->h, s->w, s->s, m ? "max" : "mean");
            }
        add(cases, &n, (cnnelm_op_call){ .op = (cnnelm_op_id)op, .pool = pools[1], .mode = CNNELM_POOL_MEAN }, 1e-4,
            1, 2, "n16 c6 24x24 s2 mean");
    }

    static const size_t counts[] = { 1, 1001, 4096 };
    for (int op = CNNELM_OP_ACT_FORWARD; op <= CNNELM_OP_ACT_BACKWARD; op++) {
        for (int a = 0; a < 3; a++)
            for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
                add(cases, &n, (cnnelm_op_call){ .op = (cnnelm_op_id)op, .act = acts[a], .count = counts[i] }, 1e-4, 1,
                    1, "%zu %s", counts[i], act_name(acts[a]));
        add(cases, &n, (cnnelm_op_call){ .op = (cnnelm_op_id)op, .act = CNNELM_ACT_OPTTANH, .count = 4096 }, 1e-4, 1,
            2, "4096 opttanh");
    }

    static const int elm[][3] = { { 64, 192, 10 }, { 1, 13, 3 }, { 37, 50, 10 } };
    for (int op = CNNELM_OP_ELM_ACCUMULATE; op <= CNNELM_OP_ELM_BACKPROP; op++) {
        int calls = op == CNNELM_OP_ELM_ACCUMULATE ? MAX_CALLS : 1;
        for (int i = 0; i < 3; i++)
            add(cases, &n, (cnnelm_op_call){ .op = (cnnelm_op_id)op, .n = elm[i][0], .l = elm[i][1], .c = elm[i][2] },
                1e-3, calls, 1, "n%d l%d c%d%s", elm[i][0], elm[i][1], elm[i][2], calls > 1 ? " x3" : "");
        add(cases, &n, (cnnelm_op_call){ .op = (cnnelm_op_id)op, .n = 64, .l = 192, .c = 10 }, 1e-3, calls, 2,
            "n64 l192 c10%s", calls > 1 ? " x3" : "");
    }
    static const int solves[][2] = { { 192, 10 }, { 13, 3 }, { 50, 10 } };
    for (int i = 0; i < 3; i++)
        add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_ELM_SOLVE, .l = solves[i][0], .c = solves[i][1], .lambda = 100 },
            1e-3, 1, 1, "l%d c%d lambda 100", solves[i][0], solves[i][1]);
    add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_ELM_SOLVE, .l = 50, .c = 10, .lambda = 100 }, 1e-3, 1, 2,
        "l50 c10 lambda 100");
    return n;
}

/* ---- the report ---- */

typedef struct tally {
    int passed, failed;
    char failures[1024];       /* "op (why); ..." for the last line, one entry per op */
    uint32_t failed_ops;
    double slowest_s;
    char slowest[160];
} tally;

static void note_result(tally *t, const char *what, const char *shape, int ok, const char *why, double seconds,
                        int op)
{
    if (ok)
        t->passed++;
    else
        t->failed++;
    if (!ok && (op < 0 || !(t->failed_ops >> op & 1u))) {
        if (op >= 0)
            t->failed_ops |= 1u << op;
        size_t len = strlen(t->failures);
        snprintf(t->failures + len, sizeof t->failures - len, "%s%s%s%.60s (%.120s)", len ? "; " : "", what,
                 shape[0] ? " " : "", shape, why);
    }
    if (seconds > t->slowest_s) {
        t->slowest_s = seconds;
        snprintf(t->slowest, sizeof t->slowest, "%s %.100s", what, shape);
    }
}

static void row(FILE *out, const char *what, const char *shape, const char *result)
{
    fprintf(out, "  %-24s %-34s %12s %9s %11s  %s\n", what, shape, "-", "-", "-", result);
    fflush(out);
}

static void finish(FILE *out, const tally *t)
{
    if (t->slowest[0])
        fprintf(out, "  slowest case: %s, %.2f s\n", t->slowest, t->slowest_s);
    fprintf(out, "plugin-check: %d passed, %d failed%s%s\n", t->passed, t->failed, t->failed ? ": " : "",
            t->failed ? t->failures : "");
}

/* Loading, the entry, device_count and device_info of every device, each in a child.
 * Returns 0 when the plugin loaded (*lr filled), -1 when nothing more can be checked. */
static int check_loading(const char *file, double timeout, FILE *out, tally *t, load_reply *lr)
{
    char why[256];
    double secs = 0;
    memset(lr, 0, sizeof *lr);
    if (cnnelm_child_run(child_load, (void *)file, lr, sizeof *lr, timeout, &secs, why, sizeof why) != 0) {
        char res[400];
        snprintf(res, sizeof res, "CRASH: loading it (its entry function) %s", why);
        row(out, "load", "", res);
        note_result(t, "load", "", 0, why, secs, -1);
        return -1;
    }
    if (!lr->ok) {
        char res[600];
        snprintf(res, sizeof res, "FAIL: %s", lr->message);
        row(out, "load", "", res);
        note_result(t, "load", "", 0, lr->message, secs, -1);
        return -1;
    }
    fprintf(out, "  plugin '%s' (ABI %u.%u): %s\n", lr->name, lr->abi_major, lr->abi_minor, lr->description);
    row(out, "load", "entry, table", "PASS");
    note_result(t, "load", "", 1, "", secs, -1);
    device_arg da = { file, -1 };
    device_reply dr;
    int count = 0;
    if (cnnelm_child_run(child_device, &da, &dr, sizeof dr, timeout, &secs, why, sizeof why) != 0) {
        char res[400];
        snprintf(res, sizeof res, "CRASH: %s", why);
        row(out, "device_count", "", res);
        note_result(t, "device_count", "", 0, why, secs, -1);
    } else if (dr.status != CNNELM_OK || dr.count < 0 || dr.count > 4096) {
        char res[600];
        snprintf(res, sizeof res, "FAIL: %s", dr.status == -1 ? dr.message
                 : dr.status != CNNELM_OK ? cnnelm_status_name((cnnelm_status)dr.status) : "an impossible count");
        row(out, "device_count", "", res);
        note_result(t, "device_count", "", 0, res + 6, secs, -1);
    } else {
        char res[64];
        snprintf(res, sizeof res, "PASS: %d device%s", dr.count, dr.count == 1 ? "" : "s");
        row(out, "device_count", "", res);
        note_result(t, "device_count", "", 1, "", secs, -1);
        count = dr.count;
    }
    for (int i = 0; i < count && i < 64; i++) {
        char shape[32], res[600];
        snprintf(shape, sizeof shape, "device %d", i);
        da.index = i;
        int ok = 0;
        if (cnnelm_child_run(child_device, &da, &dr, sizeof dr, timeout, &secs, why, sizeof why) != 0)
            snprintf(res, sizeof res, "CRASH: %s", why);
        else if (dr.status != CNNELM_OK)
            snprintf(res, sizeof res, "FAIL: %s", dr.status == -1 ? dr.message : cnnelm_status_name((cnnelm_status)dr.status));
        else if (!dr.info.name[0])
            snprintf(res, sizeof res, "FAIL: no device name");
        else {
            snprintf(res, sizeof res, "PASS: %.120s", dr.info.name);
            ok = 1;
        }
        row(out, "device_info", shape, res);
        note_result(t, "device_info", shape, ok, strchr(res, ' ') + 1, secs, -1);
    }
    return 0;
}

/* The end-to-end training in a child, compared with the reference's predictions. */
static void check_end_to_end(const char *file, int device, const cnnelm_plugin *ref, double timeout, FILE *out,
                             tally *t)
{
    static int want[E2E_N];
    static e2e_reply r;
    cnnelm_error e = { "" };
    const char *name = "end-to-end training";
    const char *shape = "6c-2s-12c-2s, 300 images";
    if (train_small(ref, 0, NULL, want, &e) != 0) {
        char res[400];
        snprintf(res, sizeof res, "SKIP: the reference failed: %.300s", e.msg);
        row(out, name, shape, res);
        return;
    }
    e2e_arg a = { file, device, ref };
    char why[256];
    double secs = 0;
    if (cnnelm_child_run(child_e2e, &a, &r, sizeof r, timeout, &secs, why, sizeof why) != 0) {
        char res[300];
        snprintf(res, sizeof res, "CRASH: %s", why);
        row(out, name, shape, res);
        note_result(t, name, shape, 0, why, secs, -1);
        return;
    }
    if (r.status != 0) {
        char res[300];
        snprintf(res, sizeof res, "FAIL: %s", r.message);
        row(out, name, shape, res);
        note_result(t, name, shape, 0, r.message, secs, -1);
        return;
    }
    int same = 0;
    for (int i = 0; i < E2E_N; i++)
        same += want[i] == r.pred[i];
    int ok = same * 100 >= E2E_N * 97;
    char agree[32];
    snprintf(agree, sizeof agree, "%d/%d same", same, E2E_N);
    fprintf(out, "  %-24s %-34s %12s %9s %11s  %s\n", name, shape, agree, ">= 97%", "-",
            ok ? "PASS" : "FAIL: predictions differ from the reference's");
    note_result(t, name, shape, ok, "predictions differ from the reference's", secs, -1);
}

int cnnelm_plugin_check_run(const char *plugin_file, const cnnelm_plugin_check_options *opts, FILE *out,
                            cnnelm_error *err)
{
    double timeout = opts && opts->timeout_s > 0 ? opts->timeout_s : DEFAULT_TIMEOUT_S;
    int device = opts ? opts->device : 0, verbose = opts ? opts->verbose : 0;
    cnnelm_plugin *ref = NULL;
    if (cnnelm_plugin_load("cpu", NULL, &ref, err) != 0)
        return cnnelm_fail_prefix(err, "plugin-check needs the CPU reference");
    fprintf(out, "plugin-check: %s, device %d, against %s, %g s per case\n", plugin_file, device, ref->path,
            timeout);
    tally t;
    memset(&t, 0, sizeof t);
    load_reply lr;
    if (check_loading(plugin_file, timeout, out, &t, &lr) != 0) {
        finish(out, &t);
        cnnelm_plugin_unload(ref);
        return 1;
    }
    cnnelm_backend_ctx *rctx = NULL;
    cnnelm_context_params params = { .struct_size = sizeof params, .threads = 1 };
    char why[256] = "";
    if (ref->ops->context_open(0, &params, &rctx, why, sizeof why) != CNNELM_OK) {
        cnnelm_plugin_unload(ref);
        return cnnelm_fail(err, "cannot open the CPU reference: %s", why);
    }
    static check_case cases[MAX_CASES];
    int n = build_cases(cases);
    fprintf(out, "  %-24s %-34s %12s %9s %11s  %s\n", "op", "shape", "max rel err", "tolerance", "speed/ref",
            "result");
    fflush(out);
    uint32_t timed_out = 0;
    for (int ci = 0; ci < n; ci++) {
        const check_case *cc = &cases[ci];
        const char *name = cnnelm_op_name(cc->call.op);
        if (!(lr.ops >> cc->call.op & 1u)) {
            row(out, name, cc->shape, "not implemented: runs on the CPU reference");
            continue;
        }
        if (timed_out >> cc->call.op & 1u) {
            row(out, name, cc->shape, "SKIP: an earlier case of this op timed out");
            continue;
        }
        case_layout lay;
        layout_of(&cc->call, &lay);
        case_result refres[2];
        memset(refres, 0, sizeof refres);
        double ref_s = 0;
        cnnelm_status rst = CNNELM_OK;
        for (int v = 0; v < cc->threads && rst == CNNELM_OK; v++) {
            rst = result_alloc(&refres[v], cc, &lay) ? CNNELM_ERR_OUT_OF_MEMORY : CNNELM_OK;
            if (rst == CNNELM_OK)
                rst = exec_case(ref->ops, rctx, cc, &lay, v, &refres[v], v == 0 ? &ref_s : NULL, NULL, 0);
        }
        char result[600] = "";
        double worst = NAN, speed = NAN, secs = 0;
        int ok = 0;
        if (rst != CNNELM_OK) {
            snprintf(result, sizeof result, "SKIP: the reference failed: %.200s", ref->ops->last_error(rctx));
            ok = 2;
        } else {
            op_arg a = { plugin_file, device, cc, &lay, { &refres[0], &refres[1] } };
            op_reply r;
            double limit = cc->threads > 1 ? timeout * RACE_ROUNDS : timeout;
            if (cnnelm_child_run(child_op, &a, &r, sizeof r, limit, &secs, why, sizeof why) != 0) {
                snprintf(result, sizeof result, "CRASH: %s", why);
                if (strstr(why, "timed out"))
                    timed_out |= 1u << cc->call.op;
            } else if (r.status == CNNELM_ERR_UNSUPPORTED) {
                snprintf(result, sizeof result, "unsupported for this shape: runs on the CPU reference");
                ok = 2;
            } else if (r.status != CNNELM_OK) {
                snprintf(result, sizeof result, "FAIL: %s: %.400s", cnnelm_status_name((cnnelm_status)r.status),
                         r.message);
            } else {
                worst = r.worst;
                speed = r.seconds > 0 ? ref_s / r.seconds : NAN;
                ok = r.pass;
                snprintf(result, sizeof result, ok ? "PASS" : "FAIL: %.560s", r.message);
            }
        }
        char errs[32] = "-", speeds[32] = "-";
        if (!isnan(worst))
            snprintf(errs, sizeof errs, "%.2e", worst);
        if (!isnan(speed))
            snprintf(speeds, sizeof speeds, "%.2fx", speed);
        if (ok != 2)
            note_result(&t, name, cc->shape, ok, strchr(result, ' ') ? strchr(result, ' ') + 1 : result, secs,
                        cc->call.op);
        fprintf(out, "  %-24s %-34s %12s %9.0e %11s  %s\n", name, cc->shape, errs, cc->tol, speeds, result);
        if (verbose && !isnan(speed))
            fprintf(out, "  %-24s %-34s reference %.3f ms per call\n", "", "", 1e3 * ref_s);
        fflush(out);
        result_free(&refres[0]);
        result_free(&refres[1]);
    }
    if (timed_out)
        row(out, "end-to-end training", "6c-2s-12c-2s, 300 images", "SKIP: an op timed out");
    else
        check_end_to_end(plugin_file, device, ref, 10 * timeout, out, &t);
    ref->ops->context_close(rctx);
    cnnelm_plugin_unload(ref);
    finish(out, &t);
    return t.failed ? 1 : 0;
}

int cnnelm_plugin_check(const char *plugin_file, int device, int verbose, FILE *out, cnnelm_error *err)
{
    cnnelm_plugin_check_options o = { .device = device, .verbose = verbose, .timeout_s = DEFAULT_TIMEOUT_S };
    return cnnelm_plugin_check_run(plugin_file, &o, out, err);
}
