/* cnnelm reduce: every reduce (mean, weighted, refit) and every sum of U, V, kernels and beta
 * (see reduce.h, reducer.h and docs/reduce.md). */
#include "cnnelm/reduce.h"

#include "model/elm_solve.h"
#include "training/reducer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int cnnelm_reduce_check(const cnnelm_model *const *models, int k, const char *const *names,
                        cnnelm_error *err)
{
    if (k < 1)
        return cnnelm_fail(err, "nothing to combine: no models");
    char a[64], b[64];
    for (int i = 1; i < k; i++) {
        snprintf(a, sizeof a, "model %d", 1);
        snprintf(b, sizeof b, "model %d", i + 1);
        const char *na = names ? names[0] : a, *nb = names ? names[i] : b;
        const cnnelm_model *m0 = models[0], *mi = models[i];
        if (!cnnelm_arch_equal(&m0->arch, &mi->arch))
            return cnnelm_fail(err, "%s and %s have different architectures (%s k%d %dx%d, %d classes "
                               "vs %s k%d %dx%d, %d classes, or different activations)", na, nb,
                               m0->arch.layers, m0->arch.kernel, m0->arch.in_h, m0->arch.in_w,
                               m0->arch.classes, mi->arch.layers, mi->arch.kernel, mi->arch.in_h,
                               mi->arch.in_w, mi->arch.classes);
        if (m0->seed != mi->seed)
            return cnnelm_fail(err, "%s and %s start from different initial weights (seed %llu vs "
                               "%llu): averaging them is meaningless", na, nb,
                               (unsigned long long)m0->seed, (unsigned long long)mi->seed);
        /* with lambda = "auto" each partition chose its own; the reduce chooses again */
        int both_auto = (m0->flags & mi->flags & CNNELM_MODEL_LAMBDA_AUTO) != 0;
        if ((m0->flags ^ mi->flags) & CNNELM_MODEL_LAMBDA_AUTO)
            return cnnelm_fail(err, "%s and %s chose lambda by different rules (one \"auto\", one "
                               "fixed)", na, nb);
        if (!both_auto && m0->lambda != mi->lambda)
            return cnnelm_fail(err, "%s and %s have different lambda (%g vs %g)", na, nb, m0->lambda,
                               mi->lambda);
    }
    return 0;
}

int cnnelm_reduce_models(const cnnelm_model *const *models, int k, cnnelm_reduce mode,
                         cnnelm_model *out, cnnelm_error *err)
{
    memset(out, 0, sizeof *out);
    if (cnnelm_reduce_check(models, k, NULL, err))
        return -1;
    cnnelm_reducer r;
    if (cnnelm_reducer_init(&r, models[0], mode, err))
        return -1;
    int rc = 0;
    for (int i = 0; i < k && rc == 0; i++)
        rc = cnnelm_reducer_add(&r, models[i], i, NULL, err);
    if (rc == 0)
        rc = cnnelm_reducer_model(&r, 0, out, err);
    cnnelm_reducer_free(&r);
    return rc;
}

int cnnelm_reduce_solve(cnnelm_model *m, cnnelm_error *err)
{
    /* the same solver as every training run: refit's beta and a single model's agree */
    int rc = cnnelm_elm_solve_model(m, NULL, 0, NULL, err);
    cnnelm_elm_symmetrize(m->U, m->arch.hidden);
    return rc ? -1 : 0;
}

int cnnelm_reduce_same_kernels(const cnnelm_model *const *models, int k)
{
    for (int i = 1; i < k; i++)
        if (memcmp(models[i]->params, models[0]->params, models[0]->arch.n_params * sizeof(float)))
            return 0;
    return 1;
}

/* ---- the reducer ---- */

int cnnelm_model_like(cnnelm_model *dst, const cnnelm_model *src, cnnelm_error *err)
{
    if (cnnelm_model_init(dst, &src->arch, src->lambda, src->seed, 0, err))
        return -1;
    memcpy(dst->params, src->params, src->arch.n_params * sizeof *dst->params);
    memcpy(dst->beta, src->beta, (size_t)src->arch.hidden * src->arch.classes * sizeof *dst->beta);
    dst->flags = src->flags;
    dst->iterations = src->iterations;
    return 0;
}

int cnnelm_reducer_init(cnnelm_reducer *r, const cnnelm_model *ref, cnnelm_reduce mode,
                        cnnelm_error *err)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL); /* first: cnnelm_reducer_free destroys it */
    r->mode = mode;
    r->iterations = INT64_MAX;
    size_t P = ref->arch.n_params, L = (size_t)ref->arch.hidden, C = (size_t)ref->arch.classes;
    r->ref.arch = ref->arch;
    r->ref.lambda = ref->lambda;
    r->ref.seed = ref->seed;
    r->ref.flags = ref->flags;
    r->ref.params = malloc((P ? P : 1) * sizeof *r->ref.params);
    if (!r->ref.params) {
        pthread_mutex_destroy(&r->lock);
        return cnnelm_fail(err, "out of memory");
    }
    memcpy(r->ref.params, ref->params, P * sizeof *r->ref.params);
    r->shared = malloc((P ? P : 1) * sizeof *r->shared);
    if (!r->shared) {
        cnnelm_reducer_free(r);
        return cnnelm_fail(err, "out of memory");
    }
    if (cnnelm_fixsum_init(&r->params, P, err) ||
        cnnelm_fixsum_init(&r->beta, mode == CNNELM_REDUCE_REFIT ? 0 : L * C, err) ||
        cnnelm_fixsum_init(&r->U, L * (L + 1) / 2, err) || cnnelm_fixsum_init(&r->V, L * C, err)) {
        cnnelm_reducer_free(r);
        return -1;
    }
    return 0;
}

void cnnelm_reducer_free(cnnelm_reducer *r)
{
    pthread_mutex_destroy(&r->lock);
    cnnelm_fixsum_free(&r->params);
    cnnelm_fixsum_free(&r->beta);
    cnnelm_fixsum_free(&r->U);
    cnnelm_fixsum_free(&r->V);
    free(r->ref.params);
    r->ref.params = NULL;
    free(r->shared);
    r->shared = NULL;
}

/* U (upper triangle) and V of m into the sums; the caller holds the lock. */
static int fold_uv(cnnelm_reducer *r, const cnnelm_model *m, const char *name, cnnelm_error *err)
{
    char what[160];
    snprintf(what, sizeof what, "%s's U", name);
    if (cnnelm_fixsum_add_upper(&r->U, m->U, (size_t)m->arch.hidden, what, err))
        return -1;
    snprintf(what, sizeof what, "%s's V", name);
    return cnnelm_fixsum_add(&r->V, m->V, 1.0, what, err);
}

int cnnelm_reducer_add(cnnelm_reducer *r, const cnnelm_model *m, int index, const char *name,
                       cnnelm_error *err)
{
    char label[64], what[160];
    if (!name) {
        snprintf(label, sizeof label, "partition %d", index + 1);
        name = label;
    }
    const cnnelm_model *pair[2] = { &r->ref, m };
    const char *names[2] = { r->ref_name ? r->ref_name : "the first model", name };
    if (cnnelm_reduce_check(pair, 2, names, err))
        return -1;
    /* weighted: sum n_i x_i, divided by the total once at the end */
    double w = r->mode == CNNELM_REDUCE_WEIGHTED ? (double)m->n_examples : 1.0;
    size_t P = m->arch.n_params;
    pthread_mutex_lock(&r->lock);
    snprintf(what, sizeof what, "%s's kernels", name);
    int rc = cnnelm_fixsum_add_float(&r->params, m->params, w, what, err);
    snprintf(what, sizeof what, "%s's beta", name);
    if (rc == 0 && r->mode != CNNELM_REDUCE_REFIT)
        rc = cnnelm_fixsum_add_float(&r->beta, m->beta, w, what, err);
    if (rc == 0)
        rc = fold_uv(r, m, name, err);
    if (rc == 0) {
        if (r->count == 0)
            memcpy(r->shared, m->params, P * sizeof *m->params);
        else
            r->apart |= memcmp(m->params, r->shared, P * sizeof *m->params) != 0;
        r->count++;
        r->n_examples += (int64_t)m->n_examples;
        r->flags |= m->flags;
        if ((int64_t)m->iterations < r->iterations)
            r->iterations = m->iterations;
        r->differ |= memcmp(m->params, r->ref.params, P * sizeof *m->params) != 0;
        if (index == 0) {
            r->first_lambda = m->lambda;
            r->have_first = 1;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int cnnelm_fixsum_combine(const cnnelm_cluster *c, cnnelm_fixsum **s, const int *to_all, int n,
                          const char *const *names, cnnelm_error *err)
{
    if (!c || c->size == 1)
        return 0;
    int64_t lo[4], hi[4], terms[4];
    for (int i = 0; i < n; i++) {
        lo[i] = s[i]->terms ? s[i]->lsb : INT64_MAX;
        hi[i] = s[i]->terms ? s[i]->top : INT64_MIN;
        terms[i] = (int64_t)s[i]->terms;
    }
    if (cnnelm_cluster_allreduce_i64(c, lo, n, CNNELM_CLUSTER_MIN, "the sums' steps", err) ||
        cnnelm_cluster_allreduce_i64(c, hi, n, CNNELM_CLUSTER_MAX, "the sums' magnitudes", err) ||
        cnnelm_cluster_allreduce_i64(c, terms, n, CNNELM_CLUSTER_SUM, "the sums' terms", err))
        return -1;
    for (int i = 0; i < n; i++) {
        if (terms[i] == 0)
            continue; /* zero everywhere */
        if (cnnelm_fixsum_rescale(s[i], (int)lo[i], (int)hi[i], (uint64_t)terms[i], err) ||
            cnnelm_cluster_sum_limbs(c, s[i]->w, s[i]->n, to_all[i], names[i], err))
            return -1;
    }
    return 0;
}

int cnnelm_reducer_combine(cnnelm_reducer *r, const cnnelm_cluster *c, cnnelm_error *err)
{
    if (!c || c->size == 1)
        return 0;
    int64_t sum[2] = { r->count, r->n_examples }, bor[2] = { r->flags, r->differ };
    if (cnnelm_cluster_allreduce_i64(c, sum, 2, CNNELM_CLUSTER_SUM, "the models' counts", err) ||
        cnnelm_cluster_allreduce_i64(c, bor, 2, CNNELM_CLUSTER_BOR, "the models' flags", err) ||
        cnnelm_cluster_allreduce_i64(c, &r->iterations, 1, CNNELM_CLUSTER_MIN, "the models' iterations",
                                     err))
        return -1;
    r->count = sum[0];
    r->n_examples = sum[1];
    r->flags = bor[0];
    r->differ = bor[1];
    cnnelm_fixsum *s[4] = { &r->params, &r->beta, &r->U, &r->V };
    int to_all[4] = { 1, 1, 0, 0 };
    static const char *const names[4] = { "the kernels", "beta", "U", "V" };
    return cnnelm_fixsum_combine(c, s, to_all, 4, names, err);
}

int cnnelm_reducer_model(const cnnelm_reducer *r, int rank, cnnelm_model *out, cnnelm_error *err)
{
    memset(out, 0, sizeof *out);
    if (r->count < 1)
        return cnnelm_fail(err, "nothing to combine: no models");
    if (r->mode == CNNELM_REDUCE_WEIGHTED && r->n_examples <= 0)
        return cnnelm_fail(err, "the weighted reduce weighs models by their training examples, and "
                           "these hold none");
    const cnnelm_model *ref = &r->ref;
    if (cnnelm_model_init(out, &ref->arch, r->have_first ? r->first_lambda : ref->lambda, ref->seed, 0,
                          err))
        return -1;
    size_t L = (size_t)ref->arch.hidden;
    double div = r->mode == CNNELM_REDUCE_WEIGHTED ? (double)r->n_examples : (double)r->count;
    if (!r->differ) /* not fine-tuned: exactly the initial kernels, not their rounded mean */
        memcpy(out->params, ref->params, ref->arch.n_params * sizeof *out->params);
    else
        cnnelm_fixsum_to_float(&r->params, out->params, div);
    if (r->mode != CNNELM_REDUCE_REFIT)
        cnnelm_fixsum_to_float(&r->beta, out->beta, div);
    if (rank == 0) {
        cnnelm_fixsum_to_upper(&r->U, out->U, L);
        cnnelm_fixsum_to_double(&r->V, out->V, 1.0);
    } else { /* only rank 0 solves and saves: the others evaluate with kernels and beta */
        free(out->U);
        free(out->V);
        out->U = out->V = NULL;
    }
    out->n_examples = (uint64_t)r->n_examples;
    out->flags = (uint32_t)r->flags;
    out->iterations = (uint32_t)r->iterations;
    return 0;
}

/* ---- refit ---- */

typedef struct refit_job {
    cnnelm_reducer *r;
    const cnnelm_model *avg;
    const cnnelm_subset *parts;
    const int *ids;               /* task -> partition */
    const cnnelm_fit_opts *opts;
    cnnelm_progress *prog;
    int k;
    const cnnelm_worker_pool *pool;
    int64_t n;                    /* examples summed on this rank */
} refit_job;

static int refit_task(cnnelm_worker *w, int task, void *user, cnnelm_error *err)
{
    refit_job *j = user;
    int p = j->ids[task];
    char label[64];
    cnnelm_worker_label(j->pool, w, label, sizeof label);
    cnnelm_model m;
    if (cnnelm_model_like(&m, j->avg, err))
        return -1;
    char stage[160];
    snprintf(stage, sizeof stage, "refit: U, V of partition %d/%d [%s]", p + 1, j->k, label);
    cnnelm_progress child;
    cnnelm_progress_init_worker(&child, j->prog, "", w->index);
    /* the partition's sums only: beta is solved once, from every partition's */
    int rc = cnnelm_elm_sums(&w->net, &m, &j->parts[p], j->opts, &child, stage, err);
    cnnelm_progress_destroy(&child);
    if (rc == 0) {
        /* folded last: a task run again after a device failure has added nothing yet */
        char name[64];
        snprintf(name, sizeof name, "partition %d", p + 1);
        pthread_mutex_lock(&j->r->lock);
        rc = fold_uv(j->r, &m, name, err);
        if (rc == 0)
            j->n += (int64_t)m.n_examples;
        pthread_mutex_unlock(&j->r->lock);
    }
    cnnelm_model_free(&m);
    return rc;
}

/* Little-endian fixed fields (docs/reduce.md): refit's result sent from rank 0. */
static void put_u64(unsigned char *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

/* beta (binary32) and lambda (binary64) from rank 0 to every rank. */
static int bcast_beta(const cnnelm_cluster *c, cnnelm_model *m, cnnelm_error *err)
{
    if (!c || c->size == 1)
        return 0;
    size_t LC = (size_t)m->arch.hidden * m->arch.classes, n = 8 + 4 * LC;
    unsigned char *b = malloc(n);
    if (!b)
        return cnnelm_fail(err, "out of memory");
    uint64_t bits;
    if (c->rank == 0) {
        memcpy(&bits, &m->lambda, 8);
        put_u64(b, bits);
        for (size_t i = 0; i < LC; i++) {
            uint32_t f;
            memcpy(&f, &m->beta[i], 4);
            for (int k = 0; k < 4; k++)
                b[8 + 4 * i + k] = (unsigned char)(f >> (8 * k));
        }
    }
    int rc = cnnelm_cluster_bcast_bytes(c, b, n, "the refit beta", err);
    if (rc == 0 && c->rank != 0) {
        bits = get_u64(b);
        memcpy(&m->lambda, &bits, 8);
        for (size_t i = 0; i < LC; i++) {
            const unsigned char *q = b + 8 + 4 * i;
            uint32_t f = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
            memcpy(&m->beta[i], &f, 4);
        }
    }
    free(b);
    return rc;
}

int cnnelm_reducer_refit(cnnelm_reducer *r, cnnelm_worker_pool *pool, const cnnelm_cluster *cluster,
                         const cnnelm_subset *parts, int n_parts, const cnnelm_fit_opts *opts,
                         cnnelm_progress *prog, cnnelm_model *out, cnnelm_lambda_choice *choice,
                         cnnelm_error *err)
{
    int rank = cluster ? cluster->rank : 0;
    cnnelm_lambda_choice local;
    if (!choice)
        choice = &local;
    memset(choice, 0, sizeof *choice);
    if (cnnelm_reducer_model(r, rank, out, err))
        return -1;
    size_t L = (size_t)out->arch.hidden;
    int rc = -1;
    int *ids = NULL;
    /* Every model has exactly the averaged kernels (not fine-tuned, or averaged while
     * fine-tuning: train.sync_every): the models' own U and V are then what a second pass
     * would give. Each rank compares its models with the mean, which every rank has. */
    int64_t apart = r->count > 0 && (r->apart || memcmp(r->shared, out->params,
                                                        out->arch.n_params * sizeof *out->params) != 0);
    if (cluster && cluster->size > 1 &&
        cnnelm_cluster_allreduce_i64(cluster, &apart, 1, CNNELM_CLUSTER_BOR, "the models' kernels", err))
        return -1;
    if (!apart) {
        if (rank == 0)
            cnnelm_progress_note(prog, r->differ ? "refit: the partitions fine-tuned the same averaged "
                                 "kernels (train.sync_every), so their own U and V are summed (no second "
                                 "pass over the data)" : "refit: the kernels were not fine-tuned, so the "
                                 "partitions' own U and V are summed (no second pass over the data)");
    } else {
        /* one pass of the averaged kernels over each of this rank's partitions */
        ids = calloc((size_t)(n_parts > 0 ? n_parts : 1), sizeof *ids);
        if (!ids) {
            cnnelm_fail(err, "out of memory");
            goto out;
        }
        int mine = 0;
        for (int p = 0; p < n_parts; p++)
            if (cnnelm_cluster_owner(cluster, p) == rank)
                ids[mine++] = p;
        cnnelm_fixsum_clear(&r->U);
        cnnelm_fixsum_clear(&r->V);
        /* the pass fills the sums, not out's U and V: those come back when rank 0 solves */
        free(out->U);
        free(out->V);
        out->U = out->V = NULL;
        refit_job j = { r, out, parts, ids, opts, prog, n_parts, pool, 0 };
        if (mine > 0 && cnnelm_worker_pool_run(pool, mine, refit_task, &j, err))
            goto out;
        cnnelm_fixsum *s[2] = { &r->U, &r->V };
        int to_all[2] = { 0, 0 };
        static const char *const names[2] = { "U", "V" };
        if (cluster && cluster->size > 1 &&
            (cnnelm_cluster_allreduce_i64(cluster, &j.n, 1, CNNELM_CLUSTER_SUM, "the refit's examples", err) ||
             cnnelm_fixsum_combine(cluster, s, to_all, 2, names, err)))
            goto out;
        if (rank == 0) {
            out->U = malloc(L * L * sizeof *out->U);
            out->V = malloc(L * (size_t)out->arch.classes * sizeof *out->V);
            if (!out->U || !out->V) {
                cnnelm_fail(err, "out of memory for the refit's U and V");
                goto out;
            }
            cnnelm_fixsum_to_upper(&r->U, out->U, L);
            cnnelm_fixsum_to_double(&r->V, out->V, 1.0);
        }
        out->n_examples = (uint64_t)j.n;
    }
    /* the sums are in out now: their memory goes before the solve needs its own */
    cnnelm_fixsum_free(&r->U);
    cnnelm_fixsum_free(&r->V);
    if (rank == 0) {
        /* I/lambda is added once, by the solve: the same solver as a single model */
        int bad = cnnelm_elm_solve_model(out, opts ? opts->lambda_candidates : NULL,
                                         opts ? opts->n_lambda_candidates : 0, choice, err);
        cnnelm_elm_symmetrize(out->U, out->arch.hidden);
        if (bad)
            goto out;
        if (out->flags & CNNELM_MODEL_LAMBDA_AUTO)
            cnnelm_lambda_choice_note(prog, choice);
    }
    rc = bcast_beta(cluster, out, err);
out:
    free(ids);
    if (rc != 0)
        cnnelm_model_free(out);
    return rc;
}
