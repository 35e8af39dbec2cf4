/* cnnelm backend template: copy this directory to start a plugin for new hardware. It is a
 * complete, working plugin from the start: host-memory buffers and every op in plain loops
 * (slow, obviously correct). Any op slot may be set to NULL, or an op may return
 * CNNELM_ERR_UNSUPPORTED for a shape: that call then runs on the CPU reference (the core moves
 * the data), so training works at every step. Replace the STEPs with your device's code, one
 * at a time, and run
 * `cnnelm plugin-check build/libcnnelm-mydevice.so` after each. The contract of every slot is
 * in cnnelm/backend.h. The core checks every argument before a slot is called (shapes, buffer
 * sizes and owners, aliasing, transfer ranges): this file holds only device code. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cnnelm/backend.h>
#include <cnnelm/backend_util.h> /* the buffer list, CNNELM_PARAMS_HAS */

/* STEP 1: your per-thread state. One context per worker thread; keep the last error message
 * here (plugins never print). A real device adds its handle, queue, compiled programs. */
struct cnnelm_backend_ctx {
    char error[256];
    struct cnnelm_buffer *buffers; /* every live buffer: context_close frees them */
};

/* STEP 2: your device memory. Here: host memory. A real device keeps its allocation handle. */
struct cnnelm_buffer {
    CNNELM_BUFFER_LINKS; /* in its context's list */
    size_t bytes;
    float data[];
};

/* STEP 3: devices. Count and describe what this plugin can drive. */
static cnnelm_status my_device_count(int *count)
{
    *count = 1;
    return CNNELM_OK;
}

static cnnelm_status my_device_info(int index, cnnelm_device_info *info)
{
    if (index != 0)
        return CNNELM_ERR_INVALID_ARGUMENT;
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "my device (template)");
    snprintf(info->vendor, sizeof info->vendor, "my company");
    info->kind = CNNELM_DEVICE_FPGA;
    info->compute_units = 1;
    return CNNELM_OK;
}

/* STEP 4: contexts. Open the device for one worker thread; close frees everything. */
static cnnelm_status my_context_open(int device, const cnnelm_context_params *params,
                                     cnnelm_backend_ctx **out, char *error, size_t error_size)
{
    (void)params;
    *out = NULL;
    if (device != 0) {
        if (error)
            snprintf(error, error_size, "no device %d", device);
        return CNNELM_ERR_INVALID_ARGUMENT;
    }
    *out = calloc(1, sizeof **out);
    return *out ? CNNELM_OK : CNNELM_ERR_OUT_OF_MEMORY;
}

static void my_context_close(cnnelm_backend_ctx *c)
{
    if (c)
        CNNELM_BUFFER_LIST_FREE_ALL(&c->buffers, free);
    free(c);
}

static const char *my_last_error(const cnnelm_backend_ctx *c)
{
    return c ? c->error : "no context";
}

/* STEP 5: buffers. Allocate, free, copy in and out (buffer_read returns when the data is on
 * the host, after all earlier work of the context). */
static cnnelm_status my_buffer_alloc(cnnelm_backend_ctx *c, size_t bytes, cnnelm_buffer **out)
{
    *out = malloc(sizeof **out + bytes);
    if (!*out) {
        snprintf(c->error, sizeof c->error, "cannot allocate %zu bytes", bytes);
        return CNNELM_ERR_OUT_OF_MEMORY;
    }
    (*out)->bytes = bytes;
    CNNELM_BUFFER_LIST_ADD(&c->buffers, *out);
    return CNNELM_OK;
}

static void my_buffer_free(cnnelm_backend_ctx *c, cnnelm_buffer *b)
{
    if (!b)
        return;
    CNNELM_BUFFER_LIST_REMOVE(&c->buffers, b);
    free(b);
}

static cnnelm_status my_buffer_write(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t offset,
                                     const void *src, size_t bytes)
{
    (void)c; /* the core has checked that the range fits */
    memcpy((char *)dst->data + offset, src, bytes);
    return CNNELM_OK;
}

static cnnelm_status my_buffer_read(cnnelm_backend_ctx *c, const cnnelm_buffer *src, size_t offset,
                                    void *dst, size_t bytes)
{
    (void)c;
    memcpy(dst, (const char *)src->data + offset, bytes);
    return CNNELM_OK;
}

/* STEP 5b (ABI 1.1, each optional): transfers your device queues (here: done at once, which
 * is correct, since synchronize then has nothing to wait for), device-side copy and fill (the
 * core zeroes U and V with a fill instead of uploading zeros), and the wait. */
static cnnelm_status my_buffer_write_async(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t offset,
                                           const void *src, size_t bytes)
{
    return my_buffer_write(c, dst, offset, src, bytes);
}

static cnnelm_status my_buffer_read_async(cnnelm_backend_ctx *c, const cnnelm_buffer *src,
                                          size_t offset, void *dst, size_t bytes)
{
    return my_buffer_read(c, src, offset, dst, bytes);
}

static cnnelm_status my_synchronize(cnnelm_backend_ctx *c)
{
    (void)c; /* a device: wait for its queue; report a failed queued op here */
    return CNNELM_OK;
}

static cnnelm_status my_buffer_copy(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t dst_offset,
                                    const cnnelm_buffer *src, size_t src_offset, size_t bytes)
{
    (void)c;
    memcpy((char *)dst->data + dst_offset, (const char *)src->data + src_offset, bytes);
    return CNNELM_OK;
}

static cnnelm_status my_buffer_fill(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t offset,
                                    size_t bytes, float value)
{
    (void)c;
    float *p = (float *)((char *)dst->data + offset);
    for (size_t i = 0; i < bytes / sizeof(float); i++)
        p[i] = value;
    return CNNELM_OK;
}

/* STEP 5c (ABI 1.1, optional): which calls this device runs, asked once per op and shape
 * when a network opens. Answer CNNELM_ERR_UNSUPPORTED for shapes your hardware cannot do
 * (a kernel size your bitstream lacks, ...): those calls run on the CPU reference. */
static cnnelm_status my_supports(cnnelm_backend_ctx *c, const cnnelm_op_params *op)
{
    (void)c;
    (void)op;
    return CNNELM_OK;
}

/* Activation helpers shared by the ops below (formulas in cnnelm/backend.h). */
#define OPTTANH_A 1.7159f
#define OPTTANH_B (2.0f / 3.0f)
static float act_f(cnnelm_activation a, float v)
{
    if (a == CNNELM_ACT_RELU)
        return v > 0 ? v : 0;
    if (a == CNNELM_ACT_OPTTANH)
        return OPTTANH_A * tanhf(OPTTANH_B * v);
    return v;
}
static float act_d(cnnelm_activation a, float y) /* derivative through the forward output y */
{
    if (a == CNNELM_ACT_RELU)
        return y > 0 ? 1.0f : 0.0f;
    if (a == CNNELM_ACT_OPTTANH)
        return OPTTANH_B * (OPTTANH_A - y * y / OPTTANH_A);
    return 1.0f;
}
#define X4(t, a, b, c_, d, B, C, D) ((t)->data[(((size_t)(a) * (B) + (b)) * (C) + (c_)) * (D) + (d)])

/* STEP 6: convolution forward, the op that dominates the time. Replace the loops with your
 * device's kernel (im2col + GEMM, a systolic array, ...). Return CNNELM_ERR_UNSUPPORTED for a
 * shape or activation you do not handle: the CPU reference then runs that call. */
static cnnelm_status my_conv2d_forward(cnnelm_backend_ctx *c, const cnnelm_conv_shape *s,
                                       cnnelm_activation act, const cnnelm_buffer *x,
                                       const cnnelm_buffer *w, const cnnelm_buffer *b, cnnelm_buffer *y)
{
    (void)c;
    int oh = s->h - s->k + 1, ow = s->w - s->k + 1;
    for (int n = 0; n < s->n; n++)
        for (int o = 0; o < s->c_out; o++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    float v = b->data[o];
                    for (int ci = 0; ci < s->c_in; ci++)
                        for (int p = 0; p < s->k; p++)
                            for (int q = 0; q < s->k; q++)
                                v += X4(x, n, ci, i + p, j + q, s->c_in, s->h, s->w) *
                                     X4(w, o, ci, p, q, s->c_in, s->k, s->k);
                    X4(y, n, o, i, j, s->c_out, oh, ow) = act_f(act, v);
                }
    return CNNELM_OK;
}

/* STEP 7: convolution input gradient (fine-tuning only): a "full" convolution of dy with the
 * kernel. On a device: the same kernel as STEP 6 on a zero-padded dy and a flipped kernel. */
static cnnelm_status my_conv2d_backward_data(cnnelm_backend_ctx *c, const cnnelm_conv_shape *s,
                                             const cnnelm_buffer *dy, const cnnelm_buffer *w,
                                             cnnelm_buffer *dx)
{
    (void)c;
    int oh = s->h - s->k + 1, ow = s->w - s->k + 1;
    memset(dx->data, 0, (size_t)s->n * s->c_in * s->h * s->w * sizeof(float));
    for (int n = 0; n < s->n; n++)
        for (int o = 0; o < s->c_out; o++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    float g = X4(dy, n, o, i, j, s->c_out, oh, ow);
                    for (int ci = 0; ci < s->c_in; ci++)
                        for (int p = 0; p < s->k; p++)
                            for (int q = 0; q < s->k; q++)
                                X4(dx, n, ci, i + p, j + q, s->c_in, s->h, s->w) +=
                                    g * X4(w, o, ci, p, q, s->c_in, s->k, s->k);
                }
    return CNNELM_OK;
}

/* STEP 8: kernel and bias gradients (fine-tuning only): a reduction over images and positions.
 * On a device: one work item per (o, c, p, q) with a tree reduction; mind `accumulate`. */
static cnnelm_status my_conv2d_backward_filter(cnnelm_backend_ctx *c, const cnnelm_conv_shape *s,
                                               const cnnelm_buffer *x, const cnnelm_buffer *dy,
                                               cnnelm_buffer *dw, cnnelm_buffer *db, int accumulate)
{
    (void)c;
    int oh = s->h - s->k + 1, ow = s->w - s->k + 1;
    for (int o = 0; o < s->c_out; o++) {
        double gb = accumulate ? db->data[o] : 0;
        for (int n = 0; n < s->n; n++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++)
                    gb += X4(dy, n, o, i, j, s->c_out, oh, ow);
        db->data[o] = (float)gb;
        for (int ci = 0; ci < s->c_in; ci++)
            for (int p = 0; p < s->k; p++)
                for (int q = 0; q < s->k; q++) {
                    double g = accumulate ? X4(dw, o, ci, p, q, s->c_in, s->k, s->k) : 0;
                    for (int n = 0; n < s->n; n++)
                        for (int i = 0; i < oh; i++)
                            for (int j = 0; j < ow; j++)
                                g += (double)X4(dy, n, o, i, j, s->c_out, oh, ow) *
                                     X4(x, n, ci, i + p, j + q, s->c_in, s->h, s->w);
                    X4(dw, o, ci, p, q, s->c_in, s->k, s->k) = (float)g;
                }
    }
    return CNNELM_OK;
}

/* STEP 9: pooling forward: one output per s x s block. On a device: one work item per output. */
static cnnelm_status my_pool_forward(cnnelm_backend_ctx *c, const cnnelm_pool_shape *s,
                                     cnnelm_pooling mode, const cnnelm_buffer *x, cnnelm_buffer *y)
{
    (void)c;
    int oh = s->h / s->s, ow = s->w / s->s;
    for (int m = 0; m < s->n * s->c; m++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                float v = mode == CNNELM_POOL_MAX ? X4(x, 0, m, i * s->s, j * s->s, 0, s->h, s->w) : 0;
                for (int p = 0; p < s->s; p++)
                    for (int q = 0; q < s->s; q++) {
                        float e = X4(x, 0, m, i * s->s + p, j * s->s + q, 0, s->h, s->w);
                        v = mode == CNNELM_POOL_MAX ? (e > v ? e : v) : v + e;
                    }
                X4(y, 0, m, i, j, 0, oh, ow) = mode == CNNELM_POOL_MAX ? v : v / (float)(s->s * s->s);
            }
    return CNNELM_OK;
}

/* STEP 10: pooling backward (fine-tuning only): mean spreads dy over the block, max routes it
 * to the block's first maximum in row-major order (ties matter: keep that order). */
static cnnelm_status my_pool_backward(cnnelm_backend_ctx *c, const cnnelm_pool_shape *s,
                                      cnnelm_pooling mode, const cnnelm_buffer *x,
                                      const cnnelm_buffer *dy, cnnelm_buffer *dx)
{
    (void)c;
    int oh = s->h / s->s, ow = s->w / s->s;
    for (int m = 0; m < s->n * s->c; m++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                float g = X4(dy, 0, m, i, j, 0, oh, ow);
                int bp = 0, bq = 0;
                for (int p = 0; p < s->s; p++)
                    for (int q = 0; q < s->s; q++) {
                        if (X4(x, 0, m, i * s->s + p, j * s->s + q, 0, s->h, s->w) >
                            X4(x, 0, m, i * s->s + bp, j * s->s + bq, 0, s->h, s->w)) {
                            bp = p;
                            bq = q;
                        }
                        X4(dx, 0, m, i * s->s + p, j * s->s + q, 0, s->h, s->w) =
                            mode == CNNELM_POOL_MEAN ? g / (float)(s->s * s->s) : 0;
                    }
                if (mode == CNNELM_POOL_MAX)
                    X4(dx, 0, m, i * s->s + bp, j * s->s + bq, 0, s->h, s->w) = g;
            }
    return CNNELM_OK;
}

/* STEP 11: element-wise activation forward (y may alias x). On a device: one work item per
 * element, or fuse it into the kernel that produced x. */
static cnnelm_status my_activation_forward(cnnelm_backend_ctx *c, cnnelm_activation act, size_t count,
                                           const cnnelm_buffer *x, cnnelm_buffer *y)
{
    (void)c;
    for (size_t i = 0; i < count; i++)
        y->data[i] = act_f(act, x->data[i]);
    return CNNELM_OK;
}

/* STEP 12: activation backward through the forward output y (dx may alias dy). */
static cnnelm_status my_activation_backward(cnnelm_backend_ctx *c, cnnelm_activation act, size_t count,
                                            const cnnelm_buffer *y, const cnnelm_buffer *dy,
                                            cnnelm_buffer *dx)
{
    (void)c;
    for (size_t i = 0; i < count; i++)
        dx->data[i] = dy->data[i] * act_d(act, y->data[i]);
    return CNNELM_OK;
}

/* STEP 13: the ELM fit's products, U += H^T H and V += H^T T: a GEMM (SYRK for U; keep both
 * triangles). The second most expensive op after STEP 6; use your device's BLAS. */
static cnnelm_status my_elm_accumulate(cnnelm_backend_ctx *c, int n, int l, int k, const cnnelm_buffer *H,
                                       const cnnelm_buffer *T, cnnelm_buffer *U, cnnelm_buffer *V)
{
    (void)c;
    for (int a = 0; a < l; a++) {
        for (int b = 0; b < l; b++) {
            double u = 0;
            for (int r = 0; r < n; r++)
                u += (double)H->data[(size_t)r * l + a] * H->data[(size_t)r * l + b];
            U->data[(size_t)a * l + b] += (float)u;
        }
        for (int j = 0; j < k; j++) {
            double v = 0;
            for (int r = 0; r < n; r++)
                v += (double)H->data[(size_t)r * l + a] * T->data[(size_t)r * k + j];
            V->data[(size_t)a * k + j] += (float)v;
        }
    }
    return CNNELM_OK;
}

/* STEP 14: predictions Y = H beta: a GEMM (n x l times l x c). */
static cnnelm_status my_elm_predict(cnnelm_backend_ctx *c, int n, int l, int k, const cnnelm_buffer *H,
                                    const cnnelm_buffer *beta, cnnelm_buffer *Y)
{
    (void)c;
    for (int r = 0; r < n; r++)
        for (int j = 0; j < k; j++) {
            double v = 0;
            for (int a = 0; a < l; a++)
                v += (double)H->data[(size_t)r * l + a] * beta->data[(size_t)a * k + j];
            Y->data[(size_t)r * k + j] = (float)v;
        }
    return CNNELM_OK;
}

/* STEP 15: the error through the output weights, dH = E beta^T (fine-tuning only): a GEMM. */
static cnnelm_status my_elm_backprop(cnnelm_backend_ctx *c, int n, int l, int k, const cnnelm_buffer *E,
                                     const cnnelm_buffer *beta, cnnelm_buffer *dH)
{
    (void)c;
    for (int r = 0; r < n; r++)
        for (int a = 0; a < l; a++) {
            double v = 0;
            for (int j = 0; j < k; j++)
                v += (double)E->data[(size_t)r * k + j] * beta->data[(size_t)a * k + j];
            dH->data[(size_t)r * l + a] = (float)v;
        }
    return CNNELM_OK;
}

/* STEP 16: beta = (I/lambda + U)^-1 V by Cholesky, in double. Small (l x l, l ~ 200) and run
 * once per ELM update: keeping it on the host (read U and V, solve, write beta) is fine, or
 * call your device's LAPACK (potrf + potrs). */
static cnnelm_status my_elm_solve(cnnelm_backend_ctx *c, int l, int k, double lambda, const cnnelm_buffer *U,
                                  const cnnelm_buffer *V, cnnelm_buffer *beta)
{
    size_t L = (size_t)l;
    double *A = malloc(sizeof(double) * (L * L + L * (size_t)k));
    if (!A) {
        snprintf(c->error, sizeof c->error, "elm_solve: out of host memory");
        return CNNELM_ERR_OUT_OF_MEMORY;
    }
    double *B = A + L * L;
    for (size_t i = 0; i < L; i++) { /* A = I/lambda + (U + U^T)/2 */
        for (size_t j = 0; j < L; j++)
            A[i * L + j] = 0.5 * ((double)U->data[i * L + j] + U->data[j * L + i]);
        A[i * L + i] += 1.0 / lambda;
    }
    for (size_t i = 0; i < L * (size_t)k; i++)
        B[i] = V->data[i];
    for (size_t j = 0; j < L; j++) { /* A = G G^T, G lower, in place */
        double d = A[j * L + j];
        for (size_t t = 0; t < j; t++)
            d -= A[j * L + t] * A[j * L + t];
        if (!(d > 0) || !isfinite(d)) {
            free(A);
            snprintf(c->error, sizeof c->error, "elm_solve: I/lambda + U is not positive definite");
            return CNNELM_ERR_NOT_POSITIVE_DEFINITE;
        }
        A[j * L + j] = sqrt(d);
        for (size_t i = j + 1; i < L; i++) {
            double v = A[i * L + j];
            for (size_t t = 0; t < j; t++)
                v -= A[i * L + t] * A[j * L + t];
            A[i * L + j] = v / A[j * L + j];
        }
    }
    for (int col = 0; col < k; col++) { /* G z = b, then G^T beta = z */
        for (size_t i = 0; i < L; i++) {
            double v = B[i * k + col];
            for (size_t t = 0; t < i; t++)
                v -= A[i * L + t] * B[t * k + col];
            B[i * k + col] = v / A[i * L + i];
        }
        for (size_t i = L; i-- > 0;) {
            double v = B[i * k + col];
            for (size_t t = i + 1; t < L; t++)
                v -= A[t * L + i] * B[t * k + col];
            B[i * k + col] = v / A[i * L + i];
        }
    }
    for (size_t i = 0; i < L * (size_t)k; i++)
        if (!isfinite(B[i])) {
            free(A);
            snprintf(c->error, sizeof c->error, "elm_solve: the solution is not finite");
            return CNNELM_ERR_NOT_POSITIVE_DEFINITE;
        }
    for (size_t i = 0; i < L * (size_t)k; i++)
        beta->data[i] = (float)B[i];
    free(A);
    return CNNELM_OK;
}

/* The table. Set a slot to NULL to hand that op to the CPU reference while you work on it. */
static const cnnelm_backend table = {
    .abi_major = CNNELM_BACKEND_ABI_MAJOR,
    .abi_minor = CNNELM_BACKEND_ABI_MINOR,
    .table_size = sizeof(cnnelm_backend),
    .name = "mydevice",          /* STEP 0: the name users write in `workers` (libcnnelm-NAME.so) */
    .description = "template plugin: every op in plain loops on the host",
    .device_count = my_device_count,
    .device_info = my_device_info,
    .context_open = my_context_open,
    .context_close = my_context_close,
    .last_error = my_last_error,
    .buffer_alloc = my_buffer_alloc,
    .buffer_free = my_buffer_free,
    .buffer_write = my_buffer_write,
    .buffer_read = my_buffer_read,
    .conv2d_forward = my_conv2d_forward,
    .conv2d_backward_data = my_conv2d_backward_data,
    .conv2d_backward_filter = my_conv2d_backward_filter,
    .pool_forward = my_pool_forward,
    .pool_backward = my_pool_backward,
    .activation_forward = my_activation_forward,
    .activation_backward = my_activation_backward,
    .elm_accumulate = my_elm_accumulate,
    .elm_predict = my_elm_predict,
    .elm_backprop = my_elm_backprop,
    .elm_solve = my_elm_solve,
    /* ABI 1.1 (each may be NULL). init/shutdown and the *_v11 device slots are for plugin-wide
     * state (a loaded bitstream, enumerated devices); this template needs none. */
    .supports = my_supports,
    .buffer_write_async = my_buffer_write_async,
    .buffer_read_async = my_buffer_read_async,
    .synchronize = my_synchronize,
    .buffer_copy = my_buffer_copy,
    .buffer_fill = my_buffer_fill,
};

CNNELM_BACKEND_DEFINE_ENTRY(table)
