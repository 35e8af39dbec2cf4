/* cnnelm extend: the configured training and test sets, noisy copies included, written out as
 * MNIST-named gzipped IDX files in a directory (made if missing, never over one of its inputs). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "base/atomic_file.h"
#include "data/dataset_stream.h"
#include "data/idx_stream.h"

/* extend writes into a directory of the user's choosing: never over one of the data files it
 * reads (the source data set would be replaced by its noisy copy). */
static int check_not_inputs(const cnnelm_config *cfg, const char *out, cnnelm_error *err)
{
    const char *in[4 + 4 * CNNELM_MAX_SOURCES];
    int n = 0;
    in[n++] = cfg->data.train_images;
    in[n++] = cfg->data.train_labels;
    in[n++] = cfg->data.test_images;
    in[n++] = cfg->data.test_labels;
    for (int s = 0; s < cfg->data.n_sources; s++) {
        in[n++] = cfg->data.sources[s].train_images;
        in[n++] = cfg->data.sources[s].train_labels;
        in[n++] = cfg->data.sources[s].test_images;
        in[n++] = cfg->data.sources[s].test_labels;
    }
    return cnnelm_output_not_input(out, in, n, err);
}

/* Writes ds's images chunk by chunk: memory stays at one chunk whatever the set's size. */
static int write_images_streamed(const char *path, const cnnelm_dataset *ds, cnnelm_error *err)
{
    enum { CHUNK = 4096 };
    size_t px = cnnelm_dataset_example_bytes(ds);
    uint8_t *buf = malloc(CHUNK * px);
    if (!buf)
        return cnnelm_fail(err, "%s: out of memory", path);
    cnnelm_idx_writer w;
    int rc = -1;
    if (cnnelm_idx_writer_open(&w, path, ds->n, ds->channels > 0 ? ds->channels : 1, ds->rows, ds->cols, err))
        goto out;
    for (size_t at = 0; at < ds->n; at += CHUNK) {
        size_t m = ds->n - at < CHUNK ? ds->n - at : CHUNK;
        if (cnnelm_dataset_fetch(ds, NULL, at, m, buf, err) || cnnelm_idx_writer_put(&w, buf, m * px, err)) {
            cnnelm_idx_writer_abort(&w);
            goto out;
        }
    }
    rc = cnnelm_idx_writer_commit(&w, err);
out:
    free(buf);
    return rc;
}

int cnnelm_run_extend(const char *config_path, const char *const *overrides, int n_overrides,
                      const char *dir, int quiet, FILE *paths, cnnelm_error *err)
{
    cnnelm_config cfg;
    cnnelm_dataset train, test;
    memset(&train, 0, sizeof train);
    memset(&test, 0, sizeof test);
    int rc = -1;
    if (cnnelm_config_load(&cfg, config_path, overrides, n_overrides, err))
        return -1;
    if (cnnelm_dataset_load_config(&train, &cfg, 0, 256, err) ||
        cnnelm_dataset_load_config(&test, &cfg, 1, train.classes, err))
        goto out;
    if (cnnelm_make_dirs(dir, err))
        goto out;
    const struct {
        const cnnelm_dataset *ds;
        const char *images, *labels;
    } sets[2] = { { &train, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz" },
                  { &test, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz" } };
    for (int i = 0; i < 4; i++) { /* all four checked before any is written */
        char p[CNNELM_PATH_MAX + 64];
        snprintf(p, sizeof p, "%s/%s", dir, i % 2 ? sets[i / 2].labels : sets[i / 2].images);
        if (check_not_inputs(&cfg, p, err) || cnnelm_output_probe(p, err))
            goto out;
    }
    for (int i = 0; i < 2; i++) {
        if (sets[i].ds->n == 0)
            continue;
        char pi[CNNELM_PATH_MAX + 64], pl[CNNELM_PATH_MAX + 64];
        snprintf(pi, sizeof pi, "%s/%s", dir, sets[i].images);
        snprintf(pl, sizeof pl, "%s/%s", dir, sets[i].labels);
        if (write_images_streamed(pi, sets[i].ds, err) ||
            cnnelm_idx_write_labels(pl, sets[i].ds->labels, sets[i].ds->n, err))
            goto out;
        /* one line per file (for scripts); the counts on stderr */
        if (paths) {
            fprintf(paths, "%s\n%s\n", pi, pl);
            fflush(paths);
        }
        if (!quiet)
            fprintf(stderr, "%s set: %zu images of %dx%d, %d classes\n", i ? "test" : "training",
                    sets[i].ds->n, sets[i].ds->rows, sets[i].ds->cols, sets[i].ds->classes);
    }
    rc = 0;
out:
    cnnelm_dataset_free(&train);
    cnnelm_dataset_free(&test);
    cnnelm_config_free(&cfg);
    return rc;
}
