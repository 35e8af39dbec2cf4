/* Tests of model.init = "patches" (cnnelm_model_init_patches): every first-layer kernel is a
 * mean-subtracted patch of one of the given training images, at the norm of the random kernel it
 * replaces; flat patches are not used; deeper layers and biases are untouched; the draw depends
 * on the seed and the rows only; model.whiten's kernels solve (S + eps I) w' = c w for the
 * plain kernels w, S the patch covariance written here from its definition; through `cnnelm train`, the kernels are drawn once before the
 * data is partitioned (3 partitions refit = 1 partition) and differ from zero-mean's. */
#define _XOPEN_SOURCE 700
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnnelm/dataset.h"
#include "cnnelm/model.h"
#include "base/rng.h"

enum { N = 9, H = 10, W = 10, K = 3 };
static uint8_t images[N * H * W];
static uint8_t labels[N];

/* image 0 is flat (77 everywhere); the others random in 1..255 */
static cnnelm_dataset make_set(void)
{
    cnnelm_rng r;
    cnnelm_rng_seed(&r, 11, 3);
    for (size_t i = 0; i < sizeof images; i++)
        images[i] = i < H * W ? 77 : (uint8_t)(1 + cnnelm_rng_below(&r, 255));
    for (int i = 0; i < N; i++)
        labels[i] = (uint8_t)(i % 2);
    cnnelm_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.images = images;
    ds.labels = labels;
    ds.n = N;
    ds.rows = H;
    ds.cols = W;
    ds.classes = 2;
    ds.channels = 1;
    return ds;
}

static void make_model(cnnelm_model *m, uint64_t seed)
{
    cnnelm_arch a;
    cnnelm_error err = {""};
    ck_assert_msg(cnnelm_arch_init(&a, "6c-2s-4c", K, 1, H, W, 2, CNNELM_ACT_RELU, CNNELM_POOL_MEAN,
                                   CNNELM_ACT_IDENTITY, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_model_init(m, &a, 1.0, seed, 1, &err) == 0, "%s", err.msg);
}

static double norm_of(const float *w, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)w[i] * w[i];
    return sqrt(s);
}

/* The image (among allowed[0..n_allowed)) and position whose mean-subtracted patch is w up to a
 * positive scale; -1 when none is. */
static int find_patch(const float *w, const int *allowed, int n_allowed)
{
    double wn = norm_of(w, K * K);
    for (int a = 0; a < n_allowed; a++) {
        const uint8_t *img = images + (size_t)allowed[a] * H * W;
        for (int y = 0; y + K <= H; y++)
            for (int x = 0; x + K <= W; x++) {
                double p[K * K], mean = 0, pn = 0, diff = 0;
                for (int j = 0; j < K * K; j++)
                    mean += p[j] = img[(y + j / K) * W + x + j % K];
                mean /= K * K;
                for (int j = 0; j < K * K; j++)
                    pn += (p[j] - mean) * (p[j] - mean);
                pn = sqrt(pn);
                for (int j = 0; j < K * K && pn > 0; j++)
                    diff = fmax(diff, fabs((p[j] - mean) / pn - w[j] / wn));
                if (pn > 0 && diff < 1e-5)
                    return allowed[a];
            }
    }
    return -1;
}

START_TEST(kernels_are_patches)
{
    cnnelm_dataset ds = make_set();
    cnnelm_model ref, m;
    cnnelm_error err = {""};
    make_model(&ref, 5);
    make_model(&m, 5);
    ck_assert_msg(cnnelm_model_init_patches(&m, &ds, NULL, N, 5, 0, &err) == 0, "%s", err.msg);
    const cnnelm_layer *L0 = &m.arch.layer[0];
    int any[N - 1], used[N] = { 0 };
    for (int i = 1; i < N; i++)
        any[i - 1] = i;
    for (int o = 0; o < L0->out_c; o++) {
        const float *w = m.params + L0->w_offset + (size_t)o * K * K;
        const float *w0 = ref.params + L0->w_offset + (size_t)o * K * K;
        ck_assert_double_eq_tol(norm_of(w, K * K), norm_of(w0, K * K), 1e-5 * norm_of(w0, K * K));
        double mean = 0;
        for (int j = 0; j < K * K; j++)
            mean += w[j];
        ck_assert_double_eq_tol(mean, 0, 1e-6);
        int img = find_patch(w, any, N - 1);
        ck_assert_msg(img > 0, "kernel %d is no patch of the non-flat images", o);
        used[img]++;
        ck_assert_int_ne(memcmp(w, w0, K * K * sizeof *w), 0);
    }
    /* the rest of the parameters (biases, the second convolution) are cnnelm_model_init's */
    size_t first = (size_t)L0->out_c * K * K;
    ck_assert_int_eq(memcmp(m.params + L0->w_offset + first, ref.params + L0->w_offset + first,
                            (m.arch.n_params - L0->w_offset - first) * sizeof *m.params), 0);
    ck_assert_int_eq(memcmp(m.params, ref.params, L0->w_offset * sizeof *m.params), 0);
    /* the same seed: the same kernels; another seed: others */
    cnnelm_model m2, m3;
    make_model(&m2, 5);
    make_model(&m3, 6);
    ck_assert_int_eq(cnnelm_model_init_patches(&m2, &ds, NULL, N, 5, 0, &err), 0);
    ck_assert_int_eq(cnnelm_model_init_patches(&m3, &ds, NULL, N, 6, 0, &err), 0);
    ck_assert_int_eq(memcmp(m.params, m2.params, m.arch.n_params * sizeof *m.params), 0);
    ck_assert_int_ne(memcmp(m.params + L0->w_offset, m3.params + L0->w_offset, first * sizeof *m.params), 0);
    cnnelm_model_free(&ref);
    cnnelm_model_free(&m);
    cnnelm_model_free(&m2);
    cnnelm_model_free(&m3);
}
END_TEST

/* rows: only those images are drawn from; all-flat rows leave the random kernels. */
START_TEST(rows_and_flat_images)
{
    cnnelm_dataset ds = make_set();
    cnnelm_model ref, m;
    cnnelm_error err = {""};
    make_model(&ref, 8);
    make_model(&m, 8);
    const size_t rows[] = { 4, 7, 0 };
    ck_assert_msg(cnnelm_model_init_patches(&m, &ds, rows, 2, 8, 0, &err) == 0, "%s", err.msg);
    const int allowed[] = { 4, 7 };
    const cnnelm_layer *L0 = &m.arch.layer[0];
    for (int o = 0; o < L0->out_c; o++)
        ck_assert_int_gt(find_patch(m.params + L0->w_offset + (size_t)o * K * K, allowed, 2), 0);
    cnnelm_model_free(&m);
    make_model(&m, 8);
    ck_assert_msg(cnnelm_model_init_patches(&m, &ds, rows + 2, 1, 8, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(memcmp(m.params, ref.params, m.arch.n_params * sizeof *m.params), 0);
    for (size_t j = 0; j < m.arch.n_params; j++)
        ck_assert(isfinite(m.params[j]));
    cnnelm_model_free(&m);
    cnnelm_model_free(&ref);
}
END_TEST

/* A = S + eps I, S the covariance of the mean-subtracted K x K patches at every position of
 * images ids[0..n) (divided by their count), eps = whiten x trace(S) / (K K): written here
 * from the definition, independently of init_patches.c. */
static void whitening_system(const int *ids, int n, double whiten, double A[K * K][K * K])
{
    double sum[K * K] = { 0 }, count = 0, trace = 0;
    memset(A, 0, sizeof(double) * K * K * K * K);
    for (int a = 0; a < n; a++) {
        const uint8_t *img = images + (size_t)ids[a] * H * W;
        for (int y = 0; y + K <= H; y++)
            for (int x = 0; x + K <= W; x++) {
                double p[K * K], mean = 0;
                for (int j = 0; j < K * K; j++)
                    mean += p[j] = img[(y + j / K) * W + x + j % K] / 255.0;
                mean /= K * K;
                for (int r = 0; r < K * K; r++) {
                    sum[r] += p[r] - mean;
                    for (int c = 0; c < K * K; c++)
                        A[r][c] += (p[r] - mean) * (p[c] - mean);
                }
                count++;
            }
    }
    for (int r = 0; r < K * K; r++)
        for (int c = 0; c < K * K; c++)
            A[r][c] = A[r][c] / count - sum[r] / count * sum[c] / count;
    for (int r = 0; r < K * K; r++)
        trace += A[r][r];
    for (int r = 0; r < K * K; r++)
        A[r][r] += whiten * trace / (K * K);
}

/* Largest |a/|a| - b/|b||: 0 when a is b up to a positive scale. */
static double direction_gap(const double *a, const float *b, int n)
{
    double na = 0, nb = 0, gap = 0;
    for (int i = 0; i < n; i++) {
        na += a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    for (int i = 0; i < n; i++)
        gap = fmax(gap, fabs(a[i] / sqrt(na) - b[i] / sqrt(nb)));
    return gap;
}

/* model.whiten: each whitened kernel w' satisfies (S + eps I) w' = c w for the plain patch
 * kernel w of the same seed (c > 0), at w's norm; S over the rows' images only. */
static void check_whitened(const size_t *rows, const int *ids, int n, double whiten)
{
    cnnelm_dataset ds = make_set();
    cnnelm_model plain, white;
    cnnelm_error err = {""};
    make_model(&plain, 5);
    make_model(&white, 5);
    ck_assert_msg(cnnelm_model_init_patches(&plain, &ds, rows, (size_t)n, 5, 0, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_model_init_patches(&white, &ds, rows, (size_t)n, 5, whiten, &err) == 0, "%s", err.msg);
    static double A[K * K][K * K];
    whitening_system(ids, n, whiten, A);
    const cnnelm_layer *L0 = &white.arch.layer[0];
    double moved = 0;
    for (int o = 0; o < L0->out_c; o++) {
        const float *w = plain.params + L0->w_offset + (size_t)o * K * K;
        const float *ww = white.params + L0->w_offset + (size_t)o * K * K;
        double v[K * K];
        for (int r = 0; r < K * K; r++) {
            v[r] = 0;
            for (int c = 0; c < K * K; c++)
                v[r] += A[r][c] * ww[c];
        }
        ck_assert_msg(direction_gap(v, w, K * K) < 1e-4, "kernel %d: (S + eps I) w' is not along w (%g)",
                      o, direction_gap(v, w, K * K));
        ck_assert_double_eq_tol(norm_of(ww, K * K), norm_of(w, K * K), 1e-5 * norm_of(w, K * K));
        double wd[K * K];
        for (int j = 0; j < K * K; j++)
            wd[j] = w[j];
        moved = fmax(moved, direction_gap(wd, ww, K * K));
    }
    ck_assert_msg(moved > 0.05, "whitening left every kernel where it was (%g)", moved);
    /* everything after the first layer's kernels as cnnelm_model_init made it */
    size_t first = (size_t)L0->out_c * K * K;
    ck_assert_int_eq(memcmp(plain.params + L0->w_offset + first, white.params + L0->w_offset + first,
                            (plain.arch.n_params - L0->w_offset - first) * sizeof *plain.params), 0);
    cnnelm_model_free(&plain);
    cnnelm_model_free(&white);
}

START_TEST(whitened_kernels)
{
    int all[N];
    for (int i = 0; i < N; i++)
        all[i] = i;
    check_whitened(NULL, all, N, 0.1);
    check_whitened(NULL, all, N, 1.0);
    const size_t rows[] = { 4, 7, 2 };
    const int ids[] = { 4, 7, 2 };
    check_whitened(rows, ids, 3, 0.1);
}
END_TEST

/* More images than the covariance takes: drawn by the seed, the same for the same seed. */
START_TEST(whitened_many_images)
{
    enum { MANY = 600 };
    static uint8_t many[MANY * H * W], many_labels[MANY];
    cnnelm_rng r;
    cnnelm_rng_seed(&r, 12, 3);
    for (size_t i = 0; i < sizeof many; i++)
        many[i] = (uint8_t)cnnelm_rng_below(&r, 256);
    cnnelm_dataset ds = make_set();
    ds.images = many;
    ds.labels = many_labels;
    ds.n = MANY;
    cnnelm_model a, b, plain;
    cnnelm_error err = {""};
    make_model(&a, 3);
    make_model(&b, 3);
    make_model(&plain, 3);
    ck_assert_msg(cnnelm_model_init_patches(&a, &ds, NULL, MANY, 3, 0.1, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_model_init_patches(&b, &ds, NULL, MANY, 3, 0.1, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_model_init_patches(&plain, &ds, NULL, MANY, 3, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(memcmp(a.params, b.params, a.arch.n_params * sizeof *a.params), 0);
    const cnnelm_layer *L0 = &a.arch.layer[0];
    for (int o = 0; o < L0->out_c; o++) {
        const float *w = plain.params + L0->w_offset + (size_t)o * K * K;
        const float *ww = a.params + L0->w_offset + (size_t)o * K * K;
        ck_assert_double_eq_tol(norm_of(ww, K * K), norm_of(w, K * K), 1e-5 * norm_of(w, K * K));
        for (int j = 0; j < K * K; j++)
            ck_assert(isfinite(ww[j]));
    }
    cnnelm_model_free(&a);
    cnnelm_model_free(&b);
    cnnelm_model_free(&plain);
}
END_TEST

/* The reduced model's test accuracy line of a `cnnelm train` run (the last "test accuracy"). */
static void train_accuracy(const char *dir, const char *extra, const char *name, char *acc, size_t size)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "cd %s && %s/bin/cnnelm train -q -c %s/conf/default.cfg -s data.train_limit=1200 "
             "-s data.test_limit=400 -s 'model.layers=\"8c-4s\"' -s 'train.partitioning=\"stratified\"' "
             "-s 'train.reduce=\"refit\"' %s -o %s/%s.model > %s/%s.out 2>&1",
             dir, CNNELM_BINARY_DIR, CNNELM_SOURCE_DIR, extra, dir, name, dir, name);
    ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
    snprintf(cmd, sizeof cmd, "%s/%s.out", dir, name);
    FILE *f = fopen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    acc[0] = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "test accuracy"))
            snprintf(acc, size, "%s", strstr(line, "test accuracy"));
    fclose(f);
    ck_assert_msg(acc[0], "no test accuracy in %s/%s.out", dir, name);
}

START_TEST(train_draws_once)
{
    if (access(CNNELM_FASHION_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0) {
        fprintf(stderr, "train_draws_once: skipped: Fashion-MNIST not found\n");
        return;
    }
    char dir[] = "/tmp/cnnelm_test_patches.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char a[256], b[256], c[256], cmd[1024];
    train_accuracy(dir, "-s 'model.init=\"patches\"' -s train.partitions=3", "p3", a, sizeof a);
    train_accuracy(dir, "-s 'model.init=\"patches\"' -s train.partitions=1", "p1", b, sizeof b);
    train_accuracy(dir, "-s 'model.init=\"zero-mean\"' -s train.partitions=3", "z3", c, sizeof c);
    ck_assert_str_eq(a, b);
    ck_assert_str_ne(a, c); /* zero-mean kernels score otherwise on this slice */
    snprintf(cmd, sizeof cmd, "cmp -s %s/p3.model %s/z3.model", dir, dir);
    ck_assert_msg(system(cmd) != 0, "patches trained the zero-mean model");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("init_patches");
    TCase *tc = tcase_create("init_patches");
    tcase_add_test(tc, kernels_are_patches);
    tcase_add_test(tc, rows_and_flat_images);
    tcase_add_test(tc, whitened_kernels);
    tcase_add_test(tc, whitened_many_images);
    tcase_add_test(tc, train_draws_once);
    tcase_set_timeout(tc, 300);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
