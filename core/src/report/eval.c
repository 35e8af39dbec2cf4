/* cnnelm eval: a saved model on the config's test set, on the first worker; the results as the
 * report's tables to the caller's stream and as JSON to --report. */
#include "cnnelm/run.h"

#include <stdlib.h>
#include <string.h>

#include "base/atomic_file.h"
#include "cnnelm/dataset.h"
#include "report/jobs.h"
#include "plugins/plugin_log.h"
#include "base/progress.h"
#include "report/report.h"
#include "training/train.h"
#include "training/workers.h"

typedef struct eval_job {
    cnnelm_config cfg;
    cnnelm_dataset test;
    cnnelm_worker_pool pool;
    int pool_open;
    cnnelm_model model;
    cnnelm_progress prog;
    cnnelm_report report;
} eval_job;

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

/* What the model file is (its own architecture wins over the config's model.*, which is said
 * when they differ), how far it was trained, and whether fine-tuning diverged. */
static void describe_loaded_model(eval_job *j, const char *path)
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

/* The test set fits the model: size, classes, channels. */
static int check_test_set(eval_job *j, const char *model_path, cnnelm_error *err)
{
    const cnnelm_arch *a = &j->model.arch;
    if (j->test.n == 0)
        return cnnelm_fail(err, "%s: no test set to evaluate on (data.test_images is empty)", j->cfg.path);
    if (j->test.rows != a->in_h || j->test.cols != a->in_w)
        return cnnelm_fail(err, "%s: test images are %dx%d but model %s takes %dx%d inputs", j->cfg.path,
                           j->test.rows, j->test.cols, model_path, a->in_h, a->in_w);
    /* a test folder's subfolders against the names the model was trained with */
    cnnelm_dataset trained = { .class_names = j->model.class_names, .classes = a->classes, .n = 1 };
    if (cnnelm_check_class_names(&trained, &j->test, j->cfg.path, err))
        return -1;
    int channels = j->test.channels > 0 ? j->test.channels : 1;
    if (channels != a->in_c)
        return cnnelm_fail(err, "%s: test images have %d channel%s but model %s takes %d (data.grayscale "
                           "converts RGB to gray)", j->cfg.path, channels, channels > 1 ? "s" : "", model_path,
                           a->in_c);
    return 0;
}

static int eval_run(eval_job *j, const cnnelm_run_options *o, cnnelm_error *err)
{
    double t0 = cnnelm_now();
    if (cnnelm_config_load(&j->cfg, o->config_path, o->overrides, o->n_overrides, err))
        return -1;
    if (o->report_path && cnnelm_output_probe(o->report_path, err))
        return cnnelm_fail_prefix(err, "--report"); /* as train names it */
    if (cnnelm_model_load(&j->model, o->model_path, err))
        return -1;
    const cnnelm_arch *a = &j->model.arch;
    describe_loaded_model(j, o->model_path);
    if (cnnelm_dataset_load_config(&j->test, &j->cfg, 1, a->classes, err) || check_test_set(j, o->model_path, err))
        return -1;
    j->cfg.n_workers = 1; /* evaluation runs on the first worker */
    cnnelm_plugin_log_begin(o->verbose, j->cfg.cache_dir);
    if (cnnelm_worker_pool_open(&j->pool, &j->cfg, a, err))
        return -1;
    j->pool_open = 1;
    cnnelm_report *r = &j->report;
    r->eval = 1;
    r->t_load = cnnelm_now() - t0;
    r->cfg = &j->cfg;
    r->config_file = j->cfg.path;
    r->config_text = j->cfg.text;
    r->model_file = o->model_path;
    r->model = &j->model;
    r->classes = a->classes;
    r->class_names = j->model.class_names ? j->model.class_names : j->test.class_names;
    int C = a->classes;
    uint64_t *confusion = calloc((size_t)C * C, sizeof *confusion);
    if (!confusion)
        return cnnelm_fail(err, "out of memory");
    double te = cnnelm_now();
    cnnelm_subset test = { &j->test, NULL, j->test.n };
    eval_one e = { &j->model, &test, &j->prog, confusion };
    cnnelm_metrics m;
    int rc = cnnelm_worker_pool_run(&j->pool, 1, eval_one_task, &e, err);
    if (rc == 0) {
        r->t_eval = cnnelm_now() - te;
        cnnelm_metrics_compute(confusion, C, &m);
        rc = cnnelm_report_set_test(r, &m, confusion, err);
    }
    free(confusion);
    if (rc || cnnelm_report_set_workers(r, &j->pool, err))
        return -1;
    cnnelm_report_write_table(r, o->out);
    if (o->report_path && cnnelm_report_save_json(r, o->report_path, o->out, err))
        return -1;
    return 0;
}

int cnnelm_run_eval(const cnnelm_run_options *o, cnnelm_error *err)
{
    eval_job *j = calloc(1, sizeof *j); /* the config is large: not on the stack */
    if (!j)
        return cnnelm_fail(err, "out of memory");
    cnnelm_progress_init(&j->prog, o->quiet);
    cnnelm_report_init(&j->report, &j->prog);
    int rc = eval_run(j, o, err);
    cnnelm_report_free(&j->report);
    if (j->pool_open)
        cnnelm_worker_pool_close(&j->pool);
    cnnelm_model_free(&j->model);
    cnnelm_dataset_free(&j->test);
    cnnelm_config_free(&j->cfg);
    cnnelm_progress_destroy(&j->prog);
    free(j);
    return rc;
}
