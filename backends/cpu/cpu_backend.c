/* cnnelm CPU reference backend: the plugin table, the one "cpu" device, contexts and host
 * buffers. The ops are the kernels of cpu_conv.c, cpu_layers.c and cpu_elm.c, reached through one
 * line each that hands them the buffers' memory. */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu_internal.h"

/* ---- devices --------------------------------------------------------------------------- */

static int online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > CPU_MAX_THREADS ? CPU_MAX_THREADS : (int)n);
}

static cnnelm_status cpu_device_count(int *count)
{
    if (!count)
        return CNNELM_ERR_INVALID_ARGUMENT;
    *count = 1;
    return CNNELM_OK;
}

/* The CPU model from /proc/cpuinfo ("model name"), or "unknown". */
static void cpu_model(char *out, size_t size)
{
    snprintf(out, size, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) {
                v++;
                while (*v == ' ' || *v == '\t')
                    v++;
                v[strcspn(v, "\n")] = 0;
                snprintf(out, size, "%s", v);
            }
            break;
        }
    }
    fclose(f);
}

static cnnelm_status cpu_device_info(int index, cnnelm_device_info *info)
{
    if (!info || index != 0)
        return CNNELM_ERR_INVALID_ARGUMENT;
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "cpu");
    cpu_model(info->vendor, sizeof info->vendor);
    snprintf(info->driver, sizeof info->driver, "cnnelm cpu backend, OpenBLAS %s",
             openblas_get_config());
    info->kind = CNNELM_DEVICE_CPU;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0)
        info->memory_bytes = info->max_alloc_bytes = (uint64_t)pages * (uint64_t)page;
    info->compute_units = (uint32_t)online_cores();
    return CNNELM_OK;
}

/* ---- contexts -------------------------------------------------------------------------- */

static void open_error(char *error, size_t size, const char *msg)
{
    if (error && size > 0)
        snprintf(error, size, "%s", msg);
}

static cnnelm_status cpu_context_open(int device, const cnnelm_context_params *params,
                                      cnnelm_backend_ctx **out, char *error, size_t error_size)
{
    if (!out) {
        open_error(error, error_size, "context_open: NULL output pointer");
        return CNNELM_ERR_INVALID_ARGUMENT;
    }
    *out = NULL;
    if (device != 0) {
        char msg[96];
        snprintf(msg, sizeof msg, "cpu backend has one device (0), not %d", device);
        open_error(error, error_size, msg);
        return CNNELM_ERR_INVALID_ARGUMENT;
    }
    int threads = 0;
    if (CNNELM_PARAMS_HAS(params, threads))
        threads = params->threads;
    if (threads <= 0)
        threads = online_cores();
    return cpu_context_create(threads, out, error, error_size);
}

static void release_buffer(cnnelm_buffer *b)
{
    b->magic = 0;
    free(b->data);
    free(b);
}

static void cpu_context_close(cnnelm_backend_ctx *ctx)
{
    if (!ctx || ctx->magic != CPU_CTX_MAGIC)
        return;
    CNNELM_BUFFER_LIST_FREE_ALL(&ctx->buffers, release_buffer);
    cpu_context_destroy(ctx);
}

static const char *cpu_last_error(const cnnelm_backend_ctx *ctx)
{
    if (!ctx)
        return "NULL context";
    return ctx->err;
}

/* ---- buffers --------------------------------------------------------------------------- */

/* Every call on a context starts with this: NULL or a closed context is a bad argument, not a
 * crash (what buffer_alloc and context_close check too). */
#define LIVE_CTX(ctx)                                                                       \
    do {                                                                                    \
        if (!(ctx) || (ctx)->magic != CPU_CTX_MAGIC)                                        \
            return CNNELM_ERR_INVALID_ARGUMENT;                                             \
    } while (0)

static cnnelm_status cpu_buffer_alloc(cnnelm_backend_ctx *ctx, size_t bytes, cnnelm_buffer **out)
{
    if (!ctx || ctx->magic != CPU_CTX_MAGIC)
        return CNNELM_ERR_INVALID_ARGUMENT;
    if (!out)
        return cpu_fail(ctx, CNNELM_ERR_INVALID_ARGUMENT, "buffer_alloc: NULL output pointer");
    *out = NULL;
    if (bytes == 0)
        return cpu_fail(ctx, CNNELM_ERR_INVALID_ARGUMENT, "buffer_alloc: zero bytes");
    if (bytes > (size_t)PTRDIFF_MAX - CPU_ALIGN)
        return cpu_fail(ctx, CNNELM_ERR_OUT_OF_MEMORY, "buffer_alloc: %zu bytes is too large", bytes);
    cnnelm_buffer *b = calloc(1, sizeof *b);
    if (!b)
        return cpu_fail(ctx, CNNELM_ERR_OUT_OF_MEMORY, "out of host memory (buffer header)");
    b->data = cpu_aligned_alloc(bytes);
    if (!b->data) {
        free(b);
        return cpu_fail(ctx, CNNELM_ERR_OUT_OF_MEMORY, "out of host memory (buffer of %zu bytes)",
                        bytes);
    }
    b->magic = CPU_BUFFER_MAGIC;
    b->ctx = ctx;
    b->bytes = bytes;
    CNNELM_BUFFER_LIST_ADD(&ctx->buffers, b);
    *out = b;
    return CNNELM_OK;
}

static void cpu_buffer_free(cnnelm_backend_ctx *ctx, cnnelm_buffer *b)
{
    if (!ctx || ctx->magic != CPU_CTX_MAGIC || !b || b->magic != CPU_BUFFER_MAGIC || b->ctx != ctx)
        return;
    CNNELM_BUFFER_LIST_REMOVE(&ctx->buffers, b);
    release_buffer(b);
}

/* A buffer of this context (not NULL, not freed, not another context's). */
static cnnelm_status check_buf(cnnelm_backend_ctx *ctx, const char *op, const char *name,
                               const cnnelm_buffer *b)
{
    if (!b)
        return cpu_fail(ctx, CNNELM_ERR_INVALID_ARGUMENT, "%s: buffer %s is NULL", op, name);
    if (b->magic != CPU_BUFFER_MAGIC)
        return cpu_fail(ctx, CNNELM_ERR_INVALID_ARGUMENT, "%s: buffer %s is not a live cpu buffer",
                        op, name);
    if (b->ctx != ctx)
        return cpu_fail(ctx, CNNELM_ERR_INVALID_ARGUMENT,
                        "%s: buffer %s belongs to another context", op, name);
    return CNNELM_OK;
}

static cnnelm_status range_ok(cnnelm_backend_ctx *ctx, const char *op, const cnnelm_buffer *b,
                              size_t offset, size_t bytes)
{
    if (offset > b->bytes || bytes > b->bytes - offset)
        return cpu_fail(ctx, CNNELM_ERR_INVALID_ARGUMENT,
                        "%s: %zu bytes at offset %zu do not fit in a buffer of %zu bytes", op, bytes,
                        offset, b->bytes);
    return CNNELM_OK;
}

static cnnelm_status cpu_buffer_write(cnnelm_backend_ctx *ctx, cnnelm_buffer *dst, size_t offset,
                                      const void *src, size_t bytes)
{
    LIVE_CTX(ctx);
    cnnelm_status st = check_buf(ctx, "buffer_write", "dst", dst);
    if (st == CNNELM_OK)
        st = range_ok(ctx, "buffer_write", dst, offset, bytes);
    if (st == CNNELM_OK && !src && bytes > 0)
        st = cpu_fail(ctx, CNNELM_ERR_INVALID_ARGUMENT, "buffer_write: NULL source");
    if (st == CNNELM_OK && bytes > 0)
        memmove((char *)dst->data + offset, src, bytes);
    return st;
}

static cnnelm_status cpu_buffer_read(cnnelm_backend_ctx *ctx, const cnnelm_buffer *src,
                                     size_t offset, void *dst, size_t bytes)
{
    LIVE_CTX(ctx);
    cnnelm_status st = check_buf(ctx, "buffer_read", "src", src);
    if (st == CNNELM_OK)
        st = range_ok(ctx, "buffer_read", src, offset, bytes);
    if (st == CNNELM_OK && !dst && bytes > 0)
        st = cpu_fail(ctx, CNNELM_ERR_INVALID_ARGUMENT, "buffer_read: NULL destination");
    if (st == CNNELM_OK && bytes > 0)
        memmove(dst, (const char *)src->data + offset, bytes);
    return st;
}

/* ---- ops ------------------------------------------------------------------------------- */

/* The core has checked every argument (shape rules, buffer sizes, ownership, aliasing: see
 * backend.h); each op runs its kernel on the buffers' memory. */

static cnnelm_status cpu_conv2d_forward(cnnelm_backend_ctx *ctx, const cnnelm_conv_shape *s,
                                        cnnelm_activation act, const cnnelm_buffer *x,
                                        const cnnelm_buffer *w, const cnnelm_buffer *b,
                                        cnnelm_buffer *y)
{
    LIVE_CTX(ctx);
    return cpu_conv_forward(ctx, s, act, x->data, w->data, b->data, y->data);
}

static cnnelm_status cpu_conv2d_backward_data(cnnelm_backend_ctx *ctx, const cnnelm_conv_shape *s,
                                              const cnnelm_buffer *dy, const cnnelm_buffer *w,
                                              cnnelm_buffer *dx)
{
    LIVE_CTX(ctx);
    return cpu_conv_backward_data(ctx, s, dy->data, w->data, dx->data);
}

static cnnelm_status cpu_conv2d_backward_filter(cnnelm_backend_ctx *ctx, const cnnelm_conv_shape *s,
                                                const cnnelm_buffer *x, const cnnelm_buffer *dy,
                                                cnnelm_buffer *dw, cnnelm_buffer *db, int accumulate)
{
    LIVE_CTX(ctx);
    return cpu_conv_backward_filter(ctx, s, x->data, dy->data, dw->data, db->data,
                                               accumulate);
}

static cnnelm_status cpu_pool_forward_op(cnnelm_backend_ctx *ctx, const cnnelm_pool_shape *s,
                                         cnnelm_pooling mode, const cnnelm_buffer *x, cnnelm_buffer *y)
{
    LIVE_CTX(ctx);
    return cpu_pool_forward(ctx, s, mode, x->data, y->data);
}

static cnnelm_status cpu_pool_backward_op(cnnelm_backend_ctx *ctx, const cnnelm_pool_shape *s,
                                          cnnelm_pooling mode, const cnnelm_buffer *x,
                                          const cnnelm_buffer *dy, cnnelm_buffer *dx)
{
    LIVE_CTX(ctx);
    return cpu_pool_backward(ctx, s, mode, x->data, dy->data, dx->data);
}

static cnnelm_status cpu_activation_forward(cnnelm_backend_ctx *ctx, cnnelm_activation act,
                                            size_t count, const cnnelm_buffer *x, cnnelm_buffer *y)
{
    LIVE_CTX(ctx);
    return cpu_act_forward(ctx, act, count, x->data, y->data);
}

static cnnelm_status cpu_activation_backward(cnnelm_backend_ctx *ctx, cnnelm_activation act,
                                             size_t count, const cnnelm_buffer *y,
                                             const cnnelm_buffer *dy, cnnelm_buffer *dx)
{
    LIVE_CTX(ctx);
    return cpu_act_backward(ctx, act, count, y->data, dy->data, dx->data);
}

static cnnelm_status cpu_elm_accumulate_op(cnnelm_backend_ctx *ctx, int n, int l, int c,
                                           const cnnelm_buffer *H, const cnnelm_buffer *T,
                                           cnnelm_buffer *U, cnnelm_buffer *V)
{
    LIVE_CTX(ctx);
    return cpu_elm_accumulate(ctx, n, l, c, H->data, T->data, U->data, V->data);
}

static cnnelm_status cpu_elm_accumulate_f64_op(cnnelm_backend_ctx *ctx, int n, int l, int c,
                                               const cnnelm_buffer *H, const cnnelm_buffer *T,
                                               cnnelm_buffer *U, cnnelm_buffer *V)
{
    LIVE_CTX(ctx);
    return cpu_elm_accumulate_f64(ctx, n, l, c, H->data, T->data, (double *)(void *)U->data,
                                  (double *)(void *)V->data);
}

static cnnelm_status cpu_elm_predict_op(cnnelm_backend_ctx *ctx, int n, int l, int c,
                                        const cnnelm_buffer *H, const cnnelm_buffer *beta,
                                        cnnelm_buffer *Y)
{
    LIVE_CTX(ctx);
    return cpu_elm_predict(ctx, n, l, c, H->data, beta->data, Y->data);
}

static cnnelm_status cpu_elm_backprop_op(cnnelm_backend_ctx *ctx, int n, int l, int c,
                                         const cnnelm_buffer *E, const cnnelm_buffer *beta,
                                         cnnelm_buffer *dH)
{
    LIVE_CTX(ctx);
    return cpu_elm_backprop(ctx, n, l, c, E->data, beta->data, dH->data);
}

static cnnelm_status cpu_elm_solve_op(cnnelm_backend_ctx *ctx, int l, int c, double lambda,
                                      const cnnelm_buffer *U, const cnnelm_buffer *V,
                                      cnnelm_buffer *beta)
{
    LIVE_CTX(ctx);
    return cpu_elm_solve(ctx, l, c, lambda, U->data, V->data, beta->data);
}

/* ---- ABI 1.1 ------------------------------------------------------------------------------ */

/* The CPU has no plugin-wide state worth keeping: init succeeds with none. */
static cnnelm_status cpu_init(const cnnelm_plugin_params *params, void **state, char *error,
                              size_t error_size)
{
    (void)params;
    (void)error;
    (void)error_size;
    *state = NULL;
    return CNNELM_OK;
}

static void cpu_shutdown(void *state) { (void)state; }

static cnnelm_status cpu_device_count_v11(void *state, int *count, char *error, size_t error_size)
{
    (void)state;
    (void)error;
    (void)error_size;
    return cpu_device_count(count);
}

static cnnelm_status cpu_device_info_v11(void *state, int index, cnnelm_device_info *info)
{
    (void)state;
    return cpu_device_info(index, info);
}

static cnnelm_status cpu_device_limits(void *state, int index, cnnelm_device_limits *limits)
{
    (void)state;
    if (index != 0)
        return CNNELM_ERR_INVALID_ARGUMENT;
    cnnelm_device_info info;
    cpu_device_info(0, &info);
    if (CNNELM_PARAMS_HAS(limits, alignment))
        limits->alignment = CPU_ALIGN;
    if (CNNELM_PARAMS_HAS(limits, max_alloc_bytes))
        limits->max_alloc_bytes = info.max_alloc_bytes;
    if (CNNELM_PARAMS_HAS(limits, preferred_chunk))
        limits->preferred_chunk = 0; /* any: the kernels block images themselves */
    return CNNELM_OK;
}

static cnnelm_status cpu_context_open_v11(void *state, int device, const cnnelm_context_params *params,
                                          cnnelm_backend_ctx **out, char *error, size_t error_size)
{
    (void)state;
    return cpu_context_open(device, params, out, error, error_size);
}

/* Every op, every shape the core accepts. */
static cnnelm_status cpu_supports(cnnelm_backend_ctx *ctx, const cnnelm_op_params *op)
{
    (void)ctx;
    (void)op;
    return CNNELM_OK;
}

/* Host memory: "asynchronous" transfers are done on the call, which the contract allows
 * (synchronize then has nothing left to wait for). */
static cnnelm_status cpu_synchronize(cnnelm_backend_ctx *ctx)
{
    LIVE_CTX(ctx);
    return CNNELM_OK;
}

static cnnelm_status cpu_buffer_copy(cnnelm_backend_ctx *ctx, cnnelm_buffer *dst, size_t dst_offset,
                                     const cnnelm_buffer *src, size_t src_offset, size_t bytes)
{
    LIVE_CTX(ctx);
    cnnelm_status st = range_ok(ctx, "buffer_copy", dst, dst_offset, bytes);
    if (st == CNNELM_OK)
        st = range_ok(ctx, "buffer_copy", src, src_offset, bytes);
    if (st == CNNELM_OK && bytes > 0)
        memmove((char *)dst->data + dst_offset, (const char *)src->data + src_offset, bytes);
    return st;
}

static cnnelm_status cpu_buffer_fill(cnnelm_backend_ctx *ctx, cnnelm_buffer *dst, size_t offset,
                                     size_t bytes, float value)
{
    LIVE_CTX(ctx);
    cnnelm_status st = range_ok(ctx, "buffer_fill", dst, offset, bytes);
    if (st == CNNELM_OK) {
        float *p = (float *)((char *)dst->data + offset);
        size_t n = bytes / sizeof(float);
        if (value == 0.0f && !signbit(value))
            memset(p, 0, n * sizeof(float));
        else
            for (size_t i = 0; i < n; i++)
                p[i] = value;
    }
    return st;
}

/* ---- the table ------------------------------------------------------------------------- */

static const cnnelm_backend cpu_backend_table = {
    .abi_major = CNNELM_BACKEND_ABI_MAJOR,
    .abi_minor = CNNELM_BACKEND_ABI_MINOR,
    .table_size = sizeof(cnnelm_backend),
    .name = "cpu",
    .description = "CPU reference backend (host threads, OpenBLAS, LAPACKE)",
    .device_count = cpu_device_count,
    .device_info = cpu_device_info,
    .context_open = cpu_context_open,
    .context_close = cpu_context_close,
    .last_error = cpu_last_error,
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .buffer_write = cpu_buffer_write,
    .buffer_read = cpu_buffer_read,
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_backward_data = cpu_conv2d_backward_data,
    .conv2d_backward_filter = cpu_conv2d_backward_filter,
    .pool_forward = cpu_pool_forward_op,
    .pool_backward = cpu_pool_backward_op,
    .activation_forward = cpu_activation_forward,
    .activation_backward = cpu_activation_backward,
    .elm_accumulate = cpu_elm_accumulate_op,
    .elm_predict = cpu_elm_predict_op,
    .elm_backprop = cpu_elm_backprop_op,
    .elm_solve = cpu_elm_solve_op,
    .init = cpu_init,
    .shutdown = cpu_shutdown,
    .device_count_v11 = cpu_device_count_v11,
    .device_info_v11 = cpu_device_info_v11,
    .device_limits = cpu_device_limits,
    .context_open_v11 = cpu_context_open_v11,
    .supports = cpu_supports,
    .buffer_write_async = cpu_buffer_write,
    .buffer_read_async = cpu_buffer_read,
    .synchronize = cpu_synchronize,
    .buffer_copy = cpu_buffer_copy,
    .buffer_fill = cpu_buffer_fill,
    .elm_accumulate_f64 = cpu_elm_accumulate_f64_op,
};

CNNELM_BACKEND_DEFINE_ENTRY(cpu_backend_table)
