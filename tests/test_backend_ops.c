/* Every op of one backend plugin against the plain-loop reference (ref_ops.c) on random inputs
 * and many shapes, plus argument validation, buffer round trips and finite-difference gradient
 * checks of every backward op. The backend is $CNNELM_TEST_BACKEND (default "cpu").
 *
 * Error measure: for each element, |got - ref| / (1 + |ref|); the test fails when the largest
 * over the output exceeds the op's tolerance:
 *
 *   op                        tolerance  why
 *   conv2d_forward            1e-4       float sums of c_in*k*k products (<= 150 here)
 *   conv2d_backward_data      1e-4       float sums of c_out*k*k products
 *   conv2d_backward_filter    2e-4       float sums over n*oh*ow pixels (up to ~3000)
 *   pool_forward/backward     1e-6       a mean of s*s values, or a copy
 *   activation relu/identity  0          exact
 *   activation opttanh        1e-5       tanhf against tanh
 *   elm_accumulate            1e-4       float sums over n rows (U, V), relative to 1 + |U|
 *   elm_predict, elm_backprop 1e-5       float sums of l (or c) products
 *   elm_solve                 1e-4       double solve, condition number < 1e3 here
 *   gradient checks           2e-3       backward op against central differences (double
 *                                        loss from the reference ops, eps 1e-2 or 1e-3)
 */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnelm/plugin.h"
#include "model/ops.h"
#include "ref_ops.h"

#define TOL_CONV 1e-4
#define TOL_CONV_FILTER 2e-4
#define TOL_POOL 1e-6
#define TOL_TANH 1e-5
#define TOL_ELM_ACC 1e-4
#define TOL_ELM 1e-5
#define TOL_SOLVE 1e-4
#define TOL_GRAD 2e-3

static cnnelm_plugin *plug;
static const cnnelm_backend *be;
static cnnelm_backend_ctx *ctx;

static const char *backend_name(void)
{
    const char *b = getenv("CNNELM_TEST_BACKEND");
    return b && *b ? b : "cpu";
}

static int is_cpu(void) { return strcmp(backend_name(), "cpu") == 0; }

static cnnelm_backend_ctx *open_ctx(int threads)
{
    cnnelm_context_params params = { .struct_size = sizeof params, .threads = threads };
    cnnelm_backend_ctx *c = NULL;
    char why[512] = "";
    cnnelm_status st = be->context_open(0, &params, &c, why, sizeof why);
    ck_assert_msg(st == CNNELM_OK && c, "context_open: %s: %s", cnnelm_status_name(st), why);
    return c;
}

static void setup(void)
{
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_plugin_load(backend_name(), NULL, &plug, &err) == 0, "%s", err.msg);
    be = plug->ops;
    ctx = open_ctx(2);
}

static void teardown(void)
{
    if (ctx)
        be->context_close(ctx);
    ctx = NULL;
    if (plug)
        cnnelm_plugin_unload(plug);
    plug = NULL;
}

/* ---- helpers ------------------------------------------------------------------------------ */

#define OK(expr)                                                                            \
    do {                                                                                    \
        cnnelm_status st_ = (expr);                                                         \
        ck_assert_msg(st_ == CNNELM_OK, "%s: %s: %s", #expr, cnnelm_status_name(st_),       \
                      be->last_error(ctx));                                                 \
    } while (0)

#define EXPECT(code, expr)                                                                  \
    do {                                                                                    \
        cnnelm_status st_ = (expr);                                                         \
        ck_assert_msg(st_ == (code), "%s: expected %s, got %s", #expr,                      \
                      cnnelm_status_name(code), cnnelm_status_name(st_));                   \
        const char *m_ = be->last_error(ctx);                                               \
        ck_assert_msg(m_ && *m_, "%s: no message from last_error()", #expr);                \
    } while (0)

static uint64_t rng;
static void seed(uint64_t s) { rng = s * 0x9E3779B97F4A7C15ull + 1; }
static double uniform(void) /* [0, 1) */
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}
/* Uniform in [-1, -0.05] U [0.05, 1]: random, never zero. */
static float rnd(void)
{
    double m = 0.05 + 0.95 * uniform();
    return (float)(uniform() < 0.5 ? -m : m);
}
static float *rand_array(size_t n)
{
    float *a = malloc(sizeof(float) * (n ? n : 1));
    ck_assert_ptr_nonnull(a);
    for (size_t i = 0; i < n; i++)
        a[i] = rnd();
    return a;
}
static float *alloc_array(size_t n)
{
    float *a = calloc(n ? n : 1, sizeof(float));
    ck_assert_ptr_nonnull(a);
    return a;
}

static cnnelm_buffer *upload(const float *h, size_t n)
{
    cnnelm_buffer *b = NULL;
    OK(be->buffer_alloc(ctx, sizeof(float) * (n ? n : 1), &b));
    if (h && n)
        OK(be->buffer_write(ctx, b, 0, h, sizeof(float) * n));
    return b;
}
static cnnelm_buffer *device_array(size_t n) { return upload(NULL, n); }
static void download(const cnnelm_buffer *b, float *h, size_t n)
{
    OK(be->buffer_read(ctx, b, 0, h, sizeof(float) * n));
}

static void expect_close(const char *what, const float *got, const float *want, size_t n,
                         double tol)
{
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]) / (1 + fabs((double)want[i]));
        if (!(e <= worst) || isnan(got[i])) {
            worst = isnan(got[i]) || isnan(e) ? INFINITY : e;
            at = i;
            if (isinf(worst))
                break;
        }
    }
    ck_assert_msg(worst <= tol, "%s: max error %.3g > %.3g at %zu of %zu (got %.9g, want %.9g)",
                  what, worst, tol, at, n, n ? (double)got[at] : 0.0, n ? (double)want[at] : 0.0);
}

static const char *act_name(cnnelm_activation a)
{
    return a == CNNELM_ACT_RELU ? "relu" : a == CNNELM_ACT_OPTTANH ? "opttanh" : "identity";
}

/* ---- shapes ------------------------------------------------------------------------------- */

static const cnnelm_conv_shape conv_shapes[] = {
    { 3, 1, 28, 28, 6, 5 },   /* 6c on 28x28 (the default first layer) */
    { 2, 6, 12, 12, 12, 5 },  /* 12c on 6x12x12 (the default second layer) */
    { 1, 3, 9, 13, 5, 3 },    /* n=1, k=3, non-square, odd sizes */
    { 2, 2, 7, 5, 3, 1 },     /* k=1 */
    { 5, 4, 17, 30, 7, 5 },   /* odd c_out, wide rows */
    { 1, 1, 5, 5, 1, 5 },     /* kernel as large as the input: 1x1 output */
    { 19, 2, 10, 10, 13, 3 }, /* more images than one block, c_out=13 */
    { 2, 1, 6, 40, 2, 4 },    /* even k, 3x37 output */
    { 4, 3, 32, 32, 6, 5 },   /* an RGB first layer: c_in = 3 with k = 5 (OpenCL's unrolled local kernels) */
};
#define N_CONV (sizeof conv_shapes / sizeof conv_shapes[0])

static const cnnelm_pool_shape pool_shapes[] = {
    { 3, 6, 24, 24, 2 }, { 2, 12, 8, 8, 2 }, { 1, 3, 9, 15, 3 }, { 2, 2, 6, 4, 2 },
    { 2, 3, 12, 8, 4 },  { 1, 2, 5, 7, 1 },  { 4, 5, 18, 18, 3 },
};
#define N_POOL (sizeof pool_shapes / sizeof pool_shapes[0])

static char *shape_str(const cnnelm_conv_shape *s)
{
    static char buf[128];
    snprintf(buf, sizeof buf, "n=%d c_in=%d %dx%d c_out=%d k=%d", s->n, s->c_in, s->h, s->w,
             s->c_out, s->k);
    return buf;
}

/* ---- device, buffers ---------------------------------------------------------------------- */

START_TEST(device_info)
{
    int n = 0;
    OK(be->device_count(&n));
    ck_assert_int_ge(n, 1);
    cnnelm_device_info info;
    OK(be->device_info(0, &info));
    ck_assert_msg(info.name[0] != 0, "device 0 has no name");
    ck_assert_int_le(info.kind, CNNELM_DEVICE_OTHER);
    ck_assert_int_ne(be->device_info(n, &info), CNNELM_OK);
    if (is_cpu()) {
        ck_assert_str_eq(info.name, "cpu");
        ck_assert_int_eq(info.kind, CNNELM_DEVICE_CPU);
        ck_assert_uint_ge(info.compute_units, 1);
    }
}
END_TEST

START_TEST(buffer_round_trip)
{
    unsigned char pattern[256], back[256];
    for (int i = 0; i < 256; i++)
        pattern[i] = (unsigned char)(i * 37 + 11);
    cnnelm_buffer *b = NULL;
    OK(be->buffer_alloc(ctx, 1000, &b));
    OK(be->buffer_write(ctx, b, 0, pattern, 256));
    OK(be->buffer_write(ctx, b, 744, pattern, 256)); /* up to the last byte */
    OK(be->buffer_write(ctx, b, 300, pattern + 3, 101));
    memset(back, 0, sizeof back);
    OK(be->buffer_read(ctx, b, 300, back, 101));
    ck_assert_int_eq(memcmp(back, pattern + 3, 101), 0);
    OK(be->buffer_read(ctx, b, 744 + 17, back, 239));
    ck_assert_int_eq(memcmp(back, pattern + 17, 239), 0);
    OK(be->buffer_read(ctx, b, 4, back, 10)); /* the first write, not overwritten */
    ck_assert_int_eq(memcmp(back, pattern + 4, 10), 0);
    EXPECT(CNNELM_ERR_INVALID_ARGUMENT, be->buffer_write(ctx, b, 745, pattern, 256));
    EXPECT(CNNELM_ERR_INVALID_ARGUMENT, be->buffer_read(ctx, b, 1001, back, 0));
    EXPECT(CNNELM_ERR_INVALID_ARGUMENT, be->buffer_read(ctx, b, SIZE_MAX, back, 2));
    EXPECT(CNNELM_ERR_INVALID_ARGUMENT, be->buffer_read(ctx, b, 8, back, SIZE_MAX - 4));
    EXPECT(CNNELM_ERR_INVALID_ARGUMENT, be->buffer_write(ctx, NULL, 0, pattern, 4));
    EXPECT(CNNELM_ERR_INVALID_ARGUMENT, be->buffer_read(ctx, NULL, 0, back, 4));
    be->buffer_free(ctx, b);
    be->buffer_free(ctx, NULL);
    /* Buffers left allocated are freed by context_close (teardown): ASan checks it. */
    cnnelm_buffer *left = NULL;
    OK(be->buffer_alloc(ctx, 64, &left));
}
END_TEST

/* ---- convolution -------------------------------------------------------------------------- */

START_TEST(conv_forward)
{
    const cnnelm_activation acts[] = { CNNELM_ACT_RELU, CNNELM_ACT_IDENTITY, CNNELM_ACT_OPTTANH };
    for (size_t si = 0; si < N_CONV; si++) {
        const cnnelm_conv_shape *s = &conv_shapes[si];
        seed(100 + si);
        size_t nx = ref_conv_x_count(s), nw = ref_conv_w_count(s), ny = ref_conv_y_count(s);
        float *x = rand_array(nx), *w = rand_array(nw), *b = rand_array((size_t)s->c_out);
        float *want = alloc_array(ny), *got = alloc_array(ny);
        cnnelm_buffer *dx = upload(x, nx), *dw = upload(w, nw), *db = upload(b, (size_t)s->c_out);
        cnnelm_buffer *dy = device_array(ny);
        for (size_t a = 0; a < 3; a++) {
            ref_conv2d_forward(s, acts[a], x, w, b, want);
            OK(be->conv2d_forward(ctx, s, acts[a], dx, dw, db, dy));
            download(dy, got, ny);
            char what[200];
            snprintf(what, sizeof what, "conv2d_forward %s %s", act_name(acts[a]), shape_str(s));
            expect_close(what, got, want, ny, TOL_CONV);
        }
        be->buffer_free(ctx, dx);
        be->buffer_free(ctx, dw);
        be->buffer_free(ctx, db);
        be->buffer_free(ctx, dy);
        free(x), free(w), free(b), free(want), free(got);
    }
}
END_TEST

START_TEST(conv_backward_data)
{
    for (size_t si = 0; si < N_CONV; si++) {
        const cnnelm_conv_shape *s = &conv_shapes[si];
        seed(200 + si);
        size_t nx = ref_conv_x_count(s), nw = ref_conv_w_count(s), ny = ref_conv_y_count(s);
        float *g = rand_array(ny), *w = rand_array(nw);
        float *want = alloc_array(nx), *got = alloc_array(nx);
        ref_conv2d_backward_data(s, g, w, want);
        cnnelm_buffer *dg = upload(g, ny), *dw = upload(w, nw);
        float *junk = rand_array(nx); /* dx is overwritten, whatever it held */
        cnnelm_buffer *dx = upload(junk, nx);
        OK(be->conv2d_backward_data(ctx, s, dg, dw, dx));
        download(dx, got, nx);
        char what[200];
        snprintf(what, sizeof what, "conv2d_backward_data %s", shape_str(s));
        expect_close(what, got, want, nx, TOL_CONV);
        be->buffer_free(ctx, dg);
        be->buffer_free(ctx, dw);
        be->buffer_free(ctx, dx);
        free(g), free(w), free(want), free(got), free(junk);
    }
}
END_TEST

START_TEST(conv_backward_filter)
{
    for (size_t si = 0; si < N_CONV; si++) {
        const cnnelm_conv_shape *s = &conv_shapes[si];
        seed(300 + si);
        size_t nx = ref_conv_x_count(s), nw = ref_conv_w_count(s), ny = ref_conv_y_count(s);
        size_t nb = (size_t)s->c_out;
        float *x = rand_array(nx), *g = rand_array(ny);
        float *w0 = rand_array(nw), *b0 = rand_array(nb); /* what dw and db held before */
        float *want_w = alloc_array(nw), *want_b = alloc_array(nb);
        float *got_w = alloc_array(nw), *got_b = alloc_array(nb);
        cnnelm_buffer *dx = upload(x, nx), *dg = upload(g, ny);
        cnnelm_buffer *dw = upload(w0, nw), *db = upload(b0, nb);
        char what[200];
        /* accumulate = 0 overwrites */
        ref_conv2d_backward_filter(s, x, g, want_w, want_b, 0);
        OK(be->conv2d_backward_filter(ctx, s, dx, dg, dw, db, 0));
        download(dw, got_w, nw);
        download(db, got_b, nb);
        snprintf(what, sizeof what, "conv2d_backward_filter dw %s", shape_str(s));
        expect_close(what, got_w, want_w, nw, TOL_CONV_FILTER);
        snprintf(what, sizeof what, "conv2d_backward_filter db %s", shape_str(s));
        expect_close(what, got_b, want_b, nb, TOL_CONV_FILTER);
        /* accumulate != 0 adds to what is there */
        OK(be->buffer_write(ctx, dw, 0, w0, sizeof(float) * nw));
        OK(be->buffer_write(ctx, db, 0, b0, sizeof(float) * nb));
        memcpy(want_w, w0, sizeof(float) * nw);
        memcpy(want_b, b0, sizeof(float) * nb);
        ref_conv2d_backward_filter(s, x, g, want_w, want_b, 1);
        OK(be->conv2d_backward_filter(ctx, s, dx, dg, dw, db, 1));
        ref_conv2d_backward_filter(s, x, g, want_w, want_b, 1);
        OK(be->conv2d_backward_filter(ctx, s, dx, dg, dw, db, 7)); /* any non-zero flag */
        download(dw, got_w, nw);
        download(db, got_b, nb);
        snprintf(what, sizeof what, "conv2d_backward_filter (accumulate) dw %s", shape_str(s));
        expect_close(what, got_w, want_w, nw, TOL_CONV_FILTER);
        snprintf(what, sizeof what, "conv2d_backward_filter (accumulate) db %s", shape_str(s));
        expect_close(what, got_b, want_b, nb, TOL_CONV_FILTER);
        be->buffer_free(ctx, dx);
        be->buffer_free(ctx, dg);
        be->buffer_free(ctx, dw);
        be->buffer_free(ctx, db);
        free(x), free(g), free(w0), free(b0), free(want_w), free(want_b), free(got_w), free(got_b);
    }
}
END_TEST

/* ---- pooling ------------------------------------------------------------------------------ */

/* Values in {-1, -0.5, 0.5, 1}: max pooling blocks with ties everywhere. */
static float *tie_array(size_t n)
{
    float *a = alloc_array(n);
    static const float v[4] = { -1.0f, -0.5f, 0.5f, 1.0f };
    for (size_t i = 0; i < n; i++)
        a[i] = v[(int)(uniform() * 4) & 3];
    return a;
}

static void check_pool(const cnnelm_pool_shape *s, cnnelm_pooling mode, int ties)
{
    size_t nx = ref_pool_x_count(s), ny = ref_pool_y_count(s);
    float *x = ties ? tie_array(nx) : rand_array(nx), *g = rand_array(ny);
    float *want_y = alloc_array(ny), *got_y = alloc_array(ny);
    float *want_dx = alloc_array(nx), *got_dx = rand_array(nx);
    ref_pool_forward(s, mode, x, want_y);
    ref_pool_backward(s, mode, x, g, want_dx);
    cnnelm_buffer *bx = upload(x, nx), *bg = upload(g, ny), *by = device_array(ny);
    cnnelm_buffer *bdx = upload(got_dx, nx); /* junk: dx is overwritten */
    OK(be->pool_forward(ctx, s, mode, bx, by));
    OK(be->pool_backward(ctx, s, mode, bx, bg, bdx));
    download(by, got_y, ny);
    download(bdx, got_dx, nx);
    char what[200];
    snprintf(what, sizeof what, "pool_forward %s%s n=%d c=%d %dx%d s=%d",
             mode == CNNELM_POOL_MAX ? "max" : "mean", ties ? " (ties)" : "", s->n, s->c, s->h,
             s->w, s->s);
    expect_close(what, got_y, want_y, ny, TOL_POOL);
    memcpy(what, "pool_backward", 13);
    expect_close(what, got_dx, want_dx, nx, TOL_POOL);
    be->buffer_free(ctx, bx);
    be->buffer_free(ctx, bg);
    be->buffer_free(ctx, by);
    be->buffer_free(ctx, bdx);
    free(x), free(g), free(want_y), free(got_y), free(want_dx), free(got_dx);
}

START_TEST(pooling)
{
    for (size_t si = 0; si < N_POOL; si++) {
        seed(400 + si);
        check_pool(&pool_shapes[si], CNNELM_POOL_MEAN, 0);
        check_pool(&pool_shapes[si], CNNELM_POOL_MAX, 0);
        check_pool(&pool_shapes[si], CNNELM_POOL_MAX, 1);
    }
}
END_TEST

/* ---- activations -------------------------------------------------------------------------- */

START_TEST(activations)
{
    const size_t counts[] = { 1, 7, 64, 100003 };
    const cnnelm_activation acts[] = { CNNELM_ACT_RELU, CNNELM_ACT_IDENTITY, CNNELM_ACT_OPTTANH };
    for (size_t ci = 0; ci < 4; ci++)
        for (size_t a = 0; a < 3; a++) {
            size_t n = counts[ci];
            seed(500 + ci * 3 + a);
            float *x = rand_array(n), *g = rand_array(n);
            for (size_t i = 0; i < n; i++)
                x[i] *= 3; /* reach tanh's flat parts */
            float *want_y = alloc_array(n), *want_dx = alloc_array(n), *got = alloc_array(n);
            ref_activation_forward(acts[a], n, x, want_y);
            ref_activation_backward(acts[a], n, want_y, g, want_dx);
            double tol = acts[a] == CNNELM_ACT_OPTTANH ? TOL_TANH : 0;
            char what[128];
            cnnelm_buffer *bx = upload(x, n), *by = device_array(n), *bg = upload(g, n);
            cnnelm_buffer *bdx = device_array(n);
            /* out of place */
            OK(be->activation_forward(ctx, acts[a], n, bx, by));
            download(by, got, n);
            snprintf(what, sizeof what, "activation_forward %s count=%zu", act_name(acts[a]), n);
            expect_close(what, got, want_y, n, tol);
            OK(be->activation_backward(ctx, acts[a], n, by, bg, bdx));
            download(bdx, got, n);
            snprintf(what, sizeof what, "activation_backward %s count=%zu", act_name(acts[a]), n);
            expect_close(what, got, want_dx, n, tol);
            /* in place: y aliases x, dx aliases dy (allowed by backend.h) */
            OK(be->activation_forward(ctx, acts[a], n, bx, bx));
            download(bx, got, n);
            snprintf(what, sizeof what, "activation_forward in place %s count=%zu",
                     act_name(acts[a]), n);
            expect_close(what, got, want_y, n, tol);
            OK(be->activation_backward(ctx, acts[a], n, by, bg, bg));
            download(bg, got, n);
            snprintf(what, sizeof what, "activation_backward in place %s count=%zu",
                     act_name(acts[a]), n);
            expect_close(what, got, want_dx, n, tol);
            be->buffer_free(ctx, bx);
            be->buffer_free(ctx, by);
            be->buffer_free(ctx, bg);
            be->buffer_free(ctx, bdx);
            free(x), free(g), free(want_y), free(want_dx), free(got);
        }
}
END_TEST

/* ---- ELM ---------------------------------------------------------------------------------- */

static const int elm_shapes[][3] = { /* n, l, c */
    { 1000, 192, 10 }, { 37, 70, 3 }, { 5, 1, 1 }, { 130, 129, 10 }, { 1, 65, 2 },
};
#define N_ELM (sizeof elm_shapes / sizeof elm_shapes[0])

START_TEST(elm_products)
{
    for (size_t si = 0; si < N_ELM; si++) {
        int n = elm_shapes[si][0], l = elm_shapes[si][1], c = elm_shapes[si][2];
        seed(600 + si);
        size_t nh = (size_t)n * l, nt = (size_t)n * c, nu = (size_t)l * l, nv = (size_t)l * c;
        float *H = rand_array(nh), *T = rand_array(nt), *H2 = rand_array(nh), *T2 = rand_array(nt);
        float *U = rand_array(nu), *V = rand_array(nv), *beta = rand_array(nv);
        float *got = alloc_array(nh > nu ? nh : nu), *want = alloc_array(nh > nu ? nh : nu);
        cnnelm_buffer *bH = upload(H, nh), *bT = upload(T, nt), *bU = upload(U, nu), *bV = upload(V, nv);
        char what[128];
        /* Twice, with other rows the second time: the products add up (U starts random and
         * not symmetric, so both triangles are checked). */
        ref_elm_accumulate(n, l, c, H, T, U, V);
        ref_elm_accumulate(n, l, c, H2, T2, U, V);
        OK(be->elm_accumulate(ctx, n, l, c, bH, bT, bU, bV));
        OK(be->buffer_write(ctx, bH, 0, H2, sizeof(float) * nh));
        OK(be->buffer_write(ctx, bT, 0, T2, sizeof(float) * nt));
        OK(be->elm_accumulate(ctx, n, l, c, bH, bT, bU, bV));
        download(bU, got, nu);
        snprintf(what, sizeof what, "elm_accumulate U n=%d l=%d c=%d", n, l, c);
        expect_close(what, got, U, nu, TOL_ELM_ACC);
        download(bV, got, nv);
        snprintf(what, sizeof what, "elm_accumulate V n=%d l=%d c=%d", n, l, c);
        expect_close(what, got, V, nv, TOL_ELM_ACC);

        cnnelm_buffer *bB = upload(beta, nv), *bY = device_array(nt), *bdH = device_array(nh);
        ref_elm_predict(n, l, c, H2, beta, want);
        OK(be->elm_predict(ctx, n, l, c, bH, bB, bY));
        download(bY, got, nt);
        snprintf(what, sizeof what, "elm_predict n=%d l=%d c=%d", n, l, c);
        expect_close(what, got, want, nt, TOL_ELM);
        ref_elm_backprop(n, l, c, T, beta, want); /* E: any n x c matrix */
        OK(be->buffer_write(ctx, bY, 0, T, sizeof(float) * nt));
        OK(be->elm_backprop(ctx, n, l, c, bY, bB, bdH));
        download(bdH, got, nh);
        snprintf(what, sizeof what, "elm_backprop n=%d l=%d c=%d", n, l, c);
        expect_close(what, got, want, nh, TOL_ELM);
        cnnelm_buffer *bufs[] = { bH, bT, bU, bV, bB, bY, bdH };
        for (size_t i = 0; i < 7; i++)
            be->buffer_free(ctx, bufs[i]);
        free(H), free(T), free(H2), free(T2), free(U), free(V), free(beta), free(got), free(want);
    }
}
END_TEST

START_TEST(elm_solve)
{
    const int cases[][3] = { { 64, 24, 3 }, { 300, 70, 10 }, { 3, 1, 1 }, { 20, 40, 2 } }; /* n, l, c */
    const double lambdas[] = { 1.0, 100.0, 0.5, 10.0 };
    for (size_t ci = 0; ci < 4; ci++) {
        int n = cases[ci][0], l = cases[ci][1], c = cases[ci][2];
        seed(700 + ci);
        size_t nh = (size_t)n * l, nt = (size_t)n * c, nu = (size_t)l * l, nv = (size_t)l * c;
        float *H = rand_array(nh), *T = rand_array(nt);
        float *U = alloc_array(nu), *V = alloc_array(nv), *want = alloc_array(nv), *got = alloc_array(nv);
        for (size_t i = 0; i < nh; i++)
            H[i] *= 0.3f; /* keeps I/lambda + U well conditioned */
        ref_elm_accumulate(n, l, c, H, T, U, V);
        ck_assert_int_eq(ref_elm_solve(l, c, lambdas[ci], U, V, want), 0);
        cnnelm_buffer *bU = upload(U, nu), *bV = upload(V, nv), *bB = device_array(nv);
        OK(be->elm_solve(ctx, l, c, lambdas[ci], bU, bV, bB));
        download(bB, got, nv);
        char what[128];
        snprintf(what, sizeof what, "elm_solve l=%d c=%d lambda=%g", l, c, lambdas[ci]);
        expect_close(what, got, want, nv, TOL_SOLVE);
        /* U and V unchanged */
        download(bU, got, nv < nu ? nv : nu);
        ck_assert_int_eq(memcmp(got, U, sizeof(float) * (nv < nu ? nv : nu)), 0);
        be->buffer_free(ctx, bU);
        be->buffer_free(ctx, bV);
        be->buffer_free(ctx, bB);
        free(H), free(T), free(U), free(V), free(want), free(got);
    }
}
END_TEST

START_TEST(elm_solve_not_positive_definite)
{
    const int l = 16, c = 3;
    float U[16 * 16] = { 0 }, V[16 * 3], beta[16 * 3], back[16 * 3];
    seed(800);
    for (int i = 0; i < l; i++)
        U[i * l + i] = -1.0f; /* I/lambda + U = -0.999 I */
    for (int i = 0; i < l * c; i++)
        V[i] = rnd(), beta[i] = 1234.5f + (float)i;
    ck_assert_int_ne(ref_elm_solve(l, c, 1000.0, U, V, back), 0);
    cnnelm_buffer *bU = upload(U, sizeof U / sizeof U[0]), *bV = upload(V, sizeof V / sizeof V[0]);
    cnnelm_buffer *bB = upload(beta, sizeof beta / sizeof beta[0]);
    EXPECT(CNNELM_ERR_NOT_POSITIVE_DEFINITE, be->elm_solve(ctx, l, c, 1000.0, bU, bV, bB));
    download(bB, back, sizeof back / sizeof back[0]);
    ck_assert_msg(memcmp(back, beta, sizeof beta) == 0, "elm_solve changed beta on failure");
    /* indefinite: one negative eigenvalue among positive ones */
    for (int i = 0; i < l; i++)
        U[i * l + i] = i == 7 ? -5.0f : 2.0f;
    OK(be->buffer_write(ctx, bU, 0, U, sizeof U));
    EXPECT(CNNELM_ERR_NOT_POSITIVE_DEFINITE, be->elm_solve(ctx, l, c, 1.0, bU, bV, bB));
    download(bB, back, sizeof back / sizeof back[0]);
    ck_assert_msg(memcmp(back, beta, sizeof beta) == 0, "elm_solve changed beta on failure");
    /* the context still works */
    for (int i = 0; i < l; i++)
        U[i * l + i] = 2.0f;
    OK(be->buffer_write(ctx, bU, 0, U, sizeof U));
    OK(be->elm_solve(ctx, l, c, 1.0, bU, bV, bB));
}
END_TEST

/* ---- argument validation ------------------------------------------------------------------ */

/* Bad calls are the core's to refuse (core/src/ops.c checks every call once against the op
 * table; the backends hold no checks): each is refused with a message naming the op, and the
 * backend's context still works afterwards. */
static cnnelm_opctx vctx;

static cnnelm_buffer *core_array(size_t n)
{
    cnnelm_buffer *b = NULL;
    cnnelm_status st = cnnelm_op_alloc(&vctx, sizeof(float) * n, &b);
    ck_assert_msg(st == CNNELM_OK, "cnnelm_op_alloc: %s", cnnelm_status_name(st));
    return b;
}

#define REFUSED(...)                                                                        \
    do {                                                                                    \
        cnnelm_op_call k_ = { __VA_ARGS__ };                                                \
        char why_[512] = "";                                                                \
        cnnelm_status st_ = cnnelm_op_run(&vctx, &k_, why_, sizeof why_);                   \
        ck_assert_msg(st_ == CNNELM_ERR_INVALID_ARGUMENT, "%s: expected a refusal, got %s", \
                      #__VA_ARGS__, cnnelm_status_name(st_));                               \
        ck_assert_msg(strstr(why_, cnnelm_op_name(k_.op)), "message '%s' names no op", why_); \
    } while (0)
#define RUNS(...)                                                                           \
    do {                                                                                    \
        cnnelm_op_call k_ = { __VA_ARGS__ };                                                \
        char why_[512] = "";                                                                \
        cnnelm_status st_ = cnnelm_op_run(&vctx, &k_, why_, sizeof why_);                   \
        ck_assert_msg(st_ == CNNELM_OK, "%s: %s: %s", #__VA_ARGS__, cnnelm_status_name(st_), why_); \
    } while (0)

START_TEST(validation)
{
    vctx = (cnnelm_opctx){ .be = be, .ctx = ctx };
    const cnnelm_conv_shape s = { 2, 3, 8, 8, 4, 3 };
    size_t nx = ref_conv_x_count(&s), nw = ref_conv_w_count(&s), ny = ref_conv_y_count(&s);
    cnnelm_buffer *x = core_array(nx), *w = core_array(nw), *b = core_array(4);
    cnnelm_buffer *y = core_array(ny), *small = core_array(3);
    cnnelm_buffer *foreign = device_array(ny); /* allocated past the core: not its buffer */
    float *hx = rand_array(nx);
    char why[256];
    ck_assert_int_eq(cnnelm_op_write(&vctx, x, 0, hx, nx * sizeof(float), why, sizeof why), CNNELM_OK);
    ck_assert_int_eq(cnnelm_op_write(&vctx, x, 4, hx, nx * sizeof(float), why, sizeof why),
                     CNNELM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(cnnelm_op_read(&vctx, x, SIZE_MAX, hx, 2, why, sizeof why), CNNELM_ERR_INVALID_ARGUMENT);
    free(hx);
    const cnnelm_op_id CF = CNNELM_OP_CONV_FORWARD;
    RUNS(.op = CF, .conv = s, .act = CNNELM_ACT_RELU, .buf = { x, w, b, y });
    REFUSED(.op = CF, .conv = s, .act = CNNELM_ACT_RELU, .buf = { NULL, w, b, y });
    REFUSED(.op = CF, .conv = s, .act = CNNELM_ACT_RELU, .buf = { x, w, b, NULL });
    REFUSED(.op = CF, .conv = s, .act = CNNELM_ACT_RELU, .buf = { x, w, small, y });
    REFUSED(.op = CF, .conv = s, .act = CNNELM_ACT_RELU, .buf = { x, small, b, y });
    REFUSED(.op = CF, .conv = s, .act = CNNELM_ACT_RELU, .buf = { x, w, b, small });
    REFUSED(.op = CF, .conv = s, .act = CNNELM_ACT_RELU, .buf = { x, w, b, foreign });
    REFUSED(.op = CF, .conv = s, .act = CNNELM_ACT_RELU, .buf = { x, w, b, x });
    REFUSED(.op = CF, .conv = s, .act = (cnnelm_activation)99, .buf = { x, w, b, y });
    REFUSED(.op = CF, .conv = { 0, 3, 8, 8, 4, 3 }, .buf = { x, w, b, y });
    REFUSED(.op = CF, .conv = { 2, 3, 8, 8, 4, -1 }, .buf = { x, w, b, y });
    REFUSED(.op = CF, .conv = { 2, 3, 8, 8, 4, 9 }, .buf = { x, w, b, y });   /* k > h */
    REFUSED(.op = CF, .conv = { 3, 3, 8, 8, 4, 3 }, .buf = { x, w, b, y });   /* x holds 2 */
    REFUSED(.op = CF, .conv = { 1 << 30, 1 << 30, 8, 8, 4, 3 }, .buf = { x, w, b, y }); /* overflow */
    REFUSED(.op = CNNELM_OP_CONV_BACKWARD_DATA, .conv = s, .buf = { y, w, small });
    REFUSED(.op = CNNELM_OP_CONV_BACKWARD_DATA, .conv = s, .buf = { NULL, w, x });
    REFUSED(.op = CNNELM_OP_CONV_BACKWARD_FILTER, .conv = s, .buf = { x, y, small, b });
    REFUSED(.op = CNNELM_OP_CONV_BACKWARD_FILTER, .conv = s, .buf = { x, y, w, NULL });
    REFUSED(.op = CNNELM_OP_CONV_BACKWARD_FILTER, .conv = s, .buf = { x, y, w, w });

    cnnelm_pool_shape p = { 2, 3, 8, 8, 2 };
    cnnelm_buffer *py = core_array(2 * 3 * 4 * 4);
    RUNS(.op = CNNELM_OP_POOL_FORWARD, .pool = p, .mode = CNNELM_POOL_MEAN, .buf = { x, py });
    REFUSED(.op = CNNELM_OP_POOL_FORWARD, .pool = p, .mode = CNNELM_POOL_MEAN, .buf = { x, small });
    REFUSED(.op = CNNELM_OP_POOL_FORWARD, .pool = p, .mode = (cnnelm_pooling)7, .buf = { x, py });
    REFUSED(.op = CNNELM_OP_POOL_FORWARD, .pool = { 2, 3, 8, 8, 3 }, .buf = { x, py }); /* 8 % 3 */
    REFUSED(.op = CNNELM_OP_POOL_FORWARD, .pool = { 2, 3, 8, 8, 0 }, .buf = { x, py });
    REFUSED(.op = CNNELM_OP_POOL_BACKWARD, .pool = { 2, -2, 8, 8, 2 }, .buf = { x, py, y });
    REFUSED(.op = CNNELM_OP_POOL_BACKWARD, .pool = p, .buf = { x, py, NULL });

    REFUSED(.op = CNNELM_OP_ACT_FORWARD, .act = CNNELM_ACT_RELU, .count = 0, .buf = { x, y });
    REFUSED(.op = CNNELM_OP_ACT_FORWARD, .act = CNNELM_ACT_RELU, .count = 4, .buf = { small, y });
    REFUSED(.op = CNNELM_OP_ACT_FORWARD, .act = (cnnelm_activation)-1, .count = 3, .buf = { x, y });
    REFUSED(.op = CNNELM_OP_ACT_BACKWARD, .act = CNNELM_ACT_RELU, .count = 3, .buf = { x, NULL, y });
    REFUSED(.op = CNNELM_OP_ACT_BACKWARD, .act = CNNELM_ACT_RELU, .count = 3, .buf = { x, y, x });
    RUNS(.op = CNNELM_OP_ACT_FORWARD, .act = CNNELM_ACT_RELU, .count = 3, .buf = { x, x }); /* y may be x */

    REFUSED(.op = CNNELM_OP_ELM_ACCUMULATE, .n = 0, .l = 4, .c = 2, .buf = { x, y, w, b });
    REFUSED(.op = CNNELM_OP_ELM_ACCUMULATE, .n = 2, .l = 4, .c = 2, .buf = { x, y, small, b });
    REFUSED(.op = CNNELM_OP_ELM_ACCUMULATE, .n = 2, .l = 4, .c = 2, .buf = { x, y, w, w });
    REFUSED(.op = CNNELM_OP_ELM_PREDICT, .n = 2, .l = -4, .c = 2, .buf = { x, w, y });
    REFUSED(.op = CNNELM_OP_ELM_PREDICT, .n = 2, .l = 4, .c = 2, .buf = { x, small, y });
    REFUSED(.op = CNNELM_OP_ELM_BACKPROP, .n = 2, .l = 4, .c = 2, .buf = { x, w, NULL });
    REFUSED(.op = CNNELM_OP_ELM_SOLVE, .l = 4, .c = 2, .lambda = 0.0, .buf = { w, x, y });
    REFUSED(.op = CNNELM_OP_ELM_SOLVE, .l = 4, .c = 2, .lambda = -1.0, .buf = { w, x, y });
    REFUSED(.op = CNNELM_OP_ELM_SOLVE, .l = 4, .c = 2, .lambda = NAN, .buf = { w, x, y });
    REFUSED(.op = CNNELM_OP_ELM_SOLVE, .l = 0, .c = 2, .lambda = 1.0, .buf = { w, x, y });
    REFUSED(.op = CNNELM_OP_ELM_SOLVE, .l = 4, .c = 2, .lambda = 1.0, .buf = { small, x, y });

    /* the context still works after all that */
    RUNS(.op = CF, .conv = s, .act = CNNELM_ACT_RELU, .buf = { x, w, b, y });
    cnnelm_opctx_close(&vctx);
}
END_TEST

/* ---- finite-difference gradient checks ---------------------------------------------------- */

static void expect_grad(const char *what, double analytic, double numeric)
{
    double e = fabs(analytic - numeric) / (1 + fabs(numeric));
    ck_assert_msg(e <= TOL_GRAD, "%s: backward %.9g, central difference %.9g (error %.3g > %.3g)",
                  what, analytic, numeric, e, TOL_GRAD);
}

/* loss = sum g * y in double. */
static double dot(const float *g, const float *y, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)g[i] * y[i];
    return s;
}

/* loss(x, w, b) = sum g * opttanh(conv(x, w, b)): the backend's activation_backward, then
 * conv2d_backward_data and conv2d_backward_filter, against central differences of the loss
 * computed with the reference ops. */
START_TEST(gradcheck_conv)
{
    const cnnelm_conv_shape shapes[] = { { 2, 2, 9, 11, 3, 3 }, { 1, 1, 12, 12, 2, 5 }, { 2, 3, 5, 6, 2, 1 } };
    const cnnelm_activation act = CNNELM_ACT_OPTTANH;
    for (size_t si = 0; si < 3; si++) {
        const cnnelm_conv_shape *s = &shapes[si];
        seed(900 + si);
        size_t nx = ref_conv_x_count(s), nw = ref_conv_w_count(s), ny = ref_conv_y_count(s);
        size_t nb = (size_t)s->c_out;
        float *x = rand_array(nx), *w = rand_array(nw), *b = rand_array(nb), *g = rand_array(ny);
        float *y = alloc_array(ny);
        float *gx = alloc_array(nx), *gw = alloc_array(nw), *gb = alloc_array(nb);
        cnnelm_buffer *bx = upload(x, nx), *bw = upload(w, nw), *bb = upload(b, nb);
        cnnelm_buffer *by = device_array(ny), *bg = upload(g, ny);
        cnnelm_buffer *bgx = device_array(nx), *bgw = device_array(nw), *bgb = device_array(nb);
        OK(be->conv2d_forward(ctx, s, act, bx, bw, bb, by));
        OK(be->activation_backward(ctx, act, ny, by, bg, bg));
        OK(be->conv2d_backward_data(ctx, s, bg, bw, bgx));
        OK(be->conv2d_backward_filter(ctx, s, bx, bg, bgw, bgb, 0));
        download(bgx, gx, nx);
        download(bgw, gw, nw);
        download(bgb, gb, nb);
        const float eps = 1e-2f;
        struct { float *v; float *grad; size_t n; const char *name; } params[] = {
            { x, gx, nx, "dL/dx" }, { w, gw, nw, "dL/dw" }, { b, gb, nb, "dL/db" },
        };
        for (int pi = 0; pi < 3; pi++)
            for (int t = 0; t < 12; t++) {
                size_t i = (size_t)(uniform() * (double)params[pi].n);
                float keep = params[pi].v[i];
                params[pi].v[i] = keep + eps;
                ref_conv2d_forward(s, act, x, w, b, y);
                double up = dot(g, y, ny);
                params[pi].v[i] = keep - eps;
                ref_conv2d_forward(s, act, x, w, b, y);
                double down = dot(g, y, ny);
                params[pi].v[i] = keep;
                char what[160];
                snprintf(what, sizeof what, "conv %s[%zu] %s", params[pi].name, i, shape_str(s));
                expect_grad(what, params[pi].grad[i], (up - down) / (2.0 * eps));
            }
        cnnelm_buffer *bufs[] = { bx, bw, bb, by, bg, bgx, bgw, bgb };
        for (size_t i = 0; i < 8; i++)
            be->buffer_free(ctx, bufs[i]);
        free(x), free(w), free(b), free(g), free(y), free(gx), free(gw), free(gb);
    }
}
END_TEST

/* Distinct values at least 0.01 apart (a shuffled ramp): no max-pool ties within 2 eps. */
static float *ramp_array(size_t n)
{
    float *a = alloc_array(n);
    for (size_t i = 0; i < n; i++)
        a[i] = -1.0f + 0.01f * (float)i;
    for (size_t i = n; i-- > 1;) {
        size_t j = (size_t)(uniform() * (double)(i + 1));
        float t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
    return a;
}

START_TEST(gradcheck_pool)
{
    const cnnelm_pool_shape shapes[] = { { 2, 3, 6, 8, 2 }, { 1, 2, 9, 6, 3 } };
    for (size_t si = 0; si < 2; si++)
        for (int mode = 0; mode < 2; mode++) {
            const cnnelm_pool_shape *s = &shapes[si];
            seed(1000 + si * 2 + (size_t)mode);
            size_t nx = ref_pool_x_count(s), ny = ref_pool_y_count(s);
            float *x = ramp_array(nx), *g = rand_array(ny), *y = alloc_array(ny), *gx = alloc_array(nx);
            cnnelm_buffer *bx = upload(x, nx), *bg = upload(g, ny), *bgx = device_array(nx);
            OK(be->pool_backward(ctx, s, (cnnelm_pooling)mode, bx, bg, bgx));
            download(bgx, gx, nx);
            const float eps = 1e-3f;
            for (size_t i = 0; i < nx; i += 3) {
                float keep = x[i];
                x[i] = keep + eps;
                ref_pool_forward(s, (cnnelm_pooling)mode, x, y);
                double up = dot(g, y, ny);
                x[i] = keep - eps;
                ref_pool_forward(s, (cnnelm_pooling)mode, x, y);
                double down = dot(g, y, ny);
                x[i] = keep;
                char what[128];
                snprintf(what, sizeof what, "pool %s dL/dx[%zu] n=%d c=%d %dx%d s=%d",
                         mode ? "max" : "mean", i, s->n, s->c, s->h, s->w, s->s);
                expect_grad(what, gx[i], (up - down) / (2.0 * eps));
            }
            be->buffer_free(ctx, bx);
            be->buffer_free(ctx, bg);
            be->buffer_free(ctx, bgx);
            free(x), free(g), free(y), free(gx);
        }
}
END_TEST

START_TEST(gradcheck_activation)
{
    const cnnelm_activation acts[] = { CNNELM_ACT_RELU, CNNELM_ACT_OPTTANH, CNNELM_ACT_IDENTITY };
    const size_t n = 200;
    for (int a = 0; a < 3; a++) {
        seed(1100 + (uint64_t)a);
        float *x = rand_array(n), *g = rand_array(n), *gx = alloc_array(n), *y = alloc_array(n);
        for (size_t i = 0; i < n; i++)
            x[i] *= 2; /* |x| >= 0.1: away from relu's kink */
        cnnelm_buffer *bx = upload(x, n), *by = device_array(n), *bg = upload(g, n);
        cnnelm_buffer *bgx = device_array(n);
        OK(be->activation_forward(ctx, acts[a], n, bx, by));
        OK(be->activation_backward(ctx, acts[a], n, by, bg, bgx));
        download(bgx, gx, n);
        const float eps = 1e-3f;
        for (size_t i = 0; i < n; i++) {
            float keep = x[i];
            x[i] = keep + eps;
            double up = ref_act(acts[a], x[i]) * g[i];
            x[i] = keep - eps;
            double down = ref_act(acts[a], x[i]) * g[i];
            x[i] = keep;
            char what[96];
            snprintf(what, sizeof what, "activation %s dL/dx[%zu]", act_name(acts[a]), i);
            expect_grad(what, gx[i], (up - down) / (2.0 * eps));
        }
        be->buffer_free(ctx, bx);
        be->buffer_free(ctx, by);
        be->buffer_free(ctx, bg);
        be->buffer_free(ctx, bgx);
        free(x), free(g), free(gx), free(y);
    }
}
END_TEST

/* J = 1/2 ||H beta - T||^2: dJ/dH = (H beta - T) beta^T from elm_predict and elm_backprop. */
START_TEST(gradcheck_elm)
{
    const int n = 9, l = 13, c = 4;
    seed(1200);
    size_t nh = (size_t)n * l, nt = (size_t)n * c, nv = (size_t)l * c;
    float *H = rand_array(nh), *T = rand_array(nt), *beta = rand_array(nv);
    float *Y = alloc_array(nt), *E = alloc_array(nt), *gH = alloc_array(nh);
    cnnelm_buffer *bH = upload(H, nh), *bB = upload(beta, nv), *bY = device_array(nt);
    cnnelm_buffer *bE = device_array(nt), *bgH = device_array(nh);
    OK(be->elm_predict(ctx, n, l, c, bH, bB, bY));
    download(bY, Y, nt);
    for (size_t i = 0; i < nt; i++)
        E[i] = Y[i] - T[i];
    OK(be->buffer_write(ctx, bE, 0, E, sizeof(float) * nt));
    OK(be->elm_backprop(ctx, n, l, c, bE, bB, bgH));
    download(bgH, gH, nh);
    const float eps = 1e-2f;
    for (size_t i = 0; i < nh; i++) {
        double J[2];
        float keep = H[i];
        for (int side = 0; side < 2; side++) {
            H[i] = keep + (side ? -eps : eps);
            ref_elm_predict(n, l, c, H, beta, Y);
            J[side] = 0;
            for (size_t k = 0; k < nt; k++)
                J[side] += 0.5 * ((double)Y[k] - T[k]) * ((double)Y[k] - T[k]);
        }
        H[i] = keep;
        char what[64];
        snprintf(what, sizeof what, "elm dJ/dH[%zu]", i);
        expect_grad(what, gH[i], (J[0] - J[1]) / (2.0 * eps));
    }
    cnnelm_buffer *bufs[] = { bH, bB, bY, bE, bgH };
    for (size_t i = 0; i < 5; i++)
        be->buffer_free(ctx, bufs[i]);
    free(H), free(T), free(beta), free(Y), free(E), free(gH);
}
END_TEST

/* ---- determinism, fault injection --------------------------------------------------------- */

/* Runs conv forward + backward filter + elm_accumulate on context c; results into out. */
static void chain(cnnelm_backend_ctx *c, const cnnelm_conv_shape *s, const float *x,
                  const float *w, const float *b, const float *g, float *out)
{
    cnnelm_backend_ctx *keep = ctx;
    ctx = c;
    size_t nx = ref_conv_x_count(s), nw = ref_conv_w_count(s), ny = ref_conv_y_count(s);
    size_t nb = (size_t)s->c_out, l = ny / (size_t)s->n;
    cnnelm_buffer *bx = upload(x, nx), *bw = upload(w, nw), *bb = upload(b, nb), *by = device_array(ny);
    cnnelm_buffer *bg = upload(g, ny), *bdw = device_array(nw), *bdb = device_array(nb);
    cnnelm_buffer *bU = upload(NULL, l * l), *bV = upload(NULL, l);
    float *zero = alloc_array(l * l);
    OK(be->buffer_write(ctx, bU, 0, zero, sizeof(float) * l * l));
    OK(be->buffer_write(ctx, bV, 0, zero, sizeof(float) * l));
    OK(be->conv2d_forward(ctx, s, CNNELM_ACT_RELU, bx, bw, bb, by));
    OK(be->conv2d_backward_filter(ctx, s, bx, bg, bdw, bdb, 0));
    OK(be->elm_accumulate(ctx, s->n, (int)l, 1, by, bg, bU, bV));
    download(by, out, ny);
    download(bdw, out + ny, nw);
    download(bdb, out + ny + nw, nb);
    download(bU, out + ny + nw + nb, l * l);
    free(zero);
    ctx = keep;
}

START_TEST(determinism)
{
    const cnnelm_conv_shape s = { 37, 2, 11, 11, 5, 4 };
    seed(1300);
    size_t nx = ref_conv_x_count(&s), nw = ref_conv_w_count(&s), ny = ref_conv_y_count(&s);
    size_t l = ny / (size_t)s.n, total = ny + nw + (size_t)s.c_out + l * l;
    float *x = rand_array(nx), *w = rand_array(nw), *b = rand_array((size_t)s.c_out);
    float *g = rand_array(ny), *r1 = alloc_array(total), *r2 = alloc_array(total);
    chain(ctx, &s, x, w, b, g, r1);
    chain(ctx, &s, x, w, b, g, r2);
    ck_assert_msg(memcmp(r1, r2, sizeof(float) * total) == 0, "the same ops twice differ");
    if (is_cpu()) { /* the CPU backend's results do not depend on its thread count */
        const int counts[] = { 1, 3 };
        for (int t = 0; t < 2; t++) {
            cnnelm_backend_ctx *other = open_ctx(counts[t]);
            chain(other, &s, x, w, b, g, r2);
            be->context_close(other);
            ck_assert_msg(memcmp(r1, r2, sizeof(float) * total) == 0,
                          "2 threads and %d threads give different results", counts[t]);
        }
    }
    free(x), free(w), free(b), free(g), free(r1), free(r2);
}
END_TEST

/* The forwarding test plugin (tests/stubs/faulty_plugin.c) over this CPU backend: after N
 * counted calls its context loses the device; other contexts are unaffected. */
START_TEST(cpu_fault_injection)
{
    if (!is_cpu())
        return;
    cnnelm_error err = { "" };
    cnnelm_plugin *fp = NULL;
    ck_assert_msg(cnnelm_plugin_load("faulty", CNNELM_STUB_DIR, &fp, &err) == 0, "%s", err.msg);
    const cnnelm_backend *keep_be = be;
    cnnelm_backend_ctx *keep = ctx;
    be = fp->ops;
    setenv("CNNELM_FAULTY_FAIL_AFTER", "3", 1);
    cnnelm_backend_ctx *f = open_ctx(2);
    unsetenv("CNNELM_FAULTY_FAIL_AFTER");
    ctx = f;
    float v[4] = { 1, 2, 3, 4 };
    cnnelm_buffer *b = device_array(4), *o = device_array(4);
    OK(be->buffer_write(ctx, b, 0, v, sizeof v));
    OK(be->activation_forward(ctx, CNNELM_ACT_RELU, 4, b, o));
    OK(be->buffer_read(ctx, o, 0, v, sizeof v));
    EXPECT(CNNELM_ERR_DEVICE, be->buffer_read(ctx, o, 0, v, sizeof v));
    ck_assert_ptr_nonnull(strstr(be->last_error(ctx), "injected device failure"));
    EXPECT(CNNELM_ERR_DEVICE, be->activation_forward(ctx, CNNELM_ACT_RELU, 4, b, o));
    /* another context of the same plugin, opened after the loss, has no budget: it works */
    cnnelm_backend_ctx *g = open_ctx(2);
    ctx = g;
    cnnelm_buffer *gb = device_array(4), *go = device_array(4);
    for (int k = 0; k < 4; k++) {
        OK(be->buffer_write(ctx, gb, 0, v, sizeof v));
        OK(be->activation_forward(ctx, CNNELM_ACT_RELU, 4, gb, go));
    }
    ctx = f;
    EXPECT(CNNELM_ERR_DEVICE, be->buffer_write(ctx, b, 0, v, sizeof v)); /* still lost */
    be->context_close(g);
    be->context_close(f);
    cnnelm_plugin_unload(fp);
    be = keep_be;
    ctx = keep;
    /* other contexts are unaffected */
    cnnelm_buffer *c = device_array(4);
    OK(be->buffer_write(ctx, c, 0, v, sizeof v));
    /* no context is a bad argument, not a crash, for the transfers and the ops alike */
    ck_assert_int_eq(be->buffer_write(NULL, c, 0, v, sizeof v), CNNELM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(be->activation_forward(NULL, CNNELM_ACT_RELU, 4, c, c), CNNELM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(be->synchronize(NULL), CNNELM_ERR_INVALID_ARGUMENT);
}
END_TEST

/* ---- the core's fallback -------------------------------------------------------------------- */

/* The convolution-only test plugin (tests/stubs/convonly_plugin.c) as the device and this backend
 * as the reference, through the core (core/src/ops.c): activations cross to the reference for
 * pooling and back for the next convolution, slice by slice through the bounce buffer (sizes here
 * are many slices and not a whole number of them). A pooling output in a buffer larger than its
 * tensor keeps the device's rest, and a partial write after the fallback sees the reference's
 * result. Tolerances: TOL_CONV for each convolution (im2col + SGEMM against the plain loops),
 * pooling and the moves exact. */
START_TEST(fallback_crossings)
{
    cnnelm_error err = { "" };
    cnnelm_plugin *cp = NULL;
    ck_assert_msg(cnnelm_plugin_load("convonly", CNNELM_STUB_DIR, &cp, &err) == 0, "%s", err.msg);
    cnnelm_backend_ctx *cctx = NULL;
    char why[512] = "";
    cnnelm_context_params params = { .struct_size = sizeof params, .threads = 1 };
    ck_assert_int_eq(cp->ops->context_open(0, &params, &cctx, why, sizeof why), CNNELM_OK);
    vctx = (cnnelm_opctx){ .be = cp->ops, .ctx = cctx, .reference = plug, .threads = 2 };

    const cnnelm_conv_shape s1 = { 37, 2, 28, 28, 6, 5 }, s2 = { 37, 6, 12, 12, 4, 3 };
    const cnnelm_pool_shape ps = { 37, 6, 24, 24, 2 };
    size_t nx = ref_conv_x_count(&s1), nw1 = ref_conv_w_count(&s1), ny1 = ref_conv_y_count(&s1);
    size_t np = ref_pool_y_count(&ps), nw2 = ref_conv_w_count(&s2), ny2 = ref_conv_y_count(&s2);
    const size_t extra = 20001; /* the pooling buffer's floats past its tensor: 3 slices */
    seed(1400);
    float *x = rand_array(nx), *w1 = rand_array(nw1), *b1 = rand_array(6), *w2 = rand_array(nw2);
    float *b2 = rand_array(4), *pattern = rand_array(extra), *y1 = alloc_array(ny1);
    float *pwant = alloc_array(np), *pgot = alloc_array(np + extra), *y2want = alloc_array(ny2);
    float *y2got = alloc_array(ny2);
    cnnelm_buffer *bx = core_array(nx), *bw1 = core_array(nw1), *bb1 = core_array(6);
    cnnelm_buffer *by1 = core_array(ny1), *bp = core_array(np + extra), *bw2 = core_array(nw2);
    cnnelm_buffer *bb2 = core_array(4), *by2 = core_array(ny2);
    const struct { cnnelm_buffer *b; const float *h; size_t n, at; } up[] = {
        { bx, x, nx, 0 }, { bw1, w1, nw1, 0 }, { bb1, b1, 6, 0 }, { bw2, w2, nw2, 0 },
        { bb2, b2, 4, 0 }, { bp, pattern, extra, np },
    };
    for (size_t i = 0; i < sizeof up / sizeof up[0]; i++)
        ck_assert_msg(cnnelm_op_write(&vctx, up[i].b, sizeof(float) * up[i].at, up[i].h,
                                      sizeof(float) * up[i].n, why, sizeof why) == CNNELM_OK, "%s", why);

    RUNS(.op = CNNELM_OP_CONV_FORWARD, .conv = s1, .act = CNNELM_ACT_RELU, .buf = { bx, bw1, bb1, by1 });
    RUNS(.op = CNNELM_OP_POOL_FORWARD, .pool = ps, .mode = CNNELM_POOL_MAX, .buf = { by1, bp });
    RUNS(.op = CNNELM_OP_CONV_FORWARD, .conv = s2, .act = CNNELM_ACT_IDENTITY, .buf = { bp, bw2, bb2, by2 });
    ck_assert_uint_eq(vctx.fell_back, 1u << CNNELM_OP_POOL_FORWARD);

    ref_conv2d_forward(&s1, CNNELM_ACT_RELU, x, w1, b1, y1);
    ref_pool_forward(&ps, CNNELM_POOL_MAX, y1, pwant);
    ck_assert_int_eq(cnnelm_op_read(&vctx, bp, 0, pgot, sizeof(float) * (np + extra), why, sizeof why),
                     CNNELM_OK);
    expect_close("pooled (conv on the plugin, pool on the reference)", pgot, pwant, np, TOL_CONV);
    ck_assert_msg(memcmp(pgot + np, pattern, sizeof(float) * extra) == 0,
                  "the rest of the pooling buffer changed");
    ref_conv2d_forward(&s2, CNNELM_ACT_IDENTITY, pgot, w2, b2, y2want);
    ck_assert_int_eq(cnnelm_op_read(&vctx, by2, 0, y2got, sizeof(float) * ny2, why, sizeof why), CNNELM_OK);
    expect_close("conv on the plugin of the reference's pooling", y2got, y2want, ny2, TOL_CONV);

    /* the pooling again (the mirror newer than the device), then part of the buffer written:
     * the rest must be the reference's result, moved back */
    RUNS(.op = CNNELM_OP_POOL_FORWARD, .pool = ps, .mode = CNNELM_POOL_MAX, .buf = { by1, bp });
    const float marks[3] = { 7, 8, 9 };
    ck_assert_msg(cnnelm_op_write(&vctx, bp, sizeof(float) * 10, marks, sizeof marks, why, sizeof why) ==
                  CNNELM_OK, "%s", why);
    memset(pgot, 0, sizeof(float) * (np + extra));
    ck_assert_int_eq(cnnelm_op_read(&vctx, bp, 0, pgot, sizeof(float) * (np + extra), why, sizeof why),
                     CNNELM_OK);
    memcpy(pwant + 10, marks, sizeof marks);
    expect_close("pooled, moved back, partly overwritten", pgot, pwant, np, TOL_CONV);
    ck_assert_msg(memcmp(pgot + np, pattern, sizeof(float) * extra) == 0,
                  "the rest of the pooling buffer changed after the move back");
    ck_assert_uint_le(vctx.host_bytes, 64 * 1024); /* one slice, not a whole buffer */

    cnnelm_opctx_close(&vctx);
    cp->ops->context_close(cctx);
    cnnelm_plugin_unload(cp);
    free(x), free(w1), free(b1), free(w2), free(b2), free(pattern), free(y1), free(pwant);
    free(pgot), free(y2want), free(y2got);
}
END_TEST

/* ---- suite -------------------------------------------------------------------------------- */

static Suite *backend_suite(void)
{
    Suite *s = suite_create("backend_ops");
    struct { const char *name; const TTest *test; } tests[] = {
        { "device", device_info },
        { "buffers", buffer_round_trip },
        { "conv_forward", conv_forward },
        { "conv_backward_data", conv_backward_data },
        { "conv_backward_filter", conv_backward_filter },
        { "pooling", pooling },
        { "activations", activations },
        { "elm_products", elm_products },
        { "elm_solve", elm_solve },
        { "elm_solve_npd", elm_solve_not_positive_definite },
        { "validation", validation },
        { "gradcheck_conv", gradcheck_conv },
        { "gradcheck_pool", gradcheck_pool },
        { "gradcheck_activation", gradcheck_activation },
        { "gradcheck_elm", gradcheck_elm },
        { "determinism", determinism },
        { "fault_injection", cpu_fault_injection },
        { "fallback_crossings", fallback_crossings },
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        TCase *tc = tcase_create(tests[i].name);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, tests[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    /* A backend that loads but has no device (no GPU, no OpenCL platform) skips, not fails. */
    cnnelm_error err = { "" };
    cnnelm_plugin *p = NULL;
    if (cnnelm_plugin_load(backend_name(), NULL, &p, &err) != 0) {
        fprintf(stderr, "test_backend_ops: cannot load backend '%s': %s\n", backend_name(), err.msg);
        return 1;
    }
    int devices = 0;
    cnnelm_status st = p->ops->device_count(&devices);
    cnnelm_plugin_unload(p);
    if (st != CNNELM_OK || devices < 1) {
        printf("SKIP: backend '%s' has no device (device_count: %s, %d)\n", backend_name(),
               cnnelm_status_name(st), devices);
        return 0;
    }
    printf("test_backend_ops: backend '%s'\n", backend_name());
    SRunner *sr = srunner_create(backend_suite());
    /* OpenCL runtimes (PoCL among them) keep threads that do not survive fork(): the device
     * query above already started them, so other backends run in this process. */
    if (!is_cpu())
        srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
