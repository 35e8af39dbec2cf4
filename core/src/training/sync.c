/* cnnelm periodic averaging (train.sync_every, see sync.h and docs/reduce.md).
 *
 * Iteration `it` of fine-tuning is split into rounds: in round r every partition runs its
 * batches [r n, (r + 1) n) (fewer at the end of its epoch; a partition whose epoch is over sits
 * out), then the kernels and biases of the partitions that ran, and their momentum velocities,
 * are averaged and every partition continues from the average. After the last round of an
 * iteration each partition solves its own beta on the averaged kernels (the ELM fit of the
 * iteration). What stays each partition's own: beta (solved after every batch from the
 * partition's running U and V, which restart every iteration) and its series in the log.
 * Partition state lives on the host between rounds (finetune.h's cnnelm_finetune), so any
 * worker can run any partition's next round; sums are exact (fixsum.h), so the averages have
 * the same bits whatever the workers and ranks. */
#include "training/sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/atomic_file.h"
#include "base/fixsum.h"
#include "training/reducer.h"

enum { PH_START, PH_ACC, PH_ROUND, PH_END, PH_FINISH };

typedef struct sync_part {
    cnnelm_finetune ft;
    cnnelm_train_params tp;
    cnnelm_subset none;         /* no test set for the series (as in the Map without averaging) */
    int live;                   /* ft holds the state of fine-tuning */
    int finished;               /* its final fit (PH_FINISH) succeeded */
    int status;                 /* CNNELM_STATUS_INTERRUPTED when its last task was stopped */
    unsigned long entered;      /* the round it last entered (a round cannot be run twice) */
    double seconds;             /* its tasks' time so far */
} sync_part;

typedef struct sync_job {
    cnnelm_map_job *j;
    sync_part *sp;              /* by partition */
    int phase, it, E, round, rounds;
    unsigned long serial;       /* rounds begun */
    size_t every;
    int share;                  /* train.sync_beta */
    double *gU, *gV;            /* with share: every partition's U and V sums at the last average */
    cnnelm_fixsum inc[2];       /* with share: the increments of U (upper) and V since then */
} sync_job;

/* Batches of partition p in one iteration. */
static size_t batches_of(const sync_job *s, int p)
{
    size_t n = s->j->parts[p].n, B = cnnelm_train_batch_size(&s->sp[p].tp, n);
    return B ? (n + B - 1) / B : 0;
}

static int in_round(const sync_job *s, int p, int round)
{
    return batches_of(s, p) > (size_t)round * s->every;
}

/* Each phase of a round (serial) is entered once per partition: a second entry is a task moved
 * to another worker after its device failed in it, whose half-run batches cannot be undone. */
static int enter_round(const sync_job *s, sync_part *sp, cnnelm_error *err)
{
    if (sp->entered == s->serial)
        return cnnelm_fail(err, "a worker's device failed in the middle of a round of averaging "
                           "(train.sync_every), and a round cannot be run again on another worker");
    sp->entered = s->serial;
    return 0;
}

static int round_task(sync_job *s, sync_part *sp, cnnelm_worker *w, cnnelm_progress *prog,
                      cnnelm_error *err)
{
    if (enter_round(s, sp, err))
        return -1;
    cnnelm_finetune *ft = &sp->ft;
    if (s->round == 0 && !s->share && cnnelm_finetune_epoch_begin(ft, &w->net, s->it, err))
        return -1;
    size_t left = cnnelm_finetune_batches_left(ft);
    if (left == 0)
        return 0;
    size_t nb = left < s->every ? left : s->every, B = cnnelm_train_batch_size(&sp->tp, ft->train->n);
    size_t rest = ft->train->n - ft->b0, ex = nb * B < rest ? nb * B : rest;
    char stage[128];
    snprintf(stage, sizeof stage, "iteration %d/%d: fine-tune (rate %g), round %d/%d", s->it, s->E,
             ft->lr, s->round + 1, s->rounds);
    /* no line per round (there may be thousands): the live line only, and one line per
     * iteration when the partition's epoch is over */
    cnnelm_progress_begin_weighted(prog, stage, ex, cnnelm_finetune_weight(&sp->tp, w->net.chunk));
    /* the device's U and V sums may hold another partition's last batch: start from zero */
    if (cnnelm_net_reset_uv(&w->net, err))
        return -1;
    int r = cnnelm_finetune_batches(ft, &w->net, nb, prog, err);
    if (r == 0 && !ft->log->diverged && cnnelm_finetune_batches_left(ft) == 0) {
        cnnelm_finetune_epoch_stats(ft);
        cnnelm_progress_note(prog, "iteration %d/%d: fine-tuned (rate %g, averaged every %zu batch%s), "
                             "J %.5f, training accuracy %.2f%%", s->it, s->E, ft->lr, s->every,
                             s->every == 1 ? "" : "es", ft->s.J, 100 * ft->s.train_accuracy);
    }
    return r;
}

static int sync_task(cnnelm_worker *w, int task, void *user, cnnelm_error *err)
{
    sync_job *s = user;
    cnnelm_map_job *j = s->j;
    cnnelm_experiment *x = j->x;
    int p = j->ids[task];
    sync_part *sp = &s->sp[p];
    cnnelm_part_result *r = &j->res[p];
    cnnelm_progress child;
    cnnelm_experiment_part_progress(x, j, w, p, &child);
    double t0 = cnnelm_now();
    int rc = 0;
    sp->status = 0;
    switch (s->phase) {
    case PH_START: /* iteration 0; may run again after a device failure: from nothing */
        if (sp->live)
            cnnelm_finetune_free(&sp->ft);
        sp->live = 0;
        cnnelm_model_free(&r->model);
        cnnelm_train_log_free(&r->log);
        r->worker = w->index;
        r->rank = x->cluster ? x->cluster->rank : 0;
        r->examples = j->parts[p].n;
        rc = cnnelm_model_like(&r->model, j->init, err);
        if (rc == 0)
            rc = cnnelm_finetune_start(&sp->ft, &w->net, &r->model, &j->parts[p], &sp->none, &sp->tp,
                                       &child, &r->log, err);
        sp->live = rc == 0;
        if (rc == 0 && s->share)
            rc = cnnelm_finetune_share(&sp->ft, s->gU, s->gV, err);
        break;
    case PH_ACC: /* train.sync_beta: the first half of the round's first batch */
        if ((rc = enter_round(s, sp, err)) != 0)
            break;
        if (s->round == 0)
            rc = cnnelm_finetune_epoch_begin(&sp->ft, &w->net, s->it, err);
        if (rc == 0)
            rc = cnnelm_finetune_accumulate(&sp->ft, &w->net, err);
        break;
    case PH_ROUND:
        rc = round_task(s, sp, w, &child, err);
        break;
    case PH_END:
        rc = cnnelm_finetune_epoch_end(&sp->ft, &w->net, &child, err);
        break;
    default: /* PH_FINISH: the last good kernels' fit after a divergence, then as the Map */
        r->worker = w->index;
        if (sp->live) {
            sp->live = 0; /* finish frees the state whatever its outcome */
            rc = cnnelm_finetune_finish(&sp->ft, &w->net, &child, err);
            sp->finished = rc == 0;
        } else if (!sp->finished) {
            /* the fit failed with its device: the model is half made and its state gone, so a
             * second worker must not save and reduce it */
            rc = cnnelm_fail(err, "a worker's device failed in the partition's final ELM fit "
                             "(train.sync_every), which cannot be run again on another worker");
        }
        rc = cnnelm_experiment_part_done(x, j, w, p, t0 - sp->seconds, rc, &child, err);
        break;
    }
    sp->seconds += cnnelm_now() - t0;
    cnnelm_progress_destroy(&child);
    if (rc == CNNELM_STATUS_INTERRUPTED) { /* told after the phase, on every rank */
        sp->status = rc;
        return 0;
    }
    if (rc != 0)
        cnnelm_fail_prefix(err, "partition %d", p + 1);
    return rc;
}

/* Runs phase `phase` for this rank's partitions, then tells every rank how it went: *stop
 * (an interrupt anywhere), *div (the lowest partition that diverged, k: none). A failure on
 * another rank fails here too, so no rank waits for one that is gone. */
static int run_phase(sync_job *s, int phase, int mine, int *stop, int *div, cnnelm_error *err)
{
    cnnelm_map_job *j = s->j;
    const cnnelm_cluster *c = j->x->cluster;
    s->phase = phase;
    int rc = mine > 0 ? cnnelm_worker_pool_run(j->x->pool, mine, sync_task, s, err) : 0;
    int64_t bor[2] = { rc != 0, cnnelm_interrupted() != 0 }, low = j->n;
    for (int t = 0; t < mine; t++) {
        int p = j->ids[t];
        if (s->sp[p].status == CNNELM_STATUS_INTERRUPTED || (s->sp[p].live && s->sp[p].ft.stopped))
            bor[1] = 1;
        if (j->res[p].log.diverged && p < low)
            low = p;
    }
    cnnelm_error cerr = { "" };
    if (cnnelm_cluster_allreduce_i64(c, bor, 2, CNNELM_CLUSTER_BOR, "the round's outcome", &cerr) ||
        cnnelm_cluster_allreduce_i64(c, &low, 1, CNNELM_CLUSTER_MIN, "the round's divergence", &cerr)) {
        if (rc == 0)
            *err = cerr;
        return -1;
    }
    if (rc != 0)
        return rc;
    if (bor[0])
        return cnnelm_fail(err, "another rank failed during fine-tuning with averaging (its "
                           "message says why)");
    *stop = (int)bor[1];
    *div = (int)low;
    return 0;
}

/* The kernels and velocities of the partitions that ran in this round, averaged exactly over
 * every rank, into every partition of this rank. */
static int average(sync_job *s, int mine, cnnelm_fixsum *sum, float *avg_p, float *avg_v,
                   cnnelm_error *err)
{
    cnnelm_map_job *j = s->j;
    int active = 0;
    for (int p = 0; p < j->n; p++)
        active += in_round(s, p, s->round);
    cnnelm_fixsum_clear(&sum[0]);
    cnnelm_fixsum_clear(&sum[1]);
    for (int t = 0; t < mine; t++) {
        int p = j->ids[t];
        if (!in_round(s, p, s->round))
            continue;
        if (cnnelm_fixsum_add_float(&sum[0], j->res[p].model.params, 1.0, "the kernels", err) ||
            cnnelm_fixsum_add_float(&sum[1], s->sp[p].ft.velocity, 1.0, "the velocities", err))
            return cnnelm_fail_prefix(err, "partition %d", p + 1);
    }
    cnnelm_fixsum *ps[2] = { &sum[0], &sum[1] };
    int to_all[2] = { 1, 1 };
    static const char *const names[2] = { "the kernels", "the momentum velocities" };
    if (cnnelm_fixsum_combine(j->x->cluster, ps, to_all, 2, names, err))
        return -1;
    size_t P = j->init->arch.n_params;
    cnnelm_fixsum_to_float(&sum[0], avg_p, (double)active);
    cnnelm_fixsum_to_float(&sum[1], avg_v, (double)active);
    for (int t = 0; t < mine; t++) {
        int p = j->ids[t];
        memcpy(j->res[p].model.params, avg_p, P * sizeof *avg_p);
        memcpy(s->sp[p].ft.velocity, avg_v, P * sizeof *avg_v);
    }
    return 0;
}

/* train.sync_beta: the increments of U and V of every partition since the last average, summed
 * exactly over every rank and added to the shared sums; the increments start again from zero. */
static int share_sums(sync_job *s, int mine, cnnelm_error *err)
{
    cnnelm_map_job *j = s->j;
    size_t L = (size_t)j->init->arch.hidden, C = (size_t)j->init->arch.classes;
    cnnelm_fixsum_clear(&s->inc[0]);
    cnnelm_fixsum_clear(&s->inc[1]);
    for (int t = 0; t < mine; t++) {
        int p = j->ids[t];
        cnnelm_finetune *ft = &s->sp[p].ft;
        if (cnnelm_fixsum_add_upper(&s->inc[0], ft->dU, L, "the hidden sums U", err) ||
            cnnelm_fixsum_add(&s->inc[1], ft->dV, 1.0, "the hidden sums V", err))
            return cnnelm_fail_prefix(err, "partition %d", p + 1);
        memset(ft->dU, 0, L * L * sizeof *ft->dU);
        memset(ft->dV, 0, L * C * sizeof *ft->dV);
    }
    cnnelm_fixsum *ps[2] = { &s->inc[0], &s->inc[1] };
    int to_all[2] = { 1, 1 };
    static const char *const names[2] = { "the hidden sums U", "the hidden sums V" };
    if (cnnelm_fixsum_combine(j->x->cluster, ps, to_all, 2, names, err))
        return -1;
    size_t at = 0;
    for (size_t i = 0; i < L; i++) /* the upper triangle; the solver reads no other */
        for (size_t q = i; q < L; q++, at++)
            s->gU[i * L + q] += cnnelm_fixsum_get(&s->inc[0], at);
    for (size_t q = 0; q < L * C; q++)
        s->gV[q] += cnnelm_fixsum_get(&s->inc[1], q);
    return 0;
}

/* A partition diverged: every partition goes back to the kernels of iteration `done` (the
 * same for all) and stops fine-tuning, marked diverged. */
static void all_diverge(sync_job *s, int mine, int div, int it, int done, const float *good)
{
    cnnelm_map_job *j = s->j;
    size_t P = j->init->arch.n_params;
    for (int t = 0; t < mine; t++) {
        int p = j->ids[t];
        cnnelm_finetune *ft = &s->sp[p].ft;
        cnnelm_train_log *log = &j->res[p].log;
        memcpy(ft->good, good, P * sizeof *good);
        ft->done = done;
        ft->stopped = 0;
        if (log->n > done + 1)
            log->n = done + 1; /* its iteration `it` is not kept */
        if (!log->diverged) {
            log->diverged = 1;
            snprintf(log->divergence, sizeof log->divergence,
                     "iteration %d: partition %d diverged, and the partitions fine-tune together "
                     "(train.sync_every): every partition went back to the kernels of iteration %d",
                     it, div + 1, done);
        }
    }
}

int cnnelm_sync_map(cnnelm_map_job *j, int mine, cnnelm_error *err)
{
    cnnelm_experiment *x = j->x;
    const cnnelm_config *c = x->cfg;
    int k = j->n, E = c->train.iterations;
    size_t P = j->init->arch.n_params;
    sync_job s = { .j = j, .E = E, .every = (size_t)c->train.sync_every,
                    .share = c->train.sync_beta };
    s.sp = calloc((size_t)k, sizeof *s.sp);
    float *good = malloc((P ? P : 1) * sizeof *good), *avg_p = malloc((P ? P : 1) * sizeof *avg_p),
          *avg_v = malloc((P ? P : 1) * sizeof *avg_v);
    cnnelm_fixsum sum[2];
    memset(sum, 0, sizeof sum);
    int rc = -1, stop = 0, div = k, it = 0, done = 0;
    if (!s.sp || !good || !avg_p || !avg_v) {
        cnnelm_fail(err, "out of memory");
        goto out;
    }
    if (cnnelm_fixsum_init(&sum[0], P, err) || cnnelm_fixsum_init(&sum[1], P, err))
        goto out;
    size_t L = (size_t)j->init->arch.hidden, C = (size_t)j->init->arch.classes;
    if (s.share) {
        s.gU = malloc(L * L * sizeof *s.gU);
        s.gV = malloc(L * C * sizeof *s.gV);
        if (!s.gU || !s.gV) {
            rc = cnnelm_fail(err, "out of memory");
            goto out;
        }
        if (cnnelm_fixsum_init(&s.inc[0], L * (L + 1) / 2, err) ||
            cnnelm_fixsum_init(&s.inc[1], L * C, err))
            goto out;
    }
    for (int p = 0; p < k; p++) {
        s.sp[p].tp = cnnelm_train_params_from_config(c);
        s.sp[p].none = (cnnelm_subset){ x->test.ds, NULL, 0 };
    }
    memcpy(good, j->init->params, P * sizeof *good);
    if ((rc = run_phase(&s, PH_START, mine, &stop, &div, err)) != 0)
        goto out;
    for (it = 1; it <= E && !stop && div == k; it++) {
        s.it = it;
        s.rounds = 0;
        if (s.share) { /* U and V restart every iteration */
            memset(s.gU, 0, L * L * sizeof *s.gU);
            memset(s.gV, 0, L * C * sizeof *s.gV);
        }
        for (int p = 0; p < k; p++) {
            int r = (int)((batches_of(&s, p) + s.every - 1) / s.every);
            if (r > s.rounds)
                s.rounds = r;
        }
        /* x->prog already carries the rank's prefix */
        cnnelm_progress_note(x->prog, "iteration %d/%d: %d round%s of fine-tuning, kernels averaged "
                             "after each", it, E, s.rounds, s.rounds == 1 ? "" : "s");
        for (s.round = 0; s.round < s.rounds && !stop && div == k; s.round++) {
            if (s.share) {
                s.serial++;
                if ((rc = run_phase(&s, PH_ACC, mine, &stop, &div, err)) != 0)
                    goto out;
                if (stop || div < k)
                    break;
                if ((rc = share_sums(&s, mine, err)) != 0)
                    goto out;
            }
            s.serial++;
            if ((rc = run_phase(&s, PH_ROUND, mine, &stop, &div, err)) != 0)
                goto out;
            if (!stop && div == k && (rc = average(&s, mine, sum, avg_p, avg_v, err)) != 0)
                goto out;
        }
        if (stop || div < k)
            break;
        if ((rc = run_phase(&s, PH_END, mine, &stop, &div, err)) != 0)
            goto out;
        if (stop || div < k)
            break;
        memcpy(good, avg_p, P * sizeof *good); /* every partition's kernels */
        done = it;
    }
    if (stop) {
        /* nothing of a run that averages can be kept alone: no partition is finished */
        for (int t = 0; t < mine; t++) {
            cnnelm_train_log *log = &j->res[j->ids[t]].log;
            log->interrupted = cnnelm_interrupted();
            log->interrupted_at = it > E ? E : it;
        }
        rc = cnnelm_fail_status(err, CNNELM_STATUS_INTERRUPTED, "interrupted during fine-tuning with "
                                "averaging (iteration %d of %d)", it > E ? E : it, E);
        goto out;
    }
    if (div < k)
        all_diverge(&s, mine, div, it, done, good);
    rc = run_phase(&s, PH_FINISH, mine, &stop, &div, err);
    if (rc == 0 && stop)
        rc = cnnelm_fail_status(err, CNNELM_STATUS_INTERRUPTED, "interrupted after fine-tuning with "
                                "averaging");
out:
    for (int p = 0; s.sp && p < k; p++)
        if (s.sp[p].live)
            cnnelm_finetune_free(&s.sp[p].ft);
    cnnelm_fixsum_free(&sum[0]);
    cnnelm_fixsum_free(&sum[1]);
    cnnelm_fixsum_free(&s.inc[0]);
    cnnelm_fixsum_free(&s.inc[1]);
    free(s.gU);
    free(s.gV);
    free(s.sp);
    free(good);
    free(avg_p);
    free(avg_v);
    return rc;
}
