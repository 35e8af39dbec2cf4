/* Fashion-MNIST slices and in-process experiments for the training suites (helpers_runs.h). */
#include "helpers_runs.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int helpers_fashion_slice(cnnelm_dataset *train, size_t n_train, cnnelm_dataset *test, size_t n_test)
{
    const char *dir = CNNELM_FASHION_DIR;
    char ti[512], tl[512], vi[512], vl[512];
    snprintf(ti, sizeof ti, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(tl, sizeof tl, "%s/train-labels-idx1-ubyte.gz", dir);
    snprintf(vi, sizeof vi, "%s/t10k-images-idx3-ubyte.gz", dir);
    snprintf(vl, sizeof vl, "%s/t10k-labels-idx1-ubyte.gz", dir);
    if (access(ti, R_OK) != 0) {
        printf("SKIP: %s not found (install Debian's dataset-fashion-mnist)\n", ti);
        return 0;
    }
    cnnelm_error err = { "" };
    if (cnnelm_dataset_load(train, ti, tl, 256, n_train, &err) != 0 ||
        cnnelm_dataset_load(test, vi, vl, 10, n_test, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        exit(EXIT_FAILURE);
    }
    return 1;
}

void helpers_run_open(helpers_run *r, const char *config, const char *const *sets, int n_sets)
{
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_config_load(&r->cfg, config, sets, n_sets, &err) == 0, "%s", err.msg);
    const cnnelm_config *c = &r->cfg;
    ck_assert_msg(cnnelm_arch_init(&r->arch, c->model.layers, c->model.kernel, 1, 28, 28, 10,
                                   c->model.activation, c->model.pooling, c->model.elm_activation,
                                   &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_worker_pool_open(&r->pool, c, &r->arch, &err) == 0, "%s", err.msg);
    cnnelm_progress_init(&r->prog, 1);
    memset(&r->x, 0, sizeof r->x);
    r->x.cfg = c;
    r->x.seed = c->train.seed;
    r->x.prog = &r->prog;
    r->x.pool = &r->pool;
    r->x.rank_prefix = "";
}

int helpers_run_experiment(helpers_run *r, cnnelm_subset train, cnnelm_subset test, cnnelm_error *err)
{
    r->x.train = train;
    r->x.test = test;
    return cnnelm_experiment_run(&r->x, &r->arch, err);
}

void helpers_run_free(helpers_run *r)
{
    cnnelm_experiment_free(&r->x);
    cnnelm_worker_pool_close(&r->pool);
    cnnelm_progress_destroy(&r->prog);
    cnnelm_config_free(&r->cfg);
}
