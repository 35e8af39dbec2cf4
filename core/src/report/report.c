/* cnnelm report: filling the report struct from the experiments, the run warnings (divergence,
 * a reduced model worse than its partitions, models at chance level) and the summary rows.
 * The writers are in report_table.c and report_json.c. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "report/report.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void cnnelm_report_init(cnnelm_report *r, cnnelm_progress *prog)
{
    memset(r, 0, sizeof *r);
    r->prog = prog;
    r->processes = 1;
}

static void part_free(cnnelm_report_part *p)
{
    free(p->log.iters);
    p->log.iters = NULL;
}

void cnnelm_report_free(cnnelm_report *r)
{
    for (int i = 0; i < r->n_runs; i++) {
        for (int p = 0; p < r->runs[i].k; p++)
            part_free(&r->runs[i].parts[p]);
        free(r->runs[i].parts);
        part_free(&r->runs[i].single);
    }
    free(r->runs);
    free(r->part);
    free(r->workers);
    free(r->confusion);
    for (int i = 0; i < r->n_warnings; i++)
        free(r->warnings[i]);
    free(r->warnings);
    memset(r, 0, sizeof *r);
}

void cnnelm_report_warn(cnnelm_report *r, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cnnelm_progress_warn(r->prog, "%s", msg);
    char **nw = realloc(r->warnings, (size_t)(r->n_warnings + 1) * sizeof *nw);
    if (!nw)
        return; /* shown on stderr all the same */
    r->warnings = nw;
    if ((r->warnings[r->n_warnings] = strdup(msg)) != NULL)
        r->n_warnings++;
}

int cnnelm_report_set_workers(cnnelm_report *r, const cnnelm_worker_pool *pool, cnnelm_error *err)
{
    free(r->workers);
    r->n_workers = 0;
    r->workers = calloc((size_t)(pool->n > 0 ? pool->n : 1), sizeof *r->workers);
    if (!r->workers)
        return cnnelm_fail(err, "out of memory");
    for (int i = 0; i < pool->n; i++)
        cnnelm_worker_pool_describe(pool, i, &r->workers[r->n_workers++]);
    return 0;
}

/* A copy of one partition's facts; the series' iterations get their own array. */
static int part_copy(cnnelm_report_part *d, const cnnelm_part_result *s, cnnelm_error *err)
{
    memset(d, 0, sizeof *d);
    d->examples = s->examples;
    d->rank = s->rank;
    d->worker = s->worker;
    d->resumed = s->resumed;
    d->seconds = s->seconds;
    d->test = s->test;
    d->log = s->log;
    d->log.iters = NULL;
    memcpy(d->class_examples, s->class_examples, sizeof d->class_examples);
    if (s->log.n > 0 && s->log.iters) {
        d->log.iters = malloc((size_t)s->log.n * sizeof *d->log.iters);
        if (!d->log.iters)
            return cnnelm_fail(err, "out of memory");
        memcpy(d->log.iters, s->log.iters, (size_t)s->log.n * sizeof *d->log.iters);
    } else {
        d->log.n = 0;
    }
    return 0;
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
 * single model, and a reduced model worse than every partition. Returns the latter. */
static int check_experiment(cnnelm_report *rep, const cnnelm_experiment *x, const char *run)
{
    const cnnelm_config *c = x->cfg;
    char why[700];
    for (int p = 0; p < x->k; p++) {
        const cnnelm_part_result *r = &x->parts[p];
        if (!r->log.diverged)
            continue;
        divergence_text(&r->log, why, sizeof why);
        if (x->k == 1)
            cnnelm_report_warn(rep, "%sfine-tuning diverged %s; the saved model is iteration %u, the last "
                               "good one", run, why, r->model.iterations);
        else
            cnnelm_report_warn(rep, "%spartition %d/%d diverged %s; its model is iteration %u, the last good "
                               "one, and goes into the reduced model as such", run, p + 1, x->k, why,
                               r->model.iterations);
    }
    if (x->has_single && x->single.log.diverged) {
        divergence_text(&x->single.log, why, sizeof why);
        cnnelm_report_warn(rep, "%sthe single model diverged %s; its model is iteration %u, the last good one",
                           run, why, x->single.model.iterations);
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
    cnnelm_report_warn(rep, "%sthe reduced model (%s) has %s accuracy %.2f%%, worse than every partition (the "
                       "lowest, partition %d, has %.2f%%): %s", run, cnnelm_reduce_name(c->train.reduce),
                       c->train.folds > 1 ? "validation" : "test", 100 * x->reduced_test.accuracy, lowest + 1,
                       100 * x->parts[lowest].test.accuracy, hint);
    return 1;
}

int cnnelm_report_add_run(cnnelm_report *r, const cnnelm_experiment *x, int trial, int fold, uint64_t seed,
                          const char *run, cnnelm_error *err)
{
    /* k-fold's final model is checked but never "worse": it has no rows to compare */
    int worse = check_experiment(r, x, run);
    if (fold < 0)
        worse = 0;
    if (r->n_runs == r->cap_runs) {
        int cap = r->cap_runs ? 2 * r->cap_runs : 4;
        cnnelm_report_run *nr = realloc(r->runs, (size_t)cap * sizeof *nr);
        if (!nr)
            return cnnelm_fail(err, "out of memory");
        r->runs = nr;
        r->cap_runs = cap;
    }
    cnnelm_report_run *u = &r->runs[r->n_runs];
    memset(u, 0, sizeof *u);
    u->trial = trial;
    u->fold = fold;
    u->seed = seed;
    u->train_n = x->train.n;
    u->test_n = x->test.n;
    u->map_seconds = x->map_seconds;
    u->reduce_seconds = x->reduce_seconds;
    u->reduced = x->reduced_test;
    u->worse = worse;
    u->reduced_lambda = x->reduced_lambda;
    u->parts = calloc((size_t)(x->k > 0 ? x->k : 1), sizeof *u->parts);
    if (!u->parts)
        return cnnelm_fail(err, "out of memory");
    r->n_runs++; /* from here cnnelm_report_free frees what was copied */
    for (int p = 0; p < x->k; p++, u->k++)
        if (part_copy(&u->parts[p], &x->parts[p], err))
            return -1;
    if (x->has_single) {
        u->has_single = 1;
        if (part_copy(&u->single, &x->single, err))
            return -1;
    }
    if (fold >= 0 && r->n_runs == 1)
        r->k = x->k;
    if (fold < 0) {
        r->final_all_data = 1;
        r->final_examples = x->train.n;
    }
    return 0;
}

int cnnelm_report_set_test(cnnelm_report *r, const cnnelm_metrics *m, const uint64_t *confusion,
                           cnnelm_error *err)
{
    r->test = *m;
    free(r->confusion);
    r->confusion = NULL;
    if (!confusion)
        return 0;
    size_t cells = (size_t)r->classes * (size_t)r->classes;
    r->confusion = malloc(cells * sizeof *r->confusion);
    if (!r->confusion)
        return cnnelm_fail(err, "out of memory");
    memcpy(r->confusion, confusion, cells * sizeof *r->confusion);
    return 0;
}

double cnnelm_report_mean(double sum, int n) { return n ? sum / n : NAN; }

double cnnelm_report_std(double sum, double sq, int n)
{
    if (n < 2)
        return 0;
    double v = (sq - sum * sum / n) / (n - 1); /* sample standard deviation */
    return v > 0 ? sqrt(v) : 0;
}

static void row_add(cnnelm_report_row *r, const cnnelm_metrics *m)
{
    r->acc_sum += m->accuracy;
    r->acc_sq += m->accuracy * m->accuracy;
    r->kappa_sum += m->kappa;
    r->kappa_sq += m->kappa * m->kappa;
    r->n++;
}

static void chance_add(cnnelm_report *r, const char *name, const cnnelm_report_row *row)
{
    if (r->chance_n < CNNELM_CHANCE_LISTED) {
        snprintf(r->chance_name[r->chance_n], sizeof r->chance_name[0], "%s", name);
        r->chance_accuracy[r->chance_n] = cnnelm_report_mean(row->acc_sum, row->n);
        r->chance_kappa[r->chance_n] = cnnelm_report_mean(row->kappa_sum, row->n);
    }
    r->chance_n++;
}

/* Every partition model and the reduced model whose mean kappa is at chance level: a warning
 * with the likely cause and the fix, and an entry for the report and --strict. */
static void warn_chance_level(cnnelm_report *r)
{
    const cnnelm_config *c = r->cfg;
    char devices[512] = "";
    for (int w = 0; w < r->n_workers; w++) {
        size_t len = strlen(devices);
        snprintf(devices + len, sizeof devices - len, "%s%s", w ? ", " : "", r->workers[w].device);
    }
    int parts_at_chance = 0;
    char name[48];
    for (int p = 0; p < r->k && r->k > 1; p++) {
        const cnnelm_report_row *row = &r->part[p];
        if (row->n == 0 || !(cnnelm_report_mean(row->kappa_sum, row->n) < CNNELM_CHANCE_KAPPA))
            continue;
        snprintf(name, sizeof name, "partition %d", p + 1);
        chance_add(r, name, row);
        parts_at_chance++;
        cnnelm_report_warn(r, "%s is at chance level (accuracy %.2f%%, kappa %.4f): it predicts "
                           "no better than guessing. Likely cause: a backend op that returns without writing its "
                           "output or computes wrong results, or fine-tuning that diverged; run `cnnelm "
                           "plugin-check` on the workers' plugins (%s), or lower train.learning_rate", name,
                           100 * cnnelm_report_mean(row->acc_sum, row->n),
                           cnnelm_report_mean(row->kappa_sum, row->n), devices);
    }
    const cnnelm_report_row *row = &r->reduced;
    if (row->n == 0 || !(cnnelm_report_mean(row->kappa_sum, row->n) < CNNELM_CHANCE_KAPPA))
        return;
    if (r->k > 1)
        snprintf(name, sizeof name, "reduced model (%s)", cnnelm_reduce_name(c->train.reduce));
    else
        snprintf(name, sizeof name, "model");
    chance_add(r, name, row);
    double acc = 100 * cnnelm_report_mean(row->acc_sum, row->n), kappa = cnnelm_report_mean(row->kappa_sum, row->n);
    if (r->k > 1 && parts_at_chance < r->k)
        cnnelm_report_warn(r, "the %s is at chance level (accuracy %.2f%%, kappa %.4f) "
                           "although partitions are not: their models are too different to combine this way "
                           "(non-IID partitions?); try train.reduce = \"refit\"", name, acc, kappa);
    else
        cnnelm_report_warn(r, "the %s is at chance level (accuracy %.2f%%, kappa %.4f): it "
                           "predicts no better than guessing. Likely cause: a backend op that returns without "
                           "writing its output or computes wrong results (run `cnnelm plugin-check` on the "
                           "workers' plugins: %s), fine-tuning that diverged (lower train.learning_rate), or "
                           "labels that do not belong to the images (check data.train_labels)", name, acc,
                           kappa, devices);
}

int cnnelm_report_finish(cnnelm_report *r, cnnelm_error *err)
{
    free(r->part);
    r->part = calloc((size_t)(r->k > 0 ? r->k : 1), sizeof *r->part);
    if (!r->part)
        return cnnelm_fail(err, "out of memory");
    memset(&r->reduced, 0, sizeof r->reduced);
    memset(&r->single, 0, sizeof r->single);
    r->chance_n = 0;
    /* the estimating runs only (k-fold's final model has no test rows) */
    for (int i = 0; i < r->n_runs; i++) {
        const cnnelm_report_run *u = &r->runs[i];
        if (u->fold < 0 || u->test_n == 0)
            continue;
        for (int p = 0; p < u->k && p < r->k; p++)
            row_add(&r->part[p], &u->parts[p].test);
        row_add(&r->reduced, &u->reduced);
        if (u->has_single)
            row_add(&r->single, &u->single.test);
    }
    if (r->has_test_set) /* folds validate: set then too */
        warn_chance_level(r);
    return 0;
}
