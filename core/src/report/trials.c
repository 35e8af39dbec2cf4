/* cnnelm trials x folds: per trial a seed, per fold the stratified fold's rows, one experiment
 * each on the worker pool, its results into the report; k-fold's final model on all the data;
 * an interrupt saves what is complete and says what. */
#include "report/trials.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/atomic_file.h"
#include "training/experiment.h"
#include "data/partition.h"
#include "training/train.h"

/* What a trained model file records beyond the weights: partitions, reduce, class names. */
int cnnelm_model_set_provenance(cnnelm_model *m, int partitions, const cnnelm_config *c,
                                const cnnelm_dataset *train, cnnelm_error *err)
{
    m->partitions = (uint32_t)partitions;
    m->reduce = partitions > 1 ? 1u + (uint32_t)c->train.reduce : 0;
    return cnnelm_model_set_class_names(m, train->class_names, err);
}

/* The final save: when -o cannot be written after all (a full disk, a directory gone), the
 * trained model is not lost: it goes beside the checkpoints or into $TMPDIR, and the error
 * names where. */
int cnnelm_model_save_keeping(const cnnelm_model *m, const char *path, const char *checkpoint_dir,
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

/* The work of the whole run, set on the progress before the first experiment. */
static void set_run_work(const cnnelm_trials *j, int folds)
{
    const cnnelm_config *c = j->cfg;
    int k = c->train.partitioning == CNNELM_PART_BY_SOURCE ? j->train->n_sources : c->train.partitions;
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
            size_t held = j->train->n / (size_t)folds;
            experiment_work(c, k, j->train->n - held, held, rank0, c->train.compare_single, share, &f1, &t1);
            fwd += folds * f1;
            tune += folds * t1;
        } else {
            experiment_work(c, k, j->train->n, j->test->n, rank0, c->train.compare_single, share, &f1, &t1);
            fwd += f1;
            tune += t1;
        }
    }
    if (folds > 1) { /* the final model on all the data, no test set, no single model */
        experiment_work(c, k, j->train->n, 0, rank0, 0, share, &f1, &t1);
        fwd += f1;
        tune += t1;
    }
    cnnelm_worker_desc first;
    cnnelm_worker_pool_describe(j->pool, 0, &first);
    cnnelm_train_params tp = cnnelm_train_params_from_config(c);
    cnnelm_progress_set_run(j->prog, fwd, tune, cnnelm_finetune_weight(&tp, first.chunk));
}

/* ---- an interrupt (SIGINT, SIGTERM): what is complete is kept, and the error says what ---- */

static const char *signal_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "a signal";
}

/* After an experiment stopped by an interrupt: with one partition, its last complete iteration
 * is saved to -o when this run's model is the one saved (`saved_run`); with several, the error
 * names the finished (checkpointed) partitions. Always returns -1 with err set. */
static int interrupted_run(const cnnelm_trials *j, cnnelm_experiment *x, const char *run, int saved_run, cnnelm_error *err)
{
    const cnnelm_config *c = j->cfg;
    const char *sig = signal_name(cnnelm_interrupted());
    cnnelm_progress_finish(j->prog);
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
        if (cnnelm_model_set_provenance(&r->model, 1, c, j->train, &save_err) ||
            cnnelm_model_save_keeping(&r->model, j->model_path, c->train.checkpoint_dir, &save_err))
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

/* An experiment's inputs from the run's (train and test rows are the caller's). */
static void experiment_setup(const cnnelm_trials *j, cnnelm_experiment *x, const cnnelm_config *cfg,
                             uint64_t seed, int fold)
{
    memset(x, 0, sizeof *x);
    x->cfg = cfg;
    x->seed = seed;
    x->prog = j->prog;
    x->pool = j->pool;
    x->cluster = j->cluster;
    x->fold = fold;
    x->resume = j->resume;
    x->rank_prefix = j->rank_prefix;
}

/* Rank 0: x goes into the report; `keep`: its reduced model is the one saved. */
static int take_results(const cnnelm_trials *j, const cnnelm_experiment *x, int trial, int fold, uint64_t seed,
                        const char *run, int keep, cnnelm_error *err)
{
    if (cnnelm_report_add_run(j->report, x, trial, fold, seed, run, err))
        return -1;
    if (!keep)
        return 0;
    if (cnnelm_model_copy(j->model, &x->reduced, err))
        return -1;
    return cnnelm_report_set_test(j->report, &x->reduced_test, x->test.n ? x->reduced_confusion : NULL, err);
}

/* k-fold: the folds estimate; the model kept is trained on all the training data. */
static int final_all_data(const cnnelm_trials *j, const cnnelm_arch *arch, cnnelm_error *err)
{
    const cnnelm_config *c = j->cfg;
    /* a shallow copy (only read, its text never freed), on the heap: the config is large */
    cnnelm_config *final_cfg = malloc(sizeof *final_cfg);
    if (!final_cfg)
        return cnnelm_fail(err, "out of memory");
    *final_cfg = *c;
    final_cfg->train.compare_single = 0;
    cnnelm_experiment x;
    experiment_setup(j, &x, final_cfg, c->train.seed, 0);
    x.train = (cnnelm_subset){ j->train, NULL, j->train->n };
    x.test = (cnnelm_subset){ j->train, NULL, 0 };
    cnnelm_progress_note(j->prog, "final model: trained on all %zu training examples, seed %llu (the %d "
                         "folds above only estimate its accuracy)", j->train->n,
                         (unsigned long long)x.seed, c->train.folds);
    int rc = cnnelm_experiment_run(&x, arch, err);
    if (rc != 0 && cnnelm_interrupted())
        rc = interrupted_run(j, &x, "final model: ", 1, err);
    if (rc == 0 && j->rank == 0)
        rc = take_results(j, &x, 1, -1, x.seed, "final model: ", 1, err);
    cnnelm_experiment_free(&x);
    free(final_cfg);
    return rc;
}

int cnnelm_trials_run(const cnnelm_trials *j, const cnnelm_arch *arch, cnnelm_error *err)
{
    const cnnelm_config *c = j->cfg;
    int folds = c->train.folds > 1 ? c->train.folds : 1;
    int runs = c->train.trials * folds;
    if (j->report)
        j->report->runs_total = runs;
    set_run_work(j, folds);
    int rc = 0;
    for (int t = 0; t < c->train.trials && rc == 0; t++) {
        uint64_t seed = c->train.seed + (uint64_t)t;
        cnnelm_partitions fold_parts;
        memset(&fold_parts, 0, sizeof fold_parts);
        size_t *train_rows = NULL;
        if (folds > 1) {
            if (cnnelm_partition(NULL, j->train->n, j->train->labels, folds, CNNELM_PART_STRATIFIED,
                                 seed ^ 0x5f0f5f0fULL, &fold_parts, err))
                return cnnelm_fail_prefix(err, "%s: train.folds", c->path);
            train_rows = malloc(j->train->n * sizeof *train_rows);
            if (!train_rows) {
                cnnelm_partitions_free(&fold_parts);
                return cnnelm_fail(err, "out of memory");
            }
        }
        for (int f = 0; f < folds && rc == 0; f++) {
            cnnelm_experiment x;
            experiment_setup(j, &x, c, seed, f + 1);
            if (folds > 1) {
                size_t n = 0;
                for (int g = 0; g < folds; g++)
                    if (g != f)
                        for (size_t i = fold_parts.start[g]; i < fold_parts.start[g + 1]; i++)
                            train_rows[n++] = fold_parts.rows[i];
                x.train = (cnnelm_subset){ j->train, train_rows, n };
                x.test = (cnnelm_subset){ j->train, fold_parts.rows + fold_parts.start[f],
                                          cnnelm_partition_size(&fold_parts, f) };
            } else {
                x.train = (cnnelm_subset){ j->train, NULL, j->train->n };
                x.test = (cnnelm_subset){ j->test, NULL, j->test->n };
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
                cnnelm_progress_note(j->prog, "%sseed %llu, %zu training examples, %zu %s examples", run,
                                     (unsigned long long)seed, x.train.n, x.test.n,
                                     folds > 1 ? "validation" : "test");
            rc = cnnelm_experiment_run(&x, arch, err);
            if (rc != 0 && cnnelm_interrupted())
                rc = interrupted_run(j, &x, run, t == 0 && f == 0 && folds == 1, err);
            /* rank 0 holds the results; the first run's reduced model is saved, except with
             * k-fold (its final model) */
            if (rc == 0 && j->rank == 0)
                rc = take_results(j, &x, t + 1, folds > 1 ? f + 1 : 0, seed, run, t == 0 && f == 0 && folds == 1,
                                  err);
            cnnelm_experiment_free(&x);
        }
        free(train_rows);
        cnnelm_partitions_free(&fold_parts);
    }
    if (rc == 0 && folds > 1)
        rc = final_all_data(j, arch, err);
    return rc;
}
