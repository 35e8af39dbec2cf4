/* Tests of architecture parsing and shape checks, seeded initialisation, and the model file:
 * round trip, and every damaged file (truncated, corrupted, wrong magic or version, trailing
 * bytes) a clear error. */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnnelm/model.h"

static cnnelm_arch paper_arch(void)
{
    cnnelm_arch a;
    cnnelm_error err;
    ck_assert_msg(cnnelm_arch_init(&a, "6c-2s-12c-2s", 5, 1, 28, 28, 10, CNNELM_ACT_RELU,
                                   CNNELM_POOL_MEAN, CNNELM_ACT_IDENTITY, &err) == 0, "%s", err.msg);
    return a;
}

START_TEST(paper_shapes)
{
    cnnelm_arch a = paper_arch();
    ck_assert_int_eq(a.n_layers, 4);
    ck_assert_int_eq(a.layer[0].out_c, 6);
    ck_assert_int_eq(a.layer[0].out_h, 24);
    ck_assert_int_eq(a.layer[1].out_h, 12);
    ck_assert_int_eq(a.layer[2].out_c, 12);
    ck_assert_int_eq(a.layer[2].out_h, 8);
    ck_assert_int_eq(a.layer[3].out_h, 4);
    ck_assert_int_eq(a.hidden, 192);
    ck_assert_uint_eq(a.n_params, 6 * 25 + 6 + 12 * 6 * 25 + 12);
    ck_assert_str_eq(a.layers, "6c-2s-12c-2s");
}
END_TEST

static void expect_arch_error(const char *layers, int kernel, const char *needle)
{
    cnnelm_arch a;
    cnnelm_error err = { "" };
    ck_assert_int_ne(cnnelm_arch_init(&a, layers, kernel, 1, 28, 28, 10, CNNELM_ACT_RELU,
                                      CNNELM_POOL_MEAN, CNNELM_ACT_IDENTITY, &err), 0);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "'%s' k=%d: expected '%s' in: %s", layers, kernel,
                  needle, err.msg);
}

START_TEST(bad_architectures)
{
    expect_arch_error("6c-5s", 5, "layer 2 (5s): pooling size 5 does not divide its 24x24 input");
    expect_arch_error("6c-2s-12c-2s", 13, "layer 3 (12c): kernel 13x13 does not fit its 8x8 input");
    expect_arch_error("6x-2s", 5, "layer 1");
    expect_arch_error("", 5, "empty architecture");
    expect_arch_error("6c-", 5, "ends with '-'");
    expect_arch_error("2s-2s", 5, "no convolution layer");
    expect_arch_error("6c--2s", 5, "expected a number");
    expect_arch_error("6c-2s", 0, "kernel size 0");
    expect_arch_error("6c-2s-12c-2s", 29, "layer 1 (6c): kernel 29x29 does not fit its 28x28 input");
}
END_TEST

START_TEST(init_is_seeded_and_bounded)
{
    cnnelm_arch a = paper_arch();
    cnnelm_model m1, m2, m3;
    cnnelm_error err;
    ck_assert_int_eq(cnnelm_model_init(&m1, &a, 1.0, 42, 0, &err), 0);
    ck_assert_int_eq(cnnelm_model_init(&m2, &a, 1.0, 42, 0, &err), 0);
    ck_assert_int_eq(cnnelm_model_init(&m3, &a, 1.0, 43, 0, &err), 0);
    ck_assert_int_eq(memcmp(m1.params, m2.params, a.n_params * sizeof(float)), 0);
    ck_assert_int_ne(memcmp(m1.params, m3.params, a.n_params * sizeof(float)), 0);
    /* layer 1 kernels within +-sqrt(6/((1+6)*25)), biases zero, not all equal */
    double bound = sqrt(6.0 / (7 * 25.0));
    for (int i = 0; i < 150; i++)
        ck_assert(fabs(m1.params[i]) <= bound);
    ck_assert(m1.params[0] != m1.params[1]);
    for (int i = 150; i < 156; i++)
        ck_assert(m1.params[i] == 0.0f);
    cnnelm_model_free(&m1);
    cnnelm_model_free(&m2);
    cnnelm_model_free(&m3);
    /* zero-mean kernels: each output map's kernel (in x k x k weights) sums to zero */
    ck_assert_int_eq(cnnelm_model_init(&m1, &a, 1.0, 42, 1, &err), 0);
    for (int l = 0; l < a.n_layers; l++) {
        const cnnelm_layer *ly = &a.layer[l];
        if (ly->kind != CNNELM_LAYER_CONV)
            continue;
        size_t per = (size_t)ly->in_c * 25;
        for (int o = 0; o < ly->out_c; o++) {
            double sum = 0, sq = 0;
            for (size_t j = 0; j < per; j++) {
                sum += m1.params[ly->w_offset + o * per + j];
                sq += fabs(m1.params[ly->w_offset + o * per + j]);
            }
            ck_assert_msg(fabs(sum) < 1e-5 && sq > 0.1, "layer %d map %d sums to %g", l, o, sum);
        }
    }
    cnnelm_model_free(&m1);
}
END_TEST

static char dir[64];
static char path[128];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/cnnelm-model-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m.model", dir);
}

static void remove_dir(void)
{
    unlink(path);
    rmdir(dir);
}

static void fill_random(cnnelm_model *m)
{
    size_t L = (size_t)m->arch.hidden, C = (size_t)m->arch.classes;
    unsigned s = 7;
    for (size_t i = 0; i < L * C; i++)
        m->beta[i] = (float)((s = s * 1103515245u + 12345u) % 1000) / 999.0f - 0.5f;
    for (size_t i = 0; i < L * L; i++)
        m->U[i] = (double)((s = s * 1103515245u + 12345u) % 100000) / 7.0;
    for (size_t i = 0; i < L * C; i++)
        m->V[i] = (double)((s = s * 1103515245u + 12345u) % 100000) / 3.0;
    m->n_examples = 60000;
    m->iterations = 3;
    m->flags = CNNELM_MODEL_DIVERGED;
}

START_TEST(round_trip)
{
    make_dir();
    cnnelm_arch a = paper_arch();
    cnnelm_model m, r;
    cnnelm_error err = { "" };
    ck_assert_int_eq(cnnelm_model_init(&m, &a, 0.25, 9, 0, &err), 0);
    fill_random(&m);
    ck_assert_msg(cnnelm_model_save(&m, path, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_model_load(&r, path, &err) == 0, "%s", err.msg);
    ck_assert(cnnelm_arch_equal(&m.arch, &r.arch));
    ck_assert_double_eq(r.lambda, 0.25);
    ck_assert_uint_eq(r.seed, 9);
    ck_assert_uint_eq(r.n_examples, 60000);
    ck_assert_uint_eq(r.iterations, 3);
    ck_assert_uint_eq(r.flags, CNNELM_MODEL_DIVERGED);
    size_t L = 192, C = 10;
    ck_assert_int_eq(memcmp(m.params, r.params, a.n_params * 4), 0);
    ck_assert_int_eq(memcmp(m.beta, r.beta, L * C * 4), 0);
    ck_assert_int_eq(memcmp(m.U, r.U, L * L * 8), 0);
    ck_assert_int_eq(memcmp(m.V, r.V, L * C * 8), 0);
    cnnelm_model_free(&m);
    cnnelm_model_free(&r);
    remove_dir();
}
END_TEST

static long file_size(const char *p)
{
    FILE *f = fopen(p, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static void patch_byte(const char *p, long off, unsigned char v)
{
    FILE *f = fopen(p, "r+b");
    fseek(f, off, SEEK_SET);
    fputc(v, f);
    fclose(f);
}

static void expect_load_error(const char *needle)
{
    cnnelm_model r;
    cnnelm_error err = { "" };
    ck_assert_int_ne(cnnelm_model_load(&r, path, &err), 0);
    ck_assert_msg(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "expected '%s' in: %s", needle, err.msg);
}

START_TEST(damaged_files)
{
    make_dir();
    cnnelm_arch a = paper_arch();
    cnnelm_model m;
    cnnelm_error err = { "" };
    ck_assert_int_eq(cnnelm_model_init(&m, &a, 1.0, 1, 0, &err), 0);
    fill_random(&m);
    ck_assert_int_eq(cnnelm_model_save(&m, path, &err), 0);
    long size = file_size(path);

    ck_assert_int_eq(truncate(path, size - 100), 0);
    expect_load_error("truncated");
    ck_assert_int_eq(truncate(path, 50), 0);
    expect_load_error("truncated");

    ck_assert_int_eq(cnnelm_model_save(&m, path, &err), 0);
    patch_byte(path, size / 2, 0x5a); /* a flipped byte in the payload */
    expect_load_error("checksum mismatch");

    ck_assert_int_eq(cnnelm_model_save(&m, path, &err), 0);
    patch_byte(path, 0, 'X');
    expect_load_error("not a cnnelm model file");

    ck_assert_int_eq(cnnelm_model_save(&m, path, &err), 0);
    patch_byte(path, 8, 7);
    expect_load_error("version 7 is not supported");

    ck_assert_int_eq(cnnelm_model_save(&m, path, &err), 0);
    FILE *f = fopen(path, "ab");
    fputs("junk", f);
    fclose(f);
    expect_load_error("unexpected bytes");

    unlink(path);
    expect_load_error("cannot open model");
    cnnelm_model_free(&m);
    remove_dir();
}
END_TEST

START_TEST(failed_save_keeps_old_file)
{
    make_dir();
    cnnelm_arch a = paper_arch();
    cnnelm_model m;
    cnnelm_error err = { "" };
    ck_assert_int_eq(cnnelm_model_init(&m, &a, 1.0, 1, 0, &err), 0);
    ck_assert_int_eq(cnnelm_model_save(&m, path, &err), 0);
    long before = file_size(path);
    ck_assert_int_ne(cnnelm_model_save(&m, "/nonexistent-dir/x.model", &err), 0);
    ck_assert_msg(strstr(err.msg, "/nonexistent-dir/x.model") != NULL, "%s", err.msg);
    ck_assert_int_eq(file_size(path), before);
    /* no temporary files left behind */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "test $(ls %s | wc -l) -eq 1", dir);
    ck_assert_int_eq(system(cmd), 0);
    cnnelm_model_free(&m);
    remove_dir();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_add_test(tc, paper_shapes);
    tcase_add_test(tc, bad_architectures);
    tcase_add_test(tc, init_is_seeded_and_bounded);
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, damaged_files);
    tcase_add_test(tc, failed_save_keeps_old_file);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
