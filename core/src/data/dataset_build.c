/* cnnelm data sets as a config builds them: several sources as one set (labels offset per
 * source), or shards and streamed sets, extended with noisy copies as in the paper. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "base/atomic_file.h"
#include "data/augment.h"
#include "data/noise.h"
#include "data/dataset_build.h"
#include "base/rng.h"

/* data.resize ("WxH"), data.grayscale, data.max_bad as the loaders take them (dataset_build.h). */
int cnnelm_build_input_options(const cnnelm_config *cfg, cnnelm_input_options *io, cnnelm_error *err)
{
    memset(io, 0, sizeof *io);
    if (cfg->data.resize[0]) {
        int w = 0, h = 0, used = 0;
        if (sscanf(cfg->data.resize, "%dx%d%n", &w, &h, &used) != 2 || cfg->data.resize[used] ||
            w < 1 || h < 1 || w > 4096 || h > 4096)
            return cnnelm_fail(err, "%s: data.resize = \"%s\": expected \"WxH\" such as \"28x28\" "
                               "(1..4096 each), or \"\"", cfg->path, cfg->data.resize);
        io->resize_w = w;
        io->resize_h = h;
    }
    io->grayscale = cfg->data.grayscale;
    io->max_bad = cfg->data.max_bad;
    return 0;
}

/* A source's class count comes from its whole training label file (limits do not change it),
 * for train and test alike: the test set reads the training labels for it (dataset_build.h). */
int cnnelm_build_source_classes(const char *train_labels, int test, int *classes, cnnelm_error *err)
{
    *classes = CNNELM_LABELS_TRAIN;
    if (!test)
        return 0;
    cnnelm_dataset labels_only;
    memset(&labels_only, 0, sizeof labels_only);
    if (cnnelm_idx_read_labels(train_labels, &labels_only, err))
        return -1;
    *classes = labels_only.classes;
    cnnelm_dataset_free(&labels_only);
    return 0;
}

/* An entry's image shape against the entries' before it (dataset_build.h); channels 0 reads as 1. */
int cnnelm_build_same_shape(const char *img, int rows, int cols, int channels, int rows0, int cols0,
                            int channels0, cnnelm_error *err)
{
    channels = channels > 0 ? channels : 1;
    channels0 = channels0 > 0 ? channels0 : 1;
    if (rows != rows0 || cols != cols0)
        return cnnelm_fail(err, "%s: images are %dx%d but the sources before it have %dx%d", img, rows,
                           cols, rows0, cols0);
    if (channels != channels0)
        return cnnelm_fail(err, "%s: images have %d channel%s but the sources before it have %d", img,
                           channels, channels == 1 ? "" : "s", channels0);
    return 0;
}

static int load_sources(cnnelm_dataset *ds, const cnnelm_config *cfg, int test, int max_classes,
                        cnnelm_error *err)
{
    int k = cfg->data.n_sources;
    cnnelm_dataset part[CNNELM_MAX_SOURCES];
    memset(part, 0, sizeof part);
    int offset[CNNELM_MAX_SOURCES + 1] = { 0 };
    size_t total = 0;
    int rc = -1, any_test = 0;
    for (int s = 0; s < k; s++) {
        const char *ti = cfg->data.sources[s].train_images, *tl = cfg->data.sources[s].train_labels;
        const char *img = test ? cfg->data.sources[s].test_images : ti;
        const char *lab = test ? cfg->data.sources[s].test_labels : tl;
        int classes;
        if (cnnelm_build_source_classes(tl, test, &classes, err))
            goto out;
        if (*img) {
            any_test = 1;
            /* test labels beyond the source's training classes are an error naming the file */
            cnnelm_input_options io;
            if (cnnelm_build_input_options(cfg, &io, err) ||
                cnnelm_dataset_load_any(&part[s], img, lab, classes,
                                        (size_t)(test ? cfg->data.test_limit : cfg->data.train_limit), &io, err))
                goto out;
        }
        if (!test)
            classes = part[s].classes;
        offset[s + 1] = offset[s] + classes;
        if (offset[s + 1] > 256) {
            cnnelm_fail(err, "%s: data.sources have %d classes together (at most 256)", cfg->path,
                        offset[s + 1]);
            goto out;
        }
        if (!*img)
            continue;
        if (total && cnnelm_build_same_shape(img, part[s].rows, part[s].cols, part[s].channels,
                                             ds->rows, ds->cols, ds->channels, err))
            goto out;
        ds->rows = part[s].rows;
        ds->cols = part[s].cols;
        ds->channels = part[s].channels;
        total += part[s].n;
    }
    if (test && !any_test) {
        rc = 0;
        goto out;
    }
    if (offset[k] > max_classes) {
        cnnelm_fail(err, "%s: data.sources have %d classes but the model has %d", cfg->path, offset[k],
                    max_classes);
        goto out;
    }
    size_t px = cnnelm_dataset_example_bytes(ds);
    uint8_t *images = malloc(total * px + 1), *labels = malloc(total + 1),
            *source = malloc(total + 1);
    if (!images || !labels || !source) {
        free(images);
        free(labels);
        free(source);
        cnnelm_fail(err, "out of memory for %zu images", total);
        goto out;
    }
    size_t at = 0;
    for (int s = 0; s < k; s++) {
        if (part[s].n == 0) /* a source without a test set */
            continue;
        memcpy(images + at * px, part[s].images, part[s].n * px);
        for (size_t i = 0; i < part[s].n; i++) {
            labels[at + i] = (uint8_t)(part[s].labels[i] + offset[s]);
            source[at + i] = (uint8_t)s;
        }
        at += part[s].n;
    }
    int rows = ds->rows, cols = ds->cols, channels = ds->channels;
    cnnelm_dataset_adopt(ds, images, labels, source, total, rows, cols, offset[k], k);
    ds->channels = channels;
    rc = 0;
out:
    for (int s = 0; s < k; s++)
        cnnelm_dataset_free(&part[s]);
    if (rc)
        cnnelm_dataset_free(ds);
    return rc;
}

/* Headers that announce more than data.max_bytes are refused before any file is read. */
static int check_sizes(const cnnelm_config *cfg, int test, cnnelm_error *err)
{
    unsigned long long max = (unsigned long long)cfg->data.max_bytes;
    int k = cfg->data.n_sources;
    for (int s = -1; s < k; s++) {
        const char *img = s < 0 ? (k ? "" : test ? cfg->data.test_images : cfg->data.train_images)
                                : test ? cfg->data.sources[s].test_images : cfg->data.sources[s].train_images;
        const char *lab = s < 0 ? (k ? "" : test ? cfg->data.test_labels : cfg->data.train_labels)
                                : test ? cfg->data.sources[s].test_labels : cfg->data.sources[s].train_labels;
        if (cnnelm_idx_check_size(img, max, err) || cnnelm_idx_check_size(lab, max, err))
            return -1;
    }
    return 0;
}

int cnnelm_dataset_load_config(cnnelm_dataset *ds, const cnnelm_config *cfg, int test,
                               int max_classes, cnnelm_error *err)
{
    memset(ds, 0, sizeof *ds);
    if (cfg->data.shards[0] && (cfg->data.train_images[0] || cfg->data.train_labels[0] || cfg->data.n_sources))
        return cnnelm_fail(err, "%s: data.shards replaces data.train_images and data.train_labels (and "
                           "data.sources): set them to \"\" (or ())", cfg->path);
    if (check_sizes(cfg, test, err))
        return -1;
    int streamed = cfg->data.stream || (!test && cfg->data.shards[0]); /* shards always stream */
    if (streamed) {
        if (test && !cfg->data.n_sources && !*cfg->data.test_images && !*cfg->data.test_labels)
            return 0;
        if (!cfg->data.n_sources && !(!test && cfg->data.shards[0])) {
            const char *img = test ? cfg->data.test_images : cfg->data.train_images;
            const char *lab = test ? cfg->data.test_labels : cfg->data.train_labels;
            if (!*img || (!*lab && !cnnelm_input_holds_labels(img)))
                return cnnelm_fail(err, "%s: data.%s_images and data.%s_labels %s", cfg->path,
                                   test ? "test" : "train", test ? "test" : "train",
                                   test ? "go together (one is empty)" : "must name the training set");
        }
        if (cnnelm_build_streamed(ds, cfg, test, test ? max_classes : 256, err))
            return -1;
    } else if (cfg->data.n_sources > 0) {
        if (load_sources(ds, cfg, test, test ? max_classes : 256, err))
            return -1;
    } else {
        const char *img = test ? cfg->data.test_images : cfg->data.train_images;
        const char *lab = test ? cfg->data.test_labels : cfg->data.train_labels;
        if (test && !*img && !*lab)
            return 0;
        if (!*img || (!*lab && !cnnelm_input_holds_labels(img)))
            return cnnelm_fail(err, "%s: data.%s_images and data.%s_labels %s", cfg->path,
                               test ? "test" : "train", test ? "test" : "train",
                               test ? "go together (one is empty)" : "must name the training set");
        cnnelm_input_options io;
        if (cnnelm_build_input_options(cfg, &io, err) ||
            cnnelm_dataset_load_any(ds, img, lab, test ? max_classes : CNNELM_LABELS_TRAIN,
                                    (size_t)(test ? cfg->data.test_limit : cfg->data.train_limit), &io, err))
            return -1;
    }
    if (cnnelm_dataset_set_class_names(ds, cfg->data.class_names, cfg->data.class_names_file, err)) {
        if (cfg->data.class_names[0])
            cnnelm_fail_prefix(err, "%s", cfg->path);
        cnnelm_dataset_free(ds);
        return -1;
    }
    /* test copies get their own noise: seed + 1 keeps them apart from the training copies */
    if ((ds->stream ? cnnelm_build_stream_noise : cnnelm_dataset_add_noise)(
            ds, cfg->data.extend, cfg->train.seed + (uint64_t)test, err)) {
        cnnelm_dataset_free(ds);
        return -1;
    }
    /* data.augment: training copies only, after the noisy ones (the test set is never changed) */
    if (!test && cnnelm_build_augment(ds, cfg->data.augment, cfg->train.seed, cfg->data.cache_dir, err)) {
        cnnelm_dataset_free(ds);
        return -1;
    }
    return 0;
}
