/* A partial backend for the fallback tests: host-memory buffers and convolution forward (the CPU
 * backend's own kernels, linked in: convonly_cpu.c), every other op left NULL, as an FPGA
 * team's first plugin would be. The core must run the missing ops on the CPU reference and
 * train to the CPU backend's accuracy; with the same convolution, its training step measures
 * what the core's fallback costs (bench/bench_abi.sh).
 * Built again for the conformance checker's tests, one variant per -D flag:
 *   -DBROKEN_WRONG       conv2d_forward adds 0.01 to every output (plugin-check must FAIL it)
 *   -DBROKEN_CRASH       conv2d_forward dereferences NULL (a crash must be reported, not fatal)
 *   -DWITH_POOL          pool_forward in plain loops too, so a check can pass beside a failure
 *   -DBROKEN_CRASH_POOL  (with WITH_POOL) pool_forward dereferences NULL */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnnelm/backend.h"
#include "cnnelm/backend_util.h"
#include "convonly_cpu.h"

#ifndef STUB_NAME
#define STUB_NAME "convonly"
#endif

/* 64-byte aligned data, as the CPU backend's buffers (its kernels and caches expect it) */
struct cnnelm_buffer { CNNELM_BUFFER_LINKS; size_t bytes; float *data; };
struct cnnelm_backend_ctx {
    char error[256];
    struct cnnelm_buffer *buffers; /* all live ones */
    void *engine;                  /* the CPU backend's convolution (convonly_cpu.c) */
};

static cnnelm_status count(int *n) { *n = 1; return CNNELM_OK; }
static cnnelm_status info(int i, cnnelm_device_info *d)
{
    (void)i;
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "convolution-only test device");
    snprintf(d->vendor, sizeof d->vendor, "cnnelm tests");
    d->kind = CNNELM_DEVICE_FPGA;
    d->compute_units = 1;
    return CNNELM_OK;
}
static void release(cnnelm_buffer *b)
{
    free(b->data);
    free(b);
}
static cnnelm_status open_(int dev, const cnnelm_context_params *p, cnnelm_backend_ctx **out,
                           char *e, size_t n)
{
    (void)dev;
    *out = calloc(1, sizeof **out);
    if (!*out)
        return CNNELM_ERR_OUT_OF_MEMORY;
    int threads = CNNELM_PARAMS_HAS(p, threads) && p->threads > 0 ? p->threads : 1;
    (*out)->engine = convonly_engine_open(threads, e, n);
    if (!(*out)->engine) {
        free(*out);
        *out = NULL;
        return CNNELM_ERR_OUT_OF_MEMORY;
    }
    return CNNELM_OK;
}
static void close_(cnnelm_backend_ctx *c) /* frees every buffer still allocated, as the ABI says */
{
    CNNELM_BUFFER_LIST_FREE_ALL(&c->buffers, release);
    convonly_engine_close(c->engine);
    free(c);
}
static const char *last(const cnnelm_backend_ctx *c) { return c->error; }
static cnnelm_status alloc_(cnnelm_backend_ctx *c, size_t b, cnnelm_buffer **o)
{
    *o = malloc(sizeof **o);
    void *data = NULL;
    if (!*o || posix_memalign(&data, 64, b ? b : 1) != 0) {
        free(*o);
        *o = NULL;
        return CNNELM_ERR_OUT_OF_MEMORY;
    }
    (*o)->data = data;
    (*o)->bytes = b;
    CNNELM_BUFFER_LIST_ADD(&c->buffers, *o);
    return CNNELM_OK;
}
static void free_(cnnelm_backend_ctx *c, cnnelm_buffer *b)
{
    if (!b)
        return;
    CNNELM_BUFFER_LIST_REMOVE(&c->buffers, b);
    release(b);
}
static cnnelm_status wr(cnnelm_backend_ctx *c, cnnelm_buffer *d, size_t o, const void *s, size_t b)
{
    if (o + b > d->bytes) {
        snprintf(c->error, sizeof c->error, "write past the end of a buffer");
        return CNNELM_ERR_INVALID_ARGUMENT;
    }
    memcpy((char *)d->data + o, s, b);
    return CNNELM_OK;
}
static cnnelm_status rd(cnnelm_backend_ctx *c, const cnnelm_buffer *s, size_t o, void *d, size_t b)
{
    if (o + b > s->bytes) {
        snprintf(c->error, sizeof c->error, "read past the end of a buffer");
        return CNNELM_ERR_INVALID_ARGUMENT;
    }
    memcpy(d, (const char *)s->data + o, b);
    return CNNELM_OK;
}
static cnnelm_status conv_f(cnnelm_backend_ctx *c, const cnnelm_conv_shape *s, cnnelm_activation a,
                            const cnnelm_buffer *x, const cnnelm_buffer *w, const cnnelm_buffer *b,
                            cnnelm_buffer *y)
{
#ifdef BROKEN_CRASH
    volatile float *nowhere = NULL;
    *nowhere = 1.0f;
#endif
    if (a == CNNELM_ACT_OPTTANH) { /* "not for this shape": the reference takes it */
        snprintf(c->error, sizeof c->error, "optimal tanh not implemented");
        return CNNELM_ERR_UNSUPPORTED;
    }
    cnnelm_status st = convonly_engine_conv(c->engine, s, a, x->data, w->data, b->data, y->data);
    if (st != CNNELM_OK) {
        snprintf(c->error, sizeof c->error, "%s", convonly_engine_error(c->engine));
        return st;
    }
#ifdef BROKEN_WRONG
    size_t ny = (size_t)s->n * s->c_out * (s->h - s->k + 1) * (s->w - s->k + 1);
    for (size_t i = 0; i < ny; i++)
        y->data[i] += 0.01f;
#endif
    return CNNELM_OK;
}

#ifdef WITH_POOL
static cnnelm_status pool_f(cnnelm_backend_ctx *c, const cnnelm_pool_shape *s, cnnelm_pooling m,
                            const cnnelm_buffer *x, cnnelm_buffer *y)
{
    (void)c;
#ifdef BROKEN_CRASH_POOL
    volatile float *nowhere = NULL;
    *nowhere = 1.0f;
#endif
    int oh = s->h / s->s, ow = s->w / s->s;
    for (int nc = 0; nc < s->n * s->c; nc++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                const float *blk = x->data + ((size_t)nc * s->h + (size_t)i * s->s) * s->w + (size_t)j * s->s;
                float v = m == CNNELM_POOL_MAX ? blk[0] : 0.0f;
                for (int p = 0; p < s->s; p++)
                    for (int q = 0; q < s->s; q++) {
                        float e = blk[(size_t)p * s->w + q];
                        v = m == CNNELM_POOL_MAX ? (e > v ? e : v) : v + e;
                    }
                if (m == CNNELM_POOL_MEAN)
                    v /= (float)(s->s * s->s);
                y->data[((size_t)nc * oh + i) * ow + j] = v;
            }
    return CNNELM_OK;
}
#define POOL_FORWARD pool_f
#else
#define POOL_FORWARD NULL
#endif

/* An "FPGA" in host memory: the core's host-memory slices suit it (0 would mean 1 MiB). */
static cnnelm_status limits(void *state, int index, cnnelm_device_limits *l)
{
    (void)state;
    (void)index;
    if (CNNELM_PARAMS_HAS(l, preferred_transfer_bytes))
        l->preferred_transfer_bytes = 32 * 1024;
    return CNNELM_OK;
}

static const cnnelm_backend table = {
    .abi_major = CNNELM_BACKEND_ABI_MAJOR, .abi_minor = CNNELM_BACKEND_ABI_MINOR,
    .table_size = sizeof(cnnelm_backend), .name = STUB_NAME,
    .description = "test backend with convolution forward only",
    .device_count = count, .device_info = info, .context_open = open_, .context_close = close_,
    .last_error = last, .buffer_alloc = alloc_, .buffer_free = free_, .buffer_write = wr,
    .buffer_read = rd, .conv2d_forward = conv_f, .pool_forward = POOL_FORWARD,
    .device_limits = limits,
};

CNNELM_BACKEND_DEFINE_ENTRY(table)
