/* Tests of accuracy and Cohen's kappa against values worked by hand. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "cnnelm/metrics.h"

START_TEST(kappa_textbook_example)
{
    /* Two raters, 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15.
     * p_o = 35/50 = 0.7; p_e = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = 0.4;
     * se = sqrt(0.7*0.3 / (50*0.25)) = sqrt(0.0168) = 0.129615 */
    uint64_t conf[4] = { 20, 5, 10, 15 };
    cnnelm_metrics m;
    cnnelm_metrics_compute(conf, 2, &m);
    ck_assert_uint_eq(m.n, 50);
    ck_assert_double_eq_tol(m.accuracy, 0.7, 1e-12);
    ck_assert_double_eq_tol(m.kappa, 0.4, 1e-12);
    ck_assert_double_eq_tol(m.kappa_se, sqrt(0.0168), 1e-12);
}
END_TEST

START_TEST(perfect_and_chance)
{
    uint64_t perfect[9] = { 5, 0, 0, 0, 7, 0, 0, 0, 3 };
    cnnelm_metrics m;
    cnnelm_metrics_compute(perfect, 3, &m);
    ck_assert_double_eq_tol(m.accuracy, 1.0, 1e-12);
    ck_assert_double_eq_tol(m.kappa, 1.0, 1e-12);
    ck_assert_double_eq_tol(m.kappa_se, 0.0, 1e-12);
    /* predictions independent of the truth: kappa 0 */
    uint64_t chance[4] = { 25, 25, 25, 25 };
    cnnelm_metrics_compute(chance, 2, &m);
    ck_assert_double_eq_tol(m.accuracy, 0.5, 1e-12);
    ck_assert_double_eq_tol(m.kappa, 0.0, 1e-12);
}
END_TEST

START_TEST(degenerate_inputs)
{
    uint64_t empty[4] = { 0 };
    cnnelm_metrics m;
    cnnelm_metrics_compute(empty, 2, &m);
    ck_assert_uint_eq(m.n, 0);
    ck_assert_double_eq(m.kappa, 0);
    uint64_t one_class[4] = { 10, 0, 0, 0 }; /* p_e = 1: kappa defined as 0, not NaN */
    cnnelm_metrics_compute(one_class, 2, &m);
    ck_assert(!isnan(m.kappa));
    float s[5] = { 0.1f, 0.9f, 0.3f, 0.9f, -1 };
    ck_assert_int_eq(cnnelm_argmax(s, 5), 1);
}
END_TEST

/* Per-class precision, recall and F1 against counts worked from the raw predictions of a random
 * confusion matrix (every cell non-zero), and the zero-denominator cases. */
START_TEST(per_class_against_counting)
{
    enum { C = 4 };
    uint64_t conf[C * C];
    srand(7);
    for (int i = 0; i < C * C; i++)
        conf[i] = 1 + (uint64_t)(rand() % 50);
    cnnelm_class_metrics pc[C];
    cnnelm_metrics_per_class(conf, C, pc);
    for (int k = 0; k < C; k++) {
        /* count over (truth, guess) pairs as a user would from a predictions file */
        double tp = 0, fp = 0, fn = 0;
        for (int t = 0; t < C; t++)
            for (int g = 0; g < C; g++) {
                double n = (double)conf[t * C + g];
                if (t == k && g == k) tp += n;
                else if (g == k) fp += n;
                else if (t == k) fn += n;
            }
        double p = tp / (tp + fp), r = tp / (tp + fn);
        ck_assert_double_eq_tol(pc[k].precision, p, 1e-12);
        ck_assert_double_eq_tol(pc[k].recall, r, 1e-12);
        ck_assert_double_eq_tol(pc[k].f1, 2 * p * r / (p + r), 1e-12);
        ck_assert_uint_eq(pc[k].support, (uint64_t)(tp + fn));
    }
    /* class 1 never present, class 2 never predicted */
    uint64_t z[9] = { 3, 1, 0, 0, 0, 0, 2, 0, 0 };
    cnnelm_class_metrics q[3];
    cnnelm_metrics_per_class(z, 3, q);
    ck_assert_double_eq_tol(q[0].precision, 0.6, 1e-12);
    ck_assert_double_eq_tol(q[0].recall, 0.75, 1e-12);
    ck_assert_uint_eq(q[1].support, 0);
    ck_assert_double_eq(q[1].recall, 0);
    ck_assert_double_eq(q[1].precision, 0);
    ck_assert_double_eq(q[2].precision, 0);
    ck_assert_double_eq(q[2].f1, 0);
}
END_TEST

int main(void)
{
Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("kappa");
    tcase_add_test(tc, kappa_textbook_example);
    tcase_add_test(tc, perfect_and_chance);
    tcase_add_test(tc, degenerate_inputs);
    tcase_add_test(tc, per_class_against_counting);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
