/* The memory plan a run prints before it starts: its parts add up from the buffers the code
 * allocates (counted here by hand for one small and one wide model), and a run above the
 * limit is refused with a message that says how much it needs. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cnnelm/config.h"
#include "cnnelm/model.h"
#include "model/memory_plan.h"

static void config_with(cnnelm_config *cfg, const char *const *sets, int n)
{
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_config_load(cfg, NULL, sets, n, &err) == 0, "%s", err.msg);
}

static void arch_of(cnnelm_arch *a, const char *layers)
{
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_arch_init(a, layers, 5, 1, 28, 28, 10, CNNELM_ACT_RELU, CNNELM_POOL_MEAN,
                                   CNNELM_ACT_IDENTITY, &err) == 0, "%s", err.msg);
}

START_TEST(wide_model_parts)
{
    /* 1024c-6s: 1024 x 24 x 24 -> 1024 x 4 x 4, L = 16384; chunk 100, one worker, one partition */
    const char *sets[] = { "train.chunk=100" };
    cnnelm_config cfg;
    config_with(&cfg, sets, 1);
    cnnelm_arch a;
    arch_of(&a, "1024c-6s");
    ck_assert_int_eq(a.hidden, 16384);
    cnnelm_memory_plan p;
    cnnelm_memory_plan_make(&cfg, &a, &p);
    double L = 16384, C = 10, N = 100;
    /* U in double for the solve: 2 GiB */
    ck_assert_double_eq(p.solve_per_worker, L * L * 8);
    /* the model: U and V in double, beta in float, 1024 kernels of 25 + 1024 biases */
    ck_assert_double_eq(p.model, (L * L + L * C) * 8 + (L * C + 1024 * 25 + 1024) * 4);
    ck_assert_double_eq(p.models, 2 * p.model); /* the partition's and the initial one */
    /* device: x, two conv outputs (conv, pool), two gradient buffers of the largest map, t, y, e,
     * U, V, beta, kernels and their gradients */
    double dev = N * 784 + N * 1024 * 576 + N * 1024 * 16 + 2 * N * 1024 * 576 + 3 * N * C + L * L +
                 2 * L * C + 2 * (1024 * 25 + 1024);
    ck_assert_double_eq(p.device_per_worker, dev * 4);
    ck_assert(p.host_total > 6.0 * 1024 * 1024 * 1024); /* U float on the device, U double x3 */
    char line[512];
    cnnelm_error err = { "" };
    ck_assert_int_eq(cnnelm_memory_plan_check(&p, 64.0 * 1024 * 1024 * 1024, line, sizeof line, &err), 0);
    ck_assert_msg(strstr(line, "GiB on the host") && strstr(line, "64.00 GiB the limit"), "%s", line);
    ck_assert_int_ne(cnnelm_memory_plan_check(&p, 1024.0 * 1024 * 1024, line, sizeof line, &err), 0);
    ck_assert_msg(strstr(err.msg, "this run needs about") && strstr(err.msg, "1.00 GiB is the limit"),
                  "%s", err.msg);
    cnnelm_config_free(&cfg);
}
END_TEST

START_TEST(partitions_auto_and_refit)
{
    const char *sets[] = { "train.partitions=4", "train.reduce=refit", "train.iterations=1",
                           "train.compare_single=true", "model.lambda=auto",
                           "workers=({backend=\"cpu\";},{backend=\"opencl\";})" };
    cnnelm_config cfg;
    config_with(&cfg, sets, 6);
    cnnelm_arch a;
    arch_of(&a, "6c-2s-12c-2s");
    cnnelm_memory_plan p;
    cnnelm_memory_plan_make(&cfg, &a, &p);
    double L = 192, C = 10;
    ck_assert_double_eq(p.solve_per_worker, L * L * 8); /* one copy of U at a time */
    /* initial, one in training on each of the 2 workers, reduced, single */
    ck_assert_double_eq(p.models, 5 * p.model);
    /* finished partitions are freed: U, V and the kernels live once, in the reduce's 128-bit
     * sums (refit sums no beta) */
    ck_assert_double_eq(p.sums, 16 * (L * (L + 1) / 2 + L * C + (double)a.n_params));
    ck_assert_double_eq(p.device_total, p.device_per_worker); /* the OpenCL worker's */
    ck_assert_double_eq(p.host_total, 2 * (p.host_per_worker + p.solve_per_worker) +
                                      p.device_per_worker + p.models + p.sums);
    cnnelm_config_free(&cfg);
}
END_TEST

START_TEST(double_sums_on_the_device)
{
    /* train.sums = "double" keeps U and V in double on the device beside the float ones */
    const char *f[] = { "train.sums=float" }, *d[] = { "train.sums=double" };
    cnnelm_config cf, cd;
    config_with(&cf, f, 1);
    config_with(&cd, d, 1);
    cnnelm_arch a;
    arch_of(&a, "6c-2s-12c-2s");
    cnnelm_memory_plan pf, pd;
    cnnelm_memory_plan_make(&cf, &a, &pf);
    cnnelm_memory_plan_make(&cd, &a, &pd);
    double L = 192, C = 10;
    ck_assert_double_eq(pd.device_per_worker - pf.device_per_worker, (L * L + L * C) * 8);
    cnnelm_config_free(&cf);
    cnnelm_config_free(&cd);
}
END_TEST

START_TEST(held_images)
{
    /* data.hold_mb's images count on the host, and the plan's line says so */
    cnnelm_config cfg;
    config_with(&cfg, NULL, 0);
    cnnelm_arch a;
    arch_of(&a, "6c-2s-12c-2s");
    cnnelm_memory_plan p;
    cnnelm_memory_plan_make(&cfg, &a, &p);
    double before = p.host_total, images = 60000.0 * 784;
    cnnelm_memory_plan_add_data(&p, images);
    ck_assert_double_eq(p.host_total, before + images);
    char line[512];
    cnnelm_error err = { "" };
    ck_assert_int_eq(cnnelm_memory_plan_check(&p, 1e12, line, sizeof line, &err), 0);
    ck_assert_msg(strstr(line, "0.04 GiB of images held (data.hold_mb)"), "%s", line);
    /* and can be what a run does not fit by */
    ck_assert_int_ne(cnnelm_memory_plan_check(&p, before + images / 2, line, sizeof line, &err), 0);
    cnnelm_config_free(&cfg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("memory_plan");
    TCase *tc = tcase_create("plan");
    tcase_add_test(tc, wide_model_parts);
    tcase_add_test(tc, partitions_auto_and_refit);
    tcase_add_test(tc, double_sums_on_the_device);
    tcase_add_test(tc, held_images);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
