/* Tests of the IDX reader and writer: round trips (raw and gzip), every malformed-file case with
 * its one-line message, limits, atomic writes, and the installed Fashion-MNIST files. */
#define _XOPEN_SOURCE 700

#include <check.h>
#include <dirent.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/atomic_file.h"
#include "cnnelm/dataset.h"

static char dir[256];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/cnnelm_test_idx.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *in_dir(const char *name)
{
    static char buf[8][512]; /* a few names alive at once */
    static int next;
    char *b = buf[next++ % 8];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

/* Writes data as a gzip file made of stored (uncompressed) deflate blocks, so that the test
 * needs no zlib of its own and controls every byte. */
static uint32_t crc32_of(const unsigned char *p, size_t len)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < len; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return c ^ 0xffffffffu;
}

static void write_gz(const char *path, const void *data, size_t len)
{
    const unsigned char *d = data;
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    static const unsigned char head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};
    fwrite(head, 1, sizeof head, f);
    size_t done = 0;
    do {
        size_t n = len - done > 65535 ? 65535 : len - done;
        unsigned char bh[5] = {(unsigned char)(done + n == len), (unsigned char)n, (unsigned char)(n >> 8),
                               (unsigned char)~n, (unsigned char)(~n >> 8)};
        fwrite(bh, 1, 5, f);
        fwrite(d + done, 1, n, f);
        done += n;
    } while (done < len);
    uint32_t crc = crc32_of(d, len), size = (uint32_t)len;
    unsigned char tail[8] = {(unsigned char)crc, (unsigned char)(crc >> 8), (unsigned char)(crc >> 16),
                             (unsigned char)(crc >> 24), (unsigned char)size, (unsigned char)(size >> 8),
                             (unsigned char)(size >> 16), (unsigned char)(size >> 24)};
    fwrite(tail, 1, 8, f);
    ck_assert_int_eq(fclose(f), 0);
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* An IDX image file image in memory: header + payload (+ extra junk bytes), `payload` bytes of
 * payload actually present (may be less than the header claims). */
static unsigned char *image_bytes(uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols,
                                  size_t payload, size_t *len)
{
    unsigned char *b = malloc(16 + payload + 1);
    put_be32(b, magic); put_be32(b + 4, n); put_be32(b + 8, rows); put_be32(b + 12, cols);
    for (size_t i = 0; i < payload; i++) b[16 + i] = (unsigned char)(i * 7 + 3);
    *len = 16 + payload;
    return b;
}

static unsigned char *label_bytes(uint32_t n, size_t payload, int max_label, size_t *len)
{
    unsigned char *b = malloc(8 + payload + 1);
    put_be32(b, 0x801); put_be32(b + 4, n);
    for (size_t i = 0; i < payload; i++) b[8 + i] = (unsigned char)(i % (size_t)(max_label + 1));
    *len = 8 + payload;
    return b;
}

#define ck_assert_msg_has(err, needle) \
    ck_assert_msg(strstr((err).msg, (needle)) != NULL, "message '%s' lacks '%s'", (err).msg, (needle))

static void random_bytes(uint8_t *p, size_t n, unsigned seed, int mod)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)((seed >> 16) % (unsigned)mod);
    }
}

static void round_trip(const char *img_name, const char *lab_name)
{
    enum { N = 37, R = 5, C = 3 };
    uint8_t img[N * R * C], lab[N];
    random_bytes(img, sizeof img, 11, 256);
    random_bytes(lab, sizeof lab, 12, 7);
    lab[5] = 6; /* so classes = 7 */
    cnnelm_error err = {""};
    const char *ip = in_dir(img_name), *lp = in_dir(lab_name);
    ck_assert_int_eq(cnnelm_idx_write_images(ip, img, N, R, C, &err), 0);
    ck_assert_int_eq(cnnelm_idx_write_labels(lp, lab, N, &err), 0);
    cnnelm_dataset ds;
    ck_assert_msg(cnnelm_dataset_load(&ds, ip, lp, 10, 0, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(ds.n, N);
    ck_assert_int_eq(ds.rows, R);
    ck_assert_int_eq(ds.cols, C);
    ck_assert_int_eq(ds.classes, 7);
    ck_assert_mem_eq(ds.images, img, sizeof img);
    ck_assert_mem_eq(ds.labels, lab, sizeof lab);
    cnnelm_dataset_free(&ds);
    ck_assert_ptr_null(ds.images);
}

START_TEST(round_trip_raw)
{
    round_trip("img.idx", "lab.idx");
    size_t len;
    unsigned char *b = read_all(in_dir("img.idx"), &len);
    ck_assert_uint_eq(len, 16 + 37 * 5 * 3);
    ck_assert_int_eq(b[3], 0x03);
    ck_assert_int_eq(b[2], 0x08);
    ck_assert_int_eq(b[7], 37);
    free(b);
}
END_TEST

START_TEST(round_trip_gzip)
{
    round_trip("img.idx.gz", "lab.idx.gz");
    size_t len;
    unsigned char *b = read_all(in_dir("img.idx.gz"), &len);
    ck_assert(len > 2 && b[0] == 0x1f && b[1] == 0x8b);
    free(b);
}
END_TEST

START_TEST(raw_images_are_mapped)
{
    size_t len;
    unsigned char *b = image_bytes(0x803, 3, 4, 4, 48, &len);
    write_bytes(in_dir("x"), b, len);
    cnnelm_dataset ds;
    memset(&ds, 0, sizeof ds);
    cnnelm_error err = {""};
    ck_assert_msg(cnnelm_idx_read_images(in_dir("x"), &ds, &err) == 0, "%s", err.msg);
    ck_assert_ptr_nonnull(ds.images_map);
    ck_assert_ptr_null(ds.images_alloc);
    ck_assert_ptr_eq(ds.images, (const uint8_t *)ds.images_map + 16);
    ck_assert_mem_eq(ds.images, b + 16, 48);
    ck_assert_uint_eq(ds.n, 3);
    cnnelm_dataset_free(&ds);
    free(b);
}
END_TEST

START_TEST(hand_written_bytes)
{
    size_t il, ll;
    unsigned char *ib = image_bytes(0x803, 3, 2, 2, 12, &il);
    unsigned char *lb = label_bytes(3, 3, 2, &ll);
    write_bytes(in_dir("i"), ib, il);
    write_gz(in_dir("l"), lb, ll);
    cnnelm_dataset ds;
    cnnelm_error err = {""};
    ck_assert_msg(cnnelm_dataset_load(&ds, in_dir("i"), in_dir("l"), 256, 0, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(ds.n, 3);
    ck_assert_int_eq(ds.classes, 3);
    ck_assert_mem_eq(ds.images, ib + 16, 12);
    ck_assert_mem_eq(ds.labels, lb + 8, 3);
    cnnelm_dataset_free(&ds);
    free(ib);
    free(lb);
}
END_TEST

START_TEST(detected_by_content_not_name)
{
    size_t il, ll;
    unsigned char *ib = image_bytes(0x803, 2, 3, 3, 18, &il);
    unsigned char *lb = label_bytes(2, 2, 1, &ll);
    write_gz(in_dir("images.raw"), ib, il);      /* gzip without .gz */
    write_bytes(in_dir("labels.gz"), lb, ll);     /* raw with .gz */
    cnnelm_dataset ds;
    cnnelm_error err = {""};
    ck_assert_msg(cnnelm_dataset_load(&ds, in_dir("images.raw"), in_dir("labels.gz"), 10, 0, &err) == 0,
                  "%s", err.msg);
    ck_assert_ptr_null(ds.images_map); /* decompressed, not mapped */
    ck_assert_mem_eq(ds.images, ib + 16, 18);
    ck_assert_mem_eq(ds.labels, lb + 8, 2);
    cnnelm_dataset_free(&ds);
    free(ib);
    free(lb);
}
END_TEST

/* Reads `name` as images and expects a failure whose message starts with the path and holds
 * `needle`. */
static void expect_image_error(const char *name, const char *needle)
{
    cnnelm_dataset ds;
    memset(&ds, 0, sizeof ds);
    cnnelm_error err = {""};
    const char *p = in_dir(name);
    ck_assert_int_ne(cnnelm_idx_read_images(p, &ds, &err), 0);
    ck_assert_msg(strncmp(err.msg, p, strlen(p)) == 0, "message '%s' does not start with '%s'", err.msg, p);
    ck_assert_msg_has(err, needle);
    ck_assert_ptr_null(strchr(err.msg, '\n'));
    ck_assert_ptr_null(ds.images);
}

START_TEST(bad_magic)
{
    size_t len;
    unsigned char *b = image_bytes(0x805, 1, 2, 2, 4, &len);
    write_bytes(in_dir("m"), b, len);
    expect_image_error("m", "bad magic 0x00000805");
    free(b);
    unsigned char *l = label_bytes(4, 4, 1, &len);
    write_bytes(in_dir("labels-as-images"), l, len);
    expect_image_error("labels-as-images", "an IDX label file");
    write_gz(in_dir("labels-as-images.gz"), l, len);
    expect_image_error("labels-as-images.gz", "bad magic 0x00000801");
    free(l);
    write_bytes(in_dir("text"), "hello world, not idx", 20);
    expect_image_error("text", "bad magic");
    /* images given as labels */
    b = image_bytes(0x803, 1, 2, 2, 4, &len);
    write_bytes(in_dir("img"), b, len);
    cnnelm_dataset ds;
    memset(&ds, 0, sizeof ds);
    cnnelm_error err = {""};
    ck_assert_int_ne(cnnelm_idx_read_labels(in_dir("img"), &ds, &err), 0);
    ck_assert_msg_has(err, in_dir("img"));
    ck_assert_msg_has(err, "bad magic 0x00000803 (an IDX image file), expected 0x00000801");
    free(b);
}
END_TEST

START_TEST(zero_dimension)
{
    size_t len;
    unsigned char *b = image_bytes(0x803, 0, 2, 2, 0, &len);
    write_bytes(in_dir("z0"), b, len);
    expect_image_error("z0", "dimension 0 (count) is 0");
    free(b);
    b = image_bytes(0x803, 2, 2, 0, 0, &len);
    write_bytes(in_dir("z2"), b, len);
    expect_image_error("z2", "dimension 2 (cols) is 0");
    free(b);
    b = image_bytes(0x803, 1, 5000, 2, 0, &len);
    write_bytes(in_dir("big"), b, len);
    expect_image_error("big", "images of 5000x2 are too large (at most 4096x4096)");
    free(b);
}
END_TEST

START_TEST(truncated)
{
    size_t len;
    unsigned char *b = image_bytes(0x803, 3, 4, 4, 40, &len);
    write_bytes(in_dir("t"), b, len);
    expect_image_error("t", "truncated: header says 3 images of 4x4 (48 bytes) but only 40 bytes follow");
    write_gz(in_dir("t.gz"), b, len);
    expect_image_error("t.gz", "truncated: header says 3 images of 4x4 (48 bytes) but only 40 bytes follow");
    write_bytes(in_dir("short-header"), b, 10);
    expect_image_error("short-header", "truncated: 10 bytes, too short for an IDX image header (16 bytes)");
    write_bytes(in_dir("empty"), b, 0);
    expect_image_error("empty", "truncated: 0 bytes");
    free(b);

    /* a gzip file cut in the middle of its compressed stream */
    b = image_bytes(0x803, 3, 4, 4, 48, &len);
    write_gz(in_dir("full.gz"), b, len);
    size_t zl;
    unsigned char *z = read_all(in_dir("full.gz"), &zl);
    write_bytes(in_dir("cut.gz"), z, zl - 4); /* the trailer's length field is gone */
    expect_image_error("cut.gz", "truncated");
    write_bytes(in_dir("cut2.gz"), z, zl / 2);
    expect_image_error("cut2.gz", "truncated");
    /* a corrupted gzip stream */
    z[zl - 6] ^= 0xff; /* CRC */
    write_bytes(in_dir("crc.gz"), z, zl);
    expect_image_error("crc.gz", "cannot decompress");
    free(z);
    free(b);
}
END_TEST

START_TEST(trailing_bytes)
{
    size_t len;
    unsigned char *b = image_bytes(0x803, 3, 4, 4, 50, &len);
    write_bytes(in_dir("t"), b, len);
    expect_image_error("t", "header says 3 images of 4x4 (48 bytes) but 50 bytes follow");
    write_gz(in_dir("t.gz"), b, len);
    expect_image_error("t.gz", "header says 3 images of 4x4 (48 bytes) but 50 bytes follow");
    expect_image_error("t.gz", "trailing");
    free(b);
    unsigned char *l = label_bytes(4, 5, 1, &len);
    write_bytes(in_dir("l"), l, len);
    cnnelm_dataset ds;
    memset(&ds, 0, sizeof ds);
    cnnelm_error err = {""};
    ck_assert_int_ne(cnnelm_idx_read_labels(in_dir("l"), &ds, &err), 0);
    ck_assert_msg_has(err, in_dir("l"));
    ck_assert_msg_has(err, "header says 4 labels (4 bytes)");
    ck_assert_msg_has(err, "trailing");
    free(l);
}
END_TEST

START_TEST(count_mismatch)
{
    size_t il, ll;
    unsigned char *ib = image_bytes(0x803, 3, 2, 2, 12, &il);
    unsigned char *lb = label_bytes(4, 4, 2, &ll);
    write_bytes(in_dir("i"), ib, il);
    write_bytes(in_dir("l"), lb, ll);
    cnnelm_dataset ds;
    cnnelm_error err = {""};
    ck_assert_int_ne(cnnelm_dataset_load(&ds, in_dir("i"), in_dir("l"), 10, 0, &err), 0);
    char want[1200];
    snprintf(want, sizeof want, "%s: 4 labels, but %s has 3 images", in_dir("l"), in_dir("i"));
    ck_assert_str_eq(err.msg, want);
    ck_assert_ptr_null(ds.images);
    ck_assert_ptr_null(ds.labels);
    free(ib);
    free(lb);
}
END_TEST

START_TEST(label_out_of_range)
{
    size_t il, ll;
    unsigned char *ib = image_bytes(0x803, 4, 2, 2, 16, &il);
    unsigned char *lb = label_bytes(4, 4, 3, &ll); /* labels 0 1 2 3 */
    write_bytes(in_dir("i"), ib, il);
    write_bytes(in_dir("l"), lb, ll);
    cnnelm_dataset ds;
    cnnelm_error err = {""};
    ck_assert_int_ne(cnnelm_dataset_load(&ds, in_dir("i"), in_dir("l"), 3, 0, &err), 0);
    ck_assert_msg_has(err, in_dir("l"));
    ck_assert_msg_has(err, "label 3 of example 3 is out of range (at most 3 classes: 0..2)");
    ck_assert_int_eq(cnnelm_dataset_load(&ds, in_dir("i"), in_dir("l"), 4, 0, &err), 0);
    ck_assert_int_eq(ds.classes, 4);
    cnnelm_dataset_free(&ds);
    free(ib);
    free(lb);
}
END_TEST

START_TEST(nonexistent)
{
    expect_image_error("nope.gz", "cannot open: No such file or directory");
    cnnelm_dataset ds;
    cnnelm_error err = {""};
    size_t il;
    unsigned char *ib = image_bytes(0x803, 1, 1, 1, 1, &il);
    write_bytes(in_dir("i"), ib, il);
    ck_assert_int_ne(cnnelm_dataset_load(&ds, in_dir("i"), in_dir("missing-labels"), 10, 0, &err), 0);
    ck_assert_msg_has(err, in_dir("missing-labels"));
    ck_assert_msg_has(err, "cannot open");
    expect_image_error(".", "is a directory");
    free(ib);
}
END_TEST

START_TEST(limit)
{
    enum { N = 10, R = 3, C = 2 };
    uint8_t img[N * R * C], lab[N];
    random_bytes(img, sizeof img, 5, 256);
    for (int i = 0; i < N; i++) lab[i] = (uint8_t)i; /* classes = 10 even when limited */
    cnnelm_error err = {""};
    for (int gz = 0; gz < 2; gz++) {
        const char *ip = in_dir(gz ? "i.gz" : "i"), *lp = in_dir(gz ? "l.gz" : "l");
        ck_assert_int_eq(cnnelm_idx_write_images(ip, img, N, R, C, &err), 0);
        ck_assert_int_eq(cnnelm_idx_write_labels(lp, lab, N, &err), 0);
        cnnelm_dataset ds;
        ck_assert_msg(cnnelm_dataset_load(&ds, ip, lp, 10, 4, &err) == 0, "%s", err.msg);
        ck_assert_uint_eq(ds.n, 4);
        ck_assert_int_eq(ds.classes, 10);
        ck_assert_mem_eq(ds.images, img, 4 * R * C);
        ck_assert_mem_eq(ds.labels, lab, 4);
        if (!gz) ck_assert_ptr_eq(ds.images, (const uint8_t *)ds.images_map + 16); /* no copy */
        cnnelm_dataset_free(&ds);
        ck_assert_int_eq(cnnelm_dataset_load(&ds, ip, lp, 10, 1000, &err), 0);
        ck_assert_uint_eq(ds.n, N);
        cnnelm_dataset_free(&ds);
    }
    /* a limit does not hide a bad file */
    size_t len;
    unsigned char *b = image_bytes(0x803, 3, 4, 4, 40, &len);
    write_gz(in_dir("t.gz"), b, len);
    write_bytes(in_dir("t"), b, len);
    cnnelm_dataset ds;
    ck_assert_int_ne(cnnelm_dataset_load(&ds, in_dir("t.gz"), in_dir("l"), 10, 1, &err), 0);
    ck_assert_msg_has(err, "but only 40 bytes follow");
    ck_assert_int_ne(cnnelm_dataset_load(&ds, in_dir("t"), in_dir("l"), 10, 1, &err), 0);
    ck_assert_msg_has(err, "but only 40 bytes follow");
    free(b);
}
END_TEST

static int count_entries(const char *path)
{
    DIR *d = opendir(path);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

START_TEST(atomic_write)
{
    uint8_t img[2 * 2 * 2] = {1, 2, 3, 4, 5, 6, 7, 8};
    cnnelm_error err = {""};
    char p[512];
    snprintf(p, sizeof p, "%s", in_dir("data.idx"));
    ck_assert_int_eq(cnnelm_idx_write_images(p, img, 2, 2, 2, &err), 0);
    size_t old_len;
    unsigned char *old = read_all(p, &old_len);

    /* bad arguments: nothing written, old file untouched */
    ck_assert_int_ne(cnnelm_idx_write_images(p, img, 2, 0, 2, &err), 0);
    ck_assert_msg_has(err, p);
    ck_assert_int_ne(cnnelm_idx_write_labels(p, img, 0, &err), 0);
    ck_assert_msg_has(err, p);

    /* the target is a directory: refused before a temporary file is made */
    ck_assert_int_eq(mkdir(in_dir("sub"), 0755), 0);
    ck_assert_int_ne(cnnelm_idx_write_images(in_dir("sub"), img, 2, 2, 2, &err), 0);
    ck_assert_msg_has(err, in_dir("sub"));
    ck_assert_msg_has(err, "is a directory");

    /* a directory that does not exist */
    const char *q = in_dir("no/such/dir/x.idx.gz");
    ck_assert_int_ne(cnnelm_idx_write_images(q, img, 2, 2, 2, &err), 0);
    ck_assert_msg_has(err, q);
    ck_assert_msg_has(err, "No such file or directory");

    ck_assert_int_eq(count_entries(dir), 2); /* data.idx and sub: no temporary files left */
    size_t now_len;
    unsigned char *now = read_all(p, &now_len);
    ck_assert_uint_eq(now_len, old_len);
    ck_assert_mem_eq(now, old, old_len);
    free(now);

    /* replacing works and keeps the name */
    uint8_t img2[3 * 2 * 2] = {9, 9, 9, 9, 8, 8, 8, 8, 7, 7, 7, 7};
    ck_assert_int_eq(cnnelm_idx_write_images(p, img2, 3, 2, 2, &err), 0);
    cnnelm_dataset ds;
    memset(&ds, 0, sizeof ds);
    ck_assert_int_eq(cnnelm_idx_read_images(p, &ds, &err), 0);
    ck_assert_uint_eq(ds.n, 3);
    ck_assert_mem_eq(ds.images, img2, sizeof img2);
    cnnelm_dataset_free(&ds);
    ck_assert_int_eq(count_entries(dir), 2);
    free(old);

    /* a relative path in the current directory */
    char cwd[512];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    ck_assert_int_eq(chdir(dir), 0);
    ck_assert_int_eq(cnnelm_idx_write_labels("rel.idx", img, 3, &err), 0);
    ck_assert_int_eq(chdir(cwd), 0);
    ck_assert_int_eq(count_entries(dir), 3);
}
END_TEST

START_TEST(fashion_mnist)
{
    char ip[1024], lp[1024];
    snprintf(ip, sizeof ip, "%s/train-images-idx3-ubyte.gz", CNNELM_FASHION_DIR);
    snprintf(lp, sizeof lp, "%s/train-labels-idx1-ubyte.gz", CNNELM_FASHION_DIR);
    if (access(ip, R_OK) != 0 || access(lp, R_OK) != 0) {
        printf("test_idx: %s not found, skipping the Fashion-MNIST check\n", ip);
        return;
    }
    cnnelm_dataset ds;
    cnnelm_error err = {""};
    ck_assert_msg(cnnelm_dataset_load(&ds, ip, lp, 10, 0, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(ds.n, 60000);
    ck_assert_int_eq(ds.rows, 28);
    ck_assert_int_eq(ds.cols, 28);
    ck_assert_int_eq(ds.classes, 10);
    size_t counts[10] = {0};
    for (size_t i = 0; i < ds.n; i++) counts[ds.labels[i]]++;
    for (int c = 0; c < 10; c++) ck_assert_uint_eq(counts[c], 6000);
    cnnelm_dataset_free(&ds);

    snprintf(ip, sizeof ip, "%s/t10k-images-idx3-ubyte.gz", CNNELM_FASHION_DIR);
    snprintf(lp, sizeof lp, "%s/t10k-labels-idx1-ubyte.gz", CNNELM_FASHION_DIR);
    ck_assert_msg(cnnelm_dataset_load(&ds, ip, lp, 10, 500, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(ds.n, 500);
    ck_assert_int_eq(ds.classes, 10);
    cnnelm_dataset_free(&ds);
}
END_TEST

/* Headers are not trusted for sizes: a small gzip claiming 10^7 images (7.8 GB) and an 8-byte
 * raw label file claiming 4 GiB labels are reported truncated without allocating what they
 * claim (checked with an address-space limit where no sanitizer reserves its shadow). */
START_TEST(header_sizes_not_trusted)
{
#if !defined(__SANITIZE_ADDRESS__)
    struct rlimit lim = { (rlim_t)1 << 30, (rlim_t)1 << 30 };
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &lim), 0);
#endif
    size_t len;
    unsigned char *b = image_bytes(0x803, 10000000, 28, 28, 1u << 20, &len);
    write_gz(in_dir("claims.gz"), b, len);
    free(b);
    expect_image_error("claims.gz", "truncated: header says 10000000 images of 28x28 (7840000000 bytes) "
                                    "but only 1048576 bytes follow");
    unsigned char lab[8];
    put_be32(lab, 0x801);
    put_be32(lab + 4, 0xffffffffu);
    write_bytes(in_dir("labels8"), lab, 8);
    cnnelm_dataset ds;
    memset(&ds, 0, sizeof ds);
    cnnelm_error err = {""};
    ck_assert_int_ne(cnnelm_idx_read_labels(in_dir("labels8"), &ds, &err), 0);
    ck_assert_msg_has(err, "truncated: header says 4294967295 labels (4294967295 bytes) but only 0 bytes follow");
}
END_TEST

/* data.max_bytes: a header announcing more than the limit is refused before reading. */
START_TEST(max_bytes_limit)
{
    size_t len;
    unsigned char *b = image_bytes(0x803, 100, 28, 28, 78400, &len);
    write_gz(in_dir("i.gz"), b, len);
    write_bytes(in_dir("i.raw"), b, len);
    free(b);
    b = label_bytes(100, 100, 9, &len);
    write_bytes(in_dir("l.raw"), b, len);
    free(b);
    cnnelm_error err = {""};
    ck_assert_int_eq(cnnelm_idx_check_size(in_dir("i.gz"), 78400, &err), 0);
    ck_assert_int_ne(cnnelm_idx_check_size(in_dir("i.gz"), 78399, &err), 0);
    ck_assert_msg_has(err, "i.gz: header says 100 images of 28x28 (78400 bytes), more than data.max_bytes (78399 bytes) allows");
    ck_assert_int_eq(cnnelm_idx_check_size(in_dir("i.raw"), 10, &err), 0); /* mapped, not read */
    ck_assert_int_ne(cnnelm_idx_check_size(in_dir("l.raw"), 99, &err), 0);
    ck_assert_msg_has(err, "header says 100 labels (100 bytes), more than data.max_bytes");
    ck_assert_int_eq(cnnelm_idx_check_size(in_dir("l.raw"), 0, &err), 0); /* 0: half the RAM */
}
END_TEST

/* A save cut short by SIGTERM or SIGINT leaves no temporary file; one left by a process that
 * was killed outright (SIGKILL) is removed by the next save of the same file. */
START_TEST(signals_leave_no_temp_files)
{
    const int sigs[2] = { SIGTERM, SIGINT };
    for (int i = 0; i < 2; i++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            /* as a program starts (Check's runner has its own handlers, inherited here) */
            signal(SIGTERM, SIG_DFL);
            signal(SIGINT, SIG_DFL);
            cnnelm_atomic_file af;
            cnnelm_error err;
            if (cnnelm_atomic_open(&af, in_dir("sig.out"), &err) != 0)
                _exit(3);
            fputs("half a file", af.f);
            fflush(af.f);
            raise(sigs[i]);
            _exit(4); /* not reached: the signal ends the process */
        }
        int st;
        ck_assert_int_eq(waitpid(pid, &st, 0), pid);
        ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == sigs[i], "child status %d", st);
        ck_assert_int_eq(count_entries(dir), 0);
    }
    /* a dead writer's temporary file goes; a live process's stays */
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    waitpid(dead, NULL, 0);
    char stale[600], alive[600];
    snprintf(stale, sizeof stale, "%s/.l.idx.tmp%d-abcdef", dir, (int)dead);
    snprintf(alive, sizeof alive, "%s/.l.idx.tmp%d-abcdef", dir, (int)getppid());
    write_bytes(stale, "x", 1);
    write_bytes(alive, "x", 1);
    uint8_t labels[3] = { 0, 1, 0 };
    cnnelm_error err = {""};
    ck_assert_int_eq(cnnelm_idx_write_labels(in_dir("l.idx"), labels, 3, &err), 0);
    ck_assert_int_ne(access(stale, F_OK), 0);
    ck_assert_int_eq(access(alive, F_OK), 0);
    ck_assert_int_eq(count_entries(dir), 2); /* l.idx and the live one */
}
END_TEST

/* A raw file cut short while it is mapped: reading the lost pages is a clear error naming the
 * file and exit status 1, not a SIGBUS crash. */
START_TEST(truncated_while_mapped)
{
    size_t len;
    unsigned char *b = image_bytes(0x803, 64, 32, 32, 64 * 1024, &len);
    write_bytes(in_dir("m.idx"), b, len);
    free(b);
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        signal(SIGBUS, SIG_DFL);
        dup2(fds[1], 2);
        cnnelm_dataset ds;
        memset(&ds, 0, sizeof ds);
        cnnelm_error err;
        if (cnnelm_idx_read_images(in_dir("m.idx"), &ds, &err) != 0 || !ds.images_map)
            _exit(3);
        if (truncate(in_dir("m.idx"), 16) != 0)
            _exit(4);
        volatile unsigned sum = 0;
        for (size_t i = 0; i < ds.n * 1024; i += 512)
            sum += ds.images[i];
        _exit(5); /* not reached */
    }
    close(fds[1]);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    char msg[512] = "";
    ssize_t n = read(fds[0], msg, sizeof msg - 1);
    close(fds[0]);
    msg[n > 0 ? n : 0] = '\0';
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "child status %d: %s", st, msg);
    ck_assert_msg(strstr(msg, "m.idx: the file was truncated or changed while in use") != NULL, "%s", msg);
}
END_TEST

static Suite *idx_suite(void)
{
    Suite *s = suite_create("idx");
    TCase *tc = tcase_create("idx");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, round_trip_raw);
    tcase_add_test(tc, round_trip_gzip);
    tcase_add_test(tc, raw_images_are_mapped);
    tcase_add_test(tc, hand_written_bytes);
    tcase_add_test(tc, detected_by_content_not_name);
    tcase_add_test(tc, bad_magic);
    tcase_add_test(tc, zero_dimension);
    tcase_add_test(tc, truncated);
    tcase_add_test(tc, trailing_bytes);
    tcase_add_test(tc, count_mismatch);
    tcase_add_test(tc, label_out_of_range);
    tcase_add_test(tc, nonexistent);
    tcase_add_test(tc, limit);
    tcase_add_test(tc, atomic_write);
    tcase_add_test(tc, fashion_mnist);
    tcase_add_test(tc, header_sizes_not_trusted);
    tcase_add_test(tc, max_bytes_limit);
    tcase_add_test(tc, signals_leave_no_temp_files);
    tcase_add_test(tc, truncated_while_mapped);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(idx_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
