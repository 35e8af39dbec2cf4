/* cnnelm data set inputs other than plain IDX: the dispatch by what a path is (IDX, image
 * folder, CSV), CSV parsing, gray conversion and class names. */
#define _XOPEN_SOURCE 700

#include "cnnelm/dataset.h"
#include "data/image.h"
#include "data/image_folder.h"
#include "data/idx_stream.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cnnelm_csv_shape(const char *path, size_t pixels, int *c, int *h, int *w, cnnelm_error *err)
{
    for (int ch = 1; ch <= 3; ch += 2) {
        if (pixels % (size_t)ch)
            continue;
        size_t per = pixels / (size_t)ch, s = (size_t)(sqrt((double)per) + 0.5);
        if (s * s == per && s > 0 && s <= 4096) {
            *c = ch;
            *h = *w = (int)s;
            return 0;
        }
    }
    return cnnelm_fail(err, "%s: a text file read as CSV with %zu pixels per row, which is not a square "
                       "image (s x s gray, or 3 x s x s RGB planes); supported: CSV of a label then pixels, "
                       "IDX, folders of PNG/JPEG images", path, pixels);
}

/* Splits a line at commas into numbers; returns the count, or -1 at the first field that is not
 * an integer in 0..255 (*bad_field set). */
static long parse_row(char *line, uint8_t *out, size_t cap, long *bad_field)
{
    long n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        while (*end == ' ' || *end == '\t' || *end == '\r')
            end++;
        if (end == p || errno || v < 0 || v > 255 || (*end != ',' && *end != '\0' && *end != '\n')) {
            *bad_field = n;
            return -1;
        }
        if ((size_t)n < cap)
            out[n] = (uint8_t)v;
        n++;
        if (*end != ',')
            return n;
        p = end + 1;
    }
}

int cnnelm_csv_load(cnnelm_dataset *ds, const char *path, cnnelm_error *err)
{
    memset(ds, 0, sizeof *ds);
    FILE *f = fopen(path, "r");
    if (!f)
        return cnnelm_fail(err, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t line_cap = 0, n = 0, cap = 0, fields = 0;
    long lineno = 0;
    uint8_t *row = NULL, *images = NULL, *labels = NULL;
    int rc = -1, c = 1, h = 0, w = 0;
    ssize_t len;
    while ((len = getline(&line, &line_cap, f)) >= 0) {
        lineno++;
        if (len == 0 || line[0] == '\n' || (line[0] == '\r' && line[1] == '\n'))
            continue;
        if (!row) {
            /* the first row fixes the field count; a header is a first row that is not numbers */
            fields = 1;
            for (char *p = line; *p; p++)
                fields += *p == ',';
            if (fields < 2) {
                cnnelm_fail(err, "%s:%ld: a text file with one field a row; supported: CSV of a label then "
                            "pixels, IDX, folders of PNG/JPEG images", path, lineno);
                goto out;
            }
            if (cnnelm_csv_shape(path, fields - 1, &c, &h, &w, err))
                goto out;
            row = malloc(fields);
            if (!row)
                goto oom;
            long bad;
            char *copy = strdup(line);
            if (!copy)
                goto oom;
            long got = parse_row(copy, row, fields, &bad);
            free(copy);
            if (got < 0 && lineno == 1)
                continue; /* header */
        }
        long bad = 0, got = parse_row(line, row, fields, &bad);
        if (got < 0) {
            cnnelm_fail(err, "%s:%ld: field %ld is not an integer in 0..255: a text file but not CSV of a "
                        "label then pixels; supported: IDX, CSV, folders of PNG/JPEG images", path, lineno, bad + 1);
            goto out;
        }
        if ((size_t)got != fields) {
            cnnelm_fail(err, "%s:%ld: %ld fields, the first row has %zu", path, lineno, got, fields);
            goto out;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            uint8_t *ni = realloc(images, cap * (fields - 1)), *nl;
            if (!ni)
                goto oom;
            images = ni;
            if (!(nl = realloc(labels, cap)))
                goto oom;
            labels = nl;
        }
        labels[n] = row[0];
        memcpy(images + n * (fields - 1), row + 1, fields - 1);
        n++;
    }
    if (ferror(f)) {
        cnnelm_fail(err, "%s: read error: %s", path, strerror(errno));
        goto out;
    }
    if (n == 0) {
        cnnelm_fail(err, "%s: no data rows", path);
        goto out;
    }
    int max = 0;
    for (size_t i = 0; i < n; i++)
        if (labels[i] > max)
            max = labels[i];
    ds->images = ds->images_alloc = images;
    ds->labels = ds->labels_alloc = labels;
    images = labels = NULL;
    ds->n = n;
    ds->channels = c;
    ds->rows = h;
    ds->cols = w;
    ds->classes = max + 1;
    rc = 0;
    goto out;
oom:
    cnnelm_fail(err, "%s: out of memory", path);
out:
    free(line);
    free(row);
    free(images);
    free(labels);
    fclose(f);
    return rc;
}

static int is_text(const char *path)
{
    char what[128];
    cnnelm_file_describe(path, what, sizeof what);
    return strcmp(what, "a text file") == 0;
}

/* Keeps the first `limit` examples of an owned or mapped set (no copy: n only). */
static void apply_limit(cnnelm_dataset *ds, size_t limit)
{
    if (limit > 0 && limit < ds->n)
        ds->n = limit;
}

/* cnnelm_idx_check_labels' range check (a folder's or CSV's training labels are numbered as they
 * are: no gap check); ds is freed on failure. */
static int check_labels(cnnelm_dataset *ds, const char *path, int max_classes, cnnelm_error *err)
{
    if (max_classes == CNNELM_LABELS_TRAIN)
        max_classes = 256;
    if (cnnelm_idx_check_labels(path, ds->labels, ds->n, max_classes, err) == 0)
        return 0;
    cnnelm_dataset_free(ds);
    return -1;
}

int cnnelm_input_holds_labels(const char *images_path)
{
    struct stat st;
    if (stat(images_path, &st) != 0)
        return 0;
    return S_ISDIR(st.st_mode) || is_text(images_path);
}

int cnnelm_dataset_load_any(cnnelm_dataset *ds, const char *images_path, const char *labels_path,
                            int max_classes, size_t limit, const cnnelm_input_options *o,
                            cnnelm_error *err)
{
    memset(ds, 0, sizeof *ds);
    struct stat st;
    int rc;
    if (stat(images_path, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (labels_path && *labels_path)
            return cnnelm_fail(err, "%s: an image folder takes its labels from its class subfolders; "
                               "set the labels path to \"\" (it is %s)", images_path, labels_path);
        if (cnnelm_folder_load(ds, images_path, o, err))
            return -1;
        rc = check_labels(ds, images_path, max_classes, err);
    } else if (cnnelm_image_sniff(images_path)) {
        return cnnelm_fail(err, "%s: a single image file; a data set is an IDX file, a CSV file or a "
                           "folder of class subfolders of PNG/JPEG images", images_path);
    } else if (is_text(images_path)) {
        if (labels_path && *labels_path)
            return cnnelm_fail(err, "%s: a CSV file holds its labels (first column); set the labels path "
                               "to \"\" (it is %s)", images_path, labels_path);
        if (cnnelm_csv_load(ds, images_path, err))
            return -1;
        rc = check_labels(ds, images_path, max_classes, err);
    } else {
        if (!labels_path || !*labels_path)
            return cnnelm_fail(err, "%s: an IDX image file needs its label file too", images_path);
        if (cnnelm_dataset_load(ds, images_path, labels_path, max_classes, limit, err))
            return -1;
        if (o && o->grayscale && cnnelm_dataset_to_gray(ds, err)) {
            cnnelm_dataset_free(ds);
            return -1;
        }
        return 0;
    }
    if (rc)
        return -1;
    apply_limit(ds, limit);
    if (o && o->grayscale && cnnelm_dataset_to_gray(ds, err)) {
        cnnelm_dataset_free(ds);
        return -1;
    }
    return 0;
}

int cnnelm_dataset_to_gray(cnnelm_dataset *ds, cnnelm_error *err)
{
    if (ds->channels != 3)
        return 0;
    size_t px = (size_t)ds->rows * ds->cols;
    uint8_t *gray = malloc(ds->n * px + 1);
    if (!gray)
        return cnnelm_fail(err, "out of memory converting %zu images to gray", ds->n);
    for (size_t i = 0; i < ds->n; i++) {
        const uint8_t *r = ds->images + i * 3 * px, *g = r + px, *b = g + px;
        for (size_t k = 0; k < px; k++)
            gray[i * px + k] = (uint8_t)((299u * r[k] + 587u * g[k] + 114u * b[k] + 500u) / 1000u);
    }
    /* the new block replaces the old storage, mapped or allocated */
    cnnelm_dataset keep = *ds;
    keep.labels_alloc = NULL;
    keep.class_names = NULL;
    keep.source = NULL;
    keep.labels = NULL;
    cnnelm_dataset_free(&keep);
    ds->images = ds->images_alloc = gray;
    ds->images_map = NULL;
    ds->images_map_len = 0;
    ds->channels = 1;
    return 0;
}

static int add_name(char ***names, int *n, const char *s, size_t len)
{
    while (len > 0 && (s[0] == ' ' || s[0] == '\t')) {
        s++;
        len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r' || s[len - 1] == '\n'))
        len--;
    char **nn = realloc(*names, (size_t)(*n + 1) * sizeof *nn);
    if (!nn)
        return -1;
    *names = nn;
    if (!(nn[*n] = strndup(s, len)))
        return -1;
    (*n)++;
    return 0;
}

int cnnelm_dataset_set_class_names(cnnelm_dataset *ds, const char *list, const char *file,
                                   cnnelm_error *err)
{
    char **names = NULL;
    int n = 0;
    const char *what = NULL;
    if (list && *list) {
        what = "data.class_names";
        for (const char *p = list;;) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            if (add_name(&names, &n, p, len))
                goto oom;
            if (!comma)
                break;
            p = comma + 1;
        }
    } else if (file && *file) {
        what = file;
        FILE *f = fopen(file, "r");
        if (!f)
            return cnnelm_fail(err, "%s: cannot open class names: %s", file, strerror(errno));
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while ((len = getline(&line, &cap, f)) >= 0) {
            if (len == 0 || line[0] == '\n')
                continue;
            if (add_name(&names, &n, line, (size_t)len)) {
                free(line);
                fclose(f);
                goto oom;
            }
        }
        free(line);
        fclose(f);
    } else {
        return 0;
    }
    /* more names than the labels show is fine (a test set without the last classes; a class
     * with no examples yet): the names say how many classes there are */
    if (n < ds->classes || n > 256) {
        cnnelm_class_names_free(names, n);
        return cnnelm_fail(err, "%s: %d class names for %d classes (labels 0..%d)", what, n, ds->classes,
                           ds->classes - 1);
    }
    cnnelm_class_names_free(ds->class_names, ds->classes);
    ds->class_names = names;
    ds->classes = n;
    return 0;
oom:
    cnnelm_class_names_free(names, n);
    return cnnelm_fail(err, "out of memory reading class names");
}
