/* cnnelm op dispatch with CPU-reference fallback (see ops.h). */
#include "ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[CNNELM_OP_COUNT] = {
    "conv2d_forward", "conv2d_backward_data", "conv2d_backward_filter", "pool_forward",
    "pool_backward", "activation_forward", "activation_backward", "elm_accumulate",
    "elm_predict", "elm_backprop", "elm_solve",
};

const char *cnnelm_op_name(cnnelm_op_id op)
{
    return (unsigned)op < CNNELM_OP_COUNT ? op_names[op] : "unknown op";
}

/* The slot for the call on a table, or UNSUPPORTED when the slot is NULL. */
cnnelm_status cnnelm_op_dispatch(const cnnelm_backend *be, cnnelm_backend_ctx *ctx,
                                 const cnnelm_op_call *k, cnnelm_buffer *const *b)
{
#define SLOT(f) if (!be->f) return CNNELM_ERR_UNSUPPORTED; return be->f
    switch (k->op) {
    case CNNELM_OP_CONV_FORWARD: SLOT(conv2d_forward)(ctx, &k->conv, k->act, b[0], b[1], b[2], b[3]);
    case CNNELM_OP_CONV_BACKWARD_DATA: SLOT(conv2d_backward_data)(ctx, &k->conv, b[0], b[1], b[2]);
    case CNNELM_OP_CONV_BACKWARD_FILTER:
        SLOT(conv2d_backward_filter)(ctx, &k->conv, b[0], b[1], b[2], b[3], k->accumulate);
    case CNNELM_OP_POOL_FORWARD: SLOT(pool_forward)(ctx, &k->pool, k->mode, b[0], b[1]);
    case CNNELM_OP_POOL_BACKWARD: SLOT(pool_backward)(ctx, &k->pool, k->mode, b[0], b[1], b[2]);
    case CNNELM_OP_ACT_FORWARD: SLOT(activation_forward)(ctx, k->act, k->count, b[0], b[1]);
    case CNNELM_OP_ACT_BACKWARD: SLOT(activation_backward)(ctx, k->act, k->count, b[0], b[1], b[2]);
    case CNNELM_OP_ELM_ACCUMULATE: SLOT(elm_accumulate)(ctx, k->n, k->l, k->c, b[0], b[1], b[2], b[3]);
    case CNNELM_OP_ELM_PREDICT: SLOT(elm_predict)(ctx, k->n, k->l, k->c, b[0], b[1], b[2]);
    case CNNELM_OP_ELM_BACKPROP: SLOT(elm_backprop)(ctx, k->n, k->l, k->c, b[0], b[1], b[2]);
    case CNNELM_OP_ELM_SOLVE: SLOT(elm_solve)(ctx, k->l, k->c, k->lambda, b[0], b[1], b[2]);
    case CNNELM_OP_COUNT: break;
    }
#undef SLOT
    return CNNELM_ERR_INVALID_ARGUMENT;
}

/* Bytes of each buffer argument, and which are read (in) and written (out). */
int cnnelm_op_layout(const cnnelm_op_call *k, size_t bytes[6], unsigned *in, unsigned *out)
{
    const cnnelm_conv_shape *s = &k->conv;
    size_t F = sizeof(float);
    size_t x = (size_t)s->n * s->c_in * s->h * s->w * F;
    size_t oh = (size_t)(s->h - s->k + 1), ow = (size_t)(s->w - s->k + 1);
    size_t y = (size_t)s->n * s->c_out * oh * ow * F;
    size_t w = (size_t)s->c_out * s->c_in * s->k * s->k * F, b = (size_t)s->c_out * F;
    const cnnelm_pool_shape *p = &k->pool;
    size_t px = (size_t)p->n * p->c * p->h * p->w * F;
    size_t py = p->s > 0 ? px / ((size_t)p->s * p->s) : 0;
    size_t n = (size_t)k->n, l = (size_t)k->l, c = (size_t)k->c, cnt = k->count * F;
    memset(bytes, 0, 6 * sizeof bytes[0]);
    switch (k->op) {
    case CNNELM_OP_CONV_FORWARD:
        bytes[0] = x; bytes[1] = w; bytes[2] = b; bytes[3] = y; *in = 7; *out = 8; return 4;
    case CNNELM_OP_CONV_BACKWARD_DATA:
        bytes[0] = y; bytes[1] = w; bytes[2] = x; *in = 3; *out = 4; return 3;
    case CNNELM_OP_CONV_BACKWARD_FILTER:
        bytes[0] = x; bytes[1] = y; bytes[2] = w; bytes[3] = b;
        *in = k->accumulate ? 15 : 3; *out = 12; return 4;
    case CNNELM_OP_POOL_FORWARD: bytes[0] = px; bytes[1] = py; *in = 1; *out = 2; return 2;
    case CNNELM_OP_POOL_BACKWARD:
        bytes[0] = px; bytes[1] = py; bytes[2] = px; *in = 3; *out = 4; return 3;
    case CNNELM_OP_ACT_FORWARD: bytes[0] = bytes[1] = cnt; *in = 1; *out = 2; return 2;
    case CNNELM_OP_ACT_BACKWARD: bytes[0] = bytes[1] = bytes[2] = cnt; *in = 3; *out = 4; return 3;
    case CNNELM_OP_ELM_ACCUMULATE:
        bytes[0] = n * l * F; bytes[1] = n * c * F; bytes[2] = l * l * F; bytes[3] = l * c * F;
        *in = 15; *out = 12; return 4;
    case CNNELM_OP_ELM_PREDICT:
        bytes[0] = n * l * F; bytes[1] = l * c * F; bytes[2] = n * c * F; *in = 3; *out = 4; return 3;
    case CNNELM_OP_ELM_BACKPROP:
        bytes[0] = n * c * F; bytes[1] = l * c * F; bytes[2] = n * l * F; *in = 3; *out = 4; return 3;
    case CNNELM_OP_ELM_SOLVE:
        bytes[0] = l * l * F; bytes[1] = l * c * F; bytes[2] = l * c * F; *in = 3; *out = 4; return 3;
    case CNNELM_OP_COUNT: break;
    }
    return 0;
}

static cnnelm_status fallback(cnnelm_opctx *o, const cnnelm_op_call *k, char *why, size_t why_size)
{
    const cnnelm_backend *ref = o->reference->ops;
    if (!o->ref_ctx) {
        cnnelm_context_params p = { .struct_size = sizeof p, .threads = o->threads };
        char e[256] = "";
        cnnelm_status st = ref->context_open(0, &p, &o->ref_ctx, e, sizeof e);
        if (st != CNNELM_OK) {
            o->ref_ctx = NULL;
            snprintf(why, why_size, "cannot open the CPU reference for a fallback: %s", e);
            return st;
        }
    }
    size_t bytes[6];
    unsigned in = 0, out = 0;
    int nb = cnnelm_op_layout(k, bytes, &in, &out);
    cnnelm_buffer *rb[6] = { 0 };
    size_t most = 0;
    for (int i = 0; i < nb; i++)
        most = bytes[i] > most ? bytes[i] : most;
    void *host = malloc(most ? most : 1);
    cnnelm_status st = host ? CNNELM_OK : CNNELM_ERR_OUT_OF_MEMORY;
    int backend_failed = 0; /* which side a failure came from, for the message */
    for (int i = 0; i < nb && st == CNNELM_OK; i++) {
        st = ref->buffer_alloc(o->ref_ctx, bytes[i] ? bytes[i] : sizeof(float), &rb[i]);
        if (st == CNNELM_OK && (in >> i & 1u)) {
            st = o->be->buffer_read(o->ctx, k->buf[i], 0, host, bytes[i]);
            backend_failed = st != CNNELM_OK;
            if (st == CNNELM_OK)
                st = ref->buffer_write(o->ref_ctx, rb[i], 0, host, bytes[i]);
        }
    }
    if (st == CNNELM_OK)
        st = cnnelm_op_dispatch(ref, o->ref_ctx, k, rb);
    for (int i = 0; i < nb && st == CNNELM_OK; i++)
        if (out >> i & 1u) {
            st = ref->buffer_read(o->ref_ctx, rb[i], 0, host, bytes[i]);
            if (st == CNNELM_OK) {
                st = o->be->buffer_write(o->ctx, k->buf[i], 0, host, bytes[i]);
                backend_failed = st != CNNELM_OK;
            }
        }
    if (st != CNNELM_OK)
        snprintf(why, why_size, "%s, moving data for a CPU fallback: %s",
                 backend_failed ? "the backend failed" : "the CPU reference failed",
                 backend_failed ? o->be->last_error(o->ctx) : ref->last_error(o->ref_ctx));
    for (int i = 0; i < nb; i++)
        ref->buffer_free(o->ref_ctx, rb[i]);
    free(host);
    if (st == CNNELM_OK)
        o->fell_back |= 1u << k->op;
    return st;
}

cnnelm_status cnnelm_op_run(cnnelm_opctx *o, const cnnelm_op_call *call, char *why, size_t why_size)
{
    cnnelm_status st = cnnelm_op_dispatch(o->be, o->ctx, call, call->buf);
    if (st == CNNELM_ERR_UNSUPPORTED && o->reference && o->reference->ops != o->be)
        return fallback(o, call, why, why_size);
    if (st != CNNELM_OK) {
        const char *m = o->be->last_error(o->ctx);
        if (st == CNNELM_ERR_UNSUPPORTED)
            m = "not supported by this backend, and no CPU reference to fall back to";
        snprintf(why, why_size, "%s", m && *m ? m : "no detail");
    }
    return st;
}

void cnnelm_opctx_close(cnnelm_opctx *o)
{
    if (o->ref_ctx)
        o->reference->ops->context_close(o->ref_ctx);
    o->ref_ctx = NULL;
}
