/* cnnelm predict: a model on one device applied to inputs of every kind, read and predicted chunk
 * by chunk so memory does not grow with the number of inputs; one CSV row per example. */
#define _GNU_SOURCE /* fopencookie (and X/Open 7) */

#include "cnnelm/predict.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/atomic_file.h"
#include "cnnelm/dataset.h"
#include "data/dataset_stream.h"
#include "data/idx_stream.h"
#include "cnnelm/metrics.h"
#include "data/image.h"
#include "data/image_folder.h"
typedef struct predict_job {
    const cnnelm_predict_options *o;
    const cnnelm_model *m;
    cnnelm_predictor *p;
    FILE *out;
    int chunk;
    size_t ex;              /* bytes per example */
    uint8_t *x;             /* chunk inputs */
    int *truth;             /* chunk labels, -1 unknown */
    char **source;          /* chunk source names */
    float *y;               /* chunk scores */
    unsigned char *taken;   /* classes, for the top-K selection */
    int fill;               /* examples in the chunk */
    uint64_t rows, labelled, right;
    int header_done;
} predict_job;

/* A CSV field: quoted when it holds a comma, a quote or a line break. */
static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void write_header(predict_job *j)
{
    const cnnelm_predict_options *o = j->o;
    int C = j->m->arch.classes;
    fputs("source,predicted", j->out);
    if (j->m->class_names)
        fputs(",predicted_name", j->out);
    fputs(",label", j->out);
    for (int k = 1; k <= o->top_k && k <= C; k++)
        fprintf(j->out, ",top%d,top%d_score", k, k);
    for (int k = 0; o->scores && k < C; k++) {
        fputs(",score_", j->out);
        csv_field(j->out, j->m->class_names ? j->m->class_names[k] : "");
        if (!j->m->class_names)
            fprintf(j->out, "%d", k);
    }
    fputc('\n', j->out);
}

/* Predicts the examples gathered so far and writes their rows. */
static int flush_chunk(predict_job *j, cnnelm_error *err)
{
    if (j->fill == 0)
        return 0;
    int C = j->m->arch.classes;
    if (cnnelm_predictor_run(j->p, j->x, (size_t)j->fill, j->y, err))
        return -1;
    if (!j->header_done) {
        write_header(j);
        j->header_done = 1;
    }
    for (int i = 0; i < j->fill; i++) {
        const float *s = j->y + (size_t)i * C;
        int guess = cnnelm_argmax(s, C);
        csv_field(j->out, j->source[i]);
        fprintf(j->out, ",%d", guess);
        if (j->m->class_names) {
            fputc(',', j->out);
            csv_field(j->out, j->m->class_names[guess]);
        }
        if (j->truth[i] >= 0) {
            fprintf(j->out, ",%d", j->truth[i]);
            j->labelled++;
            j->right += guess == j->truth[i];
        } else {
            fputc(',', j->out);
        }
        /* top K by repeated selection: K and C are small */
        memset(j->taken, 0, (size_t)C);
        for (int k = 0; k < j->o->top_k && k < C; k++) {
            int best = -1;
            for (int c = 0; c < C; c++)
                if (!j->taken[c] && (best < 0 || s[c] > s[best]))
                    best = c;
            j->taken[best] = 1;
            fprintf(j->out, ",%d,%.6g", best, s[best]);
        }
        for (int c = 0; j->o->scores && c < C; c++)
            fprintf(j->out, ",%.6g", s[c]);
        fputc('\n', j->out);
        free(j->source[i]);
        j->source[i] = NULL;
        j->rows++;
    }
    j->fill = 0;
    if (ferror(j->out))
        return cnnelm_fail(err, "%s: write failed", j->o->output_path ? j->o->output_path : "the output stream");
    return 0;
}

/* Claims the next slot of the chunk (flushing a full one); returns its index or -1. */
static int next_slot(predict_job *j, const char *source, int truth, cnnelm_error *err)
{
    if (j->fill == j->chunk && flush_chunk(j, err))
        return -1;
    int i = j->fill;
    j->source[i] = strdup(source);
    if (!j->source[i])
        return cnnelm_fail(err, "out of memory");
    j->truth[i] = truth;
    return i;
}

static int check_truth(const predict_job *j, const char *path, size_t index, int label, cnnelm_error *err)
{
    if (label >= j->m->arch.classes)
        return cnnelm_fail(err, "%s: label %d of example %zu is out of range (the model has %d classes)",
                           path, label, index, j->m->arch.classes);
    return 0;
}

/* A sibling labels file of an IDX images file: "images" -> "labels", "idx3" -> "idx1". */
static int sibling_labels(const char *images, char *out, size_t size)
{
    const char *slash = strrchr(images, '/');
    const char *base = slash ? slash + 1 : images;
    const char *at = strstr(base, "images");
    if (!at || strlen(images) + 1 > size)
        return 0;
    snprintf(out, size, "%.*slabels%s", (int)(at - images), images, at + 6);
    char *idx3 = strstr(out + (base - images), "idx3");
    if (idx3)
        idx3[3] = '1';
    return access(out, R_OK) == 0;
}

static int predict_idx(predict_job *j, const char *path, cnnelm_error *err)
{
    const cnnelm_arch *a = &j->m->arch;
    cnnelm_dataset ds;
    memset(&ds, 0, sizeof ds);
    /* streamed: the images are read one slot at a time (a gzipped file through the cache) */
    cnnelm_idx_info info;
    if (cnnelm_idx_image_info(path, &info, err))
        return -1;
    int rc = -1;
    int ch = info.channels;
    if (info.rows != a->in_h || info.cols != a->in_w || ch != a->in_c) {
        cnnelm_fail(err, "%s: images are %dx%dx%d (channels x rows x cols) but the model takes %dx%dx%d",
                    path, ch, info.rows, info.cols, a->in_c, a->in_h, a->in_w);
        goto out;
    }
    ds.stream = cnnelm_stream_new(j->ex, "", j->o->quiet, err);
    if (!ds.stream ||
        cnnelm_stream_add_file(ds.stream, path, info.n, info.n, info.rows, info.cols, ch, 0, err))
        goto out;
    ds.n = info.n;
    char lab[CNNELM_PATH_MAX + 16];
    const char *labels = j->o->labels_path;
    if (!labels && sibling_labels(path, lab, sizeof lab))
        labels = lab;
    size_t n_images = ds.n;
    if (labels) {
        if (cnnelm_idx_read_labels(labels, &ds, err))
            goto out;
        if (ds.n != n_images) {
            cnnelm_fail(err, "%s: %zu labels, but %s has %zu images", labels, ds.n, path, n_images);
            goto out;
        }
    }
    if (!j->o->quiet)
        fprintf(stderr, "cnnelm: %s: %zu images%s%s\n", path, n_images, labels ? ", labels from " : "",
                labels ? labels : "");
    for (size_t i = 0; i < n_images; i++) {
        int truth = labels ? ds.labels[i] : -1;
        if (truth >= 0 && check_truth(j, labels, i, truth, err))
            goto out;
        char name[CNNELM_PATH_MAX + 32];
        snprintf(name, sizeof name, "%s:%zu", path, i);
        int s = next_slot(j, name, truth, err);
        if (s < 0)
            goto out;
        if (cnnelm_dataset_fetch(&ds, NULL, i, 1, j->x + (size_t)s * j->ex, err))
            goto out;
        j->fill++;
    }
    rc = 0;
out:
    cnnelm_dataset_free(&ds);
    return rc;
}

static int predict_image(predict_job *j, const char *path, int truth, cnnelm_error *err)
{
    const cnnelm_arch *a = &j->m->arch;
    cnnelm_image img;
    if (cnnelm_image_read(path, &img, err))
        return -1;
    int s = next_slot(j, path, truth, err);
    int rc = s < 0 ? -1 : cnnelm_image_to_input(&img, path, a->in_c, a->in_h, a->in_w, j->o->resize,
                                                 j->x + (size_t)s * j->ex, err);
    cnnelm_image_free(&img);
    if (rc == 0)
        j->fill++;
    else if (s >= 0) {
        free(j->source[s]);
        j->source[s] = NULL;
    }
    return rc;
}

/* The model's class for a folder's subfolder: by name when the model has names, else by index. */
static int folder_class(const predict_job *j, const cnnelm_file_list *l, int label, const char *dir,
                        cnnelm_error *err)
{
    if (label < 0)
        return -1;
    const char *name = l->class_names[label];
    if (j->m->class_names) {
        for (int k = 0; k < j->m->arch.classes; k++)
            if (strcmp(j->m->class_names[k], name) == 0)
                return k;
        return cnnelm_fail(err, "%s: subfolder \"%s\" is not one of the model's class names", dir, name) - 1;
    }
    if (label >= j->m->arch.classes)
        return cnnelm_fail(err, "%s: %d class subfolders, but the model has %d classes", dir,
                           l->n_classes, j->m->arch.classes) - 1;
    return label;
}

static int predict_folder(predict_job *j, const char *dir, cnnelm_error *err)
{
    cnnelm_file_list l;
    if (cnnelm_folder_scan(dir, 0, &l, err))
        return -1;
    int rc = -1;
    for (size_t i = 0; i < l.n; i++) {
        int truth = folder_class(j, &l, l.label[i], dir, err);
        if (truth < -1)
            goto out;
        if (predict_image(j, l.path[i], truth, err))
            goto out;
    }
    rc = 0;
out:
    cnnelm_file_list_free(&l);
    return rc;
}

/* CSV rows one at a time: "label,pixels..." or just "pixels..." (no labels); a header skipped. */
static int predict_csv(predict_job *j, const char *path, cnnelm_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return cnnelm_fail(err, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0, index = 0;
    long lineno = 0;
    int rc = -1, has_label = -1;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (len == 0 || line[0] == '\n' || line[0] == '\r')
            continue;
        size_t fields = 1;
        for (char *q = line; *q; q++)
            fields += *q == ',';
        if (has_label < 0) {
            if (fields == j->ex + 1)
                has_label = 1;
            else if (fields == j->ex)
                has_label = 0;
            else {
                cnnelm_fail(err, "%s:%ld: %zu fields, but the model takes %zu pixels (with or without a "
                            "label first)", path, lineno, fields, j->ex);
                goto out;
            }
        }
        if (fields != j->ex + (size_t)has_label) {
            cnnelm_fail(err, "%s:%ld: %zu fields, the first row has %zu", path, lineno, fields,
                        j->ex + (size_t)has_label);
            goto out;
        }
        char name[CNNELM_PATH_MAX + 32];
        snprintf(name, sizeof name, "%s:%zu", path, index);
        int s = next_slot(j, name, -1, err);
        if (s < 0)
            goto out;
        uint8_t *dst = j->x + (size_t)s * j->ex;
        char *q = line;
        int bad = 0, truth = -1;
        for (size_t k = 0; k < fields && !bad; k++) {
            char *end;
            errno = 0;
            long v = strtol(q, &end, 10);
            while (*end == ' ' || *end == '\r' || *end == '\n' || *end == '\t')
                end++;
            if (end == q || errno || v < 0 || v > 255 || (*end != ',' && *end != '\0'))
                bad = 1;
            else if (has_label && k == 0)
                truth = (int)v;
            else
                dst[k - (size_t)has_label] = (uint8_t)v;
            q = end + 1;
        }
        if (bad && lineno == 1) { /* a header row */
            free(j->source[s]);
            j->source[s] = NULL;
            continue;
        }
        if (bad) {
            free(j->source[s]);
            j->source[s] = NULL;
            cnnelm_fail(err, "%s:%ld: a field is not an integer in 0..255", path, lineno);
            goto out;
        }
        if (truth >= 0 && check_truth(j, path, index, truth, err)) {
            free(j->source[s]);
            j->source[s] = NULL;
            goto out;
        }
        j->truth[s] = truth;
        j->fill++;
        index++;
    }
    rc = 0;
out:
    free(line);
    fclose(f);
    return rc;
}

static int predict_input(predict_job *j, const char *path, cnnelm_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return cnnelm_fail(err, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return predict_folder(j, path, err);
    if (cnnelm_image_sniff(path))
        return predict_image(j, path, -1, err);
    char what[128];
    cnnelm_file_describe(path, what, sizeof what);
    if (strcmp(what, "a text file") == 0)
        return predict_csv(j, path, err);
    if (strncmp(what, "an IDX file of unsigned byte", 28) == 0 || strcmp(what, "a gzip file") == 0)
        return predict_idx(j, path, err);
    return cnnelm_fail(err, "%s: not a supported input (%s); supported: IDX images (unsigned bytes, "
                       "3 dimensions or 4 with channels), PNG and JPEG files (8-bit gray or RGB), "
                       "folders of them, CSV (label first, then pixels)", path, what);
}

static ssize_t discard_write(void *cookie, const char *buf, size_t n)
{
    (void)cookie;
    (void)buf;
    return (ssize_t)n;
}

int cnnelm_run_predict(const cnnelm_predict_options *o, cnnelm_error *err)
{
    if (o->n_inputs < 1)
        return cnnelm_fail(err, "no inputs to predict");
    if (o->top_k < 0)
        return cnnelm_fail(err, "--top %d: expected 1 or more", o->top_k);
    cnnelm_config *cfg = NULL;
    int rc = -1;
    cnnelm_model m;
    memset(&m, 0, sizeof m);
    predict_job j;
    memset(&j, 0, sizeof j);
    j.o = o;
    cnnelm_atomic_file af;
    int af_open = 0;
    FILE *discard = NULL; /* out = NULL without output_path: the rows go nowhere */
    if (o->config_path || o->n_overrides) {
        if (!(cfg = malloc(sizeof *cfg)))
            return cnnelm_fail(err, "out of memory");
        if (cnnelm_config_load(cfg, o->config_path, o->overrides, o->n_overrides, err)) {
            free(cfg);
            return -1;
        }
    }
    if (cnnelm_model_load(&m, o->model_path, err))
        goto out;
    j.m = &m;
    if (cnnelm_predictor_open(&j.p, &m, cfg, err))
        goto out;
    j.chunk = cnnelm_predictor_chunk(j.p);
    j.ex = (size_t)m.arch.in_c * m.arch.in_h * m.arch.in_w;
    j.x = malloc((size_t)j.chunk * j.ex);
    j.truth = malloc((size_t)j.chunk * sizeof *j.truth);
    j.source = calloc((size_t)j.chunk, sizeof *j.source);
    j.y = malloc((size_t)j.chunk * m.arch.classes * sizeof *j.y);
    j.taken = malloc((size_t)m.arch.classes);
    if (!j.x || !j.truth || !j.source || !j.y || !j.taken) {
        cnnelm_fail(err, "out of memory");
        goto out;
    }
    if (o->output_path) {
        if (cnnelm_atomic_open(&af, o->output_path, err))
            goto out;
        af_open = 1;
        j.out = af.f;
    } else if (o->out) {
        j.out = o->out;
    } else if ((j.out = discard = fopencookie(NULL, "w", (cookie_io_functions_t){ .write = discard_write })) == NULL) {
        cnnelm_fail(err, "out of memory");
        goto out;
    }
    if (!o->quiet)
        fprintf(stderr, "cnnelm: model %s (%s, %dx%dx%d inputs, %d classes) on %s\n", o->model_path,
                m.arch.layers, m.arch.in_c, m.arch.in_h, m.arch.in_w, m.arch.classes,
                cnnelm_predictor_device(j.p));
    for (int i = 0; i < o->n_inputs; i++)
        if (predict_input(&j, o->inputs[i], err))
            goto out;
    if (flush_chunk(&j, err))
        goto out;
    if (af_open) {
        af_open = 0;
        if (cnnelm_atomic_commit(&af, err))
            goto out;
    } else if (fflush(j.out) != 0 || ferror(j.out)) {
        cnnelm_fail(err, "writing the predictions failed: %s", strerror(errno));
        goto out;
    }
    /* with the CSV in a file the summary goes to the caller's stream, else beside the CSV on stderr */
    FILE *msg = o->output_path ? o->out : stderr;
    if (o->output_path && msg)
        fprintf(msg, "%llu predictions written to %s\n", (unsigned long long)j.rows, o->output_path);
    if (j.labelled && msg)
        fprintf(msg, "accuracy %.2f%% (%llu of %llu labelled examples)\n",
                100.0 * (double)j.right / (double)j.labelled, (unsigned long long)j.right,
                (unsigned long long)j.labelled);
    rc = 0;
out:
    if (af_open)
        cnnelm_atomic_abort(&af);
    if (discard)
        fclose(discard);
    if (j.source)
        for (int i = 0; i < j.chunk; i++)
            free(j.source[i]);
    free(j.source);
    free(j.x);
    free(j.truth);
    free(j.y);
    free(j.taken);
    cnnelm_predictor_close(j.p);
    cnnelm_model_free(&m);
    if (cfg) {
        cnnelm_config_free(cfg);
        free(cfg);
    }
    return rc;
}
