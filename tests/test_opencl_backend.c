/* OpenCL-specific behaviour of the opencl plugin (the ops themselves: test_backend_ops.c):
 * device listing, the on-disk program cache, oversized allocations, bad devices. Skips when
 * the plugin was not built or no OpenCL device exists. */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cnnelm/plugin.h"

static cnnelm_plugin *plug;
static const cnnelm_backend *be;

/* Log messages of one context, concatenated. */
typedef struct log_sink {
    char text[8192];
} log_sink;

static void collect(void *user, cnnelm_log_level level, const char *message)
{
    log_sink *s = user;
    (void)level;
    size_t used = strlen(s->text);
    snprintf(s->text + used, sizeof s->text - used, "%s\n", message);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static cnnelm_backend_ctx *open_with(const char *cache_dir, log_sink *sink, double *seconds)
{
    cnnelm_context_params p = { .struct_size = sizeof p, .cache_dir = cache_dir,
                                .log = sink ? collect : NULL, .log_user = sink };
    cnnelm_backend_ctx *c = NULL;
    char why[2048] = "";
    double t0 = now();
    cnnelm_status st = be->context_open(0, &p, &c, why, sizeof why);
    if (seconds)
        *seconds = now() - t0;
    ck_assert_msg(st == CNNELM_OK && c, "context_open: %s: %s", cnnelm_status_name(st), why);
    return c;
}

/* Names in dir: how many end in .bin, how many are anything else (temporary files). */
static void count_files(const char *dir, int *bins, int *others)
{
    *bins = *others = 0;
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".bin") == 0)
            (*bins)++;
        else
            (*others)++;
    }
    closedir(d);
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    char path[4096];
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* A tiny op through the context: relu of four values, read back. */
static void check_usable(cnnelm_backend_ctx *c)
{
    const float in[4] = { -1.0f, 2.0f, -3.0f, 4.0f };
    float out[4] = { 0 };
    cnnelm_buffer *b = NULL;
    ck_assert_int_eq(be->buffer_alloc(c, sizeof in, &b), CNNELM_OK);
    ck_assert_int_eq(be->buffer_write(c, b, 0, in, sizeof in), CNNELM_OK);
    ck_assert_int_eq(be->activation_forward(c, CNNELM_ACT_RELU, 4, b, b), CNNELM_OK);
    ck_assert_int_eq(be->buffer_read(c, b, 0, out, sizeof out), CNNELM_OK);
    ck_assert(out[0] == 0.0f && out[1] == 2.0f && out[2] == 0.0f && out[3] == 4.0f);
    be->buffer_free(c, b);
}

static void setup(void)
{
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_plugin_load("opencl", NULL, &plug, &err) == 0, "%s", err.msg);
    be = plug->ops;
}

static void teardown(void)
{
    if (plug)
        cnnelm_plugin_unload(plug);
    plug = NULL;
}

START_TEST(device_listing)
{
    int n = -1;
    ck_assert_int_eq(be->device_count(&n), CNNELM_OK);
    ck_assert_int_ge(n, 1);
    for (int i = 0; i < n; i++) {
        cnnelm_device_info info;
        memset(&info, 0x55, sizeof info);
        ck_assert_int_eq(be->device_info(i, &info), CNNELM_OK);
        ck_assert(info.name[0] && memchr(info.name, 0, sizeof info.name));
        ck_assert(info.vendor[0] && memchr(info.vendor, 0, sizeof info.vendor));
        ck_assert(info.driver[0] && memchr(info.driver, 0, sizeof info.driver));
        ck_assert_int_le(info.kind, CNNELM_DEVICE_OTHER);
        ck_assert_uint_gt(info.memory_bytes, 0);
        ck_assert_uint_gt(info.max_alloc_bytes, 0);
        ck_assert_uint_le(info.max_alloc_bytes, info.memory_bytes);
        ck_assert_uint_gt(info.compute_units, 0);
        printf("device %d: %s | %s | %s | %llu MiB, max alloc %llu MiB, %u units\n", i, info.name,
               info.vendor, info.driver, (unsigned long long)(info.memory_bytes >> 20),
               (unsigned long long)(info.max_alloc_bytes >> 20), info.compute_units);
    }
    cnnelm_device_info info;
    ck_assert_int_eq(be->device_info(n, &info), CNNELM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(be->device_info(-1, &info), CNNELM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(be->device_count(NULL), CNNELM_ERR_INVALID_ARGUMENT);
}
END_TEST

START_TEST(bad_device)
{
    int n = 0;
    ck_assert_int_eq(be->device_count(&n), CNNELM_OK);
    cnnelm_context_params p = { .struct_size = sizeof p };
    cnnelm_backend_ctx *c = (cnnelm_backend_ctx *)&p;
    char why[256] = "";
    ck_assert_int_ne(be->context_open(n, &p, &c, why, sizeof why), CNNELM_OK);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(why, "device") != NULL, "message: %s", why);
}
END_TEST

START_TEST(program_cache)
{
    char dir[] = "/tmp/cnnelm-cl-cache-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    log_sink first = { "" }, second = { "" }, third = { "" };
    double t_first, t_second, t_third;

    /* empty directory: compiled, then written (one .bin, no temporary left behind) */
    cnnelm_backend_ctx *c = open_with(dir, &first, &t_first);
    check_usable(c);
    be->context_close(c);
    ck_assert_msg(strstr(first.text, "cache miss") != NULL, "log: %s", first.text);
    int bins, others;
    count_files(dir, &bins, &others);
    ck_assert_int_eq(bins, 1);
    ck_assert_int_eq(others, 0);

    /* same directory: loaded, not rebuilt */
    c = open_with(dir, &second, &t_second);
    check_usable(c);
    be->context_close(c);
    ck_assert_msg(strstr(second.text, "cache hit") != NULL, "log: %s", second.text);
    ck_assert_msg(strstr(second.text, "cache miss") == NULL, "log: %s", second.text);
    printf("context_open: %.3f s with an empty cache, %.3f s with the program cached\n", t_first,
           t_second);

    /* a corrupted cache file: rebuilt from source (and rewritten), never a failure */
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    char path[4096] = "";
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strstr(e->d_name, ".bin"))
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    closedir(d);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs("not a program binary", f);
    fclose(f);
    c = open_with(dir, &third, &t_third);
    check_usable(c);
    be->context_close(c);
    ck_assert_msg(strstr(third.text, "cache miss") != NULL, "log: %s", third.text);
    count_files(dir, &bins, &others);
    ck_assert_int_eq(bins, 1);
    ck_assert_int_eq(others, 0);
    remove_dir(dir);
}
END_TEST

START_TEST(unwritable_cache_dir)
{
    /* a cache directory that cannot exist: the context still opens, it just compiles */
    cnnelm_backend_ctx *c = open_with("/proc/self/no-such-dir/cnnelm", NULL, NULL);
    check_usable(c);
    be->context_close(c);
}
END_TEST

START_TEST(oversized_allocation)
{
    cnnelm_device_info info;
    ck_assert_int_eq(be->device_info(0, &info), CNNELM_OK);
    cnnelm_backend_ctx *c = open_with(NULL, NULL, NULL);
    cnnelm_buffer *b = (cnnelm_buffer *)&info;
    size_t huge = (size_t)info.max_alloc_bytes + 4096;
    ck_assert_int_eq(be->buffer_alloc(c, huge, &b), CNNELM_ERR_OUT_OF_MEMORY);
    ck_assert_ptr_null(b);
    const char *msg = be->last_error(c);
    char size[32];
    snprintf(size, sizeof size, "%zu", huge);
    ck_assert_msg(strstr(msg, size) && strstr(msg, info.name), "message: %s", msg);
    ck_assert_int_eq(be->buffer_alloc(c, SIZE_MAX, &b), CNNELM_ERR_OUT_OF_MEMORY);
    check_usable(c); /* the context survives */
    be->context_close(c);
}
END_TEST

int main(void)
{
    cnnelm_plugin *p = NULL;
    cnnelm_error err = { "" };
    if (cnnelm_plugin_load("opencl", NULL, &p, &err) != 0) {
        printf("SKIP: the opencl plugin is not available: %s\n", err.msg);
        return 0;
    }
    int n = 0;
    cnnelm_status st = p->ops->device_count(&n);
    cnnelm_plugin_unload(p);
    if (st != CNNELM_OK || n == 0) {
        printf("SKIP: no OpenCL device\n");
        return 0;
    }
    Suite *s = suite_create("opencl_backend");
    TCase *tc = tcase_create("opencl");
    tcase_set_timeout(tc, 600);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, device_listing);
    tcase_add_test(tc, bad_device);
    tcase_add_test(tc, program_cache);
    tcase_add_test(tc, unwritable_cache_dir);
    tcase_add_test(tc, oversized_allocation);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    /* OpenCL runtimes (PoCL among them) keep threads that do not survive fork() */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
