/* cnnelm per-partition facts: the record each rank sends rank 0 for the report (part_facts.h).
 * One record per partition, little-endian fixed fields in this order (docs/reduce.md):
 * u32 version (1); f64 seconds; i32 worker, rank, resumed; u32 iterations, flags; u64 examples;
 * f64 lambda; metrics: u64 n, f64 accuracy, kappa, kappa_se; log: i32 n, diverged, interrupted,
 * interrupted_at, kept; u32 length + the divergence text; lambda choice: i32 n, best, f64 seconds,
 * n x (f64 lambda, gcv, df); then log.n x (i32 iteration, f64 J, train_accuracy, test_accuracy,
 * learning_rate, seconds); then (version 2, train.validation) i32 rule, gcv_best, u64 n_held,
 * n x f64 held-out accuracy. No struct is sent as raw bytes, so padding and layout never matter. */
#define _GNU_SOURCE /* strnlen */
#include "training/part_facts.h"

#include <stdlib.h>
#include <string.h>

#define FACTS_VERSION 2

typedef struct wbuf {
    unsigned char *p;
    size_t n, cap;
    int oom;
} wbuf;

static void put(wbuf *b, uint64_t v, int bytes)
{
    if (b->n + (size_t)bytes > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 1024;
        unsigned char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    for (int i = 0; i < bytes; i++)
        b->p[b->n++] = (unsigned char)(v >> (8 * i));
}

static void put_f64(wbuf *b, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    put(b, v, 8);
}

typedef struct rbuf {
    const unsigned char *p;
    size_t n, at;
    int short_read;
} rbuf;

static uint64_t get(rbuf *b, int bytes)
{
    uint64_t v = 0;
    if (b->at + (size_t)bytes > b->n) {
        b->short_read = 1;
        return 0;
    }
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)b->p[b->at++] << (8 * i);
    return v;
}

static int32_t get_i32(rbuf *b) { return (int32_t)(uint32_t)get(b, 4); }

static double get_f64(rbuf *b)
{
    uint64_t v = get(b, 8);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

int cnnelm_part_facts_encode(const cnnelm_part_result *r, unsigned char **out, size_t *len,
                             cnnelm_error *err)
{
    const cnnelm_train_log *g = &r->log;
    wbuf b = { NULL, 0, 0, 0 };
    put(&b, FACTS_VERSION, 4);
    put_f64(&b, r->seconds);
    put(&b, (uint32_t)r->worker, 4);
    put(&b, (uint32_t)r->rank, 4);
    put(&b, (uint32_t)r->resumed, 4);
    put(&b, r->model.iterations, 4);
    put(&b, r->model.flags, 4);
    put(&b, r->examples, 8);
    put_f64(&b, r->model.lambda);
    put(&b, r->test.n, 8);
    put_f64(&b, r->test.accuracy);
    put_f64(&b, r->test.kappa);
    put_f64(&b, r->test.kappa_se);
    int32_t head[5] = { g->n, g->diverged, g->interrupted, g->interrupted_at, g->kept };
    for (int i = 0; i < 5; i++)
        put(&b, (uint32_t)head[i], 4);
    size_t dl = strnlen(g->divergence, sizeof g->divergence);
    put(&b, dl, 4);
    for (size_t i = 0; i < dl; i++)
        put(&b, (unsigned char)g->divergence[i], 1);
    const cnnelm_lambda_choice *ch = &g->lambda_choice;
    put(&b, (uint32_t)ch->n, 4);
    put(&b, (uint32_t)ch->best, 4);
    put_f64(&b, ch->seconds);
    for (int i = 0; i < ch->n && i < CNNELM_LAMBDA_MAX_CANDIDATES; i++) {
        put_f64(&b, ch->lambda[i]);
        put_f64(&b, ch->gcv[i]);
        put_f64(&b, ch->df[i]);
    }
    for (int i = 0; i < g->n; i++) {
        const cnnelm_iter_stats *it = &g->iters[i];
        put(&b, (uint32_t)it->iteration, 4);
        put_f64(&b, it->J);
        put_f64(&b, it->train_accuracy);
        put_f64(&b, it->test_accuracy);
        put_f64(&b, it->learning_rate);
        put_f64(&b, it->seconds);
    }
    put(&b, (uint32_t)ch->rule, 4);
    put(&b, (uint32_t)ch->gcv_best, 4);
    put(&b, ch->n_held, 8);
    for (int i = 0; i < ch->n && i < CNNELM_LAMBDA_MAX_CANDIDATES; i++)
        put_f64(&b, ch->held[i]);
    if (b.oom) {
        free(b.p);
        return cnnelm_fail(err, "out of memory");
    }
    *out = b.p;
    *len = b.n;
    return 0;
}

int cnnelm_part_facts_decode(cnnelm_part_result *r, int p, const unsigned char *buf, size_t len,
                             cnnelm_error *err)
{
    cnnelm_train_log *g = &r->log;
    rbuf b = { buf, len, 0, 0 };
    uint32_t version = (uint32_t)get(&b, 4);
    if (version != FACTS_VERSION)
        return cnnelm_fail(err, "MPI: partition %d's facts have version %u, not %d: every rank must run "
                           "the same cnnelm", p + 1, version, FACTS_VERSION);
    r->seconds = get_f64(&b);
    r->worker = get_i32(&b);
    r->rank = get_i32(&b);
    r->resumed = get_i32(&b);
    r->model.iterations = (uint32_t)get(&b, 4);
    r->model.flags = (uint32_t)get(&b, 4);
    r->examples = (size_t)get(&b, 8);
    r->model.n_examples = r->examples;
    r->model.lambda = get_f64(&b);
    r->test.n = get(&b, 8);
    r->test.accuracy = get_f64(&b);
    r->test.kappa = get_f64(&b);
    r->test.kappa_se = get_f64(&b);
    cnnelm_train_log_free(g);
    int n = get_i32(&b);
    g->diverged = get_i32(&b);
    g->interrupted = get_i32(&b);
    g->interrupted_at = get_i32(&b);
    g->kept = get_i32(&b);
    uint32_t dl = (uint32_t)get(&b, 4);
    memset(g->divergence, 0, sizeof g->divergence);
    for (uint32_t i = 0; i < dl && !b.short_read; i++) {
        char ch = (char)get(&b, 1);
        if (i < sizeof g->divergence - 1)
            g->divergence[i] = ch;
    }
    cnnelm_lambda_choice *ch = &g->lambda_choice;
    memset(ch, 0, sizeof *ch);
    ch->n = get_i32(&b);
    ch->best = get_i32(&b);
    ch->seconds = get_f64(&b);
    if (ch->n < 0 || ch->n > CNNELM_LAMBDA_MAX_CANDIDATES || n < 0 ||
        (size_t)n > len / 44 + 1 || b.short_read)
        return cnnelm_fail(err, "MPI: partition %d's facts are malformed", p + 1);
    for (int i = 0; i < ch->n; i++) {
        ch->lambda[i] = get_f64(&b);
        ch->gcv[i] = get_f64(&b);
        ch->df[i] = get_f64(&b);
    }
    g->iters = calloc((size_t)(n ? n : 1), sizeof *g->iters);
    if (!g->iters)
        return cnnelm_fail(err, "out of memory");
    g->n = n;
    for (int i = 0; i < n; i++) {
        cnnelm_iter_stats *it = &g->iters[i];
        it->iteration = get_i32(&b);
        it->J = get_f64(&b);
        it->train_accuracy = get_f64(&b);
        it->test_accuracy = get_f64(&b);
        it->learning_rate = get_f64(&b);
        it->seconds = get_f64(&b);
    }
    ch->rule = get_i32(&b);
    ch->gcv_best = get_i32(&b);
    ch->n_held = get(&b, 8);
    for (int i = 0; i < ch->n; i++)
        ch->held[i] = get_f64(&b);
    if (ch->gcv_best < 0 || (ch->n > 0 && ch->gcv_best >= ch->n))
        return cnnelm_fail(err, "MPI: partition %d's facts are malformed", p + 1);
    if (b.short_read || b.at != len)
        return cnnelm_fail(err, "MPI: partition %d's facts are %zu bytes, not the %zu their fields "
                           "need", p + 1, len, b.at);
    return 0;
}
