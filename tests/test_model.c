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

/* "256c-(4s,12s)-sqrt": the group's pools read the same 24x24 maps, their outputs side by side */
START_TEST(multi_scale_shapes)
{
    cnnelm_arch a;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_arch_init(&a, "8c-(4s,12s,24s)-sqrt", 5, 1, 28, 28, 10, CNNELM_ACT_RELU,
                                   CNNELM_POOL_MEAN, CNNELM_ACT_IDENTITY, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(a.layers, "8c-(4s,12s,24s)-sqrt");
    ck_assert_int_eq(a.n_layers, 4);
    ck_assert_int_eq(a.n_scales, 3);
    ck_assert_int_eq(a.sqrt_features, 1);
    int sizes[3] = { 4, 12, 24 }, side[3] = { 6, 2, 1 };
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        const cnnelm_layer *ly = &a.layer[1 + i];
        ck_assert_int_eq(ly->kind, CNNELM_LAYER_POOL);
        ck_assert_int_eq(ly->size, sizes[i]);
        ck_assert_int_eq(ly->in_c, 8);
        ck_assert_int_eq(ly->in_h, 24);
        ck_assert_int_eq(ly->out_h, side[i]);
        ck_assert_uint_eq(ly->h_offset, off);
        off += (size_t)8 * side[i] * side[i];
    }
    ck_assert_int_eq(a.hidden, 8 * (36 + 4 + 1));
    ck_assert_uint_eq(a.n_params, 8 * 25 + 8);
    /* a group after pooling, and sqrt alone; plain strings have neither */
    ck_assert_msg(cnnelm_arch_init(&a, "6c-2s-(1s,3s)", 5, 1, 28, 28, 10, CNNELM_ACT_RELU,
                                   CNNELM_POOL_MEAN, CNNELM_ACT_IDENTITY, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(a.hidden, 6 * (144 + 16));
    ck_assert_int_eq(a.sqrt_features, 0);
    ck_assert_msg(cnnelm_arch_init(&a, "6c-4s-sqrt", 5, 1, 28, 28, 10, CNNELM_ACT_RELU,
                                   CNNELM_POOL_MEAN, CNNELM_ACT_IDENTITY, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(a.hidden, 6 * 36);
    ck_assert_int_eq(a.n_scales, 0);
    ck_assert_int_eq(a.sqrt_features, 1);
    ck_assert_str_eq(a.layers, "6c-4s-sqrt");
    cnnelm_arch b = paper_arch();
    ck_assert_int_eq(b.n_scales, 0);
    ck_assert_int_eq(b.sqrt_features, 0);
}
END_TEST

START_TEST(bad_multi_scale)
{
    expect_arch_error("6c-(4s,5s)", 5, "layer 3 (5s): pooling size 5 does not divide its 24x24 input");
    expect_arch_error("6c-(4s,12c)", 5, "holds pooling sizes only");
    expect_arch_error("6c-(4s,4s)", 5, "pooling size 4 appears twice");
    expect_arch_error("6c-(4s)", 5, "at least two pooling sizes");
    expect_arch_error("6c-(4s,12s", 5, "expected ',' or ')'");
    expect_arch_error("6c-(4s,12s)-2s", 5, "must end the string");
    expect_arch_error("6c-(4s,)", 5, "expected a number");
    expect_arch_error("6c(4s,12s)", 5, "expected '-'");
    expect_arch_error("6c-sqrt-2s", 5, "expected a number at \"sqrt-2s\"");
    expect_arch_error("sqrt", 5, "expected a number");
    expect_arch_error("(2s,4s)", 5, "no convolution layer");
}
END_TEST

/* A model with a group and -sqrt saves and loads like any other (its string is its shape). */
START_TEST(multi_scale_round_trip)
{
    make_dir();
    cnnelm_arch a;
    cnnelm_model m, r;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_arch_init(&a, "3c-(4s,12s)-sqrt", 5, 1, 28, 28, 10, CNNELM_ACT_RELU,
                                   CNNELM_POOL_MEAN, CNNELM_ACT_IDENTITY, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(cnnelm_model_init(&m, &a, 0.5, 4, 1, &err), 0);
    ck_assert_msg(cnnelm_model_save(&m, path, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_model_load(&r, path, &err) == 0, "%s", err.msg);
    ck_assert(cnnelm_arch_equal(&m.arch, &r.arch));
    ck_assert_int_eq(r.arch.n_scales, 2);
    ck_assert_int_eq(r.arch.sqrt_features, 1);
    ck_assert_int_eq(r.arch.hidden, 3 * 40);
    ck_assert_int_eq(memcmp(m.params, r.params, a.n_params * 4), 0);
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

static void expect_shape_error(const char *layers, int kernel, int c, int h, int w, const char *needle)
{
    cnnelm_arch a;
    cnnelm_error err = { "" };
    ck_assert_int_ne(cnnelm_arch_init(&a, layers, kernel, c, h, w, 10, CNNELM_ACT_RELU,
                                      CNNELM_POOL_MEAN, CNNELM_ACT_IDENTITY, &err), 0);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "'%s' %dx%dx%d: expected '%s' in: %s", layers, c,
                  h, w, needle, err.msg);
}

/* Sizes that overflowed int (hidden = c*h*w) are refused, in 64-bit arithmetic. */
START_TEST(oversized_architectures)
{
    expect_shape_error("256c", 5, 1, 4096, 4096, "layer 1 (256c): output 256x4092x4092 is too large");
    expect_shape_error("1c", 1, 1, 65536, 65536, "input shape 1x65536x65536 is too large");
    expect_shape_error("1c", 1, 1, 641, 6700417, "too large"); /* 641 * 6700417 = 2^32 + 1 */
    expect_shape_error("64c", 3, 1, 258, 258, "hidden units");
    /* the largest still allowed builds with the exact sizes */
    cnnelm_arch a;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_arch_init(&a, "16c-4s", 1, 1, 1024, 1024, 10, CNNELM_ACT_RELU,
                                   CNNELM_POOL_MEAN, CNNELM_ACT_IDENTITY, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(a.hidden, 16 * 256 * 256);
    ck_assert_uint_eq(a.max_maps, (size_t)16 * 1024 * 1024);
}
END_TEST

/* CRC-32 (zlib's polynomial), bit by bit: the test does not depend on how zlib is linked. */
static uint32_t crc32_ref(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return ~c;
}

/* A model file whose header makes c*h*w wrap to a tiny hidden size is refused: built by hand
 * with a valid checksum (the 204-byte file `cnnelm average` used to accept). */
static void write_wrapped_model(uint32_t h, uint32_t w, uint32_t hidden)
{
    cnnelm_arch a;
    cnnelm_model m;
    cnnelm_error err = { "" };
    ck_assert_int_eq(cnnelm_arch_init(&a, "1c", 1, 1, 1, 1, 2, CNNELM_ACT_RELU, CNNELM_POOL_MEAN,
                                      CNNELM_ACT_IDENTITY, &err), 0);
    ck_assert_int_eq(cnnelm_model_init(&m, &a, 1.0, 1, 0, &err), 0);
    unsigned char *buf;
    size_t len;
    ck_assert_int_eq(cnnelm_model_encode(&m, &buf, &len, &err), 0);
    cnnelm_model_free(&m);
    size_t want = 160 + 4 * 2 + 4 * hidden * 2 + 8 * hidden * hidden + 8 * hidden * 2 + 4;
    unsigned char *out = calloc(1, want);
    memcpy(out, buf, 160);
    free(buf);
    uint32_t fld[4] = { 1, h, w, hidden }; /* a version-1 file: no trailer between V and the CRC */
    int at[4] = { 8, 20, 24, 36 };
    for (int f = 0; f < 4; f++)
        for (int i = 0; i < 4; i++)
            out[at[f] + i] = (unsigned char)(fld[f] >> (8 * i));
    for (size_t i = 160; i < want - 4; i++)
        out[i] = (unsigned char)(i * 37 % 251) | 1; /* non-zero payload */
    uint32_t crc = crc32_ref(out, want - 4);
    for (int i = 0; i < 4; i++)
        out[want - 4 + i] = (unsigned char)(crc >> (8 * i));
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(out, 1, want, f), want);
    fclose(f);
    free(out);
    if (hidden == 1)
        ck_assert_uint_eq(want, 204);
}

/* Bytes from a model file are shown escaped: a terminal escape sequence in the architecture
 * string (with a valid checksum) never reaches the terminal raw. */
START_TEST(header_bytes_escaped)
{
    make_dir();
    cnnelm_arch a = paper_arch();
    cnnelm_model m;
    cnnelm_error err = { "" };
    ck_assert_int_eq(cnnelm_model_init(&m, &a, 1.0, 1, 0, &err), 0);
    unsigned char *buf;
    size_t len;
    ck_assert_int_eq(cnnelm_model_encode(&m, &buf, &len, &err), 0);
    memcpy(buf + 96, "6c\x1b[31m\n", 9);
    uint32_t crc = crc32_ref(buf, len - 4);
    for (int i = 0; i < 4; i++)
        buf[len - 4 + i] = (unsigned char)(crc >> (8 * i));
    cnnelm_model r;
    ck_assert_int_ne(cnnelm_model_decode(&r, buf, len, "x.model", &err), 0);
    ck_assert_msg(strstr(err.msg, "architecture \"6c\\x1b[31m\\x0a") != NULL, "%s", err.msg);
    ck_assert_ptr_null(strchr(err.msg, '\x1b'));
    ck_assert_ptr_null(strchr(err.msg, '\n'));
    free(buf);
    cnnelm_model_free(&m);
    remove_dir();
}
END_TEST

START_TEST(overflowing_model_files)
{
    make_dir();
    write_wrapped_model(641, 6700417, 1); /* 641 * 6700417 * 1 wraps to 1 in 32 bits */
    expect_load_error("too large");
    write_wrapped_model(65536, 65536, 0); /* 2^32 wraps to 0 */
    expect_load_error("too large");
    remove_dir();
}
END_TEST

/* Zero-mean init of a 1x1 kernel on one map zeroes it; refused instead of training on zeros. */
START_TEST(zero_mean_kernel_1_refused)
{
    cnnelm_arch a;
    cnnelm_model m;
    cnnelm_error err = { "" };
    ck_assert_int_eq(cnnelm_arch_init(&a, "6c-2s", 1, 1, 28, 28, 10, CNNELM_ACT_RELU,
                                      CNNELM_POOL_MEAN, CNNELM_ACT_IDENTITY, &err), 0);
    ck_assert_int_ne(cnnelm_model_init(&m, &a, 1.0, 1, 1, &err), 0);
    ck_assert_msg(strstr(err.msg, "model.kernel = 1") != NULL, "%s", err.msg);
    ck_assert_int_eq(cnnelm_model_init(&m, &a, 1.0, 1, 0, &err), 0);
    int nonzero = 0;
    for (size_t i = 0; i < a.n_params; i++)
        nonzero += m.params[i] != 0;
    ck_assert_int_eq(nonzero, 6); /* the 6 kernels; biases stay 0 */
    cnnelm_model_free(&m);
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
    tcase_add_test(tc, oversized_architectures);
    tcase_add_test(tc, overflowing_model_files);
    tcase_add_test(tc, header_bytes_escaped);
    tcase_add_test(tc, zero_mean_kernel_1_refused);
    tcase_add_test(tc, multi_scale_shapes);
    tcase_add_test(tc, bad_multi_scale);
    tcase_add_test(tc, multi_scale_round_trip);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
