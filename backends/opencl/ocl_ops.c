/* cnnelm OpenCL backend: the ops that run the kernels of cl/cnnelm.cl, and their launch tuning:
 * a *_local variant that stages a whole image in local memory where it fits, the tiled kernel
 * otherwise; work-group sizes from the device and the kernel. */
#define _GNU_SOURCE
#define CL_TARGET_OPENCL_VERSION 120
#include <stdio.h>

#include "ocl_internal.h"

const char *const ocl_kernel_names[K_COUNT] = {
    "conv_forward", "conv_backward_data", "conv_backward_filter", "conv_backward_bias",
    "pool_forward", "pool_backward", "activation_forward", "activation_backward",
    "conv_forward_local", "conv_backward_data_local", "conv_backward_filter_local", "sum_chunks",
};

static size_t round_up(size_t v, size_t m)
{
    return (v + m - 1) / m * m;
}

static cnnelm_status launch(cnnelm_backend_ctx *c, int k, cl_uint dims, const size_t *global,
                            const size_t *local)
{
    CL_TRY(c, clEnqueueNDRangeKernel(c->queue, c->kernel[k], dims, NULL, global, local, 0, NULL, NULL),
           ocl_kernel_names[k]);
    return CNNELM_OK;
}

#define ARG(k, i, v) CL_TRY(c, clSetKernelArg(c->kernel[k], (i), sizeof(v), &(v)), "clSetKernelArg")
#define LOCAL_ARG(k, i, bytes) CL_TRY(c, clSetKernelArg(c->kernel[k], (i), (bytes), NULL), "clSetKernelArg")

/* Work-items per work-group for the *_local kernels: a GPU wants at most 256; PoCL runs a whole
 * work-group on one core, where a bigger group shares one staged image among more work. */
static size_t local_cap(const cnnelm_backend_ctx *c, int k)
{
    size_t cap = c->is_cpu ? 1024 : 256;
    return c->kernel_group[k] && c->kernel_group[k] < cap ? c->kernel_group[k] : cap;
}

/* Local memory the *_local kernels may use: room for two groups per compute unit on a GPU. */
static size_t local_budget(const cnnelm_backend_ctx *c)
{
    size_t b = (size_t)(c->local_mem / 4 * 3);
    return b > 32768 ? 32768 : b;
}

/* The largest divisor d of total with base * d <= cap; 0 when not even d = 1 fits. */
static int fit_divisor(int total, size_t base, size_t cap)
{
    for (int d = total; d >= 1; d--)
        if (total % d == 0 && base * (size_t)d <= cap)
            return d;
    return 0;
}

static cnnelm_status ensure_scratch(cnnelm_backend_ctx *c, size_t bytes)
{
    if (c->scratch_bytes >= bytes)
        return CNNELM_OK;
    if (c->scratch)
        clReleaseMemObject(c->scratch); /* queued kernels keep it alive until they finish */
    c->scratch = NULL;
    c->scratch_bytes = 0;
    cl_int e;
    c->scratch = clCreateBuffer(c->context, CL_MEM_READ_WRITE, bytes, NULL, &e);
    if (e != CL_SUCCESS)
        return ocl_fail(c, ocl_status_of(e), "%s: cannot allocate %zu bytes of scratch (OpenCL error %d)",
                    c->name, bytes, e);
    c->scratch_bytes = bytes;
    return CNNELM_OK;
}

/* ---- ops ---- */

cnnelm_status ocl_conv2d_forward(cnnelm_backend_ctx *c, const cnnelm_conv_shape *s,
                                 cnnelm_activation act, const cnnelm_buffer *x,
                                 const cnnelm_buffer *w, const cnnelm_buffer *b, cnnelm_buffer *y)
{
    int oh = s->h - s->k + 1, ow = s->w - s->k + 1, a = (int)act;
    int vw = c->vw, nvx = (ow + vw - 1) / vw;
    size_t lbytes = (size_t)s->c_in * s->h * (size_t)(nvx * vw + s->k - 1) * sizeof(float);
    int nq = (s->c_out + 3) / 4, ob = fit_divisor(nq, (size_t)nvx * oh, local_cap(c, K_CONV_F_L));
    if (ob && lbytes <= local_budget(c)) { /* the whole image in local memory */
        ARG(K_CONV_F_L, 0, x->mem);
        ARG(K_CONV_F_L, 1, w->mem);
        ARG(K_CONV_F_L, 2, b->mem);
        ARG(K_CONV_F_L, 3, y->mem);
        ARG(K_CONV_F_L, 4, s->c_in);
        ARG(K_CONV_F_L, 5, s->h);
        ARG(K_CONV_F_L, 6, s->w);
        ARG(K_CONV_F_L, 7, s->c_out);
        ARG(K_CONV_F_L, 8, s->k);
        ARG(K_CONV_F_L, 9, a);
        LOCAL_ARG(K_CONV_F_L, 10, lbytes);
        size_t global[3] = { (size_t)nvx, (size_t)oh, (size_t)s->n * nq };
        size_t local[3] = { (size_t)nvx, (size_t)oh, (size_t)ob };
        return launch(c, K_CONV_F_L, 3, global, local);
    }
    ARG(K_CONV_F, 0, x->mem);
    ARG(K_CONV_F, 1, w->mem);
    ARG(K_CONV_F, 2, b->mem);
    ARG(K_CONV_F, 3, y->mem);
    ARG(K_CONV_F, 4, s->c_in);
    ARG(K_CONV_F, 5, s->h);
    ARG(K_CONV_F, 6, s->w);
    ARG(K_CONV_F, 7, s->c_out);
    ARG(K_CONV_F, 8, s->k);
    ARG(K_CONV_F, 9, a);
    ARG(K_CONV_F, 10, s->n);
    /* images per work-group: as many as the input patches of all maps fit in local memory
     * (at most 4); when not even one image's fit, the CPU reference takes this shape */
    size_t side = (size_t)TILE + (size_t)s->k - 1, per_image = (size_t)s->c_in * side * side * sizeof(float);
    size_t budget = c->local_mem / 2 < 16384 ? c->local_mem / 2 : 16384, imgs = 4;
    while (imgs > 1 && (imgs * per_image > budget || imgs * TILE * TILE > c->max_group))
        imgs /= 2;
    if (per_image > budget || TILE * TILE > c->max_group)
        return ocl_fail(c, CNNELM_ERR_UNSUPPORTED, "conv2d_forward: %d input maps with %dx%d kernels need "
                    "%zu bytes of local memory (the device gives %llu)", s->c_in, s->k, s->k, per_image,
                    (unsigned long long)c->local_mem);
    CL_TRY(c, clSetKernelArg(c->kernel[K_CONV_F], 11, imgs * per_image, NULL), "clSetKernelArg");
    size_t global[3] = { round_up((size_t)ow, TILE), round_up((size_t)oh, TILE), round_up((size_t)s->n, imgs) };
    size_t local[3] = { TILE, TILE, imgs };
    return launch(c, K_CONV_F, 3, global, local);
}

cnnelm_status ocl_conv2d_backward_data(cnnelm_backend_ctx *c, const cnnelm_conv_shape *s,
                                       const cnnelm_buffer *dy, const cnnelm_buffer *w,
                                       cnnelm_buffer *dx)
{
    int oh = s->h - s->k + 1;
    int vw = c->vw, nvx = (s->w + vw - 1) / vw;
    size_t lbytes = (size_t)s->c_out * (size_t)(oh + 2 * (s->k - 1)) * (size_t)(nvx * vw + s->k - 1) *
                    sizeof(float);
    int nq = (s->c_in + 3) / 4, cb = fit_divisor(nq, (size_t)nvx * s->h, local_cap(c, K_CONV_BD_L));
    if (cb && lbytes <= local_budget(c)) { /* the image's dy, zero-padded, in local memory */
        ARG(K_CONV_BD_L, 0, dy->mem);
        ARG(K_CONV_BD_L, 1, w->mem);
        ARG(K_CONV_BD_L, 2, dx->mem);
        ARG(K_CONV_BD_L, 3, s->c_in);
        ARG(K_CONV_BD_L, 4, s->h);
        ARG(K_CONV_BD_L, 5, s->w);
        ARG(K_CONV_BD_L, 6, s->c_out);
        ARG(K_CONV_BD_L, 7, s->k);
        LOCAL_ARG(K_CONV_BD_L, 8, lbytes);
        size_t global[3] = { (size_t)nvx, (size_t)s->h, (size_t)s->n * nq };
        size_t local[3] = { (size_t)nvx, (size_t)s->h, (size_t)cb };
        return launch(c, K_CONV_BD_L, 3, global, local);
    }
    ARG(K_CONV_BD, 0, dy->mem);
    ARG(K_CONV_BD, 1, w->mem);
    ARG(K_CONV_BD, 2, dx->mem);
    ARG(K_CONV_BD, 3, s->c_in);
    ARG(K_CONV_BD, 4, s->h);
    ARG(K_CONV_BD, 5, s->w);
    ARG(K_CONV_BD, 6, s->c_out);
    ARG(K_CONV_BD, 7, s->k);
    size_t global[3] = { round_up((size_t)s->w, 8), round_up((size_t)s->h, 8), (size_t)s->n * s->c_in };
    size_t local[3] = { 8, 8, 1 };
    return launch(c, K_CONV_BD, 3, global, local);
}

cnnelm_status ocl_conv2d_backward_filter(cnnelm_backend_ctx *c, const cnnelm_conv_shape *s,
                                         const cnnelm_buffer *x, const cnnelm_buffer *dy,
                                         cnnelm_buffer *dw, cnnelm_buffer *db, int accumulate)
{
    cnnelm_status st;
    int oh = s->h - s->k + 1, ow = s->w - s->k + 1, per = oh * ow, acc = accumulate != 0;
    size_t nw = (size_t)s->c_out * s->c_in * s->k * s->k;
    int kk = s->k * s->k, owv = (ow + c->vw - 1) / c->vw * c->vw, pitch = owv + s->k - 1;
    int ob = fit_divisor(s->c_out, (size_t)kk * s->c_in,
                         local_cap(c, K_CONV_BF_L) < 256 ? local_cap(c, K_CONV_BF_L) : 256);
    size_t lbytes = ((size_t)s->c_in * s->h * pitch + (size_t)ob * oh * owv) * sizeof(float);
    if (ob && lbytes <= local_budget(c)) { /* partial sums per chunk of images, then their sum */
        int chunks = s->n < BF_CHUNKS ? s->n : BF_CHUNKS, per_chunk = (s->n + chunks - 1) / chunks;
        chunks = (s->n + per_chunk - 1) / per_chunk;
        int ipb = 1; /* images staged per pass: as many as fit, up to 8 */
        while (ipb < 8 && ipb < per_chunk && (size_t)(ipb + 1) * lbytes <= local_budget(c))
            ipb++;
        lbytes *= (size_t)ipb;
        int row = (int)nw + s->c_out;
        st = ensure_scratch(c, (size_t)chunks * row * sizeof(float));
        if (st != CNNELM_OK)
            return st;
        ARG(K_CONV_BF_L, 0, x->mem);
        ARG(K_CONV_BF_L, 1, dy->mem);
        ARG(K_CONV_BF_L, 2, c->scratch);
        ARG(K_CONV_BF_L, 3, s->n);
        ARG(K_CONV_BF_L, 4, s->c_in);
        ARG(K_CONV_BF_L, 5, s->h);
        ARG(K_CONV_BF_L, 6, s->w);
        ARG(K_CONV_BF_L, 7, s->c_out);
        ARG(K_CONV_BF_L, 8, s->k);
        ARG(K_CONV_BF_L, 9, per_chunk);
        ARG(K_CONV_BF_L, 10, ipb);
        LOCAL_ARG(K_CONV_BF_L, 11, lbytes);
        size_t global[3] = { (size_t)kk, (size_t)s->c_in, (size_t)s->c_out * chunks };
        size_t local[3] = { (size_t)kk, (size_t)s->c_in, (size_t)ob };
        st = launch(c, K_CONV_BF_L, 3, global, local);
        if (st != CNNELM_OK)
            return st;
        int inw = (int)nw;
        ARG(K_SUM_CHUNKS, 0, c->scratch);
        ARG(K_SUM_CHUNKS, 1, dw->mem);
        ARG(K_SUM_CHUNKS, 2, db->mem);
        ARG(K_SUM_CHUNKS, 3, inw);
        ARG(K_SUM_CHUNKS, 4, s->c_out);
        ARG(K_SUM_CHUNKS, 5, chunks);
        ARG(K_SUM_CHUNKS, 6, acc);
        size_t g1 = round_up((size_t)row, 64), l1 = 64;
        return launch(c, K_SUM_CHUNKS, 1, &g1, &l1);
    }
    ARG(K_CONV_BF, 0, x->mem);
    ARG(K_CONV_BF, 1, dy->mem);
    ARG(K_CONV_BF, 2, dw->mem);
    ARG(K_CONV_BF, 3, s->n);
    ARG(K_CONV_BF, 4, s->c_in);
    ARG(K_CONV_BF, 5, s->h);
    ARG(K_CONV_BF, 6, s->w);
    ARG(K_CONV_BF, 7, s->c_out);
    ARG(K_CONV_BF, 8, s->k);
    ARG(K_CONV_BF, 9, acc);
    size_t global = nw * GROUP, local = GROUP;
    st = launch(c, K_CONV_BF, 1, &global, &local);
    if (st != CNNELM_OK)
        return st;
    ARG(K_CONV_BB, 0, dy->mem);
    ARG(K_CONV_BB, 1, db->mem);
    ARG(K_CONV_BB, 2, s->n);
    ARG(K_CONV_BB, 3, s->c_out);
    ARG(K_CONV_BB, 4, per);
    ARG(K_CONV_BB, 5, acc);
    global = (size_t)s->c_out * GROUP;
    return launch(c, K_CONV_BB, 1, &global, &local);
}

cnnelm_status ocl_pool_forward(cnnelm_backend_ctx *c, const cnnelm_pool_shape *s,
                               cnnelm_pooling mode, const cnnelm_buffer *x, cnnelm_buffer *y)
{
    int oh = s->h / s->s, ow = s->w / s->s, is_max = mode == CNNELM_POOL_MAX;
    ARG(K_POOL_F, 0, x->mem);
    ARG(K_POOL_F, 1, y->mem);
    ARG(K_POOL_F, 2, s->h);
    ARG(K_POOL_F, 3, s->w);
    ARG(K_POOL_F, 4, s->s);
    ARG(K_POOL_F, 5, is_max);
    size_t global[3] = { round_up((size_t)ow, 8), round_up((size_t)oh, 8), (size_t)s->n * s->c };
    size_t local[3] = { 8, 8, 1 };
    return launch(c, K_POOL_F, 3, global, c->is_cpu ? NULL : local);
}

cnnelm_status ocl_pool_backward(cnnelm_backend_ctx *c, const cnnelm_pool_shape *s,
                                cnnelm_pooling mode, const cnnelm_buffer *x,
                                const cnnelm_buffer *dy, cnnelm_buffer *dx)
{
    int oh = s->h / s->s, ow = s->w / s->s, is_max = mode == CNNELM_POOL_MAX;
    ARG(K_POOL_B, 0, x->mem);
    ARG(K_POOL_B, 1, dy->mem);
    ARG(K_POOL_B, 2, dx->mem);
    ARG(K_POOL_B, 3, s->h);
    ARG(K_POOL_B, 4, s->w);
    ARG(K_POOL_B, 5, s->s);
    ARG(K_POOL_B, 6, is_max);
    size_t global[3] = { round_up((size_t)ow, 8), round_up((size_t)oh, 8), (size_t)s->n * s->c };
    size_t local[3] = { 8, 8, 1 };
    return launch(c, K_POOL_B, 3, global, c->is_cpu ? NULL : local);
}

cnnelm_status ocl_activation_forward(cnnelm_backend_ctx *c, cnnelm_activation act, size_t count,
                                     const cnnelm_buffer *x, cnnelm_buffer *y)
{
    if (count > 0x7fffffff) /* the kernels index with int: a device limit, not a bad call */
        return ocl_fail(c, CNNELM_ERR_UNSUPPORTED, "activation_forward: %zu elements is more than 2^31 - 1", count);
    int a = (int)act, n = (int)count;
    ARG(K_ACT_F, 0, x->mem);
    ARG(K_ACT_F, 1, y->mem);
    ARG(K_ACT_F, 2, a);
    ARG(K_ACT_F, 3, n);
    size_t local = 64, global = round_up(count, local);
    return launch(c, K_ACT_F, 1, &global, &local);
}

cnnelm_status ocl_activation_backward(cnnelm_backend_ctx *c, cnnelm_activation act, size_t count,
                                      const cnnelm_buffer *y, const cnnelm_buffer *dy,
                                      cnnelm_buffer *dx)
{
    if (count > 0x7fffffff) /* the kernels index with int: a device limit, not a bad call */
        return ocl_fail(c, CNNELM_ERR_UNSUPPORTED, "activation_backward: %zu elements is more than 2^31 - 1", count);
    int a = (int)act, n = (int)count;
    ARG(K_ACT_B, 0, y->mem);
    ARG(K_ACT_B, 1, dy->mem);
    ARG(K_ACT_B, 2, dx->mem);
    ARG(K_ACT_B, 3, a);
    ARG(K_ACT_B, 4, n);
    size_t local = 64, global = round_up(count, local);
    return launch(c, K_ACT_B, 1, &global, &local);
}

/* The kernels index elements with int: larger activations run on the reference. */
cnnelm_status ocl_supports(cnnelm_backend_ctx *c, const cnnelm_op_params *op)
{
    (void)c;
    if ((op->op == CNNELM_OP_ACT_FORWARD || op->op == CNNELM_OP_ACT_BACKWARD) && op->count > 0x7fffffff)
        return CNNELM_ERR_UNSUPPORTED;
    return CNNELM_OK;
}
