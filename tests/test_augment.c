/* Tests of data.augment (data/augment.c): the transforms pixel by pixel on random images (hflip
 * twice is the identity, a shift moves every pixel by one and fills with 0, every plane of a
 * colour image alike, all four directions occur), the rows a config's training set gains (counts,
 * labels, composed with data.extend, the test set untouched), the same bytes streamed and in
 * memory, config errors, and a training run whose model is byte-identical streamed or in memory. */
#define _XOPEN_SOURCE 700

#include <check.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "cnnelm/enums.h"
#include "data/augment.h"
#include "data/noise.h"
#include "base/rng.h"

static char dir[256];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/cnnelm_test_augment.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    setenv("XDG_CACHE_HOME", dir, 1);
}

static void teardown(void)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* n random images of bytes in 1..255 (so a 0 in a result comes from a fill) */
static uint8_t *random_images(size_t n, size_t px, uint64_t seed)
{
    uint8_t *img = malloc(n * px);
    cnnelm_rng r;
    cnnelm_rng_seed(&r, seed, 99);
    for (size_t i = 0; i < n * px; i++)
        img[i] = (uint8_t)(1 + cnnelm_rng_below(&r, 255));
    return img;
}

/* NAME-images / NAME-labels (raw IDX) with n random images; labels i % classes. */
static void write_set(const char *name, size_t n, int rows, int cols, int classes, uint64_t seed)
{
    uint8_t *img = random_images(n, (size_t)rows * cols, seed), *lab = malloc(n);
    for (size_t i = 0; i < n; i++)
        lab[i] = (uint8_t)(i % (size_t)classes);
    char p[600];
    cnnelm_error err = {""};
    snprintf(p, sizeof p, "%s/%s-images", dir, name);
    ck_assert_msg(cnnelm_idx_write_images(p, img, n, rows, cols, &err) == 0, "%s", err.msg);
    snprintf(p, sizeof p, "%s/%s-labels", dir, name);
    ck_assert_msg(cnnelm_idx_write_labels(p, lab, n, &err) == 0, "%s", err.msg);
    free(img);
    free(lab);
}

static int load_cfg(cnnelm_config *cfg, const char *const *ov, int n_ov, cnnelm_error *err)
{
    char p[600], text[4096];
    snprintf(p, sizeof p, "%s/run.cfg", dir);
    snprintf(text, sizeof text,
             "data = { train_images = \"%s/tr-images\"; train_labels = \"%s/tr-labels\";\n"
             "  test_images = \"%s/te-images\"; test_labels = \"%s/te-labels\"; cache_dir = \"%s/cache\"; };\n",
             dir, dir, dir, dir, dir);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    return cnnelm_config_load(cfg, p, ov, n_ov, err);
}

START_TEST(hflip_exact)
{
    const int rows = 7, cols = 6, ch = 3; /* odd and even widths: below too */
    size_t px = (size_t)ch * rows * cols;
    uint8_t *a = random_images(1, px, 3), *b = malloc(px);
    memcpy(b, a, px);
    cnnelm_augment_image(b, rows, cols, ch, 0, 1, 0);
    for (int c = 0; c < ch; c++)
        for (int y = 0; y < rows; y++)
            for (int x = 0; x < cols; x++)
                ck_assert_uint_eq(b[((size_t)c * rows + y) * cols + x], a[((size_t)c * rows + y) * cols + cols - 1 - x]);
    ck_assert_int_ne(memcmp(a, b, px), 0);
    cnnelm_augment_image(b, rows, cols, ch, 0, 1, 0);
    ck_assert_int_eq(memcmp(a, b, px), 0); /* twice: the identity */
    uint8_t odd[5] = { 1, 2, 3, 4, 5 };
    cnnelm_augment_image(odd, 1, 5, 1, 0, 9, 9);
    ck_assert_int_eq(memcmp(odd, (uint8_t[]){ 5, 4, 3, 2, 1 }, 5), 0);
    free(a);
    free(b);
}
END_TEST

START_TEST(shift_exact)
{
    const int rows = 6, cols = 5, ch = 2;
    size_t px = (size_t)ch * rows * cols;
    uint8_t *a = random_images(1, px, 4), *b = malloc(px);
    int seen[3][3] = { { 0 } };
    for (size_t index = 0; index < 64; index++) {
        int dx, dy;
        cnnelm_augment_shift_of(77, index, &dx, &dy);
        ck_assert_int_eq(abs(dx) + abs(dy), 1);
        seen[dy + 1][dx + 1]++;
        memcpy(b, a, px);
        cnnelm_augment_image(b, rows, cols, ch, 1, 77, index);
        int zeros = 0;
        for (int c = 0; c < ch; c++)
            for (int y = 0; y < rows; y++)
                for (int x = 0; x < cols; x++) {
                    int sy = y - dy, sx = x - dx;
                    uint8_t want = sy < 0 || sy >= rows || sx < 0 || sx >= cols
                                       ? 0 : a[((size_t)c * rows + sy) * cols + sx];
                    uint8_t got = b[((size_t)c * rows + y) * cols + x];
                    ck_assert_msg(got == want, "image %zu shift (%d,%d) channel %d pixel (%d,%d): %u, not %u",
                                  index, dx, dy, c, y, x, got, want);
                    zeros += got == 0;
                }
        /* exactly one row or column of each plane is filled */
        ck_assert_int_eq(zeros, ch * (dx ? rows : cols));
    }
    /* every direction occurs, and the direction depends on the seed */
    ck_assert(seen[1][2] && seen[1][0] && seen[2][1] && seen[0][1]);
    int differ = 0;
    for (size_t index = 0; index < 64; index++) {
        int dx1, dy1, dx2, dy2;
        cnnelm_augment_shift_of(77, index, &dx1, &dy1);
        cnnelm_augment_shift_of(78, index, &dx2, &dy2);
        differ += dx1 != dx2 || dy1 != dy2;
    }
    ck_assert_int_gt(differ, 0);
    free(a);
    free(b);
}
END_TEST

/* Fetches all of ds's rows. */
static uint8_t *fetch_all(const cnnelm_dataset *ds)
{
    size_t px = cnnelm_dataset_example_bytes(ds);
    uint8_t *all = malloc(ds->n * px);
    cnnelm_error err = {""};
    ck_assert_msg(cnnelm_dataset_fetch(ds, NULL, 0, ds->n, all, &err) == 0, "%s", err.msg);
    return all;
}

/* Training rows with augment (and extend): counts, labels, each copy the transform of its row,
 * streamed and in memory the same bytes (also fetched in pieces), the test set unchanged. */
static void check_rows(const char *extend, size_t copies_extend)
{
    const size_t n = 37, nt = 11;
    const int rows = 6, cols = 5;
    size_t px = (size_t)rows * cols;
    write_set("tr", n, rows, cols, 4, 1);
    write_set("te", nt, rows, cols, 4, 2);
    char ext[128];
    snprintf(ext, sizeof ext, "data.extend=%s", extend);
    uint8_t *got[2] = { NULL, NULL };
    for (int s = 0; s < 2; s++) {
        const char *ov[] = { "data.augment=[\"shift\",\"hflip\"]", ext, s ? "data.stream=false" : "data.stream=true",
                             "train.seed=5" };
        cnnelm_config cfg;
        cnnelm_error err = {""};
        ck_assert_msg(load_cfg(&cfg, ov, 4, &err) == 0, "%s", err.msg);
        ck_assert_uint_eq(cfg.data.augment, CNNELM_AUGMENT_HFLIP | CNNELM_AUGMENT_SHIFT);
        cnnelm_dataset ds, ts, plain;
        ck_assert_msg(cnnelm_dataset_load_config(&ds, &cfg, 0, 256, &err) == 0, "%s", err.msg);
        ck_assert_msg(cnnelm_dataset_load_config(&ts, &cfg, 1, ds.classes, &err) == 0, "%s", err.msg);
        size_t ne = n * (1 + copies_extend);
        ck_assert_uint_eq(ds.n, ne * 3);
        ck_assert_uint_eq(ts.n, nt * (1 + copies_extend)); /* the test set: no augmented copies */
        ck_assert_int_eq(ds.classes, 4);
        for (size_t i = 0; i < ds.n; i++)
            ck_assert_uint_eq(ds.labels[i], (i % ne) % n % 4);
        /* the same config without augment gives the rows each copy transforms */
        cnnelm_config pc;
        ck_assert_msg(load_cfg(&pc, ov + 1, 3, &err) == 0, "%s", err.msg);
        ck_assert_msg(cnnelm_dataset_load_config(&plain, &pc, 0, 256, &err) == 0, "%s", err.msg);
        ck_assert_uint_eq(plain.n, ne);
        uint8_t *a = fetch_all(&ds), *p = fetch_all(&plain), *one = malloc(px);
        ck_assert_int_eq(memcmp(a, p, ne * px), 0);
        for (size_t e = 0; e < ne; e++) {
            memcpy(one, p + e * px, px);
            cnnelm_augment_image(one, rows, cols, 1, 0, 5, e); /* copy 1: hflip (name order) */
            ck_assert_int_eq(memcmp(a + (ne + e) * px, one, px), 0);
            memcpy(one, p + e * px, px);
            cnnelm_augment_image(one, rows, cols, 1, 1, 5, e); /* copy 2: shift */
            ck_assert_int_eq(memcmp(a + (2 * ne + e) * px, one, px), 0);
        }
        /* fetched by scattered rows, piece by piece: the same bytes */
        size_t pick[] = { 3 * ne - 1, 0, ne, ne + 1, ne + 2, 2 * ne + 4, 5, 2 * ne - 1 };
        uint8_t buf[8 * 30];
        for (size_t i = 0; i < 8; i++)
            ck_assert_msg(cnnelm_dataset_fetch(&ds, pick, i, 1, buf + i * px, &err) == 0, "%s", err.msg);
        for (size_t i = 0; i < 8; i++)
            ck_assert_int_eq(memcmp(buf + i * px, a + pick[i] * px, px), 0);
        got[s] = a;
        free(p);
        free(one);
        cnnelm_dataset_free(&ds);
        cnnelm_dataset_free(&ts);
        cnnelm_dataset_free(&plain);
        cnnelm_config_free(&cfg);
        cnnelm_config_free(&pc);
    }
    ck_assert_int_eq(memcmp(got[0], got[1], n * (1 + copies_extend) * 3 * px), 0);
    free(got[0]);
    free(got[1]);
}

START_TEST(rows_and_labels)
{
    check_rows("[]", 0);
    check_rows("[\"gaussian\",\"poisson\"]", 2);
}
END_TEST

START_TEST(config_errors)
{
    cnnelm_config cfg;
    cnnelm_error err = {""};
    write_set("tr", 10, 4, 4, 2, 1);
    write_set("te", 4, 4, 4, 2, 2);
    const char *unknown[] = { "data.augment=[\"vflip\"]" };
    ck_assert_int_ne(load_cfg(&cfg, unknown, 1, &err), 0);
    ck_assert_msg(strstr(err.msg, "data.augment[0] is not one of \"hflip\", \"shift\""), "%s", err.msg);
    const char *twice[] = { "data.augment=[\"hflip\",\"hflip\"]" };
    ck_assert_int_ne(load_cfg(&cfg, twice, 1, &err), 0);
    ck_assert_msg(strstr(err.msg, "data.augment lists \"hflip\" twice"), "%s", err.msg);
    const char *str[] = { "data.augment=\"hflip\"" };
    ck_assert_int_ne(load_cfg(&cfg, str, 1, &err), 0);
    ck_assert_msg(strstr(err.msg, "data.augment must be an array of strings"), "%s", err.msg);
    /* the default is none, and the effective config writes the list back */
    const char *ok[] = { "data.augment=[\"shift\"]" };
    ck_assert_msg(load_cfg(&cfg, ok, 1, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(cfg.data.augment, CNNELM_AUGMENT_SHIFT);
    ck_assert_ptr_nonnull(strstr(cfg.text, "augment = [ \"shift\" ]"));
    cnnelm_config_free(&cfg);
    ck_assert_msg(load_cfg(&cfg, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(cfg.data.augment, 0);
    cnnelm_config_free(&cfg);
    /* a bad mask from the API: one line, no crash */
    cnnelm_dataset ds;
    memset(&ds, 0, sizeof ds);
    ck_assert_int_ne(cnnelm_build_augment(&ds, 4, 1, "", &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "unknown bits"));
}
END_TEST

/* A training run (4 stratified partitions, refit) on a streamed set writes the byte-identical
 * model of the in-memory set, and it learned from the copies (its example count). */
START_TEST(train_same_model)
{
    const char *ti = CNNELM_FASHION_DIR "/train-images-idx3-ubyte.gz";
    if (access(ti, R_OK) != 0) {
        fprintf(stderr, "train_same_model: skipped: %s not found\n", ti);
        return;
    }
    const char *common =
        "-s train.partitions=4 -s 'train.partitioning=\"stratified\"' -s 'train.reduce=\"refit\"' "
        "-s data.train_limit=1000 -s data.test_limit=300 -s 'model.layers=\"6c-2s-12c-2s\"' "
        "-s train.chunk=128 -s 'data.augment=[\"hflip\",\"shift\"]'";
    char cmd[4096];
    for (int s = 0; s < 2; s++) {
        snprintf(cmd, sizeof cmd,
                 "cd %s && %s/bin/cnnelm train -q -c %s/conf/default.cfg %s -s data.stream=%s "
                 "-s 'data.cache_dir=\"%s/cache\"' -o %s/model-%d >%s/out-%d 2>&1",
                 dir, CNNELM_BINARY_DIR, CNNELM_SOURCE_DIR, common, s ? "false" : "true", dir, dir, s,
                 dir, s);
        ck_assert_msg(system(cmd) == 0, "%s failed: see %s/out-%d", cmd, dir, s);
    }
    snprintf(cmd, sizeof cmd, "cmp %s/model-0 %s/model-1", dir, dir);
    ck_assert_msg(system(cmd) == 0, "the streamed and in-memory models differ");
    snprintf(cmd, sizeof cmd, "%s/bin/cnnelm info %s/model-0 | grep -q 3000", CNNELM_BINARY_DIR, dir);
    ck_assert_msg(system(cmd) == 0, "cnnelm info does not count the 3000 training rows");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("augment");
    TCase *tc = tcase_create("augment");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, hflip_exact);
    tcase_add_test(tc, shift_exact);
    tcase_add_test(tc, rows_and_labels);
    tcase_add_test(tc, config_errors);
    tcase_add_test(tc, train_same_model);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
