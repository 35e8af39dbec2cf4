/* plugin-check's op cases: a case's calls on one context (the buffers written, the op
 * dispatched, the outputs read back with their tails, inputs checked unchanged, the timed
 * calls), the judgement against the reference (guards, sentinels, tolerance, after every
 * accumulating call), and the child that runs a case on the plugin, on two threads for the
 * race cases, asking supports() first. */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "report/plugin_check_internal.h"

#define TIMED_CALLS 5

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

int cnnelm_pcheck_result_alloc(case_result *r, const check_case *cc, const case_layout *lay)
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

void cnnelm_pcheck_result_free(case_result *r)
{
    for (int k = 0; k < MAX_CALLS; k++)
        for (int i = 0; i < 6; i++)
            free(r->out[k][i]);
    memset(r, 0, sizeof *r);
}

/* Runs the case's calls on one context: before each call writes what cnnelm_pcheck_fill says,
 * after it reads every output back with its tail into res. With `seconds`, then TIMED_CALLS more
 * calls, their median time. */
cnnelm_status cnnelm_pcheck_exec(const cnnelm_backend *be, cnnelm_backend_ctx *ctx, const check_case *cc,
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
            cnnelm_pcheck_fill(cc, lay, variant, k, i, host[i]);
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

/* A buffer of doubles against the reference's, relative to 1 + |reference|. */
static int judge_f64(const check_case *cc, const case_layout *lay, int i, const float *ref, const float *got,
                     const char *when, const char *where, double *worst, char *why, size_t why_size)
{
    size_t n = floats_of(lay, i) / 2, at = 0;
    double bad = 0, r_at = 0, g_at = 0;
    for (size_t j = 0; j < n; j++) {
        double r, g;
        memcpy(&r, ref + 2 * j, sizeof r);
        memcpy(&g, got + 2 * j, sizeof g);
        double d = fabs(g - r) / (1 + fabs(r));
        if (isnan(d))
            d = INFINITY;
        if (d > bad) {
            bad = d;
            at = j;
            r_at = r;
            g_at = g;
        }
    }
    if (bad > *worst)
        *worst = bad;
    if (bad <= cc->tol)
        return 1;
    snprintf(why, why_size, "outside the tolerance: %s[%zu] is %.17g, the reference %.17g (doubles)%s%s",
             lay->names[i], at, g_at, r_at, when, where);
    return 0;
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
            if (lay->f64 >> i & 1u) {
                if (!judge_f64(cc, lay, i, ref->out[k][i], got->out[k][i], when, where, worst, why, why_size))
                    return 0;
                continue;
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
    if (cnnelm_pcheck_result_alloc(&got, a->cc, a->lay) != 0) {
        t->status = CNNELM_ERR_OUT_OF_MEMORY;
        snprintf(t->message, sizeof t->message, "out of host memory");
    }
    char where[64];
    for (int round = 0; round < RACE_ROUNDS; round++) {
        pthread_barrier_wait(t->start); /* both threads call the op at the same moment */
        if (t->status != CNNELM_OK || !t->pass)
            continue;
        char changed[160];
        t->status =
            cnnelm_pcheck_exec(t->be, t->ctx, a->cc, a->lay, t->variant, &got, NULL, changed, sizeof changed);
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
    cnnelm_pcheck_result_free(&got);
    return NULL;
}

void cnnelm_pcheck_child_op(void *arg, void *reply, size_t size)
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
        if (cnnelm_pcheck_result_alloc(&got, a->cc, a->lay) != 0) {
            snprintf(r->message, sizeof r->message, "out of host memory");
            return;
        }
        char changed[160];
        r->status =
            cnnelm_pcheck_exec(p->ops, ctx[0], a->cc, a->lay, 0, &got, &r->seconds, changed, sizeof changed);
        if (r->status != CNNELM_OK)
            snprintf(r->message, sizeof r->message, "%.470s", p->ops->last_error(ctx[0]));
        else
            r->pass = judge(a->cc, a->lay, a->ref[0], &got, "", &r->worst, r->message, sizeof r->message);
        if (r->status == CNNELM_OK && r->pass && changed[0]) {
            snprintf(r->message, sizeof r->message, "%s", changed);
            r->pass = 0;
            r->worst = INFINITY;
        }
        cnnelm_pcheck_result_free(&got);
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
