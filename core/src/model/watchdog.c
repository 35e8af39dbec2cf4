/* cnnelm device-call watchdog (see watchdog.h). */
#define _GNU_SOURCE
#include "model/watchdog.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + 1; /* never 0: 0 means idle */
}

static void lock(cnnelm_watch *w)
{
    while (atomic_flag_test_and_set_explicit(&w->lock, memory_order_acquire)) {
    }
}

static void unlock(cnnelm_watch *w) { atomic_flag_clear_explicit(&w->lock, memory_order_release); }

/* The shape of a call, as a user would recognise it in a message. */
static void describe(char *out, size_t n, const char *op, int layer, const cnnelm_op_call *k)
{
    char layer_s[24] = "", shape[128] = "";
    if (layer >= 0)
        snprintf(layer_s, sizeof layer_s, "layer %d", layer + 1);
    if (k) {
        const cnnelm_conv_shape *c = &k->conv;
        const cnnelm_pool_shape *p = &k->pool;
        switch (k->op) {
        case CNNELM_OP_CONV_FORWARD: case CNNELM_OP_CONV_BACKWARD_DATA: case CNNELM_OP_CONV_BACKWARD_FILTER:
            snprintf(shape, sizeof shape, "n%d %d->%d maps %dx%d k%d", c->n, c->c_in, c->c_out, c->h, c->w, c->k);
            break;
        case CNNELM_OP_POOL_FORWARD: case CNNELM_OP_POOL_BACKWARD:
            snprintf(shape, sizeof shape, "n%d c%d %dx%d s%d %s", p->n, p->c, p->h, p->w, p->s,
                     k->mode == CNNELM_POOL_MAX ? "max" : "mean");
            break;
        case CNNELM_OP_ACT_FORWARD: case CNNELM_OP_ACT_BACKWARD:
            snprintf(shape, sizeof shape, "%zu floats", k->count);
            break;
        case CNNELM_OP_ELM_ACCUMULATE: case CNNELM_OP_ELM_PREDICT: case CNNELM_OP_ELM_BACKPROP:
        case CNNELM_OP_ELM_ACCUMULATE_F64:
            snprintf(shape, sizeof shape, "n%d l%d c%d", k->n, k->l, k->c);
            break;
        case CNNELM_OP_ELM_SOLVE:
            snprintf(shape, sizeof shape, "l%d c%d", k->l, k->c);
            break;
        case CNNELM_OP_COUNT: break;
        }
    }
    const char *sep = layer_s[0] && shape[0] ? ", " : "";
    if (layer_s[0] || shape[0])
        snprintf(out, n, "%s (%s%s%s)", op, layer_s, sep, shape);
    else
        snprintf(out, n, "%s", op);
}

void cnnelm_watch_begin(cnnelm_watch *w, const char *op, int layer, const cnnelm_op_call *call)
{
    char what[sizeof w->what];
    describe(what, sizeof what, op, layer, call);
    lock(w);
    memcpy(w->what, what, sizeof what);
    w->since_ns = now_ns();
    unlock(w);
}

int cnnelm_watch_end(cnnelm_watch *w)
{
    lock(w);
    w->since_ns = 0;
    int gone = w->abandoned;
    unlock(w);
    return gone ? -1 : 0;
}

int cnnelm_watch_expire(cnnelm_watch *w, double limit_s, char *what, size_t what_size)
{
    int expired = 0;
    lock(w);
    if (!w->abandoned && w->since_ns && limit_s > 0 && (double)(now_ns() - w->since_ns) * 1e-9 > limit_s) {
        w->abandoned = 1;
        snprintf(what, what_size, "%s", w->what);
        expired = 1;
    }
    unlock(w);
    return expired;
}

int cnnelm_watch_abandoned(cnnelm_watch *w)
{
    lock(w);
    int gone = w->abandoned;
    unlock(w);
    return gone;
}
