/* Tests of cnnelm predict and info: predictions on the Fashion-MNIST test set agree with eval
 * exactly, a PNG of a test image gets that image's IDX prediction (and scores), the predictor
 * API streams any number of inputs, info reads format 1 (a fixture written by the old code) and
 * format 2 with class names, and bad inputs are one-line errors. */
#define _GNU_SOURCE
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnnelm/dataset.h"
#include "cnnelm/metrics.h"
#include "cnnelm/model.h"
#include "cnnelm/predict.h"
#include "cnnelm/run.h"
#include "data/image.h"

static char tmp[256];
static char model_path[512];
static cnnelm_dataset test_ds;
#define TEST_IMAGES CNNELM_FASHION_DIR "/t10k-images-idx3-ubyte.gz"
#define TEST_LABELS CNNELM_FASHION_DIR "/t10k-labels-idx1-ubyte.gz"
static const char *names_set =
    "data.class_names=\"T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot\"";

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    if (len)
        *len = (size_t)n;
    return buf;
}

/* Runs fn with stdout (fd 1) going to a file; returns what it wrote. */
static char *capture_stdout(int (*fn)(void *), void *arg, int *rc)
{
    char path[600];
    snprintf(path, sizeof path, "%s/stdout.txt", tmp);
    fflush(stdout);
    int saved = dup(1), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 1);
    close(fd);
    *rc = fn(arg);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    return read_text(path, NULL);
}

static int do_eval(void *arg)
{
    cnnelm_run_options *o = arg;
    cnnelm_error err = {""};
    int rc = cnnelm_run_eval(o, &err);
    if (rc)
        fprintf(stderr, "%s\n", err.msg);
    return rc;
}

typedef struct predict_call {
    cnnelm_predict_options o;
    cnnelm_error err;
} predict_call;

static int do_predict(void *arg)
{
    predict_call *c = arg;
    c->o.out = stdout; /* as the tool calls it */
    return cnnelm_run_predict(&c->o, &c->err);
}

typedef struct info_call {
    const char *path;
    int json;
    cnnelm_error err;
} info_call;

static int do_info(void *arg)
{
    info_call *c = arg;
    return cnnelm_run_info(c->path, c->json, stdout, &c->err);
}

START_TEST(predict_agrees_with_eval)
{
    /* eval's accuracy, from its report */
    char report[600];
    snprintf(report, sizeof report, "%s/eval.json", tmp);
    cnnelm_run_options eo = { 0 };
    eo.config_path = CNNELM_SOURCE_DIR "/conf/paper-fashion.cfg";
    eo.model_path = model_path;
    eo.report_path = report;
    eo.quiet = 1;
    int rc;
    free(capture_stdout(do_eval, &eo, &rc));
    ck_assert_int_eq(rc, 0);
    char *rep = read_text(report, NULL);
    char *acc = strstr(strstr(rep, "\"test\""), "\"accuracy\"");
    ck_assert_ptr_nonnull(acc);
    double eval_acc = strtod(acc + strlen("\"accuracy\":"), NULL);
    ck_assert_msg(strstr(rep, "\"per_class\"") && strstr(rep, "\"Ankle boot\""), "report lacks per-class figures");
    free(rep);

    /* predict on the IDX test set (labels from the sibling file) */
    char out[600];
    snprintf(out, sizeof out, "%s/pred.csv", tmp);
    const char *inputs[] = { TEST_IMAGES };
    predict_call pc = { { .model_path = model_path, .inputs = inputs, .n_inputs = 1, .output_path = out,
                          .top_k = 3, .quiet = 1 }, {""} };
    char *said = capture_stdout(do_predict, &pc, &rc);
    ck_assert_msg(rc == 0, "%s", pc.err.msg);
    ck_assert_msg(strstr(said, "10000 predictions written"), "%s", said);
    free(said);
    char *csv = read_text(out, NULL);
    char *line = strtok(csv, "\n");
    ck_assert_str_eq(line, "source,predicted,predicted_name,label,top1,top1_score,top2,top2_score,top3,top3_score");
    size_t rows = 0, right = 0;
    while ((line = strtok(NULL, "\n"))) {
        char src[600], name[64];
        int pred, label, top1;
        ck_assert_msg(sscanf(line, "%[^,],%d,%63[^,],%d,%d,", src, &pred, name, &label, &top1) == 5, "%s", line);
        char expect[600];
        snprintf(expect, sizeof expect, "%s:%zu", TEST_IMAGES, rows);
        ck_assert_str_eq(src, expect);
        ck_assert_int_eq(label, test_ds.labels[rows]);
        ck_assert_int_eq(pred, top1);
        right += pred == label;
        rows++;
    }
    free(csv);
    ck_assert_uint_eq(rows, 10000);
    printf("predict: %zu rows, %zu right = %.4f; eval: %.4f\n", rows, right, (double)right / (double)rows, eval_acc);
    ck_assert_double_eq_tol((double)right / (double)rows, eval_acc, 1e-12);
}
END_TEST

START_TEST(png_gets_its_idx_prediction)
{
    cnnelm_error err = {""};
    cnnelm_model m;
    ck_assert_int_eq(cnnelm_model_load(&m, model_path, &err), 0);
    cnnelm_predictor *p;
    ck_assert_msg(cnnelm_predictor_open(&p, &m, NULL, &err) == 0, "%s", err.msg);
    enum { N = 2500 }; /* more than one chunk of the default config */
    float *ref = malloc((size_t)N * 10 * sizeof *ref);
    ck_assert_int_eq(cnnelm_predictor_run(p, test_ds.images, N, ref, &err), 0);
    /* the same scores example by example, within float rounding (the matrix product sums in
     * another order for another chunk size): nothing depends on the chunk's other examples */
    float one[10];
    for (size_t i = 0; i < N; i += 499) {
        ck_assert_int_eq(cnnelm_predictor_run(p, test_ds.images + i * 784, 1, one, &err), 0);
        for (int c = 0; c < 10; c++)
            ck_assert_float_eq_tol(one[c], ref[i * 10 + (size_t)c], 1e-5f);
    }
    /* test images 0, 17 and 1234 as PNG files, one with a comma in its name, predicted by name */
    const size_t pick[3] = { 0, 17, 1234 };
    char files[3][600];
    const char *inputs[3];
    for (int k = 0; k < 3; k++) {
        snprintf(files[k], sizeof files[k], "%s/test%s%zu.png", tmp, k == 1 ? ",odd" : "", pick[k]);
        ck_assert_int_eq(cnnelm_image_write_png(files[k], test_ds.images + pick[k] * 784, 28, 28, 1, &err), 0);
        inputs[k] = files[k];
    }
    char out[600];
    snprintf(out, sizeof out, "%s/png.csv", tmp);
    predict_call pc = { { .model_path = model_path, .inputs = inputs, .n_inputs = 3, .output_path = out,
                          .scores = 1, .quiet = 1 }, {""} };
    int rc;
    free(capture_stdout(do_predict, &pc, &rc));
    ck_assert_msg(rc == 0, "%s", pc.err.msg);
    char *csv = read_text(out, NULL);
    ck_assert_msg(strstr(csv, "score_T-shirt/top,score_Trouser") != NULL, "%s", csv);
    char *line = strtok(csv, "\n");
    for (int k = 0; k < 3; k++) {
        line = strtok(NULL, "\n");
        ck_assert_ptr_nonnull(line);
        char *comma = line;
        if (*line == '"') { /* the quoted name */
            comma = strchr(line + 1, '"');
            ck_assert_ptr_nonnull(comma);
            ck_assert_int_eq(k, 1);
        }
        comma = strchr(comma, ',');
        int pred = atoi(comma + 1);
        int want = cnnelm_argmax(ref + pick[k] * 10, 10);
        ck_assert_msg(pred == want, "%s: predicted %d, the IDX row says %d", files[k], pred, want);
        /* the scores: the last 10 fields, as printed with %.6g */
        char *f = line + strlen(line);
        for (int c = 9; c >= 0; c--) {
            while (f[-1] != ',')
                f--;
            ck_assert_double_eq_tol(strtod(f, NULL), ref[pick[k] * 10 + (size_t)c], 1e-5);
            f--;
        }
    }
    free(csv);
    free(ref);
    cnnelm_predictor_close(p);
    cnnelm_model_free(&m);
}
END_TEST

START_TEST(info_reads_both_versions)
{
    info_call ic = { CNNELM_SOURCE_DIR "/tests/data/model-v1.model", 0, {""} };
    int rc;
    char *t = capture_stdout(do_info, &ic, &rc);
    ck_assert_msg(rc == 0, "%s", ic.err.msg);
    ck_assert_msg(strstr(t, "format version 1") && strstr(t, "2c-2s, kernel 3x3") &&
                  strstr(t, "1 channel x 8 x 8") && strstr(t, "classes         3 (no names)") &&
                  strstr(t, "lambda          100") && strstr(t, "examples seen   50") &&
                  strstr(t, "iterations      2") && strstr(t, "diverged        no") &&
                  strstr(t, "partitions      unknown") && strstr(t, "CRC-32 0fe0e49c"), "%s", t);
    free(t);
    ic.path = model_path;
    ic.json = 1;
    t = capture_stdout(do_info, &ic, &rc);
    ck_assert_msg(rc == 0, "%s", ic.err.msg);
    ck_assert_msg(strstr(t, "\"format_version\": 2") && strstr(t, "\"input_channels\": 1") &&
                  strstr(t, "\"Ankle boot\"") && strstr(t, "\"reduce\": \"none\"") &&
                  strstr(t, "\"partitions\": 1") && strstr(t, "\"training_examples\": 2000"), "%s", t);
    free(t);

    /* format 2 round trip with names, partitions, reduce; a damaged names block is an error */
    cnnelm_error err = {""};
    cnnelm_model m, back;
    ck_assert_int_eq(cnnelm_model_load(&m, CNNELM_SOURCE_DIR "/tests/data/model-v1.model", &err), 0);
    ck_assert_ptr_null(m.class_names);
    char *names[3] = { "cat", "dog", "bird" };
    ck_assert_int_eq(cnnelm_model_set_class_names(&m, names, &err), 0);
    m.partitions = 4;
    m.reduce = 1 + CNNELM_REDUCE_REFIT;
    unsigned char *buf;
    size_t len;
    ck_assert_int_eq(cnnelm_model_encode(&m, &buf, &len, &err), 0);
    ck_assert_int_eq(cnnelm_model_decode(&back, buf, len, "mem", &err), 0);
    ck_assert_str_eq(back.class_names[2], "bird");
    ck_assert_uint_eq(back.partitions, 4);
    ck_assert_uint_eq(back.reduce, 1 + CNNELM_REDUCE_REFIT);
    ck_assert_mem_eq(back.U, m.U, (size_t)m.arch.hidden * m.arch.hidden * sizeof(double));
    cnnelm_model_free(&back);
    buf[len - 6] = 'X'; /* the last name's NUL */
    ck_assert_int_ne(cnnelm_model_decode(&back, buf, len, "mem", &err), 0);
    ck_assert_msg(strstr(err.msg, "mem: "), "%s", err.msg);
    free(buf);
    cnnelm_model_free(&m);
}
END_TEST

START_TEST(predict_bad_inputs)
{
    char path[600];
    snprintf(path, sizeof path, "%s/notes.txt", tmp);
    FILE *f = fopen(path, "w");
    fputs("these are notes, not pixels\n", f);
    fclose(f);
    const char *inputs[] = { path };
    predict_call pc = { { .model_path = model_path, .inputs = inputs, .n_inputs = 1, .quiet = 1 }, {""} };
    ck_assert_int_ne(cnnelm_run_predict(&pc.o, &pc.err), 0);
    ck_assert_msg(strstr(pc.err.msg, "notes.txt:1: 2 fields, but the model takes 784 pixels"), "%s", pc.err.msg);
    /* a blank field (a space between commas, or a trailing comma) is an error, not a pixel of 0;
     * row 1 sets 785 fields (a label and 784 pixels), row 2 has as many with one blank */
    for (int trailing = 0; trailing < 2; trailing++) {
        f = fopen(path, "w");
        fputs("3", f);
        for (int k = 0; k < 784; k++)
            fputs(",7", f);
        fputs("\n3", f);
        for (int k = 0; k < 783; k++)
            fputs(!trailing && k == 400 ? ", " : ",7", f);
        fputs(trailing ? ",\n" : ",7\n", f);
        fclose(f);
        ck_assert_int_ne(cnnelm_run_predict(&pc.o, &pc.err), 0);
        ck_assert_msg(strstr(pc.err.msg, "notes.txt:2: a field is not an integer in 0..255"), "%s", pc.err.msg);
    }
    /* a 1-channel model and an 8x8 image, without --resize */
    cnnelm_error err = {""};
    uint8_t small[64] = { 1, 2, 3 };
    snprintf(path, sizeof path, "%s/small.png", tmp);
    ck_assert_int_eq(cnnelm_image_write_png(path, small, 8, 8, 1, &err), 0);
    ck_assert_int_ne(cnnelm_run_predict(&pc.o, &pc.err), 0);
    ck_assert_msg(strstr(pc.err.msg, "small.png: image is 8x8 (width x height) but 28x28 is expected"), "%s",
                  pc.err.msg);
    pc.o.resize = 1;
    int rc;
    free(capture_stdout(do_predict, &pc, &rc));
    ck_assert_msg(rc == 0, "%s", pc.err.msg);
    /* labels that do not match the images in number */
    inputs[0] = TEST_IMAGES;
    pc.o.labels_path = CNNELM_SOURCE_DIR "/tests/data/model-v1.model";
    ck_assert_int_ne(cnnelm_run_predict(&pc.o, &pc.err), 0);
    ck_assert_msg(strstr(pc.err.msg, "model-v1.model: bad magic"), "%s", pc.err.msg);
    ck_assert_ptr_null(strchr(pc.err.msg, '\n'));
}
END_TEST

int main(void)
{
    if (access(TEST_IMAGES, R_OK) != 0) {
        printf("SKIP: %s not found (install Debian's dataset-fashion-mnist)\n", TEST_IMAGES);
        return EXIT_SUCCESS;
    }
    snprintf(tmp, sizeof tmp, "/tmp/cnnelm_test_predict.XXXXXX");
    if (!mkdtemp(tmp))
        return EXIT_FAILURE;
    cnnelm_error err = {""};
    if (cnnelm_dataset_load(&test_ds, TEST_IMAGES, TEST_LABELS, 10, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return EXIT_FAILURE;
    }
    /* one small model for every test */
    snprintf(model_path, sizeof model_path, "%s/fashion.model", tmp);
    const char *sets[] = { "data.train_limit=2000", "model.layers=\"4c-2s\"", names_set, "data.test_limit=100" };
    cnnelm_run_options o = { 0 };
    o.config_path = CNNELM_SOURCE_DIR "/conf/paper-fashion.cfg";
    o.overrides = sets;
    o.n_overrides = 4;
    o.model_path = model_path;
    o.quiet = 1;
    if (cnnelm_run_train(&o, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return EXIT_FAILURE;
    }
    Suite *s = suite_create("predict");
    TCase *tc = tcase_create("predict");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, predict_agrees_with_eval);
    tcase_add_test(tc, png_gets_its_idx_prediction);
    tcase_add_test(tc, info_reads_both_versions);
    tcase_add_test(tc, predict_bad_inputs);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    cnnelm_dataset_free(&test_ds);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (failed == 0 && system(cmd) != 0)
        return EXIT_FAILURE;
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
