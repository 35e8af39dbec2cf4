/* cnnelm-bench-backend on any architecture (--layers, --kernel): the forward + U/V chain and a
 * training step through every layer of the network the core would build (cnnelm_arch_init),
 * timed like the default network's benchmark, with a per-op breakdown. */
#define _POSIX_C_SOURCE 200809L
#include "bench_arch.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnnelm/model.h"

#define CLASSES 10

enum { A_CONV_F, A_POOL_F, A_ACC, A_PREDICT, A_HOST_E, A_BACKPROP, A_POOL_B, A_ACT_B, A_CONV_BF,
       A_CONV_BD, A_SGD, A_KINDS };
static const char *a_names[A_KINDS] = {
    "conv2d_forward", "pool_forward", "elm_accumulate", "elm_predict", "E = Y - T (host)",
    "elm_backprop", "pool_backward", "activation_backward", "conv2d_backward_filter",
    "conv2d_backward_data", "SGD update (host)",
};

typedef struct arch_bench {
    const cnnelm_backend *be;
    cnnelm_backend_ctx *ctx;
    int n;
    cnnelm_arch arch;
    cnnelm_buffer *x, *t, *u, *v, *beta, *y, *e;
    cnnelm_buffer *out[CNNELM_MAX_LAYERS], *d[CNNELM_MAX_LAYERS]; /* maps and their gradients */
    cnnelm_buffer *w[CNNELM_MAX_LAYERS], *b[CNNELM_MAX_LAYERS], *dw[CNNELM_MAX_LAYERS],
        *db[CNNELM_MAX_LAYERS];
    float *host_w[CNNELM_MAX_LAYERS], *host_b[CNNELM_MAX_LAYERS];
    float *host_t, *host_y, *host_g;
    int sync_each;
    double op_ms[A_KINDS], t_op;
} arch_bench;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(arch_bench *B, const char *what, cnnelm_status st)
{
    fprintf(stderr, "cnnelm-bench-backend: %s failed: %s: %s\n", what, cnnelm_status_name(st),
            B->ctx ? B->be->last_error(B->ctx) : "");
    exit(1);
}

#define ACALL(B, expr, what)                                                                \
    do {                                                                                    \
        cnnelm_status st_ = (expr);                                                         \
        if (st_ != CNNELM_OK)                                                               \
            die(B, what, st_);                                                              \
    } while (0)

static void amark(arch_bench *B, int kind, const cnnelm_buffer *out)
{
    if (!B->sync_each)
        return;
    float f;
    ACALL(B, B->be->buffer_read(B->ctx, out, 0, &f, sizeof f), "buffer_read");
    double t = now();
    B->op_ms[kind] += (t - B->t_op) * 1e3;
    B->t_op = t;
}

static uint64_t arng = 0x2545f4914f6cdd1dull;
static float auniform(void) /* [0, 1) */
{
    arng ^= arng << 13;
    arng ^= arng >> 7;
    arng ^= arng << 17;
    return (float)((arng >> 40) * (1.0 / 16777216.0));
}

static float *ahost(size_t n, float lo, float hi)
{
    float *a = malloc((n ? n : 1) * sizeof(float));
    if (!a) {
        fprintf(stderr, "cnnelm-bench-backend: out of host memory (%zu floats)\n", n);
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        a[i] = lo + (hi - lo) * auniform();
    return a;
}

static cnnelm_buffer *abuf(arch_bench *B, size_t floats, const float *init)
{
    cnnelm_buffer *b = NULL;
    ACALL(B, B->be->buffer_alloc(B->ctx, floats * sizeof(float), &b), "buffer_alloc");
    if (init)
        ACALL(B, B->be->buffer_write(B->ctx, b, 0, init, floats * sizeof(float)), "buffer_write");
    return b;
}

static size_t maps(const cnnelm_layer *ly) { return (size_t)ly->out_c * ly->out_h * ly->out_w; }

static cnnelm_conv_shape conv_shape(const arch_bench *B, const cnnelm_layer *ly)
{
    return (cnnelm_conv_shape){ B->n, ly->in_c, ly->in_h, ly->in_w, ly->out_c, B->arch.kernel };
}

static cnnelm_pool_shape pool_shape(const arch_bench *B, const cnnelm_layer *ly)
{
    return (cnnelm_pool_shape){ B->n, ly->in_c, ly->in_h, ly->in_w, ly->size };
}

static void asetup(arch_bench *B)
{
    size_t N = (size_t)B->n, L = (size_t)B->arch.hidden;
    float *x = ahost(N * 28 * 28, 0, 1); /* like torch.rand */
    B->host_t = calloc(N * CLASSES, sizeof(float));
    B->host_y = malloc(N * CLASSES * sizeof(float));
    size_t most_w = 1;
    for (int i = 0; i < B->arch.n_layers; i++) {
        const cnnelm_layer *ly = &B->arch.layer[i];
        B->out[i] = abuf(B, N * maps(ly), NULL);
        B->d[i] = abuf(B, N * maps(ly), NULL);
        if (ly->kind != CNNELM_LAYER_CONV)
            continue;
        int k = B->arch.kernel;
        size_t nw = (size_t)ly->out_c * ly->in_c * k * k;
        float bound = sqrtf(6.0f / (float)((ly->in_c + ly->out_c) * k * k));
        B->host_w[i] = ahost(nw, -bound, bound);
        B->host_b[i] = calloc((size_t)ly->out_c, sizeof(float));
        B->w[i] = abuf(B, nw, B->host_w[i]);
        B->b[i] = abuf(B, (size_t)ly->out_c, B->host_b[i]);
        B->dw[i] = abuf(B, nw, NULL);
        B->db[i] = abuf(B, (size_t)ly->out_c, NULL);
        if (nw > most_w)
            most_w = nw;
    }
    B->host_g = malloc(most_w * sizeof(float));
    if (!B->host_t || !B->host_y || !B->host_g) {
        fprintf(stderr, "cnnelm-bench-backend: out of host memory\n");
        exit(1);
    }
    for (size_t i = 0; i < N; i++)
        B->host_t[i * CLASSES + (size_t)(auniform() * CLASSES) % CLASSES] = 1;
    float *zero = calloc(L * L, sizeof(float));
    float *beta = ahost(L * CLASSES, -0.01f, 0.01f);
    if (!zero) {
        fprintf(stderr, "cnnelm-bench-backend: out of host memory (U is %zu x %zu)\n", L, L);
        exit(1);
    }
    B->x = abuf(B, N * 28 * 28, x);
    B->t = abuf(B, N * CLASSES, B->host_t);
    B->u = abuf(B, L * L, zero);
    B->v = abuf(B, L * CLASSES, zero);
    B->beta = abuf(B, L * CLASSES, beta);
    B->y = abuf(B, N * CLASSES, NULL);
    B->e = abuf(B, N * CLASSES, NULL);
    free(x);
    free(zero);
    free(beta);
}

static void aforward_layers(arch_bench *B)
{
    const cnnelm_backend *be = B->be;
    for (int i = 0; i < B->arch.n_layers; i++) {
        const cnnelm_layer *ly = &B->arch.layer[i];
        const cnnelm_buffer *in = i ? B->out[i - 1] : B->x;
        if (ly->kind == CNNELM_LAYER_CONV) {
            cnnelm_conv_shape s = conv_shape(B, ly);
            ACALL(B, be->conv2d_forward(B->ctx, &s, CNNELM_ACT_RELU, in, B->w[i], B->b[i], B->out[i]),
                  "conv2d_forward");
            amark(B, A_CONV_F, B->out[i]);
        } else {
            cnnelm_pool_shape s = pool_shape(B, ly);
            ACALL(B, be->pool_forward(B->ctx, &s, CNNELM_POOL_MEAN, in, B->out[i]), "pool_forward");
            amark(B, A_POOL_F, B->out[i]);
        }
    }
}

static cnnelm_buffer *hidden(arch_bench *B) { return B->out[B->arch.n_layers - 1]; }

static void aforward_chain(arch_bench *B)
{
    B->t_op = now();
    aforward_layers(B);
    ACALL(B, B->be->elm_accumulate(B->ctx, B->n, B->arch.hidden, CLASSES, hidden(B), B->t, B->u, B->v),
          "elm_accumulate");
    amark(B, A_ACC, B->u);
    float f;
    ACALL(B, B->be->buffer_read(B->ctx, B->u, 0, &f, sizeof f), "buffer_read");
}

static void asgd(arch_bench *B, cnnelm_buffer *w, cnnelm_buffer *dw, float *host_w, size_t nw)
{
    ACALL(B, B->be->buffer_read(B->ctx, dw, 0, B->host_g, nw * sizeof(float)), "buffer_read");
    for (size_t i = 0; i < nw; i++)
        host_w[i] -= 1e-4f * B->host_g[i];
    ACALL(B, B->be->buffer_write(B->ctx, w, 0, host_w, nw * sizeof(float)), "buffer_write");
}

static void atrain_step(arch_bench *B)
{
    const cnnelm_backend *be = B->be;
    cnnelm_backend_ctx *ctx = B->ctx;
    size_t N = (size_t)B->n;
    int L = B->arch.hidden, last = B->arch.n_layers - 1;
    B->t_op = now();
    aforward_layers(B);
    ACALL(B, be->elm_predict(ctx, B->n, L, CLASSES, hidden(B), B->beta, B->y), "elm_predict");
    amark(B, A_PREDICT, B->y);
    ACALL(B, be->buffer_read(ctx, B->y, 0, B->host_y, N * CLASSES * sizeof(float)), "buffer_read");
    for (size_t i = 0; i < N * CLASSES; i++)
        B->host_y[i] -= B->host_t[i];
    ACALL(B, be->buffer_write(ctx, B->e, 0, B->host_y, N * CLASSES * sizeof(float)), "buffer_write");
    amark(B, A_HOST_E, B->e);
    ACALL(B, be->elm_backprop(ctx, B->n, L, CLASSES, B->e, B->beta, B->d[last]), "elm_backprop");
    amark(B, A_BACKPROP, B->d[last]);
    for (int i = last; i >= 0; i--) {
        const cnnelm_layer *ly = &B->arch.layer[i];
        const cnnelm_buffer *in = i ? B->out[i - 1] : B->x;
        if (ly->kind == CNNELM_LAYER_POOL) {
            if (i == 0)
                break; /* nothing to learn below the first layer */
            cnnelm_pool_shape s = pool_shape(B, ly);
            ACALL(B, be->pool_backward(ctx, &s, CNNELM_POOL_MEAN, in, B->d[i], B->d[i - 1]),
                  "pool_backward");
            amark(B, A_POOL_B, B->d[i - 1]);
            continue;
        }
        cnnelm_conv_shape s = conv_shape(B, ly);
        ACALL(B, be->activation_backward(ctx, CNNELM_ACT_RELU, N * maps(ly), B->out[i], B->d[i], B->d[i]),
              "activation_backward");
        amark(B, A_ACT_B, B->d[i]);
        ACALL(B, be->conv2d_backward_filter(ctx, &s, in, B->d[i], B->dw[i], B->db[i], 0),
              "conv2d_backward_filter");
        amark(B, A_CONV_BF, B->dw[i]);
        if (i > 0) {
            ACALL(B, be->conv2d_backward_data(ctx, &s, B->d[i], B->w[i], B->d[i - 1]),
                  "conv2d_backward_data");
            amark(B, A_CONV_BD, B->d[i - 1]);
        }
    }
    for (int i = 0; i <= last; i++) {
        const cnnelm_layer *ly = &B->arch.layer[i];
        if (ly->kind != CNNELM_LAYER_CONV)
            continue;
        int k = B->arch.kernel;
        asgd(B, B->w[i], B->dw[i], B->host_w[i], (size_t)ly->out_c * ly->in_c * k * k);
        asgd(B, B->b[i], B->db[i], B->host_b[i], (size_t)ly->out_c);
    }
    amark(B, A_SGD, B->w[0]);
}

static int acmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double ameasure(arch_bench *B, void (*fn)(arch_bench *), int repeats, const char *title)
{
    double *t = malloc(sizeof(double) * (size_t)repeats), all = 0;
    for (int i = 0; i < 3; i++)
        fn(B);
    for (int i = 0; i < repeats; i++) {
        double t0 = now();
        fn(B);
        t[i] = now() - t0;
        all += t[i];
    }
    qsort(t, (size_t)repeats, sizeof(double), acmp);
    double med = t[repeats / 2];
    free(t);
    memset(B->op_ms, 0, sizeof B->op_ms);
    B->sync_each = 1;
    for (int i = 0; i < repeats; i++)
        fn(B);
    B->sync_each = 0;
    double total = 0;
    for (int k = 0; k < A_KINDS; k++)
        total += B->op_ms[k];
    /* sustained: every batch's images over every batch's time, what a long run sees (the
     * median picks the quiet batches of a shared machine) */
    printf("%s: median %.3f ms per batch of %d = %.0f images/s; sustained %.0f images/s over %d batches\n",
           title, med * 1e3, B->n, B->n / med, (double)B->n * repeats / all, repeats);
    printf("  %-24s %9s %7s   (mean per batch, synced after each op)\n", "op", "ms", "%");
    for (int k = 0; k < A_KINDS; k++)
        if (B->op_ms[k] > 0)
            printf("  %-24s %9.3f %6.1f%%\n", a_names[k], B->op_ms[k] / repeats,
                   100 * B->op_ms[k] / total);
    return B->n / med;
}

int bench_arch_run(const cnnelm_backend *be, cnnelm_backend_ctx *ctx, const char *layers,
                   int kernel, int batch, int repeats, int do_fwd, int do_train, double *fwd_rate,
                   double *train_rate)
{
    arch_bench *B = calloc(1, sizeof *B);
    if (!B) {
        fprintf(stderr, "cnnelm-bench-backend: out of host memory\n");
        return -1;
    }
    B->be = be;
    B->ctx = ctx;
    B->n = batch;
    cnnelm_error err = { "" };
    if (cnnelm_arch_init(&B->arch, layers, kernel, 1, 28, 28, CLASSES, CNNELM_ACT_RELU,
                         CNNELM_POOL_MEAN, CNNELM_ACT_IDENTITY, &err) != 0) {
        fprintf(stderr, "cnnelm-bench-backend: --layers %s --kernel %d: %s\n", layers, kernel, err.msg);
        free(B);
        return -1;
    }
    if (B->arch.n_scales || B->arch.sqrt_features) { /* host steps of network.c, not timed here */
        fprintf(stderr, "cnnelm-bench-backend: --layers %s: multi-scale groups and -sqrt are not "
                "benchmarked: time the layers before them\n", layers);
        free(B);
        return -1;
    }
    const cnnelm_layer *h = &B->arch.layer[B->arch.n_layers - 1];
    printf("network %s, k=%d, 1x28x28 -> %dx%dx%d, L=%d, %d classes\n", B->arch.layers, kernel,
           h->out_c, h->out_h, h->out_w, B->arch.hidden, CLASSES);
    asetup(B);
    if (do_fwd)
        *fwd_rate = ameasure(B, aforward_chain, repeats,
                             "forward (conv+relu, mean pool, U += H^T H, V += H^T T)");
    if (do_train)
        *train_rate = ameasure(B, atrain_step, repeats,
                               "train step (forward, predict, backprop through every layer, SGD)");
    /* Buffers go with the context (context_close frees them); host arrays here. */
    for (int i = 0; i < CNNELM_MAX_LAYERS; i++) {
        free(B->host_w[i]);
        free(B->host_b[i]);
    }
    free(B->host_t);
    free(B->host_y);
    free(B->host_g);
    free(B);
    return 0;
}

/* OpenBLAS's own report; the CPU plugin loads the same libopenblas, so this is its kernel. */
char *openblas_get_config(void);
char *openblas_get_corename(void);

void bench_print_blas(void)
{
    const char *forced = getenv("OPENBLAS_CORETYPE");
    printf("OpenBLAS: %s; core kernel %s", openblas_get_config(), openblas_get_corename());
    if (forced)
        printf(" (OPENBLAS_CORETYPE=%s)", forced);
    printf("\n");
}
