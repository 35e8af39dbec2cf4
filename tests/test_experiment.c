/* Checks for one experiment (core/src/experiment.c): the same partitions trained on 1, 2 or 4
 * workers give the same models bit for bit (the reduced model's file byte for byte), for each
 * reduce, with and without fine-tuning. */
#define _GNU_SOURCE
#include "training/experiment.h"

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "cnnelm/model.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static cnnelm_dataset train_ds, test_ds;
static int have_data;

typedef struct run_result {
    cnnelm_experiment x;
    cnnelm_config cfg;
    cnnelm_worker_pool pool;
    cnnelm_progress prog;
} run_result;

/* One experiment on conf/paper-fashion.cfg's small network with `workers` CPU workers of one
 * thread each, 4 partitions, and the given overrides. */
static void run_experiment(run_result *r, int workers, const char *const *extra, int n_extra)
{
    char w[512] = "workers=(";
    for (int i = 0; i < workers; i++)
        strcat(w, i ? ",{backend=\"cpu\";threads=1;}" : "{backend=\"cpu\";threads=1;}");
    strcat(w, ")");
    const char *sets[8] = { w, "train.partitions=4" };
    int n = 2;
    for (int i = 0; i < n_extra && n < 8; i++)
        sets[n++] = extra[i];
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_config_load(&r->cfg, CNNELM_SOURCE_DIR "/conf/paper-fashion.cfg", sets, n,
                                     &err) == 0, "%s", err.msg);
    const cnnelm_config *c = &r->cfg;
    ck_assert_int_eq(c->n_workers, workers);
    cnnelm_arch a;
    ck_assert_msg(cnnelm_arch_init(&a, c->model.layers, c->model.kernel, 1, 28, 28, 10,
                                   c->model.activation, c->model.pooling, c->model.elm_activation,
                                   &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_worker_pool_open(&r->pool, c, &a, &err) == 0, "%s", err.msg);
    cnnelm_progress_init(&r->prog, 1);
    memset(&r->x, 0, sizeof r->x);
    r->x.cfg = c;
    r->x.seed = c->train.seed;
    r->x.prog = &r->prog;
    r->x.pool = &r->pool;
    r->x.rank_prefix = "";
    r->x.train = (cnnelm_subset){ &train_ds, NULL, train_ds.n };
    r->x.test = (cnnelm_subset){ &test_ds, NULL, test_ds.n };
    ck_assert_msg(cnnelm_experiment_run(&r->x, &a, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(r->x.k, 4);
}

static void run_free(run_result *r)
{
    cnnelm_experiment_free(&r->x);
    cnnelm_worker_pool_close(&r->pool);
    cnnelm_progress_destroy(&r->prog);
    cnnelm_config_free(&r->cfg);
}

/* Two models are the same bit for bit: every block the model file holds. */
static void same_model(const cnnelm_model *a, const cnnelm_model *b, const char *what)
{
    ck_assert_msg(a->arch.n_params == b->arch.n_params && a->arch.hidden == b->arch.hidden &&
                  a->arch.classes == b->arch.classes, "%s: architectures differ", what);
    size_t L = (size_t)a->arch.hidden, C = (size_t)a->arch.classes;
    ck_assert_msg(memcmp(a->params, b->params, a->arch.n_params * sizeof *a->params) == 0,
                  "%s: kernels differ", what);
    ck_assert_msg(memcmp(a->beta, b->beta, L * C * sizeof *a->beta) == 0, "%s: beta differs", what);
    ck_assert_msg((a->U == NULL) == (b->U == NULL) && (a->V == NULL) == (b->V == NULL),
                  "%s: one has U, V and the other not", what);
    if (a->U)
        ck_assert_msg(memcmp(a->U, b->U, L * L * sizeof *a->U) == 0, "%s: U differs", what);
    if (a->V)
        ck_assert_msg(memcmp(a->V, b->V, L * C * sizeof *a->V) == 0, "%s: V differs", what);
    ck_assert_msg(a->n_examples == b->n_examples, "%s: %llu vs %llu examples", what,
                  (unsigned long long)a->n_examples, (unsigned long long)b->n_examples);
    ck_assert_msg(a->lambda == b->lambda, "%s: lambda differs", what);
}

/* The model files two models would be are byte-identical (the encoding covers every field). */
static void same_bytes(const cnnelm_model *a, const cnnelm_model *b, const char *what)
{
    cnnelm_error err = { "" };
    unsigned char *ea, *eb;
    size_t na, nb;
    ck_assert_msg(cnnelm_model_encode(a, &ea, &na, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_model_encode(b, &eb, &nb, &err) == 0, "%s", err.msg);
    ck_assert_msg(na == nb && memcmp(ea, eb, na) == 0, "%s: the model files differ", what);
    free(ea);
    free(eb);
}

/* 1, 2 and 4 workers: the partitions, the reduced model and its test metrics are identical;
 * with 4 workers more than one worker trained partitions. */
static void check_worker_counts(const char *const *extra, int n_extra, const char *label,
                                unsigned iterations)
{
    run_result one, r;
    run_experiment(&one, 1, extra, n_extra);
    for (int p = 0; p < 4; p++)
        ck_assert_msg(one.x.parts[p].model.iterations == iterations && !one.x.parts[p].log.diverged,
                      "%s: partition %d ran %u iterations%s", label, p + 1,
                      one.x.parts[p].model.iterations, one.x.parts[p].log.diverged ? ", diverged" : "");
    ck_assert_msg(one.x.reduced_test.accuracy > 0.5, "%s: accuracy %.4f", label,
                  one.x.reduced_test.accuracy);
    for (int p = 0; p < 4; p++)
        ck_assert_int_eq(one.x.parts[p].worker, 0);
    /* memory does not grow with k: each partition went into the reduce's sums, and its U, V,
     * kernels and beta were freed (its digest and facts stay) */
    for (int p = 0; p < 4; p++)
        ck_assert_msg(one.x.parts[p].model.U == NULL && one.x.parts[p].model.V == NULL &&
                      one.x.parts[p].model.params == NULL && one.x.parts[p].model.beta == NULL,
                      "%s: partition %d still holds its weights", label, p + 1);
    for (int p = 1; p < 4; p++)
        ck_assert_msg(one.x.parts[p].weights_digest != one.x.parts[0].weights_digest,
                      "%s: partitions 1 and %d have the same weights digest", label, p + 1);
    int counts[] = { 2, 4 };
    for (int i = 0; i < 2; i++) {
        run_experiment(&r, counts[i], extra, n_extra);
        char what[128];
        int used = 0;
        for (int p = 0; p < 4; p++) {
            snprintf(what, sizeof what, "%s, %d workers, partition %d", label, counts[i], p + 1);
            /* the weights themselves are freed after the fold: their digest, facts and scores */
            ck_assert_msg(r.x.parts[p].weights_digest == one.x.parts[p].weights_digest,
                          "%s: kernels or beta differ", what);
            ck_assert_uint_eq(r.x.parts[p].model.iterations, one.x.parts[p].model.iterations);
            ck_assert_uint_eq(r.x.parts[p].model.n_examples, one.x.parts[p].model.n_examples);
            ck_assert_uint_eq(r.x.parts[p].examples, one.x.parts[p].examples);
            ck_assert_double_eq(r.x.parts[p].test.accuracy, one.x.parts[p].test.accuracy);
            used |= 1 << r.x.parts[p].worker;
        }
        snprintf(what, sizeof what, "%s, %d workers, reduced", label, counts[i]);
        same_model(&r.x.reduced, &one.x.reduced, what);
        same_bytes(&r.x.reduced, &one.x.reduced, what);
        ck_assert_double_eq(r.x.reduced_test.accuracy, one.x.reduced_test.accuracy);
        ck_assert_double_eq(r.x.reduced_test.kappa, one.x.reduced_test.kappa);
        ck_assert_msg(counts[i] == 1 || used != 1, "%s, %d workers: worker 1 trained every partition",
                      label, counts[i]);
        printf("%s, %d workers: same models as 1 worker (workers used: mask %#x), accuracy %.4f\n",
               label, counts[i], (unsigned)used, r.x.reduced_test.accuracy);
        run_free(&r);
    }
    run_free(&one);
}

START_TEST(mean_same_for_1_2_4_workers)
{
    if (!have_data)
        return;
    const char *extra[] = { "train.reduce=mean" };
    check_worker_counts(extra, 1, "mean", 0);
}
END_TEST

START_TEST(refit_same_for_1_2_4_workers)
{
    if (!have_data)
        return;
    const char *extra[] = { "train.reduce=refit" };
    check_worker_counts(extra, 1, "refit", 0);
}
END_TEST

/* Fine-tuning is where scheduling could leak in (per-worker buffers, thread pools): two
 * iterations, weighted reduce. */
START_TEST(finetune_weighted_same_for_1_2_4_workers)
{
    if (!have_data)
        return;
    const char *extra[] = { "train.reduce=weighted", "train.iterations=2", "train.partitioning=shuffle" };
    check_worker_counts(extra, 3, "fine-tuned, weighted", 2);
}
END_TEST

/* Refit after fine-tuning: the averaged kernels make a second pass over every partition on
 * the workers, each folded into the sums as it finishes. */
START_TEST(finetune_refit_same_for_1_2_4_workers)
{
    if (!have_data)
        return;
    const char *extra[] = { "train.reduce=refit", "train.iterations=1", "train.partitioning=shuffle" };
    check_worker_counts(extra, 3, "fine-tuned, refit", 1);
}
END_TEST

int main(void)
{
    const char *dir = CNNELM_FASHION_DIR;
    char ti[512], tl[512], vi[512], vl[512];
    snprintf(ti, sizeof ti, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(tl, sizeof tl, "%s/train-labels-idx1-ubyte.gz", dir);
    snprintf(vi, sizeof vi, "%s/t10k-images-idx3-ubyte.gz", dir);
    snprintf(vl, sizeof vl, "%s/t10k-labels-idx1-ubyte.gz", dir);
    cnnelm_error err = { "" };
    if (access(ti, R_OK) == 0) {
        if (cnnelm_dataset_load(&train_ds, ti, tl, 256, 2000, &err) != 0 ||
            cnnelm_dataset_load(&test_ds, vi, vl, 10, 500, &err) != 0) {
            fprintf(stderr, "%s\n", err.msg);
            return EXIT_FAILURE;
        }
        have_data = 1;
    } else {
        printf("SKIP: %s not found\n", ti);
    }
    Suite *s = suite_create("experiment");
    TCase *tc = tcase_create("workers");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, mean_same_for_1_2_4_workers);
    tcase_add_test(tc, refit_same_for_1_2_4_workers);
    tcase_add_test(tc, finetune_weighted_same_for_1_2_4_workers);
    tcase_add_test(tc, finetune_refit_same_for_1_2_4_workers);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (have_data) {
        cnnelm_dataset_free(&train_ds);
        cnnelm_dataset_free(&test_ds);
    }
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
