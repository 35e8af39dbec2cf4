/* Exact ELM sums (train.sums = "double", elm_accumulate_f64): refit over shuffled partitions
 * without fine-tuning gives the single model's beta to 1e-9 relative and the same predictions,
 * at chunk sizes that group the examples differently in the partitions and in the single model.
 *
 * Why 1e-9 holds: every product h_i h_j of two floats is exact in double, so the only rounding
 * left in U and V is double addition, ~n * 2^-53 ~ 1e-13 relative for n = 2000 examples, in any
 * order; refit folds the partitions' double sums into 128-bit fixed point (far below that). The
 * solve of I/lambda + U then amplifies it by at most the condition number, here < 1e4 with
 * lambda = 100 (I/lambda bounds the smallest eigenvalue below by 0.01), so beta agrees to
 * ~1e-9 in the worst case and in practice to ~1e-12. Float sums round each chunk's sums to 24
 * bits (~6e-8 relative) differently for each grouping: their beta differs by ~1e-5, which the
 * test also checks, so that it shows what the exact mode buys. Predictions are argmaxes of H
 * beta: a 1e-9 change of beta moves a score by far less than the gap between two classes'
 * scores on any of these 500 images (checked: identical classes, scores to 1e-6). */
#define _GNU_SOURCE
#include "training/experiment.h"
#include "helpers_runs.h"

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "cnnelm/model.h"
#include "cnnelm/predict.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cnnelm_dataset train_ds, test_ds;
static int have_data;

/* conf/paper-fashion.cfg's network (L = 192), `k` shuffled partitions reduced by refit, and the
 * single model on all the data; chunk 300: partitions of 500 go in chunks of 300 + 200, the
 * single model's 2000 in 6 x 300 + 200, so no chunk holds the same examples in both. */
static void run_refit(helpers_run *r, int k, const char *sums)
{
    char parts[64], s[64];
    snprintf(parts, sizeof parts, "train.partitions=%d", k);
    snprintf(s, sizeof s, "train.sums=\"%s\"", sums);
    const char *sets[] = { "workers=({backend=\"cpu\";threads=1;})", parts, s, "train.reduce=refit",
                           "train.partitioning=shuffle", "train.compare_single=true",
                           "train.chunk=300", "train.seed=7" };
    cnnelm_error err = { "" };
    helpers_run_open(r, CNNELM_SOURCE_DIR "/conf/paper-fashion.cfg", sets, (int)(sizeof sets / sizeof sets[0]));
    ck_assert_msg(helpers_run_experiment(r, (cnnelm_subset){ &train_ds, NULL, train_ds.n },
                                         (cnnelm_subset){ &test_ds, NULL, test_ds.n }, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(r->x.k, k);
    ck_assert(r->x.has_single);
}

/* max |a - b| / max |b| over the L x C betas. */
static double beta_rel_diff(const cnnelm_model *a, const cnnelm_model *b)
{
    size_t n = (size_t)a->arch.hidden * a->arch.classes;
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a->beta[i] - b->beta[i]));
        m = fmax(m, fabs((double)b->beta[i]));
    }
    return d / m;
}

/* The two models' classes on the test images; the largest score difference relative to the
 * largest score. Returns how many classes differ. */
static size_t prediction_diffs(const cnnelm_model *a, const cnnelm_model *b, double *score_rel)
{
    size_t n = test_ds.n, C = (size_t)a->arch.classes;
    float *sa = malloc(n * C * sizeof *sa), *sb = malloc(n * C * sizeof *sb);
    ck_assert(sa && sb);
    cnnelm_error err = { "" };
    const cnnelm_model *m[2] = { a, b };
    float *out[2] = { sa, sb };
    for (int i = 0; i < 2; i++) {
        cnnelm_predictor *p = NULL;
        ck_assert_msg(cnnelm_predictor_open(&p, m[i], NULL, &err) == 0, "%s", err.msg);
        ck_assert_msg(cnnelm_predictor_run(p, test_ds.images, n, out[i], &err) == 0, "%s", err.msg);
        cnnelm_predictor_close(p);
    }
    size_t differ = 0;
    double d = 0, top = 0;
    for (size_t r = 0; r < n; r++) {
        size_t ca = 0, cb = 0;
        for (size_t c = 0; c < C; c++) {
            ca = sa[r * C + c] > sa[r * C + ca] ? c : ca;
            cb = sb[r * C + c] > sb[r * C + cb] ? c : cb;
            d = fmax(d, fabs((double)sa[r * C + c] - sb[r * C + c]));
            top = fmax(top, fabs((double)sb[r * C + c]));
        }
        differ += ca != cb;
    }
    free(sa);
    free(sb);
    *score_rel = d / top;
    return differ;
}

static void check_partitions(int k)
{
    helpers_run r;
    run_refit(&r, k, "double");
    double rel = beta_rel_diff(&r.x.reduced, &r.x.single.model), score;
    size_t differ = prediction_diffs(&r.x.reduced, &r.x.single.model, &score);
    printf("exact sums, %d shuffled partitions: refit vs single: beta %.3g relative, %zu of %zu "
           "predictions differ, scores %.3g relative\n", k, rel, differ, test_ds.n, score);
    ck_assert_msg(rel <= 1e-9, "%d partitions: refit's beta differs from the single model's by %g "
                  "relative (more than 1e-9)", k, rel);
    ck_assert_msg(differ == 0, "%d partitions: %zu of %zu predictions differ", k, differ, test_ds.n);
    ck_assert_msg(score <= 1e-6, "%d partitions: scores differ by %g relative", k, score);
    ck_assert_msg(r.x.reduced_test.accuracy > 0.6, "accuracy %.4f", r.x.reduced_test.accuracy);
    helpers_run_free(&r);
}

START_TEST(refit_equals_single_with_3_partitions)
{
    if (have_data)
        check_partitions(3);
}
END_TEST

START_TEST(refit_equals_single_with_4_partitions)
{
    if (have_data)
        check_partitions(4);
}
END_TEST

/* The same run with float sums: the groupings differ by float rounding, far beyond 1e-9 (what
 * the exact mode is for); the models are still close. */
START_TEST(float_sums_depend_on_the_grouping)
{
    if (!have_data)
        return;
    helpers_run r;
    run_refit(&r, 4, "float");
    double rel = beta_rel_diff(&r.x.reduced, &r.x.single.model);
    printf("float sums, 4 shuffled partitions: refit vs single: beta %.3g relative\n", rel);
    ck_assert_msg(rel > 1e-9 && rel < 1e-2, "float sums: beta differs by %g relative", rel);
    helpers_run_free(&r);
}
END_TEST

int main(void)
{
    have_data = helpers_fashion_slice(&train_ds, 2000, &test_ds, 500);
    Suite *s = suite_create("exact_sums");
    TCase *tc = tcase_create("refit");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, refit_equals_single_with_3_partitions);
    tcase_add_test(tc, refit_equals_single_with_4_partitions);
    tcase_add_test(tc, float_sums_depend_on_the_grouping);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (have_data) {
        cnnelm_dataset_free(&train_ds);
        cnnelm_dataset_free(&test_ds);
    }
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
