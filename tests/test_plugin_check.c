/* Tests of the plugin conformance checker (cnnelm_plugin_check): the CPU plugin and a partial
 * plugin pass; wrong results, a crashing op and plugins that do not load are failures with a
 * clear report, and the checker itself always returns. The deliberately broken plugins of
 * tests/stubs/buggy_plugin.c (one real-world bug each) all fail, each naming the op. */
#define _GNU_SOURCE
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnnelm/plugin_check.h"

#define STUB(name) CNNELM_STUB_DIR "/libcnnelm-" name ".so"
#define CPU_PLUGIN CNNELM_BINARY_DIR "/lib/cnnelm/libcnnelm-cpu.so"

/* The summary the call returns is the count the report's last line gives; 1 when some failed. */
static int summary_verdict(const char *report, const cnnelm_plugin_check_summary *sum)
{
    const char *last = NULL;
    for (const char *p = report; (p = strstr(p, "plugin-check: ")) != NULL; p++)
        last = p;
    int passed = -1, failed = -1;
    ck_assert_msg(last && sscanf(last, "plugin-check: %d passed, %d failed", &passed, &failed) == 2, "%s",
                  report);
    ck_assert_msg(sum->passed == passed && sum->failed == failed, "summary %d passed, %d failed; report:\n%s",
                  sum->passed, sum->failed, report);
    return sum->failed > 0;
}

/* Runs the checker with its report in a heap buffer; returns 1 when some check failed, else 0,
 * and *report (free it). */
static int check_report(const char *file, char **report)
{
    size_t size = 0;
    FILE *out = open_memstream(report, &size);
    ck_assert_ptr_nonnull(out);
    cnnelm_error err = { "" };
    cnnelm_plugin_check_summary sum;
    int rc = cnnelm_plugin_check(file, 0, 1, out, &sum, &err);
    fclose(out);
    ck_assert_msg(rc == 0, "the checker could not run: %s", err.msg);
    return summary_verdict(*report, &sum);
}

/* The same with a per-case time limit. */
static int check_report_timeout(const char *file, double timeout_s, char **report)
{
    size_t size = 0;
    FILE *out = open_memstream(report, &size);
    ck_assert_ptr_nonnull(out);
    cnnelm_error err = { "" };
    cnnelm_plugin_check_options o = { .device = 0, .verbose = 0, .timeout_s = timeout_s };
    cnnelm_plugin_check_summary sum;
    int rc = cnnelm_plugin_check_run(file, &o, out, &sum, &err);
    fclose(out);
    ck_assert_msg(rc == 0, "the checker could not run: %s", err.msg);
    return summary_verdict(*report, &sum);
}

/* The report's last line ("plugin-check: N passed, M failed: ..."). */
static const char *last_line(const char *report)
{
    const char *end = report + strlen(report);
    while (end > report && end[-1] == '\n')
        end--;
    const char *p = end;
    while (p > report && p[-1] != '\n')
        p--;
    return p;
}

/* Is there a line of the report containing every one of the (NULL-terminated) needles? */
static int has_line(const char *report, ...) __attribute__((sentinel));
static int has_line(const char *report, ...)
{
    char *copy = strdup(report), *save = NULL;
    int found = 0;
    for (char *line = strtok_r(copy, "\n", &save); line && !found; line = strtok_r(NULL, "\n", &save)) {
        va_list ap;
        va_start(ap, report);
        found = 1;
        for (const char *n = va_arg(ap, const char *); n; n = va_arg(ap, const char *))
            if (!strstr(line, n))
                found = 0;
        va_end(ap);
    }
    free(copy);
    return found;
}

/* The rows of the ABI 1.1 slots a plugin with all of them gets, each passing. */
static void expect_v11_rows(const char *r)
{
    static const char *const rows[][2] = {
        { "init ", "" }, { "shutdown ", "" }, { "device_count_v11", "" }, { "device_info_v11", "device 0" },
        { "device_limits", "device 0" }, { "buffer_fill", "1001 floats at +3" }, { "buffer_fill", "1 float " },
        { "buffer_copy", "65536 floats" }, { "buffer_write_async", "synchronize" },
        { "buffer_read_async", "synchronize" },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        ck_assert_msg(has_line(r, rows[i][0], rows[i][1], "PASS", NULL), "no passing %s row:\n%s", rows[i][0], r);
    ck_assert_msg(strstr(r, "supports(): 0 of the ") != NULL, "supports() answers not listed:\n%s", r);
}

START_TEST(cpu_plugin_passes)
{
    char *r = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = check_report(CPU_PLUGIN, &r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    /* the whole check on the reference stays well inside a minute on a small machine */
    ck_assert_msg(secs < 60, "plugin-check of the CPU plugin took %.1f s", secs);
    ck_assert_msg(has_line(r, "device_count", "PASS", NULL) && has_line(r, "device_info", "device 0", "PASS", NULL),
                  "%s", r);
    /* the new kinds of case are there: accumulating calls, two threads, every pooling size */
    ck_assert_msg(has_line(r, "elm_accumulate", "x3", "PASS", NULL), "%s", r);
    ck_assert_msg(has_line(r, "conv2d_backward_filter", "accumulate x3", "PASS", NULL), "%s", r);
    ck_assert_msg(has_line(r, "conv2d_forward", "2 threads", "PASS", NULL), "%s", r);
    for (int s = 1; s <= 4; s++) {
        char sz[8];
        snprintf(sz, sizeof sz, " s%d ", s);
        ck_assert_msg(has_line(r, "pool_backward", sz, "max", "PASS", NULL), "s=%d:\n%s", s, r);
    }
    for (int k = 1; k <= 7; k++) {
        char kz[8];
        snprintf(kz, sizeof kz, " k%d", k);
        ck_assert_msg(has_line(r, "conv2d_backward_data", kz, "PASS", NULL), "k=%d:\n%s", k, r);
    }
    ck_assert_msg(strstr(r, "slowest case: ") != NULL, "%s", r);
    expect_v11_rows(r);
    ck_assert_msg(rc == 0, "the CPU plugin failed its own check:\n%s", r);
    ck_assert_msg(strstr(r, " 0 failed") != NULL, "%s", r);
    ck_assert_msg(has_line(r, "conv2d_forward", "PASS", NULL), "%s", r);
    ck_assert_msg(has_line(r, "elm_solve", "PASS", NULL), "%s", r);
    ck_assert_msg(!strstr(r, "FAIL") && !strstr(r, "CRASH"), "%s", r);
    free(r);
}
END_TEST

START_TEST(partial_plugin_passes)
{
    char *r = NULL;
    int rc = check_report(STUB("convonly"), &r);
    ck_assert_msg(rc == 0, "%s", r);
    ck_assert_msg(has_line(r, "conv2d_forward", "PASS", NULL), "%s", r);
    ck_assert_msg(has_line(r, "elm_solve", "not implemented: runs on the CPU reference", NULL), "%s", r);
    ck_assert_msg(has_line(r, "pool_forward", "not implemented: runs on the CPU reference", NULL), "%s", r);
    /* convonly answers UNSUPPORTED for optimal tanh: the reference takes that shape */
    ck_assert_msg(has_line(r, "conv2d_forward", "opttanh", "unsupported", NULL), "%s", r);
    free(r);
}
END_TEST

START_TEST(wrong_results_fail)
{
    char *r = NULL;
    int rc = check_report(STUB("brokenwrong"), &r);
    ck_assert_msg(rc == 1, "%s", r);
    ck_assert_msg(has_line(r, "conv2d_forward", "FAIL", NULL), "%s", r);
    ck_assert_msg(has_line(r, "pool_forward", "PASS", NULL), "%s", r);
    ck_assert_msg(strstr(r, "plugin-check: ") && !strstr(r, " 0 failed"), "%s", r);
    free(r);
}
END_TEST

START_TEST(crash_is_reported)
{
    char *r = NULL;
    int rc = check_report(STUB("brokencrash"), &r);
    ck_assert_msg(rc == 1, "%s", r);
    ck_assert_msg(has_line(r, "pool_forward", "crashed", NULL), "%s", r);
    /* the checker carried on after the crash: convolution was checked and passed */
    ck_assert_msg(has_line(r, "conv2d_forward", "PASS", NULL), "%s", r);
    ck_assert_msg(strstr(r, "plugin-check: ") != NULL, "%s", r);
    free(r);
}
END_TEST

START_TEST(no_entry_fails_with_loader_message)
{
    char *r = NULL;
    int rc = check_report(STUB("stubnoentry"), &r);
    ck_assert_msg(rc == 1, "%s", r);
    ck_assert_msg(has_line(r, "FAIL", "no entry point 'cnnelm_backend_entry'", NULL), "%s", r);
    ck_assert_msg(strstr(r, "0 passed, 1 failed") != NULL, "%s", r);
    free(r);
}
END_TEST

START_TEST(bad_abi_fails_with_loader_message)
{
    char *r = NULL;
    int rc = check_report(STUB("stubbadabi"), &r);
    ck_assert_msg(rc == 1, "%s", r);
    ck_assert_msg(has_line(r, "FAIL", "ABI version 99", NULL), "%s", r);
    free(r);
}
END_TEST

START_TEST(missing_file_fails)
{
    char *r = NULL;
    int rc = check_report(CNNELM_STUB_DIR "/libcnnelm-nosuchplugin.so", &r);
    ck_assert_msg(rc == 1, "%s", r);
    ck_assert_msg(has_line(r, "FAIL", "libcnnelm-nosuchplugin.so", NULL), "%s", r);
    free(r);
}
END_TEST

START_TEST(missing_device_fails_once)
{
    /* the count says there is no device 5: one row says so, no case runs for want of it */
    char *r = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&r, &size);
    ck_assert_ptr_nonnull(out);
    cnnelm_error err = { "" };
    cnnelm_plugin_check_options o = { .device = 5, .verbose = 0, .timeout_s = 60 };
    cnnelm_plugin_check_summary sum;
    int rc = cnnelm_plugin_check_run(CPU_PLUGIN, &o, out, &sum, &err);
    fclose(out);
    ck_assert_msg(rc == 0, "the checker could not run: %s", err.msg);
    ck_assert_msg(summary_verdict(r, &sum) == 1, "%s", r);
    ck_assert_msg(has_line(r, "--device 5", "FAIL: the plugin has 1 device;", NULL),
                  "%s", r);
    ck_assert_msg(sum.failed == 1 && !strstr(r, "conv2d_forward") && !strstr(r, "end-to-end"), "%s", r);
    free(r);
}
END_TEST

START_TEST(buggy_ok_passes)
{
    char *r = NULL;
    int rc = check_report(STUB("buggyok"), &r);
    ck_assert_msg(rc == 0, "the correct build of buggy_plugin.c failed:\n%s", r);
    ck_assert_msg(!strstr(r, "FAIL") && !strstr(r, "CRASH"), "%s", r);
    ck_assert_msg(!strstr(r, "not implemented"), "%s", r);
    expect_v11_rows(r);
    free(r);
}
END_TEST

START_TEST(templates_pass)
{
    /* today's template (ABI 1.1, every slot) and the 1.0 template (none of the 1.1 rows) */
    char *r = NULL;
    int rc = check_report(CNNELM_BINARY_DIR "/tests/abi11/libcnnelm-mydevice.so", &r);
    ck_assert_msg(rc == 0, "the template failed:\n%s", r);
    ck_assert_msg(has_line(r, "buffer_fill", "PASS", NULL) && has_line(r, "buffer_read_async", "PASS", NULL),
                  "%s", r);
    free(r);
    rc = check_report(CNNELM_BINARY_DIR "/tests/abi10/libcnnelm-mydevice.so", &r);
    ck_assert_msg(rc == 0, "the 1.0 template failed:\n%s", r);
    ck_assert_msg(has_line(r, "device_count ", "PASS", NULL) && !strstr(r, "buffer_fill") && !strstr(r, "init "),
                  "%s", r);
    free(r);
}
END_TEST

START_TEST(unsupported_answer_is_listed_not_failed)
{
    char *r = NULL;
    int rc = check_report(STUB("buggysupportspartial"), &r);
    ck_assert_msg(rc == 0, "%s", r);
    ck_assert_msg(has_line(r, "conv2d_forward", "opttanh", "supports() says unsupported",
                           "runs on the CPU reference in training", NULL), "%s", r);
    ck_assert_msg(has_line(r, "conv2d_forward", "relu", "PASS", NULL), "%s", r);
    ck_assert_msg(has_line(r, "supports(): 4 of the ", "said unsupported", NULL), "%s", r);
    free(r);
}
END_TEST

/* A buggy variant fails; a row of `op` says `phrase`, and the last line names the op. Returns
 * the report (free it), for a test that checks more of it without running the check again. */
static char *expect_bug_report(const char *variant, double timeout_s, const char *op, const char *phrase,
                               const char *shape_part)
{
    char file[512], *r = NULL;
    snprintf(file, sizeof file, CNNELM_STUB_DIR "/libcnnelm-buggy%s.so", variant);
    int rc = check_report_timeout(file, timeout_s, &r);
    ck_assert_msg(rc == 1, "%s passed:\n%s", variant, r);
    ck_assert_msg(has_line(r, op, phrase, shape_part ? shape_part : "", NULL), "%s: no '%s' row saying '%s':\n%s",
                  variant, op, phrase, r);
    const char *last = last_line(r);
    ck_assert_msg(strncmp(last, "plugin-check: ", 14) == 0 && strstr(last, "failed: ") && strstr(last, op),
                  "%s: the last line does not name %s: %s", variant, op, last);
    return r;
}

static void expect_bug(const char *variant, double timeout_s, const char *op, const char *phrase,
                       const char *shape_part)
{
    free(expect_bug_report(variant, timeout_s, op, phrase, shape_part));
}

START_TEST(accumulate_that_overwrites_fails)
{
    expect_bug("accumoverwrite", 60, "elm_accumulate", "after call 2 of 3", "x3");
}
END_TEST

START_TEST(float_sums_in_the_exact_op_fail)
{
    /* float sums of 64 products are off by ~1e-7 relative: far outside the op's 1e-12 */
    expect_bug("floatsums", 60, "elm_accumulate_f64", "outside the tolerance", "n64 l192 c10");
}
END_TEST

START_TEST(ignored_accumulate_flag_fails)
{
    expect_bug("filteraccum", 60, "conv2d_backward_filter", "after call 1 of 3", "accumulate");
}
END_TEST

START_TEST(thread_unsafe_plugin_fails)
{
    char *r = NULL;
    int rc = check_report(STUB("buggythreadunsafe"), &r);
    ck_assert_msg(rc == 1, "%s", r);
    ck_assert_msg(has_line(r, "conv2d_forward", "2 threads", "FAIL", NULL), "%s", r);
    /* one context at a time it is right: only the two-thread case fails */
    ck_assert_msg(has_line(r, "conv2d_forward", "n16 1->6 28x28 k5 relu ", "PASS", NULL), "%s", r);
    ck_assert_msg(strstr(last_line(r), "failed: conv2d_forward"), "%s", last_line(r));
    free(r);
}
END_TEST

START_TEST(mean_pooling_wrong_on_odd_sizes_fails)
{
    char *r = NULL;
    int rc = check_report(STUB("buggymeanodd"), &r);
    ck_assert_msg(rc == 1, "%s", r);
    ck_assert_msg(has_line(r, "pool_forward", "5x7 s1 mean", "outside the tolerance", NULL), "%s", r);
    ck_assert_msg(has_line(r, "pool_forward", "24x24 s2 mean", "PASS", NULL), "%s", r); /* even: right */
    ck_assert_msg(strstr(last_line(r), "pool_forward"), "%s", last_line(r));
    free(r);
}
END_TEST

START_TEST(write_past_the_end_is_named)
{
    expect_bug("writepastend", 60, "conv2d_forward", "wrote 1 float past the end of y", "n16 1->6 28x28 k5");
}
END_TEST

START_TEST(unwritten_output_is_named)
{
    expect_bug("nowrite", 60, "elm_predict", "output Y not written", "n64 l192 c10");
}
END_TEST

START_TEST(forgotten_last_rows_fail)
{
    /* blocks of four rows: n = 64 is right, n = 37 leaves its last row */
    char *r = expect_bug_report("lastrow", 60, "elm_predict", "10 of 370 floats", "n37");
    ck_assert_msg(has_line(r, "elm_predict", "n64 l192 c10 ", "PASS", NULL), "%s", r);
    free(r);
}
END_TEST

START_TEST(one_maps_bias_fails)
{
    char *r = expect_bug_report("biasonemap", 60, "conv2d_forward", "outside the tolerance", "->");
    /* one output map: nothing to confuse */
    ck_assert_msg(has_line(r, "conv2d_forward", "1->1 7x7 k1", "PASS", NULL), "%s", r);
    free(r);
}
END_TEST

START_TEST(crashing_device_info_fails)
{
    expect_bug("deviceinfocrash", 60, "device_info", "CRASH", "device 0");
}
END_TEST

START_TEST(crashing_entry_fails)
{
    /* the entry runs in a child: the checker survives and says so */
    expect_bug("entrycrash", 60, "load", "CRASH", "");
}
END_TEST

START_TEST(writing_into_an_input_fails)
{
    /* identity leaves x as it was: only relu and opttanh show it */
    expect_bug("writesinput", 60, "activation_forward", "wrote into its input x", "relu");
}
END_TEST

START_TEST(crashing_init_is_named)
{
    /* the entry ran and passed: the crash is init's */
    char *r = expect_bug_report("initcrash", 60, "init", "CRASH: crashed (", "");
    ck_assert_msg(has_line(r, "load", "entry, table", "PASS", NULL), "%s", r);
    free(r);
}
END_TEST

START_TEST(hanging_init_is_named)
{
    expect_bug("inithang", 1, "init", "CRASH: timed out after 1 s", "");
}
END_TEST

START_TEST(failing_init_is_named)
{
    expect_bug("initfail", 60, "init", "FAIL: returned device error: no buggy runtime found (looked in /opt/buggy)",
               "");
    expect_bug("initfailsilent", 60, "init", "FAIL: returned device error: no detail", "");
}
END_TEST

START_TEST(crashing_shutdown_is_named)
{
    char *r = expect_bug_report("shutdowncrash", 60, "shutdown", "CRASH: crashed (", "");
    /* only shutdown: the ops are checked without it */
    ck_assert_msg(has_line(r, "conv2d_forward", "PASS", NULL) && has_line(r, "end-to-end", "PASS", NULL), "%s", r);
    ck_assert_msg(strstr(r, " 1 failed: shutdown ") != NULL, "%s", last_line(r));
    free(r);
}
END_TEST

START_TEST(wrong_fill_is_named)
{
    /* the byte offset 12 taken for floats: floats 3..11 left, 9 written past the range */
    char *r = expect_bug_report("fillwrong", 60, "buffer_fill", "changed 9 floats outside the 998 floats at float 3",
               "1001 floats at +3");
    ck_assert_msg(has_line(r, "buffer_fill", "1 float ", "PASS", NULL), "offset 0 is right:\n%s", r);
    ck_assert_msg(has_line(r, "buffer_copy", "1001 floats", "PASS", NULL), "%s", r);
    free(r);
}
END_TEST

START_TEST(async_read_without_synchronize_is_named)
{
    char *r = expect_bug_report("asyncnosync", 60, "buffer_read_async", "on the host after synchronize: 998 of 998 floats wrong",
               "1001 floats at +3, synchronize");
    ck_assert_msg(has_line(r, "buffer_write_async", "1001 floats", "PASS", NULL), "%s", r);
    ck_assert_msg(has_line(r, "buffer_read_async", "never written", NULL), "%s", r);
    free(r);
}
END_TEST

START_TEST(hanging_op_times_out)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    expect_bug("hang", 1, "pool_forward", "timed out after 1 s", "mean");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* one timeout per op, not one per case */
    ck_assert_msg(t1.tv_sec - t0.tv_sec < 30, "took %ld s", (long)(t1.tv_sec - t0.tv_sec));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plugin_check");
    TCase *tc = tcase_create("checker");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, cpu_plugin_passes);
    tcase_add_test(tc, partial_plugin_passes);
    tcase_add_test(tc, wrong_results_fail);
    tcase_add_test(tc, crash_is_reported);
    tcase_add_test(tc, no_entry_fails_with_loader_message);
    tcase_add_test(tc, bad_abi_fails_with_loader_message);
    tcase_add_test(tc, missing_file_fails);
    tcase_add_test(tc, missing_device_fails_once);
    tcase_add_test(tc, buggy_ok_passes);
    tcase_add_test(tc, accumulate_that_overwrites_fails);
    tcase_add_test(tc, ignored_accumulate_flag_fails);
    tcase_add_test(tc, float_sums_in_the_exact_op_fail);
    tcase_add_test(tc, thread_unsafe_plugin_fails);
    tcase_add_test(tc, mean_pooling_wrong_on_odd_sizes_fails);
    tcase_add_test(tc, write_past_the_end_is_named);
    tcase_add_test(tc, unwritten_output_is_named);
    tcase_add_test(tc, forgotten_last_rows_fail);
    tcase_add_test(tc, one_maps_bias_fails);
    tcase_add_test(tc, crashing_device_info_fails);
    tcase_add_test(tc, crashing_entry_fails);
    tcase_add_test(tc, writing_into_an_input_fails);
    tcase_add_test(tc, hanging_op_times_out);
    tcase_add_test(tc, templates_pass);
    tcase_add_test(tc, unsupported_answer_is_listed_not_failed);
    tcase_add_test(tc, crashing_init_is_named);
    tcase_add_test(tc, hanging_init_is_named);
    tcase_add_test(tc, failing_init_is_named);
    tcase_add_test(tc, crashing_shutdown_is_named);
    tcase_add_test(tc, wrong_fill_is_named);
    tcase_add_test(tc, async_read_without_synchronize_is_named);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
