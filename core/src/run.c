/* cnnelm jobs: train and eval as the command line runs them (config -> data -> backend ->
 * training -> evaluation -> model file and JSON report). */
#include "cnnelm/run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"
#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "cnnelm/metrics.h"
#include "cnnelm/model.h"
#include "cnnelm/plugin.h"
#include "json.h"
#include "network.h"
#include "progress.h"
#include "train.h"

#ifndef CNNELM_VERSION
#define CNNELM_VERSION "unknown"
#endif

typedef struct job {
    cnnelm_config cfg;
    cnnelm_dataset train, test;
    cnnelm_plugin *plugin;
    cnnelm_net net;
    int net_open;
    cnnelm_model model;
    cnnelm_progress prog;
    cnnelm_train_log log;
    uint64_t *confusion;
    cnnelm_metrics test_metrics;
    double train_accuracy;
    double t_load, t_train, t_eval;
} job;

static void job_free(job *j)
{
    if (j->net_open)
        cnnelm_net_close(&j->net);
    cnnelm_plugin_unload(j->plugin);
    cnnelm_model_free(&j->model);
    cnnelm_dataset_free(&j->train);
    cnnelm_dataset_free(&j->test);
    cnnelm_train_log_free(&j->log);
    free(j->confusion);
    cnnelm_config_free(&j->cfg);
    cnnelm_progress_destroy(&j->prog);
}

static int load_test_set(job *j, int classes, cnnelm_error *err)
{
    const cnnelm_config *c = &j->cfg;
    if (!c->data.test_images[0] && !c->data.test_labels[0])
        return 0;
    if (!c->data.test_images[0] || !c->data.test_labels[0])
        return cnnelm_fail(err, "%s: data.test_images and data.test_labels go together (one is empty)",
                           c->path);
    if (cnnelm_dataset_load(&j->test, c->data.test_images, c->data.test_labels, classes,
                            (size_t)c->data.test_limit, err))
        return -1;
    return 0;
}

static int open_worker(job *j, const cnnelm_arch *arch, cnnelm_error *err)
{
    const cnnelm_worker_config *w = &j->cfg.workers[0];
    if (cnnelm_plugin_load(w->backend, j->cfg.plugin_path, &j->plugin, err))
        return -1;
    if (cnnelm_net_open(&j->net, j->plugin, w->device, w->threads, arch, j->cfg.train.chunk, NULL, err))
        return -1;
    j->net_open = 1;
    return 0;
}

static void print_results(const job *j, int classes)
{
    const cnnelm_metrics *m = &j->test_metrics;
    printf("test accuracy %.2f%% (%llu examples), kappa %.4f (standard error %.4f)\n",
           100 * m->accuracy, (unsigned long long)m->n, m->kappa, m->kappa_se);
    printf("confusion matrix (rows: true class, columns: predicted class):\n");
    printf("      ");
    for (int c = 0; c < classes; c++)
        printf(" %6d", c);
    printf("\n");
    for (int r = 0; r < classes; r++) {
        printf("  %3d:", r);
        for (int c = 0; c < classes; c++)
            printf(" %6llu", (unsigned long long)j->confusion[(size_t)r * classes + c]);
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

static int write_report(const job *j, const char *command, const cnnelm_run_options *o,
                        cnnelm_error *err)
{
    if (!o->report_path)
        return 0;
    cnnelm_atomic_file af;
    if (cnnelm_atomic_open(&af, o->report_path, err))
        return -1;
    cnnelm_json js;
    cnnelm_json_init(&js, af.f);
    const cnnelm_arch *a = &j->model.arch;
    cnnelm_json_object(&js, NULL);
    cnnelm_json_string(&js, "cnnelm_version", CNNELM_VERSION);
    cnnelm_json_string(&js, "command", command);
    cnnelm_json_string(&js, "config_file", j->cfg.path);
    cnnelm_json_string(&js, "model_file", o->model_path);
    cnnelm_json_object(&js, "model");
    cnnelm_json_string(&js, "layers", a->layers);
    cnnelm_json_int(&js, "kernel", a->kernel);
    cnnelm_json_string(&js, "activation", cnnelm_activation_name(a->activation));
    cnnelm_json_string(&js, "pooling", cnnelm_pooling_name(a->pooling));
    cnnelm_json_string(&js, "elm_activation", cnnelm_activation_name(a->elm_activation));
    cnnelm_json_int(&js, "hidden", a->hidden);
    cnnelm_json_int(&js, "classes", a->classes);
    cnnelm_json_int(&js, "parameters", (long long)a->n_params);
    cnnelm_json_number(&js, "lambda", j->model.lambda);
    cnnelm_json_int(&js, "seed", (long long)j->model.seed);
    cnnelm_json_int(&js, "training_examples", (long long)j->model.n_examples);
    cnnelm_json_int(&js, "iterations", j->model.iterations);
    cnnelm_json_bool(&js, "diverged", (j->model.flags & CNNELM_MODEL_DIVERGED) != 0);
    cnnelm_json_end(&js, '}');
    if (j->plugin) {
        cnnelm_json_object(&js, "backend");
        cnnelm_json_string(&js, "name", j->plugin->name);
        cnnelm_json_string(&js, "plugin", j->plugin->path);
        cnnelm_json_int(&js, "device", j->cfg.workers[0].device);
        cnnelm_json_end(&js, '}');
    }
    if (j->log.n) {
        cnnelm_json_array(&js, "iterations");
        for (int i = 0; i < j->log.n; i++) {
            const cnnelm_iter_stats *s = &j->log.iters[i];
            cnnelm_json_object(&js, NULL);
            cnnelm_json_int(&js, "iteration", s->iteration);
            cnnelm_json_number(&js, "J", s->J);
            cnnelm_json_number(&js, "train_accuracy", s->train_accuracy);
            cnnelm_json_number(&js, "test_accuracy", s->test_accuracy);
            cnnelm_json_number(&js, "learning_rate", s->learning_rate);
            cnnelm_json_number(&js, "seconds", s->seconds);
            cnnelm_json_end(&js, '}');
        }
        cnnelm_json_end(&js, ']');
        cnnelm_json_bool(&js, "diverged", j->log.diverged);
        if (j->log.diverged)
            cnnelm_json_string(&js, "divergence", j->log.divergence);
    }
    if (!isnan(j->train_accuracy))
        cnnelm_json_number(&js, "train_accuracy", j->train_accuracy);
    if (j->confusion)
        json_metrics(&js, "test", &j->test_metrics, j->confusion, a->classes);
    cnnelm_json_object(&js, "timings");
    cnnelm_json_number(&js, "load_s", j->t_load);
    cnnelm_json_number(&js, "train_s", j->t_train);
    cnnelm_json_number(&js, "eval_s", j->t_eval);
    cnnelm_json_end(&js, '}');
    cnnelm_json_string(&js, "config", j->cfg.text);
    cnnelm_json_end(&js, '}');
    return cnnelm_atomic_commit(&af, err);
}

static int evaluate_test(job *j, cnnelm_error *err)
{
    int C = j->model.arch.classes;
    double t = cnnelm_now();
    if (j->test.n == 0)
        return 0;
    j->confusion = calloc((size_t)C * C, sizeof *j->confusion);
    if (!j->confusion)
        return cnnelm_fail(err, "out of memory");
    cnnelm_subset test = { &j->test, NULL, j->test.n };
    if (cnnelm_evaluate(&j->net, &j->model, &test, j->confusion, &j->prog, "test", err))
        return -1;
    cnnelm_metrics_compute(j->confusion, C, &j->test_metrics);
    j->t_eval = cnnelm_now() - t;
    return 0;
}

int cnnelm_run_train(const cnnelm_run_options *o, cnnelm_error *err)
{
    job j;
    memset(&j, 0, sizeof j);
    j.train_accuracy = NAN;
    cnnelm_progress_init(&j.prog, o->quiet);
    int rc = -1;
    double t0 = cnnelm_now();
    if (cnnelm_config_load(&j.cfg, o->config_path, o->overrides, o->n_overrides, err))
        goto out;
    const cnnelm_config *c = &j.cfg;
    if (c->train.partitions != 1) {
        cnnelm_fail(err, "%s: train.partitions = %d: partitioned training is not available in this "
                    "build yet (use 1)", c->path, c->train.partitions);
        goto out;
    }
    if (!c->data.train_images[0] || !c->data.train_labels[0]) {
        cnnelm_fail(err, "%s: data.train_images and data.train_labels must name the training set",
                    c->path);
        goto out;
    }
    cnnelm_progress_begin(&j.prog, "load data", 0);
    if (cnnelm_dataset_load(&j.train, c->data.train_images, c->data.train_labels, 256,
                            (size_t)c->data.train_limit, err))
        goto out;
    cnnelm_arch arch;
    if (cnnelm_arch_init(&arch, c->model.layers, c->model.kernel, 1, j.train.rows, j.train.cols,
                         j.train.classes, c->model.activation, c->model.pooling,
                         c->model.elm_activation, err)) {
        cnnelm_fail_prefix(err, "%s: model.layers", c->path);
        goto out;
    }
    if (load_test_set(&j, arch.classes, err))
        goto out;
    if (j.test.n && (j.test.rows != j.train.rows || j.test.cols != j.train.cols)) {
        cnnelm_fail(err, "%s: test images are %dx%d but training images are %dx%d",
                    c->data.test_images, j.test.rows, j.test.cols, j.train.rows, j.train.cols);
        goto out;
    }
    {
        char detail[160];
        snprintf(detail, sizeof detail, "%zu training and %zu test images of %dx%d, %d classes",
                 j.train.n, j.test.n, j.train.rows, j.train.cols, arch.classes);
        cnnelm_progress_end(&j.prog, detail);
    }
    if (cnnelm_model_init(&j.model, &arch, c->model.lambda, c->train.seed, c->model.init == CNNELM_INIT_ZERO_MEAN, err))
        goto out;
    if (open_worker(&j, &arch, err))
        goto out;
    j.t_load = cnnelm_now() - t0;
    cnnelm_progress_note(&j.prog, "model %s, kernel %d, %d hidden units, %zu parameters; backend %s",
                         arch.layers, arch.kernel, arch.hidden, arch.n_params, j.net.where);
    double tt = cnnelm_now();
    cnnelm_subset train = { &j.train, NULL, j.train.n }, test = { &j.test, NULL, j.test.n };
    if (cnnelm_train_model(&j.net, &j.model, &train, &test, c, &j.prog, &j.log, err))
        goto out;
    j.t_train = cnnelm_now() - tt;
    if (j.log.diverged)
        fprintf(stderr, "cnnelm: warning: fine-tuning diverged: %s; the saved model is iteration %u, "
                "the last good one\n", j.log.divergence, j.model.iterations);
    if (evaluate_test(&j, err))
        goto out;
    if (cnnelm_model_save(&j.model, o->model_path, err))
        goto out;
    if (j.confusion)
        print_results(&j, arch.classes);
    else
        printf("no test set configured (data.test_images)\n");
    printf("model saved to %s\n", o->model_path);
    if (write_report(&j, "train", o, err))
        goto out;
    if (o->report_path)
        printf("report written to %s\n", o->report_path);
    rc = 0;
out:
    job_free(&j);
    return rc;
}

int cnnelm_run_eval(const cnnelm_run_options *o, cnnelm_error *err)
{
    job j;
    memset(&j, 0, sizeof j);
    j.train_accuracy = NAN;
    cnnelm_progress_init(&j.prog, o->quiet);
    int rc = -1;
    double t0 = cnnelm_now();
    if (cnnelm_config_load(&j.cfg, o->config_path, o->overrides, o->n_overrides, err))
        goto out;
    if (cnnelm_model_load(&j.model, o->model_path, err))
        goto out;
    const cnnelm_arch *a = &j.model.arch;
    if (!j.cfg.data.test_images[0]) {
        cnnelm_fail(err, "%s: no test set to evaluate on (data.test_images is empty)", j.cfg.path);
        goto out;
    }
    if (load_test_set(&j, a->classes, err))
        goto out;
    if (j.test.rows != a->in_h || j.test.cols != a->in_w) {
        cnnelm_fail(err, "%s: images are %dx%d but model %s takes %dx%d inputs",
                    j.cfg.data.test_images, j.test.rows, j.test.cols, o->model_path, a->in_h, a->in_w);
        goto out;
    }
    if (open_worker(&j, a, err))
        goto out;
    j.t_load = cnnelm_now() - t0;
    if (evaluate_test(&j, err))
        goto out;
    print_results(&j, a->classes);
    if (write_report(&j, "eval", o, err))
        goto out;
    if (o->report_path)
        printf("report written to %s\n", o->report_path);
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
