/* cnnelm train as the command line runs it, as glue: config and data loaded and checked, the
 * worker pool opened, the trials x folds (trials.c) run, the model saved, and the report
 * (report.c) written as tables to the caller's stream and as JSON to --report. */
#include "cnnelm/run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/atomic_file.h"
#include "cnnelm/cluster.h"
#include "cnnelm/dataset.h"
#include "data/dataset_stream.h"
#include "report/jobs.h"
#include "model/memory_plan.h"
#include "plugins/plugin_log.h"
#include "base/progress.h"
#include "report/report.h"
#include "report/trials.h"
#include "training/workers.h"

int cnnelm_check_class_names(const cnnelm_dataset *train, const cnnelm_dataset *test, const char *cfg_path,
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

typedef struct train_job {
    int rank;                    /* 0 unless under MPI */
    char rank_prefix[32];        /* "rank R: " on other ranks' messages */
    cnnelm_config cfg;
    cnnelm_dataset train, test;
    cnnelm_worker_pool pool;
    int pool_open;
    cnnelm_model model;          /* the model saved */
    cnnelm_progress prog;
    cnnelm_report report;
} train_job;

static void note_line(void *user, const char *line)
{
    cnnelm_progress_note(user, "%s", line);
}

int cnnelm_run_interrupted(void)
{
    return cnnelm_interrupted();
}

/* Config, data, architecture and the places written to, all checked before any training. */
static int load(train_job *j, const cnnelm_run_options *o, cnnelm_arch *arch, cnnelm_error *err)
{
    if (cnnelm_config_load(&j->cfg, o->config_path, o->overrides, o->n_overrides, err))
        return -1;
    /* the model and the report can be written: checked before a long run, not after it */
    if (j->rank == 0 && cnnelm_output_probe(o->model_path, err))
        return cnnelm_fail_prefix(err, "-o");
    if (j->rank == 0 && o->report_path && cnnelm_output_probe(o->report_path, err))
        return cnnelm_fail_prefix(err, "--report");
    const cnnelm_config *c = &j->cfg;
    if (o->resume && !c->train.checkpoint_dir[0])
        return cnnelm_fail(err, "--resume reuses partitions saved in train.checkpoint_dir, which is not set "
                           "(in %s or with -s train.checkpoint_dir=\"DIR\")", c->path);
    cnnelm_progress_begin(&j->prog, "load data", 0);
    if (cnnelm_dataset_load_config(&j->train, c, 0, 256, err))
        return -1;
    if (j->train.classes < 2) /* the labels are the cause, not model.layers */
        return cnnelm_fail(err, "%s: the training labels have a single class (every label is %d): a "
                           "classifier needs at least 2", c->data.n_sources ? c->path : c->data.train_labels,
                           j->train.n ? j->train.labels[0] : 0);
    /* lambda grows the other way from scikit-learn's alpha: a tiny one is almost no fit at all
     * ("auto" is stored as 0: not tiny). Warnings go through the report: on stderr even with
     * -q, in the JSON, and for --strict */
    if (j->rank == 0 && c->model.lambda > 0 && c->model.lambda < 1e-6)
        cnnelm_report_warn(&j->report, "model.lambda = %g is tiny: larger lambda = less "
                           "regularisation (beta = (I/lambda + U)^-1 V), so this model barely "
                           "fits the data; try 1 to 1e4", c->model.lambda);
    if (cnnelm_arch_init(arch, c->model.layers, c->model.kernel, j->train.channels > 0 ? j->train.channels : 1,
                         j->train.rows, j->train.cols, j->train.classes, c->model.activation, c->model.pooling,
                         c->model.elm_activation, err))
        return cnnelm_fail_prefix(err, "%s: model.layers", c->path);
    if (j->rank == 0 && c->train.partitions > 1 && c->train.partitioning != CNNELM_PART_BY_SOURCE &&
        j->train.n / (size_t)c->train.partitions < (size_t)arch->hidden)
        cnnelm_report_warn(&j->report, "train.partitions = %d leaves about %zu training examples per "
                           "partition, fewer than the model's %d hidden units: each partition's ELM solve "
                           "rests on lambda alone", c->train.partitions,
                           j->train.n / (size_t)c->train.partitions, arch->hidden);
    /* every rank evaluates the partitions it trains, so every rank reads the test set */
    if (c->train.folds <= 1 && cnnelm_dataset_load_config(&j->test, c, 1, arch->classes, err))
        return -1;
    if (cnnelm_check_class_names(&j->train, &j->test, c->path, err))
        return -1;
    if (j->test.n && (j->test.rows != j->train.rows || j->test.cols != j->train.cols ||
                      cnnelm_dataset_example_bytes(&j->test) != cnnelm_dataset_example_bytes(&j->train)))
        return cnnelm_fail(err, "%s: test images are %dx%d but training images are %dx%d", c->path,
                           j->test.rows, j->test.cols, j->train.rows, j->train.cols);
    char detail[160];
    snprintf(detail, sizeof detail, "%zu training and %zu test images of %dx%d, %d classes",
             j->train.n, j->test.n, j->train.rows, j->train.cols, arch->classes);
    cnnelm_progress_end(&j->prog, detail);
    const char *dir = c->train.checkpoint_dir;
    if (dir[0] && mkdir(dir, 0777) != 0 && errno != EEXIST)
        return cnnelm_fail(err, "%s: train.checkpoint_dir: cannot create %s: %s", c->path, dir, strerror(errno));
    if (dir[0]) {
        char probe[CNNELM_PATH_MAX + 16];
        snprintf(probe, sizeof probe, "%s/probe", dir);
        if (cnnelm_output_probe(probe, err))
            return cnnelm_fail_prefix(err, "%s: train.checkpoint_dir", c->path);
    }
    return 0;
}

/* The workers, once the run is known to fit in memory (said before any buffer). */
static int open_pool(train_job *j, const cnnelm_run_options *o, const cnnelm_arch *arch, cnnelm_error *err)
{
    const cnnelm_config *c = &j->cfg;
    cnnelm_plugin_log_begin(o->verbose, c->cache_dir);
    cnnelm_memory_plan plan;
    char line[512];
    cnnelm_memory_plan_make(c, arch, &plan);
    for (int t = 0; t < 2; t++) {
        const cnnelm_dataset *ds = t ? &j->test : &j->train;
        if (ds->stream)
            cnnelm_memory_plan_add_data(&plan, (double)cnnelm_stream_hold_bytes(ds->stream));
    }
    if (cnnelm_memory_plan_check(&plan, (double)c->train.memory_limit * 1048576.0, line, sizeof line, err))
        return cnnelm_fail_prefix(err, "%s", c->path);
    cnnelm_progress_note(&j->prog, "%s", line);
    if (cnnelm_worker_pool_open(&j->pool, c, arch, err))
        return -1;
    j->pool_open = 1;
    j->pool.note = note_line;
    j->pool.note_user = &j->prog;
    cnnelm_worker_desc first;
    cnnelm_worker_pool_describe(&j->pool, 0, &first);
    cnnelm_progress_note(&j->prog, "model %s, kernel %d, %d hidden units, %zu parameters; %d worker%s "
                         "(first: %s)", arch->layers, arch->kernel, arch->hidden, arch->n_params,
                         j->pool.n, j->pool.n == 1 ? "" : "s", first.device);
    cnnelm_worker_pool_report_chunks(&j->pool, note_line, &j->prog);
    return 0;
}

/* Rank 0, after training: the model saved, the tables on o->out, the JSON report. */
static int save_and_report(train_job *j, const cnnelm_run_options *o, cnnelm_error *err)
{
    const cnnelm_config *c = &j->cfg;
    cnnelm_report *r = &j->report;
    if (cnnelm_model_set_provenance(&j->model, r->k, c, &j->train, err) ||
        cnnelm_model_save_keeping(&j->model, o->model_path, c->train.checkpoint_dir, err))
        return -1;
    /* the workers as they ended the run (failed devices, fell-back ops) */
    if (cnnelm_report_set_workers(r, &j->pool, err) || cnnelm_report_finish(r, err))
        return -1;
    cnnelm_report_write_table(r, o->out);
    if (o->out)
        fprintf(o->out, "model saved to %s\n", o->model_path);
    if (o->report_path && cnnelm_report_save_json(r, o->report_path, o->out, err))
        return -1;
    if (o->strict && r->chance_n) /* everything is written: --strict only changes the exit status */
        return cnnelm_fail(err, "--strict: %d model%s at chance level (kappa < %.2f), see the warnings",
                           r->chance_n, r->chance_n == 1 ? "" : "s", CNNELM_CHANCE_KAPPA);
    if (o->strict && r->n_warnings > 0)
        return cnnelm_fail(err, "%d warning%s (see above) and --strict: failing the run (model and report "
                           "are written)", r->n_warnings, r->n_warnings == 1 ? "" : "s");
    return 0;
}

int cnnelm_run_train(const cnnelm_run_options *o, cnnelm_error *err)
{
    train_job *j = calloc(1, sizeof *j); /* the config is large: not on the stack */
    if (!j)
        return cnnelm_fail(err, "out of memory");
    j->rank = o->cluster ? o->cluster->rank : 0;
    /* from here a first SIGINT/SIGTERM stops training between chunks, and what is complete is
     * saved (trials.c); a second one ends the process at once */
    cnnelm_interrupt_catch();
    if (j->rank != 0)
        snprintf(j->rank_prefix, sizeof j->rank_prefix, "rank %d: ", j->rank);
    cnnelm_progress_init(&j->prog, o->quiet);
    if (j->rank != 0) {
        /* other ranks report to rank 0, whose lines are the job's: they print nothing but
         * warnings (and their errors) */
        j->prog.mode = CNNELM_PROGRESS_QUIET;
        snprintf(j->prog.prefix, sizeof j->prog.prefix, "%s", j->rank_prefix);
    }
    int linked = 0;
    if (!o->quiet) {
        if (cnnelm_cluster_progress_start(o->cluster, &j->prog, err)) {
            cnnelm_progress_destroy(&j->prog);
            free(j);
            cnnelm_interrupt_release();
            return -1;
        }
        linked = 1;
    }
    cnnelm_report_init(&j->report, &j->prog);
    int rc = -1;
    double t0 = cnnelm_now();
    cnnelm_arch arch;
    if (load(j, o, &arch, err) || open_pool(j, o, &arch, err))
        goto out;
    const cnnelm_config *c = &j->cfg;
    cnnelm_report *r = &j->report;
    r->t_load = cnnelm_now() - t0;
    r->cfg = c;
    r->config_file = c->path;
    r->config_text = c->text;
    r->model_file = o->model_path;
    r->model = &j->model;
    r->classes = arch.classes;
    r->class_names = j->train.class_names;
    r->processes = o->cluster ? o->cluster->size : 1;
    r->has_test_set = j->test.n || c->train.folds > 1;
    double tt = cnnelm_now();
    cnnelm_trials t = { c, &j->train, &j->test, &j->pool, o->cluster, j->rank, o->resume, j->rank_prefix,
                        &j->prog, o->model_path, r, &j->model };
    if (cnnelm_trials_run(&t, &arch, err))
        goto out;
    cnnelm_error late = { "" };
    linked = 0; /* every rank's last report, so the summary line is the job's */
    if (cnnelm_cluster_progress_stop(o->cluster, 1, &late))
        cnnelm_progress_warn(&j->prog, "%s", late.msg);
    cnnelm_progress_finish(&j->prog); /* the results must not land on the live line */
    r->t_train = cnnelm_now() - tt;
    cnnelm_worker_pool_report_fallbacks(&j->pool, note_line, &j->prog);
    /* rank 0 alone writes the model and the report */
    rc = j->rank == 0 ? save_and_report(j, o, err) : 0;
out:
    if (linked)
        cnnelm_cluster_progress_stop(o->cluster, 0, NULL); /* failing: no waiting */
    cnnelm_report_free(&j->report);
    if (j->pool_open)
        cnnelm_worker_pool_close(&j->pool);
    cnnelm_model_free(&j->model);
    cnnelm_dataset_free(&j->train);
    cnnelm_dataset_free(&j->test);
    cnnelm_config_free(&j->cfg);
    cnnelm_progress_destroy(&j->prog);
    free(j);
    cnnelm_interrupt_release(); /* a program that goes on after the call gets signals back */
    return rc;
}
