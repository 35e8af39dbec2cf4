/* Tests of the non-IDX inputs: image folders against the same images as IDX (bytes and trained
 * accuracy), bad and wrong-size files skipped and named, the decode cache, CSV, 3-channel data
 * where colour carries the class (CPU and OpenCL, against a grayscale run), and the one-line
 * errors for unsupported formats. */
#define _GNU_SOURCE
#include <check.h>
#include <fcntl.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "cnnelm/model.h"
#include "cnnelm/plugin.h"
#include "cnnelm/run.h"
#include "data/image.h"

static char tmp[256];
static cnnelm_dataset fashion; /* the first training images of Fashion-MNIST */
#define N_FOLDER 600

static const char *in_tmp(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp, name);
    return buf[k];
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* channels 1 (gray) or 3 (RGB, interleaved) */
static void write_jpeg_c(const char *path, const uint8_t *px, int h, int w, int channels, int quality)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = channels;
    c.in_color_space = channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    for (int y = 0; y < h; y++) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)y * w * channels);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

static void write_jpeg(const char *path, const uint8_t *gray, int h, int w, int quality)
{
    write_jpeg_c(path, gray, h, w, 1, quality);
}

static void write_rgb_jpeg(const char *path, const uint8_t *rgb, int h, int w, int quality)
{
    write_jpeg_c(path, rgb, h, w, 3, quality);
}

/* Runs fn with stderr going to a file; returns what it wrote (free it). */
static char *capture_stderr(int (*fn)(void *), void *arg, int *rc)
{
    const char *path = in_tmp("stderr.txt");
    fflush(stderr);
    int saved = dup(2), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
    *rc = fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    return read_text(path);
}

/* The folder: class<k>/<index>.png, every 7th as JPEG, three as RGB PNGs (R = G = B), plus a
 * corrupt PNG and a 30x30 image. Also writes the reference IDX of what the folder holds, in the
 * folder's order (class, then name). */
static void build_folder(const char *dir, const char *ref_images, const char *ref_labels)
{
    mkdir(dir, 0777);
    cnnelm_error err = {""};
    uint8_t *ref = malloc((size_t)N_FOLDER * 784), *lab = malloc(N_FOLDER);
    size_t at = 0;
    int rgb_written = 0;
    for (int k = 0; k < 10; k++) {
        char sub[600];
        snprintf(sub, sizeof sub, "%s/class%d", dir, k);
        mkdir(sub, 0777);
        for (size_t i = 0; i < N_FOLDER; i++) {
            if (fashion.labels[i] != k)
                continue;
            const uint8_t *img = fashion.images + i * 784;
            char file[700];
            if (i % 7 == 3) {
                snprintf(file, sizeof file, "%s/%05zu.jpg", sub, i);
                write_jpeg(file, img, 28, 28, 95);
                cnnelm_image dec;
                ck_assert_msg(cnnelm_image_read(file, &dec, &err) == 0, "%s", err.msg);
                ck_assert_int_eq(dec.c, 1);
                memcpy(ref + at * 784, dec.pix, 784);
                cnnelm_image_free(&dec);
            } else if (rgb_written < 3 && i % 5 == 0) {
                uint8_t rgb[784 * 3];
                for (int p = 0; p < 784; p++)
                    rgb[3 * p] = rgb[3 * p + 1] = rgb[3 * p + 2] = img[p];
                snprintf(file, sizeof file, "%s/%05zu.png", sub, i);
                ck_assert_int_eq(cnnelm_image_write_png(file, rgb, 28, 28, 3, &err), 0);
                memcpy(ref + at * 784, img, 784);
                rgb_written++;
            } else {
                snprintf(file, sizeof file, "%s/%05zu.png", sub, i);
                ck_assert_msg(cnnelm_image_write_png(file, img, 28, 28, 1, &err) == 0, "%s", err.msg);
                memcpy(ref + at * 784, img, 784);
            }
            lab[at++] = (uint8_t)k;
        }
        if (k == 3) { /* a PNG signature, then junk */
            char file[700];
            snprintf(file, sizeof file, "%s/zz-corrupt.png", sub);
            static const char junk[] = "\x89PNG\r\n\x1a\nthis is not the rest of a PNG file";
            write_file(file, junk, sizeof junk - 1);
        }
        if (k == 5) {
            uint8_t big[30 * 30];
            for (int p = 0; p < 900; p++)
                big[p] = (uint8_t)(p * 7);
            char file[700];
            snprintf(file, sizeof file, "%s/zz-big.png", sub);
            ck_assert_int_eq(cnnelm_image_write_png(file, big, 30, 30, 1, &err), 0);
        }
    }
    ck_assert_int_eq(rgb_written, 3);
    ck_assert_uint_eq(at, N_FOLDER);
    ck_assert_int_eq(cnnelm_idx_write_images(ref_images, ref, at, 28, 28, &err), 0);
    ck_assert_int_eq(cnnelm_idx_write_labels(ref_labels, lab, at, &err), 0);
    free(ref);
    free(lab);
}

typedef struct load_call {
    cnnelm_dataset *ds;
    const char *dir;
    cnnelm_input_options o;
    cnnelm_error err;
} load_call;

static int do_load(void *arg)
{
    load_call *c = arg;
    return cnnelm_dataset_load_any(c->ds, c->dir, "", 256, 0, &c->o, &c->err);
}

/* The test accuracy in a report written by cnnelm train. */
static double report_accuracy(const char *path)
{
    char *t = read_text(path);
    char *test = strstr(t, "\"test\"");
    ck_assert_ptr_nonnull(test);
    char *acc = strstr(test, "\"accuracy\"");
    ck_assert_ptr_nonnull(acc);
    double v = strtod(acc + strlen("\"accuracy\":"), NULL);
    free(t);
    return v;
}

static double train_accuracy(const char *const *sets, int n, const char *tag)
{
    char model[600], report[600];
    snprintf(model, sizeof model, "%s/%s.model", tmp, tag);
    snprintf(report, sizeof report, "%s/%s.json", tmp, tag);
    cnnelm_run_options o = { 0 };
    o.config_path = CNNELM_SOURCE_DIR "/conf/paper-fashion.cfg";
    o.overrides = sets;
    o.n_overrides = n;
    o.model_path = model;
    o.report_path = report;
    o.quiet = 1;
    cnnelm_error err = {""};
    ck_assert_msg(cnnelm_run_train(&o, &err) == 0, "%s: %s", tag, err.msg);
    return report_accuracy(report);
}

START_TEST(folder_same_as_idx)
{
    char dir[512], ri[512], rl[512];
    snprintf(dir, sizeof dir, "%s", in_tmp("folder"));
    snprintf(ri, sizeof ri, "%s", in_tmp("ref-images.idx"));
    snprintf(rl, sizeof rl, "%s", in_tmp("ref-labels.idx"));
    build_folder(dir, ri, rl);

    /* bad files: named on stderr, skipped within data.max_bad */
    cnnelm_dataset ds;
    load_call c = { &ds, dir, { .max_bad = 2 }, {""} };
    int rc;
    char *log = capture_stderr(do_load, &c, &rc);
    ck_assert_msg(rc == 0, "%s", c.err.msg);
    ck_assert_msg(strstr(log, "zz-corrupt.png") && strstr(log, "cannot decode PNG"), "log: %s", log);
    ck_assert_msg(strstr(log, "zz-big.png") && strstr(log, "30x30"), "log: %s", log);
    ck_assert_msg(strstr(log, "2 of 602 files skipped"), "log: %s", log);
    ck_assert_msg(strstr(log, "cached in"), "log: %s", log);
    free(log);
    cnnelm_dataset ref;
    cnnelm_error err = {""};
    ck_assert_int_eq(cnnelm_dataset_load(&ref, ri, rl, 256, 0, &err), 0);
    ck_assert_uint_eq(ds.n, N_FOLDER);
    ck_assert_int_eq(ds.channels, 1); /* the RGB files have R = G = B: the set stays gray */
    ck_assert_int_eq(ds.rows, 28);
    ck_assert_int_eq(ds.classes, 10);
    ck_assert_str_eq(ds.class_names[7], "class7");
    ck_assert_mem_eq(ds.images, ref.images, N_FOLDER * 784);
    ck_assert_mem_eq(ds.labels, ref.labels, N_FOLDER);
    cnnelm_dataset_free(&ds);

    /* the second run reads the cache, and gives the same bytes */
    log = capture_stderr(do_load, &c, &rc);
    ck_assert_msg(rc == 0, "%s", c.err.msg);
    ck_assert_msg(strstr(log, "read from the cache"), "log: %s", log);
    ck_assert_ptr_null(strstr(log, "zz-corrupt"));
    free(log);
    ck_assert_uint_eq(ds.n, N_FOLDER);
    ck_assert_mem_eq(ds.images, ref.images, N_FOLDER * 784);
    ck_assert_str_eq(ds.class_names[0], "class0");
    cnnelm_dataset_free(&ds);

    /* one bad file more than data.max_bad: an error naming the count and the first */
    c.o.max_bad = 1;
    log = capture_stderr(do_load, &c, &rc);
    free(log);
    ck_assert_int_ne(rc, 0);
    ck_assert_msg(strstr(c.err.msg, "2 of 602 files") && strstr(c.err.msg, "data.max_bad = 1"), "%s", c.err.msg);
    ck_assert_ptr_null(strchr(c.err.msg, '\n'));

    /* data.resize takes the 30x30 image in */
    c.o.max_bad = 1;
    c.o.resize_h = c.o.resize_w = 28;
    log = capture_stderr(do_load, &c, &rc);
    free(log);
    ck_assert_msg(rc == 0, "%s", c.err.msg);
    ck_assert_uint_eq(ds.n, N_FOLDER + 1);
    cnnelm_dataset_free(&ds);

    /* trained on the folder and on the IDX of the same images: the same accuracy */
    char fo[700], ii[700], il[700];
    snprintf(fo, sizeof fo, "data.train_images=\"%s\"", dir);
    const char *folder_sets[] = { fo, "data.train_labels=\"\"", "data.max_bad=2", "data.test_limit=2000",
                                  "model.layers=\"4c-2s\"" };
    snprintf(ii, sizeof ii, "data.train_images=\"%s\"", ri);
    snprintf(il, sizeof il, "data.train_labels=\"%s\"", rl);
    const char *idx_sets[] = { ii, il, "data.test_limit=2000", "model.layers=\"4c-2s\"" };
    double af = train_accuracy(folder_sets, 5, "folder"), ai = train_accuracy(idx_sets, 4, "idx");
    printf("image folder: test accuracy %.4f, the same images as IDX: %.4f\n", af, ai);
    ck_assert_double_eq(af, ai);
    ck_assert_msg(af > 0.6, "accuracy %g: the model did not learn", af);

    /* a test folder whose classes are not the training folder's: an error, not wrong labels */
    char other[600], sub[700], file[800];
    snprintf(other, sizeof other, "%s/other", tmp);
    mkdir(other, 0777);
    const char *subs[2] = { "class0", "zebra" };
    for (int k = 0; k < 2; k++) {
        snprintf(sub, sizeof sub, "%s/%s", other, subs[k]);
        mkdir(sub, 0777);
        snprintf(file, sizeof file, "%s/a.png", sub);
        ck_assert_int_eq(cnnelm_image_write_png(file, fashion.images, 28, 28, 1, &err), 0);
    }
    char ot[700];
    snprintf(ot, sizeof ot, "data.test_images=\"%s\"", other);
    const char *mismatch[] = { fo, "data.train_labels=\"\"", "data.max_bad=2", ot, "data.test_labels=\"\"" };
    cnnelm_run_options ro = { 0 };
    ro.config_path = CNNELM_SOURCE_DIR "/conf/paper-fashion.cfg";
    ro.overrides = mismatch;
    ro.n_overrides = 5;
    ro.model_path = in_tmp("mismatch.model");
    ro.quiet = 1;
    ck_assert_int_ne(cnnelm_run_train(&ro, &err), 0);
    ck_assert_msg(strstr(err.msg, "test class 1 is \"zebra\" but training class 1 is \"class1\""), "%s", err.msg);
    cnnelm_dataset_free(&ref);
}
END_TEST

START_TEST(csv_same_as_idx)
{
    const char *path = in_tmp("fashion.csv");
    FILE *f = fopen(path, "w");
    fprintf(f, "label");
    for (int p = 0; p < 784; p++)
        fprintf(f, ",pixel%d", p + 1);
    fprintf(f, "\n");
    for (size_t i = 0; i < 300; i++) {
        fprintf(f, "%d", fashion.labels[i]);
        for (int p = 0; p < 784; p++)
            fprintf(f, ",%d", fashion.images[i * 784 + p]);
        fprintf(f, "\r\n"); /* Windows line ends too */
    }
    fclose(f);
    cnnelm_dataset ds;
    cnnelm_error err = {""};
    cnnelm_input_options o = { .quiet = 1 };
    ck_assert_msg(cnnelm_dataset_load_any(&ds, path, "", 256, 0, &o, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(ds.n, 300);
    ck_assert_int_eq(ds.rows, 28);
    ck_assert_int_eq(ds.cols, 28);
    ck_assert_mem_eq(ds.images, fashion.images, 300 * 784);
    ck_assert_mem_eq(ds.labels, fashion.labels, 300);
    cnnelm_dataset_free(&ds);
    /* a row with a field out of range names the line */
    f = fopen(path, "a");
    fprintf(f, "3");
    for (int p = 0; p < 784; p++)
        fprintf(f, ",%d", p == 5 ? 300 : 1);
    fprintf(f, "\n");
    fclose(f);
    ck_assert_int_ne(cnnelm_dataset_load_any(&ds, path, "", 256, 0, &o, &err), 0);
    ck_assert_msg(strstr(err.msg, "fashion.csv:302: field 7 is not an integer in 0..255"), "%s", err.msg);
}
END_TEST

/* Colour carries the class, the gray level does not: every class has the same luma. */
static void write_colour_set(const char *images, const char *labels, size_t n, uint64_t seed)
{
    static const int colour[4][3] = { {250, 100, 145}, {50, 200, 155}, {150, 150, 150}, {200, 120, 173} };
    uint8_t *x = malloc(n * 3 * 256), *y = malloc(n);
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        int k = (int)(i % 4);
        y[i] = (uint8_t)k;
        for (int p = 0; p < 256; p++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            double v = (double)(s >> 40) / (double)(1ull << 24); /* texture, same for every class */
            for (int ch = 0; ch < 3; ch++)
                x[(i * 3 + (size_t)ch) * 256 + (size_t)p] = (uint8_t)(v * colour[k][ch] + 0.5);
        }
    }
    cnnelm_error err = {""};
    ck_assert_msg(cnnelm_idx_write_images_c(images, x, n, 3, 16, 16, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(cnnelm_idx_write_labels(labels, y, n, &err), 0);
    free(x);
    free(y);
}

START_TEST(rgb_colour_carries_class)
{
    char ti[512], tl[512], vi[512], vl[512];
    snprintf(ti, sizeof ti, "%s", in_tmp("rgb-train-images.idx"));
    snprintf(tl, sizeof tl, "%s", in_tmp("rgb-train-labels.idx"));
    snprintf(vi, sizeof vi, "%s", in_tmp("rgb-test-images.idx"));
    snprintf(vl, sizeof vl, "%s", in_tmp("rgb-test-labels.idx"));
    write_colour_set(ti, tl, 800, 1);
    write_colour_set(vi, vl, 400, 2);
    cnnelm_dataset ds;
    cnnelm_error err = {""};
    ck_assert_msg(cnnelm_dataset_load(&ds, ti, tl, 256, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ds.channels, 3);
    ck_assert_int_eq(ds.rows, 16);
    cnnelm_dataset_free(&ds);
    char s0[600], s1[600], s2[600], s3[600];
    snprintf(s0, sizeof s0, "data.train_images=\"%s\"", ti);
    snprintf(s1, sizeof s1, "data.train_labels=\"%s\"", tl);
    snprintf(s2, sizeof s2, "data.test_images=\"%s\"", vi);
    snprintf(s3, sizeof s3, "data.test_labels=\"%s\"", vl);
    const char *cpu[] = { s0, s1, s2, s3, "model.layers=\"4c-2s\"", "model.kernel=3", "train.iterations=1",
                          "train.learning_rate=0.05", "data.grayscale=false" };
    double a_cpu = train_accuracy(cpu, 9, "rgb-cpu");
    cpu[8] = "data.grayscale=true";
    double a_gray = train_accuracy(cpu, 9, "rgb-gray");
    printf("colour carries the class: RGB model %.4f, grayscale-converted %.4f (chance 0.25)\n", a_cpu, a_gray);
    ck_assert_msg(a_cpu > 0.95, "RGB accuracy %g", a_cpu);
    ck_assert_msg(a_gray < 0.45, "grayscale accuracy %g: the luma should not tell the classes apart", a_gray);
    cnnelm_model m;
    ck_assert_int_eq(cnnelm_model_load(&m, in_tmp("rgb-cpu.model"), &err), 0);
    ck_assert_int_eq(m.arch.in_c, 3);
    ck_assert_uint_eq(m.arch.n_params, 4 * 3 * 9 + 4);
    cnnelm_model_free(&m);

    cnnelm_plugin *p;
    if (cnnelm_plugin_load("opencl", NULL, &p, &err) != 0) {
        printf("SKIP: the OpenCL half (%s)\n", err.msg);
        return;
    }
    cnnelm_plugin_unload(p);
    cpu[8] = "workers=({backend=\"opencl\";device=0;})";
    double a_ocl = train_accuracy(cpu, 9, "rgb-opencl");
    printf("RGB model on OpenCL: %.4f (CPU %.4f)\n", a_ocl, a_cpu);
    ck_assert_msg(fabs(a_ocl - a_cpu) <= 0.005, "OpenCL %g vs CPU %g", a_ocl, a_cpu);
}
END_TEST

START_TEST(unsupported_formats)
{
    cnnelm_error err = {""};
    cnnelm_dataset ds;
    cnnelm_input_options o = { .quiet = 1 };
    /* float IDX (type 0x0D) */
    unsigned char fidx[16 + 4 * 4] = { 0, 0, 0x0d, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2 };
    write_file(in_tmp("float.idx"), fidx, sizeof fidx);
    write_file(in_tmp("labels.idx"), "\0\0\x08\x01\0\0\0\x01\x01", 9);
    ck_assert_int_ne(cnnelm_dataset_load_any(&ds, in_tmp("float.idx"), in_tmp("labels.idx"), 256, 0, &o, &err), 0);
    ck_assert_msg(strstr(err.msg, "float") && strstr(err.msg, "unsigned bytes"), "%s", err.msg);
    ck_assert_ptr_null(strchr(err.msg, '\n'));
    /* 16-bit PNG */
    png_image p;
    memset(&p, 0, sizeof p);
    p.version = PNG_IMAGE_VERSION;
    p.width = p.height = 4;
    p.format = PNG_FORMAT_LINEAR_Y;
    uint16_t px[16];
    for (int i = 0; i < 16; i++)
        px[i] = (uint16_t)(i * 4000);
    ck_assert(png_image_write_to_file(&p, in_tmp("deep.png"), 0, px, 0, NULL));
    cnnelm_image img;
    ck_assert_int_ne(cnnelm_image_read(in_tmp("deep.png"), &img, &err), 0);
    ck_assert_msg(strstr(err.msg, "deep.png: a 16-bit PNG; supported: PNG and JPEG images, 8-bit gray or RGB"),
                  "%s", err.msg);
    /* a text file: as an image, and as a data set */
    write_file(in_tmp("notes.txt"), "these are my notes\nabout the data\n", 34);
    ck_assert_int_ne(cnnelm_image_read(in_tmp("notes.txt"), &img, &err), 0);
    ck_assert_msg(strstr(err.msg, "not a supported image (a text file); supported: PNG and JPEG"), "%s", err.msg);
    ck_assert_int_ne(cnnelm_dataset_load_any(&ds, in_tmp("notes.txt"), "", 256, 0, &o, &err), 0);
    ck_assert_msg(strstr(err.msg, "notes.txt") && strstr(err.msg, "a text file") && strstr(err.msg, "supported"),
                  "%s", err.msg);
    ck_assert_ptr_null(strchr(err.msg, '\n'));
    /* a GIF as an image */
    write_file(in_tmp("x.gif"), "GIF89a\x01\0\x01\0", 10);
    ck_assert_int_ne(cnnelm_image_read(in_tmp("x.gif"), &img, &err), 0);
    ck_assert_msg(strstr(err.msg, "(a GIF image); supported: PNG and JPEG"), "%s", err.msg);
    /* a 4-dimension IDX in n x h x w x c order */
    unsigned char hwc[20 + 2 * 4 * 4 * 3] = { 0, 0, 8, 4, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 3 };
    write_file(in_tmp("hwc.idx"), hwc, sizeof hwc);
    ck_assert_int_ne(cnnelm_idx_read_images(in_tmp("hwc.idx"), &ds, &err), 0);
    ck_assert_msg(strstr(err.msg, "looks like n x h x w x c") && strstr(err.msg, "n x c x h x w"), "%s", err.msg);
}
END_TEST

/* Decoding and conversion on their own: RGB PNG exact, RGB JPEG close, luma and replication
 * against the formula on random pixels, bilinear resize against values worked by hand. */
START_TEST(decode_and_convert)
{
    cnnelm_error err = {""};
    enum { H = 12, W = 10 };
    uint8_t rgb[H * W * 3];
    srand(3);
    for (int i = 0; i < H * W * 3; i++)
        rgb[i] = (uint8_t)(rand() & 0xff);
    ck_assert_int_eq(cnnelm_image_write_png(in_tmp("rgb.png"), rgb, H, W, 3, &err), 0);
    cnnelm_image img;
    ck_assert_msg(cnnelm_image_read(in_tmp("rgb.png"), &img, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(img.c, 3);
    ck_assert_int_eq(img.h, H);
    ck_assert_int_eq(img.w, W);
    ck_assert_mem_eq(img.pix, rgb, sizeof rgb);
    ck_assert(cnnelm_image_is_colour(&img));
    /* to a planar gray input: luma, and to planar RGB: the planes */
    uint8_t gray[H * W], planes[3 * H * W];
    ck_assert_int_eq(cnnelm_image_to_input(&img, "rgb.png", 1, H, W, 0, gray, &err), 0);
    ck_assert_int_eq(cnnelm_image_to_input(&img, "rgb.png", 3, H, W, 0, planes, &err), 0);
    for (int p = 0; p < H * W; p++) {
        double luma = 0.299 * rgb[3 * p] + 0.587 * rgb[3 * p + 1] + 0.114 * rgb[3 * p + 2];
        ck_assert_msg(fabs(gray[p] - luma) <= 0.5 + 1e-9, "pixel %d: %d vs luma %g", p, gray[p], luma);
        for (int c = 0; c < 3; c++)
            ck_assert_int_eq(planes[c * H * W + p], rgb[3 * p + c]);
    }
    /* another size without resize: the file and both sizes named */
    ck_assert_int_ne(cnnelm_image_to_input(&img, "rgb.png", 3, 8, 8, 0, planes, &err), 0);
    ck_assert_msg(strstr(err.msg, "rgb.png: image is 10x12 (width x height) but 8x8 is expected"), "%s", err.msg);
    cnnelm_image_free(&img);

    /* a smooth RGB JPEG at quality 100 decodes to within a few grey levels */
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = rgb + ((size_t)y * W + x) * 3;
            p[0] = (uint8_t)(20 * x);
            p[1] = (uint8_t)(20 * y);
            p[2] = 128;
        }
    write_rgb_jpeg(in_tmp("rgb.jpg"), rgb, H, W, 100);
    ck_assert_msg(cnnelm_image_read(in_tmp("rgb.jpg"), &img, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(img.c, 3);
    double diff = 0;
    for (int i = 0; i < H * W * 3; i++)
        diff += fabs((double)img.pix[i] - rgb[i]);
    ck_assert_msg(diff / (H * W * 3) < 4, "mean difference %g grey levels", diff / (H * W * 3));
    cnnelm_image_free(&img);

    /* gray to RGB copies; bilinear 2x2 -> 4x4 with pixel centres aligned, worked by hand:
     * source x of target x is (x + 0.5) / 2 - 0.5, clamped: -0.25 -> 0, 0.25, 0.75, 1.25 -> 1 */
    uint8_t g2[4] = { 0, 100, 200, 40 };
    cnnelm_image small = { g2, 2, 2, 1 };
    uint8_t up[3 * 16];
    ck_assert_int_eq(cnnelm_image_to_input(&small, "small", 3, 4, 4, 1, up, &err), 0);
    const uint8_t row0[4] = { 0, 25, 75, 100 }, row3[4] = { 200, 160, 80, 40 };
    for (int c = 0; c < 3; c++) {
        ck_assert_mem_eq(up + c * 16, row0, 4);
        ck_assert_mem_eq(up + c * 16 + 12, row3, 4);
    }
    /* row 1 (source y 0.25): 0.75 row0 + 0.25 row3 */
    const uint8_t row1[4] = { 50, 59, 76, 85 };
    ck_assert_mem_eq(up + 4, row1, 4);
}
END_TEST

int main(void)
{
    const char *ti = CNNELM_FASHION_DIR "/train-images-idx3-ubyte.gz";
    if (access(ti, R_OK) != 0) {
        printf("SKIP: %s not found (install Debian's dataset-fashion-mnist)\n", ti);
        return EXIT_SUCCESS;
    }
    cnnelm_error err = {""};
    if (cnnelm_dataset_load(&fashion, ti, CNNELM_FASHION_DIR "/train-labels-idx1-ubyte.gz", 256, N_FOLDER, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return EXIT_FAILURE;
    }
    snprintf(tmp, sizeof tmp, "/tmp/cnnelm_test_image.XXXXXX");
    if (!mkdtemp(tmp))
        return EXIT_FAILURE;
    Suite *s = suite_create("image");
    TCase *tc = tcase_create("image");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, folder_same_as_idx);
    tcase_add_test(tc, csv_same_as_idx);
    tcase_add_test(tc, rgb_colour_carries_class);
    tcase_add_test(tc, unsupported_formats);
    tcase_add_test(tc, decode_and_convert);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    cnnelm_dataset_free(&fashion);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (failed == 0 && system(cmd) != 0)
        return EXIT_FAILURE;
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
