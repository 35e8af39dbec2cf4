/* cnnelm experiments: Map over partitions on the worker pool, Reduce, evaluation (see
 * experiment.h); the partitions' checkpoints are in checkpoint.c. Results are stored by
 * partition index, never by finishing order. */
#define _GNU_SOURCE
#include "training/experiment.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnelm/cluster.h"
#include "cnnelm/reduce.h"
#include "training/checkpoint.h"
#include "training/part_facts.h"
#include "training/reducer.h"
#include "training/sync.h"


static int evaluate_into(cnnelm_net *net, const cnnelm_model *m, const cnnelm_subset *test,
                         cnnelm_progress *prog, cnnelm_metrics *out, uint64_t *confusion_out,
                         cnnelm_error *err)
{
    memset(out, 0, sizeof *out);
    if (test->n == 0)
        return 0;
    int C = m->arch.classes;
    uint64_t *conf = calloc((size_t)C * C, sizeof *conf);
    if (!conf)
        return cnnelm_fail(err, "out of memory");
    int rc = cnnelm_evaluate(net, m, test, conf, prog, "test", err);
    if (rc == 0) {
        cnnelm_metrics_compute(conf, C, out);
        if (confusion_out)
            memcpy(confusion_out, conf, (size_t)C * C * sizeof *conf);
    }
    free(conf);
    return rc;
}

/* FNV-1a over a model's kernels, biases and (with_beta) beta. */
static uint64_t weights_digest(const cnnelm_model *m, int with_beta)
{
    uint64_t h = 14695981039346656037ull;
    const unsigned char *b[2] = { (const unsigned char *)m->params, (const unsigned char *)m->beta };
    size_t n[2] = { m->arch.n_params * sizeof *m->params,
                    (size_t)m->arch.hidden * (size_t)m->arch.classes * sizeof *m->beta };
    for (int k = 0; k < 1 + (with_beta != 0); k++)
        for (size_t i = 0; b[k] && i < n[k]; i++)
            h = (h ^ b[k][i]) * 1099511628211ull;
    return h;
}

/* After a partition's training (rc its outcome): its time, its evaluation where it was
 * trained, then the fold into the reduce and its weights freed. Shared by the Map's tasks and
 * the periodic averaging's last round (sync.c). */
int cnnelm_experiment_part_done(cnnelm_experiment *x, const cnnelm_map_job *j, cnnelm_worker *w, int p,
                                double t0, int rc, cnnelm_progress *prog, cnnelm_error *err)
{
    cnnelm_part_result *r = &j->res[p];
    if (rc == 0 && j->checkpoints && !r->resumed)
        rc = cnnelm_checkpoint_save(x, j->run_text, &j->parts[p], p, &r->model, err);
    r->seconds = cnnelm_now() - t0;
    /* each partition's model is evaluated where it was trained, in parallel with the others */
    if (rc == 0 && j->n > 1)
        rc = evaluate_into(&w->net, &r->model, &x->test, prog, &r->test, NULL, err);
    if (rc == 0 && j->n > 1)
        cnnelm_progress_note(prog, "trained in %.1f s%s", r->seconds, x->test.n ? ", evaluated" : "");
    /* folded last, after everything that can fail: a task run again after a device failure has
     * added nothing yet. Then the weights go: the sums hold them, the checkpoint (if any) is on
     * disk, and the report needs only the facts, so memory does not grow with k (a digest
     * stays, for runs to compare partitions). */
    if (rc == 0 && j->red) {
        rc = cnnelm_reducer_add(j->red, &r->model, p, NULL, err);
        r->weights_digest = weights_digest(&r->model, 1);
        r->kernels_digest = weights_digest(&r->model, 0);
        cnnelm_model_free(&r->model); /* frees the arrays; architecture and facts stay */
    }
    return rc;
}

/* The progress of partition p on worker w (prefix with the partition and worker). */
void cnnelm_experiment_part_progress(cnnelm_experiment *x, const cnnelm_map_job *j, cnnelm_worker *w,
                                     int p, cnnelm_progress *child)
{
    char prefix[96], label[64];
    cnnelm_worker_label(x->pool, w, label, sizeof label);
    snprintf(prefix, sizeof prefix, "%s%s %d/%d [%s]: ", x->rank_prefix, j->what, p + 1, j->n, label);
    cnnelm_progress_init_worker(child, x->prog, prefix, w->index);
}

static int train_task(cnnelm_worker *w, int task, void *user, cnnelm_error *err)
{
    cnnelm_map_job *j = user;
    cnnelm_experiment *x = j->x;
    int p = j->ids ? j->ids[task] : task;
    cnnelm_part_result *r = &j->res[p];
    /* a task may run again after a device failure: start from nothing */
    cnnelm_model_free(&r->model);
    cnnelm_train_log_free(&r->log);
    cnnelm_progress child, *prog = x->prog;
    if (j->n > 1) {
        cnnelm_experiment_part_progress(x, j, w, p, &child);
        prog = &child;
    }
    double t0 = cnnelm_now();
    r->worker = w->index;
    r->rank = x->cluster ? x->cluster->rank : 0;
    r->examples = j->parts[p].n;
    int rc = 0;
    if (j->checkpoints && x->resume && cnnelm_checkpoint_load(x, j->run_text, j->init, &j->parts[p], p, r)) {
        cnnelm_progress_note(prog, "resumed from its checkpoint");
    } else {
        rc = cnnelm_model_like(&r->model, j->init, err);
        /* With several partitions the per-iteration test accuracy would multiply the cost by k:
         * each partition's model is evaluated once, at the end. */
        cnnelm_subset none = { x->test.ds, NULL, 0 };
        const cnnelm_subset *series_test = j->n > 1 ? &none : &x->test;
        cnnelm_train_params tp = cnnelm_train_params_from_config(x->cfg);
        if (rc == 0)
            rc = cnnelm_train_model(&w->net, &r->model, &j->parts[p], series_test, &tp, prog,
                                    &r->log, err);
    }
    rc = cnnelm_experiment_part_done(x, j, w, p, t0, rc, prog, err);
    if (j->n > 1)
        cnnelm_progress_destroy(&child);
    if (rc != 0)
        cnnelm_fail_prefix(err, "%s %d", j->what, p + 1);
    return rc;
}

/* The partitions this rank owns. */
static int local_ids(const cnnelm_cluster *c, int k, int *ids)
{
    int n = 0;
    for (int p = 0; p < k; p++)
        if (cnnelm_cluster_owner(c, p) == (c ? c->rank : 0))
            ids[n++] = p;
    return n;
}

/* Evaluation of several models on the test set, one task each. */
typedef struct eval_job {
    const cnnelm_model **m;
    const cnnelm_subset *test;
    cnnelm_progress *prog;
    cnnelm_metrics **out;
    uint64_t *confusion;          /* filled for task 0 when non-NULL */
} eval_job;

static int eval_task(cnnelm_worker *w, int task, void *user, cnnelm_error *err)
{
    eval_job *j = user;
    cnnelm_progress child;
    cnnelm_progress_init_worker(&child, j->prog, "", w->index);
    int rc = evaluate_into(&w->net, j->m[task], j->test, &child, j->out[task],
                           task == 0 ? j->confusion : NULL, err);
    cnnelm_progress_destroy(&child);
    return rc;
}

/* The facts of partition p to rank 0 (part_facts.h), as cnnelm_cluster_gather_each's callbacks. */
static int encode_facts(void *user, int p, unsigned char **out, size_t *len, cnnelm_error *err)
{
    const cnnelm_experiment *x = user;
    return cnnelm_part_facts_encode(&x->parts[p], out, len, err);
}

static int decode_facts(void *user, int p, const unsigned char *buf, size_t len, cnnelm_error *err)
{
    cnnelm_experiment *x = user;
    return cnnelm_part_facts_decode(&x->parts[p], p, buf, len, err);
}

/* Evaluates x->reduced on this rank's share of the test set (examples [n r / P, n (r+1) / P))
 * and sums the confusion matrices over the ranks: integers, so exact in any order. */
static int evaluate_reduced(cnnelm_experiment *x, cnnelm_error *err)
{
    const cnnelm_cluster *c = x->cluster;
    int P = c ? c->size : 1, rank = c ? c->rank : 0, C = x->reduced.arch.classes;
    size_t n = x->test.n, lo = n * (size_t)rank / (size_t)P, hi = n * (size_t)(rank + 1) / (size_t)P;
    size_t *rows = NULL;
    if (!x->test.rows && hi > lo) {
        rows = malloc((hi - lo) * sizeof *rows);
        if (!rows)
            return cnnelm_fail(err, "out of memory");
        for (size_t i = lo; i < hi; i++)
            rows[i - lo] = i;
    }
    cnnelm_subset share = { x->test.ds, x->test.rows ? x->test.rows + lo : rows, hi - lo };
    int64_t *conf = calloc((size_t)C * C, sizeof *conf);
    int rc = conf ? 0 : cnnelm_fail(err, "out of memory");
    if (rc == 0 && share.n > 0) {
        const cnnelm_model *em[1] = { &x->reduced };
        cnnelm_metrics part;
        cnnelm_metrics *eo[1] = { &part };
        eval_job ej = { em, &share, x->prog, eo, x->reduced_confusion };
        rc = cnnelm_worker_pool_run(x->pool, 1, eval_task, &ej, err);
    }
    for (int i = 0; rc == 0 && i < C * C; i++)
        conf[i] = (int64_t)x->reduced_confusion[i];
    if (rc == 0)
        rc = cnnelm_cluster_allreduce_i64(c, conf, C * C, CNNELM_CLUSTER_SUM, "the confusion matrix", err);
    for (int i = 0; rc == 0 && i < C * C; i++)
        x->reduced_confusion[i] = (uint64_t)conf[i];
    if (rc == 0)
        cnnelm_metrics_compute(x->reduced_confusion, C, &x->reduced_test);
    free(conf);
    free(rows);
    return rc;
}

/* Training examples per class in a partition, for the report (which classes each one saw). */
static void count_classes(const cnnelm_subset *s, uint64_t *count)
{
    for (size_t i = 0; i < s->n; i++)
        count[s->ds->labels[s->rows ? s->rows[i] : i]]++;
}

int cnnelm_experiment_run(cnnelm_experiment *x, const cnnelm_arch *arch, cnnelm_error *err)
{
    const cnnelm_config *c = x->cfg;
    int k = c->train.partitions;
    int rank = x->cluster ? x->cluster->rank : 0;
    cnnelm_model init;
    cnnelm_partitions parts;
    memset(&parts, 0, sizeof parts);
    cnnelm_subset *subs = NULL;
    int *ids = NULL;
    char *run_text = NULL;
    int rc = -1;
    int lambda_auto = !(c->model.lambda > 0); /* "auto" */
    if (cnnelm_model_init(&init, arch, lambda_auto ? 1.0 : c->model.lambda, x->seed,
                          c->model.init != CNNELM_INIT_UNIFORM, err))
        return -1;
    if (c->model.init == CNNELM_INIT_PATCHES &&
        cnnelm_model_init_patches(&init, x->train.ds, x->train.rows, x->train.n, x->seed,
                                  c->model.whiten, err)) {
        cnnelm_model_free(&init);
        return -1;
    }
    if (lambda_auto)
        init.flags |= CNNELM_MODEL_LAMBDA_AUTO; /* every partition, and the reduce, choose it */
    /* the initial weights only: each partition gets its own U and V (cnnelm_model_like) */
    free(init.U);
    free(init.V);
    init.U = init.V = NULL;
    cnnelm_fit_opts fo = cnnelm_fit_opts_from_config(c);
    /* the partition keys: labels, or each example's source for by-source */
    const uint8_t *keys = x->train.ds->labels;
    if (c->train.partitioning == CNNELM_PART_BY_SOURCE) {
        keys = x->train.ds->source;
        if (!keys) {
            cnnelm_fail(err, "train.partitioning = \"by-source\" needs data.sources");
            goto out;
        }
        k = x->train.ds->n_sources;
    }
    if (cnnelm_partition(x->train.rows, x->train.n, keys, k, c->train.partitioning, x->seed, &parts,
                         err)) {
        cnnelm_fail_prefix(err, "%s: train.partitions", c->path);
        goto out;
    }
    x->k = k;
    subs = calloc((size_t)k, sizeof *subs);
    ids = calloc((size_t)k, sizeof *ids);
    x->parts = calloc((size_t)k, sizeof *x->parts);
    x->reduced_confusion = calloc((size_t)arch->classes * arch->classes, sizeof(uint64_t));
    if (!subs || !ids || !x->parts || !x->reduced_confusion) {
        cnnelm_fail(err, "out of memory");
        goto out;
    }
    for (int p = 0; p < k; p++) {
        subs[p] = (cnnelm_subset){ x->train.ds, parts.rows + parts.start[p], cnnelm_partition_size(&parts, p) };
        count_classes(&subs[p], x->parts[p].class_examples);
    }

    /* Map: this rank's partitions on its workers */
    double t0 = cnnelm_now();
    int mine = local_ids(x->cluster, k, ids);
    if (k > 1)
        /* x->prog already carries the rank's prefix */
        cnnelm_progress_note(x->prog, "map: %d of %d partitions (%s) on %d worker%s", mine, k, cnnelm_partitioning_name(c->train.partitioning), x->pool->n,
                             x->pool->n == 1 ? "" : "s");
    int checkpoints = c->train.checkpoint_dir[0] != '\0';
    if (checkpoints && !(run_text = cnnelm_checkpoint_run_text(x))) {
        cnnelm_fail(err, "out of memory");
        goto out;
    }
    /* k > 1: each partition is folded into this rank's sums as soon as it is trained */
    cnnelm_reducer red;
    int have_red = 0;
    if (k > 1) {
        if (cnnelm_reducer_init(&red, &init, c->train.reduce, err))
            goto out;
        red.ref_name = "the initial weights";
        have_red = 1;
    }
    cnnelm_map_job mj = { x, &init, subs, x->parts, k, ids, checkpoints, "partition", have_red ? &red : NULL,
                   run_text };
    /* train.sync_every: the partitions fine-tune together, averaged every n batches (sync.c) */
    int sync = c->train.sync_every > 0 && k > 1 && c->train.iterations > 0;
    int r = 0;
    if (sync && x->resume)
        r = cnnelm_fail(err, "train --resume with train.sync_every = %d: the partitions fine-tune "
                        "together, so none can resume alone from its checkpoint; run without "
                        "--resume, or with train.sync_every = 0", c->train.sync_every);
    else if (sync)
        r = cnnelm_sync_map(&mj, mine, err);
    else if (mine > 0)
        r = cnnelm_worker_pool_run(x->pool, mine, train_task, &mj, err);
    /* the facts the report needs, point to point (so a rank that never finishes is named),
     * then the sums over every rank (a tree of collectives, exact) */
    if (r == 0)
        r = cnnelm_cluster_gather_each(x->cluster, k, encode_facts, decode_facts, x, "facts", err);
    if (r == 0 && have_red)
        r = cnnelm_reducer_combine(&red, x->cluster, err);
    x->map_seconds = cnnelm_now() - t0;

    /* Reduce: the combined model on every rank (U, V and the solve on rank 0) */
    t0 = cnnelm_now();
    if (r == 0 && k == 1) {
        r = rank == 0 ? cnnelm_model_copy(&x->reduced, &x->parts[0].model, err) : 0;
        if (r == 0)
            r = cnnelm_cluster_bcast_model(x->cluster, &x->reduced, err); /* to evaluate everywhere */
    } else if (r == 0 && c->train.reduce == CNNELM_REDUCE_REFIT) {
        r = cnnelm_reducer_refit(&red, x->pool, x->cluster, subs, k, &fo, x->prog, &x->reduced,
                                 &x->reduced_lambda, err);
    } else if (r == 0) {
        r = cnnelm_reducer_model(&red, rank, &x->reduced, err);
    }
    if (have_red)
        cnnelm_reducer_free(&red);
    x->reduce_seconds = cnnelm_now() - t0;
    if (r)
        goto out;

    /* Evaluation of the reduced model by every rank on its share (the partitions' were
     * evaluated where trained) */
    if (x->test.n) {
        if (evaluate_reduced(x, err))
            goto out;
        if (k == 1)
            x->parts[0].test = x->reduced_test;
    }

    /* The single model on all the data, for comparison (rank 0) */
    if (c->train.compare_single && k > 1 && rank == 0) {
        cnnelm_map_job sj = { x, &init, &x->train, &x->single, 1, NULL, 0, "single model", NULL, NULL };
        cnnelm_progress_note(x->prog, "single model on all %zu training examples", x->train.n);
        if (cnnelm_worker_pool_run(x->pool, 1, train_task, &sj, err))
            goto out;
        const cnnelm_model *sm[1] = { &x->single.model };
        cnnelm_metrics *so[1] = { &x->single.test };
        eval_job ej = { sm, &x->test, x->prog, so, NULL };
        if (x->test.n && cnnelm_worker_pool_run(x->pool, 1, eval_task, &ej, err))
            goto out;
        x->has_single = 1;
    }
    rc = 0;
out:
    free(run_text);
    cnnelm_model_free(&init);
    cnnelm_partitions_free(&parts);
    free(subs);
    free(ids);
    return rc;
}

void cnnelm_experiment_free(cnnelm_experiment *x)
{
    for (int p = 0; p < x->k && x->parts; p++) {
        cnnelm_model_free(&x->parts[p].model);
        cnnelm_train_log_free(&x->parts[p].log);
    }
    free(x->parts);
    x->parts = NULL;
    cnnelm_model_free(&x->reduced);
    free(x->reduced_confusion);
    x->reduced_confusion = NULL;
    if (x->has_single) {
        cnnelm_model_free(&x->single.model);
        cnnelm_train_log_free(&x->single.log);
    }
    x->has_single = 0;
}
