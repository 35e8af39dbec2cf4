/* Deliberately broken plugins for the conformance checker and the run-time guards: the
 * template's plain loops (every op correct) with one bug per -D variant, each a bug real
 * plugins have (issue 11). Built without a flag it is a correct plugin and must pass.
 *   -DBUG_ACCUM_OVERWRITE  elm_accumulate adds on a context's first call, overwrites later
 *   -DBUG_FILTER_ACCUM     conv2d_backward_filter ignores its accumulate flag
 *   -DBUG_THREAD_UNSAFE    conv2d_forward works in one global scratch buffer (two contexts race)
 *   -DBUG_MEAN_ODD         mean pooling wrong in the last column when the output width is odd
 *   -DBUG_WRITE_PAST_END   conv2d_forward writes one float past the end of y
 *   -DBUG_NO_WRITE         elm_predict returns CNNELM_OK and never writes Y
 *   -DBUG_LAST_ROW         elm_predict works in blocks of 4 rows and forgets a partial block
 *   -DBUG_BIAS_ONE_MAP     conv2d_forward adds map 0's bias to the last output map
 *   -DBUG_DEVICE_INFO_CRASH device_info dereferences NULL
 *   -DBUG_ENTRY_CRASH      the entry function dereferences NULL
 *   -DBUG_DEVICE_COUNT_HANG device_count never returns
 *   -DBUG_WRITES_INPUT     activation_forward works in place in x, then copies to y
 *   -DBUG_HANG             pool_forward never returns (with CNNELM_BUGGY_HANG_RANK=r set, only in
 *                          the MPI rank r: one hung rank of a job)
 * The ABI 1.1 slots (init/shutdown with a plugin state, the device slots with it, supports, the
 * asynchronous, copy and fill transfers) are filled in every variant; their bugs:
 *   -DBUG_INIT_CRASH       init dereferences NULL
 *   -DBUG_INIT_HANG        init never returns
 *   -DBUG_INIT_FAIL        init returns CNNELM_ERR_DEVICE with a message
 *   -DBUG_INIT_FAIL_SILENT init returns CNNELM_ERR_DEVICE and leaves the message empty
 *   -DBUG_SHUTDOWN_CRASH   shutdown dereferences NULL
 *   -DBUG_FILL_WRONG       buffer_fill takes its byte offset for a float offset
 *   -DBUG_ASYNC_NO_SYNC    buffer_read_async queues the copy; synchronize returns without doing it
 *   -DBUG_FLOAT_SUMS       elm_accumulate_f64 sums each chunk's products in float before adding
 *                          them into the double U and V (the precision the op exists to avoid)
 * and one variant that is no bug but must pass:
 *   -DBUG_SUPPORTS_PARTIAL supports() declines conv2d_forward with optimal tanh (the core runs it
 *                          on the CPU reference) */
#define _GNU_SOURCE
#include <sched.h>
#include <unistd.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnelm/backend.h"

#ifndef STUB_NAME
#define STUB_NAME "buggy"
#endif

/* STEP 1: your per-thread state. One context per worker thread; keep the last error message
 * here (plugins never print). A real device adds its handle, queue, compiled programs. */
struct cnnelm_backend_ctx {
    char error[256];
    int accumulate_calls; /* BUG_ACCUM_OVERWRITE: right on the first call only */
    void *pending_dst;    /* BUG_ASYNC_NO_SYNC: a read queued and not yet done */
    const void *pending_src;
    size_t pending_bytes;
    struct cnnelm_buffer *buffers; /* every live buffer: context_close frees them */
};

/* STEP 2: your device memory. Here: host memory. A real device keeps its allocation handle. */
struct cnnelm_buffer {
    struct cnnelm_buffer *prev, *next;
    size_t bytes;
    float data[];
};

/* STEP 3: devices. Count and describe what this plugin can drive. */
static cnnelm_status my_device_count(int *count)
{
#ifdef BUG_DEVICE_COUNT_HANG
    for (;;)
        sleep(1);
#endif
    *count = 1;
    return CNNELM_OK;
}

static cnnelm_status my_device_info(int index, cnnelm_device_info *info)
{
    if (index != 0)
        return CNNELM_ERR_INVALID_ARGUMENT;
#ifdef BUG_DEVICE_INFO_CRASH
    volatile int *no_memory = NULL;
    *no_memory = 1;
#endif
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "buggy test device (%s)", STUB_NAME);
    snprintf(info->vendor, sizeof info->vendor, "cnnelm tests");
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
    while (c && c->buffers) {
        struct cnnelm_buffer *b = c->buffers;
        c->buffers = b->next;
        free(b);
    }
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
    (*out)->prev = NULL;
    (*out)->next = c->buffers;
    if (c->buffers)
        c->buffers->prev = *out;
    c->buffers = *out;
    return CNNELM_OK;
}

static void my_buffer_free(cnnelm_backend_ctx *c, cnnelm_buffer *b)
{
    if (!b)
        return;
    if (b->prev)
        b->prev->next = b->next;
    else
        c->buffers = b->next;
    if (b->next)
        b->next->prev = b->prev;
    free(b);
}

static cnnelm_status my_buffer_write(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t offset,
                                     const void *src, size_t bytes)
{
    if (offset + bytes > dst->bytes) {
        snprintf(c->error, sizeof c->error, "write past the end of a buffer");
        return CNNELM_ERR_INVALID_ARGUMENT;
    }
    memcpy((char *)dst->data + offset, src, bytes);
    return CNNELM_OK;
}

static cnnelm_status my_buffer_read(cnnelm_backend_ctx *c, const cnnelm_buffer *src, size_t offset,
                                    void *dst, size_t bytes)
{
    if (offset + bytes > src->bytes) {
        snprintf(c->error, sizeof c->error, "read past the end of a buffer");
        return CNNELM_ERR_INVALID_ARGUMENT;
    }
    memcpy(dst, (const char *)src->data + offset, bytes);
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
#ifdef BUG_THREAD_UNSAFE
    static float scratch[1 << 20]; /* shared by every context: the bug */
    size_t total = (size_t)s->n * s->c_out * oh * ow;
    if (total > sizeof scratch / sizeof scratch[0])
        return CNNELM_ERR_UNSUPPORTED;
    float *out = scratch;
#else
    float *out = y->data;
#endif
    for (int n = 0; n < s->n; n++)
        for (int o = 0; o < s->c_out; o++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
#ifdef BUG_BIAS_ONE_MAP
                    float v = b->data[o == s->c_out - 1 ? 0 : o];
#else
                    float v = b->data[o];
#endif
                    for (int ci = 0; ci < s->c_in; ci++)
                        for (int p = 0; p < s->k; p++)
                            for (int q = 0; q < s->k; q++)
                                v += X4(x, n, ci, i + p, j + q, s->c_in, s->h, s->w) *
                                     X4(w, o, ci, p, q, s->c_in, s->k, s->k);
                    out[(((size_t)n * s->c_out + o) * oh + i) * ow + j] = act_f(act, v);
                }
#ifdef BUG_THREAD_UNSAFE
    sched_yield(); /* widen the window another thread's call overwrites the scratch in */
    usleep(2000);
    memcpy(y->data, scratch, total * sizeof(float));
#endif
#ifdef BUG_WRITE_PAST_END
    y->data[(size_t)s->n * s->c_out * oh * ow] = 0.5f;
#endif
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
#ifdef BUG_FILTER_ACCUM
    accumulate = 0;
#endif
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
#ifdef BUG_HANG
    const char *only = getenv("CNNELM_BUGGY_HANG_RANK"), *rank = getenv("OMPI_COMM_WORLD_RANK");
    if (!only || (rank && strcmp(only, rank) == 0))
        for (;;)
            sleep(1);
#endif
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
#ifdef BUG_MEAN_ODD
                if (mode == CNNELM_POOL_MEAN && ow % 2 == 1 && ow > 1 && j == ow - 1)
                    X4(y, 0, m, i, j, 0, oh, ow) = X4(y, 0, m, i, j - 1, 0, oh, ow); /* pairwise loop's tail */
#endif
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
#ifdef BUG_WRITES_INPUT
    float *in = ((cnnelm_buffer *)x)->data; /* casts const away: the bug */
    for (size_t i = 0; i < count; i++)
        in[i] = act_f(act, in[i]);
    memcpy(y->data, in, count * sizeof(float));
    return CNNELM_OK;
#endif
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
    for (int a = 0; a < l; a++) {
        for (int b = 0; b < l; b++) {
            double u = 0;
            for (int r = 0; r < n; r++)
                u += (double)H->data[(size_t)r * l + a] * H->data[(size_t)r * l + b];
#ifdef BUG_ACCUM_OVERWRITE
            if (c->accumulate_calls > 0) {
                U->data[(size_t)a * l + b] = (float)u;
                continue;
            }
#endif
            U->data[(size_t)a * l + b] += (float)u;
        }
        for (int j = 0; j < k; j++) {
            double v = 0;
            for (int r = 0; r < n; r++)
                v += (double)H->data[(size_t)r * l + a] * T->data[(size_t)r * k + j];
            V->data[(size_t)a * k + j] += (float)v;
        }
    }
    c->accumulate_calls++;
    return CNNELM_OK;
}

/* Exact sums (optional, ABI 1.1): U (upper triangle) and V in double, products of floats exact. */
static cnnelm_status my_elm_accumulate_f64(cnnelm_backend_ctx *c, int n, int l, int k, const cnnelm_buffer *H,
                                           const cnnelm_buffer *T, cnnelm_buffer *U, cnnelm_buffer *V)
{
    (void)c;
#ifdef BUG_FLOAT_SUMS
    typedef float sum_t;
#else
    typedef double sum_t;
#endif
    double *u = (double *)(void *)U->data, *v = (double *)(void *)V->data;
    for (int a = 0; a < l; a++) {
        for (int b = a; b < l; b++) {
            sum_t s = 0;
            for (int r = 0; r < n; r++)
                s += (sum_t)((double)H->data[(size_t)r * l + a] * H->data[(size_t)r * l + b]);
            u[(size_t)a * l + b] += s;
        }
        for (int j = 0; j < k; j++) {
            sum_t s = 0;
            for (int r = 0; r < n; r++)
                s += (sum_t)((double)H->data[(size_t)r * l + a] * T->data[(size_t)r * k + j]);
            v[(size_t)a * k + j] += s;
        }
    }
    return CNNELM_OK;
}

/* STEP 14: predictions Y = H beta: a GEMM (n x l times l x c). */
static cnnelm_status my_elm_predict(cnnelm_backend_ctx *c, int n, int l, int k, const cnnelm_buffer *H,
                                    const cnnelm_buffer *beta, cnnelm_buffer *Y)
{
    (void)c;
#ifdef BUG_NO_WRITE
    (void)n; (void)l; (void)k; (void)H; (void)beta; (void)Y;
    return CNNELM_OK;
#endif
#ifdef BUG_LAST_ROW
    n -= n % 4; /* blocks of four rows; the partial block is forgotten */
#endif
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

/* ABI 1.1. The plugin state: what init() found (here: one device), given to the device slots. */
typedef struct plugin_state {
    int devices;
} plugin_state;

static cnnelm_status my_init(const cnnelm_plugin_params *params, void **state, char *error, size_t error_size)
{
    (void)params;
    *state = NULL;
#ifdef BUG_INIT_CRASH
    volatile int *no_memory = NULL;
    *no_memory = 1;
#endif
#ifdef BUG_INIT_HANG
    for (;;)
        sleep(1);
#endif
#ifdef BUG_INIT_FAIL
    snprintf(error, error_size, "no buggy runtime found (looked in /opt/buggy)");
    return CNNELM_ERR_DEVICE;
#endif
#ifdef BUG_INIT_FAIL_SILENT
    (void)error;
    (void)error_size;
    return CNNELM_ERR_DEVICE;
#endif
    plugin_state *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(error, error_size, "out of host memory");
        return CNNELM_ERR_OUT_OF_MEMORY;
    }
    st->devices = 1;
    *state = st;
    return CNNELM_OK;
}

static void my_shutdown(void *state)
{
#ifdef BUG_SHUTDOWN_CRASH
    volatile int *no_memory = NULL;
    *no_memory = 1;
#endif
    free(state);
}

static cnnelm_status my_device_count_v11(void *state, int *count, char *error, size_t error_size)
{
    if (!state) {
        snprintf(error, error_size, "init() was not called");
        return CNNELM_ERR_INTERNAL;
    }
    return my_device_count(count);
}

static cnnelm_status my_device_info_v11(void *state, int index, cnnelm_device_info *info)
{
    return state ? my_device_info(index, info) : CNNELM_ERR_INTERNAL;
}

static cnnelm_status my_device_limits(void *state, int index, cnnelm_device_limits *limits)
{
    if (!state || index != 0)
        return state ? CNNELM_ERR_INVALID_ARGUMENT : CNNELM_ERR_INTERNAL;
    limits->alignment = 16; /* malloc's */
    /* CNNELM_STUB_MAX_ALLOC: a device with a small largest allocation, for the chunk note */
    const char *max_alloc = getenv("CNNELM_STUB_MAX_ALLOC");
    limits->max_alloc_bytes = max_alloc ? strtoull(max_alloc, NULL, 10) : 0;
    limits->preferred_chunk = 0;
    return CNNELM_OK;
}

static cnnelm_status my_context_open_v11(void *state, int device, const cnnelm_context_params *params,
                                         cnnelm_backend_ctx **out, char *error, size_t error_size)
{
    if (!state) {
        *out = NULL;
        snprintf(error, error_size, "init() was not called");
        return CNNELM_ERR_INTERNAL;
    }
    return my_context_open(device, params, out, error, error_size);
}

static cnnelm_status my_supports(cnnelm_backend_ctx *c, const cnnelm_op_params *op)
{
    (void)c;
#ifdef BUG_SUPPORTS_PARTIAL
    if (op->op == CNNELM_OP_CONV_FORWARD && op->act == CNNELM_ACT_OPTTANH)
        return CNNELM_ERR_UNSUPPORTED;
#endif
    (void)op;
    return CNNELM_OK; /* every op, every shape */
}

/* Host memory: "asynchronous" transfers finish at once, synchronize has nothing to wait for. */
static cnnelm_status my_buffer_write_async(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t offset,
                                           const void *src, size_t bytes)
{
    return my_buffer_write(c, dst, offset, src, bytes);
}

static cnnelm_status my_buffer_read_async(cnnelm_backend_ctx *c, const cnnelm_buffer *src, size_t offset,
                                          void *dst, size_t bytes)
{
#ifdef BUG_ASYNC_NO_SYNC
    if (c->pending_dst) /* the one before: done only when the next one is queued */
        memcpy(c->pending_dst, c->pending_src, c->pending_bytes);
    c->pending_dst = dst;
    c->pending_src = (const char *)src->data + offset;
    c->pending_bytes = bytes;
    return CNNELM_OK;
#endif
    return my_buffer_read(c, src, offset, dst, bytes);
}

static cnnelm_status my_synchronize(cnnelm_backend_ctx *c)
{
    (void)c; /* BUG_ASYNC_NO_SYNC: the queued read is forgotten here */
    return CNNELM_OK;
}

static cnnelm_status my_buffer_copy(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t dst_offset,
                                    const cnnelm_buffer *src, size_t src_offset, size_t bytes)
{
    (void)c;
    memcpy((char *)dst->data + dst_offset, (const char *)src->data + src_offset, bytes);
    return CNNELM_OK;
}

static cnnelm_status my_buffer_fill(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t offset, size_t bytes,
                                    float value)
{
    (void)c;
    size_t first = offset / sizeof(float), count = bytes / sizeof(float);
#ifdef BUG_FILL_WRONG
    first = offset; /* bytes taken for floats; kept inside the allocation */
    if (first > dst->bytes / sizeof(float))
        first = dst->bytes / sizeof(float);
    if (count > dst->bytes / sizeof(float) - first)
        count = dst->bytes / sizeof(float) - first;
#endif
    for (size_t i = 0; i < count; i++)
        dst->data[first + i] = value;
    return CNNELM_OK;
}

/* The table. Set a slot to NULL to hand that op to the CPU reference while you work on it. */
static const cnnelm_backend table = {
    .abi_major = CNNELM_BACKEND_ABI_MAJOR,
    .abi_minor = CNNELM_BACKEND_ABI_MINOR,
    .table_size = sizeof(cnnelm_backend),
    .name = STUB_NAME,
    .description = "deliberately broken test plugin (" STUB_NAME ")",
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
    .init = my_init,
    .shutdown = my_shutdown,
    .device_count_v11 = my_device_count_v11,
    .device_info_v11 = my_device_info_v11,
    .device_limits = my_device_limits,
    .context_open_v11 = my_context_open_v11,
    .supports = my_supports,
    .buffer_write_async = my_buffer_write_async,
    .buffer_read_async = my_buffer_read_async,
    .synchronize = my_synchronize,
    .buffer_copy = my_buffer_copy,
    .buffer_fill = my_buffer_fill,
    .elm_accumulate_f64 = my_elm_accumulate_f64,
};

#ifdef BUG_ENTRY_CRASH
CNNELM_PLUGIN_EXPORT const cnnelm_backend *cnnelm_backend_entry(void);
CNNELM_PLUGIN_EXPORT const cnnelm_backend *cnnelm_backend_entry(void)
{
    volatile int *no_memory = NULL;
    return *no_memory ? &table : NULL;
}
#else
CNNELM_BACKEND_DEFINE_ENTRY(table)
#endif
