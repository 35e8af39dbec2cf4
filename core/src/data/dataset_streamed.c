/* cnnelm streamed data sets as a config builds them: labels (and sources) in memory, images left
 * on disk and read by row through the stream (dataset_stream.c); data.shards as one set, and
 * data.extend's noisy copies made by the stream when fetched. */
#define _GNU_SOURCE
#include <glob.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "data/dataset_build.h"
#include "data/dataset_stream.h"
#include "data/idx_stream.h"

/* ---- streamed sets: labels in memory, images read by row (dataset_stream.c) ---- */

typedef struct builder {
    cnnelm_stream *st;
    uint8_t *labels, *source;
    size_t n, cap;
    int rows, cols, channels;
    const cnnelm_config *cfg;
    cnnelm_input_options io;
    char **names;            /* an image folder's class names (kept for a single set, as today) */
    int n_names;
} builder;

static int grow(builder *b, size_t more, cnnelm_error *err)
{
    if (b->n + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->n + more)
        cap *= 2;
    uint8_t *l = realloc(b->labels, cap);
    if (l)
        b->labels = l;
    uint8_t *s = l ? realloc(b->source, cap) : NULL;
    if (s)
        b->source = s;
    if (!l || !s)
        return cnnelm_fail(err, "out of memory for the labels of %zu examples", b->n + more);
    b->cap = cap;
    return 0;
}

/* The first entry sets the image size; the others must match it. */
static int same_size(builder *b, const char *img, int rows, int cols, int channels, cnnelm_error *err)
{
    if (!b->st) {
        b->rows = rows;
        b->cols = cols;
        b->channels = channels;
        b->st = cnnelm_stream_new((size_t)channels * rows * cols, b->cfg->data.cache_dir, 0, err);
        if (!b->st)
            return -1;
        cnnelm_stream_set_max_bytes(b->st, (unsigned long long)b->cfg->data.max_bytes);
        cnnelm_stream_set_hold_mb(b->st, b->cfg->data.hold_mb);
        return 0;
    }
    return cnnelm_build_same_shape(img, rows, cols, channels, b->rows, b->cols, b->channels, err);
}

static int append_labels(builder *b, const uint8_t *labels, size_t n, int offset, int source,
                         cnnelm_error *err)
{
    if (grow(b, n, err))
        return -1;
    for (size_t i = 0; i < n; i++) {
        b->labels[b->n + i] = (uint8_t)(labels[i] + offset);
        b->source[b->n + i] = (uint8_t)source;
    }
    b->n += n;
    return 0;
}

enum { OPEN_NOW, OPEN_LATER, HEADER_NOW };

/* One image file (or folder, CSV) with its labels: max_classes as cnnelm_dataset_load takes it
 * (-1: labels only checked to fit a byte, shards checked together at the end); *classes gets
 * its label file's class count. when: OPEN_NOW reads and opens the images now (errors at
 * load); a shard's are opened on first fetch, the first shard's header read now for the set's
 * image size (HEADER_NOW), the others' checked against it when opened (OPEN_LATER). */
static int add_entry(builder *b, const char *img, const char *lab, int max_classes, int offset,
                     int source, int when, size_t limit, int *classes, cnnelm_error *err)
{
    cnnelm_idx_info info = { 0 };
    int in_memory = when == OPEN_NOW && cnnelm_input_holds_labels(img);
    int lazy = when != OPEN_NOW;
    if (!in_memory && when != OPEN_LATER) {
        if (cnnelm_idx_image_info(img, &info, err))
            return -1;
        in_memory = b->io.grayscale && info.channels == 3; /* converted once, then held */
    }
    if (in_memory) {
        cnnelm_dataset part;
        if (cnnelm_dataset_load_any(&part, img, lab, max_classes < 0 ? 256 : max_classes, limit, &b->io, err))
            return -1;
        int rc = same_size(b, img, part.rows, part.cols, part.channels > 0 ? part.channels : 1, err);
        if (rc == 0)
            rc = append_labels(b, part.labels, part.n, offset, source, err);
        *classes = part.classes;
        if (rc == 0 && !b->names) {
            b->names = part.class_names;
            b->n_names = part.classes;
            part.class_names = NULL;
        }
        if (rc == 0)
            rc = cnnelm_stream_add_memory(b->st, &part, err);
        cnnelm_dataset_free(&part);
        return rc;
    }
    if (!*lab)
        return cnnelm_fail(err, "%s: an IDX image file needs its label file too", img);
    /* a shard's files are not among those cnnelm_dataset_load_config checked against
     * data.max_bytes: its labels now (read now), its images when opened (the stream) */
    if (when != OPEN_NOW && cnnelm_idx_check_size(lab, (unsigned long long)b->cfg->data.max_bytes, err))
        return -1;
    cnnelm_dataset lb;
    memset(&lb, 0, sizeof lb);
    if (cnnelm_idx_read_labels(lab, &lb, err))
        return -1;
    int rc = -1;
    if (when == HEADER_NOW && b->io.grayscale && info.channels == 3) {
        cnnelm_fail(err, "%s: data.grayscale is not supported for colour shards", img);
        goto out;
    }
    if (when == OPEN_LATER) { /* the size of the first shard, checked when this one is opened */
        info.n = lb.n;
        info.rows = b->rows;
        info.cols = b->cols;
        info.channels = b->channels;
    }
    if (lb.n != info.n) {
        cnnelm_fail(err, "%s: %zu labels, but %s has %zu images", lab, lb.n, img, info.n);
        goto out;
    }
    if (cnnelm_idx_check_labels(lab, lb.labels, lb.n, max_classes < 0 ? 256 : max_classes, err) ||
        same_size(b, img, info.rows, info.cols, info.channels, err))
        goto out;
    size_t n = limit > 0 && limit < lb.n ? limit : lb.n;
    if (cnnelm_stream_add_file(b->st, img, n, lb.n, info.rows, info.cols, info.channels, lazy, err) ||
        append_labels(b, lb.labels, n, offset, source, err))
        goto out;
    *classes = lb.classes;
    rc = 0;
out:
    cnnelm_dataset_free(&lb);
    return rc;
}

/* A shard's labels file: its name with "images" -> "labels" and "idx3" -> "idx1". */
static int shard_labels(const char *images, char *out, size_t size, cnnelm_error *err)
{
    const char *slash = strrchr(images, '/');
    const char *base = slash ? slash + 1 : images;
    const char *at = strstr(base, "images");
    if (!at || strlen(images) + 1 > size)
        return cnnelm_fail(err, "%s: data.shards: a shard's name must contain \"images\" (its labels "
                           "file is the same name with \"labels\")", images);
    snprintf(out, size, "%.*slabels%s", (int)(at - images), images, at + 6);
    char *idx3 = strstr(out + (base - images), "idx3");
    if (idx3)
        idx3[3] = '1';
    return 0;
}

static int load_shards(builder *b, const cnnelm_config *cfg, int *classes, int *n_groups, cnnelm_error *err)
{
    glob_t g;
    memset(&g, 0, sizeof g);
    int grc = glob(cfg->data.shards, GLOB_ERR, NULL, &g);
    if (grc != 0 || g.gl_pathc == 0) {
        globfree(&g);
        return cnnelm_fail(err, "%s: data.shards = \"%s\" %s", cfg->path, cfg->data.shards,
                           grc == GLOB_NOSPACE ? "cannot be expanded: out of memory"
                           : grc == GLOB_ABORTED ? "cannot be expanded: a directory cannot be read"
                                                 : "matches no file");
    }
    int rc = -1;
    size_t S = g.gl_pathc, limit = (size_t)cfg->data.train_limit;
    int by_source = cfg->train.partitioning == CNNELM_PART_BY_SOURCE;
    int P = cfg->train.partitions;
    if (by_source && ((size_t)P > S || P > 255)) {
        cnnelm_fail(err, "%s: train.partitions = %d with by-source partitioning, but data.shards has %zu "
                    "shards (each partition is one or more shards; at most 255 partitions)", cfg->path, P, S);
        goto out;
    }
    /* a pattern that also matches the test set (as "*-images-idx3-ubyte.gz" matches t10k-images) */
    struct stat test_st;
    int have_test = cfg->data.test_images[0] && stat(cfg->data.test_images, &test_st) == 0;
    *classes = 0;
    for (size_t s = 0; s < S; s++) {
        char lab[CNNELM_PATH_MAX];
        int c = 0;
        if (limit > 0 && b->n >= limit)
            break; /* the limit is reached: later shards are not even looked at */
        struct stat sh;
        if (have_test && stat(g.gl_pathv[s], &sh) == 0 && sh.st_dev == test_st.st_dev &&
            sh.st_ino == test_st.st_ino) {
            cnnelm_fail(err, "%s: data.shards = \"%s\" matches %s, which is data.test_images: the "
                        "test set would be trained on (make the pattern leave it out)", cfg->path,
                        cfg->data.shards, g.gl_pathv[s]);
            goto out;
        }
        if (shard_labels(g.gl_pathv[s], lab, sizeof lab, err) ||
            add_entry(b, g.gl_pathv[s], lab, -1, 0, by_source ? (int)(s * (size_t)P / S) : 0,
                      s > 0 ? OPEN_LATER : HEADER_NOW,
                      limit > 0 ? limit - b->n : 0, &c, err)) {
            cnnelm_fail_prefix(err, "data.shards");
            goto out;
        }
        if (c > *classes)
            *classes = c;
    }
    /* classes 0..C-1 all present, checked over all shards together (one shard may lack some) */
    if (cnnelm_idx_check_labels(cfg->data.shards, b->labels, b->n, CNNELM_LABELS_TRAIN, err))
        goto out;
    *n_groups = by_source ? P : 0;
    rc = 0;
out:
    globfree(&g);
    return rc;
}

int cnnelm_build_streamed(cnnelm_dataset *ds, const cnnelm_config *cfg, int test, int max_classes,
                          cnnelm_error *err)
{
    builder b;
    memset(&b, 0, sizeof b);
    b.cfg = cfg;
    if (cnnelm_build_input_options(cfg, &b.io, err))
        return -1;
    int rc = -1, classes = 0, n_sources = 0, k = cfg->data.n_sources;
    if (k > 0) {
        int offset = 0, any = 0;
        for (int s = 0; s < k; s++) {
            const char *ti = cfg->data.sources[s].train_images, *tl = cfg->data.sources[s].train_labels;
            const char *img = test ? cfg->data.sources[s].test_images : ti;
            const char *lab = test ? cfg->data.sources[s].test_labels : tl;
            int c;
            if (cnnelm_build_source_classes(tl, test, &c, err))
                goto out;
            if (*img) {
                any = 1;
                int got = 0;
                if (add_entry(&b, img, lab, c, offset, s, OPEN_NOW,
                              (size_t)(test ? cfg->data.test_limit : cfg->data.train_limit), &got, err))
                    goto out;
                if (!test)
                    c = got;
            }
            offset += c;
            if (offset > 256) {
                cnnelm_fail(err, "%s: data.sources have %d classes together (at most 256)", cfg->path, offset);
                goto out;
            }
        }
        if (test && !any) {
            rc = 0;
            goto out;
        }
        if (offset > (test ? max_classes : 256)) {
            cnnelm_fail(err, "%s: data.sources have %d classes but the model has %d", cfg->path, offset,
                        test ? max_classes : 256);
            goto out;
        }
        classes = offset;
        n_sources = k;
    } else if (!test && cfg->data.shards[0]) {
        if (load_shards(&b, cfg, &classes, &n_sources, err))
            goto out;
    } else {
        const char *img = test ? cfg->data.test_images : cfg->data.train_images;
        const char *lab = test ? cfg->data.test_labels : cfg->data.train_labels;
        if (add_entry(&b, img, lab, test ? max_classes : CNNELM_LABELS_TRAIN, 0, 0, OPEN_NOW,
                      (size_t)(test ? cfg->data.test_limit : cfg->data.train_limit), &classes, err))
            goto out;
    }
    ds->stream = b.st;
    ds->labels = ds->labels_alloc = b.labels;
    ds->source = n_sources ? b.source : NULL;
    if (!n_sources)
        free(b.source);
    ds->n = b.n;
    ds->rows = b.rows;
    ds->cols = b.cols;
    ds->channels = b.channels;
    ds->classes = classes;
    ds->n_sources = n_sources;
    if (k == 0 && b.names && b.n_names == classes)
        ds->class_names = b.names;
    else
        cnnelm_class_names_free(b.names, b.n_names);
    return 0;
out:
    cnnelm_class_names_free(b.names, b.n_names);
    cnnelm_stream_free(b.st);
    free(b.labels);
    free(b.source);
    return rc;
}

/* data.extend on a streamed set: labels (and sources) repeated per copy; the images are made
 * by the stream when fetched, byte for byte as cnnelm_dataset_add_noise makes them. */
int cnnelm_build_stream_noise(cnnelm_dataset *ds, unsigned mask, uint64_t seed, cnnelm_error *err)
{
    int types[3], copies = 0;
    for (int t = 0; t < 3; t++)
        if ((mask >> t) & 1u)
            types[copies++] = t;
    if (copies == 0 || ds->n == 0)
        return 0;
    size_t n = ds->n, total = n * (size_t)(1 + copies);
    uint8_t *labels = realloc(ds->labels_alloc, total);
    if (!labels)
        return cnnelm_fail(err, "out of memory extending %zu images to %zu", n, total);
    ds->labels = ds->labels_alloc = labels;
    if (ds->source) {
        uint8_t *source = realloc((void *)ds->source, total);
        if (!source)
            return cnnelm_fail(err, "out of memory extending %zu images to %zu", n, total);
        ds->source = source;
        for (int t = 1; t <= copies; t++)
            memcpy(source + (size_t)t * n, source, n);
    }
    for (int t = 1; t <= copies; t++)
        memcpy(labels + (size_t)t * n, labels, n);
    cnnelm_stream_set_noise(ds->stream, types, copies, seed);
    ds->n = total;
    return 0;
}
