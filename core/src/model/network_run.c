/* cnnelm network runs, chunk by chunk: forward through the layers, the ELM products (U and V
 * accumulated, beta solved, predictions), back-propagation to the kernels' gradients, and the
 * plan of every call a run makes, made once when the network opens (see network.h). */
#include "model/network.h"
#include "model/network_internal.h"

#include "model/elm_solve.h"

#include <stdio.h>
#include <string.h>

/* cnnelm_op_run under the watchdog. */
static cnnelm_status watched_op_run(cnnelm_net *net, cnnelm_op_call *k, int layer, char *why, size_t why_size)
{
    cnnelm_watch_begin(&net->watch, cnnelm_op_name(k->op), layer, k);
    cnnelm_status st = cnnelm_op_run(&net->ops, k, why, why_size);
    if (cnnelm_watch_end(&net->watch) != 0) {
        snprintf(why, why_size, "the device was given up on (workers[i].op_timeout)");
        return CNNELM_ERR_DEVICE;
    }
    return st;
}

/* Runs one op through the dispatcher (which falls back to the CPU reference when it must). */
int cnnelm_net_run_op(cnnelm_net *net, cnnelm_op_call *k, int layer, cnnelm_error *err)
{
    char why[512] = "";
    cnnelm_status st = net->planning ? cnnelm_op_plan(&net->ops, k, why, sizeof why)
                                     : watched_op_run(net, k, layer, why, sizeof why);
    if (st == CNNELM_OK)
        return 0;
    if (st == CNNELM_ERR_DEVICE)
        net->device_lost = 1;
    const char *op = cnnelm_op_name(k->op);
    if (layer >= 0)
        return cnnelm_fail(err, "%s: %s (layer %d) failed: %s: %s", net->where, op, layer + 1,
                           cnnelm_status_name(st), why);
    return cnnelm_fail(err, "%s: %s failed: %s: %s", net->where, op, cnnelm_status_name(st), why);
}

cnnelm_buffer *cnnelm_net_hidden_buffer(const cnnelm_net *net)
{
    if (net->h)
        return net->h;
    return net->hcat ? net->hcat : net->act[net->arch.n_layers - 1];
}

static int forward_layers(cnnelm_net *net, cnnelm_error *err);

int cnnelm_net_forward(cnnelm_net *net, const cnnelm_dataset *ds, const size_t *rows, size_t first,
                       int n, cnnelm_error *err)
{
    return cnnelm_net_forward_ahead(net, ds, rows, first, n, 0, 0, err);
}

int cnnelm_net_forward_ahead(cnnelm_net *net, const cnnelm_dataset *ds, const size_t *rows,
                             size_t first, int n, size_t next, int next_n, cnnelm_error *err)
{
    const cnnelm_arch *a = &net->arch;
    if (n < 1 || n > net->chunk || next_n < 0 || next_n > net->chunk)
        return cnnelm_fail(err, "internal: chunk of %d examples (capacity %d)", n < 1 || n > net->chunk ? n : next_n,
                           net->chunk);
    size_t in = (size_t)a->in_c * a->in_h * a->in_w, C = (size_t)a->classes;
    int s = net->slot;
    /* loaded ahead by the previous call, or loaded now; converting overlapped the device's work
     * on the previous chunk either way (queued, or on the loader thread) */
    int got = cnnelm_net_take_loaded(net, s, ds, rows, first, n, err);
    if (got < 0 || (got == 0 && cnnelm_net_load_slot(net, s, ds, rows, first, n, err) != 0))
        return -1;
    net->loaded_ahead += got == 1;
    net->host_x = net->host_xs[s];
    net->host_t = net->host_ts[s];
    net->labels = net->labels_s[s];
    net->n = n;
    /* The device's work on the previous chunk (and the upload from the other slot's host
     * buffers) must be done before those buffers are reused. */
    char why[512] = "";
    cnnelm_status st = cnnelm_op_sync(&net->ops, why, sizeof why);
    if (st != CNNELM_OK)
        return cnnelm_net_xfer_fail(net, st, "synchronize", why, err);
    net->x = net->xs[s];
    net->t = net->ts[s];
    XFER("buffer_write", cnnelm_op_write_async, net->x, 0, net->host_x, (size_t)n * in * sizeof(float));
    XFER("buffer_write", cnnelm_op_write_async, net->t, 0, net->host_t, (size_t)n * C * sizeof(float));
    /* the next chunk goes to the other slot while this one computes */
    net->slot = (s + 1) % net->n_slots;
    if (next_n > 0 && net->n_slots == 2)
        cnnelm_net_load_ahead(net, net->slot, ds, rows, next, next_n);
    return forward_layers(net, err);
}

static int forward_layers(cnnelm_net *net, cnnelm_error *err)
{
    const cnnelm_arch *a = &net->arch;
    int n = net->n;
    int first_scale = a->n_layers - a->n_scales;
    const cnnelm_buffer *src = net->x;
    for (int i = 0; i < a->n_layers; i++) {
        const cnnelm_layer *ly = &a->layer[i];
        if (ly->kind == CNNELM_LAYER_CONV) {
            cnnelm_conv_shape s = { n, ly->in_c, ly->in_h, ly->in_w, ly->out_c, a->kernel };
            cnnelm_op_call k = { .op = CNNELM_OP_CONV_FORWARD, .conv = s, .act = a->activation,
                                 .buf = { (cnnelm_buffer *)src, net->w[i], net->b[i], net->act[i] } };
            if (cnnelm_net_run_op(net, &k, i, err))
                return -1;
        } else {
            cnnelm_pool_shape s = { n, ly->in_c, ly->in_h, ly->in_w, ly->size };
            cnnelm_op_call k = { .op = CNNELM_OP_POOL_FORWARD, .pool = s, .mode = a->pooling,
                                 .buf = { (cnnelm_buffer *)src, net->act[i] } };
            if (cnnelm_net_run_op(net, &k, i, err))
                return -1;
        }
        if (i < first_scale) /* every pool of a multi-scale group reads the group's input */
            src = net->act[i];
    }
    if (net->hcat) {
        if (!net->planning && cnnelm_net_gather_hidden(net, err) != 0)
            return -1;
        src = net->hcat;
    }
    if (net->h) {
        cnnelm_op_call k = { .op = CNNELM_OP_ACT_FORWARD, .act = a->elm_activation,
                             .count = (size_t)n * a->hidden, .buf = { (cnnelm_buffer *)src, net->h } };
        if (cnnelm_net_run_op(net, &k, -1, err))
            return -1;
    }
    return 0;
}

int cnnelm_net_solve(cnnelm_net *net, const double *U, const double *V, double lambda,
                     float *beta_out, cnnelm_error *err)
{
    size_t L = (size_t)net->arch.hidden, C = (size_t)net->arch.classes;
    /* after the sums' read-back in host_uv (free between batches) */
    float *beta = beta_out ? beta_out : net->host_uv + cnnelm_net_sums_stage_bytes(net, sizeof(float)) / sizeof(float);
    int rc = cnnelm_elm_solve_float(U, V, (int)L, (int)C, lambda, beta, err);
    if (rc == CNNELM_STATUS_NOT_POSITIVE_DEFINITE)
        cnnelm_fail_prefix(err, "%s", net->where);
    if (rc != 0)
        return rc;
    WRITE(net->beta, beta, L * C * sizeof(float));
    return 0;
}

int cnnelm_net_predict(cnnelm_net *net, float *Y, cnnelm_error *err)
{
    int C = net->arch.classes;
    cnnelm_op_call k = { .op = CNNELM_OP_ELM_PREDICT, .n = net->n, .l = net->arch.hidden, .c = C,
                         .buf = { cnnelm_net_hidden_buffer(net), net->beta, net->y } };
    if (cnnelm_net_run_op(net, &k, -1, err))
        return -1;
    READ(net->y, Y, (size_t)net->n * C * sizeof(float));
    return 0;
}

static int backward_layers(cnnelm_net *net, int accumulate, cnnelm_error *err);

int cnnelm_net_backward(cnnelm_net *net, const float *E, int accumulate, cnnelm_error *err)
{
    const cnnelm_arch *a = &net->arch;
    WRITE(net->e, E, (size_t)net->n * a->classes * sizeof(float));
    return backward_layers(net, accumulate, err);
}

int cnnelm_net_check_backprop(const cnnelm_arch *a, cnnelm_error *err)
{
    if (a->n_scales || a->sqrt_features)
        return cnnelm_fail_status(err, CNNELM_STATUS_INVALID_ARGUMENT,
                                  "architecture \"%s\": a multi-scale pooling group or \"-sqrt\" "
                                  "cannot be fine-tuned (no back-propagation through them): set "
                                  "train.iterations = 0", a->layers);
    return 0;
}

static int backward_layers(cnnelm_net *net, int accumulate, cnnelm_error *err)
{
    const cnnelm_arch *a = &net->arch;
    if (cnnelm_net_check_backprop(a, err))
        return -1;
    int n = net->n, C = a->classes, L = a->hidden;
    int cur = 0;
    cnnelm_op_call bp = { .op = CNNELM_OP_ELM_BACKPROP, .n = n, .l = L, .c = C,
                          .buf = { net->e, net->beta, net->g[cur] } };
    if (cnnelm_net_run_op(net, &bp, -1, err))
        return -1;
    if (net->h) {
        cnnelm_op_call k = { .op = CNNELM_OP_ACT_BACKWARD, .act = a->elm_activation,
                             .count = (size_t)n * L, .buf = { net->h, net->g[cur], net->g[cur] } };
        if (cnnelm_net_run_op(net, &k, -1, err))
            return -1;
    }
    int lowest_conv = 0;
    while (a->layer[lowest_conv].kind != CNNELM_LAYER_CONV)
        lowest_conv++;
    for (int i = a->n_layers - 1; i >= lowest_conv; i--) {
        const cnnelm_layer *ly = &a->layer[i];
        const cnnelm_buffer *in = i > 0 ? net->act[i - 1] : net->x;
        if (ly->kind == CNNELM_LAYER_POOL) {
            cnnelm_pool_shape s = { n, ly->in_c, ly->in_h, ly->in_w, ly->size };
            cnnelm_op_call k = { .op = CNNELM_OP_POOL_BACKWARD, .pool = s, .mode = a->pooling,
                                 .buf = { (cnnelm_buffer *)in, net->g[cur], net->g[1 - cur] } };
            if (cnnelm_net_run_op(net, &k, i, err))
                return -1;
            cur = 1 - cur;
            continue;
        }
        size_t count = (size_t)n * ly->out_c * ly->out_h * ly->out_w;
        cnnelm_op_call ab = { .op = CNNELM_OP_ACT_BACKWARD, .act = a->activation, .count = count,
                              .buf = { net->act[i], net->g[cur], net->g[cur] } };
        if (cnnelm_net_run_op(net, &ab, i, err))
            return -1;
        cnnelm_conv_shape s = { n, ly->in_c, ly->in_h, ly->in_w, ly->out_c, a->kernel };
        cnnelm_op_call bf = { .op = CNNELM_OP_CONV_BACKWARD_FILTER, .conv = s, .accumulate = accumulate,
                              .buf = { (cnnelm_buffer *)in, net->g[cur], net->dw[i], net->db[i] } };
        if (cnnelm_net_run_op(net, &bf, i, err))
            return -1;
        if (i > lowest_conv) {
            cnnelm_op_call bd = { .op = CNNELM_OP_CONV_BACKWARD_DATA, .conv = s,
                                  .buf = { net->g[cur], net->w[i], net->g[1 - cur] } };
            if (cnnelm_net_run_op(net, &bd, i, err))
                return -1;
            cur = 1 - cur;
        }
    }
    return 0;
}

int cnnelm_net_read_grads(cnnelm_net *net, float *grads, cnnelm_error *err)
{
    const cnnelm_arch *a = &net->arch;
    for (int i = 0; i < a->n_layers; i++) {
        const cnnelm_layer *ly = &a->layer[i];
        if (ly->kind != CNNELM_LAYER_CONV)
            continue;
        size_t nw = (size_t)ly->out_c * ly->in_c * a->kernel * a->kernel;
        READ(net->dw[i], grads + ly->w_offset, nw * sizeof(float));
        READ(net->db[i], grads + ly->b_offset, (size_t)ly->out_c * sizeof(float));
    }
    return 0;
}

/* Every call a run makes, at the full chunk, checked and planned once: where each op runs is
 * decided here (supports()), and the fallbacks' reference buffers are made now, not per call. */
int cnnelm_net_plan_all(cnnelm_net *net, cnnelm_error *err)
{
    net->planning = 1;
    net->n = net->chunk;
    const cnnelm_arch *a = &net->arch;
    int rc = 0;
    for (int s = 0; s < net->n_slots && rc == 0; s++) {
        net->x = net->xs[s];
        net->t = net->ts[s];
        cnnelm_op_call acc = { .op = CNNELM_OP_ELM_ACCUMULATE, .n = net->n, .l = a->hidden,
                               .c = a->classes, .buf = { cnnelm_net_hidden_buffer(net), net->t, net->u, net->v } };
        cnnelm_op_call pr = { .op = CNNELM_OP_ELM_PREDICT, .n = net->n, .l = a->hidden,
                              .c = a->classes, .buf = { cnnelm_net_hidden_buffer(net), net->beta, net->y } };
        cnnelm_op_call sv = { .op = CNNELM_OP_ELM_SOLVE, .l = a->hidden, .c = a->classes,
                              .lambda = 1.0, .buf = { net->u, net->v, net->beta } };
        /* multi-scale groups and -sqrt have no backward pass (cnnelm_net_check_backprop) */
        rc = forward_layers(net, err) || cnnelm_net_run_op(net, &acc, -1, err) || cnnelm_net_run_op(net, &pr, -1, err) ||
             cnnelm_net_run_op(net, &sv, -1, err) ||
             (cnnelm_net_check_backprop(a, NULL) == 0 &&
              (backward_layers(net, 0, err) || backward_layers(net, 1, err)));
    }
    net->planning = 0;
    net->n = 0;
    net->x = net->xs[0];
    net->t = net->ts[0];
    return rc ? -1 : 0;
}

uint32_t cnnelm_net_planned_fallbacks(const cnnelm_net *net)
{
    return net->ops.planned_fallback;
}
