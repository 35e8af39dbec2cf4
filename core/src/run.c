/* cnnelm jobs: train and eval as the command line runs them (config -> data -> backend ->
 * training -> evaluation -> model file and JSON report). */
#define _GNU_SOURCE /* open_memstream */
#include "cnnelm/run.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic_file.h"
#include "child.h"
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
#include "plugin_log.h"
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
    char **warnings;             /* every warning of the run, for the report */
    int n_warnings;
    const char *model_path;      /* train: -o, for the save on an interrupt */
} job;

/* A warning on stderr (even with --quiet) and in the report. */
static void job_warn(job *j, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void job_warn(job *j, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cnnelm_progress_warn(&j->prog, "%s", msg);
    char **nw = realloc(j->warnings, (size_t)(j->n_warnings + 1) * sizeof *nw);
    if (!nw)
        return;
    j->warnings = nw;
    if ((j->warnings[j->n_warnings] = strdup(msg)) != NULL)
        j->n_warnings++;
}

static void job_free(job *j)
{
    if (j->pool_open)
        cnnelm_pool_close(&j->pool);
    cnnelm_model_free(&j->model);
    cnnelm_dataset_free(&j->train);
    cnnelm_dataset_free(&j->test);
    free(j->confusion);
    for (int i = 0; i < j->n_warnings; i++)
        free(j->warnings[i]);
    free(j->warnings);
    cnnelm_config_free(&j->cfg);
    cnnelm_progress_destroy(&j->prog);
}

/* Rows carry the class names when there are any (columns keep the numbers: names are too wide). */
static void print_confusion(const uint64_t *confusion, int classes, char *const *names)
{
    int w = 0; /* width of the name column, at most 16 */
    for (int r = 0; names && r < classes; r++) {
        int n = names[r] ? (int)strlen(names[r]) : 0;
        w = n > w ? (n > 16 ? 16 : n) : w;
    }
    printf("confusion matrix (rows: true class, columns: predicted class):\n");
    printf("      %*s", w ? w + 1 : 0, "");
    for (int c = 0; c < classes; c++)
        printf(" %6d", c);
    printf("\n");
    for (int r = 0; r < classes; r++) {
        if (w)
            printf("  %3d %-*.*s:", r, w, w, names[r] ? names[r] : "");
        else
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

/* ---- class names and per-class figures (issue 13) ---- */

/* The name of class k, or "" without names. */
static const char *class_name(char *const *names, int k)
{
    return names && names[k] ? names[k] : "";
}

/* Per class: name, precision, recall, F1 and support, under the confusion matrix. */
static void print_class_metrics(const uint64_t *confusion, int classes, char *const *names)
{
    cnnelm_class_metrics *pc = calloc((size_t)classes, sizeof *pc);
    if (!pc)
        return;
    cnnelm_metrics_per_class(confusion, classes, pc);
    printf("per class:  class  precision  recall      F1  support  name\n");
    for (int k = 0; k < classes; k++)
        printf("            %5d  %9.4f  %6.4f  %6.4f  %7llu  %s\n", k, pc[k].precision, pc[k].recall,
               pc[k].f1, (unsigned long long)pc[k].support, class_name(names, k));
    free(pc);
}

/* "class_names" and "per_class" ({name, precision, recall, f1, support} per class) members. */
static void json_class_metrics(cnnelm_json *js, const uint64_t *confusion, int classes,
                               char *const *names)
{
    if (names) {
        cnnelm_json_array(js, "class_names");
        for (int k = 0; k < classes; k++)
            cnnelm_json_string(js, NULL, class_name(names, k));
        cnnelm_json_end(js, ']');
    }
    cnnelm_class_metrics *pc = confusion ? calloc((size_t)classes, sizeof *pc) : NULL;
    if (!pc)
        return;
    cnnelm_metrics_per_class(confusion, classes, pc);
    cnnelm_json_array(js, "per_class");
    for (int k = 0; k < classes; k++) {
        cnnelm_json_object(js, NULL);
        cnnelm_json_int(js, "class", k);
        if (names)
            cnnelm_json_string(js, "name", class_name(names, k));
        cnnelm_json_number(js, "precision", pc[k].precision);
        cnnelm_json_number(js, "recall", pc[k].recall);
        cnnelm_json_number(js, "f1", pc[k].f1);
        cnnelm_json_int(js, "support", (long long)pc[k].support);
        cnnelm_json_end(js, '}');
    }
    cnnelm_json_end(js, ']');
    free(pc);
}

/* "classes": the classes a partition's training examples hold, "class_examples": how many of
 * each (label-skew and by-source splits are non-IID: each partition sees a few classes). */
static void json_partition_classes(cnnelm_json *js, const cnnelm_part_result *r, int classes)
{
    cnnelm_json_array(js, "classes");
    for (int c = 0; c < classes; c++)
        if (r->class_examples[c])
            cnnelm_json_int(js, NULL, c);
    cnnelm_json_end(js, ']');
    cnnelm_json_array(js, "class_examples");
    for (int c = 0; c < classes; c++)
        cnnelm_json_int(js, NULL, (long long)r->class_examples[c]);
    cnnelm_json_end(js, ']');
}

/* What a trained model file records beyond the weights: partitions, reduce, class names. */
static int model_set_provenance(cnnelm_model *m, int partitions, const cnnelm_config *c,
                                const cnnelm_dataset *train, cnnelm_error *err)
{
    m->partitions = (uint32_t)partitions;
    m->reduce = partitions > 1 ? 1u + (uint32_t)c->train.reduce : 0;
    return cnnelm_model_set_class_names(m, train->class_names, err);
}

/* Training and test sets that both name their classes must name them alike (two image
 * folders whose subfolders differ would otherwise give labels that silently disagree). */
static int check_class_names(const cnnelm_dataset *train, const cnnelm_dataset *test, const char *cfg_path,
                             cnnelm_error *err)
{
    if (!train->class_names || !test->class_names || test->n == 0)
        return 0;
    for (int k = 0; k < test->classes && k < train->classes; k++)
        if (strcmp(train->class_names[k], test->class_names[k]) != 0)
            return cnnelm_fail(err, "%s: test class %d is \"%s\" but training class %d is \"%s\": the "
                               "training and test sets must have the same classes", cfg_path, k,
                               test->class_names[k], k, train->class_names[k]);
    if (test->classes > train->classes)
        return cnnelm_fail(err, "%s: the test set has %d classes, the training set %d", cfg_path,
                           test->classes, train->classes);
    return 0;
}

/* lambda grows the other way from scikit-learn's alpha: a tiny one is almost no fit at all. */
static void warn_small_lambda(const cnnelm_config *c, cnnelm_progress *prog)
{
    if (c->model.lambda < 1e-6)
        cnnelm_progress_note(prog, "warning: model.lambda = %g is tiny: larger lambda = less "
                             "regularisation (beta = (I/lambda + U)^-1 V), so this model barely "
                             "fits the data; try 1 to 1e4", c->model.lambda);
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

/* The model and the report can be written (regular files or new ones, in writable
 * directories): checked up front, so a long run's result is not lost at the end. */
static int probe_outputs(const cnnelm_run_options *o, cnnelm_error *err)
{
    if (cnnelm_output_probe(o->model_path, err))
        return cnnelm_fail_prefix(err, "-o");
    if (o->report_path && cnnelm_output_probe(o->report_path, err))
        return cnnelm_fail_prefix(err, "--report");
    return 0;
}

/* The final save: when -o cannot be written after all (a full disk, a directory gone), the
 * trained model is not lost: it goes beside the checkpoints or into $TMPDIR, and the error
 * names where. */
static int save_model_keeping(const cnnelm_model *m, const char *path, const char *checkpoint_dir,
                              cnnelm_error *err)
{
    if (cnnelm_model_save(m, path, err) == 0)
        return 0;
    char first[sizeof err->msg];
    snprintf(first, sizeof first, "%s", err->msg);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    const char *tmpdir = getenv("TMPDIR");
    const char *dirs[2] = { checkpoint_dir, tmpdir && *tmpdir ? tmpdir : "/tmp" };
    for (int i = 0; i < 2; i++) {
        if (!dirs[i] || !*dirs[i])
            continue;
        char alt[CNNELM_PATH_MAX + 64];
        snprintf(alt, sizeof alt, "%s/cnnelm-unsaved-%ld-%s", dirs[i], (long)getpid(), base);
        cnnelm_error e2;
        if (cnnelm_model_save(m, alt, &e2) == 0)
            return cnnelm_fail(err, "%s; the trained model was saved to %s instead", first, alt);
    }
    return cnnelm_fail(err, "%s; saving it beside the checkpoints or in $TMPDIR failed too", first);
}

/* ---- train: runs (trials x folds) of Map + Reduce, a table, the model saved ---- */

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

/* One run's line in the table: which run, and its reduced model's result. */
typedef struct run_row {
    int trial, fold;
    cnnelm_metrics reduced;
    int has_test;
} run_row;

typedef struct train_summary {
    int runs, k;
    row_stats *part;    /* k */
    row_stats reduced, single;
    run_row *run;       /* runs (the estimating runs, not the final all-data fit of k-fold) */
    int n_run;
    int final_all_data; /* k-fold: the saved model was trained afterwards on all the data */
    size_t final_examples;
} train_summary;

/* Tables with more partitions than this list min / median / max and the worst ones instead. */
#define TABLE_MAX_PARTITIONS 20
#define TABLE_WORST 3

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

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Many partitions: their mean accuracies as min / median / max and the worst few by number. */
static void print_partition_summary(const train_summary *s)
{
    int k = s->k;
    double *acc = malloc((size_t)k * sizeof *acc);
    int *worst = malloc((size_t)k * sizeof *worst);
    if (!acc || !worst) {
        free(acc);
        free(worst);
        return;
    }
    int n = 0;
    for (int p = 0; p < k; p++)
        if (s->part[p].n)
            acc[n++] = mean_of(s->part[p].acc_sum, s->part[p].n);
    if (n == 0) {
        free(acc);
        free(worst);
        return;
    }
    qsort(acc, (size_t)n, sizeof *acc, cmp_double);
    double median = n % 2 ? acc[n / 2] : 0.5 * (acc[n / 2 - 1] + acc[n / 2]);
    printf("  %d partitions (listed in the JSON report): accuracy min %.2f%%, median %.2f%%, max %.2f%%\n",
           k, 100 * acc[0], 100 * median, 100 * acc[n - 1]);
    /* the worst ones, lowest first (ties by partition number) */
    int nw = 0;
    for (int p = 0; p < k; p++)
        if (s->part[p].n)
            worst[nw++] = p;
    for (int a = 0; a < nw && a < TABLE_WORST; a++)
        for (int b = a + 1; b < nw; b++)
            if (mean_of(s->part[worst[b]].acc_sum, s->part[worst[b]].n) <
                mean_of(s->part[worst[a]].acc_sum, s->part[worst[a]].n)) {
                int t = worst[a];
                worst[a] = worst[b];
                worst[b] = t;
            }
    char name[64];
    for (int a = 0; a < nw && a < TABLE_WORST; a++) {
        snprintf(name, sizeof name, "worst: partition %d", worst[a] + 1);
        print_row(name, &s->part[worst[a]]);
    }
    free(acc);
    free(worst);
}

static void print_table(const train_summary *s, const cnnelm_config *c)
{
    int cv = c->train.folds > 1;
    printf("%s results (accuracy, Cohen's kappa%s):\n",
           cv ? "cross-validation" : "test",
           s->runs > 1 ? (cv ? "; mean +- standard deviation over the folds"
                             : "; mean +- standard deviation over the runs") : "");
    char name[64];
    if (s->k > TABLE_MAX_PARTITIONS)
        print_partition_summary(s);
    else if (s->k > 1)
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
    /* each run (fold) on its own line, so the spread behind the +- is visible */
    if (s->n_run > 1 && s->n_run <= TABLE_MAX_PARTITIONS)
        for (int i = 0; i < s->n_run; i++) {
            const run_row *r = &s->run[i];
            if (!r->has_test)
                continue;
            if (cv && c->train.trials > 1)
                snprintf(name, sizeof name, "  trial %d, fold %d", r->trial, r->fold);
            else if (cv)
                snprintf(name, sizeof name, "  fold %d", r->fold);
            else
                snprintf(name, sizeof name, "  trial %d", r->trial);
            printf("  %-28s %8.2f%%   %7.4f\n", name, 100 * r->reduced.accuracy, r->reduced.kappa);
        }
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
    if (r->worker >= 0 && r->worker < pool->n) {
        char label[64];
        cnnelm_json_string(js, "device", pool->w[r->worker].net.where);
        cnnelm_worker_label(pool, &pool->w[r->worker], label, sizeof label);
        cnnelm_json_string(js, "worker_label", label);
    }
    cnnelm_json_bool(js, "resumed", r->resumed);
    cnnelm_json_number(js, "seconds", r->seconds);
    if (r->test.n)
        json_metrics(js, "test", &r->test, NULL, 0);
    if (k > 1 || r->log.n > 1 || r->log.diverged) /* a run that diverged at once has only iteration 0 */
        json_series(js, &r->log);
    json_partition_classes(js, r, pool->n > 0 ? pool->w[0].net.arch.classes : 0);
    json_lambda(js, &r->log.lambda_choice);
    cnnelm_json_end(js, '}');
}

/* The work of one experiment in forward-pass units and in images, for the whole-run ETA; it
 * follows what cnnelm_experiment_run and cnnelm_train_model do. `share`: the fraction of the
 * partitions this process trains (MPI). */
static void experiment_work(const cnnelm_config *c, int k, size_t n_train, size_t n_test, int rank0,
                            int single, double share, double *forward, double *tune)
{
    double E = c->train.iterations, N = (double)n_train, T = (double)n_test;
    /* a model: the iteration-0 fit, with fine-tuning its training (and test, k = 1) accuracy,
     * then per iteration the fine-tuning pass, the re-fit and (k = 1) the test accuracy */
    double fit = N * (1 + (E > 0) + E), tuning = E * N;
    double series_test = E > 0 ? T * (1 + E) : 0;
    double fwd = fit * share + (k == 1 ? series_test : T * k * share);
    if (k > 1 && c->train.reduce == CNNELM_REDUCE_REFIT)
        fwd += N * share;
    if (rank0)
        fwd += T; /* the reduced model's evaluation */
    double ft = tuning * share;
    if (rank0 && single && k > 1) {
        fwd += fit + series_test + T;
        ft += tuning;
    }
    *forward = fwd;
    *tune = ft;
}

/* Divergence as a sentence: "at iteration N: why; what to try" from the log's message. */
static void divergence_text(const cnnelm_train_log *log, char *out, size_t cap)
{
    int it = -1, used = 0;
    if (sscanf(log->divergence, "iteration %d: %n", &it, &used) == 1 && used > 0)
        snprintf(out, cap, "at iteration %d: %s", it, log->divergence + used);
    else
        snprintf(out, cap, "%s", log->divergence);
}

/* Warnings a user must see about one run, in every mode: divergence of any partition or of the
 * single model, and a reduced model worse than every partition. Returns the latter (for the
 * report). */
static int check_experiment(job *j, const cnnelm_experiment *x, const char *run)
{
    const cnnelm_config *c = &j->cfg;
    char why[700];
    for (int p = 0; p < x->k; p++) {
        const cnnelm_part_result *r = &x->parts[p];
        if (!r->log.diverged)
            continue;
        divergence_text(&r->log, why, sizeof why);
        if (x->k == 1)
            job_warn(j, "%sfine-tuning diverged %s; the saved model is iteration %u, the last good one",
                     run, why, r->model.iterations);
        else
            job_warn(j, "%spartition %d/%d diverged %s; its model is iteration %u, the last good one, "
                     "and goes into the reduced model as such", run, p + 1, x->k, why, r->model.iterations);
    }
    if (x->has_single && x->single.log.diverged) {
        divergence_text(&x->single.log, why, sizeof why);
        job_warn(j, "%sthe single model diverged %s; its model is iteration %u, the last good one", run, why,
                 x->single.model.iterations);
    }
    if (x->k < 2 || x->test.n == 0)
        return 0;
    int lowest = 0;
    for (int p = 1; p < x->k; p++)
        if (x->parts[p].test.accuracy < x->parts[lowest].test.accuracy)
            lowest = p;
    if (!(x->reduced_test.accuracy < x->parts[lowest].test.accuracy))
        return 0;
    const char *hint = c->train.reduce == CNNELM_REDUCE_REFIT
        ? "the averaged kernels fit none of the partitions; try fewer train.iterations, a smaller "
          "train.learning_rate or fewer partitions"
        : c->train.iterations > 0
            ? "partitions fine-tuned apart learn different hidden units, so the mean of their beta "
              "matches none of them; try train.reduce = \"refit\" (beta solved once on the averaged "
              "kernels)"
            : "the mean of beta solved per partition is not the solution for all the data; try "
              "train.reduce = \"refit\" (exactly the single model without fine-tuning)";
    job_warn(j, "%sthe reduced model (%s) has %s accuracy %.2f%%, worse than every partition (the lowest, "
             "partition %d, has %.2f%%): %s", run, cnnelm_reduce_name(c->train.reduce),
             c->train.folds > 1 ? "validation" : "test", 100 * x->reduced_test.accuracy, lowest + 1,
             100 * x->parts[lowest].test.accuracy, hint);
    return 1;
}

static void json_run(job *j, cnnelm_json *js, const cnnelm_experiment *x, int trial, int fold,
                     uint64_t seed, int worse)
{
    cnnelm_json_object(js, NULL);
    cnnelm_json_int(js, "trial", trial);
    if (fold > 0)
        cnnelm_json_int(js, "fold", fold);
    if (fold < 0)
        cnnelm_json_bool(js, "all_training_data", 1); /* k-fold's final model */
    cnnelm_json_int(js, "seed", (long long)seed);
    cnnelm_json_int(js, "training_examples", (long long)x->train.n);
    cnnelm_json_int(js, "test_examples", (long long)x->test.n);
    cnnelm_json_number(js, "map_seconds", x->map_seconds);
    cnnelm_json_number(js, "reduce_seconds", x->reduce_seconds);
    cnnelm_json_array(js, "partitions");
    for (int p = 0; p < x->k; p++)
        json_part(js, &x->parts[p], &j->pool, x->k);
    cnnelm_json_end(js, ']');
    if (x->test.n)
        json_metrics(js, "reduced", &x->reduced_test, NULL, 0);
    cnnelm_json_bool(js, "reduced_worse_than_every_partition", worse);
    json_lambda(js, &x->reduced_lambda); /* refit's choice on the summed U, V */
    if (x->has_single) {
        cnnelm_json_object(js, "single");
        if (x->single.test.n)
            json_metrics(js, "test", &x->single.test, NULL, 0);
        json_series(js, &x->single.log);
        json_lambda(js, &x->single.log.lambda_choice);
        cnnelm_json_end(js, '}');
    }
    cnnelm_json_end(js, '}');
}

/* Keeps x's reduced model as the one saved, with its test results. */
static int keep_model(job *j, const cnnelm_experiment *x, int classes, cnnelm_error *err)
{
    if (cnnelm_model_copy(&j->model, &x->reduced, err))
        return -1;
    j->test_metrics = x->reduced_test;
    if (x->test.n) {
        j->confusion = malloc((size_t)classes * classes * sizeof *j->confusion);
        if (!j->confusion)
            return cnnelm_fail(err, "out of memory");
        memcpy(j->confusion, x->reduced_confusion, (size_t)classes * classes * sizeof *j->confusion);
    }
    return 0;
}

/* The work of the whole run, set on the progress before the first experiment. */
static void set_run_work(job *j, int folds)
{
    const cnnelm_config *c = &j->cfg;
    int k = c->train.partitioning == CNNELM_PART_BY_SOURCE ? j->train.n_sources : c->train.partitions;
    if (k < 1)
        k = 1;
    double share = 1;
    if (j->cluster && j->cluster->size > 1) {
        /* each rank follows its own partitions (rank 0's share stands for the whole job) */
        int mine = 0;
        for (int p = 0; p < k; p++)
            mine += cnnelm_cluster_owner(j->cluster, p) == j->rank;
        share = (double)mine / k;
    }
    double fwd = 0, tune = 0, f1, t1;
    int rank0 = j->rank == 0;
    for (int t = 0; t < c->train.trials; t++) {
        if (folds > 1) {
            size_t held = j->train.n / (size_t)folds;
            experiment_work(c, k, j->train.n - held, held, rank0, c->train.compare_single, share, &f1, &t1);
            fwd += folds * f1;
            tune += folds * t1;
        } else {
            experiment_work(c, k, j->train.n, j->test.n, rank0, c->train.compare_single, share, &f1, &t1);
            fwd += f1;
            tune += t1;
        }
    }
    if (folds > 1) { /* the final model on all the data, no test set, no single model */
        experiment_work(c, k, j->train.n, 0, rank0, 0, share, &f1, &t1);
        fwd += f1;
        tune += t1;
    }
    cnnelm_train_params tp = cnnelm_train_params_from_config(c);
    cnnelm_progress_set_run(&j->prog, fwd, tune, cnnelm_finetune_weight(&tp, j->pool.w[0].net.chunk));
}

/* ---- an interrupt (SIGINT, SIGTERM): what is complete is kept, and the error says what ---- */

static const char *signal_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "a signal";
}

/* After an experiment stopped by an interrupt: with one partition, its last complete iteration
 * is saved to -o when this run's model is the one saved (`saved_run`); with several, the error
 * names the finished (checkpointed) partitions. Always returns -1 with err set. */
static int interrupted_run(job *j, cnnelm_experiment *x, const char *run, int saved_run, cnnelm_error *err)
{
    const cnnelm_config *c = &j->cfg;
    const char *sig = signal_name(cnnelm_interrupted());
    cnnelm_progress_finish(&j->prog);
    if (j->rank != 0 || !x->parts || x->k < 1)
        return cnnelm_fail(err, "%sinterrupted by %s: nothing was saved", run, sig);
    if (x->k == 1) {
        cnnelm_part_result *r = &x->parts[0];
        int E = c->train.iterations;
        int finished = r->log.n > 0 && !r->log.interrupted; /* stopped in the evaluation after it */
        /* without fine-tuning a run is one pass: no partial output, it is as quick to run again */
        if (!saved_run || E == 0 || !(finished || r->log.kept))
            return cnnelm_fail(err, "%sinterrupted by %s %s: nothing was saved to %s", run, sig,
                               finished ? "after training (during the evaluation)"
                               : r->log.interrupted && r->log.interrupted_at == 0 ? "in iteration 0 (the ELM fit)"
                                                                                  : "during training",
                               j->model_path);
        cnnelm_error save_err;
        if (model_set_provenance(&r->model, 1, c, &j->train, &save_err) ||
            save_model_keeping(&r->model, j->model_path, c->train.checkpoint_dir, &save_err))
            return cnnelm_fail(err, "%sinterrupted by %s, and saving the model of iteration %u failed: %s", run,
                               sig, r->model.iterations, save_err.msg);
        if (finished)
            return cnnelm_fail(err, "%sinterrupted by %s after training (%d of %d iterations): the trained "
                               "model was saved to %s (not evaluated, no report)", run, sig,
                               r->model.iterations, E, j->model_path);
        if (r->log.interrupted_at == 0)
            return cnnelm_fail(err, "%sinterrupted by %s while measuring iteration 0: the ELM model of "
                               "iteration 0 was saved to %s (no report)", run, sig, j->model_path);
        return cnnelm_fail(err, "%sinterrupted at iteration %d of %d (%s): the model of iteration %u was "
                           "saved to %s (no report)", run, r->log.interrupted_at, E, sig, r->model.iterations,
                           j->model_path);
    }
    char list[512] = "";
    size_t used = 0;
    int n_done = 0;
    for (int p = 0; p < x->k; p++) {
        const cnnelm_part_result *r = &x->parts[p];
        if (!(r->resumed || (r->log.n > 0 && !r->log.interrupted)) || r->rank != 0)
            continue;
        n_done++;
        if (used < sizeof list - 8)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%d", n_done > 1 ? ", " : "", p + 1);
        else if (used < sizeof list - 1)
            used += (size_t)snprintf(list + used, sizeof list - used, "...");
    }
    if (n_done == 0)
        return cnnelm_fail(err, "%sinterrupted by %s: no partition of %d was finished; nothing was saved to %s",
                           run, sig, x->k, j->model_path);
    if (!c->train.checkpoint_dir[0])
        return cnnelm_fail(err, "%sinterrupted by %s: partition%s %s of %d %s finished, but without "
                           "train.checkpoint_dir %s not kept; nothing was saved to %s", run, sig,
                           n_done == 1 ? "" : "s", list, x->k, n_done == 1 ? "was" : "were",
                           n_done == 1 ? "it is" : "they are", j->model_path);
    return cnnelm_fail(err, "%sinterrupted by %s: partition%s %s of %d %s finished and checkpointed in %s; "
                       "the same command with --resume continues with the others; nothing was saved to %s",
                       run, sig, n_done == 1 ? "" : "s", list, x->k, n_done == 1 ? "was" : "were",
                       c->train.checkpoint_dir, j->model_path);
}

static int run_experiments(job *j, const cnnelm_arch *arch, train_summary *s, cnnelm_json *js,
                           cnnelm_error *err)
{
    const cnnelm_config *c = &j->cfg;
    int folds = c->train.folds > 1 ? c->train.folds : 1;
    int runs = c->train.trials * folds;
    s->runs = runs;
    s->run = calloc((size_t)runs, sizeof *s->run);
    if (!s->run)
        return cnnelm_fail(err, "out of memory");
    set_run_work(j, folds);
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
            char run[96] = "";
            int r_no = t * folds + f + 1;
            if (folds > 1 && c->train.trials > 1)
                snprintf(run, sizeof run, "run %d/%d (trial %d, fold %d/%d): ", r_no, runs, t + 1, f + 1, folds);
            else if (folds > 1)
                snprintf(run, sizeof run, "fold %d/%d: ", f + 1, folds);
            else if (runs > 1)
                snprintf(run, sizeof run, "trial %d/%d: ", t + 1, runs);
            if (runs > 1)
                cnnelm_progress_note(&j->prog, "%sseed %llu, %zu training examples, %zu %s examples", run,
                                     (unsigned long long)seed, x.train.n, x.test.n,
                                     folds > 1 ? "validation" : "test");
            rc = cnnelm_experiment_run(&x, arch, err);
            if (rc != 0 && cnnelm_interrupted())
                rc = interrupted_run(j, &x, run, t == 0 && f == 0 && folds == 1, err);
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
                int worse = check_experiment(j, &x, run);
                for (int p = 0; p < x.k && p < s->k; p++)
                    if (x.test.n)
                        row_add(&s->part[p], &x.parts[p].test);
                if (x.test.n)
                    row_add(&s->reduced, &x.reduced_test);
                if (x.has_single && x.test.n)
                    row_add(&s->single, &x.single.test);
                s->run[s->n_run++] = (run_row){ t + 1, folds > 1 ? f + 1 : 0, x.reduced_test, x.test.n > 0 };
                if (js)
                    json_run(j, js, &x, t + 1, folds > 1 ? f + 1 : 0, seed, worse);
                /* the first run's reduced model is saved, except with k-fold (below) */
                if (t == 0 && f == 0 && folds == 1)
                    rc = keep_model(j, &x, arch->classes, err);
            }
            cnnelm_experiment_free(&x);
        }
        free(train_rows);
        cnnelm_partitions_free(&fold_parts);
    }
    /* k-fold: the folds estimate; the model kept is trained on all the training data */
    if (rc == 0 && folds > 1) {
        /* a shallow copy (only read, its text never freed), on the heap: the config is large */
        cnnelm_config *final_cfg = malloc(sizeof *final_cfg);
        if (!final_cfg)
            return cnnelm_fail(err, "out of memory");
        *final_cfg = *c;
        final_cfg->train.compare_single = 0;
        cnnelm_experiment x;
        memset(&x, 0, sizeof x);
        x.cfg = final_cfg;
        x.seed = c->train.seed;
        x.prog = &j->prog;
        x.pool = &j->pool;
        x.cluster = j->cluster;
        x.fold = 0;
        x.resume = j->resume;
        x.rank_prefix = j->rank_prefix;
        x.train = (cnnelm_subset){ &j->train, NULL, j->train.n };
        x.test = (cnnelm_subset){ &j->train, NULL, 0 };
        cnnelm_progress_note(&j->prog, "final model: trained on all %zu training examples, seed %llu (the %d "
                             "folds above only estimate its accuracy)", j->train.n,
                             (unsigned long long)x.seed, folds);
        rc = cnnelm_experiment_run(&x, arch, err);
        if (rc != 0 && cnnelm_interrupted())
            rc = interrupted_run(j, &x, "final model: ", 1, err);
        if (rc == 0 && j->rank == 0) {
            check_experiment(j, &x, "final model: ");
            if (js)
                json_run(j, js, &x, 1, -1, x.seed, 0);
            rc = keep_model(j, &x, arch->classes, err);
            s->final_all_data = 1;
            s->final_examples = j->train.n;
        }
        cnnelm_experiment_free(&x);
        free(final_cfg);
    }
    if (js)
        cnnelm_json_end(js, ']');
    return rc;
}

/* ---- chance level (issue 11): a model that predicts no better than guessing says so ---- */

#define CHANCE_KAPPA 0.05  /* Cohen's kappa below this: at chance level */
#define CHANCE_LISTED 16

typedef struct chance_list {
    int n;                              /* models at chance level */
    char name[CHANCE_LISTED][48];       /* the first few, for the report */
    double accuracy[CHANCE_LISTED], kappa[CHANCE_LISTED];
} chance_list;

static void chance_add(chance_list *cl, const char *name, const row_stats *r)
{
    if (cl->n < CHANCE_LISTED) {
        snprintf(cl->name[cl->n], sizeof cl->name[0], "%s", name);
        cl->accuracy[cl->n] = mean_of(r->acc_sum, r->n);
        cl->kappa[cl->n] = mean_of(r->kappa_sum, r->n);
    }
    cl->n++;
}

/* Warns (job_warn: stderr even with --quiet, and the report's warnings) about every partition model and the reduced model whose
 * mean kappa is at chance level, with the likely cause and the fix; fills `cl` for the report
 * and for --strict. */
static void warn_chance_level(job *j, const train_summary *s, const cnnelm_config *c,
                              const cnnelm_pool *pool, chance_list *cl)
{
    memset(cl, 0, sizeof *cl);
    char devices[512] = "";
    for (int w = 0; w < pool->n; w++) {
        size_t len = strlen(devices);
        snprintf(devices + len, sizeof devices - len, "%s%s", w ? ", " : "", pool->w[w].net.where);
    }
    int parts_at_chance = 0;
    char name[48];
    for (int p = 0; p < s->k && s->k > 1; p++) {
        const row_stats *r = &s->part[p];
        if (r->n == 0 || !(mean_of(r->kappa_sum, r->n) < CHANCE_KAPPA))
            continue;
        snprintf(name, sizeof name, "partition %d", p + 1);
        chance_add(cl, name, r);
        parts_at_chance++;
        job_warn(j, "%s is at chance level (accuracy %.2f%%, kappa %.4f): it predicts "
                "no better than guessing. Likely cause: a backend op that returns without writing its "
                "output or computes wrong results, or fine-tuning that diverged; run `cnnelm plugin-check` "
                "on the workers' plugins (%s), or lower train.learning_rate", name,
                100 * mean_of(r->acc_sum, r->n), mean_of(r->kappa_sum, r->n), devices);
    }
    const row_stats *r = &s->reduced;
    if (r->n > 0 && mean_of(r->kappa_sum, r->n) < CHANCE_KAPPA) {
        if (s->k > 1)
            snprintf(name, sizeof name, "reduced model (%s)", cnnelm_reduce_name(c->train.reduce));
        else
            snprintf(name, sizeof name, "model");
        chance_add(cl, name, r);
        if (s->k > 1 && parts_at_chance < s->k)
            job_warn(j, "the %s is at chance level (accuracy %.2f%%, kappa %.4f) "
                    "although partitions are not: their models are too different to combine this way "
                    "(non-IID partitions?); try train.reduce = \"refit\"", name,
                    100 * mean_of(r->acc_sum, r->n), mean_of(r->kappa_sum, r->n));
        else
            job_warn(j, "the %s is at chance level (accuracy %.2f%%, kappa %.4f): it "
                    "predicts no better than guessing. Likely cause: a backend op that returns without "
                    "writing its output or computes wrong results (run `cnnelm plugin-check` on the "
                    "workers' plugins: %s), fine-tuning that diverged (lower train.learning_rate), or labels "
                    "that do not belong to the images (check data.train_labels)", name,
                    100 * mean_of(r->acc_sum, r->n), mean_of(r->kappa_sum, r->n), devices);
    }
}

static void json_chance_level(cnnelm_json *js, const chance_list *cl)
{
    cnnelm_json_object(js, "chance_level");
    cnnelm_json_number(js, "kappa_below", CHANCE_KAPPA);
    cnnelm_json_int(js, "models", cl->n);
    cnnelm_json_array(js, "listed");
    for (int i = 0; i < cl->n && i < CHANCE_LISTED; i++) {
        cnnelm_json_object(js, NULL);
        cnnelm_json_string(js, "model", cl->name[i]);
        cnnelm_json_number(js, "accuracy", cl->accuracy[i]);
        cnnelm_json_number(js, "kappa", cl->kappa[i]);
        cnnelm_json_end(js, '}');
    }
    cnnelm_json_end(js, ']');
    cnnelm_json_end(js, '}');
}

static void note_line(void *user, const char *line)
{
    cnnelm_progress_note(user, "%s", line);
}

int cnnelm_run_interrupted(void)
{
    return cnnelm_interrupted();
}

int cnnelm_run_train(const cnnelm_run_options *o, cnnelm_error *err)
{
    job j;
    memset(&j, 0, sizeof j);
    j.cluster = o->cluster;
    j.rank = o->cluster ? o->cluster->rank : 0;
    j.resume = o->resume;
    j.model_path = o->model_path;
    /* from here a first SIGINT/SIGTERM stops training between chunks, and what is complete is
     * saved (see interrupted_run); a second one ends the process at once */
    cnnelm_interrupt_catch();
    if (j.rank != 0)
        snprintf(j.rank_prefix, sizeof j.rank_prefix, "rank %d: ", j.rank);
    cnnelm_progress_init(&j.prog, o->quiet);
    if (j.rank != 0) {
        /* other ranks log plain lines with their prefix; rank 0's live line is the job's */
        if (j.prog.mode == CNNELM_PROGRESS_TTY)
            j.prog.mode = CNNELM_PROGRESS_LINES;
        snprintf(j.prog.prefix, sizeof j.prog.prefix, "%s", j.rank_prefix);
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
    if (j.rank == 0 && probe_outputs(o, err)) /* before a long run, not after it */
        goto out;
    const cnnelm_config *c = &j.cfg;
    if (o->resume && !c->train.checkpoint_dir[0]) {
        cnnelm_fail(err, "--resume reuses partitions saved in train.checkpoint_dir, which is not set "
                    "(in %s or with -s train.checkpoint_dir=\"DIR\")", c->path);
        goto out;
    }
    cnnelm_progress_begin(&j.prog, "load data", 0);
    if (cnnelm_dataset_load_config(&j.train, c, 0, 256, err))
        goto out;
    if (j.train.classes < 2) { /* the labels are the cause, not model.layers */
        cnnelm_fail(err, "%s: the training labels have a single class (every label is %d): a "
                    "classifier needs at least 2", c->data.n_sources ? c->path : c->data.train_labels,
                    j.train.n ? j.train.labels[0] : 0);
        goto out;
    }
    cnnelm_arch arch;
    warn_small_lambda(c, &j.prog);
    if (cnnelm_arch_init(&arch, c->model.layers, c->model.kernel, j.train.channels > 0 ? j.train.channels : 1,
                         j.train.rows, j.train.cols,
                         j.train.classes, c->model.activation, c->model.pooling,
                         c->model.elm_activation, err)) {
        cnnelm_fail_prefix(err, "%s: model.layers", c->path);
        goto out;
    }
    if (j.rank == 0 && c->train.partitions > 1 && c->train.partitioning != CNNELM_PART_BY_SOURCE &&
        j.train.n / (size_t)c->train.partitions < (size_t)arch.hidden)
        fprintf(stderr, "cnnelm: warning: train.partitions = %d leaves about %zu training examples per "
                "partition, fewer than the model's %d hidden units: each partition's ELM solve rests on "
                "lambda alone\n", c->train.partitions, j.train.n / (size_t)c->train.partitions,
                arch.hidden);
    /* every rank evaluates the partitions it trains, so every rank reads the test set */
    if (c->train.folds <= 1 && cnnelm_dataset_load_config(&j.test, c, 1, arch.classes, err))
        goto out;
    if (check_class_names(&j.train, &j.test, c->path, err))
        goto out;
    if (j.test.n && (j.test.rows != j.train.rows || j.test.cols != j.train.cols ||
                     cnnelm_dataset_example_bytes(&j.test) != cnnelm_dataset_example_bytes(&j.train))) {
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
    if (c->train.checkpoint_dir[0]) {
        char probe[CNNELM_PATH_MAX + 16];
        snprintf(probe, sizeof probe, "%s/probe", c->train.checkpoint_dir);
        if (cnnelm_output_probe(probe, err)) {
            cnnelm_fail_prefix(err, "%s: train.checkpoint_dir", c->path);
            goto out;
        }
    }
    cnnelm_plugin_log_begin(o->verbose, c->cache_dir);
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
    cnnelm_progress_finish(&j.prog); /* stdout's results must not land on the live line */
    j.t_train = cnnelm_now() - tt;
    cnnelm_pool_report_fallbacks(&j.pool, note_line, &j.prog);
    if (j.rank != 0) { /* rank 0 alone writes the model and the report */
        rc = 0;
        goto out;
    }
    if (model_set_provenance(&j.model, s.k, c, &j.train, err) ||
        save_model_keeping(&j.model, o->model_path, c->train.checkpoint_dir, err))
        goto out;
    chance_list chance;
    memset(&chance, 0, sizeof chance);
    if (j.test.n || c->train.folds > 1) {
        print_table(&s, c);
        if (s.final_all_data)
            printf("saved model: trained on all %zu training examples after the %d folds (their "
                   "results above estimate its accuracy)\n", s.final_examples, c->train.folds);
        warn_chance_level(&j, &s, c, &j.pool, &chance);
        if (j.confusion) {
            printf("%s: test accuracy %.2f%% (%llu examples), kappa %.4f (standard error %.4f)\n",
                   s.runs > 1 ? (s.k > 1 ? "first run's reduced model" : "first run's model")
                              : (s.k > 1 ? "reduced model" : "model"), 100 * j.test_metrics.accuracy,
                   (unsigned long long)j.test_metrics.n, j.test_metrics.kappa, j.test_metrics.kappa_se);
            print_confusion(j.confusion, arch.classes, j.train.class_names);
            print_class_metrics(j.confusion, arch.classes, j.train.class_names);
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
        cnnelm_json_array(&js, "plugin_messages");
        for (size_t m = 0; m < cnnelm_plugin_log_count(); m++)
            cnnelm_json_string(&js, NULL, cnnelm_plugin_log_at(m, NULL));
        cnnelm_json_end(&js, ']');
        cnnelm_json_int(&js, "partitions", s.k);
        cnnelm_json_string(&js, "partitioning", cnnelm_partitioning_name(c->train.partitioning));
        cnnelm_json_string(&js, "reduce", cnnelm_reduce_name(c->train.reduce));
        cnnelm_json_int(&js, "runs_total", s.runs);
        cnnelm_json_int(&js, "processes", j.cluster ? j.cluster->size : 1);
        if (j.confusion)
            json_metrics(&js, "test", &j.test_metrics, j.confusion, arch.classes);
        json_class_metrics(&js, j.confusion, arch.classes, j.train.class_names);
        cnnelm_json_int(&js, "warning_count", j.n_warnings);
        cnnelm_json_array(&js, "warnings");
        for (int w = 0; w < j.n_warnings; w++)
            cnnelm_json_string(&js, NULL, j.warnings[w]);
        cnnelm_json_end(&js, ']');
        if (s.final_all_data)
            cnnelm_json_bool(&js, "model_trained_on_all_training_data", 1);
        cnnelm_json_object(&js, "summary");
        cnnelm_json_array(&js, "partitions");
        for (int p = 0; p < s.k && s.k > 1; p++)
            json_row(&js, NULL, &s.part[p]);
        cnnelm_json_end(&js, ']');
        json_row(&js, "reduced", &s.reduced);
        if (s.single.n)
            json_row(&js, "single", &s.single);
        cnnelm_json_end(&js, '}');
        json_chance_level(&js, &chance);
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
    if (o->strict && chance.n) { /* everything is written: --strict only changes the exit status */
        cnnelm_fail(err, "--strict: %d model%s at chance level (kappa < %.2f), see the warnings", chance.n,
                    chance.n == 1 ? "" : "s", CHANCE_KAPPA);
        goto out;
    }
    rc = 0;
    if (o->strict && j.n_warnings > 0)
        rc = cnnelm_fail(err, "%d warning%s (see above) and --strict: failing the run (model and report "
                         "are written)", j.n_warnings, j.n_warnings == 1 ? "" : "s");
out:
    if (body)
        fclose(body);
    free(body_text);
    free(s.part);
    free(s.run);
    job_free(&j);
    cnnelm_interrupt_release(); /* a program that goes on after the call gets signals back */
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

/* eval: what the model file is (its own architecture wins over the config's model.*, which is
 * said when they differ), how far it was trained, and whether fine-tuning diverged. */
static void describe_loaded_model(job *j, const char *path)
{
    const cnnelm_model *m = &j->model;
    const cnnelm_arch *a = &m->arch;
    const cnnelm_config *c = &j->cfg;
    int diverged = (m->flags & CNNELM_MODEL_DIVERGED) != 0;
    cnnelm_progress_note(&j->prog, "model %s: %s, kernel %d, %s, %s pooling, %d hidden units; trained on %llu "
                         "examples, %u fine-tuning iteration%s%s", path, a->layers, a->kernel,
                         cnnelm_activation_name(a->activation), cnnelm_pooling_name(a->pooling), a->hidden,
                         (unsigned long long)m->n_examples, m->iterations, m->iterations == 1 ? "" : "s",
                         diverged ? " (diverged: the last good iteration was kept)" : "");
    if (strcmp(c->model.layers, a->layers) != 0 || c->model.kernel != a->kernel ||
        c->model.activation != a->activation || c->model.pooling != a->pooling ||
        c->model.elm_activation != a->elm_activation || c->model.lambda != m->lambda)
        cnnelm_progress_note(&j->prog, "the config's model.* settings differ from the model file's and are "
                             "ignored: eval uses the architecture stored in %s", path);
    if (diverged)
        cnnelm_progress_warn(&j->prog, "%s: fine-tuning of this model diverged; it is iteration %u, the last "
                             "good one", path, m->iterations);
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
    if (o->report_path && cnnelm_output_probe(o->report_path, err))
        goto out;
    if (cnnelm_model_load(&j.model, o->model_path, err))
        goto out;
    const cnnelm_arch *a = &j.model.arch;
    describe_loaded_model(&j, o->model_path);
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
    {
        /* a test folder's subfolders against the names the model was trained with */
        cnnelm_dataset trained = { .class_names = j.model.class_names, .classes = a->classes, .n = 1 };
        if (check_class_names(&trained, &j.test, j.cfg.path, err))
            goto out;
    }
    if ((j.test.channels > 0 ? j.test.channels : 1) != a->in_c) {
        cnnelm_fail(err, "%s: test images have %d channel%s but model %s takes %d (data.grayscale converts "
                    "RGB to gray)", j.cfg.path, j.test.channels > 0 ? j.test.channels : 1,
                    j.test.channels > 1 ? "s" : "", o->model_path, a->in_c);
        goto out;
    }
    j.cfg.n_workers = 1; /* evaluation runs on the first worker */
    cnnelm_plugin_log_begin(o->verbose, j.cfg.cache_dir);
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
    char *const *names = j.model.class_names ? j.model.class_names : j.test.class_names;
    print_confusion(j.confusion, C, names);
    print_class_metrics(j.confusion, C, names);
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
        json_class_metrics(&js, j.confusion, C, j.model.class_names ? j.model.class_names : j.test.class_names);
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
    double timeout_s;
} scan_ctx;

static const char *kind_name(cnnelm_device_kind k)
{
    static const char *names[] = { "cpu", "gpu", "accelerator", "fpga", "other" };
    return (unsigned)k <= CNNELM_DEVICE_OTHER ? names[k] : "unknown";
}

/* What a child learns of one plugin file: loading it, its devices, and how far it got (in
 * memory shared with the parent, so a crash still says where). */
#define PROBE_TIMEOUT_S 30
#define PROBE_DEVICES 16
typedef struct probe_reply {
    int loaded;
    char message[512];
    char name[64], description[256];
    unsigned abi_major, abi_minor;
    int init_failed;  /* loading stopped at the plugin's init() */
    int count_status, count;
    char count_why[256];
    int info_status[PROBE_DEVICES];
    cnnelm_device_info info[PROBE_DEVICES];
} probe_reply;

typedef struct probe_arg {
    const char *path;
    char *stage;  /* shared with the parent */
} probe_arg;

static void probe_child(void *arg, void *reply, size_t size)
{
    (void)size;
    const probe_arg *a = arg;
    probe_reply *r = reply;
    cnnelm_plugin *p;
    cnnelm_error e = { "" };
    snprintf(a->stage, 64, "loading it (its entry function)");
    if (cnnelm_child_table_with_init(a->path)) /* the entry ran: what follows is init() */
        snprintf(a->stage, 64, "its init()");
    if (cnnelm_plugin_load_file(a->path, &p, &e) != 0) {
        /* the loader's words for a failed init (a table it refused fails before init) */
        r->init_failed = strcmp(a->stage, "its init()") == 0 && strstr(e.msg, "failed to start: ");
        snprintf(r->message, sizeof r->message, "%.500s", e.msg);
        return;
    }
    r->loaded = 1;
    snprintf(r->name, sizeof r->name, "%s", p->name);
    snprintf(r->description, sizeof r->description, "%s", p->ops->description ? p->ops->description : "");
    r->abi_major = p->ops->abi_major;
    r->abi_minor = p->ops->abi_minor;
    /* the 1.1 slots with the plugin's state when it has them, the 1.0 ones otherwise */
    int v11 = CNNELM_BACKEND_HAS(p->ops, device_count_v11);
    snprintf(a->stage, 64, "%s", v11 ? "device_count (device_count_v11)" : "device_count");
    r->count_status = cnnelm_plugin_device_count(p, &r->count, r->count_why, sizeof r->count_why);
    r->count_why[sizeof r->count_why - 1] = '\0';
    v11 = CNNELM_BACKEND_HAS(p->ops, device_info_v11);
    for (int i = 0; r->count_status == CNNELM_OK && i < r->count && i < PROBE_DEVICES; i++) {
        snprintf(a->stage, 64, "device_info of device %d%s", i, v11 ? " (device_info_v11)" : "");
        r->info_status[i] = cnnelm_plugin_device_info(p, i, &r->info[i]);
    }
}

/* Is the file name libcnnelm-<name>.so with a name the loader accepts? */
static int plugin_file_name_ok(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    if (strncmp(base, "libcnnelm-", 10) != 0 || len <= 13 || strcmp(base + len - 3, ".so") != 0)
        return 0;
    for (const char *c = base + 10; c < base + len - 3; c++)
        if (!(*c == '-' || *c == '_' || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
              (*c >= '0' && *c <= '9')))
            return 0;
    return 1;
}

/* Lists one plugin, probed in a child process: a plugin that crashes or hangs while loading or
 * describing its devices is listed as broken, and the listing goes on. */
static void list_plugin(const char *path, void *user)
{
    scan_ctx *s = user;
    if (!plugin_file_name_ok(path))
        return;
    char *stage = mmap(NULL, 64, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (stage == MAP_FAILED) {
        printf("%s: broken: cannot probe it: %s\n", path, strerror(errno));
        return;
    }
    stage[0] = '\0';
    probe_arg a = { path, stage };
    probe_reply *r = calloc(1, sizeof *r);
    char why[256];
    if (!r) {
        printf("%s: broken: cannot probe it: out of memory\n", path);
    } else if (cnnelm_child_run(probe_child, &a, r, sizeof *r, s->timeout_s, NULL, why, sizeof why) != 0) {
        stage[63] = '\0';
        printf("%s: broken: %s%s%s\n", path, why, stage[0] ? " in " : "", stage[0] ? stage : "");
    } else if (!r->loaded) {
        const char *m = r->init_failed ? strstr(r->message, "failed to start: ") : NULL;
        if (m)
            printf("%s: broken: init failed: %s\n", path, m + 17);
        else
            printf("%s: unusable: %s\n", path, r->message);
    } else {
        s->backends++;
        printf("backend %s (%s, ABI %u.%u): %s\n", r->name, path, r->abi_major, r->abi_minor, r->description);
        if (r->count_status != CNNELM_OK)
            printf("  cannot count devices: %.250s\n", r->count_why);
        else if (r->count == 0)
            printf("  no devices\n");
        for (int i = 0; r->count_status == CNNELM_OK && i < r->count; i++) {
            if (i >= PROBE_DEVICES) {
                printf("  ... and %d more devices\n", r->count - PROBE_DEVICES);
                break;
            }
            cnnelm_device_info *info = &r->info[i];
            if (r->info_status[i] != CNNELM_OK) {
                printf("  device %d: cannot describe it\n", i);
                continue;
            }
            info->name[sizeof info->name - 1] = info->vendor[sizeof info->vendor - 1] = '\0';
            info->driver[sizeof info->driver - 1] = '\0';
            printf("  device %d: %s [%s], vendor %s, %u compute units, %.1f GiB memory", i, info->name,
                   kind_name(info->kind), info->vendor, info->compute_units,
                   (double)info->memory_bytes / (1024.0 * 1024 * 1024));
            if (s->verbose && info->driver[0])
                printf(", driver %s", info->driver);
            printf("\n");
        }
    }
    fflush(stdout);
    free(r);
    munmap(stage, 64);
}

int cnnelm_run_devices(const char *plugin_path, int verbose, cnnelm_error *err)
{
    return cnnelm_run_devices_timeout(plugin_path, verbose, PROBE_TIMEOUT_S, err);
}

int cnnelm_run_devices_timeout(const char *plugin_path, int verbose, double timeout_s, cnnelm_error *err)
{
    scan_ctx s = { verbose, 0, timeout_s > 0 ? timeout_s : PROBE_TIMEOUT_S };
    cnnelm_plugin_dirs dirs;
    if (cnnelm_plugin_dirs_get(plugin_path, &dirs, err))
        return -1;
    if (verbose) {
        printf("plugin search path:\n");
        for (int i = 0; i < dirs.n; i++)
            printf("  %s\n", dirs.dir[i]);
    }
    int found = cnnelm_plugin_scan(&dirs, list_plugin, &s);
    if (found == 0) {
        char looked[2048] = "";
        for (int i = 0; i < dirs.n; i++) {
            size_t used = strlen(looked);
            snprintf(looked + used, sizeof looked - used, "%s%s", i ? ", " : "", dirs.dir[i]);
        }
        cnnelm_plugin_dirs_free(&dirs);
        return cnnelm_fail(err, "no backend plugins (libcnnelm-*.so) found in %s", looked);
    }
    cnnelm_plugin_dirs_free(&dirs);
    return s.backends;
}
