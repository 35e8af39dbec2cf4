/* cnnelm predict's input readers (see predict_job.h): IDX images (with their sibling labels
 * file), PNG and JPEG files, folders of them and CSV rows, each example read into the next
 * slot of the job's chunk. */
#define _GNU_SOURCE /* getline, strdup (X/Open 7) */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnnelm/dataset.h"
#include "data/dataset_stream.h"
#include "data/idx_stream.h"
#include "data/image.h"
#include "data/image_folder.h"
#include "report/predict_job.h"

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
        int s = cnnelm_predict_next_slot(j, name, truth, err);
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
    int s = cnnelm_predict_next_slot(j, path, truth, err);
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
        int s = cnnelm_predict_next_slot(j, name, -1, err);
        if (s < 0)
            goto out;
        uint8_t *dst = j->x + (size_t)s * j->ex;
        char *q = line;
        int bad = 0, truth = -1;
        for (size_t k = 0; k < fields && !bad; k++) {
            char *end;
            errno = 0;
            long v = strtol(q, &end, 10);
            int empty = end == q; /* before the spaces are skipped: a blank field is no 0 */
            while (*end == ' ' || *end == '\r' || *end == '\n' || *end == '\t')
                end++;
            if (empty || errno || v < 0 || v > 255 || (*end != ',' && *end != '\0'))
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

int cnnelm_predict_input(predict_job *j, const char *path, cnnelm_error *err)
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
