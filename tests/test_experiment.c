/* Checks for one experiment (core/src/experiment.c): the same partitions trained on 1, 2 or 4
 * workers give the same models bit for bit (the reduced model's file byte for byte), for each
 * reduce, with and without fine-tuning, and with periodic averaging (train.sync_every, sync.c),
 * which leaves every partition with the same kernels; fine-tuning split into batch ranges
 * (cnnelm_finetune) is fine-tuning in one go. */
#define _GNU_SOURCE
#include "training/experiment.h"
#include "helpers_runs.h"

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "cnnelm/model.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cnnelm_dataset train_ds, test_ds;
static int have_data;

static size_t train_used; /* examples of train_ds the experiments use; 0: all */

/* One experiment on conf/paper-fashion.cfg's small network with `workers` CPU workers of one
 * thread each, 4 partitions, and the given overrides; resume sets x.resume. Returns the
 * experiment's status (err set). */
static void open_run(helpers_run *r, int workers, const char *const *extra, int n_extra)
{
    char w[512] = "workers=(";
    for (int i = 0; i < workers; i++)
        strcat(w, i ? ",{backend=\"cpu\";threads=1;}" : "{backend=\"cpu\";threads=1;}");
    strcat(w, ")");
    const char *sets[12] = { w, "train.partitions=4" };
    int n = 2;
    for (int i = 0; i < n_extra && n < 12; i++)
        sets[n++] = extra[i];
    helpers_run_open(r, CNNELM_SOURCE_DIR "/conf/paper-fashion.cfg", sets, n);
    ck_assert_int_eq(r->cfg.n_workers, workers);
}

static int try_experiment(helpers_run *r, int workers, const char *const *extra, int n_extra, int resume,
                          cnnelm_error *err)
{
    open_run(r, workers, extra, n_extra);
    r->x.resume = resume;
    return helpers_run_experiment(r, (cnnelm_subset){ &train_ds, NULL, train_used ? train_used : train_ds.n },
                                  (cnnelm_subset){ &test_ds, NULL, test_ds.n }, err);
}

static void run_experiment(helpers_run *r, int workers, const char *const *extra, int n_extra)
{
    cnnelm_error err = { "" };
    ck_assert_msg(try_experiment(r, workers, extra, n_extra, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(r->x.k, 4);
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
    helpers_run one, r;
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
        helpers_run_free(&r);
    }
    helpers_run_free(&one);
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

/* ---- train.sync_every: periodic averaging ---- */

/* FNV-1a of a model's kernels and biases (experiment.c's kernels_digest). */
static uint64_t kernels_fnv(const cnnelm_model *m)
{
    uint64_t h = 14695981039346656037ull;
    const unsigned char *b = (const unsigned char *)m->params;
    for (size_t i = 0; i < m->arch.n_params * sizeof *m->params; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* 1990 examples: label-skew partitions of 498 and 497, so with batches of 71 two have 8
 * batches and two 7, and with n = 1 the last round of each iteration runs only some. */
#define SYNC_EXAMPLES 1990

/* Averaging rounds run on any worker (partition state on the host): 1, 2 and 4 workers give
 * the same partitions and reduced model bit for bit, with momentum (velocity averaged too). */
START_TEST(sync_same_for_1_2_4_workers)
{
    if (!have_data)
        return;
    train_used = SYNC_EXAMPLES;
    const char *one[] = { "train.reduce=refit", "train.iterations=2", "train.partitioning=\"label-skew\"",
                          "train.batch=71", "train.momentum=0.9", "train.sync_every=1" };
    check_worker_counts(one, 6, "averaged every batch, refit", 2);
    const char *three[] = { "train.reduce=weighted", "train.iterations=2", "train.partitioning=\"shuffle\"",
                            "train.batch=71", "train.momentum=0.9", "train.sync_every=3" };
    check_worker_counts(three, 6, "averaged every 3 batches, weighted", 2);
    /* a shared beta: the U and V increments are summed at every average, exactly */
    const char *beta1[] = { "train.reduce=refit", "train.iterations=2", "train.partitioning=\"label-skew\"",
                            "train.batch=71", "train.momentum=0.9", "train.sync_every=1", "train.sync_beta=true" };
    check_worker_counts(beta1, 7, "averaged every batch, shared beta, refit", 2);
    const char *beta3[] = { "train.reduce=weighted", "train.iterations=2", "train.partitioning=\"shuffle\"",
                            "train.batch=71", "train.momentum=0.9", "train.sync_every=3", "train.sync_beta=true" };
    check_worker_counts(beta3, 7, "averaged every 3 batches, shared beta, weighted", 2);
    train_used = 0;
}
END_TEST

/* With averaging every partition ends each run with the same kernels (its own beta), which the
 * mean reduce keeps exactly; without, they differ. n = 1 and 3, 1 and 2 iterations. */
START_TEST(sync_partitions_share_kernels)
{
    if (!have_data)
        return;
    train_used = SYNC_EXAMPLES;
    const char *every[] = { "train.sync_every=1", "train.sync_every=1", "train.sync_every=3", "train.sync_every=0" };
    const char *iters[] = { "train.iterations=1", "train.iterations=2", "train.iterations=2", "train.iterations=2" };
    uint64_t seen[4];
    for (int c = 0; c < 4; c++) {
        const char *extra[] = { "train.reduce=mean", iters[c], "train.partitioning=\"label-skew\"",
                                "train.batch=71", "train.momentum=0.9", every[c] };
        helpers_run r;
        run_experiment(&r, 2, extra, 6);
        size_t b0 = (r.x.parts[0].examples + 70) / 71;
        int uneven = 0;
        for (int p = 0; p < 4; p++) {
            uneven |= (r.x.parts[p].examples + 70) / 71 != b0;
            ck_assert_msg(!r.x.parts[p].log.diverged && r.x.parts[p].model.iterations == (unsigned)(c ? 2 : 1),
                          "%s: partition %d: %u iterations", every[c], p + 1, r.x.parts[p].model.iterations);
        }
        ck_assert_msg(uneven, "the partitions all have %zu batches: no round runs only some", b0);
        seen[c] = r.x.parts[0].kernels_digest;
        for (int p = 1; p < 4; p++) {
            if (c < 3)
                ck_assert_msg(r.x.parts[p].kernels_digest == r.x.parts[0].kernels_digest,
                              "%s, %s: partitions 1 and %d end with different kernels", every[c], iters[c], p + 1);
            else
                ck_assert_msg(r.x.parts[p].kernels_digest != r.x.parts[0].kernels_digest,
                              "without averaging partitions 1 and %d end with the same kernels", p + 1);
            /* beta, U and V stay each partition's own */
            ck_assert_msg(r.x.parts[p].weights_digest != r.x.parts[0].weights_digest,
                          "%s: partitions 1 and %d have the same beta", every[c], p + 1);
        }
        if (c < 3)
            ck_assert_msg(kernels_fnv(&r.x.reduced) == r.x.parts[0].kernels_digest,
                          "%s: the mean of equal kernels is not those kernels", every[c]);
        helpers_run_free(&r);
    }
    /* different schedules, different kernels (all fine-tuned) */
    ck_assert(seen[0] != seen[1] && seen[1] != seen[2] && seen[2] != seen[3]);
    train_used = 0;
}
END_TEST

/* train.sync_beta: every partition back-propagates through the beta of all partitions' sums,
 * so on label-skew partitions (2 classes each) the kernels learn all the classes: the
 * partitions still share their kernels, the kernels differ from those of sync_every alone, and
 * the refit model is better (with n = 1, 3 iterations on these 1990 examples: measured 0.830
 * against 0.810; the test asks for more than 0.01). */
START_TEST(sync_beta_follows_all_classes)
{
    if (!have_data)
        return;
    train_used = SYNC_EXAMPLES;
    double acc[2];
    uint64_t dig[2];
    for (int c = 0; c < 2; c++) {
        const char *extra[] = { "train.reduce=refit", "train.iterations=3", "train.partitioning=\"label-skew\"",
                                "train.batch=71", "train.momentum=0.9", "train.sync_every=1",
                                c ? "train.sync_beta=true" : "train.sync_beta=false" };
        helpers_run r;
        run_experiment(&r, 2, extra, 7);
        for (int p = 0; p < 4; p++)
            ck_assert_msg(!r.x.parts[p].log.diverged && r.x.parts[p].model.iterations == 3 &&
                          r.x.parts[p].kernels_digest == r.x.parts[0].kernels_digest,
                          "sync_beta %d: partition %d diverged, stopped early or has its own kernels", c, p + 1);
        acc[c] = r.x.reduced_test.accuracy;
        dig[c] = r.x.parts[0].kernels_digest;
        helpers_run_free(&r);
    }
    printf("sync_beta: refit accuracy %.4f with the shared beta, %.4f without\n", acc[1], acc[0]);
    ck_assert(dig[0] != dig[1]);
    ck_assert_msg(acc[1] > acc[0] + 0.01, "shared beta %.4f, own beta %.4f", acc[1], acc[0]);
    train_used = 0;
}
END_TEST

/* A partition that diverges takes every partition back to the last common kernels, all
 * marked diverged; the others' messages name it. */
START_TEST(sync_divergence_stops_every_partition)
{
    if (!have_data)
        return;
    /* learning rate 3 on label-skew partitions: here one partition diverges in iteration 1 */
    const char *extra[] = { "train.reduce=mean", "train.iterations=3", "train.batch=50", "train.momentum=0.9",
                            "train.sync_every=2", "train.learning_rate=3", "train.partitioning=\"label-skew\"" };
    helpers_run r;
    run_experiment(&r, 2, extra, 7);
    int own = 0;
    for (int p = 0; p < 4; p++) {
        const cnnelm_part_result *q = &r.x.parts[p];
        ck_assert_msg(q->log.diverged && (q->model.flags & CNNELM_MODEL_DIVERGED), "partition %d did not diverge",
                      p + 1);
        ck_assert_uint_eq(q->model.iterations, r.x.parts[0].model.iterations);
        ck_assert_int_eq(q->log.n, (int)q->model.iterations + 1);
        ck_assert_msg(q->kernels_digest == r.x.parts[0].kernels_digest, "partition %d kept other kernels", p + 1);
        if (strstr(q->log.divergence, "diverged, and the partitions fine-tune together"))
            ck_assert_msg(strstr(q->log.divergence, "went back to the kernels of iteration"), "%s", q->log.divergence);
        else
            own++;
    }
    ck_assert_msg(own >= 1, "no partition gives its own reason");
    printf("sync divergence: every partition back to iteration %u (%d diverged by itself)\n",
           r.x.parts[0].model.iterations, own);
    helpers_run_free(&r);
}
END_TEST

/* Fine-tuning advanced batch range by batch range (cnnelm_finetune, as sync.c drives it),
 * with another model using the device between ranges, gives cnnelm_train_model's model and
 * series bit for bit. */
START_TEST(finetune_in_ranges_same_as_whole)
{
    if (!have_data)
        return;
    const char *extra[] = { "train.iterations=2", "train.batch=60", "train.momentum=0.9" };
    helpers_run r;
    open_run(&r, 1, extra, 3);
    cnnelm_error err = { "" };
    cnnelm_net *net = &r.pool.w[0].net;
    cnnelm_train_params tp = cnnelm_train_params_from_config(&r.cfg);
    cnnelm_subset train = { &train_ds, NULL, 700 }, none = { &test_ds, NULL, 0 };
    cnnelm_model whole, ranged, other;
    ck_assert(cnnelm_model_init(&whole, &r.arch, 100, 7, 1, &err) == 0);
    ck_assert(cnnelm_model_init(&ranged, &r.arch, 100, 7, 1, &err) == 0);
    ck_assert(cnnelm_model_init(&other, &r.arch, 100, 8, 1, &err) == 0);
    cnnelm_train_log lw, lr;
    ck_assert_msg(cnnelm_train_model(net, &whole, &train, &none, &tp, &r.prog, &lw, &err) == 0, "%s", err.msg);
    cnnelm_finetune ft;
    ck_assert_msg(cnnelm_finetune_start(&ft, net, &ranged, &train, &none, &tp, &r.prog, &lr, &err) == 0, "%s",
                  err.msg);
    uint64_t conf[100];
    for (int it = 1; it <= 2; it++) {
        ck_assert(cnnelm_finetune_epoch_begin(&ft, net, it, &err) == 0);
        for (size_t range = 1; cnnelm_finetune_batches_left(&ft) > 0; range = range % 3 + 1) {
            memset(conf, 0, sizeof conf);
            ck_assert(cnnelm_evaluate(net, &other, &train, conf, &r.prog, "other", &err) == 0);
            ck_assert(cnnelm_net_reset_uv(net, &err) == 0);
            ck_assert_msg(cnnelm_finetune_batches(&ft, net, range, &r.prog, &err) == 0, "%s", err.msg);
        }
        cnnelm_finetune_epoch_stats(&ft);
        ck_assert(cnnelm_finetune_epoch_end(&ft, net, &r.prog, &err) == 0 && !ft.stopped && !lr.diverged);
    }
    ck_assert(cnnelm_finetune_finish(&ft, net, &r.prog, &err) == 0);
    ck_assert_uint_eq(ranged.iterations, 2);
    same_model(&ranged, &whole, "fine-tuned in batch ranges");
    same_bytes(&ranged, &whole, "fine-tuned in batch ranges");
    ck_assert_int_eq(lr.n, lw.n);
    for (int i = 0; i < lw.n; i++)
        ck_assert_msg(lr.iters[i].J == lw.iters[i].J && lr.iters[i].train_accuracy == lw.iters[i].train_accuracy,
                      "iteration %d: J %.17g vs %.17g", i, lr.iters[i].J, lw.iters[i].J);
    ck_assert(memcmp(whole.params, other.params, whole.arch.n_params * sizeof(float)) != 0);
    cnnelm_train_log_free(&lw);
    cnnelm_train_log_free(&lr);
    cnnelm_model_free(&whole);
    cnnelm_model_free(&ranged);
    cnnelm_model_free(&other);
    cnnelm_worker_pool_close(&r.pool);
    cnnelm_progress_destroy(&r.prog);
    cnnelm_config_free(&r.cfg);
}
END_TEST

/* What cannot be averaged is refused with one line naming the key. */
START_TEST(sync_refused_where_meaningless)
{
    cnnelm_config cfg;
    cnnelm_error err = { "" };
    const char *no_tuning[] = { "train.partitions=4", "train.sync_every=2" };
    ck_assert(cnnelm_config_load(&cfg, CNNELM_SOURCE_DIR "/conf/paper-fashion.cfg", no_tuning, 2, &err) != 0);
    ck_assert_msg(strstr(err.msg, "train.sync_every = 2") && strstr(err.msg, "train.iterations = 0"), "%s", err.msg);
    cnnelm_config_free(&cfg);
    const char *one_part[] = { "train.iterations=1", "train.sync_every=2" };
    ck_assert(cnnelm_config_load(&cfg, CNNELM_SOURCE_DIR "/conf/paper-fashion.cfg", one_part, 2, &err) != 0);
    ck_assert_msg(strstr(err.msg, "train.partitions = 1"), "%s", err.msg);
    cnnelm_config_free(&cfg);
    const char *beta_alone[] = { "train.partitions=4", "train.iterations=1", "train.sync_beta=true" };
    ck_assert(cnnelm_config_load(&cfg, CNNELM_SOURCE_DIR "/conf/paper-fashion.cfg", beta_alone, 3, &err) != 0);
    ck_assert_msg(strstr(err.msg, "train.sync_beta") && strstr(err.msg, "train.sync_every = 0"), "%s", err.msg);
    cnnelm_config_free(&cfg);
    const char *negative[] = { "train.sync_every=-1" };
    ck_assert(cnnelm_config_load(&cfg, CNNELM_SOURCE_DIR "/conf/paper-fashion.cfg", negative, 1, &err) != 0);
    ck_assert_msg(strstr(err.msg, "train.sync_every"), "%s", err.msg);
    cnnelm_config_free(&cfg);
    if (!have_data)
        return;
    const char *resume[] = { "train.iterations=1", "train.batch=100", "train.sync_every=2" };
    helpers_run r;
    ck_assert(try_experiment(&r, 1, resume, 3, 1, &err) != 0);
    ck_assert_msg(strstr(err.msg, "--resume") && strstr(err.msg, "train.sync_every = 2"), "%s", err.msg);
    helpers_run_free(&r);
}
END_TEST

int main(void)
{
    have_data = helpers_fashion_slice(&train_ds, 2000, &test_ds, 500);
    Suite *s = suite_create("experiment");
    TCase *tc = tcase_create("workers");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, mean_same_for_1_2_4_workers);
    tcase_add_test(tc, refit_same_for_1_2_4_workers);
    tcase_add_test(tc, finetune_weighted_same_for_1_2_4_workers);
    tcase_add_test(tc, finetune_refit_same_for_1_2_4_workers);
    tcase_add_test(tc, sync_same_for_1_2_4_workers);
    tcase_add_test(tc, sync_partitions_share_kernels);
    tcase_add_test(tc, sync_beta_follows_all_classes);
    tcase_add_test(tc, sync_divergence_stops_every_partition);
    tcase_add_test(tc, finetune_in_ranges_same_as_whole);
    tcase_add_test(tc, sync_refused_where_meaningless);
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
