/* Tests of the plugin loader: the CPU backend is found on the search path; every bad plugin
 * (missing, not a shared library, no entry, NULL table, another ABI major, a missing op) is a
 * clear error naming the file, never a crash. */
#define _GNU_SOURCE
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnnelm/plugin.h"

#define STUB(name) CNNELM_STUB_DIR "/libcnnelm-" name ".so"

static void expect_error(const char *file, const char *needle)
{
    cnnelm_plugin *p = (cnnelm_plugin *)1;
    cnnelm_error err = { "" };
    ck_assert_int_ne(cnnelm_plugin_load_file(file, &p, &err), 0);
    ck_assert_ptr_null(p);
    ck_assert_msg(strstr(err.msg, file) != NULL, "message does not name the file: %s", err.msg);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "expected '%s' in: %s", needle, err.msg);
}

START_TEST(finds_cpu_backend)
{
    cnnelm_plugin *p = NULL;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_plugin_load("cpu", NULL, &p, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(p->name, "cpu");
    ck_assert_int_eq(p->ops->abi_major, CNNELM_BACKEND_ABI_MAJOR);
    int n = 0;
    ck_assert_int_eq(p->ops->device_count(&n), CNNELM_OK);
    ck_assert_int_ge(n, 1);
    cnnelm_plugin_unload(p);
}
END_TEST

START_TEST(good_stub_loads_from_extra_path)
{
    cnnelm_plugin *p = NULL;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_plugin_load("stubgood", CNNELM_STUB_DIR, &p, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(p->name, "stubgood");
    ck_assert_str_eq(p->path, STUB("stubgood"));
    cnnelm_plugin_unload(p);
}
END_TEST

START_TEST(env_path_is_searched)
{
    setenv("CNNELM_PLUGIN_PATH", "/nonexistent:" CNNELM_STUB_DIR, 1);
    cnnelm_plugin *p = NULL;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_plugin_load("stubgood", NULL, &p, &err) == 0, "%s", err.msg);
    cnnelm_plugin_unload(p);
    unsetenv("CNNELM_PLUGIN_PATH");
}
END_TEST

START_TEST(missing_backend_lists_search_path)
{
    cnnelm_plugin *p = (cnnelm_plugin *)1;
    cnnelm_error err = { "" };
    ck_assert_int_ne(cnnelm_plugin_load("nosuchbackend", "/tmp/cnnelm-nowhere", &p, &err), 0);
    ck_assert_ptr_null(p);
    ck_assert_msg(strstr(err.msg, "libcnnelm-nosuchbackend.so") && strstr(err.msg, "/tmp/cnnelm-nowhere"),
                  "%s", err.msg);
}
END_TEST

START_TEST(bad_name_refused)
{
    cnnelm_plugin *p = NULL;
    cnnelm_error err = { "" };
    ck_assert_int_ne(cnnelm_plugin_load("../../etc/x", NULL, &p, &err), 0);
    ck_assert_msg(strstr(err.msg, "invalid backend name") != NULL, "%s", err.msg);
}
END_TEST

START_TEST(not_a_shared_library)
{
    char dir[] = "/tmp/cnnelm-plugin-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char file[256];
    snprintf(file, sizeof file, "%s/libcnnelm-garbage.so", dir);
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fputs("this is not an ELF file\n", f);
    fclose(f);
    expect_error(file, "cannot load plugin");
    remove(file);
    rmdir(dir);
}
END_TEST

START_TEST(nonexistent_file) { expect_error("/tmp/cnnelm-no-such-plugin.so", "no such plugin file"); }
END_TEST
START_TEST(no_entry) { expect_error(STUB("stubnoentry"), "no entry point 'cnnelm_backend_entry'"); }
END_TEST
START_TEST(null_table) { expect_error(STUB("stubnulltable"), "returned NULL"); }
END_TEST
START_TEST(wrong_abi) { expect_error(STUB("stubbadabi"), "incompatible plugin ABI version 99."); }
END_TEST
START_TEST(missing_op_is_allowed)
{
    /* ops are optional (they fall back to the CPU reference); the table says so by NULL */
    cnnelm_plugin *p = NULL;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_plugin_load_file(STUB("stubmissingop"), &p, &err) == 0, "%s", err.msg);
    ck_assert_ptr_null(p->ops->conv2d_forward);
    cnnelm_plugin_unload(p);
}
END_TEST
START_TEST(missing_required_slot) { expect_error(STUB("stubnobuffers"), "no 'buffer_read' (a required slot)"); }
END_TEST

static int counted;
static void count_cb(const char *path, void *user)
{
    (void)user;
    ck_assert_ptr_nonnull(strstr(path, "libcnnelm-"));
    counted++;
}

START_TEST(scan_finds_every_plugin_once)
{
    counted = 0;
    /* the stub dir twice: the same names must be reported once */
    int n = cnnelm_plugin_scan(CNNELM_STUB_DIR ":" CNNELM_STUB_DIR, count_cb, NULL);
    ck_assert_int_eq(n, counted);
    ck_assert_int_ge(n, 6 + 1); /* six stubs and at least the CPU backend */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plugin");
    TCase *tc = tcase_create("loader");
    tcase_add_test(tc, finds_cpu_backend);
    tcase_add_test(tc, good_stub_loads_from_extra_path);
    tcase_add_test(tc, env_path_is_searched);
    tcase_add_test(tc, missing_backend_lists_search_path);
    tcase_add_test(tc, bad_name_refused);
    tcase_add_test(tc, not_a_shared_library);
    tcase_add_test(tc, nonexistent_file);
    tcase_add_test(tc, no_entry);
    tcase_add_test(tc, null_table);
    tcase_add_test(tc, wrong_abi);
    tcase_add_test(tc, missing_op_is_allowed);
    tcase_add_test(tc, missing_required_slot);
    tcase_add_test(tc, scan_finds_every_plugin_once);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
