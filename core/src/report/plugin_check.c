/* cnnelm plugin-check: every op of a plugin against the CPU reference on random inputs, then a
 * short end-to-end training; loading, the entry and the device queries too. Each case runs in a
 * forked child with a time limit so that a crash or a hang becomes a row of the report (see
 * plugin_check.h for what is checked and the tolerances). The plugin's code never runs in this
 * process: runtimes such as OpenCL's do not survive fork, so each child starts its own. */
#define _GNU_SOURCE
#include "cnnelm/plugin_check.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "base/child.h"
#include "cnnelm/config.h"
#include "cnnelm/metrics.h"
#include "cnnelm/plugin.h"
#include "model/network.h"
#include "model/ops.h"
#include "base/rng.h"
#include "training/train.h"

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

/* An op's buffer arguments: sizes, which it reads and writes, names for messages, all from
 * the op table (backend_ops.h through cnnelm_op_describe and cnnelm_op_layout). */
typedef struct case_layout {
    int nb;
    size_t bytes[6];
    unsigned in, out;
    const char *names[6];
} case_layout;

static void layout_of(const cnnelm_op_call *call, case_layout *lay)
{
    memset(lay, 0, sizeof *lay);
    lay->nb = cnnelm_op_layout(call, lay->bytes, &lay->in, &lay->out);
    const cnnelm_op_desc *d = cnnelm_op_describe(call->op);
    for (int i = 0; i < 6; i++)
        lay->names[i] = "?";
    for (int i = 0; d && i < d->n_buffers && i < CNNELM_OP_MAX_BUFFERS; i++)
        lay->names[i] = d->buf[i].name;
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

/* Is the op's slot filled in the plugin's table? (its offset from the op table) */
static int has_op(const cnnelm_backend *be, cnnelm_op_id op)
{
    const cnnelm_op_desc *d = cnnelm_op_describe(op);
    void *slot = NULL;
    if (d)
        memcpy(&slot, (const char *)be + d->slot, sizeof slot);
    return slot != NULL;
}

/* The 1.1 plugin-level slots the checker exercises where a plugin has them. */
#define V11_SLOTS(X)                                                                         \
    X(init) X(shutdown) X(device_count_v11) X(device_info_v11) X(device_limits)              \
    X(context_open_v11) X(supports) X(buffer_write_async) X(buffer_read_async) X(synchronize) \
    X(buffer_copy) X(buffer_fill)
enum {
#define V11_ENUM_(f) V11_##f,
    V11_SLOTS(V11_ENUM_)
#undef V11_ENUM_
};
#define HAS_V11(lr, f) ((lr)->v11 >> V11_##f & 1u)

/* Loading: dlopen, the entry, the table's checks, init() and shutdown(); what the parent needs
 * to know of the table. In memory shared with the parent, so that a crash still says which
 * stage it was in ("entry", "init", "shutdown", "done"). */
typedef struct load_reply {
    const char *file;
    char stage[16];
    int ok;
    char message[512];
    char name[64], description[256];
    unsigned abi_major, abi_minor;
    uint32_t ops;  /* bit per cnnelm_op_id: slot filled */
    uint32_t v11;  /* bit per V11_*: slot filled */
} load_reply;

static void child_load(void *arg, void *reply, size_t size)
{
    (void)reply;
    (void)size;
    load_reply *r = arg;
    cnnelm_plugin *p = NULL;
    cnnelm_error e = { "" };
    snprintf(r->stage, sizeof r->stage, "entry");
    if (cnnelm_child_table_with_init(r->file)) /* the entry ran: what follows is init() */
        snprintf(r->stage, sizeof r->stage, "init");
    if (cnnelm_plugin_load_file(r->file, &p, &e) != 0) {
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
#define V11_BIT_(f) if (CNNELM_BACKEND_HAS(p->ops, f)) r->v11 |= 1u << V11_##f;
    V11_SLOTS(V11_BIT_)
#undef V11_BIT_
    snprintf(r->stage, sizeof r->stage, "shutdown");
    cnnelm_plugin_unload(p); /* shutdown(), then dlclose */
    snprintf(r->stage, sizeof r->stage, "done");
}

/* device_count (index < 0), device_info or device_limits (limits != 0) of one device, through
 * the 1.1 slots with the plugin's state where the plugin has them. */
typedef struct device_arg {
    const char *file;
    int index, limits;
} device_arg;

typedef struct device_reply {
    int status;  /* a cnnelm_status, or -1: the plugin did not load */
    int count;
    cnnelm_device_info info;
    cnnelm_device_limits lim;
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
    if (a->index < 0) {
        r->status = cnnelm_plugin_device_count(p, &r->count, r->message, sizeof r->message);
    } else if (a->limits) {
        r->lim.struct_size = sizeof r->lim;
        r->status = p->ops->device_limits(p->state, a->index, &r->lim);
    } else {
        r->status = cnnelm_plugin_device_info(p, a->index, &r->info);
    }
    r->message[sizeof r->message - 1] = '\0';
    r->info.name[sizeof r->info.name - 1] = r->info.vendor[sizeof r->info.vendor - 1] = '\0';
    /* no unload: shutdown() is checked once, in the loading child */
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
    int supports;  /* supports()'s answer when not CNNELM_OK: the op was not run */
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
    int nctx = a->cc->threads > 1 ? 2 : 1;
    for (int t = 0; t < nctx; t++) {
        char why[256] = "";
        cnnelm_status st = cnnelm_plugin_context_open(p, a->device, 0, &ctx[t], why, sizeof why);
        if (st != CNNELM_OK) {
            r->status = st;
            snprintf(r->message, sizeof r->message, "%s%s: %.400s",
                     CNNELM_BACKEND_HAS(p->ops, context_open_v11) ? "context_open_v11" : "context_open",
                     t ? " (a second context)" : "", why);
            return; /* the process ends: no cleanup needed */
        }
    }
    if (CNNELM_BACKEND_HAS(p->ops, supports)) { /* asked once, as a network does */
        cnnelm_op_params op;
        cnnelm_op_params_of(&a->cc->call, &op);
        cnnelm_status st = p->ops->supports(ctx[0], &op);
        if (st != CNNELM_OK) {
            r->supports = st;
            return; /* training runs it on the reference: nothing to compare */
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
    /* no unload: shutdown() is checked once, in the loading child */
}

/* ---- the 1.1 transfer slots ---- */

/* buffer_fill, buffer_copy and the asynchronous write and read with synchronize, each compared
 * with the plain buffer_write / buffer_read on random data, with a guard tail past the range
 * like the op cases. */
typedef enum xfer_kind { XFER_FILL, XFER_COPY, XFER_WRITE_ASYNC, XFER_READ_ASYNC } xfer_kind;
static const char *const xfer_slot[] = { "buffer_fill", "buffer_copy", "buffer_write_async",
                                         "buffer_read_async" };

typedef struct xfer_arg {
    const char *file;
    int device;
    xfer_kind kind;
    size_t n;  /* floats of the tensor; the buffer has GUARD_FLOATS more */
} xfer_arg;

typedef struct xfer_reply {
    int status;  /* of the plugin's calls */
    int pass;
    char message[480];
} xfer_reply;

/* Compares got with want over [0, n + GUARD_FLOATS); the range [lo, hi) is what the call
 * wrote. Names the first kind of difference: outside the range, then inside it. */
static int xfer_judge(const float *got, const float *want, size_t n, size_t lo, size_t hi, const char *what,
                      char *why, size_t why_size)
{
    size_t outside = 0, inside = 0, at = 0;
    for (size_t j = 0; j < n + GUARD_FLOATS; j++)
        if (bits_of(got[j]) != bits_of(want[j])) {
            if (j < lo || j >= hi)
                outside++;
            else if (!inside++)
                at = j;
        }
    if (outside)
        snprintf(why, why_size, "%s: changed %zu float%s outside the %zu floats at float %zu it was given", what,
                 outside, outside == 1 ? "" : "s", hi - lo, lo);
    else if (inside && bits_of(got[at]) == SENTINEL_BITS)
        snprintf(why, why_size, "%s: %zu of %zu floats wrong, first at float %zu (never written, expected %g)",
                 what, inside, hi - lo, at, (double)want[at]);
    else if (inside)
        snprintf(why, why_size, "%s: %zu of %zu floats wrong, first at float %zu (%g, expected %g)", what, inside,
                 hi - lo, at, (double)got[at], (double)want[at]);
    return !outside && !inside;
}

static void child_xfer(void *arg, void *reply, size_t size)
{
    (void)size;
    const xfer_arg *a = arg;
    xfer_reply *r = reply;
    cnnelm_plugin *p = NULL;
    cnnelm_error e = { "" };
    r->status = CNNELM_ERR_INTERNAL;
    if (cnnelm_plugin_load_file(a->file, &p, &e) != 0) {
        snprintf(r->message, sizeof r->message, "%.470s", e.msg);
        return;
    }
    const cnnelm_backend *be = p->ops;
    cnnelm_backend_ctx *ctx = NULL;
    char why[256] = "";
    cnnelm_status st = cnnelm_plugin_context_open(p, a->device, 0, &ctx, why, sizeof why);
    if (st != CNNELM_OK) {
        r->status = st;
        snprintf(r->message, sizeof r->message, "context_open: %.400s", why);
        return;
    }
    size_t n = a->n, total = n + GUARD_FLOATS, bytes = total * sizeof(float);
    size_t off = n > 4 ? 3 : 0; /* an offset that is not a multiple of anything */
    float *data = malloc(bytes), *other = malloc(bytes), *got = malloc(bytes), *want = malloc(bytes);
    cnnelm_buffer *b = NULL, *src = NULL;
    if (!data || !other || !got || !want) {
        snprintf(r->message, sizeof r->message, "out of host memory");
        return;
    }
    cnnelm_rng rng;
    cnnelm_rng_seed(&rng, 20261201, (uint64_t)a->kind * 1000 + n);
    for (size_t j = 0; j < total; j++) {
        data[j] = (float)(2 * cnnelm_rng_uniform(&rng) - 1);
        other[j] = j < n ? from_bits(SENTINEL_BITS) : from_bits(GUARD_BITS);
    }
    for (size_t j = n; j < total; j++)
        data[j] = from_bits(GUARD_BITS);
    st = be->buffer_alloc(ctx, bytes, &b);
    if (st == CNNELM_OK && a->kind == XFER_COPY)
        st = be->buffer_alloc(ctx, bytes, &src);
    r->pass = 1;
    switch (a->kind) {
    case XFER_FILL: /* the middle, then all of it with zeros (how U and V start) */
        if (st == CNNELM_OK)
            st = be->buffer_write(ctx, b, 0, data, bytes);
        for (int round = 0; round < 2 && st == CNNELM_OK && r->pass; round++) {
            float value = round ? 0.0f : 0.75f;
            size_t lo = round ? 0 : off;
            st = be->buffer_fill(ctx, b, lo * sizeof(float), (n - lo) * sizeof(float), value);
            if (st == CNNELM_OK)
                st = be->buffer_read(ctx, b, 0, got, bytes);
            if (round == 0)
                memcpy(want, data, bytes);
            for (size_t j = lo; j < n; j++)
                want[j] = value;
            char w[64];
            snprintf(w, sizeof w, "with %g", (double)value);
            if (st == CNNELM_OK)
                r->pass = xfer_judge(got, want, n, lo, n, w, r->message, sizeof r->message);
        }
        break;
    case XFER_COPY: /* src + 1 float -> dst + off, n - off floats, dst pre-filled with the sentinel */
        if (st == CNNELM_OK)
            st = be->buffer_write(ctx, src, 0, data, bytes);
        if (st == CNNELM_OK)
            st = be->buffer_write(ctx, b, 0, other, bytes);
        if (st == CNNELM_OK)
            st = be->buffer_copy(ctx, b, off * sizeof(float), src, (n > 4 ? 1 : 0) * sizeof(float),
                                 (n - off) * sizeof(float));
        if (st == CNNELM_OK)
            st = be->buffer_read(ctx, b, 0, got, bytes);
        memcpy(want, other, bytes);
        memcpy(want + off, data + (n > 4 ? 1 : 0), (n - off) * sizeof(float));
        if (st == CNNELM_OK)
            r->pass = xfer_judge(got, want, n, off, n, "the copy", r->message, sizeof r->message);
        if (st == CNNELM_OK && r->pass)
            st = be->buffer_read(ctx, src, 0, got, bytes);
        if (st == CNNELM_OK && r->pass)
            r->pass = xfer_judge(got, data, n, 0, 0, "its source", r->message, sizeof r->message);
        break;
    case XFER_WRITE_ASYNC: /* then the host copy changes: the device must keep what was sent */
        if (st == CNNELM_OK)
            st = be->buffer_write(ctx, b, 0, other, bytes);
        memcpy(want, other, bytes);
        memcpy(want + off, data + off, (n - off) * sizeof(float));
        if (st == CNNELM_OK)
            st = be->buffer_write_async(ctx, b, off * sizeof(float), data + off, (n - off) * sizeof(float));
        if (st == CNNELM_OK)
            st = be->synchronize(ctx);
        for (size_t j = 0; j < total; j++)
            data[j] = -data[j];
        if (st == CNNELM_OK)
            st = be->buffer_read(ctx, b, 0, got, bytes);
        if (st == CNNELM_OK)
            r->pass = xfer_judge(got, want, n, off, n, "read back after synchronize", r->message,
                                 sizeof r->message);
        break;
    case XFER_READ_ASYNC: /* into a host block pre-filled with the sentinel */
        if (st == CNNELM_OK)
            st = be->buffer_write(ctx, b, 0, data, bytes);
        memcpy(got, other, bytes);
        memcpy(want, other, bytes);
        memcpy(want + off, data + off, (n - off) * sizeof(float));
        if (st == CNNELM_OK)
            st = be->buffer_read_async(ctx, b, off * sizeof(float), got + off, (n - off) * sizeof(float));
        if (st == CNNELM_OK)
            st = be->synchronize(ctx);
        if (st == CNNELM_OK)
            r->pass = xfer_judge(got, want, n, off, n, "on the host after synchronize", r->message,
                                 sizeof r->message);
        break;
    }
    r->status = st;
    if (st != CNNELM_OK)
        snprintf(r->message, sizeof r->message, "%.470s", be->last_error(ctx));
    /* no context_close or unload: the process ends, and shutdown() is checked once */
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
    cnnelm_train_params tp = cnnelm_train_params_from_config(&cfg);
    rc = cnnelm_train_model(&net, &m, &all, &none, &tp, &prog, &log, err);
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
    int listed = 0; /* a slot that is not an op: listed once too */
    size_t wl = strlen(what);
    for (const char *f = t->failures; op < 0 && (f = strstr(f, what)) != NULL; f += wl)
        listed |= (f == t->failures || (f >= t->failures + 2 && f[-2] == ';')) && f[wl] == ' ';
    if (!ok && !listed && (op < 0 || !(t->failed_ops >> op & 1u))) {
        if (op >= 0)
            t->failed_ops |= 1u << op;
        size_t len = strlen(t->failures);
        snprintf(t->failures + len, sizeof t->failures - len, "%s%s%s%.60s (%.120s)", len ? "; " : "", what,
                 shape[0] ? " " : "", shape, why);
    }
    if (seconds > t->slowest_s) {
        t->slowest_s = seconds;
        snprintf(t->slowest, sizeof t->slowest, "%s%s%.100s", what, shape[0] ? " " : "", shape);
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

/* A row of the report that counts: `res` is "PASS...", "FAIL: why" or "CRASH: why". */
static void verdict(FILE *out, tally *t, const char *what, const char *shape, double secs, const char *res)
{
    int ok = strncmp(res, "PASS", 4) == 0;
    const char *why = strchr(res, ' ') ? strchr(res, ' ') + 1 : res;
    row(out, what, shape, res);
    note_result(t, what, shape, ok, why, secs, -1);
}

/* Loading (the entry, the table, init() and shutdown() where the plugin has them), then
 * device_count and device_info (device_limits too where the plugin has it) of every device,
 * each in a child. Returns the device count when the plugin loaded (*lr filled), -1 when
 * nothing more can be checked. */
static int check_loading(const char *file, double timeout, FILE *out, tally *t, load_reply *lr)
{
    char why[256], res[800];
    double secs = 0;
    int dummy;
    load_reply *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        snprintf(res, sizeof res, "FAIL: cannot map memory for the loading child: %s", strerror(errno));
        verdict(out, t, "load", "", 0, res);
        return -1;
    }
    memset(sh, 0, sizeof *sh);
    sh->file = file;
    int crashed = cnnelm_child_run(child_load, sh, &dummy, sizeof dummy, timeout, &secs, why, sizeof why) != 0;
    *lr = *sh;
    munmap(sh, sizeof *sh);
    lr->stage[sizeof lr->stage - 1] = '\0';
    lr->message[sizeof lr->message - 1] = '\0';
    int in_init = strcmp(lr->stage, "init") == 0, in_shutdown = strcmp(lr->stage, "shutdown") == 0;
    if (crashed && !in_shutdown) {
        if (in_init) {
            row(out, "load", "entry, table", "PASS");
            note_result(t, "load", "", 1, "", 0, -1);
            snprintf(res, sizeof res, "CRASH: %s", why);
            verdict(out, t, "init", "", secs, res);
        } else {
            snprintf(res, sizeof res, "CRASH: loading it (its entry function) %s", why);
            verdict(out, t, "load", "", secs, res);
        }
        return -1;
    }
    if (!lr->ok) {
        /* the loader's message for a failed init: "... failed to start: <status>: <message>" */
        const char *m = in_init ? strstr(lr->message, "failed to start: ") : NULL;
        if (m) {
            row(out, "load", "entry, table", "PASS");
            note_result(t, "load", "", 1, "", 0, -1);
            snprintf(res, sizeof res, "FAIL: returned %.500s", m + 17);
            verdict(out, t, "init", "", secs, res);
        } else {
            snprintf(res, sizeof res, "FAIL: %s", lr->message);
            verdict(out, t, "load", "", secs, res);
        }
        return -1;
    }
    fprintf(out, "  plugin '%s' (ABI %u.%u): %s\n", lr->name, lr->abi_major, lr->abi_minor, lr->description);
    row(out, "load", "entry, table", "PASS");
    note_result(t, "load", "", 1, "", secs, -1);
    if (HAS_V11(lr, init))
        verdict(out, t, "init", "", 0, "PASS");
    if (crashed) {
        snprintf(res, sizeof res, "CRASH: %s (after init, with no context open)", why);
        verdict(out, t, "shutdown", "", secs, res);
    } else if (HAS_V11(lr, shutdown)) {
        verdict(out, t, "shutdown", "", 0, "PASS");
    }

    const char *count_slot = HAS_V11(lr, device_count_v11) ? "device_count_v11" : "device_count";
    const char *info_slot = HAS_V11(lr, device_info_v11) ? "device_info_v11" : "device_info";
    device_arg da = { file, -1, 0 };
    device_reply dr;
    int count = 0;
    if (cnnelm_child_run(child_device, &da, &dr, sizeof dr, timeout, &secs, why, sizeof why) != 0) {
        snprintf(res, sizeof res, "CRASH: %s", why);
    } else if (dr.status != CNNELM_OK) {
        snprintf(res, sizeof res, "FAIL: %.500s", dr.message[0] ? dr.message : cnnelm_status_name((cnnelm_status)dr.status));
    } else if (dr.count < 0 || dr.count > 4096) {
        snprintf(res, sizeof res, "FAIL: an impossible count (%d)", dr.count);
    } else {
        snprintf(res, sizeof res, "PASS: %d device%s", dr.count, dr.count == 1 ? "" : "s");
        count = dr.count;
    }
    verdict(out, t, count_slot, "", secs, res);
    for (int i = 0; i < count && i < 64; i++) {
        char shape[32];
        snprintf(shape, sizeof shape, "device %d", i);
        da.index = i;
        if (cnnelm_child_run(child_device, &da, &dr, sizeof dr, timeout, &secs, why, sizeof why) != 0)
            snprintf(res, sizeof res, "CRASH: %s", why);
        else if (dr.status != CNNELM_OK)
            snprintf(res, sizeof res, "FAIL: %s", dr.status == -1 ? dr.message : cnnelm_status_name((cnnelm_status)dr.status));
        else if (!dr.info.name[0])
            snprintf(res, sizeof res, "FAIL: no device name");
        else
            snprintf(res, sizeof res, "PASS: %.120s", dr.info.name);
        verdict(out, t, info_slot, shape, secs, res);
        if (!HAS_V11(lr, device_limits))
            continue;
        da.limits = 1;
        if (cnnelm_child_run(child_device, &da, &dr, sizeof dr, timeout, &secs, why, sizeof why) != 0)
            snprintf(res, sizeof res, "CRASH: %s", why);
        else if (dr.status != CNNELM_OK)
            snprintf(res, sizeof res, "FAIL: %s", dr.status == -1 ? dr.message : cnnelm_status_name((cnnelm_status)dr.status));
        else if (dr.lim.alignment & (dr.lim.alignment - 1))
            snprintf(res, sizeof res, "FAIL: alignment %llu is not a power of two",
                     (unsigned long long)dr.lim.alignment);
        else
            snprintf(res, sizeof res, "PASS: alignment %llu, largest buffer %.1f MiB, chunk %u",
                     (unsigned long long)dr.lim.alignment, (double)dr.lim.max_alloc_bytes / (1024.0 * 1024),
                     dr.lim.preferred_chunk);
        da.limits = 0;
        verdict(out, t, "device_limits", shape, secs, res);
    }
    return count;
}

/* Rows for the transfer slots the plugin has, three sizes each. */
static void check_transfers(const char *file, int device, const load_reply *lr, double timeout, FILE *out,
                            tally *t)
{
    int has[4] = { HAS_V11(lr, buffer_fill), HAS_V11(lr, buffer_copy), HAS_V11(lr, buffer_write_async),
                   HAS_V11(lr, buffer_read_async) };
    if ((has[XFER_WRITE_ASYNC] || has[XFER_READ_ASYNC]) && !HAS_V11(lr, synchronize)) {
        verdict(out, t, "synchronize", "", 0, "FAIL: the plugin has asynchronous transfers but no synchronize");
        has[XFER_WRITE_ASYNC] = has[XFER_READ_ASYNC] = 0;
    }
    static const size_t sizes[] = { 1, 1001, 65536 };
    for (int k = 0; k < 4; k++) {
        if (!has[k])
            continue;
        int crashed = 0;
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && !crashed; i++) {
            char shape[48], why[256], res[600];
            snprintf(shape, sizeof shape, "%zu float%s%s", sizes[i], sizes[i] == 1 ? "" : "s",
                     sizes[i] > 4 ? " at +3" : "");
            if (k >= XFER_WRITE_ASYNC) {
                size_t len = strlen(shape);
                snprintf(shape + len, sizeof shape - len, ", synchronize");
            }
            xfer_arg a = { file, device, (xfer_kind)k, sizes[i] };
            xfer_reply r;
            double secs = 0;
            if (cnnelm_child_run(child_xfer, &a, &r, sizeof r, timeout, &secs, why, sizeof why) != 0) {
                snprintf(res, sizeof res, "CRASH: %s", why);
                crashed = 1; /* one crash or hang per slot is enough */
            } else if (r.status != CNNELM_OK) {
                snprintf(res, sizeof res, "FAIL: %s: %.400s", cnnelm_status_name((cnnelm_status)r.status), r.message);
            } else if (!r.pass) {
                snprintf(res, sizeof res, "FAIL: %.500s", r.message);
            } else {
                snprintf(res, sizeof res, "PASS");
            }
            verdict(out, t, xfer_slot[k], shape, secs, res);
        }
    }
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

/* The counts of a finished check, for the caller. */
static int summarize(const tally *t, cnnelm_plugin_check_summary *summary)
{
    if (summary) {
        summary->passed = t->passed;
        summary->failed = t->failed;
    }
    return 0;
}

int cnnelm_plugin_check_run(const char *plugin_file, const cnnelm_plugin_check_options *opts, FILE *out,
                            cnnelm_plugin_check_summary *summary, cnnelm_error *err)
{
    if (summary)
        memset(summary, 0, sizeof *summary);
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
    if (check_loading(plugin_file, timeout, out, &t, &lr) < 0) {
        finish(out, &t);
        cnnelm_plugin_unload(ref);
        return summarize(&t, summary);
    }
    check_transfers(plugin_file, device, &lr, timeout, out, &t);
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
    int unsupported = 0, asked = 0; /* cases supports() declined, of those it was asked about */
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
            int crashed = cnnelm_child_run(child_op, &a, &r, sizeof r, limit, &secs, why, sizeof why) != 0;
            asked += !crashed;
            if (crashed) {
                snprintf(result, sizeof result, "CRASH: %s", why);
                if (strstr(why, "timed out"))
                    timed_out |= 1u << cc->call.op;
            } else if (r.supports == CNNELM_ERR_UNSUPPORTED) {
                snprintf(result, sizeof result, "supports() says unsupported: runs on the CPU reference in training");
                ok = 2;
                unsupported++;
            } else if (r.supports != CNNELM_OK) {
                snprintf(result, sizeof result, "FAIL: supports() returned %s (not OK or unsupported)",
                         cnnelm_status_name((cnnelm_status)r.supports));
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
    if (HAS_V11(&lr, supports))
        fprintf(out, "  supports(): %d of the %d cases asked said unsupported (they run on the CPU reference in "
                "training)\n",
                unsupported, asked);
    if (timed_out)
        row(out, "end-to-end training", "6c-2s-12c-2s, 300 images", "SKIP: an op timed out");
    else
        check_end_to_end(plugin_file, device, ref, 10 * timeout, out, &t);
    ref->ops->context_close(rctx);
    cnnelm_plugin_unload(ref);
    finish(out, &t);
    return summarize(&t, summary);
}

int cnnelm_plugin_check(const char *plugin_file, int device, int verbose, FILE *out,
                        cnnelm_plugin_check_summary *summary, cnnelm_error *err)
{
    cnnelm_plugin_check_options o = { .device = device, .verbose = verbose, .timeout_s = DEFAULT_TIMEOUT_S };
    return cnnelm_plugin_check_run(plugin_file, &o, out, summary, err);
}
