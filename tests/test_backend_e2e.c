/* End to end on every backend built: the same small model trained (ELM fit and one iteration of
 * fine-tuning) on the CPU reference and on each other backend must agree. Tolerances, relative
 * to the largest value: kernels 1e-2 (float sums in another order, fed back through the beta
 * of every batch), network outputs H beta 5e-2, and 99% of the test predictions the same.
 * beta itself is not compared element by element: the ridge system is ill-conditioned, so
 * beta moves a lot along directions that change no output. */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "cnnelm/metrics.h"
#include "cnnelm/model.h"
#include "cnnelm/plugin.h"
#include "model/network.h"
#include "training/train.h"

static cnnelm_dataset train_ds, test_ds;
static const char *other; /* the backend compared with the CPU */

static void train_on(const char *backend, cnnelm_model *m, int *pred, float *out)
{
    cnnelm_plugin *plugin;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_plugin_load(backend, NULL, &plugin, &err) == 0, "%s", err.msg);
    cnnelm_config cfg;
    const char *sets[] = { "train.iterations=1", "train.batch=500", "train.chunk=500",
                           "train.learning_rate=0.1" };
    ck_assert_msg(cnnelm_config_load(&cfg, CNNELM_SOURCE_DIR "/conf/paper-fashion.cfg", sets, 4, &err) == 0,
                  "%s", err.msg);
    cnnelm_arch a;
    ck_assert_int_eq(cnnelm_arch_init(&a, cfg.model.layers, cfg.model.kernel, 1, 28, 28, 10,
                                      cfg.model.activation, cfg.model.pooling, cfg.model.elm_activation,
                                      &err), 0);
    ck_assert_int_eq(cnnelm_model_init(m, &a, cfg.model.lambda, 1, 1, &err), 0);
    cnnelm_net net;
    ck_assert_msg(cnnelm_net_open(&net, plugin, 0, 2, &a, cfg.train.chunk, NULL, &err) == 0, "%s", err.msg);
    cnnelm_progress prog;
    cnnelm_progress_init(&prog, 1);
    cnnelm_subset tr = { &train_ds, NULL, train_ds.n }, none = { &test_ds, NULL, 0 };
    cnnelm_train_log log;
    cnnelm_train_params tp = cnnelm_train_params_from_config(&cfg);
    ck_assert_msg(cnnelm_train_model(&net, m, &tr, &none, &tp, &prog, &log, &err) == 0, "%s: %s", backend,
                  err.msg);
    ck_assert(!log.diverged);
    cnnelm_train_log_free(&log);
    /* predictions, chunk by chunk */
    ck_assert_int_eq(cnnelm_net_set_params(&net, m->params, &err), 0);
    ck_assert_int_eq(cnnelm_net_set_beta(&net, m->beta, &err), 0);
    float Y[500 * 10];
    for (size_t i = 0; i < test_ds.n; i += 500) {
        int c = (int)(test_ds.n - i < 500 ? test_ds.n - i : 500);
        ck_assert_int_eq(cnnelm_net_forward(&net, &test_ds, NULL, i, c, &err), 0);
        ck_assert_int_eq(cnnelm_net_predict(&net, Y, &err), 0);
        for (int j = 0; j < c; j++)
            pred[i + (size_t)j] = cnnelm_argmax(Y + j * 10, 10);
        memcpy(out + i * 10, Y, (size_t)c * 10 * sizeof(float));
    }
    cnnelm_progress_destroy(&prog);
    cnnelm_net_close(&net);
    cnnelm_config_free(&cfg);
    cnnelm_plugin_unload(plugin);
}

static double max_rel(const float *a, const float *b, size_t n)
{
    double top = 0, diff = 0;
    for (size_t i = 0; i < n; i++) {
        top = fmax(top, fabs((double)a[i]));
        diff = fmax(diff, fabs((double)a[i] - (double)b[i]));
    }
    return top > 0 ? diff / top : diff;
}

START_TEST(same_model_on_both)
{
    cnnelm_model ref, got;
    int *pr = malloc(test_ds.n * sizeof *pr), *pg = malloc(test_ds.n * sizeof *pg);
    float *yr = malloc(test_ds.n * 10 * sizeof *yr), *yg = malloc(test_ds.n * 10 * sizeof *yg);
    train_on("cpu", &ref, pr, yr);
    train_on(other, &got, pg, yg);
    double dk = max_rel(ref.params, got.params, ref.arch.n_params);
    double dy = max_rel(yr, yg, test_ds.n * 10);
    size_t same = 0;
    for (size_t i = 0; i < test_ds.n; i++)
        same += pr[i] == pg[i];
    printf("%s vs cpu: kernels %.2g, outputs %.2g (max relative difference), predictions %zu/%zu the same\n",
           other, dk, dy, same, test_ds.n);
    ck_assert_msg(dk < 1e-2, "kernels differ by %g", dk);
    ck_assert_msg(dy < 5e-2, "outputs differ by %g", dy);
    ck_assert_msg(same * 100 >= test_ds.n * 99, "only %zu of %zu predictions agree", same, test_ds.n);
    cnnelm_model_free(&ref);
    cnnelm_model_free(&got);
    free(pr);
    free(pg);
    free(yr);
    free(yg);
}
END_TEST

int main(void)
{
    other = getenv("CNNELM_TEST_BACKEND");
    if (!other || !*other || !strcmp(other, "cpu")) {
        printf("SKIP: set CNNELM_TEST_BACKEND to a backend other than cpu\n");
        return EXIT_SUCCESS;
    }
    const char *dir = CNNELM_FASHION_DIR;
    char ti[512], tl[512], vi[512], vl[512];
    snprintf(ti, sizeof ti, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(tl, sizeof tl, "%s/train-labels-idx1-ubyte.gz", dir);
    snprintf(vi, sizeof vi, "%s/t10k-images-idx3-ubyte.gz", dir);
    snprintf(vl, sizeof vl, "%s/t10k-labels-idx1-ubyte.gz", dir);
    if (access(ti, R_OK) != 0) {
        printf("SKIP: %s not found (install Debian's dataset-fashion-mnist)\n", ti);
        return EXIT_SUCCESS;
    }
    cnnelm_plugin *p;
    cnnelm_error err = { "" };
    int devices = 0;
    if (cnnelm_plugin_load(other, NULL, &p, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return EXIT_FAILURE;
    }
    p->ops->device_count(&devices);
    cnnelm_plugin_unload(p);
    if (devices < 1) {
        printf("SKIP: backend '%s' has no device\n", other);
        return EXIT_SUCCESS;
    }
    if (cnnelm_dataset_load(&train_ds, ti, tl, 256, 2000, &err) != 0 ||
        cnnelm_dataset_load(&test_ds, vi, vl, 10, 1000, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return EXIT_FAILURE;
    }
    Suite *s = suite_create("backend_e2e");
    TCase *tc = tcase_create("train");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, same_model_on_both);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK); /* OpenCL runtimes do not survive fork() */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    cnnelm_dataset_free(&train_ds);
    cnnelm_dataset_free(&test_ds);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
