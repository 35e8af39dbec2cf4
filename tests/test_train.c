/* End-to-end training on a slice of Fashion-MNIST through the real config, data, plugin and
 * network code: accuracy floor, determinism, a save-load-predict round trip, fine-tuning that
 * lowers J, and divergence that keeps a usable model. Skips (exit 0 with a note) when the
 * Debian dataset-fashion-mnist package is not installed. */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers_runs.h"
#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "cnnelm/metrics.h"
#include "cnnelm/model.h"
#include "cnnelm/plugin.h"
#include "base/atomic_file.h"
#include "model/network.h"
#include "training/train.h"

static cnnelm_plugin *plugin;
static cnnelm_dataset train_ds, test_ds;

/* Loads conf/paper-fashion.cfg (the paper's small network) with the given overrides. */
static void load_config(cnnelm_config *cfg, const char *const *sets, int n)
{
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_config_load(cfg, CNNELM_SOURCE_DIR "/conf/paper-fashion.cfg", sets, n, &err) == 0,
                  "%s", err.msg);
}

typedef struct trained {
    cnnelm_model model;
    cnnelm_train_log log;
    cnnelm_metrics test;
} trained;

static void train_with(const char *const *sets, int n_sets, size_t n_train, trained *out)
{
    cnnelm_config cfg;
    load_config(&cfg, sets, n_sets);
    cnnelm_error err = { "" };
    cnnelm_arch a;
    ck_assert_msg(cnnelm_arch_init(&a, cfg.model.layers, cfg.model.kernel, 1, 28, 28, 10,
                                   cfg.model.activation, cfg.model.pooling,
                                   cfg.model.elm_activation, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(cnnelm_model_init(&out->model, &a, cfg.model.lambda, cfg.train.seed, cfg.model.init == CNNELM_INIT_ZERO_MEAN, &err), 0);
    cnnelm_net net;
    ck_assert_msg(cnnelm_net_open(&net, plugin, 0, 2, &a, cfg.train.chunk, NULL, &err) == 0, "%s", err.msg);
    cnnelm_progress prog;
    cnnelm_progress_init(&prog, 1);
    cnnelm_subset tr = { &train_ds, NULL, n_train }, te = { &test_ds, NULL, test_ds.n };
    cnnelm_train_params tp = cnnelm_train_params_from_config(&cfg);
    ck_assert_msg(cnnelm_train_model(&net, &out->model, &tr, &te, &tp, &prog, &out->log, &err) == 0,
                  "%s", err.msg);
    uint64_t conf[100] = { 0 };
    ck_assert_msg(cnnelm_evaluate(&net, &out->model, &te, conf, &prog, "test", &err) == 0, "%s", err.msg);
    cnnelm_metrics_compute(conf, 10, &out->test);
    cnnelm_progress_destroy(&prog);
    cnnelm_net_close(&net);
    cnnelm_config_free(&cfg);
}

static void trained_free(trained *t)
{
    cnnelm_model_free(&t->model);
    cnnelm_train_log_free(&t->log);
}

START_TEST(elm_accuracy_floor_and_determinism)
{
    const char *sets[] = { "train.seed=1" };
    trained a, b;
    train_with(sets, 1, 10000, &a);
    train_with(sets, 1, 10000, &b);
    /* 10,000 training images, iteration 0: an independent implementation reaches ~78%. */
    ck_assert_msg(a.test.accuracy > 0.74, "test accuracy %.4f", a.test.accuracy);
    ck_assert(a.test.kappa > 0.7 && a.test.kappa_se > 0 && a.test.kappa_se < 0.02);
    ck_assert_uint_eq(a.model.n_examples, 10000);
    size_t L = 192, C = 10;
    ck_assert_int_eq(memcmp(a.model.beta, b.model.beta, L * C * sizeof(float)), 0);
    ck_assert_int_eq(memcmp(a.model.U, b.model.U, L * L * sizeof(double)), 0);
    /* U is H^T H: symmetric, non-negative diagonal */
    for (size_t i = 0; i < L; i++) {
        ck_assert(a.model.U[i * L + i] >= 0);
        for (size_t j = 0; j < i; j++)
            ck_assert(fabs(a.model.U[i * L + j] - a.model.U[j * L + i]) <= 1e-6 * (1 + fabs(a.model.U[i * L + j])));
    }
    trained_free(&a);
    trained_free(&b);
}
END_TEST

START_TEST(save_load_predicts_identically)
{
    const char *sets[] = { "train.seed=3", "model.elm_activation=\"opttanh\"" };
    trained a;
    train_with(sets, 2, 3000, &a);
    char dir[] = "/tmp/cnnelm-train-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/m.model", dir);
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_model_save(&a.model, path, &err) == 0, "%s", err.msg);
    cnnelm_model r;
    ck_assert_msg(cnnelm_model_load(&r, path, &err) == 0, "%s", err.msg);
    cnnelm_net net;
    ck_assert_int_eq(cnnelm_net_open(&net, plugin, 0, 2, &r.arch, 500, NULL, &err), 0);
    cnnelm_progress prog;
    cnnelm_progress_init(&prog, 1);
    uint64_t conf[100] = { 0 };
    cnnelm_subset te = { &test_ds, NULL, test_ds.n };
    ck_assert_int_eq(cnnelm_evaluate(&net, &r, &te, conf, &prog, "test", &err), 0);
    cnnelm_metrics m;
    cnnelm_metrics_compute(conf, 10, &m);
    ck_assert_double_eq(m.accuracy, a.test.accuracy);
    ck_assert_double_eq(m.kappa, a.test.kappa);
    cnnelm_progress_destroy(&prog);
    cnnelm_net_close(&net);
    cnnelm_model_free(&r);
    trained_free(&a);
    unlink(path);
    rmdir(dir);
}
END_TEST

START_TEST(finetuning_lowers_J_and_solves_final_beta)
{
    const char *sets[] = { "train.iterations=2", "train.batch=100", "train.chunk=100",
                           "train.learning_rate=0.05" };
    trained a;
    train_with(sets, 4, 3000, &a);
    ck_assert_int_eq(a.log.n, 3);
    ck_assert(!a.log.diverged);
    ck_assert_uint_eq(a.model.iterations, 2);
    for (int i = 0; i < 3; i++)
        ck_assert(isfinite(a.log.iters[i].J) && !isnan(a.log.iters[i].test_accuracy));
    ck_assert_msg(a.log.iters[2].J < a.log.iters[1].J, "J did not fall: %g then %g", a.log.iters[1].J,
                  a.log.iters[2].J);
    /* kernels moved away from the initial ones */
    cnnelm_model init;
    cnnelm_error err;
    ck_assert_int_eq(cnnelm_model_init(&init, &a.model.arch, 1, 1, 1, &err), 0);
    ck_assert_int_ne(memcmp(init.params, a.model.params, init.arch.n_params * sizeof(float)), 0);
    ck_assert_uint_eq(a.model.n_examples, 3000); /* U, V refit on the final kernels */
    cnnelm_model_free(&init);
    trained_free(&a);
}
END_TEST

START_TEST(wrong_rate_diverges_to_a_usable_model)
{
    const char *sets[] = { "train.iterations=3", "train.batch=100", "train.chunk=100",
                           "train.learning_rate=100" };
    trained a;
    train_with(sets, 4, 2000, &a);
    ck_assert(a.log.diverged);
    ck_assert_msg(strstr(a.log.divergence, "iteration 1") && strstr(a.log.divergence, "learning"),
                  "%s", a.log.divergence);
    ck_assert(a.model.flags & CNNELM_MODEL_DIVERGED);
    for (size_t i = 0; i < a.model.arch.n_params; i++)
        ck_assert(isfinite(a.model.params[i]));
    for (size_t i = 0; i < 192 * 10; i++)
        ck_assert(isfinite(a.model.beta[i]));
    ck_assert_msg(a.test.accuracy > 0.6, "the last good model should still classify: %.4f", a.test.accuracy);
    trained_free(&a);
}
END_TEST

/* Training reads its settings from cnnelm_train_params alone: the helper copies them from the
 * config, and parameters written by hand with the same values train the same model, bit for
 * bit. */
START_TEST(params_carry_every_setting)
{
    const char *sets[] = { "train.iterations=1", "train.batch=250", "train.chunk=100",
                           "train.learning_rate=0.03", "train.lr_schedule=\"inverse\"", "train.momentum=0.5",
                           "model.lambda_candidates=[3.0, 30.0]" };
    cnnelm_config cfg;
    load_config(&cfg, sets, 7);
    cnnelm_train_params tp = cnnelm_train_params_from_config(&cfg);
    ck_assert_int_eq(tp.iterations, 1);
    ck_assert_uint_eq(tp.batch, 250);
    ck_assert_double_eq(tp.learning_rate, 0.03);
    ck_assert_int_eq(tp.lr_schedule, CNNELM_LR_INVERSE);
    ck_assert_double_eq(tp.momentum, 0.5);
    ck_assert_uint_eq(tp.fit.batch, 250);
    ck_assert_int_eq(tp.fit.n_lambda_candidates, 2);
    ck_assert_double_eq(tp.fit.lambda_candidates[1], 30.0);
    const char *zero[] = { "train.batch=0" }; /* 0: the whole subset, for both */
    cnnelm_config cfg0;
    load_config(&cfg0, zero, 1);
    cnnelm_train_params tp0 = cnnelm_train_params_from_config(&cfg0);
    ck_assert_uint_eq(tp0.batch, 0);
    ck_assert_uint_eq(tp0.fit.batch, 0);
    ck_assert_int_eq(tp0.iterations, 0);
    cnnelm_config_free(&cfg0);

    double cand[2] = { 3.0, 30.0 };
    cnnelm_train_params by_hand = { .iterations = 1, .batch = 250, .learning_rate = 0.03,
                                    .lr_schedule = CNNELM_LR_INVERSE, .momentum = 0.5,
                                    .fit = { .batch = 250, .lambda_candidates = cand,
                                             .n_lambda_candidates = 2 } };
    const cnnelm_train_params *both[2] = { &tp, &by_hand };
    cnnelm_model m[2];
    cnnelm_error err = { "" };
    cnnelm_arch a;
    ck_assert_msg(cnnelm_arch_init(&a, cfg.model.layers, cfg.model.kernel, 1, 28, 28, 10, cfg.model.activation,
                                   cfg.model.pooling, cfg.model.elm_activation, &err) == 0, "%s", err.msg);
    cnnelm_net net;
    ck_assert_msg(cnnelm_net_open(&net, plugin, 0, 2, &a, cfg.train.chunk, NULL, &err) == 0, "%s", err.msg);
    cnnelm_progress prog;
    cnnelm_progress_init(&prog, 1);
    cnnelm_subset tr = { &train_ds, NULL, 1000 }, none = { &test_ds, NULL, 0 };
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(cnnelm_model_init(&m[i], &a, 1.0, 1, 1, &err), 0);
        m[i].flags |= CNNELM_MODEL_LAMBDA_AUTO; /* so that the fit uses the candidates */
        cnnelm_train_log log;
        ck_assert_msg(cnnelm_train_model(&net, &m[i], &tr, &none, both[i], &prog, &log, &err) == 0, "%s",
                      err.msg);
        ck_assert_int_eq(log.n, 2);
        ck_assert_double_eq(log.iters[1].learning_rate, 0.03); /* inverse: 0.03 / 1 */
        ck_assert_int_eq(log.lambda_choice.n, 2);
        ck_assert_msg(m[i].lambda == 3.0 || m[i].lambda == 30.0, "lambda %g", m[i].lambda);
        cnnelm_train_log_free(&log);
    }
    ck_assert_uint_eq(m[0].iterations, 1);
    ck_assert_int_eq(memcmp(m[0].params, m[1].params, a.n_params * sizeof(float)), 0);
    ck_assert_int_eq(memcmp(m[0].beta, m[1].beta, (size_t)a.hidden * 10 * sizeof(float)), 0);
    for (int i = 0; i < 2; i++)
        cnnelm_model_free(&m[i]);
    cnnelm_progress_destroy(&prog);
    cnnelm_net_close(&net);
    cnnelm_config_free(&cfg);
}
END_TEST

/* An interrupt is a status, CNNELM_STATUS_INTERRUPTED, with the signal in the log; divergence
 * (wrong_rate_diverges_to_a_usable_model) is not: it returns 0. */
START_TEST(interrupt_is_a_status)
{
    const char *sets[] = { "train.iterations=2" };
    cnnelm_config cfg;
    load_config(&cfg, sets, 1);
    cnnelm_train_params tp = cnnelm_train_params_from_config(&cfg);
    cnnelm_error err = { "" };
    cnnelm_arch a;
    ck_assert_int_eq(cnnelm_arch_init(&a, cfg.model.layers, cfg.model.kernel, 1, 28, 28, 10, cfg.model.activation,
                                      cfg.model.pooling, cfg.model.elm_activation, &err), 0);
    cnnelm_model m;
    ck_assert_int_eq(cnnelm_model_init(&m, &a, cfg.model.lambda, 1, 1, &err), 0);
    cnnelm_net net;
    ck_assert_msg(cnnelm_net_open(&net, plugin, 0, 2, &a, 100, NULL, &err) == 0, "%s", err.msg);
    cnnelm_progress prog;
    cnnelm_progress_init(&prog, 1);
    cnnelm_subset tr = { &train_ds, NULL, 500 }, none = { &test_ds, NULL, 0 };
    /* SIGHUP, not SIGINT: Check's runner has its own SIGINT handler (it kills the process
     * group), and cnnelm leaves a program's own handlers alone */
    cnnelm_interrupt_catch();
    ck_assert_int_eq(raise(SIGHUP), 0); /* caught: only sets the flag */
    cnnelm_train_log log;
    int rc = cnnelm_train_model(&net, &m, &tr, &none, &tp, &prog, &log, &err);
    cnnelm_interrupt_catch(); /* clears the flag for the tests after this one */
    cnnelm_interrupt_release();
    ck_assert_int_eq(rc, CNNELM_STATUS_INTERRUPTED);
    ck_assert_str_eq(err.msg, "interrupted by SIGHUP");
    ck_assert_int_eq(log.interrupted, SIGHUP);
    ck_assert_int_eq(log.kept, 0); /* stopped in iteration 0's fit: nothing complete */
    ck_assert(!log.diverged);
    cnnelm_train_log_free(&log);
    cnnelm_model_free(&m);
    cnnelm_progress_destroy(&prog);
    cnnelm_net_close(&net);
    cnnelm_config_free(&cfg);
}
END_TEST

/* A multi-scale group or "-sqrt" cannot be fine-tuned: refused at once, before iteration 0's
 * ELM fit and accuracies (which cost minutes on a wide model), not after them. */
START_TEST(finetuning_a_group_is_refused_first)
{
    const char *sets[] = { "train.iterations=1", "model.layers=\"6c-(4s,12s)-sqrt\"" };
    cnnelm_config cfg;
    load_config(&cfg, sets, 2);
    cnnelm_train_params tp = cnnelm_train_params_from_config(&cfg);
    cnnelm_error err = { "" };
    cnnelm_arch a;
    ck_assert_msg(cnnelm_arch_init(&a, cfg.model.layers, cfg.model.kernel, 1, 28, 28, 10,
                                   cfg.model.activation, cfg.model.pooling,
                                   cfg.model.elm_activation, &err) == 0, "%s", err.msg);
    cnnelm_model m;
    ck_assert_int_eq(cnnelm_model_init(&m, &a, cfg.model.lambda, 1, 1, &err), 0);
    cnnelm_net net;
    ck_assert_msg(cnnelm_net_open(&net, plugin, 0, 2, &a, 100, NULL, &err) == 0, "%s", err.msg);
    cnnelm_progress prog;
    cnnelm_progress_init(&prog, 1);
    cnnelm_subset tr = { &train_ds, NULL, 500 }, none = { &test_ds, NULL, 0 };
    cnnelm_train_log log;
    ck_assert_int_eq(cnnelm_train_model(&net, &m, &tr, &none, &tp, &prog, &log, &err),
                     CNNELM_STATUS_INVALID_ARGUMENT);
    ck_assert_msg(strstr(err.msg, "cannot be fine-tuned") && strstr(err.msg, "train.iterations = 0"),
                  "%s", err.msg);
    ck_assert_int_eq(log.n, 0);
    ck_assert_uint_eq(m.n_examples, 0); /* no ELM fit ran */
    cnnelm_train_log_free(&log);
    /* without fine-tuning the same network trains */
    tp.iterations = 0;
    ck_assert_msg(cnnelm_train_model(&net, &m, &tr, &none, &tp, &prog, &log, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(m.n_examples, 500);
    cnnelm_train_log_free(&log);
    cnnelm_model_free(&m);
    cnnelm_progress_destroy(&prog);
    cnnelm_net_close(&net);
    cnnelm_config_free(&cfg);
}
END_TEST

int main(void)
{
    if (!helpers_fashion_slice(&train_ds, 10000, &test_ds, 2000))
        return EXIT_SUCCESS;
    cnnelm_error err = { "" };
    if (cnnelm_plugin_load("cpu", NULL, &plugin, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return EXIT_FAILURE;
    }
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("fashion-mnist");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, elm_accuracy_floor_and_determinism);
    tcase_add_test(tc, save_load_predicts_identically);
    tcase_add_test(tc, finetuning_lowers_J_and_solves_final_beta);
    tcase_add_test(tc, wrong_rate_diverges_to_a_usable_model);
    tcase_add_test(tc, params_carry_every_setting);
    tcase_add_test(tc, interrupt_is_a_status);
    tcase_add_test(tc, finetuning_a_group_is_refused_first);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    cnnelm_dataset_free(&train_ds);
    cnnelm_dataset_free(&test_ds);
    cnnelm_plugin_unload(plugin);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
