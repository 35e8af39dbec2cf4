/* cnnelm-bench-backend: times one backend plugin's ops on the default network (6c-2s-12c-2s,
 * k=5, 28x28, 10 classes): the forward + U/V accumulation chain and a full training step,
 * median images/s over repeats, a per-op breakdown, and the PyTorch peer in the same run.
 *
 * usage: cnnelm-bench-backend [--backend cpu] [--device 0] [--batch 1000] [--threads 2]
 *                             [--repeats 9] [--peer PATH/torch_peer.py | --no-peer]
 *                             [--python /usr/bin/python3] [--mode forward|train|both]
 *                             [--layers 256c-6s] [--kernel 5]
 * --layers/--kernel time that network instead (bench_arch.c), the peer on the same one.
 * Figures only: no pass/fail. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_arch.h"
#include "cnnelm/plugin.h"

#define ARCH "6c-2s-12c-2s"
#define K 5
#define C1 6
#define C2 12
#define CLASSES 10
#define L (C2 * 4 * 4)

enum { OP_CONV_F, OP_POOL_F, OP_ACC, OP_PREDICT, OP_HOST_E, OP_BACKPROP, OP_POOL_B, OP_ACT_B,
       OP_CONV_BF, OP_CONV_BD, OP_SGD, OP_KINDS };
static const char *op_names[OP_KINDS] = {
    "conv2d_forward", "pool_forward", "elm_accumulate", "elm_predict", "E = Y - T (host)",
    "elm_backprop", "pool_backward", "activation_backward", "conv2d_backward_filter",
    "conv2d_backward_data", "SGD update (host)",
};

typedef struct bench {
    const cnnelm_backend *be;
    cnnelm_backend_ctx *ctx;
    int n;
    cnnelm_conv_shape conv1, conv2;
    cnnelm_pool_shape pool1, pool2;
    cnnelm_buffer *x, *t, *w1, *b1, *w2, *b2, *a1, *p1, *a2, *h, *u, *v;
    cnnelm_buffer *beta, *y, *e, *dh, *da2, *dp1, *da1, *dw1, *db1, *dw2, *db2;
    float *host_w1, *host_b1, *host_w2, *host_b2, *host_t, *host_y, *host_g;
    int sync_each;        /* read back after every op, for the breakdown */
    double op_ms[OP_KINDS];
    double t_op;
} bench;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(bench *B, const char *what, cnnelm_status st)
{
    fprintf(stderr, "cnnelm-bench-backend: %s failed: %s: %s\n", what, cnnelm_status_name(st),
            B && B->ctx ? B->be->last_error(B->ctx) : "");
    exit(1);
}

#define CALL(B, expr, what)                                                                 \
    do {                                                                                    \
        cnnelm_status st_ = (expr);                                                         \
        if (st_ != CNNELM_OK)                                                               \
            die(B, what, st_);                                                              \
    } while (0)

/* Ends one timed op: with sync_each, waits for the device (a 4-byte read) and charges the
 * elapsed time to `kind`. */
static void mark(bench *B, int kind, const cnnelm_buffer *out)
{
    if (!B->sync_each)
        return;
    float f;
    CALL(B, B->be->buffer_read(B->ctx, out, 0, &f, sizeof f), "buffer_read");
    double t = now();
    B->op_ms[kind] += (t - B->t_op) * 1e3;
    B->t_op = t;
}

static uint64_t rng = 88172645463325252ull;
static float uniform(void) /* [0, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0));
}

static cnnelm_buffer *buf(bench *B, size_t floats, const float *init)
{
    cnnelm_buffer *b = NULL;
    CALL(B, B->be->buffer_alloc(B->ctx, floats * sizeof(float), &b), "buffer_alloc");
    if (init)
        CALL(B, B->be->buffer_write(B->ctx, b, 0, init, floats * sizeof(float)), "buffer_write");
    return b;
}

static float *host_random(size_t n, float lo, float hi)
{
    float *a = malloc(n * sizeof(float));
    if (!a) {
        fprintf(stderr, "cnnelm-bench-backend: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        a[i] = lo + (hi - lo) * uniform();
    return a;
}

static void setup(bench *B)
{
    int n = B->n;
    B->conv1 = (cnnelm_conv_shape){ n, 1, 28, 28, C1, K };
    B->pool1 = (cnnelm_pool_shape){ n, C1, 24, 24, 2 };
    B->conv2 = (cnnelm_conv_shape){ n, C1, 12, 12, C2, K };
    B->pool2 = (cnnelm_pool_shape){ n, C2, 8, 8, 2 };
    size_t N = (size_t)n;
    float *x = host_random(N * 28 * 28, 0, 1); /* like torch.rand */
    B->host_t = calloc(N * CLASSES, sizeof(float));
    for (size_t i = 0; i < N; i++)
        B->host_t[i * CLASSES + (size_t)(uniform() * CLASSES) % CLASSES] = 1;
    float bound1 = sqrtf(6.0f / (1 * K * K + C1 * K * K)), bound2 = sqrtf(6.0f / (C1 * K * K + C2 * K * K));
    B->host_w1 = host_random((size_t)C1 * K * K, -bound1, bound1);
    B->host_w2 = host_random((size_t)C2 * C1 * K * K, -bound2, bound2);
    B->host_b1 = calloc(C1, sizeof(float));
    B->host_b2 = calloc(C2, sizeof(float));
    float *beta = host_random((size_t)L * CLASSES, -0.01f, 0.01f);
    B->host_y = malloc(N * CLASSES * sizeof(float));
    B->host_g = malloc((size_t)C2 * C1 * K * K * sizeof(float));
    float *zero = calloc((size_t)L * L, sizeof(float));
    B->x = buf(B, N * 28 * 28, x);
    B->t = buf(B, N * CLASSES, B->host_t);
    B->w1 = buf(B, (size_t)C1 * K * K, B->host_w1);
    B->b1 = buf(B, C1, B->host_b1);
    B->w2 = buf(B, (size_t)C2 * C1 * K * K, B->host_w2);
    B->b2 = buf(B, C2, B->host_b2);
    B->a1 = buf(B, N * C1 * 24 * 24, NULL);
    B->p1 = buf(B, N * C1 * 12 * 12, NULL);
    B->a2 = buf(B, N * C2 * 8 * 8, NULL);
    B->h = buf(B, N * L, NULL);
    B->u = buf(B, (size_t)L * L, zero);
    B->v = buf(B, (size_t)L * CLASSES, zero);
    B->beta = buf(B, (size_t)L * CLASSES, beta);
    B->y = buf(B, N * CLASSES, NULL);
    B->e = buf(B, N * CLASSES, NULL);
    B->dh = buf(B, N * L, NULL);
    B->da2 = buf(B, N * C2 * 8 * 8, NULL);
    B->dp1 = buf(B, N * C1 * 12 * 12, NULL);
    B->da1 = buf(B, N * C1 * 24 * 24, NULL);
    B->dw1 = buf(B, (size_t)C1 * K * K, NULL);
    B->db1 = buf(B, C1, NULL);
    B->dw2 = buf(B, (size_t)C2 * C1 * K * K, NULL);
    B->db2 = buf(B, C2, NULL);
    free(x);
    free(beta);
    free(zero);
}

static void forward_layers(bench *B)
{
    const cnnelm_backend *be = B->be;
    CALL(B, be->conv2d_forward(B->ctx, &B->conv1, CNNELM_ACT_RELU, B->x, B->w1, B->b1, B->a1), "conv2d_forward");
    mark(B, OP_CONV_F, B->a1);
    CALL(B, be->pool_forward(B->ctx, &B->pool1, CNNELM_POOL_MEAN, B->a1, B->p1), "pool_forward");
    mark(B, OP_POOL_F, B->p1);
    CALL(B, be->conv2d_forward(B->ctx, &B->conv2, CNNELM_ACT_RELU, B->p1, B->w2, B->b2, B->a2), "conv2d_forward");
    mark(B, OP_CONV_F, B->a2);
    CALL(B, be->pool_forward(B->ctx, &B->pool2, CNNELM_POOL_MEAN, B->a2, B->h), "pool_forward");
    mark(B, OP_POOL_F, B->h);
}

/* (a) forward + U += H^T H, V += H^T T; ends with a read so queued work is counted. */
static void forward_chain(bench *B)
{
    B->t_op = now();
    forward_layers(B);
    CALL(B, B->be->elm_accumulate(B->ctx, B->n, L, CLASSES, B->h, B->t, B->u, B->v), "elm_accumulate");
    mark(B, OP_ACC, B->u);
    float f;
    CALL(B, B->be->buffer_read(B->ctx, B->u, 0, &f, sizeof f), "buffer_read");
}

static void sgd(bench *B, cnnelm_buffer *w, cnnelm_buffer *dw, float *host_w, size_t nw)
{
    CALL(B, B->be->buffer_read(B->ctx, dw, 0, B->host_g, nw * sizeof(float)), "buffer_read");
    for (size_t i = 0; i < nw; i++)
        host_w[i] -= 1e-4f * B->host_g[i];
    CALL(B, B->be->buffer_write(B->ctx, w, 0, host_w, nw * sizeof(float)), "buffer_write");
}

/* (b) forward, Y = H beta, E = Y - T, dH = E beta^T, back through every layer, SGD step. */
static void train_step(bench *B)
{
    const cnnelm_backend *be = B->be;
    cnnelm_backend_ctx *ctx = B->ctx;
    size_t N = (size_t)B->n;
    B->t_op = now();
    forward_layers(B);
    CALL(B, be->elm_predict(ctx, B->n, L, CLASSES, B->h, B->beta, B->y), "elm_predict");
    mark(B, OP_PREDICT, B->y);
    CALL(B, be->buffer_read(ctx, B->y, 0, B->host_y, N * CLASSES * sizeof(float)), "buffer_read");
    for (size_t i = 0; i < N * CLASSES; i++)
        B->host_y[i] -= B->host_t[i];
    CALL(B, be->buffer_write(ctx, B->e, 0, B->host_y, N * CLASSES * sizeof(float)), "buffer_write");
    mark(B, OP_HOST_E, B->e);
    CALL(B, be->elm_backprop(ctx, B->n, L, CLASSES, B->e, B->beta, B->dh), "elm_backprop");
    mark(B, OP_BACKPROP, B->dh);
    CALL(B, be->pool_backward(ctx, &B->pool2, CNNELM_POOL_MEAN, B->a2, B->dh, B->da2), "pool_backward");
    mark(B, OP_POOL_B, B->da2);
    CALL(B, be->activation_backward(ctx, CNNELM_ACT_RELU, N * C2 * 64, B->a2, B->da2, B->da2), "activation_backward");
    mark(B, OP_ACT_B, B->da2);
    CALL(B, be->conv2d_backward_filter(ctx, &B->conv2, B->p1, B->da2, B->dw2, B->db2, 0), "conv2d_backward_filter");
    mark(B, OP_CONV_BF, B->dw2);
    CALL(B, be->conv2d_backward_data(ctx, &B->conv2, B->da2, B->w2, B->dp1), "conv2d_backward_data");
    mark(B, OP_CONV_BD, B->dp1);
    CALL(B, be->pool_backward(ctx, &B->pool1, CNNELM_POOL_MEAN, B->a1, B->dp1, B->da1), "pool_backward");
    mark(B, OP_POOL_B, B->da1);
    CALL(B, be->activation_backward(ctx, CNNELM_ACT_RELU, N * C1 * 576, B->a1, B->da1, B->da1), "activation_backward");
    mark(B, OP_ACT_B, B->da1);
    CALL(B, be->conv2d_backward_filter(ctx, &B->conv1, B->x, B->da1, B->dw1, B->db1, 0), "conv2d_backward_filter");
    mark(B, OP_CONV_BF, B->dw1);
    sgd(B, B->w1, B->dw1, B->host_w1, (size_t)C1 * K * K);
    sgd(B, B->b1, B->db1, B->host_b1, C1);
    sgd(B, B->w2, B->dw2, B->host_w2, (size_t)C2 * C1 * K * K);
    sgd(B, B->b2, B->db2, B->host_b2, C2);
    mark(B, OP_SGD, B->w2);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median seconds of fn over `repeats` runs after 3 warm-up runs; then the same runs again
 * with a sync after every op for the breakdown (printed). */
static double measure(bench *B, void (*fn)(bench *), int repeats, const char *title)
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
    qsort(t, (size_t)repeats, sizeof(double), cmp_double);
    double med = t[repeats / 2];
    free(t);

    memset(B->op_ms, 0, sizeof B->op_ms);
    B->sync_each = 1;
    for (int i = 0; i < repeats; i++)
        fn(B);
    B->sync_each = 0;
    double total = 0;
    for (int k = 0; k < OP_KINDS; k++)
        total += B->op_ms[k];
    /* sustained: every batch's images over every batch's time, what a long run sees (the
     * median picks the quiet batches of a shared machine) */
    printf("%s: median %.3f ms per batch of %d = %.0f images/s; sustained %.0f images/s over %d batches\n",
           title, med * 1e3, B->n, B->n / med, (double)B->n * repeats / all, repeats);
    printf("  %-24s %9s %7s   (mean per batch, synced after each op)\n", "op", "ms", "%");
    for (int k = 0; k < OP_KINDS; k++)
        if (B->op_ms[k] > 0)
            printf("  %-24s %9.3f %6.1f%%\n", op_names[k], B->op_ms[k] / repeats,
                   100 * B->op_ms[k] / total);
    return B->n / med;
}

typedef struct peer_result {
    double forward, train;
    char header[1024];
} peer_result;

static int run_peer(const char *python, const char *peer, const char *mode, int batch, int threads,
                    int repeats, const char *net, int kernel, peer_result *r)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "'%s' '%s' --mode %s --batch %d --threads %d --repeats %d --arch '%s' --kernel %d 2>&1",
             python, peer, mode, batch, threads, repeats, net, kernel);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    char line[1024], arch[128], m[32];
    double rate;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "peer %127s %31s %lf", arch, m, &rate) == 3) {
            if (strcmp(m, "forward") == 0)
                r->forward = rate;
            else if (strcmp(m, "train") == 0)
                r->train = rate;
        } else if (strncmp(line, "peer:", 5) == 0) {
            line[strcspn(line, "\n")] = 0;
            snprintf(r->header, sizeof r->header, "%s", line + 6);
        } else {
            fputs("  peer says: ", stdout);
            fputs(line, stdout);
        }
    }
    int rc = pclose(f);
    return rc == 0 ? 0 : -1;
}

static void usage(void)
{
    fprintf(stderr, "usage: cnnelm-bench-backend [--backend cpu] [--device 0] [--batch 1000] "
                    "[--threads 2] [--repeats 9] [--peer PATH/torch_peer.py | --no-peer] "
                    "[--python PYTHON] [--mode forward|train|both] [--layers 256c-6s] [--kernel 5]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *backend = "cpu", *mode = "both", *peer = NULL, *python = NULL;
    int device = 0, batch = 1000, threads = 2, repeats = 9, no_peer = 0;
    const char *layers = NULL; /* --layers/--kernel: any network, through bench_arch.c */
    int kernel = K;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-peer") == 0) {
            no_peer = 1;
            continue;
        }
        if (!val)
            usage();
        if (strcmp(a, "--backend") == 0)
            backend = val;
        else if (strcmp(a, "--device") == 0)
            device = atoi(val);
        else if (strcmp(a, "--batch") == 0)
            batch = atoi(val);
        else if (strcmp(a, "--threads") == 0)
            threads = atoi(val);
        else if (strcmp(a, "--repeats") == 0)
            repeats = atoi(val);
        else if (strcmp(a, "--peer") == 0)
            peer = val;
        else if (strcmp(a, "--python") == 0)
            python = val;
        else if (strcmp(a, "--mode") == 0)
            mode = val;
        else if (strcmp(a, "--layers") == 0)
            layers = val;
        else if (strcmp(a, "--kernel") == 0)
            kernel = atoi(val);
        else
            usage();
        i++;
    }
    int do_fwd = strcmp(mode, "forward") == 0 || strcmp(mode, "both") == 0;
    int do_train = strcmp(mode, "train") == 0 || strcmp(mode, "both") == 0;
    if ((!do_fwd && !do_train) || batch < 1 || repeats < 1 || kernel < 1)
        usage();
    if (!layers && kernel != K)
        layers = ARCH;
    if (!peer && !no_peer && access(CNNELM_DEFAULT_PEER, R_OK) == 0)
        peer = CNNELM_DEFAULT_PEER;
    if (!python)
        python = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";

    cnnelm_plugin *plug = NULL;
    cnnelm_error err = { "" };
    if (cnnelm_plugin_load(backend, NULL, &plug, &err) != 0) {
        fprintf(stderr, "cnnelm-bench-backend: %s\n", err.msg);
        return 1;
    }
    bench B = { .be = plug->ops, .n = batch };
    cnnelm_device_info info;
    memset(&info, 0, sizeof info);
    CALL(&B, B.be->device_info(device, &info), "device_info");
    cnnelm_context_params params = { .struct_size = sizeof params, .threads = threads };
    char why[512] = "";
    cnnelm_status st = B.be->context_open(device, &params, &B.ctx, why, sizeof why);
    if (st != CNNELM_OK) {
        fprintf(stderr, "cnnelm-bench-backend: context_open: %s: %s\n", cnnelm_status_name(st), why);
        return 1;
    }
    printf("cnnelm-bench-backend: backend %s, device %d (%s; %s), %d threads, batch %d, %d repeats\n",
           plug->name, device, info.name, info.vendor, threads, batch, repeats);
    bench_print_blas();
    double ours_f = 0, ours_t = 0;
    if (layers) {
        if (bench_arch_run(B.be, B.ctx, layers, kernel, batch, repeats, do_fwd, do_train, &ours_f,
                           &ours_t) != 0)
            return 1;
    } else {
        printf("network %s, k=%d, 1x28x28 -> L=%d, %d classes\n", ARCH, K, L, CLASSES);
        setup(&B);
        if (do_fwd)
            ours_f = measure(&B, forward_chain, repeats,
                             "forward (conv+relu, mean pool x2, U += H^T H, V += H^T T)");
        if (do_train)
            ours_t = measure(&B, train_step, repeats,
                             "train step (forward, predict, backprop through every layer, SGD)");
    }
    B.be->context_close(B.ctx);
    cnnelm_plugin_unload(plug);

    if (peer) {
        peer_result r = { 0, 0, "" };
        printf("peer: %s %s --mode %s --batch %d --threads %d --repeats %d --arch %s --kernel %d\n",
               python, peer, mode, batch, threads, repeats, layers ? layers : ARCH, kernel);
        fflush(stdout);
        if (run_peer(python, peer, mode, batch, threads, repeats, layers ? layers : ARCH, kernel, &r) != 0 ||
            (do_fwd && r.forward <= 0) || (do_train && r.train <= 0)) {
            printf("peer: did not run (no figures)\n");
            return 0;
        }
        if (r.header[0])
            printf("peer: %s\n", r.header);
        if (do_fwd)
            printf("forward: ours %.0f images/s, peer %.0f images/s, ours/peer %.2fx\n", ours_f,
                   r.forward, ours_f / r.forward);
        if (do_train)
            printf("train:   ours %.0f images/s, peer %.0f images/s, ours/peer %.2fx\n", ours_t,
                   r.train, ours_t / r.train);
    }
    return 0;
}
