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
    cnnelm_plugin_dirs dirs;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_plugin_dirs_get(CNNELM_STUB_DIR ":" CNNELM_STUB_DIR, &dirs, &err) == 0, "%s", err.msg);
    int n = cnnelm_plugin_scan(&dirs, count_cb, NULL);
    cnnelm_plugin_dirs_free(&dirs);
    ck_assert_int_eq(n, counted);
    ck_assert_int_ge(n, 6 + 1); /* six stubs and at least the CPU backend */
}
END_TEST

/* ---- loading rules: nothing planted, relative or writable by others is loaded ---- */

#include <limits.h>
#include <sys/stat.h>

#include "cnnelm/config.h"

static void copy_file(const char *from, const char *to, mode_t mode)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    ck_assert_msg(in && out, "cannot copy %s to %s", from, to);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
    ck_assert_int_eq(chmod(to, mode), 0);
}

/* a private temporary directory (mode 0755 unless told) */
static void temp_dir(char *dir, size_t cap, mode_t mode)
{
    snprintf(dir, cap, "/tmp/cnnelm-plugin-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(chmod(dir, mode), 0);
}

static void remove_tree(const char *dir)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void expect_refused(const char *file, const char *needle)
{
    cnnelm_plugin *p = (cnnelm_plugin *)1;
    cnnelm_error err = { "" };
    ck_assert_int_ne(cnnelm_plugin_load_file(file, &p, &err), 0);
    ck_assert_ptr_null(p);
    ck_assert_msg(strstr(err.msg, "refusing to load plugin") && strstr(err.msg, needle),
                  "expected a refusal with '%s': %s", needle, err.msg);
    ck_assert_msg(strstr(err.msg, "--allow-insecure-plugins"), "no hint at the override: %s", err.msg);
}

START_TEST(world_writable_file_refused)
{
    char dir[64], file[128];
    temp_dir(dir, sizeof dir, 0755);
    snprintf(file, sizeof file, "%s/libcnnelm-stubgood.so", dir);
    copy_file(STUB("stubgood"), file, 0666);
    expect_refused(file, "writable by others");
    /* found on the search path: refused too, not skipped for a copy further on */
    cnnelm_plugin *p = NULL;
    cnnelm_error err = { "" };
    char path[256];
    snprintf(path, sizeof path, "%s:%s", dir, CNNELM_STUB_DIR);
    ck_assert_int_ne(cnnelm_plugin_load("stubgood", path, &p, &err), 0);
    ck_assert_msg(strstr(err.msg, "writable by others"), "%s", err.msg);
    remove_tree(dir);
}
END_TEST

START_TEST(group_writable_directory_refused)
{
    char dir[64], file[128];
    temp_dir(dir, sizeof dir, 0775);
    snprintf(file, sizeof file, "%s/libcnnelm-stubgood.so", dir);
    copy_file(STUB("stubgood"), file, 0755);
    expect_refused(file, "its directory");
    expect_refused(file, "writable by its group");
    ck_assert_int_eq(chmod(dir, 0777), 0);
    expect_refused(file, "writable by others");
    remove_tree(dir);
}
END_TEST

START_TEST(foreign_owner_refused)
{
    if (geteuid() != 0) {
        /* only root can give a file away; as a user, every file made here is the user's */
        fprintf(stderr, "foreign_owner_refused: not root, owner rule not exercised\n");
        return;
    }
    char dir[64], file[128];
    temp_dir(dir, sizeof dir, 0755);
    snprintf(file, sizeof file, "%s/libcnnelm-stubgood.so", dir);
    copy_file(STUB("stubgood"), file, 0755);
    ck_assert_int_eq(chown(file, 65534, 65534), 0);
    expect_refused(file, "owned by uid 65534");
    ck_assert_int_eq(chown(file, 0, 0), 0);
    ck_assert_int_eq(chown(dir, 65534, 65534), 0);
    expect_refused(file, "owned by uid 65534");
    remove_tree(dir);
}
END_TEST

START_TEST(allow_insecure_loads_with_warning)
{
    char dir[64], file[128];
    temp_dir(dir, sizeof dir, 0777);
    snprintf(file, sizeof file, "%s/libcnnelm-stubgood.so", dir);
    copy_file(STUB("stubgood"), file, 0666);
    cnnelm_plugin_allow_insecure(1);
    cnnelm_plugin *p = NULL;
    cnnelm_error err = { "" };
    int rc = cnnelm_plugin_load_file(file, &p, &err);
    cnnelm_plugin_allow_insecure(0);
    ck_assert_msg(rc == 0, "%s", err.msg);
    ck_assert_str_eq(p->name, "stubgood");
    cnnelm_plugin_unload(p);
    expect_refused(file, "writable by others"); /* the override is off again */
    remove_tree(dir);
}
END_TEST

START_TEST(symlink_is_resolved)
{
    char dir[64], link[128], real[PATH_MAX];
    temp_dir(dir, sizeof dir, 0755);
    snprintf(link, sizeof link, "%s/libcnnelm-linked.so", dir);
    ck_assert_int_eq(symlink(STUB("stubgood"), link), 0);
    ck_assert_ptr_nonnull(realpath(STUB("stubgood"), real));
    cnnelm_plugin *p = NULL;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_plugin_load("linked", dir, &p, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(p->path, real); /* what `devices -v` and the report show */
    cnnelm_plugin_unload(p);
    remove_tree(dir);
}
END_TEST

START_TEST(symlink_to_planted_target_refused)
{
    char safe[64], open_dir[64], link[128], target[128];
    temp_dir(safe, sizeof safe, 0755);
    temp_dir(open_dir, sizeof open_dir, 0777);
    snprintf(target, sizeof target, "%s/other.so", open_dir);
    copy_file(STUB("stubgood"), target, 0755);
    snprintf(link, sizeof link, "%s/libcnnelm-linked.so", safe);
    ck_assert_int_eq(symlink(target, link), 0);
    expect_refused(link, open_dir); /* the message names the real directory */
    remove_tree(safe);
    remove_tree(open_dir);
}
END_TEST

START_TEST(symlink_in_open_directory_refused)
{
    /* the target is safe, but anyone can replace the link */
    char open_dir[64], link[128];
    temp_dir(open_dir, sizeof open_dir, 0777);
    snprintf(link, sizeof link, "%s/libcnnelm-linked.so", open_dir);
    ck_assert_int_eq(symlink(STUB("stubgood"), link), 0);
    expect_refused(link, "the directory of its link");
    remove_tree(open_dir);
}
END_TEST

START_TEST(relative_env_entry_refused)
{
    cnnelm_plugin *p = NULL;
    cnnelm_error err = { "" };
    ck_assert_int_eq(chdir(CNNELM_BINARY_DIR "/tests"), 0);
    setenv("CNNELM_PLUGIN_PATH", "/nonexistent:stubs", 1);
    ck_assert_int_ne(cnnelm_plugin_load("stubgood", NULL, &p, &err), 0);
    ck_assert_ptr_null(p);
    ck_assert_msg(strstr(err.msg, "CNNELM_PLUGIN_PATH entry 'stubs' is a relative path") &&
                  strstr(err.msg, "'./stubs'"), "%s", err.msg);
    /* written ./ on purpose, it is searched from the working directory */
    setenv("CNNELM_PLUGIN_PATH", "./stubs", 1);
    ck_assert_msg(cnnelm_plugin_load("stubgood", NULL, &p, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(p->path, STUB("stubgood"));
    cnnelm_plugin_unload(p);
    unsetenv("CNNELM_PLUGIN_PATH");
}
END_TEST

START_TEST(config_plugin_path_is_relative_to_the_config_file)
{
    char dir[64], conf[128], sub[128], file[192], cfgfile[160];
    temp_dir(dir, sizeof dir, 0755);
    snprintf(conf, sizeof conf, "%s/conf", dir);
    snprintf(sub, sizeof sub, "%s/conf/plugins", dir);
    ck_assert_int_eq(mkdir(conf, 0755), 0);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    snprintf(file, sizeof file, "%s/libcnnelm-stubgood.so", sub);
    copy_file(STUB("stubgood"), file, 0755);
    snprintf(cfgfile, sizeof cfgfile, "%s/run.cfg", conf);
    FILE *f = fopen(cfgfile, "w");
    ck_assert_ptr_nonnull(f);
    fputs("plugin_path = \"plugins:/opt/abs\";\n", f);
    fclose(f);
    /* run from elsewhere, naming the config relatively: still the config's directory */
    ck_assert_int_eq(chdir(dir), 0);
    static cnnelm_config cfg;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_config_load(&cfg, "conf/run.cfg", NULL, 0, &err) == 0, "%s", err.msg);
    char want[256];
    snprintf(want, sizeof want, "%s/conf/plugins:/opt/abs", dir);
    ck_assert_str_eq(cfg.plugin_path, want);
    ck_assert_int_eq(chdir("/"), 0);
    cnnelm_plugin *p = NULL;
    ck_assert_msg(cnnelm_plugin_load("stubgood", cfg.plugin_path, &p, &err) == 0, "%s", err.msg);
    char real[PATH_MAX];
    ck_assert_ptr_nonnull(realpath(file, real));
    ck_assert_str_eq(p->path, real);
    cnnelm_plugin_unload(p);
    cnnelm_config_free(&cfg);
    remove_tree(dir);
}
END_TEST

START_TEST(no_built_in_absolute_directories)
{
    /* only the install-relative directory: no build tree baked in, no /usr/local */
    unsetenv("CNNELM_PLUGIN_PATH");
    cnnelm_plugin_dirs d;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_plugin_dirs_get(NULL, &d, &err) == 0, "%s", err.msg);
    char want[PATH_MAX];
    ck_assert_ptr_nonnull(realpath(CNNELM_BINARY_DIR "/lib/cnnelm", want));
    ck_assert_int_eq(d.n, 1);
    ck_assert_str_eq(d.dir[0], want); /* this test runs from build/bin: ../lib/cnnelm */
    cnnelm_plugin_dirs_free(&d);
}
END_TEST

START_TEST(search_paths_are_owned_by_the_caller)
{
    /* two lists alive at once stay what they were (no shared table refilled under a caller) */
    unsetenv("CNNELM_PLUGIN_PATH");
    cnnelm_plugin_dirs a, b;
    cnnelm_error err = { "" };
    ck_assert_int_eq(cnnelm_plugin_dirs_get("/nonexistent-a", &a, &err), 0);
    ck_assert_int_eq(cnnelm_plugin_dirs_get("/nonexistent-b:/nonexistent-c", &b, &err), 0);
    ck_assert_str_eq(a.dir[0], "/nonexistent-a");
    ck_assert_str_eq(b.dir[0], "/nonexistent-b");
    ck_assert_str_eq(b.dir[1], "/nonexistent-c");
    ck_assert_int_eq(a.n + 1, b.n);
    cnnelm_plugin_dirs_free(&a);
    cnnelm_plugin_dirs_free(&b);
}
END_TEST

static void collect_cb(const char *path, void *user)
{
    char *all = user;
    strncat(all, path, 4000 - strlen(all));
    strncat(all, "\n", 4000 - strlen(all));
}

START_TEST(scan_only_lists_the_naming_rule)
{
    char dir[64], file[128];
    temp_dir(dir, sizeof dir, 0755);
    const char *names[] = { "libcnnelm-ok.so", "libcnnelm-a.b.so", "libcnnelm-.so", "libcnnelm-x y.so",
                            "libcnnelm-ok.so.1" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(file, sizeof file, "%s/%s", dir, names[i]);
        copy_file(STUB("stubgood"), file, 0755);
    }
    cnnelm_plugin_dirs d;
    cnnelm_error err = { "" };
    ck_assert_int_eq(cnnelm_plugin_dirs_get(dir, &d, &err), 0);
    char all[4096] = "";
    cnnelm_plugin_scan(&d, collect_cb, all);
    cnnelm_plugin_dirs_free(&d);
    snprintf(file, sizeof file, "%s/libcnnelm-ok.so\n", dir);
    ck_assert_msg(strstr(all, file), "%s", all);
    ck_assert_msg(!strstr(all, "a.b") && !strstr(all, "libcnnelm-.so") && !strstr(all, "x y") &&
                  !strstr(all, ".so.1"), "files outside the naming rule listed:\n%s", all);
    remove_tree(dir);
}
END_TEST

static void add_loading_rule_tests(Suite *s)
{
    TCase *tc = tcase_create("loading rules");
    tcase_add_test(tc, world_writable_file_refused);
    tcase_add_test(tc, group_writable_directory_refused);
    tcase_add_test(tc, foreign_owner_refused);
    tcase_add_test(tc, allow_insecure_loads_with_warning);
    tcase_add_test(tc, symlink_is_resolved);
    tcase_add_test(tc, symlink_to_planted_target_refused);
    tcase_add_test(tc, symlink_in_open_directory_refused);
    tcase_add_test(tc, relative_env_entry_refused);
    tcase_add_test(tc, config_plugin_path_is_relative_to_the_config_file);
    tcase_add_test(tc, no_built_in_absolute_directories);
    tcase_add_test(tc, search_paths_are_owned_by_the_caller);
    tcase_add_test(tc, scan_only_lists_the_naming_rule);
    suite_add_tcase(s, tc);
}

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
    add_loading_rule_tests(s);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
