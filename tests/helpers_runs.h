/* Shared by the suites that train on Fashion-MNIST in process (test_exact_sums, test_elm_solve,
 * test_experiment, test_train): a slice of the data set, and one experiment of a config on its
 * workers, set up and torn down the way `cnnelm train` does it. */
#ifndef CNNELM_TEST_HELPERS_RUNS_H
#define CNNELM_TEST_HELPERS_RUNS_H

#include <stddef.h>

#include "base/progress.h"
#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "training/experiment.h"
#include "training/workers.h"

/* The first n_train training and n_test test images of Fashion-MNIST (CNNELM_FASHION_DIR): 1;
 * 0 when the data set is not installed (a SKIP line is printed); a load error ends the test
 * program with its message. */
int helpers_fashion_slice(cnnelm_dataset *train, size_t n_train, cnnelm_dataset *test, size_t n_test);

typedef struct helpers_run {
    cnnelm_experiment x;
    cnnelm_config cfg;
    cnnelm_worker_pool pool;
    cnnelm_progress prog;
    cnnelm_arch arch;
} helpers_run;

/* config (a path) with the overrides, its architecture on 28 x 28 images of 10 classes, its
 * workers open and the experiment's fields set but for train, test and resume. */
void helpers_run_open(helpers_run *r, const char *config, const char *const *sets, int n_sets);
/* cnnelm_experiment_run on train and test. */
int helpers_run_experiment(helpers_run *r, cnnelm_subset train, cnnelm_subset test, cnnelm_error *err);
void helpers_run_free(helpers_run *r);

#endif
