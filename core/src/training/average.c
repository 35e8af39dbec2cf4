/* cnnelm average: the offline reduce. Combines model files trained anywhere (they carry U, V
 * and their example counts), one file at a time into the reducer's sums (memory: one model and
 * the sums, whatever the number of files); refit needs the training data, named by a config. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "cnnelm/reduce.h"
#include "base/atomic_file.h"
#include "training/reducer.h"
#include "training/workers.h"

/* A file named twice (or by two names) would be folded twice: its U, V and examples counted
 * double, silently. Files that cannot be stat'ed are left to the load's message. */
static int refuse_repeats(const char *const *paths, int k, cnnelm_error *err)
{
    struct stat *st = calloc((size_t)k, sizeof *st);
    char *ok = calloc((size_t)k, 1);
    int rc = st && ok ? 0 : cnnelm_fail(err, "out of memory");
    for (int i = 0; rc == 0 && i < k; i++) {
        ok[i] = stat(paths[i], &st[i]) == 0;
        for (int j = 0; ok[i] && j < i && rc == 0; j++)
            if (ok[j] && st[j].st_dev == st[i].st_dev && st[j].st_ino == st[i].st_ino)
                rc = cnnelm_fail(err, "%s and %s are the same file: each model is combined once",
                                 paths[j], paths[i]);
    }
    free(st);
    free(ok);
    return rc;
}

int cnnelm_average_models(const struct cnnelm_average_options *o, uint64_t *n_examples,
                          cnnelm_error *err)
{
    int k = o->n_models;
    if (k < 1)
        return cnnelm_fail(err, "no model files to combine");
    if (refuse_repeats(o->models, k, err))
        return -1;
    if (o->reduce == CNNELM_REDUCE_REFIT && !o->config_path)
        return cnnelm_fail(err, "--reduce refit runs the averaged kernels over the training data: "
                           "give the config that names it (-c CONFIG)");
    cnnelm_model m, out;
    memset(&m, 0, sizeof m);
    memset(&out, 0, sizeof out);
    cnnelm_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cnnelm_dataset train;
    memset(&train, 0, sizeof train);
    cnnelm_worker_pool pool;
    memset(&pool, 0, sizeof pool);
    cnnelm_reducer red;
    int pool_open = 0, have_red = 0, rc = -1, classes = 0;
    char **class_names = NULL;
    cnnelm_progress prog;
    cnnelm_progress_init(&prog, o->quiet);
    if (cnnelm_output_probe(o->output, err))
        goto out;
    for (int i = 0; i < k; i++) {
        if (cnnelm_model_load(&m, o->models[i], err))
            goto out;
        if (i == 0) {
            if (cnnelm_reducer_init(&red, &m, o->reduce, err))
                goto out;
            have_red = 1;
            red.ref_name = o->models[0];
            classes = m.arch.classes;
            if (m.class_names && !(class_names = cnnelm_class_names_copy(m.class_names, m.arch.classes))) {
                cnnelm_fail(err, "out of memory for class names");
                goto out;
            }
        }
        int r = cnnelm_reducer_add(&red, &m, i, o->models[i], err);
        cnnelm_model_free(&m);
        if (r)
            goto out;
    }
    const cnnelm_arch *arch = &red.ref.arch;
    if (o->reduce == CNNELM_REDUCE_REFIT) {
        if (cnnelm_config_load(&cfg, o->config_path, o->overrides, o->n_overrides, err) ||
            cnnelm_dataset_load_config(&train, &cfg, 0, arch->classes, err))
            goto out;
        if (train.rows != arch->in_h || train.cols != arch->in_w) {
            cnnelm_fail(err, "%s: training images are %dx%d but the models take %dx%d inputs",
                        cfg.path, train.rows, train.cols, arch->in_h, arch->in_w);
            goto out;
        }
        if (cnnelm_worker_pool_open(&pool, &cfg, arch, err))
            goto out;
        pool_open = 1;
        /* the whole training set as one pass; U and V are sums, so this equals the sum over
         * the partitions the models were trained on */
        cnnelm_subset all = { &train, NULL, train.n };
        cnnelm_fit_opts fo = cnnelm_fit_opts_from_config(&cfg);
        if (cnnelm_reducer_refit(&red, &pool, NULL, &all, 1, &fo, &prog, &out, NULL, err))
            goto out;
    } else if (cnnelm_reducer_model(&red, 0, &out, err)) {
        goto out;
    }
    /* the same record of what was combined as a training run writes */
    out.partitions = (uint32_t)k;
    out.reduce = k > 1 ? 1u + (uint32_t)o->reduce : 0;
    if (cnnelm_model_set_class_names(&out, class_names, err) || cnnelm_model_save(&out, o->output, err))
        goto out;
    if (n_examples)
        *n_examples = out.n_examples;
    rc = 0;
out:
    if (pool_open)
        cnnelm_worker_pool_close(&pool);
    if (have_red)
        cnnelm_reducer_free(&red);
    cnnelm_model_free(&m);
    cnnelm_model_free(&out);
    if (class_names)
        cnnelm_class_names_free(class_names, classes);
    cnnelm_dataset_free(&train);
    cnnelm_config_free(&cfg);
    cnnelm_progress_destroy(&prog);
    return rc;
}

int cnnelm_run_average(const cnnelm_average_options *o, cnnelm_error *err)
{
    return cnnelm_average_models(o, NULL, err);
}
