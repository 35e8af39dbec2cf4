/* cnnelm network, the host's step between the layers and H: a multi-scale group's pools side by
 * side in each example's row, and the "-sqrt" power normalisation (network_run.c calls it after
 * the forward layers). */
#include "model/network.h"
#include "model/network_internal.h"

#include <math.h>
#include <string.h>

/* A multi-scale group's pools are separate N x (maps) blocks on the device; H wants them side
 * by side in each example's row, and "-sqrt" wants a square root no op has. Without "-sqrt" and
 * with buffer_copy the device does the first; otherwise the host does both:
 * two copies of N x L floats per chunk (one without a group), small beside the N x L^2 of the U
 * product that follows. */
int cnnelm_net_gather_hidden(cnnelm_net *net, cnnelm_error *err)
{
    const cnnelm_arch *a = &net->arch;
    size_t n = (size_t)net->n, L = (size_t)a->hidden;
    int first = a->n_scales ? a->n_layers - a->n_scales : a->n_layers - 1;
    if (!a->sqrt_features && cnnelm_op_can_copy(&net->ops)) {
        /* a group without "-sqrt" needs no host math: each example's pool rows are copied into
         * place on the device (buffer_copy), nothing crosses to the host */
        for (int i = first; i < a->n_layers; i++) {
            const cnnelm_layer *ly = &a->layer[i];
            size_t per = (size_t)ly->out_c * ly->out_h * ly->out_w * sizeof(float);
            for (size_t j = 0; j < n; j++)
                XFER("buffer_copy", cnnelm_op_copy, net->hcat,
                     (j * L + (size_t)ly->h_offset) * sizeof(float), net->act[i], j * per, per);
        }
        return 0;
    }
    for (int i = first; i < a->n_layers; i++) {
        const cnnelm_layer *ly = &a->layer[i];
        size_t per = (size_t)ly->out_c * ly->out_h * ly->out_w;
        if (per == L) { /* one block (no group, "-sqrt" only): it is H's rows already */
            READ(net->act[i], net->host_h, n * L * sizeof(float));
            continue;
        }
        READ(net->act[i], net->host_scale, n * per * sizeof(float));
        for (size_t j = 0; j < n; j++)
            memcpy(net->host_h + j * L + ly->h_offset, net->host_scale + j * per, per * sizeof(float));
    }
    if (a->sqrt_features)
        /* power normalisation: large pooled responses compressed, so that no few features
         * dominate the linear ELM (+0.5 points on Fashion-MNIST at L = 2304) */
        for (size_t q = 0; q < n * L; q++) {
            float v = net->host_h[q];
            net->host_h[q] = v < 0 ? -sqrtf(-v) : sqrtf(v);
        }
    WRITE(net->hcat, net->host_h, n * L * sizeof(float));
    return 0;
}
