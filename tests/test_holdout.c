/* lambda = "auto" by a held-out share of the training rows (train.validation), on a slice of
 * Fashion-MNIST with the paper's small network: the split is stratified, seeded and a property
 * of the rows (not of their order); each candidate's held-out accuracy matches a plain fit of
 * that lambda on the other rows, evaluated on the held rows; the choice is the best of those; the
 * final beta is a plain fit of the chosen lambda on every row; the whole is deterministic; a
 * subset too small to hold a row out falls back to GCV. Skips without the data set. */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "cnnelm/model.h"
#include "cnnelm/plugin.h"
#include "model/network.h"
#include "training/train.h"
#include "training/train_internal.h"

static cnnelm_plugin *plugin;
static cnnelm_dataset ds;
static cnnelm_arch arch;
static cnnelm_net net;
static cnnelm_progress prog;
static const double cand[5] = { 0.1, 1, 10, 100, 1e4 };
#define N_ROWS 1500
static size_t rows[N_ROWS]; /* rows of ds, every other one from 7 on: not 0..n-1 */

static void setup(void)
{
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_arch_init(&arch, "6c-2s-12c-2s", 5, 1, 28, 28, 10, CNNELM_ACT_RELU, CNNELM_POOL_MEAN,
                                   CNNELM_ACT_IDENTITY, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_net_open(&net, plugin, 0, 1, &arch, 256, NULL, &err) == 0, "%s", err.msg);
    cnnelm_progress_init(&prog, 1);
    for (size_t i = 0; i < N_ROWS; i++)
        rows[i] = 7 + 2 * i;
}

static void teardown(void)
{
    cnnelm_net_close(&net);
    cnnelm_progress_destroy(&prog);
}

static void new_model(cnnelm_model *m, double lambda, int autod)
{
    cnnelm_error err = { "" };
    ck_assert_int_eq(cnnelm_model_init(m, &arch, lambda, 3, 1, &err), 0);
    if (autod)
        m->flags |= CNNELM_MODEL_LAMBDA_AUTO;
}

START_TEST(split_is_stratified_seeded_and_order_free)
{
    cnnelm_error err = { "" };
    size_t fit[N_ROWS], held[N_ROWS], fit2[N_ROWS], held2[N_ROWS], nf, nh, nf2, nh2;
    cnnelm_subset s = { &ds, rows, N_ROWS };
    ck_assert_int_eq(cnnelm_holdout_split(&s, 0.2, 5, fit, &nf, held, &nh, &err), 0);
    ck_assert_uint_eq(nf + nh, N_ROWS);
    size_t per[10] = { 0 }, per_held[10] = { 0 };
    for (size_t i = 0; i < N_ROWS; i++)
        per[ds.labels[rows[i]]]++;
    for (size_t i = 0; i < nh; i++)
        per_held[ds.labels[held[i]]]++;
    for (int c = 0; c < 10; c++) /* each class's share, rounded */
        ck_assert_uint_eq(per_held[c], (size_t)floor(0.2 * (double)per[c] + 0.5));
    /* the same rows, reversed: the same held set (and each list in the subset's order) */
    size_t rev[N_ROWS];
    for (size_t i = 0; i < N_ROWS; i++)
        rev[i] = rows[N_ROWS - 1 - i];
    cnnelm_subset r = { &ds, rev, N_ROWS };
    ck_assert_int_eq(cnnelm_holdout_split(&r, 0.2, 5, fit2, &nf2, held2, &nh2, &err), 0);
    ck_assert_uint_eq(nh2, nh);
    for (size_t i = 0; i < nh; i++)
        ck_assert_uint_eq(held2[i], held[nh - 1 - i]);
    /* another seed: another set of the same size */
    ck_assert_int_eq(cnnelm_holdout_split(&s, 0.2, 6, fit2, &nf2, held2, &nh2, &err), 0);
    ck_assert_uint_eq(nh2, nh);
    ck_assert_msg(memcmp(held, held2, nh * sizeof *held) != 0, "seed 6 held out the rows of seed 5");
}
END_TEST

START_TEST(choice_is_the_best_held_out_candidate_refitted_on_every_row)
{
    cnnelm_error err = { "" };
    cnnelm_fit_opts o = { .batch = 500, .lambda_candidates = cand, .n_lambda_candidates = 5,
                          .validation = 0.25, .validation_seed = 11 };
    cnnelm_subset all = { &ds, rows, N_ROWS };
    cnnelm_model m, again;
    cnnelm_lambda_choice ch, ch2;
    new_model(&m, 1.0, 1);
    ck_assert_msg(cnnelm_elm_fit(&net, &m, &all, &o, &ch, &prog, "fit", &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ch.rule, CNNELM_LAMBDA_RULE_HELD);
    ck_assert_int_eq(ch.n, 5);
    ck_assert_uint_eq(m.n_examples, N_ROWS);
    ck_assert_double_eq(m.lambda, cand[ch.best]);

    /* the plain re-computation: each lambda fitted on the fit rows alone, scored on the held rows */
    size_t fit[N_ROWS], held[N_ROWS], nf, nh;
    ck_assert_int_eq(cnnelm_holdout_split(&all, 0.25, 11, fit, &nf, held, &nh, &err), 0);
    ck_assert_uint_eq(ch.n_held, nh);
    cnnelm_subset fs = { &ds, fit, nf }, hs = { &ds, held, nh };
    cnnelm_fit_opts plain = { .batch = 500 };
    double acc[5], best = -1;
    for (int i = 0; i < 5; i++) {
        cnnelm_model p;
        new_model(&p, cand[i], 0);
        ck_assert_msg(cnnelm_elm_fit(&net, &p, &fs, &plain, NULL, &prog, "plain", &err) == 0, "%s", err.msg);
        ck_assert_int_eq(cnnelm_train_device_accuracy(&net, &hs, &prog, "held", &acc[i], &err), 0);
        /* Cholesky against the eigenbasis, in float on the device: a row or two may flip */
        ck_assert_msg(fabs(acc[i] - ch.held[i]) <= 2.0 / (double)nh + 1e-12, "lambda %g: held-out %.4f, plain %.4f",
                      cand[i], ch.held[i], acc[i]);
        best = acc[i] > best ? acc[i] : best;
        cnnelm_model_free(&p);
    }
    ck_assert_msg(acc[ch.best] >= best - 2.0 / (double)nh, "chose %g (%.4f), the best plain is %.4f",
                  cand[ch.best], acc[ch.best], best);
    /* the curve is not flat here, so the choice means something */
    ck_assert_msg(ch.held[0] < ch.held[ch.best] - 0.01, "curve %.4f .. %.4f", ch.held[0], ch.held[ch.best]);

    /* beta: a plain fit of the chosen lambda on every row */
    cnnelm_model p;
    new_model(&p, cand[ch.best], 0);
    ck_assert_int_eq(cnnelm_elm_fit(&net, &p, &all, &plain, NULL, &prog, "plain all", &err), 0);
    double worst = 0, scale = 0;
    size_t nb = (size_t)arch.hidden * 10;
    for (size_t i = 0; i < nb; i++) {
        worst = fmax(worst, fabs((double)m.beta[i] - (double)p.beta[i]));
        scale = fmax(scale, fabs((double)p.beta[i]));
    }
    ck_assert_msg(worst <= 1e-3 * scale, "beta differs by %g (scale %g)", worst, scale);
    cnnelm_model_free(&p);

    /* deterministic: the same bits again */
    new_model(&again, 1.0, 1);
    ck_assert_int_eq(cnnelm_elm_fit(&net, &again, &all, &o, &ch2, &prog, "fit", &err), 0);
    ck_assert_int_eq(ch2.best, ch.best);
    ck_assert_int_eq(memcmp(ch2.held, ch.held, sizeof ch.held), 0);
    ck_assert_int_eq(memcmp(again.beta, m.beta, nb * sizeof *m.beta), 0);
    cnnelm_model_free(&again);
    cnnelm_model_free(&m);
}
END_TEST

START_TEST(too_few_rows_fall_back_to_gcv)
{
    cnnelm_error err = { "" };
    cnnelm_fit_opts o = { .lambda_candidates = cand, .n_lambda_candidates = 5, .validation = 0.1,
                          .validation_seed = 1 };
    cnnelm_subset few = { &ds, rows, 4 }; /* 10% of at most 4 rows per class rounds to none */
    cnnelm_model m;
    cnnelm_lambda_choice ch;
    new_model(&m, 1.0, 1);
    ck_assert_msg(cnnelm_elm_fit(&net, &m, &few, &o, &ch, &prog, "fit", &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ch.rule, 0);
    ck_assert_uint_eq(m.n_examples, 4);
    cnnelm_model_free(&m);
}
END_TEST

int main(void)
{
    char ti[512], tl[512];
    snprintf(ti, sizeof ti, "%s/train-images-idx3-ubyte.gz", CNNELM_FASHION_DIR);
    snprintf(tl, sizeof tl, "%s/train-labels-idx1-ubyte.gz", CNNELM_FASHION_DIR);
    if (access(ti, R_OK) != 0) {
        printf("SKIP: %s not found (install Debian's dataset-fashion-mnist)\n", ti);
        return EXIT_SUCCESS;
    }
    cnnelm_error err = { "" };
    if (cnnelm_plugin_load("cpu", NULL, &plugin, &err) != 0 ||
        cnnelm_dataset_load(&ds, ti, tl, 256, 2 * N_ROWS + 10, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return EXIT_FAILURE;
    }
    Suite *s = suite_create("holdout");
    TCase *tc = tcase_create("fashion-mnist");
    tcase_set_timeout(tc, 600);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, split_is_stratified_seeded_and_order_free);
    tcase_add_test(tc, choice_is_the_best_held_out_candidate_refitted_on_every_row);
    tcase_add_test(tc, too_few_rows_fall_back_to_gcv);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    cnnelm_dataset_free(&ds);
    cnnelm_plugin_unload(plugin);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
