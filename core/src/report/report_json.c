/* cnnelm report as JSON: every member of the train and eval reports, in the order
 * docs/report.md lists them, written from the report struct to the stream given. */
#include "report/report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cnnelm/plugin.h"
#include "base/atomic_file.h"
#include "base/json.h"
#include "model/ops.h"
#include "plugins/plugin_log.h"

#ifndef CNNELM_VERSION
#define CNNELM_VERSION "unknown"
#endif

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

static const char *class_name(char *const *names, int k)
{
    return names && names[k] ? names[k] : "";
}

/* "class_names" and "per_class" ({name, precision, recall, f1, support} per class) members. */
static void json_class_metrics(cnnelm_json *js, const uint64_t *confusion, int classes, char *const *names)
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
static void json_partition_classes(cnnelm_json *js, const cnnelm_report_part *r, int classes)
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

static void json_row(cnnelm_json *js, const char *key, const cnnelm_report_row *r)
{
    cnnelm_json_object(js, key);
    cnnelm_json_int(js, "runs", r->n);
    cnnelm_json_number(js, "accuracy_mean", cnnelm_report_mean(r->acc_sum, r->n));
    cnnelm_json_number(js, "accuracy_std", cnnelm_report_std(r->acc_sum, r->acc_sq, r->n));
    cnnelm_json_number(js, "kappa_mean", cnnelm_report_mean(r->kappa_sum, r->n));
    cnnelm_json_number(js, "kappa_std", cnnelm_report_std(r->kappa_sum, r->kappa_sq, r->n));
    cnnelm_json_end(js, '}');
}

/* model.lambda = "auto": the choice and its curve ("lambda_choice"; nothing when fixed): GCV, or
 * with train.validation the held-out accuracy of each candidate (GCV's values beside it). */
static void json_lambda(cnnelm_json *js, const cnnelm_lambda_choice *ch)
{
    if (ch->n < 1)
        return;
    int held = ch->rule == CNNELM_LAMBDA_RULE_HELD;
    cnnelm_json_object(js, "lambda_choice");
    cnnelm_json_string(js, "rule", held ? "validation" : "gcv");
    cnnelm_json_number(js, "chosen", ch->lambda[ch->best]);
    cnnelm_json_number(js, "seconds", ch->seconds);
    if (held) { /* train.validation: the held-out rows, and what GCV would have chosen */
        cnnelm_json_int(js, "held_out_rows", (long long)ch->n_held);
        cnnelm_json_number(js, "gcv_choice", ch->lambda[ch->gcv_best]);
    }
    cnnelm_json_array(js, "curve");
    for (int i = 0; i < ch->n; i++) {
        cnnelm_json_object(js, NULL);
        cnnelm_json_number(js, "lambda", ch->lambda[i]);
        if (held) /* null: the candidate's system did not factor */
            cnnelm_json_number(js, "held_out_accuracy", ch->held[i] >= 0 ? ch->held[i] : NAN);
        cnnelm_json_number(js, "gcv", ch->gcv[i]);
        cnnelm_json_number(js, "df", ch->df[i]);
        cnnelm_json_end(js, '}');
    }
    cnnelm_json_end(js, ']');
    cnnelm_json_end(js, '}');
}

static void json_part(cnnelm_json *js, const cnnelm_report *rep, const cnnelm_report_part *r, int k)
{
    cnnelm_json_object(js, NULL);
    cnnelm_json_int(js, "examples", (long long)r->examples);
    cnnelm_json_int(js, "rank", r->rank);
    cnnelm_json_int(js, "worker", r->worker + 1);
    /* every rank runs the same worker list, so the device name is the same on each */
    if (r->worker >= 0 && r->worker < rep->n_workers) {
        cnnelm_json_string(js, "device", rep->workers[r->worker].device);
        cnnelm_json_string(js, "worker_label", rep->workers[r->worker].label);
    }
    cnnelm_json_bool(js, "resumed", r->resumed);
    cnnelm_json_number(js, "seconds", r->seconds);
    if (r->test.n)
        json_metrics(js, "test", &r->test, NULL, 0);
    if (k > 1 || r->log.n > 1 || r->log.diverged) /* a run that diverged at once has only iteration 0 */
        json_series(js, &r->log);
    json_partition_classes(js, r, rep->classes);
    json_lambda(js, &r->log.lambda_choice);
    cnnelm_json_end(js, '}');
}

static void json_run(cnnelm_json *js, const cnnelm_report *rep, const cnnelm_report_run *x)
{
    cnnelm_json_object(js, NULL);
    cnnelm_json_int(js, "trial", x->trial);
    if (x->fold > 0)
        cnnelm_json_int(js, "fold", x->fold);
    if (x->fold < 0)
        cnnelm_json_bool(js, "all_training_data", 1); /* k-fold's final model */
    cnnelm_json_int(js, "seed", (long long)x->seed);
    cnnelm_json_int(js, "training_examples", (long long)x->train_n);
    cnnelm_json_int(js, "test_examples", (long long)x->test_n);
    cnnelm_json_number(js, "map_seconds", x->map_seconds);
    cnnelm_json_number(js, "reduce_seconds", x->reduce_seconds);
    cnnelm_json_array(js, "partitions");
    for (int p = 0; p < x->k; p++)
        json_part(js, rep, &x->parts[p], x->k);
    cnnelm_json_end(js, ']');
    if (x->test_n)
        json_metrics(js, "reduced", &x->reduced, NULL, 0);
    cnnelm_json_bool(js, "reduced_worse_than_every_partition", x->worse);
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

static void json_workers(cnnelm_json *js, const cnnelm_report *r)
{
    cnnelm_json_array(js, "workers");
    for (int w = 0; w < r->n_workers; w++) {
        const cnnelm_worker_desc *d = &r->workers[w];
        cnnelm_json_object(js, NULL);
        cnnelm_json_string(js, "device", d->device);
        cnnelm_json_string(js, "plugin", d->plugin_path);
        cnnelm_json_int(js, "threads", d->threads);
        cnnelm_json_bool(js, "failed", d->failed);
        cnnelm_json_array(js, "ops_on_cpu_reference");
        for (int op = 0; op < CNNELM_OP_COUNT; op++)
            if (d->fell_back >> op & 1u)
                cnnelm_json_string(js, NULL, cnnelm_op_name((cnnelm_op_id)op));
        cnnelm_json_end(js, ']');
        cnnelm_json_end(js, '}');
    }
    cnnelm_json_end(js, ']');
}

static void json_chance_level(cnnelm_json *js, const cnnelm_report *r)
{
    cnnelm_json_object(js, "chance_level");
    cnnelm_json_number(js, "kappa_below", CNNELM_CHANCE_KAPPA);
    cnnelm_json_int(js, "models", r->chance_n);
    cnnelm_json_array(js, "listed");
    for (int i = 0; i < r->chance_n && i < CNNELM_CHANCE_LISTED; i++) {
        cnnelm_json_object(js, NULL);
        cnnelm_json_string(js, "model", r->chance_name[i]);
        cnnelm_json_number(js, "accuracy", r->chance_accuracy[i]);
        cnnelm_json_number(js, "kappa", r->chance_kappa[i]);
        cnnelm_json_end(js, '}');
    }
    cnnelm_json_end(js, ']');
    cnnelm_json_end(js, '}');
}

/* The train report's members after "model". */
static void json_train(cnnelm_json *js, const cnnelm_report *r)
{
    const cnnelm_config *c = r->cfg;
    json_workers(js, r);
    cnnelm_json_array(js, "plugin_messages");
    for (size_t m = 0; m < cnnelm_plugin_log_count(); m++)
        cnnelm_json_string(js, NULL, cnnelm_plugin_log_at(m, NULL));
    cnnelm_json_end(js, ']');
    cnnelm_json_int(js, "partitions", r->k);
    cnnelm_json_string(js, "partitioning", cnnelm_partitioning_name(c->train.partitioning));
    cnnelm_json_string(js, "reduce", cnnelm_reduce_name(c->train.reduce));
    cnnelm_json_int(js, "runs_total", r->runs_total);
    cnnelm_json_int(js, "processes", r->processes);
    if (r->confusion)
        json_metrics(js, "test", &r->test, r->confusion, r->classes);
    json_class_metrics(js, r->confusion, r->classes, r->class_names);
    cnnelm_json_int(js, "warning_count", r->n_warnings);
    cnnelm_json_array(js, "warnings");
    for (int w = 0; w < r->n_warnings; w++)
        cnnelm_json_string(js, NULL, r->warnings[w]);
    cnnelm_json_end(js, ']');
    if (r->final_all_data)
        cnnelm_json_bool(js, "model_trained_on_all_training_data", 1);
    cnnelm_json_object(js, "summary");
    cnnelm_json_array(js, "partitions");
    for (int p = 0; p < r->k && r->k > 1; p++)
        json_row(js, NULL, &r->part[p]);
    cnnelm_json_end(js, ']');
    json_row(js, "reduced", &r->reduced);
    if (r->single.n)
        json_row(js, "single", &r->single);
    cnnelm_json_end(js, '}');
    json_chance_level(js, r);
    cnnelm_json_object(js, "timings");
    cnnelm_json_number(js, "load_s", r->t_load);
    cnnelm_json_number(js, "train_s", r->t_train);
    cnnelm_json_end(js, '}');
    cnnelm_json_array(js, "runs");
    for (int i = 0; i < r->n_runs; i++)
        json_run(js, r, &r->runs[i]);
    cnnelm_json_end(js, ']');
}

int cnnelm_report_write_json(const cnnelm_report *r, FILE *f, cnnelm_error *err)
{
    cnnelm_json js;
    cnnelm_json_init(&js, f);
    cnnelm_json_object(&js, NULL);
    cnnelm_json_string(&js, "cnnelm_version", CNNELM_VERSION);
    cnnelm_json_string(&js, "command", r->eval ? "eval" : "train");
    cnnelm_json_string(&js, "config_file", r->config_file);
    cnnelm_json_string(&js, "model_file", r->model_file);
    json_model(&js, r->model);
    if (r->eval) {
        cnnelm_json_string(&js, "device", r->n_workers > 0 ? r->workers[0].device : "");
        json_metrics(&js, "test", &r->test, r->confusion, r->classes);
        json_class_metrics(&js, r->confusion, r->classes, r->class_names);
        cnnelm_json_object(&js, "timings");
        cnnelm_json_number(&js, "load_s", r->t_load);
        cnnelm_json_number(&js, "eval_s", r->t_eval);
        cnnelm_json_end(&js, '}');
    } else {
        json_train(&js, r);
    }
    cnnelm_json_string(&js, "config", r->config_text);
    cnnelm_json_end(&js, '}');
    if (ferror(f))
        return cnnelm_fail(err, "writing the report failed");
    return 0;
}

int cnnelm_report_save_json(const cnnelm_report *r, const char *path, FILE *out, cnnelm_error *err)
{
    cnnelm_atomic_file af;
    if (cnnelm_atomic_open(&af, path, err))
        return -1;
    if (cnnelm_report_write_json(r, af.f, err)) {
        cnnelm_atomic_abort(&af);
        return cnnelm_fail_prefix(err, "%s", path);
    }
    if (cnnelm_atomic_commit(&af, err))
        return -1;
    if (out)
        fprintf(out, "report written to %s\n", path);
    return 0;
}
