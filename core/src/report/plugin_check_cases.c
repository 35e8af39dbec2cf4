/* plugin-check's case catalogue: every op's shapes (odd and even sizes, partial chunks, every
 * kernel size, pooling mode and activation; accumulating and two-thread cases), an op's buffer
 * layout from the op table, and the inputs, sentinels and guard tails each buffer holds before
 * a call. */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "report/plugin_check_internal.h"

void cnnelm_pcheck_layout(const cnnelm_op_call *call, case_layout *lay)
{
    memset(lay, 0, sizeof *lay);
    lay->nb = cnnelm_op_layout(call, lay->bytes, &lay->in, &lay->out);
    const cnnelm_op_desc *d = cnnelm_op_describe(call->op);
    for (int i = 0; i < 6; i++)
        lay->names[i] = "?";
    for (int i = 0; d && i < d->n_buffers && i < CNNELM_OP_MAX_BUFFERS; i++) {
        lay->names[i] = d->buf[i].name;
        if (d->buf[i].size == CNNELM_OPSIZE_LL_F64 || d->buf[i].size == CNNELM_OPSIZE_LC_F64)
            lay->f64 |= 1u << i;
    }
}

/* What buffer i holds before call k: inputs uniform in [-1, 1] (never zeros), different for
 * every (op, variant, call, buffer); the solve's U symmetric positive definite (H^T H of a
 * random H); outputs the sentinel; every tail the guard pattern. In-out buffers (U and V of
 * elm_accumulate, dw and db with accumulate) are written before the first call only. */
void cnnelm_pcheck_fill(const check_case *cc, const case_layout *lay, int variant, int k, int i, float *h)
{
    size_t n = floats_of(lay, i);
    cnnelm_rng r;
    cnnelm_rng_seed(&r, 20261124, (uint64_t)cc->call.op * 1000 + (uint64_t)variant * 100 + (uint64_t)k * 10 + (uint64_t)i);
    if (lay->in >> i & 1u && lay->f64 >> i & 1u) {
        double v; /* doubles, stored through memcpy: h is a float block */
        for (size_t j = 0; j + 1 < n; j += 2) {
            v = 2 * cnnelm_rng_uniform(&r) - 1;
            memcpy(h + j, &v, sizeof v);
        }
    } else if (lay->in >> i & 1u)
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
int cnnelm_pcheck_build_cases(check_case *cases)
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
    /* exact sums: a plugin that sums in float (or rounds H) is off by ~1e-7; double sums of
     * exact products differ from the reference's only by the order of the terms (~1e-15) */
    for (int i = 0; i < 3; i++)
        add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_ELM_ACCUMULATE_F64, .n = elm[i][0], .l = elm[i][1],
                                         .c = elm[i][2] },
            1e-12, MAX_CALLS, 1, "n%d l%d c%d x3", elm[i][0], elm[i][1], elm[i][2]);
    add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_ELM_ACCUMULATE_F64, .n = 64, .l = 192, .c = 10 }, 1e-12,
        MAX_CALLS, 2, "n64 l192 c10 x3");
    static const int solves[][2] = { { 192, 10 }, { 13, 3 }, { 50, 10 } };
    for (int i = 0; i < 3; i++)
        add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_ELM_SOLVE, .l = solves[i][0], .c = solves[i][1], .lambda = 100 },
            1e-3, 1, 1, "l%d c%d lambda 100", solves[i][0], solves[i][1]);
    add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_ELM_SOLVE, .l = 50, .c = 10, .lambda = 100 }, 1e-3, 1, 2,
        "l50 c10 lambda 100");
    return n;
}
