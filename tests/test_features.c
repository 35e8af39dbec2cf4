/* Features the ELM sees from a multi-scale pooling group ("4c-(2s,3s,6s)") and from "-sqrt"
 * (signed square root of every feature): the network's H and its predictions against a plain
 * reference built from ref_ops.c (conv, each pooling size, side by side, square root, ELM
 * activation) on random images and kernels; fine-tuning such a network is refused in words;
 * conf/fashion-92.cfg (which uses both) loads, with the promised shape and partitions. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnelm/config.h"
#include "cnnelm/plugin.h"
#include "model/network.h"
#include "ref_ops.h"

enum { N = 7, C = 3, SIDE = 14, K = 3 };

static cnnelm_plugin *plugin;

/* The reference H (n x L) for the first n images: every layer by ref_ops, the group's pools
 * side by side per example, then sign(h) sqrt|h| and the ELM activation. */
static void ref_hidden(const cnnelm_arch *a, const float *params, const uint8_t *images, int n,
                       double *H)
{
    size_t cap = (size_t)n * a->max_maps;
    float *x = malloc(cap * sizeof(float)), *y = malloc(cap * sizeof(float));
    float *group_in = malloc(cap * sizeof(float));
    for (int i = 0; i < n * SIDE * SIDE; i++)
        x[i] = images[i] * (1.0f / 255.0f);
    int first_scale = a->n_layers - a->n_scales;
    int L = a->hidden;
    for (int l = 0; l < a->n_layers; l++) {
        const cnnelm_layer *ly = &a->layer[l];
        const float *src = l >= first_scale && a->n_scales ? group_in : x;
        if (l == first_scale && a->n_scales)
            memcpy(group_in, x, cap * sizeof(float));
        if (ly->kind == CNNELM_LAYER_CONV) {
            cnnelm_conv_shape s = { n, ly->in_c, ly->in_h, ly->in_w, ly->out_c, a->kernel };
            ref_conv2d_forward(&s, a->activation, src, params + ly->w_offset,
                               params + ly->b_offset, y);
        } else {
            cnnelm_pool_shape s = { n, ly->in_c, ly->in_h, ly->in_w, ly->size };
            ref_pool_forward(&s, a->pooling, src, y);
        }
        size_t per = (size_t)ly->out_c * ly->out_h * ly->out_w;
        if ((a->n_scales && l >= first_scale) || (!a->n_scales && l == a->n_layers - 1))
            for (int e = 0; e < n; e++)
                for (size_t j = 0; j < per; j++)
                    H[(size_t)e * L + ly->h_offset + j] = y[(size_t)e * per + j];
        memcpy(x, y, (size_t)n * per * sizeof(float));
    }
    for (size_t q = 0; q < (size_t)n * L; q++) {
        double v = H[q];
        if (a->sqrt_features)
            v = v < 0 ? -sqrt(-v) : sqrt(v);
        H[q] = ref_act(a->elm_activation, v);
    }
    free(x);
    free(y);
    free(group_in);
}

static void check_features(const char *layers, cnnelm_activation act, cnnelm_activation elm_act,
                           int expect_hidden)
{
    cnnelm_error err;
    cnnelm_arch a;
    ck_assert_msg(cnnelm_arch_init(&a, layers, K, 1, SIDE, SIDE, C, act, CNNELM_POOL_MEAN, elm_act,
                                   &err) == 0, "%s", err.msg);
    ck_assert_int_eq(a.hidden, expect_hidden);
    static uint8_t images[N * SIDE * SIDE], labels[N];
    srand(77 + (unsigned)expect_hidden + (unsigned)act * 5 + (unsigned)elm_act);
    for (int i = 0; i < N * SIDE * SIDE; i++)
        images[i] = (uint8_t)(rand() % 256);
    for (int e = 0; e < N; e++)
        labels[e] = (uint8_t)(e % C);
    float *params = malloc(a.n_params * sizeof(float));
    for (size_t i = 0; i < a.n_params; i++)
        params[i] = (float)(((double)rand() / RAND_MAX - 0.5) * 0.8);
    size_t L = (size_t)a.hidden;
    float *beta = malloc(L * C * sizeof(float));
    for (size_t i = 0; i < L * C; i++)
        beta[i] = (float)(((double)rand() / RAND_MAX - 0.5) * 2.0);
    cnnelm_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.images = images;
    ds.labels = labels;
    ds.n = N;
    ds.rows = ds.cols = SIDE;
    ds.classes = C;

    cnnelm_net net;
    ck_assert_msg(cnnelm_net_open(&net, plugin, 0, 1, &a, N, NULL, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_net_set_params(&net, params, &err) == 0 &&
                  cnnelm_net_set_beta(&net, beta, &err) == 0, "%s", err.msg);
    /* a full chunk, then a shorter one (the interleave must use the loaded count) */
    for (int n = N; n >= N - 3; n -= 3) {
        ck_assert_msg(cnnelm_net_forward(&net, &ds, NULL, 0, n, &err) == 0, "%s", err.msg);
        double *Href = malloc((size_t)n * L * sizeof(double));
        ref_hidden(&a, params, images, n, Href);
        float *H = malloc((size_t)n * L * sizeof(float));
        char why[256] = "";
        ck_assert_int_eq(cnnelm_op_read(&net.ops, net.h ? net.h : net.hcat, 0, H,
                                        (size_t)n * L * sizeof(float), why, sizeof why), CNNELM_OK);
        /* 2e-3: the square root turns a float rounding of 1e-6 near 0 into 1e-3; elsewhere
         * the two agree to about 1e-6 */
        double worst = 0;
        for (size_t q = 0; q < (size_t)n * L; q++) {
            double d = fabs(H[q] - Href[q]) / (1 + fabs(Href[q]));
            if (d > worst)
                worst = d;
        }
        ck_assert_msg(worst <= 2e-3, "%s, %d examples: H differs from the reference by %g", layers,
                      n, worst);
        float Y[N * C];
        ck_assert_msg(cnnelm_net_predict(&net, Y, &err) == 0, "%s", err.msg);
        double yworst = 0, yscale = 0;
        for (int e = 0; e < n; e++)
            for (int k = 0; k < C; k++) {
                double r = 0;
                for (size_t j = 0; j < L; j++)
                    r += Href[(size_t)e * L + j] * beta[j * C + k];
                yworst = fmax(yworst, fabs(Y[e * C + k] - r));
                yscale = fmax(yscale, fabs(r));
            }
        ck_assert_msg(yworst <= 2e-3 * (1 + yscale), "%s: H beta differs from the reference by %g",
                      layers, yworst);
        free(Href);
        free(H);
    }
    float E[N * C] = { 0 };
    ck_assert_int_ne(cnnelm_net_backward(&net, E, 0, &err), 0);
    ck_assert_msg(strstr(err.msg, "cannot be fine-tuned") && strstr(err.msg, "train.iterations = 0"),
                  "%s", err.msg);
    cnnelm_net_close(&net);
    free(params);
    free(beta);
}

/* 14x14, kernel 3: 12x12 maps; pools of 2, 3 and 6 give 36 + 16 + 4 values per map */
START_TEST(group_identity)
{
    check_features("4c-(2s,3s,6s)", CNNELM_ACT_IDENTITY, CNNELM_ACT_IDENTITY, 4 * (36 + 16 + 4));
}
END_TEST

START_TEST(group_sqrt_relu)
{
    check_features("4c-(3s,12s)-sqrt", CNNELM_ACT_RELU, CNNELM_ACT_IDENTITY, 4 * (16 + 1));
}
END_TEST

/* identity convolutions give negative features: the signed root, then the ELM's tanh */
START_TEST(group_sqrt_signed_elm_tanh)
{
    check_features("3c-2s-(1s,3s)-sqrt", CNNELM_ACT_IDENTITY, CNNELM_ACT_OPTTANH, 3 * (36 + 4));
}
END_TEST

START_TEST(sqrt_only)
{
    check_features("5c-4s-sqrt", CNNELM_ACT_IDENTITY, CNNELM_ACT_IDENTITY, 5 * 9);
}
END_TEST

/* The shipped config: 4 partitions (not by source), a project reduce, no fine-tuning (which
 * these features refuse), whitened patches, L = 352 x (36 + 4). */
START_TEST(fashion_92_config)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/conf/fashion-92.cfg", CNNELM_SOURCE_DIR);
    cnnelm_config cfg;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_config_load(&cfg, p, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(cfg.train.partitions, 4);
    ck_assert_int_ne(cfg.train.partitioning, CNNELM_PART_BY_SOURCE);
    ck_assert_int_eq(cfg.train.reduce, CNNELM_REDUCE_REFIT);
    ck_assert_int_eq(cfg.train.iterations, 0);
    ck_assert_int_eq(cfg.model.init, CNNELM_INIT_PATCHES);
    ck_assert_double_eq(cfg.model.whiten, 0.1); /* the 92.5% needs the whitened patches */
    cnnelm_arch a;
    ck_assert_msg(cnnelm_arch_init(&a, cfg.model.layers, cfg.model.kernel, 1, 28, 28, 10,
                                   cfg.model.activation, cfg.model.pooling,
                                   cfg.model.elm_activation, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(a.hidden, 352 * (36 + 4)); /* 352c-(4s,12s): 6x6 and 2x2 per map */
    ck_assert_int_eq(a.n_scales, 2);
    ck_assert_int_eq(a.sqrt_features, 1);
    cnnelm_config_free(&cfg);
}
END_TEST

int main(void)
{
    cnnelm_error err;
    if (cnnelm_plugin_load("cpu", NULL, &plugin, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    Suite *s = suite_create("features");
    TCase *tc = tcase_create("forward");
    tcase_add_test(tc, group_identity);
    tcase_add_test(tc, group_sqrt_relu);
    tcase_add_test(tc, group_sqrt_signed_elm_tanh);
    tcase_add_test(tc, sqrt_only);
    tcase_add_test(tc, fashion_92_config);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    cnnelm_plugin_unload(plugin);
    return failed ? 1 : 0;
}
