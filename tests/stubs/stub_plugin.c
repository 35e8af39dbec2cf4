/* Stub backend plugins for the loader's failure tests, one variant per -D flag, in the manner
 * of the OpenCL ICD loader's test/driver_stub: a good table, no entry, another ABI major, a
 * missing (optional) op, a missing required slot, a NULL table. Every op answers CNNELM_ERR_UNSUPPORTED. */
#include <string.h>

#include "cnnelm/backend.h"

static cnnelm_status count(int *n) { *n = 1; return CNNELM_OK; }
static cnnelm_status info(int i, cnnelm_device_info *d)
{
    (void)i;
    memset(d, 0, sizeof *d);
    strcpy(d->name, "stub device");
    strcpy(d->vendor, "cnnelm tests");
    d->kind = CNNELM_DEVICE_OTHER;
    return CNNELM_OK;
}
static cnnelm_status open_(int dev, const cnnelm_context_params *p, cnnelm_backend_ctx **out,
                           char *e, size_t n)
{
    (void)dev; (void)p; (void)e; (void)n;
    *out = NULL;
    return CNNELM_ERR_UNSUPPORTED;
}
static void close_(cnnelm_backend_ctx *c) { (void)c; }
static const char *last(const cnnelm_backend_ctx *c) { (void)c; return "stub"; }
static cnnelm_status alloc_(cnnelm_backend_ctx *c, size_t b, cnnelm_buffer **o) { (void)c; (void)b; *o = NULL; return CNNELM_ERR_UNSUPPORTED; }
static void free_(cnnelm_backend_ctx *c, cnnelm_buffer *b) { (void)c; (void)b; }
static cnnelm_status wr(cnnelm_backend_ctx *c, cnnelm_buffer *d, size_t o, const void *s, size_t b) { (void)c; (void)d; (void)o; (void)s; (void)b; return CNNELM_ERR_UNSUPPORTED; }
__attribute__((unused)) /* NULL in the no-buffers variant */
static cnnelm_status rd(cnnelm_backend_ctx *c, const cnnelm_buffer *s, size_t o, void *d, size_t b) { (void)c; (void)s; (void)o; (void)d; (void)b; return CNNELM_ERR_UNSUPPORTED; }
__attribute__((unused)) /* NULL in the missing-op variant */
static cnnelm_status conv_f(cnnelm_backend_ctx *c, const cnnelm_conv_shape *s, cnnelm_activation a, const cnnelm_buffer *x, const cnnelm_buffer *w, const cnnelm_buffer *b, cnnelm_buffer *y) { (void)c; (void)s; (void)a; (void)x; (void)w; (void)b; (void)y; return CNNELM_ERR_UNSUPPORTED; }
static cnnelm_status conv_bd(cnnelm_backend_ctx *c, const cnnelm_conv_shape *s, const cnnelm_buffer *dy, const cnnelm_buffer *w, cnnelm_buffer *dx) { (void)c; (void)s; (void)dy; (void)w; (void)dx; return CNNELM_ERR_UNSUPPORTED; }
static cnnelm_status conv_bf(cnnelm_backend_ctx *c, const cnnelm_conv_shape *s, const cnnelm_buffer *x, const cnnelm_buffer *dy, cnnelm_buffer *dw, cnnelm_buffer *db, int acc) { (void)c; (void)s; (void)x; (void)dy; (void)dw; (void)db; (void)acc; return CNNELM_ERR_UNSUPPORTED; }
static cnnelm_status pool_f(cnnelm_backend_ctx *c, const cnnelm_pool_shape *s, cnnelm_pooling m, const cnnelm_buffer *x, cnnelm_buffer *y) { (void)c; (void)s; (void)m; (void)x; (void)y; return CNNELM_ERR_UNSUPPORTED; }
static cnnelm_status pool_b(cnnelm_backend_ctx *c, const cnnelm_pool_shape *s, cnnelm_pooling m, const cnnelm_buffer *x, const cnnelm_buffer *dy, cnnelm_buffer *dx) { (void)c; (void)s; (void)m; (void)x; (void)dy; (void)dx; return CNNELM_ERR_UNSUPPORTED; }
static cnnelm_status act_f(cnnelm_backend_ctx *c, cnnelm_activation a, size_t n, const cnnelm_buffer *x, cnnelm_buffer *y) { (void)c; (void)a; (void)n; (void)x; (void)y; return CNNELM_ERR_UNSUPPORTED; }
static cnnelm_status act_b(cnnelm_backend_ctx *c, cnnelm_activation a, size_t n, const cnnelm_buffer *y, const cnnelm_buffer *dy, cnnelm_buffer *dx) { (void)c; (void)a; (void)n; (void)y; (void)dy; (void)dx; return CNNELM_ERR_UNSUPPORTED; }
static cnnelm_status elm_acc(cnnelm_backend_ctx *c, int n, int l, int k, const cnnelm_buffer *H, const cnnelm_buffer *T, cnnelm_buffer *U, cnnelm_buffer *V) { (void)c; (void)n; (void)l; (void)k; (void)H; (void)T; (void)U; (void)V; return CNNELM_ERR_UNSUPPORTED; }
static cnnelm_status elm_pr(cnnelm_backend_ctx *c, int n, int l, int k, const cnnelm_buffer *H, const cnnelm_buffer *b, cnnelm_buffer *Y) { (void)c; (void)n; (void)l; (void)k; (void)H; (void)b; (void)Y; return CNNELM_ERR_UNSUPPORTED; }
static cnnelm_status elm_bp(cnnelm_backend_ctx *c, int n, int l, int k, const cnnelm_buffer *E, const cnnelm_buffer *b, cnnelm_buffer *dH) { (void)c; (void)n; (void)l; (void)k; (void)E; (void)b; (void)dH; return CNNELM_ERR_UNSUPPORTED; }
static cnnelm_status elm_sv(cnnelm_backend_ctx *c, int l, int k, double lam, const cnnelm_buffer *U, const cnnelm_buffer *V, cnnelm_buffer *b) { (void)c; (void)l; (void)k; (void)lam; (void)U; (void)V; (void)b; return CNNELM_ERR_UNSUPPORTED; }

#ifdef STUB_NO_BUFFERS
#define STUB_BUFFER_READ NULL
#else
#define STUB_BUFFER_READ rd
#endif
#ifndef STUB_ABI_MAJOR
#define STUB_ABI_MAJOR CNNELM_BACKEND_ABI_MAJOR
#endif
#ifdef STUB_MISSING_OP
#define STUB_CONV_FORWARD NULL
#else
#define STUB_CONV_FORWARD conv_f
#endif

static const cnnelm_backend table = {
    .abi_major = STUB_ABI_MAJOR, .abi_minor = CNNELM_BACKEND_ABI_MINOR,
    .table_size = sizeof(cnnelm_backend), .name = STUB_NAME, .description = "loader test stub",
    .device_count = count, .device_info = info, .context_open = open_, .context_close = close_,
    .last_error = last, .buffer_alloc = alloc_, .buffer_free = free_, .buffer_write = wr,
    .buffer_read = STUB_BUFFER_READ, .conv2d_forward = STUB_CONV_FORWARD, .conv2d_backward_data = conv_bd,
    .conv2d_backward_filter = conv_bf, .pool_forward = pool_f, .pool_backward = pool_b,
    .activation_forward = act_f, .activation_backward = act_b, .elm_accumulate = elm_acc,
    .elm_predict = elm_pr, .elm_backprop = elm_bp, .elm_solve = elm_sv,
};

#if defined(STUB_NULL_TABLE)
CNNELM_PLUGIN_EXPORT const cnnelm_backend *cnnelm_backend_entry(void);
CNNELM_PLUGIN_EXPORT const cnnelm_backend *cnnelm_backend_entry(void) { (void)table; return NULL; }
#elif defined(STUB_NO_ENTRY)
CNNELM_PLUGIN_EXPORT const cnnelm_backend *some_other_symbol(void);
CNNELM_PLUGIN_EXPORT const cnnelm_backend *some_other_symbol(void) { return &table; }
#else
CNNELM_BACKEND_DEFINE_ENTRY(table)
#endif
