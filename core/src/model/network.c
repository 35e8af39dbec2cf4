/* cnnelm network on one backend context: opening it (the device buffers and host staging sized
 * for one chunk, then every call planned once), closing it, and the kernels and beta written to
 * the device. The runs (forward, ELM products, back-propagation) are in network_run.c, the
 * multi-scale and "-sqrt" host step in network_features.c. */
#include "model/network.h"
#include "model/network_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Turns a backend status into a message naming the device, the op and the backend's reason. */
static int op_fail(cnnelm_net *net, cnnelm_status st, const char *op, int layer, cnnelm_error *err)
{
    if (st == CNNELM_ERR_DEVICE)
        net->device_lost = 1;
    const char *why = net->be->last_error(net->ctx);
    if (layer >= 0)
        return cnnelm_fail(err, "%s: %s (layer %d) failed: %s: %s", net->where, op, layer + 1,
                           cnnelm_status_name(st), why && *why ? why : "no detail");
    return cnnelm_fail(err, "%s: %s failed: %s: %s", net->where, op, cnnelm_status_name(st),
                       why && *why ? why : "no detail");
}

/* Every device call is watched (watchdog.h): a call the pool gave up on reads as a lost device. */
#define CALL(expr, op, layer)                                            \
    do {                                                                 \
        cnnelm_watch_begin(&net->watch, op, layer, NULL);                \
        cnnelm_status st_ = (expr);                                      \
        if (cnnelm_watch_end(&net->watch) != 0)                          \
            return watch_fail(net, op, err);                             \
        if (st_ != CNNELM_OK)                                            \
            return op_fail(net, st_, op, layer, err);                    \
    } while (0)

static int watch_fail(cnnelm_net *net, const char *op, cnnelm_error *err)
{
    net->device_lost = 1;
    return cnnelm_fail(err, "%s: %s: the device was given up on (workers[i].op_timeout)", net->where, op);
}

int cnnelm_net_alloc(cnnelm_net *net, cnnelm_buffer **b, size_t floats, cnnelm_error *err)
{
    CALL(cnnelm_op_alloc(&net->ops, floats * sizeof(float), b), "buffer_alloc", -1);
    return 0;
}

/* A transfer (or fill, sync) through the op layer, which checks its range. */
int cnnelm_net_xfer_fail(cnnelm_net *net, cnnelm_status st, const char *what, const char *why,
                         cnnelm_error *err)
{
    net->device_lost |= st == CNNELM_ERR_DEVICE;
    return cnnelm_fail(err, "%s: %s failed: %s: %s", net->where, what, cnnelm_status_name(st),
                       why[0] ? why : "no detail");
}

int cnnelm_net_open(cnnelm_net *net, const cnnelm_plugin *plugin, int device, int threads,
                    const cnnelm_arch *arch, int chunk, const cnnelm_plugin *reference,
                    cnnelm_error *err)
{
    cnnelm_reference_source src = { .plugin = reference };
    return cnnelm_net_open_ex(net, plugin, device, threads, arch, chunk, &src, err);
}

int cnnelm_net_open_ex(cnnelm_net *net, const cnnelm_plugin *plugin, int device, int threads,
                       const cnnelm_arch *arch, int chunk, const cnnelm_reference_source *reference,
                       cnnelm_error *err)
{
    memset(net, 0, sizeof *net);
    net->be = plugin->ops;
    net->arch = *arch;
    net->chunk = chunk;
    snprintf(net->where, sizeof net->where, "%s:%d", plugin->name, device);
    int count = 0;
    char why[512] = "";
    cnnelm_status st = cnnelm_plugin_device_count(plugin, &count, why, sizeof why);
    if (st != CNNELM_OK)
        return cnnelm_fail(err, "backend '%s' cannot count its devices: %s: %s", plugin->name,
                           cnnelm_status_name(st), why[0] ? why : "no detail");
    if (device < 0 || device >= count)
        return cnnelm_fail(err, "backend '%s' has no device %d (it has %d; see `cnnelm devices`)",
                           plugin->name, device, count);
    st = cnnelm_plugin_context_open(plugin, device, threads, &net->ctx, why, sizeof why);
    if (st != CNNELM_OK || !net->ctx) {
        net->ctx = NULL;
        return cnnelm_fail(err, "%s: cannot open a context: %s: %s", net->where,
                           cnnelm_status_name(st), why[0] ? why : "no detail");
    }
    net->ops = (cnnelm_opctx){ .be = net->be, .ctx = net->ctx, .source = *reference,
                               .reference = reference->plugin, .threads = threads };
    /* Two input buffers when uploads can be queued: chunk i+1 is converted and uploaded while
     * the device still computes chunk i. */
    net->n_slots = CNNELM_BACKEND_HAS(net->be, buffer_write_async) &&
                   CNNELM_BACKEND_HAS(net->be, synchronize) ? 2 : 1;
    if (cnnelm_net_apply_limits(net, plugin, device, err) != 0)
        goto fail;
    size_t C = (size_t)arch->classes, L = (size_t)arch->hidden, N = (size_t)net->chunk;
    size_t in = (size_t)arch->in_c * arch->in_h * arch->in_w;
    for (int s = 0; s < net->n_slots; s++)
        if (cnnelm_net_alloc(net, &net->xs[s], N * in, err) || cnnelm_net_alloc(net, &net->ts[s], N * C, err))
            goto fail;
    net->x = net->xs[0];
    net->t = net->ts[0];
    for (int i = 0; i < arch->n_layers; i++) {
        const cnnelm_layer *ly = &arch->layer[i];
        if (cnnelm_net_alloc(net, &net->act[i], N * ly->out_c * ly->out_h * ly->out_w, err) != 0)
            goto fail;
        if (ly->kind == CNNELM_LAYER_CONV) {
            size_t nw = (size_t)ly->out_c * ly->in_c * arch->kernel * arch->kernel;
            if (cnnelm_net_alloc(net, &net->w[i], nw, err) || cnnelm_net_alloc(net, &net->b[i], ly->out_c, err) ||
                cnnelm_net_alloc(net, &net->dw[i], nw, err) || cnnelm_net_alloc(net, &net->db[i], ly->out_c, err))
                goto fail;
        }
    }
    if (arch->elm_activation != CNNELM_ACT_IDENTITY && cnnelm_net_alloc(net, &net->h, N * L, err) != 0)
        goto fail;
    if (arch->n_scales || arch->sqrt_features) {
        if (cnnelm_net_alloc(net, &net->hcat, N * L, err) != 0)
            goto fail;
        /* one pool's block read back before it is interleaved: a group's only */
        net->host_scale = arch->n_scales ? malloc(N * L * sizeof(float)) : NULL;
        net->host_h = malloc(N * L * sizeof(float));
        if ((arch->n_scales && !net->host_scale) || !net->host_h) {
            cnnelm_fail(err, "out of memory for a chunk of %d examples", chunk);
            goto fail;
        }
    }
    if (cnnelm_net_alloc(net, &net->g[0], N * arch->max_maps, err) ||
        cnnelm_net_alloc(net, &net->g[1], N * arch->max_maps, err) ||
        cnnelm_net_alloc(net, &net->u, L * L, err) || cnnelm_net_alloc(net, &net->v, L * C, err) ||
        cnnelm_net_alloc(net, &net->beta, L * C, err) || cnnelm_net_alloc(net, &net->y, N * C, err) ||
        cnnelm_net_alloc(net, &net->e, N * C, err))
        goto fail;
    for (int s = 0; s < net->n_slots; s++) {
        net->host_xs[s] = malloc(N * in * sizeof(float));
        net->host_ts[s] = malloc(N * C * sizeof(float));
        net->host_bytes[s] = malloc(N * in);
        if (!net->host_xs[s] || !net->host_ts[s] || !net->host_bytes[s]) {
            cnnelm_fail(err, "out of memory for a chunk of %d examples", chunk);
            goto fail;
        }
    }
    net->host_x = net->host_xs[0];
    net->host_t = net->host_ts[0];
    /* U and V's read-back, then room for a beta (cnnelm_net_solve) */
    net->host_uv = malloc(cnnelm_net_sums_stage_bytes(net, sizeof(float)) + L * C * sizeof(float));
    for (int s = 0; s < net->n_slots; s++)
        if (!(net->labels_s[s] = malloc(N)))
            break;
    net->labels = net->labels_s[0];
    if (!net->host_uv || !net->labels_s[0] || !net->labels_s[net->n_slots - 1]) {
        cnnelm_fail(err, "out of memory for a chunk of %d examples", chunk);
        goto fail;
    }
    if (cnnelm_net_plan_all(net, err) != 0)
        goto fail;
    return 0;
fail:
    cnnelm_net_close(net);
    return -1;
}

void cnnelm_net_close(cnnelm_net *net)
{
    cnnelm_net_loader_close(net); /* before the host slots it writes go */
    cnnelm_opctx_close(&net->ops);
    if (net->ctx)
        net->be->context_close(net->ctx); /* frees every buffer of the context */
    for (int s = 0; s < 2; s++) {
        free(net->host_xs[s]);
        free(net->host_ts[s]);
        free(net->labels_s[s]);
        free(net->host_bytes[s]);
    }
    free(net->host_uv);
    free(net->host_sums);
    free(net->host_scale);
    free(net->host_h);
    memset(net, 0, sizeof *net);
}

int cnnelm_net_set_params(cnnelm_net *net, const float *params, cnnelm_error *err)
{
    const cnnelm_arch *a = &net->arch;
    for (int i = 0; i < a->n_layers; i++) {
        const cnnelm_layer *ly = &a->layer[i];
        if (ly->kind != CNNELM_LAYER_CONV)
            continue;
        size_t nw = (size_t)ly->out_c * ly->in_c * a->kernel * a->kernel;
        WRITE(net->w[i], params + ly->w_offset, nw * sizeof(float));
        WRITE(net->b[i], params + ly->b_offset, (size_t)ly->out_c * sizeof(float));
    }
    return 0;
}

int cnnelm_net_set_beta(cnnelm_net *net, const float *beta, cnnelm_error *err)
{
    size_t bytes = (size_t)net->arch.hidden * net->arch.classes * sizeof(float);
    WRITE(net->beta, beta, bytes);
    return 0;
}
