/* Whole-chain gradient check: the kernel and bias gradients that back-propagation through the
 * network computes (on the CPU backend, in float) against central finite differences of
 * J = 1/2 ||H beta - T||^2 computed in double by plain loops in this file, on small random
 * networks with every pooling mode and activation. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnelm/plugin.h"
#include "model/network.h"

enum { N = 5, C = 3, SIDE = 14, K = 3 };

static cnnelm_plugin *plugin;
static uint8_t images[N * SIDE * SIDE];
static uint8_t labels[N];

static double act_d(cnnelm_activation a, double x)
{
    switch (a) {
    case CNNELM_ACT_RELU: return x > 0 ? x : 0;
    case CNNELM_ACT_OPTTANH: return 1.7159 * tanh(2.0 / 3.0 * x);
    default: return x;
    }
}

/* Reference forward in double: returns J for parameters p and beta. */
static double ref_J(const cnnelm_arch *a, const double *p, const float *beta)
{
    static double buf[2][8 * SIDE * SIDE];
    double J = 0;
    for (int n = 0; n < N; n++) {
        int c = 1, h = SIDE, w = SIDE;
        double *in = buf[0], *out = buf[1];
        for (int i = 0; i < SIDE * SIDE; i++)
            in[i] = images[n * SIDE * SIDE + i] / 255.0;
        for (int l = 0; l < a->n_layers; l++) {
            const cnnelm_layer *ly = &a->layer[l];
            int oh = ly->out_h, ow = ly->out_w;
            for (int o = 0; o < ly->out_c; o++)
                for (int i = 0; i < oh; i++)
                    for (int j = 0; j < ow; j++) {
                        double v;
                        if (ly->kind == CNNELM_LAYER_CONV) {
                            v = p[ly->b_offset + o];
                            for (int ci = 0; ci < c; ci++)
                                for (int u = 0; u < K; u++)
                                    for (int q = 0; q < K; q++)
                                        v += in[(ci * h + i + u) * w + j + q] *
                                             p[ly->w_offset + ((o * c + ci) * K + u) * K + q];
                            v = act_d(a->activation, v);
                        } else {
                            int s = ly->size;
                            v = a->pooling == CNNELM_POOL_MAX ? -INFINITY : 0;
                            for (int u = 0; u < s; u++)
                                for (int q = 0; q < s; q++) {
                                    double x = in[(o * h + i * s + u) * w + j * s + q];
                                    v = a->pooling == CNNELM_POOL_MAX ? (x > v ? x : v) : v + x / (s * s);
                                }
                        }
                        out[(o * oh + i) * ow + j] = v;
                    }
            c = ly->out_c;
            h = oh;
            w = ow;
            double *t = in;
            in = out;
            out = t;
        }
        for (int k = 0; k < C; k++) {
            double y = 0;
            for (int i = 0; i < a->hidden; i++)
                y += act_d(a->elm_activation, in[i]) * beta[i * C + k];
            double d = y - (k == labels[n] ? 1.0 : 0.0);
            J += 0.5 * d * d;
        }
    }
    return J;
}

static void check_chain(cnnelm_pooling pool, cnnelm_activation act, cnnelm_activation elm_act)
{
    cnnelm_arch a;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_arch_init(&a, "3c-2s-4c-2s", K, 1, SIDE, SIDE, C, act, pool, elm_act, &err) == 0,
                  "%s", err.msg);
    ck_assert_int_eq(a.hidden, 16);
    srand(1234 + (unsigned)pool * 10 + (unsigned)act * 3 + (unsigned)elm_act);
    for (int i = 0; i < N * SIDE * SIDE; i++)
        images[i] = (uint8_t)(rand() % 256);
    for (int n = 0; n < N; n++)
        labels[n] = (uint8_t)(n % C);
    float *params = malloc(a.n_params * sizeof(float));
    double *pd = malloc(a.n_params * sizeof(double));
    float *grads = malloc(a.n_params * sizeof(float));
    float beta[16 * C];
    for (size_t i = 0; i < a.n_params; i++)
        params[i] = (float)(((double)rand() / RAND_MAX - 0.5) * 0.8);
    for (int i = 0; i < 16 * C; i++)
        beta[i] = (float)(((double)rand() / RAND_MAX - 0.5) * 2.0);
    for (size_t i = 0; i < a.n_params; i++)
        pd[i] = params[i];

    cnnelm_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.images = images;
    ds.labels = labels;
    ds.n = N;
    ds.rows = ds.cols = SIDE;
    ds.classes = C;
    cnnelm_net net;
    ck_assert_msg(cnnelm_net_open(&net, plugin, 0, 1, &a, N, NULL, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_net_set_params(&net, params, &err) == 0 && cnnelm_net_set_beta(&net, beta, &err) == 0 &&
                  cnnelm_net_forward(&net, &ds, NULL, 0, N, &err) == 0, "%s", err.msg);
    float Y[N * C], E[N * C];
    ck_assert_msg(cnnelm_net_predict(&net, Y, &err) == 0, "%s", err.msg);
    double J = 0;
    for (int n = 0; n < N; n++)
        for (int k = 0; k < C; k++) {
            double d = (double)Y[n * C + k] - (k == labels[n] ? 1.0 : 0.0);
            J += 0.5 * d * d;
            E[n * C + k] = (float)d;
        }
    double Jref = ref_J(&a, pd, beta);
    ck_assert_msg(fabs(J - Jref) <= 1e-4 * (1 + fabs(Jref)), "forward J %g vs double reference %g", J, Jref);
    ck_assert_msg(cnnelm_net_backward(&net, E, 0, &err) == 0 && cnnelm_net_read_grads(&net, grads, &err) == 0,
                  "%s", err.msg);
    /* Central differences in double; tolerance: 1e-3 of the largest gradient (float backprop). */
    double gmax = 0, worst = 0;
    double *fd = malloc(a.n_params * sizeof(double));
    for (size_t i = 0; i < a.n_params; i++) {
        const double h = 1e-6;
        double keep = pd[i];
        pd[i] = keep + h;
        double jp = ref_J(&a, pd, beta);
        pd[i] = keep - h;
        double jm = ref_J(&a, pd, beta);
        pd[i] = keep;
        fd[i] = (jp - jm) / (2 * h);
        if (fabs(fd[i]) > gmax)
            gmax = fabs(fd[i]);
    }
    ck_assert_msg(gmax > 1e-3, "gradients vanish: the check would be meaningless");
    size_t at = 0;
    for (size_t i = 0; i < a.n_params; i++) {
        double e = fabs(grads[i] - fd[i]) / gmax;
        if (e > worst) {
            worst = e;
            at = i;
        }
    }
    ck_assert_msg(worst < 1e-3, "pool %d act %d elm %d: parameter %zu: backprop %g vs finite difference %g "
                  "(relative to max %g: %g)", pool, act, elm_act, at, grads[at], fd[at], gmax, worst);
    cnnelm_net_close(&net);
    free(fd);
    free(params);
    free(pd);
    free(grads);
}

START_TEST(mean_relu) { check_chain(CNNELM_POOL_MEAN, CNNELM_ACT_RELU, CNNELM_ACT_IDENTITY); }
END_TEST
START_TEST(max_relu) { check_chain(CNNELM_POOL_MAX, CNNELM_ACT_RELU, CNNELM_ACT_IDENTITY); }
END_TEST
START_TEST(mean_opttanh) { check_chain(CNNELM_POOL_MEAN, CNNELM_ACT_OPTTANH, CNNELM_ACT_IDENTITY); }
END_TEST
START_TEST(max_opttanh_elm_opttanh) { check_chain(CNNELM_POOL_MAX, CNNELM_ACT_OPTTANH, CNNELM_ACT_OPTTANH); }
END_TEST
START_TEST(mean_relu_elm_opttanh) { check_chain(CNNELM_POOL_MEAN, CNNELM_ACT_RELU, CNNELM_ACT_OPTTANH); }
END_TEST
START_TEST(identity_everywhere) { check_chain(CNNELM_POOL_MEAN, CNNELM_ACT_IDENTITY, CNNELM_ACT_IDENTITY); }
END_TEST

int main(void)
{
    cnnelm_error err = { "" };
    if (cnnelm_plugin_load("cpu", NULL, &plugin, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return EXIT_FAILURE;
    }
    Suite *s = suite_create("gradcheck");
    TCase *tc = tcase_create("chain");
    tcase_add_test(tc, mean_relu);
    tcase_add_test(tc, max_relu);
    tcase_add_test(tc, mean_opttanh);
    tcase_add_test(tc, max_opttanh_elm_opttanh);
    tcase_add_test(tc, mean_relu_elm_opttanh);
    tcase_add_test(tc, identity_everywhere);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    cnnelm_plugin_unload(plugin);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
