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

int main(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("kappa");
    tcase_add_test(tc, kappa_textbook_example);
    tcase_add_test(tc, perfect_and_chance);
    tcase_add_test(tc, degenerate_inputs);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
