/* cnnelm CPU backend: pooling (mean, max) and element-wise activations, forward and backward,
 * split over images (pooling) or fixed chunks (activations) across the context's threads. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <string.h>

#include "cpu_internal.h"

/* ---- pooling ----------------------------------------------------------------------------- */

typedef struct pool_job {
    const cnnelm_pool_shape *s;
    cnnelm_pooling mode;
    const float *x, *dy;
    float *y, *dx;
} pool_job;

/* Mean of 2x2 blocks: the layer every default architecture uses, written so it vectorises. */
static void mean2_plane(const float *restrict x, float *restrict y, int h, int w)
{
    int oh = h / 2, ow = w / 2;
    for (int r = 0; r < oh; r++) {
        const float *restrict a = x + (size_t)2 * r * w, *restrict b = a + w;
        float *restrict out = y + (size_t)r * ow;
        for (int j = 0; j < ow; j++)
            out[j] = 0.25f * ((a[2 * j] + a[2 * j + 1]) + (b[2 * j] + b[2 * j + 1]));
    }
}

static void pool_fwd_plane(const float *x, float *y, int h, int w, int s, cnnelm_pooling mode)
{
    int oh = h / s, ow = w / s;
    if (mode == CNNELM_POOL_MEAN && s == 2) {
        mean2_plane(x, y, h, w);
        return;
    }
    float inv = 1.0f / (float)(s * s);
    for (int r = 0; r < oh; r++) {
        for (int j = 0; j < ow; j++) {
            const float *blk = x + (size_t)r * s * w + (size_t)j * s;
            float v;
            if (mode == CNNELM_POOL_MEAN) {
                v = 0.0f;
                for (int p = 0; p < s; p++)
                    for (int q = 0; q < s; q++)
                        v += blk[(size_t)p * w + q];
                v *= inv;
            } else {
                v = blk[0];
                for (int p = 0; p < s; p++)
                    for (int q = 0; q < s; q++)
                        if (blk[(size_t)p * w + q] > v)
                            v = blk[(size_t)p * w + q];
            }
            y[(size_t)r * ow + j] = v;
        }
    }
}

static void pool_bwd_plane(const float *x, const float *dy, float *dx, int h, int w, int s,
                           cnnelm_pooling mode)
{
    int oh = h / s, ow = w / s;
    if (mode == CNNELM_POOL_MEAN) {
        float inv = 1.0f / (float)(s * s);
        for (int r = 0; r < oh; r++) {
            const float *restrict g = dy + (size_t)r * ow;
            float *restrict out = dx + (size_t)r * s * w;
            if (s == 2) {
                for (int j = 0; j < ow; j++) {
                    float v = 0.25f * g[j];
                    out[2 * j] = v;
                    out[2 * j + 1] = v;
                }
            } else {
                for (int j = 0; j < w; j++)
                    out[j] = inv * g[j / s];
            }
            for (int p = 1; p < s; p++) /* the block's other rows are the same */
                memcpy(out + (size_t)p * w, out, sizeof(float) * (size_t)w);
        }
        return;
    }
    memset(dx, 0, sizeof(float) * (size_t)h * w);
    for (int r = 0; r < oh; r++) {
        for (int j = 0; j < ow; j++) {
            size_t base = (size_t)r * s * w + (size_t)j * s, best = base;
            float v = x[base];
            for (int p = 0; p < s; p++)
                for (int q = 0; q < s; q++) {
                    size_t at = base + (size_t)p * w + q;
                    if (x[at] > v) {
                        v = x[at];
                        best = at;
                    }
                }
            dx[best] = dy[(size_t)r * ow + j];
        }
    }
}

static void pool_task(void *arg, int begin, int end, int thread)
{
    (void)thread;
    pool_job *j = arg;
    const cnnelm_pool_shape *s = j->s;
    size_t in_plane = (size_t)s->h * s->w, out_plane = (size_t)(s->h / s->s) * (s->w / s->s);
    for (size_t p = (size_t)begin * s->c; p < (size_t)end * s->c; p++) {
        if (j->y)
            pool_fwd_plane(j->x + p * in_plane, j->y + p * out_plane, s->h, s->w, s->s, j->mode);
        else
            pool_bwd_plane(j->x + p * in_plane, j->dy + p * out_plane, j->dx + p * in_plane, s->h,
                           s->w, s->s, j->mode);
    }
}

cnnelm_status cpu_pool_forward(cnnelm_backend_ctx *ctx, const cnnelm_pool_shape *s,
                               cnnelm_pooling mode, const float *x, float *y)
{
    pool_job j = { s, mode, x, NULL, y, NULL };
    cpu_parallel(ctx, s->n, pool_task, &j);
    return CNNELM_OK;
}

cnnelm_status cpu_pool_backward(cnnelm_backend_ctx *ctx, const cnnelm_pool_shape *s,
                                cnnelm_pooling mode, const float *x, const float *dy, float *dx)
{
    pool_job j = { s, mode, x, dy, NULL, dx };
    cpu_parallel(ctx, s->n, pool_task, &j);
    return CNNELM_OK;
}

/* ---- activations ------------------------------------------------------------------------- */

#define ACT_CHUNK 16384

void cpu_act_apply(cnnelm_activation act, float *y, size_t count)
{
    if (act == CNNELM_ACT_RELU) {
        for (size_t i = 0; i < count; i++)
            y[i] = y[i] > 0.0f ? y[i] : 0.0f;
    } else if (act == CNNELM_ACT_OPTTANH) {
        for (size_t i = 0; i < count; i++)
            y[i] = CPU_OPTTANH_A * tanhf(CPU_OPTTANH_B * y[i]);
    }
}

typedef struct act_job {
    cnnelm_activation act;
    size_t count;
    const float *x, *y, *dy;
    float *out;
    int backward;
} act_job;

static void act_task(void *arg, int begin, int end, int thread)
{
    (void)thread;
    act_job *j = arg;
    size_t i0 = (size_t)begin * ACT_CHUNK, i1 = (size_t)end * ACT_CHUNK;
    if (i1 > j->count)
        i1 = j->count;
    float *out = j->out;
    if (!j->backward) {
        const float *x = j->x;
        if (j->act == CNNELM_ACT_RELU)
            for (size_t i = i0; i < i1; i++)
                out[i] = x[i] > 0.0f ? x[i] : 0.0f;
        else if (j->act == CNNELM_ACT_OPTTANH)
            for (size_t i = i0; i < i1; i++)
                out[i] = CPU_OPTTANH_A * tanhf(CPU_OPTTANH_B * x[i]);
        else if (out != x)
            memcpy(out + i0, x + i0, sizeof(float) * (i1 - i0));
        return;
    }
    const float *y = j->y, *dy = j->dy;
    if (j->act == CNNELM_ACT_RELU)
        for (size_t i = i0; i < i1; i++)
            out[i] = y[i] > 0.0f ? dy[i] : 0.0f;
    else if (j->act == CNNELM_ACT_OPTTANH)
        for (size_t i = i0; i < i1; i++)
            out[i] = dy[i] * (CPU_OPTTANH_B * (CPU_OPTTANH_A - y[i] * y[i] / CPU_OPTTANH_A));
    else if (out != dy)
        memcpy(out + i0, dy + i0, sizeof(float) * (i1 - i0));
}

static int act_tasks(size_t count)
{
    size_t t = (count + ACT_CHUNK - 1) / ACT_CHUNK;
    return t > 0x7fffffff ? 0x7fffffff : (int)t;
}

cnnelm_status cpu_act_forward(cnnelm_backend_ctx *ctx, cnnelm_activation act, size_t count,
                              const float *x, float *y)
{
    if ((size_t)act_tasks(count) * ACT_CHUNK < count)
        return cpu_fail(ctx, CNNELM_ERR_UNSUPPORTED, "activation_forward: count %zu is too large",
                        count);
    act_job j = { act, count, x, NULL, NULL, y, 0 };
    cpu_parallel(ctx, act_tasks(count), act_task, &j);
    return CNNELM_OK;
}

cnnelm_status cpu_act_backward(cnnelm_backend_ctx *ctx, cnnelm_activation act, size_t count,
                               const float *y, const float *dy, float *dx)
{
    if ((size_t)act_tasks(count) * ACT_CHUNK < count)
        return cpu_fail(ctx, CNNELM_ERR_UNSUPPORTED, "activation_backward: count %zu is too large",
                        count);
    act_job j = { act, count, NULL, y, dy, dx, 1 };
    cpu_parallel(ctx, act_tasks(count), act_task, &j);
    return CNNELM_OK;
}
