/* Tests of data sets as a config builds them: data.sources concatenated with label offsets,
 * per-file limits, image-size and label-range errors, the noisy copies of data.extend (counts,
 * labels, originals untouched, noise rates, seeding) and cnnelm_run_extend's IDX files. */
#define _XOPEN_SOURCE 700

#include <check.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "base/rng.h"

/* cnnelm_dataset_load_config with the images then read into memory (these tests look at
 * ds.images; test_stream.c checks that streamed and in-memory sets fetch the same bytes). */
static int load_set(cnnelm_dataset *ds, const cnnelm_config *cfg, int test, int max_classes,
                    cnnelm_error *err)
{
    if (cnnelm_dataset_load_config(ds, cfg, test, max_classes, err))
        return -1;
    if (cnnelm_dataset_materialize(ds, err)) {
        cnnelm_dataset_free(ds);
        return -1;
    }
    return 0;
}

static char dir[256];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/cnnelm_test_dataset_build.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    setenv("XDG_CACHE_HOME", dir, 1); /* streamed gzip files are decompressed here, not in ~/.cache */
}

static void teardown(void)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *in_dir(const char *name)
{
    static char buf[16][512];
    static int next;
    char *b = buf[next++ % 16];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

/* Writes NAME-images(.gz) with n images of rows x cols whose pixels are `first + i` (image i,
 * every pixel), and NAME-labels(.gz) with the given labels. */
static void write_set(const char *name, size_t n, int rows, int cols, int first, const uint8_t *labels,
                      int gz)
{
    char p[600];
    size_t px = (size_t)rows * cols;
    uint8_t *img = malloc(n * px);
    for (size_t i = 0; i < n; i++)
        memset(img + i * px, first + (int)i, px);
    cnnelm_error err = {""};
    snprintf(p, sizeof p, "%s/%s-images%s", dir, name, gz ? ".gz" : "");
    ck_assert_msg(cnnelm_idx_write_images(p, img, n, rows, cols, &err) == 0, "%s", err.msg);
    snprintf(p, sizeof p, "%s/%s-labels%s", dir, name, gz ? ".gz" : "");
    ck_assert_msg(cnnelm_idx_write_labels(p, labels, n, &err) == 0, "%s", err.msg);
    free(img);
}

static int load_cfg(cnnelm_config *cfg, const char *text, const char *const *ov, int n_ov,
                    cnnelm_error *err)
{
    const char *p = in_dir("run.cfg");
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    return cnnelm_config_load(cfg, p, ov, n_ov, err);
}

/* Three sources: A (3 classes, test set), B (2 classes, test set), C (1 class, no test set). */
static void write_sources(void)
{
    const uint8_t la[] = {0, 1, 2, 1}, lat[] = {2, 0}, lb[] = {1, 0}, lbt[] = {1}, lc[] = {0, 0, 0};
    write_set("a", 4, 4, 3, 10, la, 1);
    write_set("at", 2, 4, 3, 20, lat, 0);
    write_set("b", 2, 4, 3, 30, lb, 0);
    write_set("bt", 1, 4, 3, 40, lbt, 1);
    write_set("c", 3, 4, 3, 50, lc, 0);
}

static char *sources_text(const char *extra)
{
    static char text[8192];
    snprintf(text, sizeof text,
             "data = {\n sources = (\n"
             "  { train_images = \"%s/a-images.gz\"; train_labels = \"%s/a-labels.gz\";\n"
             "    test_images = \"%s/at-images\"; test_labels = \"%s/at-labels\"; },\n"
             "  { train_images = \"%s/b-images\"; train_labels = \"%s/b-labels\";\n"
             "    test_images = \"%s/bt-images.gz\"; test_labels = \"%s/bt-labels.gz\"; },\n"
             "  { train_images = \"%s/c-images\"; train_labels = \"%s/c-labels\"; }\n"
             " );\n%s};\n",
             dir, dir, dir, dir, dir, dir, dir, dir, dir, dir, extra);
    return text;
}

START_TEST(sources_concatenated)
{
    write_sources();
    cnnelm_config cfg;
    cnnelm_error err = {""};
    ck_assert_msg(load_cfg(&cfg, sources_text(""), NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(cfg.data.n_sources, 3);

    cnnelm_dataset tr, te;
    ck_assert_msg(load_set(&tr, &cfg, 0, 256, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(tr.n, 9);
    ck_assert_int_eq(tr.rows, 4);
    ck_assert_int_eq(tr.cols, 3);
    ck_assert_int_eq(tr.classes, 6);
    ck_assert_int_eq(tr.n_sources, 3);
    ck_assert_ptr_nonnull(tr.source);
    const uint8_t want_l[] = {0, 1, 2, 1, 4, 3, 5, 5, 5}, want_s[] = {0, 0, 0, 0, 1, 1, 2, 2, 2};
    const int want_px[] = {10, 11, 12, 13, 30, 31, 50, 51, 52};
    for (size_t i = 0; i < tr.n; i++) {
        ck_assert_uint_eq(tr.labels[i], want_l[i]);
        ck_assert_uint_eq(tr.source[i], want_s[i]);
        for (int p = 0; p < 12; p++)
            ck_assert_uint_eq(tr.images[i * 12 + (size_t)p], want_px[i]);
    }

    /* test: A's and B's test sets (C has none), with the training offsets */
    ck_assert_msg(load_set(&te, &cfg, 1, tr.classes, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(te.n, 3);
    ck_assert_int_eq(te.classes, 6);
    const uint8_t want_tl[] = {2, 0, 4}, want_ts[] = {0, 0, 1};
    const int want_tpx[] = {20, 21, 40};
    for (size_t i = 0; i < te.n; i++) {
        ck_assert_uint_eq(te.labels[i], want_tl[i]);
        ck_assert_uint_eq(te.source[i], want_ts[i]);
        ck_assert_uint_eq(te.images[i * 12 + 5], want_tpx[i]);
    }
    cnnelm_dataset_free(&tr);
    cnnelm_dataset_free(&te);
    ck_assert_ptr_null(tr.source);
    cnnelm_config_free(&cfg);

    /* limits apply per file; a source's class count still comes from its whole label file */
    const char *ov[] = {"data.train_limit=2", "data.test_limit=1"};
    ck_assert_msg(load_cfg(&cfg, sources_text(""), ov, 2, &err) == 0, "%s", err.msg);
    ck_assert_msg(load_set(&tr, &cfg, 0, 256, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(tr.n, 6);
    ck_assert_int_eq(tr.classes, 6);
    const uint8_t want_l2[] = {0, 1, 4, 3, 5, 5};
    for (size_t i = 0; i < tr.n; i++)
        ck_assert_uint_eq(tr.labels[i], want_l2[i]);
    ck_assert_msg(load_set(&te, &cfg, 1, 6, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(te.n, 2);
    ck_assert_uint_eq(te.labels[0], 2);
    ck_assert_uint_eq(te.labels[1], 4);
    /* a model with fewer classes than the sources together */
    cnnelm_dataset te2;
    ck_assert_int_ne(load_set(&te2, &cfg, 1, 5, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "data.sources have 6 classes but the model has 5"));
    ck_assert_uint_eq(te2.n, 0);
    cnnelm_dataset_free(&tr);
    cnnelm_dataset_free(&te);
    cnnelm_config_free(&cfg);
}
END_TEST

START_TEST(source_errors)
{
    write_sources();
    cnnelm_config cfg;
    cnnelm_error err = {""};
    cnnelm_dataset ds;

    /* B's images are 5x3 while A's are 4x3: the message names B's file (in memory and streamed) */
    const uint8_t lb[] = {1, 0};
    write_set("b", 2, 5, 3, 30, lb, 0);
    char want[1024];
    snprintf(want, sizeof want, "%s/b-images: images are 5x3 but the sources before it have 4x3", dir);
    for (int stream = 0; stream < 2; stream++) {
        ck_assert_msg(load_cfg(&cfg, sources_text(stream ? "stream = true;\n" : "stream = false;\n"), NULL,
                               0, &err) == 0, "%s", err.msg);
        ck_assert_int_ne(load_set(&ds, &cfg, 0, 256, &err), 0);
        ck_assert_str_eq(err.msg, want);
        ck_assert_uint_eq(ds.n, 0);
        ck_assert_ptr_null(ds.images);
        cnnelm_config_free(&cfg);
    }

    /* B's images are 4x3 as A's but in colour: the message says channels, held or streamed */
    uint8_t colour[2 * 3 * 4 * 3];
    memset(colour, 7, sizeof colour);
    ck_assert_msg(cnnelm_idx_write_images_c(in_dir("b-images"), colour, 2, 3, 4, 3, &err) == 0, "%s",
                  err.msg);
    snprintf(want, sizeof want, "%s/b-images: images have 3 channels but the sources before it have 1", dir);
    for (int stream = 0; stream < 2; stream++) {
        ck_assert_msg(load_cfg(&cfg, sources_text(stream ? "stream = true;\n" : "stream = false;\n"), NULL,
                               0, &err) == 0, "%s", err.msg);
        ck_assert_int_ne(load_set(&ds, &cfg, 0, 256, &err), 0);
        ck_assert_str_eq(err.msg, want);
        cnnelm_config_free(&cfg);
    }

    /* a test label beyond its source's training classes (B has 2) */
    write_sources();
    const uint8_t bad[] = {2};
    write_set("bt", 1, 4, 3, 40, bad, 1);
    ck_assert_msg(load_cfg(&cfg, sources_text(""), NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_ne(load_set(&ds, &cfg, 1, 256, &err), 0);
    snprintf(want, sizeof want, "%s/bt-labels.gz: label 2 of example 0 is out of range", dir);
    ck_assert_msg(strncmp(err.msg, want, strlen(want)) == 0, "%s", err.msg);
    cnnelm_config_free(&cfg);

    /* a missing file */
    remove(in_dir("c-labels"));
    ck_assert_msg(load_cfg(&cfg, sources_text(""), NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_ne(load_set(&ds, &cfg, 0, 256, &err), 0);
    snprintf(want, sizeof want, "%s/c-labels: cannot open", dir);
    ck_assert_msg(strncmp(err.msg, want, strlen(want)) == 0, "%s", err.msg);
    cnnelm_config_free(&cfg);
}
END_TEST

START_TEST(single_source)
{
    const uint8_t l[] = {3, 1, 0, 2, 1};
    write_set("s", 5, 2, 2, 7, l, 0);
    char text[2048];
    snprintf(text, sizeof text,
             "data = { train_images = \"%s/s-images\"; train_labels = \"%s/s-labels\"; train_limit = 3; };\n",
             dir, dir);
    cnnelm_config cfg;
    cnnelm_error err = {""};
    ck_assert_msg(load_cfg(&cfg, text, NULL, 0, &err) == 0, "%s", err.msg);
    cnnelm_dataset tr, te;
    ck_assert_msg(load_set(&tr, &cfg, 0, 256, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(tr.n, 3);
    ck_assert_int_eq(tr.classes, 4);
    ck_assert_ptr_null(tr.source);
    ck_assert_int_eq(tr.n_sources, 0);
    /* no test set configured: empty, not an error */
    ck_assert_msg(load_set(&te, &cfg, 1, 4, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(te.n, 0);
    cnnelm_dataset_free(&tr);
    cnnelm_dataset_free(&te);
    cnnelm_config_free(&cfg);

    /* no training set: an error */
    ck_assert_msg(load_cfg(&cfg, "train = { seed = 2; };\n", NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_ne(load_set(&tr, &cfg, 0, 256, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "data.train_images and data.train_labels must name the training set"));
    cnnelm_config_free(&cfg);
}
END_TEST

/* An in-memory data set of n random images with pixels in [lo, hi], owned by the caller. */
static void random_set(cnnelm_dataset *ds, size_t n, int rows, int cols, int lo, int hi, uint64_t seed)
{
    memset(ds, 0, sizeof *ds);
    size_t px = (size_t)rows * cols;
    uint8_t *img = malloc(n * px), *lab = malloc(n);
    cnnelm_rng r;
    cnnelm_rng_seed(&r, seed, 99);
    for (size_t i = 0; i < n * px; i++)
        img[i] = (uint8_t)(lo + (int)cnnelm_rng_below(&r, (uint64_t)(hi - lo + 1)));
    for (size_t i = 0; i < n; i++)
        lab[i] = (uint8_t)(i % 10);
    ds->images = ds->images_alloc = img;
    ds->labels = ds->labels_alloc = lab;
    ds->n = n;
    ds->rows = rows;
    ds->cols = cols;
    ds->classes = 10;
}

enum { N_IMG = 200, ROWS = 28, COLS = 28, PX = ROWS * COLS };

START_TEST(extend_counts_and_labels)
{
    cnnelm_dataset ds;
    random_set(&ds, N_IMG, ROWS, COLS, 64, 191, 1);
    uint8_t *orig = malloc((size_t)N_IMG * PX);
    memcpy(orig, ds.images, (size_t)N_IMG * PX);
    cnnelm_error err = {""};
    unsigned all = CNNELM_NOISE_GAUSSIAN | CNNELM_NOISE_SALT_PEPPER | CNNELM_NOISE_POISSON;
    ck_assert_msg(cnnelm_dataset_add_noise(&ds, all, 5, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(ds.n, 4 * N_IMG);
    ck_assert_int_eq(ds.classes, 10);
    ck_assert_int_eq(ds.rows, ROWS);
    ck_assert_int_eq(memcmp(ds.images, orig, (size_t)N_IMG * PX), 0); /* originals untouched */
    for (size_t i = 0; i < ds.n; i++)
        ck_assert_uint_eq(ds.labels[i], (i % N_IMG) % 10);
    for (int c = 1; c < 4; c++) /* every copy differs from its original */
        ck_assert_int_ne(memcmp(ds.images + (size_t)c * N_IMG * PX, orig, (size_t)N_IMG * PX), 0);
    cnnelm_dataset_free(&ds);

    /* one type: 2x; none: unchanged; sources follow their images */
    random_set(&ds, 10, 4, 4, 0, 255, 2);
    uint8_t *src = malloc(10);
    for (int i = 0; i < 10; i++)
        src[i] = (uint8_t)(i / 4);
    ds.source = src;
    ds.n_sources = 3;
    ck_assert_int_eq(cnnelm_dataset_add_noise(&ds, 0, 5, &err), 0);
    ck_assert_uint_eq(ds.n, 10);
    ck_assert_int_eq(cnnelm_dataset_add_noise(&ds, CNNELM_NOISE_SALT_PEPPER, 5, &err), 0);
    ck_assert_uint_eq(ds.n, 20);
    ck_assert_int_eq(ds.n_sources, 3);
    for (int i = 0; i < 20; i++)
        ck_assert_uint_eq(ds.source[i], (i % 10) / 4);
    /* unknown bits */
    ck_assert_int_ne(cnnelm_dataset_add_noise(&ds, 8, 5, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "unknown bits"));
    ck_assert_uint_eq(ds.n, 20);
    cnnelm_dataset_free(&ds);
    free(orig);
}
END_TEST

/* The noisy copy (type t of n) of a data set of n images with pixels in [lo, hi]. */
static void noisy(cnnelm_dataset *ds, unsigned type, int lo, int hi, uint64_t seed)
{
    random_set(ds, N_IMG, ROWS, COLS, lo, hi, 3);
    cnnelm_error err = {""};
    ck_assert_msg(cnnelm_dataset_add_noise(ds, type, seed, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(ds->n, 2 * N_IMG);
}

START_TEST(noise_levels)
{
    const size_t total = (size_t)N_IMG * PX;
    cnnelm_dataset ds;

    /* salt and pepper: 5% of the pixels, half 0 and half 255 (mid-grey images have neither) */
    noisy(&ds, CNNELM_NOISE_SALT_PEPPER, 1, 254, 11);
    size_t salt = 0, pepper = 0, other = 0;
    for (size_t i = 0; i < total; i++) {
        uint8_t a = ds.images[i], b = ds.images[total + i];
        if (b == a) continue;
        if (b == 0) pepper++;
        else if (b == 255) salt++;
        else other++;
    }
    double rate = (double)(salt + pepper) / (double)total;
    ck_assert_msg(fabs(rate - 0.05) < 0.01, "salt and pepper rate %g", rate);
    ck_assert_uint_eq(other, 0);
    ck_assert_msg(fabs((double)salt / (double)(salt + pepper) - 0.5) < 0.05, "salt %zu pepper %zu", salt, pepper);
    cnnelm_dataset_free(&ds);

    /* gaussian: mean |diff| = sigma sqrt(2/pi) = 20.35 for sigma = 25.5 (rounding adds ~0.02,
     * clamping on 64..191 takes off less than 0.1); mean diff about 0 */
    noisy(&ds, CNNELM_NOISE_GAUSSIAN, 64, 191, 12);
    double sum = 0, sum_abs = 0;
    for (size_t i = 0; i < total; i++) {
        double d = (double)ds.images[total + i] - ds.images[i];
        sum += d;
        sum_abs += fabs(d);
    }
    double mad = sum_abs / (double)total, want = 25.5 * sqrt(2.0 / M_PI);
    ck_assert_msg(fabs(mad - want) < 0.4, "gaussian mean |diff| %g, want %g", mad, want);
    ck_assert_msg(fabs(sum / (double)total) < 0.3, "gaussian mean diff %g", sum / (double)total);
    cnnelm_dataset_free(&ds);

    /* poisson: mean preserved, variance of the difference = the mean; on bright pixels (normal
     * approximation) and dark ones (Knuth's method, means 0..30) */
    const int ranges[2][2] = {{40, 200}, {0, 30}};
    for (int r = 0; r < 2; r++) {
        noisy(&ds, CNNELM_NOISE_POISSON, ranges[r][0], ranges[r][1], 13);
        double s0 = 0, s1 = 0, sd2 = 0;
        for (size_t i = 0; i < total; i++) {
            double a = ds.images[i], b = ds.images[total + i];
            s0 += a;
            s1 += b;
            sd2 += (b - a) * (b - a);
        }
        double m0 = s0 / (double)total, m1 = s1 / (double)total, var = sd2 / (double)total;
        ck_assert_msg(fabs(m1 - m0) < 0.1, "poisson means %g -> %g", m0, m1);
        ck_assert_msg(fabs(var / m0 - 1.0) < 0.03, "poisson variance %g, mean %g", var, m0);
        cnnelm_dataset_free(&ds);
    }
    /* black stays black under poisson */
    noisy(&ds, CNNELM_NOISE_POISSON, 0, 0, 14);
    for (size_t i = 0; i < total; i++)
        ck_assert_uint_eq(ds.images[total + i], 0);
    cnnelm_dataset_free(&ds);
}
END_TEST

START_TEST(noise_seeding)
{
    unsigned all = CNNELM_NOISE_GAUSSIAN | CNNELM_NOISE_SALT_PEPPER | CNNELM_NOISE_POISSON;
    cnnelm_error err = {""};
    cnnelm_dataset a, b, c, small;
    random_set(&a, 50, 8, 8, 0, 255, 4);
    random_set(&b, 50, 8, 8, 0, 255, 4);
    random_set(&c, 50, 8, 8, 0, 255, 4);
    random_set(&small, 7, 8, 8, 0, 255, 4); /* the first 7 images of the others */
    ck_assert_int_eq(cnnelm_dataset_add_noise(&a, all, 42, &err), 0);
    ck_assert_int_eq(cnnelm_dataset_add_noise(&b, all, 42, &err), 0);
    ck_assert_int_eq(cnnelm_dataset_add_noise(&c, all, 43, &err), 0);
    ck_assert_int_eq(cnnelm_dataset_add_noise(&small, all, 42, &err), 0);
    size_t px = 64;
    ck_assert_int_eq(memcmp(a.images, b.images, a.n * px), 0);
    ck_assert_int_eq(memcmp(a.images, c.images, 50 * px), 0);
    for (int t = 1; t < 4; t++) {
        const uint8_t *ca = a.images + (size_t)t * 50 * px, *cc = c.images + (size_t)t * 50 * px;
        ck_assert_int_ne(memcmp(ca, cc, 50 * px), 0);
        /* an image's noise depends on its index and the seed only, not on the other images */
        ck_assert_int_eq(memcmp(ca, small.images + (size_t)t * 7 * px, 7 * px), 0);
    }
    /* large sets are split over threads: the split differs with the size (and the machine),
     * the bytes do not */
    cnnelm_dataset big, part;
    random_set(&big, 2000, 28, 28, 0, 255, 5);
    random_set(&part, 1500, 28, 28, 0, 255, 5); /* its first 1500 images */
    ck_assert_int_eq(cnnelm_dataset_add_noise(&big, all, 42, &err), 0);
    ck_assert_int_eq(cnnelm_dataset_add_noise(&part, all, 42, &err), 0);
    for (int t = 1; t < 4; t++)
        ck_assert_int_eq(memcmp(big.images + (size_t)t * 2000 * 784, part.images + (size_t)t * 1500 * 784,
                                1500 * 784), 0);
    cnnelm_dataset_free(&big);
    cnnelm_dataset_free(&part);

    /* the noise types draw from different streams */
    ck_assert_int_ne(memcmp(a.images + 50 * px, a.images + 100 * px, 50 * px), 0);

    /* pinned values: the noise is part of the data's definition (same on every platform) */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < a.n * px; i++)
        h = (h ^ a.images[i]) * 1099511628211ull;
    ck_assert_msg(h == 0xff361bd75de72f67ull || getenv("CNNELM_PRINT_HASH"), "hash %#llx",
                  (unsigned long long)h);
    if (getenv("CNNELM_PRINT_HASH"))
        printf("noise hash %#llx\n", (unsigned long long)h);
    cnnelm_dataset_free(&a);
    cnnelm_dataset_free(&b);
    cnnelm_dataset_free(&c);
    cnnelm_dataset_free(&small);
}
END_TEST

START_TEST(load_config_extend)
{
    write_sources();
    cnnelm_config cfg;
    cnnelm_error err = {""};
    ck_assert_msg(load_cfg(&cfg, sources_text(" extend = [\"poisson\", \"gaussian\"];\n"), NULL, 0, &err) == 0,
                  "%s", err.msg);
    ck_assert_uint_eq(cfg.data.extend, CNNELM_NOISE_GAUSSIAN | CNNELM_NOISE_POISSON);
    cnnelm_dataset tr, te;
    ck_assert_msg(load_set(&tr, &cfg, 0, 256, &err) == 0, "%s", err.msg);
    ck_assert_msg(load_set(&te, &cfg, 1, 6, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(tr.n, 27);
    ck_assert_uint_eq(te.n, 9);
    const uint8_t want_l[] = {0, 1, 2, 1, 4, 3, 5, 5, 5}, want_s[] = {0, 0, 0, 0, 1, 1, 2, 2, 2};
    for (size_t i = 0; i < tr.n; i++) {
        ck_assert_uint_eq(tr.labels[i], want_l[i % 9]);
        ck_assert_uint_eq(tr.source[i], want_s[i % 9]);
    }
    const uint8_t want_tl[] = {2, 0, 4};
    for (size_t i = 0; i < te.n; i++)
        ck_assert_uint_eq(te.labels[i], want_tl[i % 3]);
    cnnelm_dataset_free(&tr);
    cnnelm_dataset_free(&te);
    cnnelm_config_free(&cfg);
}
END_TEST

/* Runs cnnelm_run_extend with its path lines written into `out`. */
static int run_extend_captured(const char *cfg_path, const char *const *ov, int n_ov, const char *out_dir,
                               char *out, size_t out_size, cnnelm_error *err)
{
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    int rc = cnnelm_run_extend(cfg_path, ov, n_ov, out_dir, 1, f, err);
    rewind(f);
    size_t n = fread(out, 1, out_size - 1, f);
    out[n] = 0;
    fclose(f);
    return rc;
}

START_TEST(run_extend_round_trip)
{
    write_sources();
    cnnelm_config cfg;
    cnnelm_error err = {""};
    const char *ov[] = {"data.extend=[\"gaussian\",\"salt_pepper\",\"poisson\"]", "train.seed=77"};
    ck_assert_msg(load_cfg(&cfg, sources_text(""), ov, 2, &err) == 0, "%s", err.msg);
    const char *out = in_dir("ext/nested");
    char printed[4096];
    ck_assert_msg(run_extend_captured(in_dir("run.cfg"), ov, 2, out, printed, sizeof printed, &err) == 0,
                  "%s", err.msg);
    const char *names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    char want[4096] = "";
    for (int i = 0; i < 4; i++) {
        char line[700];
        snprintf(line, sizeof line, "%s/%s\n", out, names[i]);
        strcat(want, line);
    }
    ck_assert_str_eq(printed, want);

    for (int t = 0; t < 2; t++) {
        cnnelm_dataset built, read;
        ck_assert_msg(load_set(&built, &cfg, t, t ? 6 : 256, &err) == 0, "%s", err.msg);
        char pi[700], pl[700];
        snprintf(pi, sizeof pi, "%s/%s", out, names[2 * t]);
        snprintf(pl, sizeof pl, "%s/%s", out, names[2 * t + 1]);
        ck_assert_msg(cnnelm_dataset_load(&read, pi, pl, 256, 0, &err) == 0, "%s", err.msg);
        ck_assert_uint_eq(read.n, t ? 12 : 36);
        ck_assert_uint_eq(read.n, built.n);
        ck_assert_int_eq(read.rows, built.rows);
        ck_assert_int_eq(read.cols, built.cols);
        ck_assert_int_eq(memcmp(read.images, built.images, built.n * 12), 0);
        ck_assert_int_eq(memcmp(read.labels, built.labels, built.n), 0);
        cnnelm_dataset_free(&built);
        cnnelm_dataset_free(&read);
    }
    cnnelm_config_free(&cfg);

    /* the output directory cannot be made: a file is in the way */
    FILE *f = fopen(in_dir("blocker"), "w");
    fclose(f);
    ck_assert_int_ne(run_extend_captured(in_dir("run.cfg"), ov, 2, in_dir("blocker/x"), printed,
                                         sizeof printed, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "cannot create directory"));
    ck_assert_str_eq(printed, "");
    /* a bad config */
    const char *bad[] = {"data.extend=[\"speckle\"]"};
    ck_assert_int_ne(run_extend_captured(in_dir("run.cfg"), bad, 1, out, printed, sizeof printed, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "data.extend[0] is not one of"));
}
END_TEST

static Suite *dataset_build_suite(void)
{
    Suite *s = suite_create("dataset_build");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, sources_concatenated);
    tcase_add_test(tc, source_errors);
    tcase_add_test(tc, single_source);
    tcase_add_test(tc, extend_counts_and_labels);
    tcase_add_test(tc, noise_levels);
    tcase_add_test(tc, noise_seeding);
    tcase_add_test(tc, load_config_extend);
    tcase_add_test(tc, run_extend_round_trip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(dataset_build_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
