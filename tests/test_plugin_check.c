/* Tests of the plugin conformance checker (cnnelm_plugin_check): the CPU plugin and a partial
 * plugin pass; wrong results, a crashing op and plugins that do not load are failures with a
 * clear report, and the checker itself always returns. */
#define _GNU_SOURCE
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnelm/plugin_check.h"

#define STUB(name) CNNELM_STUB_DIR "/libcnnelm-" name ".so"
#define CPU_PLUGIN CNNELM_BINARY_DIR "/lib/cnnelm/libcnnelm-cpu.so"

/* Runs the checker with its report in a heap buffer; returns its status, *report (free it). */
static int check_report(const char *file, char **report)
{
    size_t size = 0;
    FILE *out = open_memstream(report, &size);
    ck_assert_ptr_nonnull(out);
    cnnelm_error err = { "" };
    int rc = cnnelm_plugin_check(file, 0, 1, out, &err);
    fclose(out);
    ck_assert_msg(rc >= 0, "the checker could not run: %s", err.msg);
    return rc;
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

START_TEST(cpu_plugin_passes)
{
    char *r = NULL;
    int rc = check_report(CPU_PLUGIN, &r);
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
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
