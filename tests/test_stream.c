/* Tests of streamed data sets: cnnelm_dataset_fetch on a streamed set gives the bytes of the
 * same set held in memory (data.stream = false, the pre-streaming path) for raw and gzipped
 * IDX, data.sources, data.extend (each noise type and all three), data.shards and random row
 * orders; shards are opened only when fetched; the errors (a truncated file, a missing shard, a
 * file cut short while in use, a cache directory that cannot be written); the streamed extend
 * writer; and a training run whose model file is byte-identical either way. */
#define _XOPEN_SOURCE 700

#include <check.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "data/dataset_stream.h"
#include "data/idx_stream.h"
#include "base/rng.h"

static char dir[256];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/cnnelm_test_stream.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    setenv("XDG_CACHE_HOME", dir, 1);
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

/* NAME-images-idx3-ubyte(.gz) with n random images of rows x cols and NAME-labels-idx1-ubyte(.gz)
 * with labels i % classes (every class present when n >= classes). */
static void write_random_set(const char *name, size_t n, int rows, int cols, int classes, int gz,
                             uint64_t seed)
{
    size_t px = (size_t)rows * cols;
    uint8_t *img = malloc(n * px), *lab = malloc(n);
    cnnelm_rng r;
    cnnelm_rng_seed(&r, seed, 99);
    for (size_t i = 0; i < n * px; i++)
        img[i] = (uint8_t)cnnelm_rng_below(&r, 256);
    for (size_t i = 0; i < n; i++)
        lab[i] = (uint8_t)(i % (size_t)classes);
    char p[600];
    cnnelm_error err = {""};
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte%s", dir, name, gz ? ".gz" : "");
    ck_assert_msg(cnnelm_idx_write_images(p, img, n, rows, cols, &err) == 0, "%s", err.msg);
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte%s", dir, name, gz ? ".gz" : "");
    ck_assert_msg(cnnelm_idx_write_labels(p, lab, n, &err) == 0, "%s", err.msg);
    free(img);
    free(lab);
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

/* A random order of n rows with repeats (a row may come twice, runs of consecutive rows too). */
static size_t *random_rows(size_t n, size_t count, uint64_t seed)
{
    size_t *rows = malloc(count * sizeof *rows);
    cnnelm_rng r;
    cnnelm_rng_seed(&r, seed, 7);
    for (size_t i = 0; i < count; i++) {
        if (i > 0 && cnnelm_rng_below(&r, 4) == 0 && rows[i - 1] + 1 < n)
            rows[i] = rows[i - 1] + 1; /* a run: one read for several rows */
        else
            rows[i] = (size_t)cnnelm_rng_below(&r, n);
    }
    return rows;
}

/* The streamed set (ds) fetched in random orders and chunk sizes equals the in-memory one. */
static void assert_same_set(const cnnelm_dataset *ds, const cnnelm_dataset *mem)
{
    ck_assert_ptr_nonnull(ds->stream);
    ck_assert_ptr_null(ds->images);
    ck_assert_ptr_nonnull(mem->images);
    ck_assert_uint_eq(ds->n, mem->n);
    ck_assert_int_eq(ds->rows, mem->rows);
    ck_assert_int_eq(ds->cols, mem->cols);
    ck_assert_int_eq(ds->classes, mem->classes);
    ck_assert_int_eq(ds->n_sources, mem->n_sources);
    ck_assert_int_eq(memcmp(ds->labels, mem->labels, ds->n), 0);
    ck_assert((ds->source == NULL) == (mem->source == NULL));
    if (ds->source)
        ck_assert_int_eq(memcmp(ds->source, mem->source, ds->n), 0);
    size_t px = cnnelm_dataset_example_bytes(ds), count = 3 * ds->n;
    size_t *rows = random_rows(ds->n, count, ds->n);
    uint8_t *got = malloc(count * px);
    cnnelm_error err = {""};
    cnnelm_rng r;
    cnnelm_rng_seed(&r, 5, 5);
    for (size_t at = 0; at < count;) {
        size_t m = 1 + (size_t)cnnelm_rng_below(&r, 97);
        if (m > count - at)
            m = count - at;
        ck_assert_msg(cnnelm_dataset_fetch(ds, rows, at, m, got + at * px, &err) == 0, "%s", err.msg);
        at += m;
    }
    for (size_t i = 0; i < count; i++)
        if (memcmp(got + i * px, mem->images + rows[i] * px, px) != 0)
            ck_abort_msg("row %zu (position %zu) differs from the in-memory set", rows[i], i);
    /* and all of it in order, rows NULL */
    uint8_t *all = malloc(ds->n * px);
    ck_assert_msg(cnnelm_dataset_fetch(ds, NULL, 0, ds->n, all, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(memcmp(all, mem->images, ds->n * px), 0);
    free(all);
    free(got);
    free(rows);
}

/* Loads the set `text` + overrides describe streamed (files read whole, data.hold_mb, or row by
 * row, hold_mb = 0) and in memory, and compares them. */
static void compare_config_hold(const char *text, const char *const *ov, int n_ov, int test, const char *hold)
{
    const char *o[16];
    for (int i = 0; i < n_ov; i++)
        o[i] = ov[i];
    cnnelm_config cs, cm;
    cnnelm_error err = {""};
    o[n_ov] = "data.stream=true";
    o[n_ov + 1] = hold;
    ck_assert_msg(load_cfg(&cs, text, o, n_ov + 2, &err) == 0, "%s", err.msg);
    o[n_ov] = "data.stream=false";
    ck_assert_msg(load_cfg(&cm, text, o, n_ov + 1, &err) == 0, "%s", err.msg);
    cnnelm_dataset ds, mem;
    ck_assert_msg(cnnelm_dataset_load_config(&ds, &cs, 0, 256, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_dataset_load_config(&mem, &cm, 0, 256, &err) == 0, "%s", err.msg);
    assert_same_set(&ds, &mem);
    if (test) {
        cnnelm_dataset ts, tm;
        ck_assert_msg(cnnelm_dataset_load_config(&ts, &cs, 1, ds.classes, &err) == 0, "%s", err.msg);
        ck_assert_msg(cnnelm_dataset_load_config(&tm, &cm, 1, ds.classes, &err) == 0, "%s", err.msg);
        assert_same_set(&ts, &tm);
        cnnelm_dataset_free(&ts);
        cnnelm_dataset_free(&tm);
    }
    cnnelm_dataset_free(&ds);
    cnnelm_dataset_free(&mem);
    cnnelm_config_free(&cs);
    cnnelm_config_free(&cm);
}

static void compare_config(const char *text, const char *const *ov, int n_ov, int test)
{
    compare_config_hold(text, ov, n_ov, test, "data.hold_mb=0");
    compare_config_hold(text, ov, n_ov, test, "data.hold_mb=512");
}

static const char *single_text(const char *train, const char *test)
{
    static char text[4096];
    snprintf(text, sizeof text,
             "data = { train_images = \"%s/%s-images-idx3-ubyte%s\"; train_labels = \"%s/%s-labels-idx1-ubyte%s\";\n"
             "  test_images = \"%s/%s-images-idx3-ubyte%s\"; test_labels = \"%s/%s-labels-idx1-ubyte%s\";\n"
             "  cache_dir = \"%s/cache\"; };\n",
             dir, train, strstr(train, "gz") ? ".gz" : "", dir, train, strstr(train, "gz") ? ".gz" : "",
             dir, test, strstr(test, "gz") ? ".gz" : "", dir, test, strstr(test, "gz") ? ".gz" : "", dir);
    return text;
}

START_TEST(fetch_raw_and_gz)
{
    write_random_set("raw", 300, 7, 5, 4, 0, 1);
    write_random_set("gz", 250, 7, 5, 4, 1, 2);
    compare_config(single_text("raw", "gz"), NULL, 0, 1);
    compare_config(single_text("gz", "raw"), NULL, 0, 1);
    const char *limit[] = {"data.train_limit=123", "data.test_limit=7"};
    compare_config(single_text("gz", "raw"), limit, 2, 1);
    /* the decompressed copy is in data.cache_dir, named after the file */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls %s/cache/gz-images-idx3-ubyte-*.idx >/dev/null 2>&1", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* data.hold_mb: a file that fits is read whole at the first fetch (later rows come from memory,
 * so a rewrite of the file after it is not seen), and says so to the memory plan; with 0 every
 * fetch reads the file. */
START_TEST(hold_reads_file_once)
{
    for (int hold = 0; hold <= 1; hold++) {
        write_random_set("raw", 120, 6, 5, 3, 0, 1);
        const char *o[] = { hold ? "data.hold_mb=1" : "data.hold_mb=0" };
        cnnelm_config cfg;
        cnnelm_error err = {""};
        ck_assert_msg(load_cfg(&cfg, single_text("raw", "raw"), o, 1, &err) == 0, "%s", err.msg);
        cnnelm_dataset ds;
        ck_assert_msg(cnnelm_dataset_load_config(&ds, &cfg, 0, 256, &err) == 0, "%s", err.msg);
        size_t px = cnnelm_dataset_example_bytes(&ds), r0 = 3, r1 = 77;
        /* what the memory plan is told the hold will take, before any fetch */
        ck_assert_uint_eq(cnnelm_stream_hold_bytes(ds.stream), hold ? 120 * px : 0);
        uint8_t before[64], after[64];
        ck_assert_msg(cnnelm_dataset_fetch(&ds, &r0, 0, 1, before, &err) == 0, "%s", err.msg);
        ck_assert_msg(cnnelm_dataset_fetch(&ds, &r1, 0, 1, before, &err) == 0, "%s", err.msg);
        /* overwrite row 77's bytes in place (same size) */
        FILE *f = fopen(in_dir("raw-images-idx3-ubyte"), "r+b");
        ck_assert_ptr_nonnull(f);
        fseek(f, 16 + (long)(r1 * px), SEEK_SET);
        for (size_t i = 0; i < px; i++)
            fputc((before[i] + 1) & 0xff, f);
        fclose(f);
        ck_assert_msg(cnnelm_dataset_fetch(&ds, &r1, 0, 1, after, &err) == 0, "%s", err.msg);
        if (hold)
            ck_assert_msg(memcmp(before, after, px) == 0, "a held file was read again");
        else
            ck_assert_msg(memcmp(before, after, px) != 0, "hold_mb = 0 did not read the file");
        cnnelm_dataset_free(&ds);
        cnnelm_config_free(&cfg);
    }
}
END_TEST

START_TEST(fetch_extend_each_noise)
{
    write_random_set("raw", 200, 6, 6, 3, 0, 3);
    write_random_set("gz", 90, 6, 6, 3, 1, 4);
    const char *types[] = {"data.extend=[\"gaussian\"]", "data.extend=[\"salt_pepper\"]",
                           "data.extend=[\"poisson\"]",
                           "data.extend=[\"gaussian\",\"salt_pepper\",\"poisson\"]"};
    for (int t = 0; t < 4; t++) {
        const char *ov[] = {types[t], "train.seed=11"};
        compare_config(single_text("raw", "gz"), ov, 2, 1);
    }
}
END_TEST

START_TEST(fetch_sources)
{
    write_random_set("a", 40, 4, 4, 3, 1, 5);
    write_random_set("at", 10, 4, 4, 3, 0, 6);
    write_random_set("b", 33, 4, 4, 2, 0, 7);
    write_random_set("c", 21, 4, 4, 4, 1, 8);
    write_random_set("ct", 9, 4, 4, 4, 1, 9);
    static char text[8192];
    snprintf(text, sizeof text,
             "data = { cache_dir = \"%s/cache\"; sources = (\n"
             "  { train_images = \"%s/a-images-idx3-ubyte.gz\"; train_labels = \"%s/a-labels-idx1-ubyte.gz\";\n"
             "    test_images = \"%s/at-images-idx3-ubyte\"; test_labels = \"%s/at-labels-idx1-ubyte\"; },\n"
             "  { train_images = \"%s/b-images-idx3-ubyte\"; train_labels = \"%s/b-labels-idx1-ubyte\"; },\n"
             "  { train_images = \"%s/c-images-idx3-ubyte.gz\"; train_labels = \"%s/c-labels-idx1-ubyte.gz\";\n"
             "    test_images = \"%s/ct-images-idx3-ubyte.gz\"; test_labels = \"%s/ct-labels-idx1-ubyte.gz\"; }\n"
             " ); };\n",
             dir, dir, dir, dir, dir, dir, dir, dir, dir, dir, dir);
    compare_config(text, NULL, 0, 1);
    const char *ov[] = {"data.extend=[\"poisson\",\"gaussian\"]", "data.train_limit=25"};
    compare_config(text, ov, 2, 1);
}
END_TEST

/* S shards "shard-NN" of n_each images; returns the glob. */
static const char *write_shards(int S, size_t n_each, int gz)
{
    for (int s = 0; s < S; s++) {
        char name[32];
        snprintf(name, sizeof name, "shard-%02d", s);
        write_random_set(name, n_each + (size_t)s, 5, 4, 3, gz, 100 + (uint64_t)s);
    }
    static char pattern[600];
    snprintf(pattern, sizeof pattern, "%s/shard-*-images-idx3-ubyte%s", dir, gz ? ".gz" : "");
    return pattern;
}

START_TEST(fetch_shards)
{
    const char *pattern = write_shards(6, 20, _i);
    /* the reference: the shards' files read in memory one by one, in name order */
    size_t total = 0;
    for (int s = 0; s < 6; s++)
        total += 20 + (size_t)s;
    cnnelm_dataset mem;
    memset(&mem, 0, sizeof mem);
    uint8_t *images = malloc(total * 20), *labels = malloc(total);
    size_t at = 0;
    cnnelm_error err = {""};
    for (int s = 0; s < 6; s++) {
        char pi[600], pl[600];
        snprintf(pi, sizeof pi, "%s/shard-%02d-images-idx3-ubyte%s", dir, s, _i ? ".gz" : "");
        snprintf(pl, sizeof pl, "%s/shard-%02d-labels-idx1-ubyte%s", dir, s, _i ? ".gz" : "");
        cnnelm_dataset one;
        ck_assert_msg(cnnelm_dataset_load(&one, pi, pl, 256, 0, &err) == 0, "%s", err.msg);
        memcpy(images + at * 20, one.images, one.n * 20);
        memcpy(labels + at, one.labels, one.n);
        at += one.n;
        cnnelm_dataset_free(&one);
    }
    mem.images = images;
    mem.labels = labels;
    mem.n = total;
    mem.rows = 5;
    mem.cols = 4;
    mem.classes = 3;

    static char text[2048];
    snprintf(text, sizeof text, "data = { shards = \"%s\"; cache_dir = \"%s/cache\"; };\n", pattern, dir);
    cnnelm_config cfg;
    ck_assert_msg(load_cfg(&cfg, text, NULL, 0, &err) == 0, "%s", err.msg);
    cnnelm_dataset ds;
    ck_assert_msg(cnnelm_dataset_load_config(&ds, &cfg, 0, 256, &err) == 0, "%s", err.msg);
    /* only the first shard's header was read at load: the others are opened when fetched */
    ck_assert_int_eq(cnnelm_stream_files_opened(ds.stream), 0);
    assert_same_set(&ds, &mem);
    ck_assert_int_eq(cnnelm_stream_files_opened(ds.stream), 6);
    cnnelm_dataset_free(&ds);
    cnnelm_config_free(&cfg);

    /* by-source: 3 partitions over 6 shards, 2 shards each in order */
    const char *ov[] = {"train.partitioning=\"by-source\"", "train.partitions=3"};
    ck_assert_msg(load_cfg(&cfg, text, ov, 2, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_dataset_load_config(&ds, &cfg, 0, 256, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ds.n_sources, 3);
    ck_assert_ptr_nonnull(ds.source);
    at = 0;
    for (int s = 0; s < 6; s++)
        for (size_t i = 0; i < 20 + (size_t)s; i++)
            ck_assert_uint_eq(ds.source[at++], (unsigned)(s / 2));
    cnnelm_dataset_free(&ds);
    cnnelm_config_free(&cfg);
    /* more partitions than shards */
    const char *ov2[] = {"train.partitioning=\"by-source\"", "train.partitions=7"};
    ck_assert_msg(load_cfg(&cfg, text, ov2, 2, &err) == 0, "%s", err.msg);
    ck_assert_int_ne(cnnelm_dataset_load_config(&ds, &cfg, 0, 256, &err), 0);
    ck_assert_msg(strstr(err.msg, "7") && strstr(err.msg, "6 shards"), "%s", err.msg);
    cnnelm_config_free(&cfg);
    free(images);
    free(labels);
}
END_TEST

/* A shard whose images cannot be opened fails only the fetch that needs it. */
START_TEST(shard_opened_only_when_fetched)
{
    const char *pattern = write_shards(4, 10, 1);
    ck_assert_int_eq(unlink(in_dir("shard-02-images-idx3-ubyte.gz")), 0);
    /* the glob matches image files: keep shard 2 in the list through a dangling link */
    ck_assert_int_eq(symlink(in_dir("gone.gz"), in_dir("shard-02-images-idx3-ubyte.gz")), 0);
    static char text[2048];
    snprintf(text, sizeof text, "data = { shards = \"%s\"; cache_dir = \"%s/cache\"; };\n", pattern, dir);
    cnnelm_config cfg;
    cnnelm_error err = {""};
    ck_assert_msg(load_cfg(&cfg, text, NULL, 0, &err) == 0, "%s", err.msg);
    cnnelm_dataset ds;
    ck_assert_msg(cnnelm_dataset_load_config(&ds, &cfg, 0, 256, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(ds.n, 10 + 11 + 12 + 13);
    uint8_t buf[40 * 20];
    /* rows of shards 0, 1 and 3 only: fine */
    size_t rows[] = {0, 9, 10, 20, 33, 45, 1};
    ck_assert_msg(cnnelm_dataset_fetch(&ds, rows, 0, 7, buf, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(cnnelm_stream_files_opened(ds.stream), 3);
    /* a row of shard 2: one line naming the file, every time */
    size_t bad[] = {21 + 5};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_ne(cnnelm_dataset_fetch(&ds, bad, 0, 1, buf, &err), 0);
        ck_assert_msg(strstr(err.msg, "shard-02-images-idx3-ubyte.gz: cannot open") != NULL, "%s", err.msg);
        ck_assert_ptr_null(strchr(err.msg, '\n'));
    }
    cnnelm_dataset_free(&ds);
    cnnelm_config_free(&cfg);
}
END_TEST

START_TEST(shard_errors)
{
    const char *pattern = write_shards(3, 10, 0);
    static char text[2048];
    cnnelm_config cfg;
    cnnelm_error err = {""};
    cnnelm_dataset ds;
    /* a shard's labels missing: at load, naming the file */
    ck_assert_int_eq(unlink(in_dir("shard-01-labels-idx1-ubyte")), 0);
    snprintf(text, sizeof text, "data = { shards = \"%s\"; };\n", pattern);
    ck_assert_msg(load_cfg(&cfg, text, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_ne(cnnelm_dataset_load_config(&ds, &cfg, 0, 256, &err), 0);
    ck_assert_msg(strstr(err.msg, "shard-01-labels-idx1-ubyte: cannot open") != NULL, "%s", err.msg);
    cnnelm_config_free(&cfg);
    /* a pattern that matches nothing */
    snprintf(text, sizeof text, "data = { shards = \"%s/nothing-*-images\"; };\n", dir);
    ck_assert_msg(load_cfg(&cfg, text, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_ne(cnnelm_dataset_load_config(&ds, &cfg, 0, 256, &err), 0);
    ck_assert_msg(strstr(err.msg, "matches no file") != NULL, "%s", err.msg);
    cnnelm_config_free(&cfg);
    /* shards and train_images together */
    snprintf(text, sizeof text, "data = { shards = \"%s\"; train_images = \"x\"; train_labels = \"y\"; };\n",
             pattern);
    ck_assert_msg(load_cfg(&cfg, text, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_ne(cnnelm_dataset_load_config(&ds, &cfg, 0, 256, &err), 0);
    ck_assert_msg(strstr(err.msg, "data.shards replaces") != NULL, "%s", err.msg);
    cnnelm_config_free(&cfg);
    /* a shard of another image size: when it is opened */
    write_random_set("shard-01", 11, 6, 6, 3, 0, 1);
    snprintf(text, sizeof text, "data = { shards = \"%s\"; };\n", pattern);
    ck_assert_msg(load_cfg(&cfg, text, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_dataset_load_config(&ds, &cfg, 0, 256, &err) == 0, "%s", err.msg);
    size_t row = 12;
    uint8_t buf[64];
    ck_assert_int_ne(cnnelm_dataset_fetch(&ds, &row, 0, 1, buf, &err), 0);
    ck_assert_msg(strstr(err.msg, "shard-01-images-idx3-ubyte: images are 1x6x6") != NULL, "%s", err.msg);
    cnnelm_dataset_free(&ds);
    cnnelm_config_free(&cfg);
    /* a pattern that also matches the test set's images */
    snprintf(text, sizeof text, "data = { shards = \"%s\"; test_images = \"%s\"; test_labels = \"%s\"; };\n",
             pattern, in_dir("shard-02-images-idx3-ubyte"), in_dir("shard-02-labels-idx1-ubyte"));
    ck_assert_msg(load_cfg(&cfg, text, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_ne(cnnelm_dataset_load_config(&ds, &cfg, 0, 256, &err), 0);
    ck_assert_msg(strstr(err.msg, "shard-02-images-idx3-ubyte, which is data.test_images") != NULL, "%s",
                  err.msg);
    cnnelm_config_free(&cfg);
}
END_TEST

/* data.max_bytes bounds gzipped shards as it bounds data.train_images: a label file that
 * announces more at load, an image file when it is opened (before its copy is made). */
START_TEST(shard_max_bytes)
{
    const char *pattern = write_shards(3, 10, 1); /* 10, 11, 12 images of 5x4: 200, 220, 240 bytes */
    static char text[2048];
    cnnelm_config cfg;
    cnnelm_error err = {""};
    cnnelm_dataset ds;
    snprintf(text, sizeof text, "data = { shards = \"%s\"; max_bytes = 230; };\n", pattern);
    ck_assert_msg(load_cfg(&cfg, text, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_dataset_load_config(&ds, &cfg, 0, 256, &err) == 0, "%s", err.msg);
    uint8_t buf[20];
    size_t row = 10 + 11 - 1; /* the last of shard-01: 220 bytes, allowed */
    ck_assert_msg(cnnelm_dataset_fetch(&ds, &row, 0, 1, buf, &err) == 0, "%s", err.msg);
    row = 10 + 11; /* the first of shard-02: 240 bytes */
    ck_assert_int_ne(cnnelm_dataset_fetch(&ds, &row, 0, 1, buf, &err), 0);
    ck_assert_msg(strstr(err.msg, "shard-02-images-idx3-ubyte.gz: header says 12 images") &&
                  strstr(err.msg, "data.max_bytes (230 bytes)"), "%s", err.msg);
    ck_assert_int_eq(cnnelm_stream_files_opened(ds.stream), 1);
    cnnelm_dataset_free(&ds);
    cnnelm_config_free(&cfg);
    snprintf(text, sizeof text, "data = { shards = \"%s\"; max_bytes = 11; };\n", pattern);
    ck_assert_msg(load_cfg(&cfg, text, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_ne(cnnelm_dataset_load_config(&ds, &cfg, 0, 256, &err), 0);
    ck_assert_msg(strstr(err.msg, "shard-02-labels-idx1-ubyte.gz: header says 12 labels"), "%s", err.msg);
    cnnelm_config_free(&cfg);
}
END_TEST

static void truncate_file(const char *path, off_t keep)
{
    ck_assert_int_eq(truncate(path, keep), 0);
}

START_TEST(truncated_files)
{
    cnnelm_config cfg;
    cnnelm_error err = {""};
    cnnelm_dataset ds;
    /* raw: found from the header and the file size, at load */
    write_random_set("raw", 50, 4, 4, 2, 0, 1);
    write_random_set("gz", 50, 4, 4, 2, 1, 2);
    truncate_file(in_dir("raw-images-idx3-ubyte"), 16 + 49 * 16 + 3);
    ck_assert_msg(load_cfg(&cfg, single_text("raw", "gz"), NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_ne(cnnelm_dataset_load_config(&ds, &cfg, 0, 256, &err), 0);
    ck_assert_msg(strstr(err.msg, "raw-images-idx3-ubyte: truncated") != NULL, "%s", err.msg);
    cnnelm_config_free(&cfg);
    /* gzip cut short: found while decompressing to the cache, at load; no cache file is left */
    struct stat st;
    ck_assert_int_eq(stat(in_dir("gz-images-idx3-ubyte.gz"), &st), 0);
    truncate_file(in_dir("gz-images-idx3-ubyte.gz"), st.st_size / 2);
    ck_assert_msg(load_cfg(&cfg, single_text("gz", "gz"), NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_ne(cnnelm_dataset_load_config(&ds, &cfg, 0, 256, &err), 0);
    ck_assert_msg(strstr(err.msg, "gz-images-idx3-ubyte.gz: truncated") != NULL, "%s", err.msg);
    ck_assert_ptr_null(strchr(err.msg, '\n'));
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls %s/cache/gz-images-* >/dev/null 2>&1", dir);
    ck_assert_int_ne(system(cmd), 0);
    cnnelm_config_free(&cfg);
    /* a raw file cut short while in use: the fetch says so */
    write_random_set("raw", 50, 4, 4, 2, 0, 1);
    write_random_set("gz", 50, 4, 4, 2, 1, 2);
    ck_assert_msg(load_cfg(&cfg, single_text("raw", "gz"), NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_dataset_load_config(&ds, &cfg, 0, 256, &err) == 0, "%s", err.msg);
    truncate_file(in_dir("raw-images-idx3-ubyte"), 16 + 10 * 16);
    size_t row = 40;
    uint8_t buf[16];
    ck_assert_int_ne(cnnelm_dataset_fetch(&ds, &row, 0, 1, buf, &err), 0);
    ck_assert_msg(strstr(err.msg, "raw-images-idx3-ubyte: the file was truncated while in use") != NULL,
                  "%s", err.msg);
    cnnelm_dataset_free(&ds);
    cnnelm_config_free(&cfg);

    /* gzip with data after the payload: refused at load, naming the file */
    write_random_set("raw", 50, 4, 4, 2, 0, 1);
    FILE *f = fopen(in_dir("raw-images-idx3-ubyte"), "a");
    fputs("extra", f);
    fclose(f);
    char cmd2[1400];
    snprintf(cmd2, sizeof cmd2, "gzip -c %s > %s", in_dir("raw-images-idx3-ubyte"),
             in_dir("gz-images-idx3-ubyte.gz"));
    ck_assert_int_eq(system(cmd2), 0);
    ck_assert_msg(load_cfg(&cfg, single_text("gz", "gz"), NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_ne(cnnelm_dataset_load_config(&ds, &cfg, 0, 256, &err), 0);
    ck_assert_msg(strstr(err.msg, "gz-images-idx3-ubyte.gz: header says 50 images") &&
                  strstr(err.msg, "trailing data"), "%s", err.msg);
    cnnelm_config_free(&cfg);
}
END_TEST

/* A damaged cached copy (cut short) is made again, and gives the same bytes. */
START_TEST(cache_copy_remade)
{
    write_random_set("gz", 80, 6, 5, 3, 1, 12);
    write_random_set("raw", 10, 6, 5, 3, 0, 13);
    compare_config(single_text("gz", "raw"), NULL, 0, 0);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "f=$(ls %s/cache/gz-images-idx3-ubyte-*.idx) && truncate -s 500 \"$f\"", dir);
    ck_assert_int_eq(system(cmd), 0);
    compare_config(single_text("gz", "raw"), NULL, 0, 0);
    snprintf(cmd, sizeof cmd, "test $(stat -c %%s %s/cache/gz-images-idx3-ubyte-*.idx) -eq %d", dir, 16 + 80 * 30);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* A cache directory that cannot be created: a temporary file instead, with a one-line note,
 * and the same bytes. */
START_TEST(cache_dir_unwritable)
{
    write_random_set("gz", 64, 5, 5, 3, 1, 3);
    write_random_set("raw", 20, 5, 5, 3, 0, 4);
    FILE *f = fopen(in_dir("blocker"), "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    static char text[4096];
    snprintf(text, sizeof text, "%s", single_text("gz", "raw"));
    /* the cache directory would be under a regular file */
    char *at = strstr(text, "cache_dir = \"");
    ck_assert_ptr_nonnull(at);
    snprintf(at, sizeof text - (size_t)(at - text), "cache_dir = \"%s/blocker/cache\"; };\n", dir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(in_dir("stderr.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    const char *ov[] = {"data.extend=[\"gaussian\"]"};
    compare_config_hold(text, ov, 1, 0, "data.hold_mb=0"); /* loaded once: one note */
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char note[2048] = "";
    f = fopen(in_dir("stderr.txt"), "r");
    size_t n = fread(note, 1, sizeof note - 1, f);
    note[n] = 0;
    fclose(f);
    ck_assert_msg(strstr(note, "gz-images-idx3-ubyte.gz: decompression cache not used") != NULL, "%s", note);
    ck_assert_msg(strstr(note, "temporary file") != NULL, "%s", note);
    ck_assert_ptr_eq(strchr(note, '\n'), note + strlen(note) - 1); /* one line */
}
END_TEST

/* The streamed writer gives the bytes of the one-shot writer (raw and gzip). */
START_TEST(writer_same_bytes)
{
    size_t n = 3000, px = 28 * 28;
    uint8_t *img = malloc(n * px);
    cnnelm_rng r;
    cnnelm_rng_seed(&r, 3, 3);
    for (size_t i = 0; i < n * px; i++)
        img[i] = (uint8_t)(cnnelm_rng_below(&r, 8) * 30); /* compressible, like images */
    cnnelm_error err = {""};
    for (int gz = 0; gz < 2; gz++) {
        char a[600], b[600];
        snprintf(a, sizeof a, "%s/once%s", dir, gz ? ".gz" : "");
        snprintf(b, sizeof b, "%s/chunked%s", dir, gz ? ".gz" : "");
        ck_assert_msg(cnnelm_idx_write_images(a, img, n, 28, 28, &err) == 0, "%s", err.msg);
        cnnelm_idx_writer w;
        ck_assert_msg(cnnelm_idx_writer_open(&w, b, n, 1, 28, 28, &err) == 0, "%s", err.msg);
        for (size_t at = 0; at < n; at += 777) {
            size_t m = n - at < 777 ? n - at : 777;
            ck_assert_msg(cnnelm_idx_writer_put(&w, img + at * px, m * px, &err) == 0, "%s", err.msg);
        }
        ck_assert_msg(cnnelm_idx_writer_commit(&w, &err) == 0, "%s", err.msg);
        char cmd[1300];
        snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
        ck_assert_msg(system(cmd) == 0, "%s and %s differ", a, b);
    }
    /* and for colour images (the 4-dimension header), from the same header code */
    for (int gz = 0; gz < 2; gz++) {
        char a[600], b[600];
        snprintf(a, sizeof a, "%s/once-c%s", dir, gz ? ".gz" : "");
        snprintf(b, sizeof b, "%s/chunked-c%s", dir, gz ? ".gz" : "");
        size_t nc = n / 3, pc = 3 * px;
        ck_assert_msg(cnnelm_idx_write_images_c(a, img, nc, 3, 28, 28, &err) == 0, "%s", err.msg);
        cnnelm_idx_writer w;
        ck_assert_msg(cnnelm_idx_writer_open(&w, b, nc, 3, 28, 28, &err) == 0, "%s", err.msg);
        for (size_t at = 0; at < nc; at += 333) {
            size_t m = nc - at < 333 ? nc - at : 333;
            ck_assert_msg(cnnelm_idx_writer_put(&w, img + at * pc, m * pc, &err) == 0, "%s", err.msg);
        }
        ck_assert_msg(cnnelm_idx_writer_commit(&w, &err) == 0, "%s", err.msg);
        char cmd[1300];
        snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
        ck_assert_msg(system(cmd) == 0, "%s and %s differ", a, b);
        cnnelm_idx_info info;
        ck_assert_msg(cnnelm_idx_image_info(a, &info, &err) == 0, "%s", err.msg);
        ck_assert_uint_eq(info.n, nc);
        ck_assert_int_eq(info.channels, 3);
        ck_assert_uint_eq(info.header_bytes, 20);
    }
    /* a payload cut short is refused and leaves no file */
    char c[600];
    snprintf(c, sizeof c, "%s/short", dir);
    cnnelm_idx_writer w;
    ck_assert_int_eq(cnnelm_idx_writer_open(&w, c, 10, 1, 28, 28, &err), 0);
    ck_assert_int_eq(cnnelm_idx_writer_put(&w, img, 9 * px, &err), 0);
    ck_assert_int_ne(cnnelm_idx_writer_commit(&w, &err), 0);
    ck_assert_int_ne(access(c, F_OK), 0);
    free(img);
}
END_TEST

/* A training run on a streamed set writes the byte-identical model of the in-memory set. */
START_TEST(train_same_model)
{
    const char *ti = CNNELM_FASHION_DIR "/train-images-idx3-ubyte.gz";
    if (access(ti, R_OK) != 0) {
        fprintf(stderr, "train_same_model: skipped: %s not found\n", ti);
        return;
    }
    const char *common =
        "-s train.partitions=3 -s 'train.reduce=\"refit\"' -s data.train_limit=1500 -s data.test_limit=300 "
        "-s 'model.layers=\"6c-2s-12c-2s\"' -s train.chunk=128 "
        "-s 'data.extend=[\"gaussian\",\"salt_pepper\",\"poisson\"]'";
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
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("stream");
    TCase *tc = tcase_create("stream");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, fetch_raw_and_gz);
    tcase_add_test(tc, hold_reads_file_once);
    tcase_add_test(tc, fetch_extend_each_noise);
    tcase_add_test(tc, fetch_sources);
    tcase_add_loop_test(tc, fetch_shards, 0, 2);
    tcase_add_test(tc, shard_opened_only_when_fetched);
    tcase_add_test(tc, shard_errors);
    tcase_add_test(tc, shard_max_bytes);
    tcase_add_test(tc, truncated_files);
    tcase_add_test(tc, cache_dir_unwritable);
    tcase_add_test(tc, cache_copy_remade);
    tcase_add_test(tc, writer_same_bytes);
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
