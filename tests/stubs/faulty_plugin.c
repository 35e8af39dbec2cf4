/* A forwarding test plugin that makes a real backend lose its device on cue, for the failure
 * tests of the worker pool, the command line and MPI (libcnnelm-faulty.so, backend "faulty").
 *
 * It dlopens the wrapped backend and forwards every slot to it unchanged (a slot the wrapped
 * table lacks stays NULL here too, so the core sees the same plugin), counting calls per context:
 *
 *   CNNELM_FAULTY_TARGET=FILE   the backend to wrap (a libcnnelm-NAME.so path); default: the
 *                               build's CPU backend (CNNELM_FAULTY_TARGET_DEFAULT, set by CMake)
 *   CNNELM_FAULTY_FAIL_AFTER=N  after N successful counted calls on a context, every counted call
 *                               on it answers CNNELM_ERR_DEVICE ("injected device failure"), as a
 *                               lost device would;
 *   CNNELM_FAULTY_FAIL_AFTER=N@K  the same, only on the K-th context this process opens (K >= 1:
 *                               one worker of many). Unset or empty: nothing fails.
 *
 * Counted calls: buffer_write, buffer_read (and their async forms), buffer_copy, buffer_fill and
 * every compute op. synchronize fails once the budget is spent but is not counted; allocation,
 * supports and the device slots are never counted or failed. Both variables are read at
 * context_open (FAIL_AFTER) and at load (TARGET). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnelm/backend.h"
#include "cnnelm/backend_util.h"

#ifndef CNNELM_FAULTY_TARGET_DEFAULT
#define CNNELM_FAULTY_TARGET_DEFAULT ""
#endif

/* The wrapped backend's table; NULL when it could not be loaded (load_error says why). */
static const cnnelm_backend *inner;
static char load_error[1024];
static atomic_uint contexts_opened;

/* Our context: the wrapped one plus the call budget. Buffers are the wrapped backend's own
 * (the core never looks inside them). `inner_ctx` has the wrapped plugin's context type, which
 * this file never dereferences. */
struct cnnelm_backend_ctx {
    cnnelm_backend_ctx *inner_ctx;
    long fail_after;               /* -1: never */
    long ok_calls;
    int failed;
    int injected;                  /* the last failure was ours: last_error shows err */
    char err[256];
};

/* ---- loading the wrapped backend --------------------------------------------------------- */

CNNELM_PLUGIN_EXPORT const cnnelm_backend *cnnelm_backend_entry(void);

static void load_inner(void)
{
    const char *file = getenv("CNNELM_FAULTY_TARGET");
    if (!file || !*file)
        file = CNNELM_FAULTY_TARGET_DEFAULT;
    if (!*file) {
        snprintf(load_error, sizeof load_error, "no backend to wrap: set CNNELM_FAULTY_TARGET");
        return;
    }
    /* never closed: the wrapped backend's threads may outlive any point we could close it at */
    void *h = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(load_error, sizeof load_error, "cannot load the wrapped backend %s "
                 "(CNNELM_FAULTY_TARGET): %s", file, dlerror());
        return;
    }
    void *sym = dlsym(h, "cnnelm_backend_entry");
    cnnelm_backend_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    if (entry == cnnelm_backend_entry) { /* its entry would wait on the table we are building */
        snprintf(load_error, sizeof load_error, "CNNELM_FAULTY_TARGET is this plugin itself (%s)", file);
        return;
    }
    const cnnelm_backend *t = sym ? entry() : NULL;
    if (!t || t->abi_major != CNNELM_BACKEND_ABI_MAJOR ||
        t->table_size < offsetof(cnnelm_backend, elm_solve) + sizeof t->elm_solve) {
        snprintf(load_error, sizeof load_error, "%s is not a cnnelm %u.x backend", file,
                 CNNELM_BACKEND_ABI_MAJOR);
        return;
    }
    inner = t;
}

/* ---- the budget -------------------------------------------------------------------------- */

/* Non-zero (and the context marked lost) once the budget is spent. */
static int spent(cnnelm_backend_ctx *c)
{
    if (c->failed || (c->fail_after >= 0 && c->ok_calls >= c->fail_after)) {
        c->failed = 1;
        c->injected = 1;
        snprintf(c->err, sizeof c->err, "injected device failure (CNNELM_FAULTY_FAIL_AFTER=%ld)",
                 c->fail_after);
        return 1;
    }
    c->injected = 0;
    return 0;
}

static cnnelm_status counted(cnnelm_backend_ctx *c, cnnelm_status st)
{
    if (st == CNNELM_OK)
        c->ok_calls++;
    return st;
}

/* A counted call: fails when the budget is spent, else forwards and counts a success. */
#define FORWARD(slot, ...)                                                                   \
    do {                                                                                     \
        if (spent(ctx))                                                                      \
            return CNNELM_ERR_DEVICE;                                                        \
        return counted(ctx, inner->slot(ctx->inner_ctx, __VA_ARGS__));                       \
    } while (0)

/* ---- plugin and devices ------------------------------------------------------------------ */

static cnnelm_status faulty_init(const cnnelm_plugin_params *params, void **state, char *error,
                                 size_t error_size)
{
    *state = NULL;
    if (!inner) {
        snprintf(error, error_size, "%s", load_error);
        return CNNELM_ERR_DEVICE;
    }
    /* the wrapped plugin's state is ours: the device slots below are its own */
    return inner->init(params, state, error, error_size);
}

static cnnelm_status faulty_device_count(int *count) { return inner->device_count(count); }
static cnnelm_status faulty_device_info(int index, cnnelm_device_info *info)
{
    return inner->device_info(index, info);
}

/* ---- contexts ---------------------------------------------------------------------------- */

/* The budget of the context about to open: -1 (none), or < -1 when the variable is malformed. */
static long budget(unsigned which_context)
{
    const char *fa = getenv("CNNELM_FAULTY_FAIL_AFTER");
    if (!fa || !*fa)
        return -1;
    char *end;
    errno = 0;
    long v = strtol(fa, &end, 10), which = 0;
    if (errno == 0 && *end == '@') {
        which = strtol(end + 1, &end, 10);
        if (which < 1)
            v = -1;
    }
    if (errno != 0 || *end != 0 || v < 0)
        return -2;
    return which == 0 || (unsigned long)which == which_context ? v : -1;
}

/* Wraps a context the inner backend opened (or gets it to open one: open_v11 with state). */
static cnnelm_status wrap_open(void *state, int use_v11, int device,
                               const cnnelm_context_params *params, cnnelm_backend_ctx **out,
                               char *error, size_t error_size)
{
    *out = NULL;
    long fail_after = budget(atomic_fetch_add(&contexts_opened, 1u) + 1u);
    if (fail_after < -1) {
        if (error && error_size)
            snprintf(error, error_size, "CNNELM_FAULTY_FAIL_AFTER must be N or N@K (integers, K >= 1)");
        return CNNELM_ERR_INVALID_ARGUMENT;
    }
    cnnelm_backend_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        if (error && error_size)
            snprintf(error, error_size, "out of host memory for a context");
        return CNNELM_ERR_OUT_OF_MEMORY;
    }
    cnnelm_status st = use_v11
        ? inner->context_open_v11(state, device, params, &c->inner_ctx, error, error_size)
        : inner->context_open(device, params, &c->inner_ctx, error, error_size);
    if (st != CNNELM_OK) {
        free(c);
        return st;
    }
    c->fail_after = fail_after;
    *out = c;
    return CNNELM_OK;
}

static cnnelm_status faulty_context_open(int device, const cnnelm_context_params *params,
                                         cnnelm_backend_ctx **out, char *error, size_t error_size)
{
    return wrap_open(NULL, 0, device, params, out, error, error_size);
}

static cnnelm_status faulty_context_open_v11(void *state, int device,
                                             const cnnelm_context_params *params,
                                             cnnelm_backend_ctx **out, char *error,
                                             size_t error_size)
{
    return wrap_open(state, 1, device, params, out, error, error_size);
}

static void faulty_context_close(cnnelm_backend_ctx *ctx)
{
    if (!ctx)
        return;
    inner->context_close(ctx->inner_ctx);
    free(ctx);
}

static const char *faulty_last_error(const cnnelm_backend_ctx *ctx)
{
    if (!ctx)
        return "NULL context";
    return ctx->injected ? ctx->err : inner->last_error(ctx->inner_ctx);
}

/* ---- buffers and transfers --------------------------------------------------------------- */

static cnnelm_status faulty_buffer_alloc(cnnelm_backend_ctx *ctx, size_t bytes, cnnelm_buffer **out)
{
    ctx->injected = 0;
    return inner->buffer_alloc(ctx->inner_ctx, bytes, out);
}

static void faulty_buffer_free(cnnelm_backend_ctx *ctx, cnnelm_buffer *b)
{
    if (ctx)
        inner->buffer_free(ctx->inner_ctx, b);
}

static cnnelm_status faulty_buffer_write(cnnelm_backend_ctx *ctx, cnnelm_buffer *dst, size_t offset,
                                         const void *src, size_t bytes)
{
    FORWARD(buffer_write, dst, offset, src, bytes);
}

static cnnelm_status faulty_buffer_read(cnnelm_backend_ctx *ctx, const cnnelm_buffer *src,
                                        size_t offset, void *dst, size_t bytes)
{
    FORWARD(buffer_read, src, offset, dst, bytes);
}

static cnnelm_status faulty_buffer_write_async(cnnelm_backend_ctx *ctx, cnnelm_buffer *dst,
                                               size_t offset, const void *src, size_t bytes)
{
    FORWARD(buffer_write_async, dst, offset, src, bytes);
}

static cnnelm_status faulty_buffer_read_async(cnnelm_backend_ctx *ctx, const cnnelm_buffer *src,
                                              size_t offset, void *dst, size_t bytes)
{
    FORWARD(buffer_read_async, src, offset, dst, bytes);
}

static cnnelm_status faulty_buffer_copy(cnnelm_backend_ctx *ctx, cnnelm_buffer *dst,
                                        size_t dst_offset, const cnnelm_buffer *src,
                                        size_t src_offset, size_t bytes)
{
    FORWARD(buffer_copy, dst, dst_offset, src, src_offset, bytes);
}

static cnnelm_status faulty_buffer_fill(cnnelm_backend_ctx *ctx, cnnelm_buffer *dst, size_t offset,
                                        size_t bytes, float value)
{
    FORWARD(buffer_fill, dst, offset, bytes, value);
}

/* Fails once the budget is spent, but is not counted (as the CPU backend's own switch was). */
static cnnelm_status faulty_synchronize(cnnelm_backend_ctx *ctx)
{
    if (spent(ctx))
        return CNNELM_ERR_DEVICE;
    return inner->synchronize(ctx->inner_ctx);
}

static cnnelm_status faulty_supports(cnnelm_backend_ctx *ctx, const cnnelm_op_params *op)
{
    ctx->injected = 0;
    return inner->supports(ctx->inner_ctx, op);
}

/* ---- ops --------------------------------------------------------------------------------- */

static cnnelm_status faulty_conv2d_forward(cnnelm_backend_ctx *ctx, const cnnelm_conv_shape *s,
                                           cnnelm_activation act, const cnnelm_buffer *x,
                                           const cnnelm_buffer *w, const cnnelm_buffer *b,
                                           cnnelm_buffer *y)
{
    FORWARD(conv2d_forward, s, act, x, w, b, y);
}

static cnnelm_status faulty_conv2d_backward_data(cnnelm_backend_ctx *ctx, const cnnelm_conv_shape *s,
                                                 const cnnelm_buffer *dy, const cnnelm_buffer *w,
                                                 cnnelm_buffer *dx)
{
    FORWARD(conv2d_backward_data, s, dy, w, dx);
}

static cnnelm_status faulty_conv2d_backward_filter(cnnelm_backend_ctx *ctx,
                                                   const cnnelm_conv_shape *s,
                                                   const cnnelm_buffer *x, const cnnelm_buffer *dy,
                                                   cnnelm_buffer *dw, cnnelm_buffer *db,
                                                   int accumulate)
{
    FORWARD(conv2d_backward_filter, s, x, dy, dw, db, accumulate);
}

static cnnelm_status faulty_pool_forward(cnnelm_backend_ctx *ctx, const cnnelm_pool_shape *s,
                                         cnnelm_pooling mode, const cnnelm_buffer *x,
                                         cnnelm_buffer *y)
{
    FORWARD(pool_forward, s, mode, x, y);
}

static cnnelm_status faulty_pool_backward(cnnelm_backend_ctx *ctx, const cnnelm_pool_shape *s,
                                          cnnelm_pooling mode, const cnnelm_buffer *x,
                                          const cnnelm_buffer *dy, cnnelm_buffer *dx)
{
    FORWARD(pool_backward, s, mode, x, dy, dx);
}

static cnnelm_status faulty_activation_forward(cnnelm_backend_ctx *ctx, cnnelm_activation act,
                                               size_t count, const cnnelm_buffer *x,
                                               cnnelm_buffer *y)
{
    FORWARD(activation_forward, act, count, x, y);
}

static cnnelm_status faulty_activation_backward(cnnelm_backend_ctx *ctx, cnnelm_activation act,
                                                size_t count, const cnnelm_buffer *y,
                                                const cnnelm_buffer *dy, cnnelm_buffer *dx)
{
    FORWARD(activation_backward, act, count, y, dy, dx);
}

static cnnelm_status faulty_elm_accumulate(cnnelm_backend_ctx *ctx, int n, int l, int c,
                                           const cnnelm_buffer *H, const cnnelm_buffer *T,
                                           cnnelm_buffer *U, cnnelm_buffer *V)
{
    FORWARD(elm_accumulate, n, l, c, H, T, U, V);
}

static cnnelm_status faulty_elm_predict(cnnelm_backend_ctx *ctx, int n, int l, int c,
                                        const cnnelm_buffer *H, const cnnelm_buffer *beta,
                                        cnnelm_buffer *Y)
{
    FORWARD(elm_predict, n, l, c, H, beta, Y);
}

static cnnelm_status faulty_elm_backprop(cnnelm_backend_ctx *ctx, int n, int l, int c,
                                         const cnnelm_buffer *E, const cnnelm_buffer *beta,
                                         cnnelm_buffer *dH)
{
    FORWARD(elm_backprop, n, l, c, E, beta, dH);
}

static cnnelm_status faulty_elm_solve(cnnelm_backend_ctx *ctx, int l, int c, double lambda,
                                      const cnnelm_buffer *U, const cnnelm_buffer *V,
                                      cnnelm_buffer *beta)
{
    FORWARD(elm_solve, l, c, lambda, U, V, beta);
}

/* ---- the table: the wrapped one's shape, our forwarding slots ---------------------------- */

static cnnelm_backend table = {
    .abi_major = CNNELM_BACKEND_ABI_MAJOR,
    .abi_minor = CNNELM_BACKEND_ABI_MINOR,
    .table_size = sizeof(cnnelm_backend),
    .name = "faulty",
    .description = "test plugin: a real backend that loses its device on cue (CNNELM_FAULTY_FAIL_AFTER)",
    /* required slots, present even when the target did not load (init then says why) */
    .device_count = faulty_device_count,
    .device_info = faulty_device_info,
    .context_open = faulty_context_open,
    .context_close = faulty_context_close,
    .last_error = faulty_last_error,
    .buffer_alloc = faulty_buffer_alloc,
    .buffer_free = faulty_buffer_free,
    .buffer_write = faulty_buffer_write,
    .buffer_read = faulty_buffer_read,
    .init = faulty_init, /* kept only where the target has one, or to say why it did not load */
};

static pthread_once_t table_once = PTHREAD_ONCE_INIT;

/* Each optional slot is ours where the wrapped table has it (1.1 slots only where its minor
 * and size say so), NULL where it does not. */
#define OPT10(f) table.f = inner->f ? faulty_##f : NULL
#define OPT11(f, ours) table.f = CNNELM_BACKEND_HAS(inner, f) ? (ours) : NULL

static void build_table(void)
{
    load_inner();
    if (!inner)
        return;
    /* a 1.0 target makes a 1.0 plugin: the minor is what the plugin-check and the loader report */
    if (inner->abi_minor < table.abi_minor)
        table.abi_minor = inner->abi_minor;
    OPT10(conv2d_forward);
    OPT10(conv2d_backward_data);
    OPT10(conv2d_backward_filter);
    OPT10(pool_forward);
    OPT10(pool_backward);
    OPT10(activation_forward);
    OPT10(activation_backward);
    OPT10(elm_accumulate);
    OPT10(elm_predict);
    OPT10(elm_backprop);
    OPT10(elm_solve);
    /* device-level slots take the wrapped plugin's state (ours is its) and have no context */
    OPT11(init, faulty_init);
    OPT11(shutdown, inner->shutdown);
    OPT11(device_count_v11, inner->device_count_v11);
    OPT11(device_info_v11, inner->device_info_v11);
    OPT11(device_limits, inner->device_limits);
    OPT11(context_open_v11, faulty_context_open_v11);
    OPT11(supports, faulty_supports);
    OPT11(buffer_write_async, faulty_buffer_write_async);
    OPT11(buffer_read_async, faulty_buffer_read_async);
    OPT11(synchronize, faulty_synchronize);
    OPT11(buffer_copy, faulty_buffer_copy);
    OPT11(buffer_fill, faulty_buffer_fill);
}

CNNELM_PLUGIN_EXPORT const cnnelm_backend *cnnelm_backend_entry(void)
{
    pthread_once(&table_once, build_table);
    return &table;
}
