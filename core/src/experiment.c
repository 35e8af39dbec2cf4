/* cnnelm experiments: Map over partitions on the worker pool, Reduce, evaluation (see
 * experiment.h). Results are stored by partition index, never by finishing order. */
#define _GNU_SOURCE
#include "experiment.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "cnnelm/cluster.h"
#include "cnnelm/reduce.h"

void cnnelm_worker_label(const cnnelm_pool *pool, const cnnelm_worker *w, char *out, size_t cap)
{
    /* "cpu:0", or "cpu:0#1" when another worker has the same device, so lines tell them apart */
    int shared = 0;
    for (int i = 0; i < pool->n; i++)
        shared += i != w->index && strcmp(pool->w[i].net.where, w->net.where) == 0;
    if (shared)
        snprintf(out, cap, "%.40s#%d", w->net.where, w->index);
    else
        snprintf(out, cap, "%.40s", w->net.where);
}

typedef struct map_job {
    cnnelm_experiment *x;
    const cnnelm_model *init;
    const cnnelm_subset *parts;   /* the subsets to train on */
    cnnelm_part_result *res;      /* one per subset */
    int n;                        /* subsets in all */
    const int *ids;               /* task -> subset (this rank's share); NULL: task = subset */
    int checkpoints;              /* partitions are checkpointed (not the single model) */
    const char *what;             /* "partition" or "single model" */
} map_job;

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

/* The checkpoint file of partition p of this run. */
static void checkpoint_path(const cnnelm_experiment *x, int p, char *out, size_t cap)
{
    snprintf(out, cap, "%s/seed%llu-fold%d-part%dof%d.model", x->cfg->train.checkpoint_dir,
             (unsigned long long)x->seed, x->fold, p + 1, x->k);
}

/* ---- checkpoint fingerprints ----
 * Beside each checkpoint NAME.model, NAME.model.fingerprint lists, one "key value" line each,
 * everything that determines the partition's result: the settings that change training, the
 * training files' identity and the partition's examples. --resume reuses a checkpoint only when
 * every line matches, and otherwise says which setting differs. Settings that do not change the
 * model (workers, threads, reduce, the test set, trials and checkpoint_dir) are left out. */
#define FINGERPRINT_VERSION 1

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 1099511628211ull;
    return h;
}

/* A data file's identity: size, mtime and a hash of its first and last 64 KiB (header
 * included), so an edited or replaced file is noticed without reading it all. */
static void fp_file(FILE *out, const char *key, const char *path)
{
    if (!path || !*path)
        return;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(out, "%s %s unreadable\n", key, path);
        if (fd >= 0)
            close(fd);
        return;
    }
    uint64_t h = 14695981039346656037ull;
    unsigned char block[65536];
    off_t at[2] = { 0, st.st_size > (off_t)sizeof block ? st.st_size - (off_t)sizeof block : 0 };
    for (int i = 0; i < 2; i++) {
        ssize_t got = pread(fd, block, sizeof block, at[i]);
        if (got > 0)
            h = fnv1a(h, block, (size_t)got);
    }
    close(fd);
    fprintf(out, "%s %s size %lld mtime %lld.%09ld hash %016llx\n", key, path, (long long)st.st_size,
            (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec, (unsigned long long)h);
}

/* The fingerprint text of partition p (malloc'd), or NULL when out of memory. */
static char *fingerprint(const cnnelm_experiment *x, const map_job *j, int p)
{
    const cnnelm_config *c = x->cfg;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out)
        return NULL;
    fprintf(out, "fingerprint.version %d\n", FINGERPRINT_VERSION);
    fprintf(out, "model.layers %s\nmodel.kernel %d\n", c->model.layers, c->model.kernel);
    fprintf(out, "model.activation %s\nmodel.pooling %s\nmodel.elm_activation %s\n",
            cnnelm_activation_name(c->model.activation), cnnelm_pooling_name(c->model.pooling),
            cnnelm_activation_name(c->model.elm_activation));
    fprintf(out, "model.lambda %.17g\nmodel.init %s\n", c->model.lambda,
            c->model.init == CNNELM_INIT_ZERO_MEAN ? "zero-mean" : "uniform");
    fprintf(out, "train.seed %llu\ntrain.iterations %d\ntrain.batch %ld\ntrain.chunk %d\n",
            (unsigned long long)x->seed, c->train.iterations, c->train.batch, c->train.chunk);
    fprintf(out, "train.learning_rate %.17g\ntrain.lr_schedule %s\ntrain.momentum %.17g\n",
            c->train.learning_rate, cnnelm_lr_schedule_name(c->train.lr_schedule), c->train.momentum);
    fprintf(out, "train.partitions %d\ntrain.partitioning %s\ntrain.folds %d\nfold %d\n", x->k,
            cnnelm_partitioning_name(c->train.partitioning), c->train.folds, x->fold);
    fprintf(out, "data.train_limit %ld\ndata.extend %u\n", c->data.train_limit, c->data.extend);
    fp_file(out, "data.train_images", c->data.train_images);
    fp_file(out, "data.train_labels", c->data.train_labels);
    for (int s = 0; s < c->data.n_sources; s++) {
        char key[64];
        snprintf(key, sizeof key, "data.sources.%d.train_images", s);
        fp_file(out, key, c->data.sources[s].train_images);
        snprintf(key, sizeof key, "data.sources.%d.train_labels", s);
        fp_file(out, key, c->data.sources[s].train_labels);
    }
    const cnnelm_subset *sub = &j->parts[p];
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < sub->n; i++) {
        uint64_t row = sub->rows ? (uint64_t)sub->rows[i] : (uint64_t)i;
        h = fnv1a(h, &row, sizeof row);
    }
    fprintf(out, "partition.examples %zu\npartition.ids %016llx\n", sub->n, (unsigned long long)h);
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(65537);
    size_t n = buf ? fread(buf, 1, 65536, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

/* The first line of `want` that `have` lacks, as "KEY (now: VALUE; the checkpoint's: VALUE)". */
static void first_difference(const char *have, const char *want, char *out, size_t cap)
{
    for (const char *line = want; *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        const char *sp = memchr(line, ' ', n);
        size_t klen = sp ? (size_t)(sp - line) : n;
        /* the checkpoint's line with the same key */
        const char *old = NULL;
        size_t olen = 0;
        for (const char *h = have; *h;) {
            const char *he = strchr(h, '\n');
            size_t hn = he ? (size_t)(he - h) : strlen(h);
            if (hn > klen && strncmp(h, line, klen) == 0 && h[klen] == ' ') {
                old = h;
                olen = hn;
                break;
            }
            h = he ? he + 1 : h + hn;
        }
        if (!old || olen != n || memcmp(old, line, n) != 0) {
            snprintf(out, cap, "%.*s differs (now%.*s; the checkpoint's%.*s)", (int)klen, line,
                     (int)(n - klen), line + klen, old ? (int)(olen - klen) : 5,
                     old ? old + klen : " none");
            return;
        }
        line = end ? end + 1 : line + n;
    }
    snprintf(out, cap, "the fingerprint differs");
}

/* A usable checkpoint: its fingerprint matches this run's exactly. Says why any other
 * checkpoint found is trained again. */
static int load_checkpoint(const cnnelm_experiment *x, const map_job *j, int p, cnnelm_part_result *r)
{
    char path[CNNELM_PATH_MAX + 64], fp_path[CNNELM_PATH_MAX + 96];
    checkpoint_path(x, p, path, sizeof path);
    snprintf(fp_path, sizeof fp_path, "%s.fingerprint", path);
    if (access(path, F_OK) != 0)
        return 0; /* not trained yet */
    cnnelm_model m;
    cnnelm_error e;
    if (cnnelm_model_load(&m, path, &e) != 0) {
        cnnelm_progress_note(x->prog, "checkpoint is corrupt, training again: %s", e.msg);
        return 0;
    }
    char *want = fingerprint(x, j, p), *have = read_text(fp_path);
    int ok = want && have && strcmp(want, have) == 0 && cnnelm_arch_equal(&m.arch, &j->init->arch) &&
             m.seed == j->init->seed && m.n_examples == j->parts[p].n;
    if (!ok) {
        char why[CNNELM_PATH_MAX + 512];
        if (!have)
            snprintf(why, sizeof why, "it has no fingerprint %s (an older cnnelm or an interrupted save)",
                     fp_path);
        else if (!want)
            snprintf(why, sizeof why, "out of memory");
        else if (strcmp(want, have) != 0)
            first_difference(have, want, why, sizeof why);
        else
            snprintf(why, sizeof why, "its model does not match its fingerprint");
        cnnelm_progress_note(x->prog, "checkpoint %s is not this run's partition %d, training again: %s",
                             path, p + 1, why);
        cnnelm_model_free(&m);
    } else {
        r->model = m;
        r->resumed = 1;
    }
    free(want);
    free(have);
    return ok;
}

/* The model first, then its fingerprint; an old fingerprint goes before the model is replaced,
 * so a save cut short leaves a checkpoint that is trained again, never a stale match. */
static int save_checkpoint(const cnnelm_experiment *x, const map_job *j, int p, const cnnelm_model *m,
                           cnnelm_error *err)
{
    char path[CNNELM_PATH_MAX + 64], fp_path[CNNELM_PATH_MAX + 96];
    checkpoint_path(x, p, path, sizeof path);
    snprintf(fp_path, sizeof fp_path, "%s.fingerprint", path);
    if (unlink(fp_path) != 0 && errno != ENOENT)
        return cnnelm_fail(err, "%s: cannot remove the old fingerprint: %s", fp_path, strerror(errno));
    if (cnnelm_model_save(m, path, err))
        return -1;
    char *text = fingerprint(x, j, p);
    if (!text)
        return cnnelm_fail(err, "out of memory");
    cnnelm_atomic_file af;
    int rc = cnnelm_atomic_open(&af, fp_path, err);
    if (rc == 0) {
        size_t n = strlen(text);
        if (fwrite(text, 1, n, af.f) != n) {
            int e = errno;
            cnnelm_atomic_abort(&af);
            rc = cnnelm_fail(err, "%s: cannot write: %s", fp_path, strerror(e));
        } else {
            rc = cnnelm_atomic_commit(&af, err);
        }
    }
    free(text);
    return rc;
}

static int train_task(cnnelm_worker *w, int task, void *user, cnnelm_error *err)
{
    map_job *j = user;
    cnnelm_experiment *x = j->x;
    int p = j->ids ? j->ids[task] : task;
    cnnelm_part_result *r = &j->res[p];
    /* a task may run again after a device failure: start from nothing */
    cnnelm_model_free(&r->model);
    cnnelm_train_log_free(&r->log);
    char prefix[96], label[64];
    cnnelm_progress child, *prog = x->prog;
    if (j->n > 1) {
        cnnelm_worker_label(x->pool, w, label, sizeof label);
        snprintf(prefix, sizeof prefix, "%s%s %d/%d [%s]: ", x->rank_prefix, j->what, p + 1, j->n, label);
        cnnelm_progress_init_worker(&child, x->prog, prefix, w->index);
        prog = &child;
    }
    double t0 = cnnelm_now();
    r->worker = w->index;
    r->rank = x->cluster ? x->cluster->rank : 0;
    r->examples = j->parts[p].n;
    int rc = 0;
    if (j->checkpoints && x->resume && load_checkpoint(x, j, p, r)) {
        cnnelm_progress_note(prog, "resumed from its checkpoint");
    } else {
        rc = cnnelm_model_copy(&r->model, j->init, err);
        /* With several partitions the per-iteration test accuracy would multiply the cost by k:
         * each partition's model is evaluated once, at the end. */
        cnnelm_subset none = { x->test.ds, NULL, 0 };
        const cnnelm_subset *series_test = j->n > 1 ? &none : &x->test;
        cnnelm_train_params tp = cnnelm_train_params_from_config(x->cfg);
        if (rc == 0)
            rc = cnnelm_train_model(&w->net, &r->model, &j->parts[p], series_test, &tp, prog,
                                    &r->log, err);
        if (rc == 0 && j->checkpoints)
            rc = save_checkpoint(x, j, p, &r->model, err);
    }
    r->seconds = cnnelm_now() - t0;
    /* each partition's model is evaluated where it was trained, in parallel with the others */
    if (rc == 0 && j->n > 1)
        rc = evaluate_into(&w->net, &r->model, &x->test, prog, &r->test, NULL, err);
    if (rc == 0 && j->n > 1)
        cnnelm_progress_note(prog, "trained in %.1f s%s", r->seconds, x->test.n ? ", evaluated" : "");
    if (j->n > 1)
        cnnelm_progress_destroy(&child);
    if (rc != 0)
        cnnelm_fail_prefix(err, "%s %d", j->what, p + 1);
    return rc;
}

typedef struct refit_job {
    const cnnelm_model *avg;
    const cnnelm_subset *parts;
    const int *ids;               /* task -> partition */
    double *U, *V, *n;            /* per partition: L*L, L*C, 1 */
    const cnnelm_fit_opts *opts;
    cnnelm_progress *prog;
    int k;
    const cnnelm_pool *pool;
} refit_job;

static int refit_task(cnnelm_worker *w, int task, void *user, cnnelm_error *err)
{
    refit_job *j = user;
    int p = j->ids[task];
    char label[64];
    cnnelm_worker_label(j->pool, w, label, sizeof label);
    size_t L = (size_t)j->avg->arch.hidden, C = (size_t)j->avg->arch.classes;
    cnnelm_model m;
    if (cnnelm_model_copy(&m, j->avg, err))
        return -1;
    char stage[160];
    snprintf(stage, sizeof stage, "refit: U, V of partition %d/%d [%s]", p + 1, j->k, label);
    cnnelm_progress child;
    cnnelm_progress_init_worker(&child, j->prog, "", w->index);
    /* the partition's sums; its own beta (solved on the way) is not used */
    m.flags &= ~(uint32_t)CNNELM_MODEL_LAMBDA_AUTO;
    if (!(m.lambda > 0))
        m.lambda = 1;
    int rc = cnnelm_elm_fit(&w->net, &m, &j->parts[p], j->opts, NULL, &child, stage, err);
    cnnelm_progress_destroy(&child);
    if (rc == 0) {
        memcpy(j->U + (size_t)p * L * L, m.U, L * L * sizeof(double));
        memcpy(j->V + (size_t)p * L * C, m.V, L * C * sizeof(double));
        j->n[p] = (double)m.n_examples;
    }
    cnnelm_model_free(&m);
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

int cnnelm_refit(cnnelm_pool *pool, const cnnelm_cluster *cluster, const cnnelm_model *const *models,
                 int k, const cnnelm_subset *parts, int n_parts, const cnnelm_fit_opts *opts,
                 cnnelm_progress *prog, cnnelm_model *out, cnnelm_lambda_choice *choice,
                 cnnelm_error *err)
{
    int rank = cluster ? cluster->rank : 0;
    memset(out, 0, sizeof *out);
    cnnelm_lambda_choice local;
    if (!choice)
        choice = &local;
    memset(choice, 0, sizeof *choice);
    if (rank == 0 && cnnelm_reduce_models(models, k, CNNELM_REDUCE_REFIT, out, err))
        return -1;
    /* Without fine-tuning the averaged kernels are the initial ones, and the models' own U and V
     * (summed by reduce_models) are exactly what a second pass would give: no second pass.
     * Rank 0 says so to every rank through the broadcast model: n_examples > 0 = sums valid. */
    if (rank == 0 && !cnnelm_reduce_same_kernels(models, k))
        out->n_examples = 0;
    if (cnnelm_cluster_bcast_model(cluster, out, err))
        return -1;
    size_t L = (size_t)out->arch.hidden, C = (size_t)out->arch.classes;
    if (out->n_examples > 0) {
        if (rank == 0) {
            cnnelm_progress_note(prog, "refit: the kernels were not fine-tuned, so the partitions' "
                                 "own U and V are summed (no second pass over the data)");
            int bad = cnnelm_elm_solve_model(out, opts ? opts->lambda_candidates : NULL,
                                             opts ? opts->n_lambda_candidates : 0, choice, err);
            cnnelm_elm_symmetrize(out->U, out->arch.hidden);
            if (bad) {
                cnnelm_model_free(out);
                return -1;
            }
            if (out->flags & CNNELM_MODEL_LAMBDA_AUTO)
                cnnelm_lambda_choice_note(prog, choice);
        }
        return 0;
    }
    /* Fine-tuned kernels: one pass of the averaged kernels over each partition. Memory: one
     * L x L double block per partition of this run (as the partitions' models hold already). */
    refit_job j = { out, parts, NULL, calloc((size_t)n_parts * L * L, sizeof(double)),
                    calloc((size_t)n_parts * L * C, sizeof(double)), calloc((size_t)n_parts, sizeof(double)),
                    opts, prog, n_parts, pool };
    int *ids = calloc((size_t)n_parts, sizeof *ids);
    int rc = -1;
    if (!j.U || !j.V || !j.n || !ids) {
        cnnelm_fail(err, "out of memory");
        goto out;
    }
    j.ids = ids;
    int mine = local_ids(cluster, n_parts, ids);
    if (mine > 0 && cnnelm_pool_run(pool, mine, refit_task, &j, err))
        goto out;
    if (cnnelm_cluster_gather_blocks(cluster, j.U, L * L, n_parts, err) ||
        cnnelm_cluster_gather_blocks(cluster, j.V, L * C, n_parts, err) ||
        cnnelm_cluster_gather_blocks(cluster, j.n, 1, n_parts, err))
        goto out;
    if (rank == 0) {
        /* sums in partition order; I/lambda is added once, by the solve */
        memset(out->U, 0, L * L * sizeof(double));
        memset(out->V, 0, L * C * sizeof(double));
        out->n_examples = 0;
        for (int p = 0; p < n_parts; p++) {
            for (size_t i = 0; i < L * L; i++)
                out->U[i] += j.U[(size_t)p * L * L + i];
            for (size_t i = 0; i < L * C; i++)
                out->V[i] += j.V[(size_t)p * L * C + i];
            out->n_examples += (uint64_t)j.n[p];
        }
        int bad = cnnelm_elm_solve_model(out, opts ? opts->lambda_candidates : NULL,
                                         opts ? opts->n_lambda_candidates : 0, choice, err);
        cnnelm_elm_symmetrize(out->U, out->arch.hidden);
        if (bad)
            goto out;
        if (out->flags & CNNELM_MODEL_LAMBDA_AUTO)
            cnnelm_lambda_choice_note(prog, choice);
    }
    rc = 0;
out:
    free(j.U);
    free(j.V);
    free(j.n);
    free(ids);
    if (rc != 0)
        cnnelm_model_free(out);
    return rc;
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

/* Per-partition facts that travel to rank 0 with the models. */
typedef struct part_facts {
    double seconds;
    int worker, rank, resumed, n_iters, diverged;
    cnnelm_metrics test;
} part_facts;

/* Sends each partition's facts and iteration series from its owner to rank 0. */
static int gather_results(cnnelm_experiment *x, cnnelm_error *err)
{
    const cnnelm_cluster *c = x->cluster;
    if (!c || c->size == 1)
        return 0;
    int max_iters = x->cfg->train.iterations + 1;
    size_t block = sizeof(part_facts) + (size_t)max_iters * sizeof(cnnelm_iter_stats) +
                   sizeof x->parts[0].log.divergence;
    unsigned char *buf = calloc((size_t)x->k, block);
    if (!buf)
        return cnnelm_fail(err, "out of memory");
    for (int p = 0; p < x->k; p++) {
        if (cnnelm_cluster_owner(c, p) != c->rank)
            continue;
        cnnelm_part_result *r = &x->parts[p];
        part_facts f = { r->seconds, r->worker, r->rank, r->resumed, r->log.n, r->log.diverged, r->test };
        unsigned char *b = buf + (size_t)p * block;
        memcpy(b, &f, sizeof f);
        memcpy(b + sizeof f, r->log.iters, (size_t)(r->log.n < max_iters ? r->log.n : max_iters) * sizeof(cnnelm_iter_stats));
        memcpy(b + block - sizeof r->log.divergence, r->log.divergence, sizeof r->log.divergence);
    }
    int rc = cnnelm_cluster_gather_bytes(c, buf, block, x->k, err);
    for (int p = 0; p < x->k && rc == 0 && c->rank == 0; p++) {
        if (cnnelm_cluster_owner(c, p) == 0)
            continue;
        cnnelm_part_result *r = &x->parts[p];
        const unsigned char *b = buf + (size_t)p * block;
        part_facts f;
        memcpy(&f, b, sizeof f);
        r->seconds = f.seconds;
        r->test = f.test;
        r->worker = f.worker;
        r->rank = f.rank;
        r->resumed = f.resumed;
        r->examples = (size_t)r->model.n_examples;
        cnnelm_train_log_free(&r->log);
        int n = f.n_iters < max_iters ? f.n_iters : max_iters;
        r->log.iters = calloc((size_t)(n ? n : 1), sizeof(cnnelm_iter_stats));
        if (!r->log.iters) {
            rc = cnnelm_fail(err, "out of memory");
            break;
        }
        memcpy(r->log.iters, b + sizeof f, (size_t)n * sizeof(cnnelm_iter_stats));
        r->log.n = n;
        r->log.diverged = f.diverged;
        memcpy(r->log.divergence, b + block - sizeof r->log.divergence, sizeof r->log.divergence);
    }
    free(buf);
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
    int rc = -1;
    int lambda_auto = !(c->model.lambda > 0); /* "auto" */
    if (cnnelm_model_init(&init, arch, lambda_auto ? 1.0 : c->model.lambda, x->seed,
                          c->model.init == CNNELM_INIT_ZERO_MEAN, err))
        return -1;
    if (lambda_auto)
        init.flags |= CNNELM_MODEL_LAMBDA_AUTO; /* every partition, and the reduce, choose it */
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
    map_job mj = { x, &init, subs, x->parts, k, ids, c->train.checkpoint_dir[0] != '\0', "partition" };
    if (mine > 0 && cnnelm_pool_run(x->pool, mine, train_task, &mj, err))
        goto out;
    {
        cnnelm_model *models = malloc((size_t)k * sizeof *models);
        if (!models) {
            cnnelm_fail(err, "out of memory");
            goto out;
        }
        for (int p = 0; p < k; p++)
            models[p] = x->parts[p].model;
        int g = cnnelm_cluster_gather_models(x->cluster, models, k, err);
        for (int p = 0; p < k; p++)
            x->parts[p].model = models[p];
        free(models);
        if (g || gather_results(x, err))
            goto out;
    }
    x->map_seconds = cnnelm_now() - t0;

    /* Reduce (rank 0; refit runs the averaged kernels over every rank's partitions) */
    t0 = cnnelm_now();
    const cnnelm_model **models = malloc((size_t)k * sizeof *models);
    if (!models) {
        cnnelm_fail(err, "out of memory");
        goto out;
    }
    for (int p = 0; p < k; p++)
        models[p] = &x->parts[p].model;
    int r = 0;
    if (k == 1)
        r = rank == 0 ? cnnelm_model_copy(&x->reduced, &x->parts[0].model, err) : 0;
    else if (c->train.reduce == CNNELM_REDUCE_REFIT)
        r = cnnelm_refit(x->pool, x->cluster, models, k, subs, k, &fo, x->prog, &x->reduced,
                         &x->reduced_lambda, err);
    else if (rank == 0)
        r = cnnelm_reduce_models(models, k, c->train.reduce, &x->reduced, err);
    x->reduce_seconds = cnnelm_now() - t0;
    if (r) {
        free(models);
        goto out;
    }

    /* Evaluation of the reduced model on rank 0 (the partitions' were evaluated where trained) */
    if (rank == 0 && x->test.n) {
        const cnnelm_model *em[1] = { &x->reduced };
        cnnelm_metrics *eo[1] = { &x->reduced_test };
        eval_job ej = { em, &x->test, x->prog, eo, x->reduced_confusion };
        r = cnnelm_pool_run(x->pool, 1, eval_task, &ej, err);
        if (k == 1)
            x->parts[0].test = x->reduced_test;
    }
    free(models);
    if (r)
        goto out;

    /* The single model on all the data, for comparison (rank 0) */
    if (c->train.compare_single && k > 1 && rank == 0) {
        map_job sj = { x, &init, &x->train, &x->single, 1, NULL, 0, "single model" };
        cnnelm_progress_note(x->prog, "single model on all %zu training examples", x->train.n);
        if (cnnelm_pool_run(x->pool, 1, train_task, &sj, err))
            goto out;
        const cnnelm_model *sm[1] = { &x->single.model };
        cnnelm_metrics *so[1] = { &x->single.test };
        eval_job ej = { sm, &x->test, x->prog, so, NULL };
        if (x->test.n && cnnelm_pool_run(x->pool, 1, eval_task, &ej, err))
            goto out;
        x->has_single = 1;
    }
    rc = 0;
out:
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
