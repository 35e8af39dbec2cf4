/* cnnelm average: the offline reduce. Combines model files trained anywhere (they carry U, V
 * and their example counts); refit needs the training data, named by a config. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "cnnelm/reduce.h"
#include "cnnelm/run.h"
#include "atomic_file.h"
#include "experiment.h"
#include "progress.h"
#include "workers.h"

int cnnelm_run_average(const cnnelm_average_options *o, cnnelm_error *err)
{
    int k = o->n_models;
    if (k < 1)
        return cnnelm_fail(err, "no model files to combine");
    if (o->reduce == CNNELM_REDUCE_REFIT && !o->config_path)
        return cnnelm_fail(err, "--reduce refit runs the averaged kernels over the training data: "
                           "give the config that names it (-c CONFIG)");
    cnnelm_model *models = calloc((size_t)k, sizeof *models);
    const cnnelm_model **ptrs = calloc((size_t)k, sizeof *ptrs);
    cnnelm_model out;
    memset(&out, 0, sizeof out);
    cnnelm_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cnnelm_dataset train;
    memset(&train, 0, sizeof train);
    cnnelm_pool pool;
    memset(&pool, 0, sizeof pool);
    int pool_open = 0, rc = -1;
    cnnelm_progress prog;
    cnnelm_progress_init(&prog, o->quiet);
    if (!models || !ptrs) {
        cnnelm_fail(err, "out of memory");
        goto out;
    }
    if (cnnelm_output_probe(o->output, err))
        goto out;
    for (int i = 0; i < k; i++) {
        if (cnnelm_model_load(&models[i], o->models[i], err))
            goto out;
        ptrs[i] = &models[i];
    }
    if (cnnelm_reduce_check(ptrs, k, o->models, err))
        goto out;
    if (o->reduce == CNNELM_REDUCE_REFIT) {
        if (cnnelm_config_load(&cfg, o->config_path, o->overrides, o->n_overrides, err) ||
            cnnelm_dataset_load_config(&train, &cfg, 0, models[0].arch.classes, err))
            goto out;
        if (train.rows != models[0].arch.in_h || train.cols != models[0].arch.in_w) {
            cnnelm_fail(err, "%s: training images are %dx%d but the models take %dx%d inputs",
                        cfg.path, train.rows, train.cols, models[0].arch.in_h, models[0].arch.in_w);
            goto out;
        }
        if (cnnelm_pool_open(&pool, &cfg, &models[0].arch, err))
            goto out;
        pool_open = 1;
        /* the whole training set as one pass; U and V are sums, so this equals the sum over
         * the partitions the models were trained on */
        cnnelm_subset all = { &train, NULL, train.n };
        cnnelm_fit_opts fo = cnnelm_fit_opts_from_config(&cfg);
        if (cnnelm_refit(&pool, NULL, ptrs, k, &all, 1, &fo, &prog, &out, NULL, err))
            goto out;
    } else if (cnnelm_reduce_models(ptrs, k, o->reduce, &out, err)) {
        goto out;
    }
    /* the same record of what was combined as a training run writes */
    out.partitions = (uint32_t)k;
    out.reduce = k > 1 ? 1u + (uint32_t)o->reduce : 0;
    if (cnnelm_model_set_class_names(&out, models[0].class_names, err) ||
        cnnelm_model_save(&out, o->output, err))
        goto out;
    printf("combined %d models (%s reduce, %llu training examples) into %s\n", k,
           cnnelm_reduce_name(o->reduce), (unsigned long long)out.n_examples, o->output);
    rc = 0;
out:
    if (pool_open)
        cnnelm_pool_close(&pool);
    for (int i = 0; models && i < k; i++)
        cnnelm_model_free(&models[i]);
    free(models);
    free(ptrs);
    cnnelm_model_free(&out);
    cnnelm_dataset_free(&train);
    cnnelm_config_free(&cfg);
    cnnelm_progress_destroy(&prog);
    return rc;
}
