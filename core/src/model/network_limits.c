/* cnnelm network, the device's limits: what device_limits (or, from a 1.0 plugin, device_info)
 * says about the largest allocation and the preferred transfer size, applied when a network
 * opens: the chunk is lowered until every per-chunk buffer fits, a U that cannot fit is
 * refused, and the op layer slices its copies to the preferred size. */
#include "model/network.h"
#include "model/network_internal.h"

#include <stdio.h>

/* A device that is not host memory, when it does not say: transfers of 1 MiB, not ~30 blocking
 * calls per MiB. */
#define BUS_TRANSFER_BYTES ((uint64_t)1 << 20)

/* The device's limits: device_limits where the plugin has it, else device_info's
 * max_alloc_bytes; 0 for anything unknown. No preferred transfer size: the op layer's default
 * (host-memory slices) for a CPU device, BUS_TRANSFER_BYTES for any other kind. */
static void query(const cnnelm_plugin *plugin, int device, uint64_t *max_alloc, uint64_t *transfer)
{
    *max_alloc = *transfer = 0;
    const cnnelm_backend *be = plugin->ops;
    cnnelm_device_info info = { .kind = CNNELM_DEVICE_CPU };
    int have_info = cnnelm_plugin_device_info(plugin, device, &info) == CNNELM_OK;
    cnnelm_device_limits lim = { .struct_size = sizeof lim };
    if (CNNELM_BACKEND_HAS(be, device_limits) &&
        be->device_limits(plugin->state, device, &lim) == CNNELM_OK) {
        *max_alloc = lim.max_alloc_bytes;
        *transfer = lim.preferred_transfer_bytes;
    } else if (have_info) {
        *max_alloc = info.max_alloc_bytes;
    }
    if (*transfer == 0 && have_info && info.kind != CNNELM_DEVICE_CPU)
        *transfer = BUS_TRANSFER_BYTES;
}

/* Floats per example of the largest buffer that grows with the chunk (network.c allocates
 * these: input, targets, each layer's output, H, the gradients' ping-pong, Y and E). */
static size_t per_example_floats(const cnnelm_arch *a)
{
    size_t most = (size_t)a->in_c * a->in_h * a->in_w;
    if ((size_t)a->classes > most)
        most = (size_t)a->classes;
    for (int i = 0; i < a->n_layers; i++) {
        const cnnelm_layer *ly = &a->layer[i];
        size_t f = (size_t)ly->out_c * ly->out_h * ly->out_w;
        most = f > most ? f : most;
    }
    most = (size_t)a->hidden > most ? (size_t)a->hidden : most;
    return (size_t)a->max_maps > most ? (size_t)a->max_maps : most;
}

int cnnelm_net_apply_limits(cnnelm_net *net, const cnnelm_plugin *plugin, int device,
                            cnnelm_error *err)
{
    uint64_t max_alloc, transfer;
    query(plugin, device, &max_alloc, &transfer);
    net->max_alloc = max_alloc;
    net->ops.transfer_bytes = (size_t)transfer;
    if (max_alloc == 0)
        return 0;
    const cnnelm_arch *a = &net->arch;
    double mib = 1.0 / (1024.0 * 1024.0);
    uint64_t L = (uint64_t)a->hidden, u_bytes = L * L * sizeof(float);
    if (u_bytes > max_alloc)
        return cnnelm_fail(err, "%s: U (%llu x %llu floats, %.1f MiB) is larger than the device's "
                           "largest allocation (%.1f MiB): use fewer hidden features (the last "
                           "layer's maps) or another device", net->where, (unsigned long long)L,
                           (unsigned long long)L, (double)u_bytes * mib, (double)max_alloc * mib);
    uint64_t per = (uint64_t)per_example_floats(a) * sizeof(float);
    uint64_t fits = max_alloc / per;
    if (fits < 1)
        return cnnelm_fail(err, "%s: one example's buffer (%llu bytes) is larger than the device's "
                           "largest allocation (%llu bytes)", net->where, (unsigned long long)per,
                           (unsigned long long)max_alloc);
    if ((uint64_t)net->chunk > fits) {
        net->chunk_requested = net->chunk;
        net->chunk = (int)fits; /* the result changes only by float rounding (docs/config.md) */
    }
    return 0;
}

int cnnelm_net_check_alloc(const cnnelm_net *net, size_t bytes, const char *what, cnnelm_error *err)
{
    if (net->max_alloc == 0 || bytes <= net->max_alloc)
        return 0;
    double mib = 1.0 / (1024.0 * 1024.0);
    return cnnelm_fail(err, "%s: %s (%.1f MiB) is larger than the device's largest allocation "
                       "(%.1f MiB)", net->where, what, (double)bytes * mib,
                       (double)net->max_alloc * mib);
}
