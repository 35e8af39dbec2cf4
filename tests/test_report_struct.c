/* Checks for the report module (core/src/report*.c) and the worker pool's describe call: the
 * summary rows against a plain two-pass mean and sample standard deviation of random runs, the
 * JSON and the table showing those values, the warnings (divergence, a reduced model worse
 * than every partition, chance level) raised exactly when their condition holds. */
#define _GNU_SOURCE /* open_memstream */
#include "report/report.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"

#define K 3
#define RUNS 5
#define CLASSES 4

typedef struct fixture {
    cnnelm_config *cfg;
    cnnelm_progress prog;
    cnnelm_report rep;
    cnnelm_model model;
    cnnelm_worker_desc workers[2];
} fixture;

static void fixture_open(fixture *f, int folds)
{
    memset(f, 0, sizeof *f);
    f->cfg = calloc(1, sizeof *f->cfg);
    ck_assert_ptr_nonnull(f->cfg);
    cnnelm_config_defaults(f->cfg);
    f->cfg->train.folds = folds;
    f->cfg->train.trials = folds > 1 ? 1 : RUNS;
    f->cfg->train.reduce = CNNELM_REDUCE_MEAN;
    f->cfg->train.iterations = 2;
    cnnelm_progress_init(&f->prog, 1);
    cnnelm_report_init(&f->rep, &f->prog);
    cnnelm_report *r = &f->rep;
    r->cfg = f->cfg;
    r->config_file = "test.cfg";
    r->config_text = "";
    r->model_file = "test.model";
    r->model = &f->model;
    r->classes = CLASSES;
    r->has_test_set = 1;
    r->runs_total = folds > 1 ? folds : RUNS;
    /* two workers on one device, as cnnelm_worker_pool_describe labels them */
    for (int w = 0; w < 2; w++) {
        snprintf(f->workers[w].label, sizeof f->workers[w].label, "cpu:0#%d", w);
        f->workers[w].device = "cpu:0";
        f->workers[w].plugin_path = "/x/libcnnelm-cpu.so";
        f->workers[w].classes = CLASSES;
    }
    r->workers = malloc(sizeof f->workers);
    memcpy(r->workers, f->workers, sizeof f->workers);
    r->n_workers = 2;
}

static void fixture_close(fixture *f)
{
    cnnelm_report_free(&f->rep);
    cnnelm_progress_destroy(&f->prog);
    free(f->cfg);
}

/* An experiment with K partitions whose test figures are random (accuracy in [lo, 1)). */
static void random_experiment(cnnelm_experiment *x, cnnelm_part_result *parts, const cnnelm_config *c,
                              cnnelm_rng *g, double lo)
{
    memset(x, 0, sizeof *x);
    memset(parts, 0, K * sizeof *parts);
    x->cfg = c;
    x->k = K;
    x->parts = parts;
    x->train.n = 1000;
    x->test.n = 200;
    for (int p = 0; p < K; p++) {
        parts[p].examples = 300 + (size_t)p;
        parts[p].worker = p % 2;
        parts[p].test.n = 200;
        parts[p].test.accuracy = lo + (1 - lo) * cnnelm_rng_uniform(g);
        parts[p].test.kappa = parts[p].test.accuracy - 0.1;
        parts[p].class_examples[p % CLASSES] = 300;
    }
    x->reduced_test.n = 200;
    x->reduced_test.accuracy = lo + (1 - lo) * cnnelm_rng_uniform(g);
    x->reduced_test.kappa = x->reduced_test.accuracy - 0.1;
}

/* Plain two-pass figures of one column of values. */
static void mean_std(const double *v, int n, double *mean, double *std)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += v[i];
    *mean = s / n;
    double q = 0;
    for (int i = 0; i < n; i++)
        q += (v[i] - *mean) * (v[i] - *mean);
    *std = n > 1 ? sqrt(q / (n - 1)) : 0;
}

static char *written(const cnnelm_report *r, int json)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    if (json) {
        cnnelm_error err = { "" };
        ck_assert_msg(cnnelm_report_write_json(r, f, &err) == 0, "%s", err.msg);
    } else {
        cnnelm_report_write_table(r, f);
    }
    fclose(f);
    return buf;
}

/* The n-th number after `key` in text (n from 0). */
static double nth_number(const char *text, const char *key, int n)
{
    const char *at = text;
    for (int i = 0; i <= n; i++) {
        at = strstr(at, key);
        ck_assert_msg(at != NULL, "%s #%d missing", key, n);
        at += strlen(key);
    }
    return strtod(at, NULL);
}

START_TEST(summary_matches_two_pass_reference)
{
    fixture f;
    fixture_open(&f, 1);
    cnnelm_rng g;
    cnnelm_rng_seed(&g, 42, 0);
    double acc[K + 1][RUNS], kap[K + 1][RUNS];
    cnnelm_error err = { "" };
    for (int t = 0; t < RUNS; t++) {
        cnnelm_experiment x;
        cnnelm_part_result parts[K];
        random_experiment(&x, parts, f.cfg, &g, 0.5);
        for (int p = 0; p < K; p++) {
            acc[p][t] = parts[p].test.accuracy;
            kap[p][t] = parts[p].test.kappa;
        }
        acc[K][t] = x.reduced_test.accuracy;
        kap[K][t] = x.reduced_test.kappa;
        ck_assert_msg(cnnelm_report_add_run(&f.rep, &x, t + 1, 0, 7 + (uint64_t)t, "", &err) == 0, "%s", err.msg);
    }
    ck_assert_int_eq(cnnelm_report_finish(&f.rep, &err), 0);
    ck_assert_int_eq(f.rep.k, K);
    char *json = written(&f.rep, 1);
    char *table = written(&f.rep, 0);
    /* each partition lists the classes of its training examples (partition p: class p) */
    for (int p = 0; p < K; p++)
        ck_assert_double_eq(nth_number(json, "\"classes\": [", p), p % CLASSES);
    /* each partition's row and the reduced row: mean and std to 1e-12, in the JSON to its 10
     * significant digits, in the table to its 2 decimals of a percentage */
    for (int p = 0; p <= K; p++) {
        const cnnelm_report_row *row = p < K ? &f.rep.part[p] : &f.rep.reduced;
        double m, s, km, ks;
        mean_std(acc[p], RUNS, &m, &s);
        mean_std(kap[p], RUNS, &km, &ks);
        ck_assert_int_eq(row->n, RUNS);
        ck_assert_double_eq_tol(cnnelm_report_mean(row->acc_sum, row->n), m, 1e-12);
        ck_assert_double_eq_tol(cnnelm_report_std(row->acc_sum, row->acc_sq, row->n), s, 1e-12);
        ck_assert_double_eq_tol(cnnelm_report_std(row->kappa_sum, row->kappa_sq, row->n), ks, 1e-12);
        ck_assert_double_eq_tol(nth_number(json, "\"accuracy_mean\": ", p), m, 1e-9 * m);
        ck_assert_double_eq_tol(nth_number(json, "\"accuracy_std\": ", p), s, 1e-9 * (s + 1e-300));
        char line[160], name[32];
        if (p < K)
            snprintf(name, sizeof name, "partition %d", p + 1);
        else
            snprintf(name, sizeof name, "reduced (mean)");
        snprintf(line, sizeof line, "  %-28s %6.2f%% +- %5.2f   %7.4f +- %6.4f\n", name, 100 * m, 100 * s, km, ks);
        ck_assert_msg(strstr(table, line), "table lacks \"%s\":\n%s", line, table);
    }
    /* every run in the JSON, in order, with its seed; one table line per run */
    for (int t = 0; t < RUNS; t++) {
        ck_assert_double_eq(nth_number(json, "\"trial\": ", t), t + 1);
        ck_assert_double_eq(nth_number(json, "\"seed\": ", t + 1), 7 + t); /* after the model's */
        char line[96];
        snprintf(line, sizeof line, "    trial %d", t + 1);
        ck_assert_msg(strstr(table, line), "table lacks %s", line);
    }
    ck_assert_ptr_null(strstr(json, "\"trial\": 6"));
    /* partitions name the worker that trained them, by the pool's label */
    ck_assert_ptr_nonnull(strstr(json, "\"worker_label\": \"cpu:0#1\""));
    free(json);
    free(table);
    fixture_close(&f);
}
END_TEST

START_TEST(worse_and_divergence_warned_only_when_true)
{
    fixture f;
    fixture_open(&f, 1);
    cnnelm_rng g;
    cnnelm_rng_seed(&g, 3, 0);
    cnnelm_error err = { "" };
    cnnelm_experiment x;
    cnnelm_part_result parts[K];
    /* reduced above the lowest partition: no warning */
    random_experiment(&x, parts, f.cfg, &g, 0.6);
    x.reduced_test.accuracy = 0.99;
    ck_assert_int_eq(cnnelm_report_add_run(&f.rep, &x, 1, 0, 1, "", &err), 0);
    ck_assert_int_eq(f.rep.n_warnings, 0);
    ck_assert_int_eq(f.rep.runs[0].worse, 0);
    /* below every partition, and partition 2 diverged at iteration 2 */
    random_experiment(&x, parts, f.cfg, &g, 0.6);
    x.reduced_test.accuracy = 0.3;
    parts[1].log.diverged = 1;
    snprintf(parts[1].log.divergence, sizeof parts[1].log.divergence, "iteration 2: J grew; lower the rate");
    parts[1].model.iterations = 1;
    ck_assert_int_eq(cnnelm_report_add_run(&f.rep, &x, 2, 0, 2, "trial 2/5: ", &err), 0);
    ck_assert_int_eq(f.rep.n_warnings, 2);
    ck_assert_msg(strstr(f.rep.warnings[0], "trial 2/5: partition 2/3 diverged at iteration 2: J grew"), "%s",
                  f.rep.warnings[0]);
    ck_assert_msg(strstr(f.rep.warnings[1], "worse than every partition") &&
                  strstr(f.rep.warnings[1], "train.reduce = \"refit\""), "%s", f.rep.warnings[1]);
    ck_assert_int_eq(f.rep.runs[1].worse, 1);
    ck_assert_int_eq(cnnelm_report_finish(&f.rep, &err), 0);
    char *json = written(&f.rep, 1);
    ck_assert_ptr_nonnull(strstr(json, "\"warning_count\": 2"));
    ck_assert_ptr_nonnull(strstr(json, "\"divergence\": \"iteration 2: J grew; lower the rate\""));
    free(json);
    fixture_close(&f);
}
END_TEST

START_TEST(chance_level_listed_only_below_threshold)
{
    fixture f;
    fixture_open(&f, 1);
    cnnelm_rng g;
    cnnelm_rng_seed(&g, 9, 0);
    cnnelm_error err = { "" };
    cnnelm_experiment x;
    cnnelm_part_result parts[K];
    random_experiment(&x, parts, f.cfg, &g, 0.6);
    parts[2].test.kappa = CNNELM_CHANCE_KAPPA - 0.01; /* just below */
    parts[0].test.kappa = CNNELM_CHANCE_KAPPA + 0.01; /* just above */
    x.reduced_test.accuracy = 0.99;
    ck_assert_int_eq(cnnelm_report_add_run(&f.rep, &x, 1, 0, 1, "", &err), 0);
    ck_assert_int_eq(cnnelm_report_finish(&f.rep, &err), 0);
    ck_assert_int_eq(f.rep.chance_n, 1);
    ck_assert_str_eq(f.rep.chance_name[0], "partition 3");
    ck_assert_int_eq(f.rep.n_warnings, 1);
    ck_assert_msg(strstr(f.rep.warnings[0], "partition 3 is at chance level") &&
                  strstr(f.rep.warnings[0], "cpu:0, cpu:0"), "%s", f.rep.warnings[0]);
    fixture_close(&f);
}
END_TEST

START_TEST(kfold_final_model_not_in_rows)
{
    fixture f;
    fixture_open(&f, 3);
    cnnelm_rng g;
    cnnelm_rng_seed(&g, 5, 0);
    cnnelm_error err = { "" };
    double acc[3];
    for (int fold = 1; fold <= 3; fold++) {
        cnnelm_experiment x;
        cnnelm_part_result parts[K];
        random_experiment(&x, parts, f.cfg, &g, 0.5);
        x.reduced_test.accuracy = 0.999; /* not worse */
        acc[fold - 1] = x.reduced_test.accuracy;
        ck_assert_int_eq(cnnelm_report_add_run(&f.rep, &x, 1, fold, 1, "", &err), 0);
    }
    cnnelm_experiment x;
    cnnelm_part_result parts[K];
    random_experiment(&x, parts, f.cfg, &g, 0.5);
    x.test.n = 0;
    x.train.n = 1234;
    ck_assert_int_eq(cnnelm_report_add_run(&f.rep, &x, 1, -1, 1, "final model: ", &err), 0);
    ck_assert_int_eq(cnnelm_report_finish(&f.rep, &err), 0);
    ck_assert_int_eq(f.rep.reduced.n, 3);
    double m, s;
    mean_std(acc, 3, &m, &s);
    ck_assert_double_eq_tol(cnnelm_report_mean(f.rep.reduced.acc_sum, 3), m, 1e-12);
    ck_assert_int_eq(f.rep.final_all_data, 1);
    char *table = written(&f.rep, 0);
    ck_assert_msg(strstr(table, "cross-validation results") && strstr(table, "    fold 3") &&
                  strstr(table, "saved model: trained on all 1234 training examples after the 3 folds"), "%s",
                  table);
    char *json = written(&f.rep, 1);
    ck_assert_ptr_nonnull(strstr(json, "\"all_training_data\": true"));
    ck_assert_ptr_nonnull(strstr(json, "\"model_trained_on_all_training_data\": true"));
    free(table);
    free(json);
    fixture_close(&f);
}
END_TEST

/* The describe call on a real pool of two CPU workers sharing device 0. */
START_TEST(pool_describe_two_cpu_workers)
{
    static cnnelm_config cfg;
    const char *sets[] = { "workers=({backend=\"cpu\";threads=1;},{backend=\"cpu\";threads=2;})" };
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_config_load(&cfg, CNNELM_SOURCE_DIR "/conf/paper-fashion.cfg", sets, 1, &err) == 0,
                  "%s", err.msg);
    cnnelm_arch arch;
    ck_assert_msg(cnnelm_arch_init(&arch, cfg.model.layers, cfg.model.kernel, 1, 28, 28, 10, cfg.model.activation,
                                   cfg.model.pooling, cfg.model.elm_activation, &err) == 0, "%s", err.msg);
    cnnelm_worker_pool pool;
    ck_assert_msg(cnnelm_worker_pool_open(&pool, &cfg, &arch, &err) == 0, "%s", err.msg);
    cnnelm_worker_desc d;
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(cnnelm_worker_pool_describe(&pool, i, &d), 0);
        char want[16];
        snprintf(want, sizeof want, "cpu:0#%d", i);
        ck_assert_str_eq(d.label, want);
        ck_assert_str_eq(d.device, "cpu:0");
        ck_assert_str_eq(d.backend, "cpu");
        ck_assert_msg(strstr(d.plugin_path, "libcnnelm-cpu.so"), "%s", d.plugin_path);
        ck_assert_int_eq(d.threads, i + 1);
        ck_assert_int_eq(d.chunk, cfg.train.chunk);
        ck_assert_int_eq(d.classes, 10);
        ck_assert_uint_eq(d.fell_back, 0);
        ck_assert_int_eq(d.failed, 0);
    }
    ck_assert_int_eq(cnnelm_worker_pool_describe(&pool, 2, &d), -1);
    ck_assert_int_eq(cnnelm_worker_pool_describe(&pool, -1, &d), -1);
    cnnelm_worker_pool_close(&pool);
    cnnelm_config_free(&cfg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("report");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, summary_matches_two_pass_reference);
    tcase_add_test(tc, worse_and_divergence_warned_only_when_true);
    tcase_add_test(tc, chance_level_listed_only_below_threshold);
    tcase_add_test(tc, kfold_final_model_not_in_rows);
    tcase_add_test(tc, pool_describe_two_cpu_workers);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
