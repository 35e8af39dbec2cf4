/* cnnelm jobs: train and eval as the command line runs them (config -> data -> backend ->
 * training -> evaluation -> model file and JSON report). */
#define _GNU_SOURCE /* open_memstream */
#include "cnnelm/run.h"

#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"
#include "cnnelm/cluster.h"
#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "cnnelm/metrics.h"
#include "cnnelm/model.h"
#include "cnnelm/plugin.h"
#include "json.h"
#include "network.h"
#include "progress.h"
#include "experiment.h"
#include "memory_plan.h"
#include "partition.h"
#include "train.h"
#include "workers.h"

#ifndef CNNELM_VERSION
#define CNNELM_VERSION "unknown"
#endif

typedef struct job {
    const cnnelm_cluster *cluster;
    int rank;                    /* 0 unless under MPI */
    int resume;
    char rank_prefix[32];        /* "rank R: " on other ranks' messages */
    cnnelm_config cfg;
    cnnelm_dataset train, test;
    cnnelm_pool pool;
    int pool_open;
    cnnelm_model model;          /* train: the reduced model of the first run; eval: the loaded one */
    cnnelm_progress prog;
    uint64_t *confusion;
    cnnelm_metrics test_metrics;
    double t_load, t_train, t_eval;
} job;

static void job_free(job *j)
{
    if (j->pool_open)
        cnnelm_pool_close(&j->pool);
    cnnelm_model_free(&j->model);
    cnnelm_dataset_free(&j->train);
    cnnelm_dataset_free(&j->test);
    free(j->confusion);
    cnnelm_config_free(&j->cfg);
    cnnelm_progress_destroy(&j->prog);
}

static void print_confusion(const uint64_t *confusion, int classes)
{
    printf("confusion matrix (rows: true class, columns: predicted class):\n");
    printf("      ");
    for (int c = 0; c < classes; c++)
        printf(" %6d", c);
    printf("\n");
    for (int r = 0; r < classes; r++) {
        printf("  %3d:", r);
        for (int c = 0; c < classes; c++)
            printf(" %6llu", (unsigned long long)confusion[(size_t)r * classes + c]);
        printf("\n");
    }
}

static void json_metrics(cnnelm_json *js, const char *key, const cnnelm_metrics *m,
                         const uint64_t *confusion, int classes)
{
    cnnelm_json_object(js, key);
    cnnelm_json_int(js, "examples", (long long)m->n);
    cnnelm_json_number(js, "accuracy", m->accuracy);
    cnnelm_json_number(js, "kappa", m->kappa);
    cnnelm_json_number(js, "kappa_se", m->kappa_se);
    if (confusion) {
        cnnelm_json_array(js, "confusion");
        for (int r = 0; r < classes; r++) {
            cnnelm_json_array(js, NULL);
            for (int c = 0; c < classes; c++)
                cnnelm_json_int(js, NULL, (long long)confusion[(size_t)r * classes + c]);
            cnnelm_json_end(js, ']');
        }
        cnnelm_json_end(js, ']');
    }
    cnnelm_json_end(js, '}');
}

static void json_model(cnnelm_json *js, const cnnelm_model *m)
{
    const cnnelm_arch *a = &m->arch;
    cnnelm_json_object(js, "model");
    cnnelm_json_string(js, "layers", a->layers);
    cnnelm_json_int(js, "kernel", a->kernel);
    cnnelm_json_string(js, "activation", cnnelm_activation_name(a->activation));
    cnnelm_json_string(js, "pooling", cnnelm_pooling_name(a->pooling));
    cnnelm_json_string(js, "elm_activation", cnnelm_activation_name(a->elm_activation));
    cnnelm_json_int(js, "hidden", a->hidden);
    cnnelm_json_int(js, "classes", a->classes);
    cnnelm_json_int(js, "parameters", (long long)a->n_params);
    cnnelm_json_number(js, "lambda", m->lambda);
    cnnelm_json_int(js, "seed", (long long)m->seed);
    cnnelm_json_int(js, "training_examples", (long long)m->n_examples);
    cnnelm_json_int(js, "iterations", m->iterations);
    cnnelm_json_bool(js, "diverged", (m->flags & CNNELM_MODEL_DIVERGED) != 0);
    cnnelm_json_end(js, '}');
}

static void json_series(cnnelm_json *js, const cnnelm_train_log *log)
{
    cnnelm_json_array(js, "iterations");
    for (int i = 0; i < log->n; i++) {
        const cnnelm_iter_stats *s = &log->iters[i];
        cnnelm_json_object(js, NULL);
        cnnelm_json_int(js, "iteration", s->iteration);
        cnnelm_json_number(js, "J", s->J);
        cnnelm_json_number(js, "train_accuracy", s->train_accuracy);
        cnnelm_json_number(js, "test_accuracy", s->test_accuracy);
        cnnelm_json_number(js, "learning_rate", s->learning_rate);
        cnnelm_json_number(js, "seconds", s->seconds);
        cnnelm_json_end(js, '}');
    }
    cnnelm_json_end(js, ']');
    cnnelm_json_bool(js, "diverged", log->diverged);
    if (log->diverged)
        cnnelm_json_string(js, "divergence", log->divergence);
}

/* ---- train: runs (trials x folds) of Map + Reduce, a table, the first run's model saved ---- */

/* Accuracy and kappa of one table row over the runs. */
typedef struct row_stats {
    double acc_sum, acc_sq, kappa_sum, kappa_sq;
    int n;
} row_stats;

static void row_add(row_stats *r, const cnnelm_metrics *m)
{
    r->acc_sum += m->accuracy;
    r->acc_sq += m->accuracy * m->accuracy;
    r->kappa_sum += m->kappa;
    r->kappa_sq += m->kappa * m->kappa;
    r->n++;
}

static double mean_of(double sum, int n) { return n ? sum / n : NAN; }
static double std_of(double sum, double sq, int n)
{
    if (n < 2)
        return 0;
    double v = (sq - sum * sum / n) / (n - 1); /* sample standard deviation */
    return v > 0 ? sqrt(v) : 0;
}

typedef struct train_summary {
    int runs, k;
    row_stats *part;    /* k */
    row_stats reduced, single;
} train_summary;

static void print_row(const char *name, const row_stats *r)
{
    if (r->n == 0)
        return;
    if (r->n == 1)
        printf("  %-28s %8.2f%%   %7.4f\n", name, 100 * mean_of(r->acc_sum, 1), mean_of(r->kappa_sum, 1));
    else
        printf("  %-28s %6.2f%% +- %5.2f   %7.4f +- %6.4f\n", name, 100 * mean_of(r->acc_sum, r->n),
               100 * std_of(r->acc_sum, r->acc_sq, r->n), mean_of(r->kappa_sum, r->n),
               std_of(r->kappa_sum, r->kappa_sq, r->n));
}

static void print_table(const train_summary *s, const cnnelm_config *c)
{
    printf("%s results (accuracy, Cohen's kappa%s):\n",
           c->train.folds > 1 ? "cross-validation" : "test",
           s->runs > 1 ? "; mean +- standard deviation over the runs" : "");
    char name[64];
    if (s->k > 1)
        for (int p = 0; p < s->k; p++) {
            snprintf(name, sizeof name, "partition %d", p + 1);
            print_row(name, &s->part[p]);
        }
    if (s->k > 1)
        snprintf(name, sizeof name, "reduced (%s)", cnnelm_reduce_name(c->train.reduce));
    else
        snprintf(name, sizeof name, "model");
    print_row(name, &s->reduced);
    print_row("single model (all data)", &s->single);
}

static void json_row(cnnelm_json *js, const char *key, const row_stats *r)
{
    cnnelm_json_object(js, key);
    cnnelm_json_int(js, "runs", r->n);
    cnnelm_json_number(js, "accuracy_mean", mean_of(r->acc_sum, r->n));
    cnnelm_json_number(js, "accuracy_std", std_of(r->acc_sum, r->acc_sq, r->n));
    cnnelm_json_number(js, "kappa_mean", mean_of(r->kappa_sum, r->n));
    cnnelm_json_number(js, "kappa_std", std_of(r->kappa_sum, r->kappa_sq, r->n));
    cnnelm_json_end(js, '}');
}

/* model.lambda = "auto": the choice and its GCV curve ("lambda_choice"; nothing when fixed). */
static void json_lambda(cnnelm_json *js, const cnnelm_lambda_choice *ch)
{
    if (ch->n < 1)
        return;
    cnnelm_json_object(js, "lambda_choice");
    cnnelm_json_string(js, "rule", "gcv");
    cnnelm_json_number(js, "chosen", ch->lambda[ch->best]);
    cnnelm_json_number(js, "seconds", ch->seconds);
    cnnelm_json_array(js, "curve");
    for (int i = 0; i < ch->n; i++) {
        cnnelm_json_object(js, NULL);
        cnnelm_json_number(js, "lambda", ch->lambda[i]);
        cnnelm_json_number(js, "gcv", ch->gcv[i]);
        cnnelm_json_number(js, "df", ch->df[i]);
        cnnelm_json_end(js, '}');
    }
    cnnelm_json_end(js, ']');
    cnnelm_json_end(js, '}');
}

static void json_part(cnnelm_json *js, const cnnelm_part_result *r, const cnnelm_pool *pool, int k)
{
    cnnelm_json_object(js, NULL);
    cnnelm_json_int(js, "examples", (long long)r->examples);
    cnnelm_json_int(js, "rank", r->rank);
    cnnelm_json_int(js, "worker", r->worker + 1);
    /* every rank runs the same worker list, so the device name is the same on each */
    if (r->worker >= 0 && r->worker < pool->n)
        cnnelm_json_string(js, "device", pool->w[r->worker].net.where);
    cnnelm_json_bool(js, "resumed", r->resumed);
    cnnelm_json_number(js, "seconds", r->seconds);
    if (r->test.n)
        json_metrics(js, "test", &r->test, NULL, 0);
    if (k > 1 || r->log.n > 1)
        json_series(js, &r->log);
    json_lambda(js, &r->log.lambda_choice);
    cnnelm_json_end(js, '}');
}

static int run_experiments(job *j, const cnnelm_arch *arch, train_summary *s, cnnelm_json *js,
                           cnnelm_error *err)
{
    const cnnelm_config *c = &j->cfg;
    int folds = c->train.folds > 1 ? c->train.folds : 1;
    int runs = c->train.trials * folds;
    s->runs = runs;
    int rc = 0;
    if (js)
        cnnelm_json_array(js, "runs");
    for (int t = 0; t < c->train.trials && rc == 0; t++) {
        uint64_t seed = c->train.seed + (uint64_t)t;
        cnnelm_partitions fold_parts;
        memset(&fold_parts, 0, sizeof fold_parts);
        size_t *train_rows = NULL;
        if (folds > 1) {
            if (cnnelm_partition(NULL, j->train.n, j->train.labels, folds, CNNELM_PART_STRATIFIED,
                                 seed ^ 0x5f0f5f0fULL, &fold_parts, err))
                return cnnelm_fail_prefix(err, "%s: train.folds", c->path);
            train_rows = malloc(j->train.n * sizeof *train_rows);
            if (!train_rows) {
                cnnelm_partitions_free(&fold_parts);
                return cnnelm_fail(err, "out of memory");
            }
        }
        for (int f = 0; f < folds && rc == 0; f++) {
            cnnelm_experiment x;
            memset(&x, 0, sizeof x);
            x.cfg = c;
            x.seed = seed;
            x.prog = &j->prog;
            x.pool = &j->pool;
            x.cluster = j->cluster;
            x.fold = f + 1;
            x.resume = j->resume;
            x.rank_prefix = j->rank_prefix;
            if (folds > 1) {
                size_t n = 0;
                for (int g = 0; g < folds; g++)
                    if (g != f)
                        for (size_t i = fold_parts.start[g]; i < fold_parts.start[g + 1]; i++)
                            train_rows[n++] = fold_parts.rows[i];
                x.train = (cnnelm_subset){ &j->train, train_rows, n };
                x.test = (cnnelm_subset){ &j->train, fold_parts.rows + fold_parts.start[f],
                                          cnnelm_partition_size(&fold_parts, f) };
            } else {
                x.train = (cnnelm_subset){ &j->train, NULL, j->train.n };
                x.test = (cnnelm_subset){ &j->test, NULL, j->test.n };
            }
            if (runs > 1)
                cnnelm_progress_note(&j->prog, "run %d/%d: seed %llu%s", t * folds + f + 1, runs,
                                     (unsigned long long)seed, folds > 1 ? ", cross-validation fold" : "");
            rc = cnnelm_experiment_run(&x, arch, err);
            if (rc == 0 && j->rank != 0) {
                cnnelm_experiment_free(&x);
                continue; /* rank 0 holds the results */
            }
            if (rc == 0) {
                if (!s->part) {
                    s->k = x.k;
                    s->part = calloc((size_t)x.k, sizeof *s->part);
                    if (!s->part)
                        rc = cnnelm_fail(err, "out of memory");
                }
            }
            if (rc == 0) {
                for (int p = 0; p < x.k && p < s->k; p++)
                    if (x.test.n)
                        row_add(&s->part[p], &x.parts[p].test);
                if (x.test.n)
                    row_add(&s->reduced, &x.reduced_test);
                if (x.has_single && x.test.n)
                    row_add(&s->single, &x.single.test);
                if (js) {
                    cnnelm_json_object(js, NULL);
                    cnnelm_json_int(js, "trial", t + 1);
                    if (folds > 1)
                        cnnelm_json_int(js, "fold", f + 1);
                    cnnelm_json_int(js, "seed", (long long)seed);
                    cnnelm_json_int(js, "training_examples", (long long)x.train.n);
                    cnnelm_json_int(js, "test_examples", (long long)x.test.n);
                    cnnelm_json_number(js, "map_seconds", x.map_seconds);
                    cnnelm_json_number(js, "reduce_seconds", x.reduce_seconds);
                    cnnelm_json_array(js, "partitions");
                    for (int p = 0; p < x.k; p++)
                        json_part(js, &x.parts[p], &j->pool, x.k);
                    cnnelm_json_end(js, ']');
                    if (x.test.n)
                        json_metrics(js, "reduced", &x.reduced_test, NULL, 0);
                    json_lambda(js, &x.reduced_lambda); /* refit's choice on the summed U, V */
                    if (x.has_single) {
                        cnnelm_json_object(js, "single");
                        if (x.single.test.n)
                            json_metrics(js, "test", &x.single.test, NULL, 0);
                        json_series(js, &x.single.log);
                        json_lambda(js, &x.single.log.lambda_choice);
                        cnnelm_json_end(js, '}');
                    }
                    cnnelm_json_end(js, '}');
                }
                if (t == 0 && f == 0) { /* the first run's reduced model is the one saved */
                    rc = cnnelm_model_copy(&j->model, &x.reduced, err);
                    int C = arch->classes;
                    j->test_metrics = x.reduced_test;
                    if (rc == 0 && x.test.n) {
                        j->confusion = malloc((size_t)C * C * sizeof *j->confusion);
                        if (!j->confusion)
                            rc = cnnelm_fail(err, "out of memory");
                        else
                            memcpy(j->confusion, x.reduced_confusion, (size_t)C * C * sizeof *j->confusion);
                    }
                    if (x.k == 1 && x.parts[0].log.diverged)
                        fprintf(stderr, "cnnelm: warning: fine-tuning diverged: %s; the saved model is "
                                "iteration %u, the last good one\n", x.parts[0].log.divergence,
                                x.parts[0].model.iterations);
                }
            }
            cnnelm_experiment_free(&x);
        }
        free(train_rows);
        cnnelm_partitions_free(&fold_parts);
    }
    if (js)
        cnnelm_json_end(js, ']');
    return rc;
}

static void note_line(void *user, const char *line)
{
    cnnelm_progress_note(user, "%s", line);
}

int cnnelm_run_train(const cnnelm_run_options *o, cnnelm_error *err)
{
    job j;
    memset(&j, 0, sizeof j);
    j.cluster = o->cluster;
    j.rank = o->cluster ? o->cluster->rank : 0;
    j.resume = o->resume;
    if (j.rank != 0)
        snprintf(j.rank_prefix, sizeof j.rank_prefix, "rank %d: ", j.rank);
    cnnelm_progress_init(&j.prog, o->quiet);
    if (j.rank != 0) {
        cnnelm_progress parent = j.prog;
        cnnelm_progress_destroy(&j.prog);
        cnnelm_progress_init_child(&j.prog, &parent, j.rank_prefix);
    }
    train_summary s;
    memset(&s, 0, sizeof s);
    int rc = -1;
    double t0 = cnnelm_now();
    FILE *body = NULL;  /* the report's runs, written while training, copied in at the end */
    char *body_text = NULL;
    size_t body_len = 0;
    if (cnnelm_config_load(&j.cfg, o->config_path, o->overrides, o->n_overrides, err))
        goto out;
    const cnnelm_config *c = &j.cfg;
    cnnelm_progress_begin(&j.prog, "load data", 0);
    if (cnnelm_dataset_load_config(&j.train, c, 0, 256, err))
        goto out;
    cnnelm_arch arch;
    if (cnnelm_arch_init(&arch, c->model.layers, c->model.kernel, 1, j.train.rows, j.train.cols,
                         j.train.classes, c->model.activation, c->model.pooling,
                         c->model.elm_activation, err)) {
        cnnelm_fail_prefix(err, "%s: model.layers", c->path);
        goto out;
    }
    /* every rank evaluates the partitions it trains, so every rank reads the test set */
    if (c->train.folds <= 1 && cnnelm_dataset_load_config(&j.test, c, 1, arch.classes, err))
        goto out;
    if (j.test.n && (j.test.rows != j.train.rows || j.test.cols != j.train.cols)) {
        cnnelm_fail(err, "%s: test images are %dx%d but training images are %dx%d", c->path,
                    j.test.rows, j.test.cols, j.train.rows, j.train.cols);
        goto out;
    }
    {
        char detail[160];
        snprintf(detail, sizeof detail, "%zu training and %zu test images of %dx%d, %d classes",
                 j.train.n, j.test.n, j.train.rows, j.train.cols, arch.classes);
        cnnelm_progress_end(&j.prog, detail);
    }
    if (c->train.checkpoint_dir[0] && mkdir(c->train.checkpoint_dir, 0777) != 0 && errno != EEXIST) {
        cnnelm_fail(err, "%s: train.checkpoint_dir: cannot create %s: %s", c->path,
                    c->train.checkpoint_dir, strerror(errno));
        goto out;
    }
    {
        /* say what the run will hold, and refuse one that cannot fit, before any buffer */
        cnnelm_memory_plan plan;
        char line[512];
        cnnelm_memory_plan_make(c, &arch, &plan);
        if (cnnelm_memory_plan_check(&plan, (double)c->train.memory_limit * 1048576.0, line,
                                     sizeof line, err)) {
            cnnelm_fail_prefix(err, "%s", c->path);
            goto out;
        }
        cnnelm_progress_note(&j.prog, "%s", line);
    }
    if (cnnelm_pool_open(&j.pool, c, &arch, err))
        goto out;
    j.pool_open = 1;
    j.pool.note = note_line;
    j.pool.note_user = &j.prog;
    j.t_load = cnnelm_now() - t0;
    cnnelm_progress_note(&j.prog, "model %s, kernel %d, %d hidden units, %zu parameters; %d worker%s "
                         "(first: %s)", arch.layers, arch.kernel, arch.hidden, arch.n_params,
                         j.pool.n, j.pool.n == 1 ? "" : "s", j.pool.w[0].net.where);
    double tt = cnnelm_now();
    cnnelm_json js;
    if (o->report_path && j.rank == 0) {
        body = open_memstream(&body_text, &body_len);
        if (!body) {
            cnnelm_fail(err, "out of memory");
            goto out;
        }
        cnnelm_json_init(&js, body);
        cnnelm_json_object(&js, NULL);
    }
    if (run_experiments(&j, &arch, &s, body ? &js : NULL, err))
        goto out;
    j.t_train = cnnelm_now() - tt;
    cnnelm_pool_report_fallbacks(&j.pool, note_line, &j.prog);
    if (j.rank != 0) { /* rank 0 alone writes the model and the report */
        rc = 0;
        goto out;
    }
    if (cnnelm_model_save(&j.model, o->model_path, err))
        goto out;
    if (j.test.n || c->train.folds > 1) {
        print_table(&s, c);
        if (j.confusion) {
            printf("%s: test accuracy %.2f%% (%llu examples), kappa %.4f (standard error %.4f)\n",
                   s.runs > 1 ? (s.k > 1 ? "first run's reduced model" : "first run's model")
                              : (s.k > 1 ? "reduced model" : "model"), 100 * j.test_metrics.accuracy,
                   (unsigned long long)j.test_metrics.n, j.test_metrics.kappa, j.test_metrics.kappa_se);
            print_confusion(j.confusion, arch.classes);
        }
    } else {
        printf("no test set configured (data.test_images, or train.folds for cross-validation)\n");
    }
    printf("model saved to %s\n", o->model_path);
    if (o->report_path) {
        cnnelm_json_end(&js, '}');
        fclose(body);
        body = NULL;
        cnnelm_atomic_file af;
        if (cnnelm_atomic_open(&af, o->report_path, err))
            goto out;
        cnnelm_json_init(&js, af.f);
        cnnelm_json_object(&js, NULL);
        cnnelm_json_string(&js, "cnnelm_version", CNNELM_VERSION);
        cnnelm_json_string(&js, "command", "train");
        cnnelm_json_string(&js, "config_file", c->path);
        cnnelm_json_string(&js, "model_file", o->model_path);
        json_model(&js, &j.model);
        cnnelm_json_array(&js, "workers");
        for (int w = 0; w < j.pool.n; w++) {
            cnnelm_json_object(&js, NULL);
            cnnelm_json_string(&js, "device", j.pool.w[w].net.where);
            cnnelm_json_string(&js, "plugin", j.pool.w[w].plugin->path);
            cnnelm_json_int(&js, "threads", j.pool.w[w].cfg.threads);
            cnnelm_json_bool(&js, "failed", j.pool.w[w].failed);
            cnnelm_json_array(&js, "ops_on_cpu_reference");
            for (int op = 0; op < CNNELM_OP_COUNT; op++)
                if (j.pool.w[w].net.ops.fell_back >> op & 1u)
                    cnnelm_json_string(&js, NULL, cnnelm_op_name((cnnelm_op_id)op));
            cnnelm_json_end(&js, ']');
            cnnelm_json_end(&js, '}');
        }
        cnnelm_json_end(&js, ']');
        cnnelm_json_int(&js, "partitions", s.k);
        cnnelm_json_string(&js, "partitioning", cnnelm_partitioning_name(c->train.partitioning));
        cnnelm_json_string(&js, "reduce", cnnelm_reduce_name(c->train.reduce));
        cnnelm_json_int(&js, "runs_total", s.runs);
        cnnelm_json_int(&js, "processes", j.cluster ? j.cluster->size : 1);
        if (j.confusion)
            json_metrics(&js, "test", &j.test_metrics, j.confusion, arch.classes);
        cnnelm_json_object(&js, "summary");
        cnnelm_json_array(&js, "partitions");
        for (int p = 0; p < s.k && s.k > 1; p++)
            json_row(&js, NULL, &s.part[p]);
        cnnelm_json_end(&js, ']');
        json_row(&js, "reduced", &s.reduced);
        if (s.single.n)
            json_row(&js, "single", &s.single);
        cnnelm_json_end(&js, '}');
        cnnelm_json_object(&js, "timings");
        cnnelm_json_number(&js, "load_s", j.t_load);
        cnnelm_json_number(&js, "train_s", j.t_train);
        cnnelm_json_end(&js, '}');
        /* the runs, written while training: splice the members of that object in */
        char *inner = strchr(body_text, '{');
        char *last = strrchr(body_text, '}');
        if (inner && last && last > inner + 1) {
            while (last > inner + 1 && (last[-1] == '\n' || last[-1] == ' '))
                last--;
            *last = '\0';
            fputs(",", af.f);
            fputs(inner + 1, af.f);
        }
        cnnelm_json_string(&js, "config", c->text);
        cnnelm_json_end(&js, '}');
        if (cnnelm_atomic_commit(&af, err))
            goto out;
        printf("report written to %s\n", o->report_path);
    }
    rc = 0;
out:
    if (body)
        fclose(body);
    free(body_text);
    free(s.part);
    job_free(&j);
    return rc;
}

typedef struct eval_one {
    const cnnelm_model *m;
    const cnnelm_subset *test;
    cnnelm_progress *prog;
    uint64_t *confusion;
} eval_one;

static int eval_one_task(cnnelm_worker *w, int task, void *user, cnnelm_error *err)
{
    (void)task;
    eval_one *e = user;
    return cnnelm_evaluate(&w->net, e->m, e->test, e->confusion, e->prog, "test", err);
}

int cnnelm_run_eval(const cnnelm_run_options *o, cnnelm_error *err)
{
    job j;
    memset(&j, 0, sizeof j);
    cnnelm_progress_init(&j.prog, o->quiet);
    int rc = -1;
    double t0 = cnnelm_now();
    if (cnnelm_config_load(&j.cfg, o->config_path, o->overrides, o->n_overrides, err))
        goto out;
    if (cnnelm_model_load(&j.model, o->model_path, err))
        goto out;
    const cnnelm_arch *a = &j.model.arch;
    if (cnnelm_dataset_load_config(&j.test, &j.cfg, 1, a->classes, err))
        goto out;
    if (j.test.n == 0) {
        cnnelm_fail(err, "%s: no test set to evaluate on (data.test_images is empty)", j.cfg.path);
        goto out;
    }
    if (j.test.rows != a->in_h || j.test.cols != a->in_w) {
        cnnelm_fail(err, "%s: test images are %dx%d but model %s takes %dx%d inputs", j.cfg.path,
                    j.test.rows, j.test.cols, o->model_path, a->in_h, a->in_w);
        goto out;
    }
    j.cfg.n_workers = 1; /* evaluation runs on the first worker */
    if (cnnelm_pool_open(&j.pool, &j.cfg, a, err))
        goto out;
    j.pool_open = 1;
    j.t_load = cnnelm_now() - t0;
    int C = a->classes;
    j.confusion = calloc((size_t)C * C, sizeof *j.confusion);
    if (!j.confusion) {
        cnnelm_fail(err, "out of memory");
        goto out;
    }
    double te = cnnelm_now();
    cnnelm_subset test = { &j.test, NULL, j.test.n };
    eval_one e = { &j.model, &test, &j.prog, j.confusion };
    if (cnnelm_pool_run(&j.pool, 1, eval_one_task, &e, err))
        goto out;
    j.t_eval = cnnelm_now() - te;
    cnnelm_metrics_compute(j.confusion, C, &j.test_metrics);
    printf("test accuracy %.2f%% (%llu examples), kappa %.4f (standard error %.4f)\n",
           100 * j.test_metrics.accuracy, (unsigned long long)j.test_metrics.n, j.test_metrics.kappa,
           j.test_metrics.kappa_se);
    print_confusion(j.confusion, C);
    if (o->report_path) {
        cnnelm_atomic_file af;
        if (cnnelm_atomic_open(&af, o->report_path, err))
            goto out;
        cnnelm_json js;
        cnnelm_json_init(&js, af.f);
        cnnelm_json_object(&js, NULL);
        cnnelm_json_string(&js, "cnnelm_version", CNNELM_VERSION);
        cnnelm_json_string(&js, "command", "eval");
        cnnelm_json_string(&js, "config_file", j.cfg.path);
        cnnelm_json_string(&js, "model_file", o->model_path);
        json_model(&js, &j.model);
        cnnelm_json_string(&js, "device", j.pool.w[0].net.where);
        json_metrics(&js, "test", &j.test_metrics, j.confusion, C);
        cnnelm_json_object(&js, "timings");
        cnnelm_json_number(&js, "load_s", j.t_load);
        cnnelm_json_number(&js, "eval_s", j.t_eval);
        cnnelm_json_end(&js, '}');
        cnnelm_json_string(&js, "config", j.cfg.text);
        cnnelm_json_end(&js, '}');
        if (cnnelm_atomic_commit(&af, err))
            goto out;
        printf("report written to %s\n", o->report_path);
    }
    rc = 0;
out:
    job_free(&j);
    return rc;
}

typedef struct scan_ctx {
    int verbose, backends;
} scan_ctx;

static const char *kind_name(cnnelm_device_kind k)
{
    static const char *names[] = { "cpu", "gpu", "accelerator", "fpga", "other" };
    return (unsigned)k <= CNNELM_DEVICE_OTHER ? names[k] : "unknown";
}

static void list_plugin(const char *path, void *user)
{
    scan_ctx *s = user;
    cnnelm_plugin *p;
    cnnelm_error e;
    if (cnnelm_plugin_load_file(path, &p, &e) != 0) {
        printf("%s: unusable: %s\n", path, e.msg);
        return;
    }
    s->backends++;
    int n = 0;
    cnnelm_status st = p->ops->device_count(&n);
    printf("backend %s (%s, ABI %u.%u): %s\n", p->name, p->path, p->ops->abi_major,
           p->ops->abi_minor, p->ops->description ? p->ops->description : "");
    if (st != CNNELM_OK)
        printf("  cannot count devices: %s\n", cnnelm_status_name(st));
    else if (n == 0)
        printf("  no devices\n");
    for (int i = 0; i < n; i++) {
        cnnelm_device_info info;
        memset(&info, 0, sizeof info);
        if (p->ops->device_info(i, &info) != CNNELM_OK) {
            printf("  device %d: cannot describe it\n", i);
            continue;
        }
        info.name[sizeof info.name - 1] = info.vendor[sizeof info.vendor - 1] = '\0';
        info.driver[sizeof info.driver - 1] = '\0';
        printf("  device %d: %s [%s], vendor %s, %u compute units, %.1f GiB memory", i, info.name,
               kind_name(info.kind), info.vendor, info.compute_units,
               (double)info.memory_bytes / (1024.0 * 1024 * 1024));
        if (s->verbose && info.driver[0])
            printf(", driver %s", info.driver);
        printf("\n");
    }
    cnnelm_plugin_unload(p);
}

int cnnelm_run_devices(const char *plugin_path, int verbose, cnnelm_error *err)
{
    scan_ctx s = { verbose, 0 };
    const char *dirs[32];
    int nd = cnnelm_plugin_search_path(plugin_path, dirs, 32);
    if (verbose) {
        printf("plugin search path:\n");
        for (int i = 0; i < nd; i++)
            printf("  %s\n", dirs[i]);
    }
    int found = cnnelm_plugin_scan(plugin_path, list_plugin, &s);
    if (found == 0) {
        char looked[2048] = "";
        for (int i = 0; i < nd; i++) {
            size_t used = strlen(looked);
            snprintf(looked + used, sizeof looked - used, "%s%s", i ? ", " : "", dirs[i]);
        }
        return cnnelm_fail(err, "no backend plugins (libcnnelm-*.so) found in %s", looked);
    }
    return s.backends;
}
