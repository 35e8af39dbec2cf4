/* cnnelm training, the ELM side: the fit (U, V summed over the data chunk by chunk, beta
 * solved), prediction and evaluation on one network, and the options read from the config.
 * Fine-tuning (Algorithm 2 of the paper, see DESIGN.md) is in finetune.c; cnnelm_train_model,
 * which runs it in one go, is here. */
#include "training/train.h"
#include "training/train_internal.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/atomic_file.h"
#include "cnnelm/config.h"
#include "cnnelm/metrics.h"
#include "model/elm_solve.h"

/* Between two chunks: CNNELM_STATUS_INTERRUPTED when a signal asked to stop (interruptible
 * calls only), else 0. */
int cnnelm_train_stop_now(int interruptible, cnnelm_error *err)
{
    int sig = interruptible ? cnnelm_interrupted() : 0;
    if (!sig)
        return 0;
    return cnnelm_fail_status(err, CNNELM_STATUS_INTERRUPTED, "interrupted by %s",
                              sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP");
}

int cnnelm_train_chunk_len(const cnnelm_net *net, size_t done, size_t total)
{
    size_t left = total - done;
    return (int)(left < (size_t)net->chunk ? left : (size_t)net->chunk);
}

cnnelm_fit_opts cnnelm_fit_opts_from_config(const cnnelm_config *cfg)
{
    cnnelm_fit_opts o = { .batch = cfg->train.batch > 0 ? (size_t)cfg->train.batch : 0,
                          .exact_sums = cfg->train.sums == CNNELM_SUMS_DOUBLE,
                          .lambda_candidates = cfg->model.lambda_candidates.v,
                          .n_lambda_candidates = cfg->model.lambda_candidates.n,
                          .validation = cfg->train.validation,
                          .validation_seed = cfg->train.seed };
    return o;
}

cnnelm_train_params cnnelm_train_params_from_config(const cnnelm_config *cfg)
{
    cnnelm_train_params p = { .iterations = cfg->train.iterations,
                              .batch = cfg->train.batch > 0 ? (size_t)cfg->train.batch : 0,
                              .learning_rate = cfg->train.learning_rate,
                              .lr_schedule = cfg->train.lr_schedule,
                              .momentum = cfg->train.momentum,
                              .fit = cnnelm_fit_opts_from_config(cfg) };
    return p;
}

size_t cnnelm_fit_batch(const cnnelm_fit_opts *o)
{
    return o && o->batch > 0 ? o->batch : CNNELM_UV_BATCH;
}

void cnnelm_lambda_choice_note(cnnelm_progress *prog, const cnnelm_lambda_choice *ch)
{
    char curve[512];
    size_t used = 0;
    curve[0] = '\0';
    int held = ch->rule == CNNELM_LAMBDA_RULE_HELD;
    for (int i = 0; i < ch->n && used < sizeof curve; i++)
        used += held ? (size_t)snprintf(curve + used, sizeof curve - used, "%s%g: %.2f%%", i ? ", " : "",
                                        ch->lambda[i], 100 * ch->held[i])
                     : (size_t)snprintf(curve + used, sizeof curve - used, "%s%g: %.6g", i ? ", " : "",
                                        ch->lambda[i], ch->gcv[i]);
    if (held)
        cnnelm_progress_note(prog, "lambda = \"auto\": held-out accuracy on %llu rows chose %g in %.2f s, "
                             "refitted on every row (GCV's choice: %g; held-out accuracy by lambda: %s)",
                             (unsigned long long)ch->n_held, ch->lambda[ch->best], ch->seconds,
                             ch->lambda[ch->gcv_best], curve);
    else
        cnnelm_progress_note(prog, "lambda = \"auto\": GCV chose %g in %.2f s (GCV by lambda: %s)",
                             ch->lambda[ch->best], ch->seconds, curve);
}

/* Adds the data's U and V into m->U (upper triangle), m->V: the device sums one ELM batch of
 * chunks in float, then the sums move to double and the device starts again from zero. */
static int sum_uv(cnnelm_net *net, cnnelm_model *m, const cnnelm_subset *data, size_t batch,
                  int interruptible, cnnelm_progress *prog, cnnelm_error *err)
{
    size_t L = (size_t)m->arch.hidden, C = (size_t)m->arch.classes;
    memset(m->U, 0, L * L * sizeof *m->U);
    memset(m->V, 0, L * C * sizeof *m->V);
    if (cnnelm_net_reset_uv(net, err))
        return -1;
    int rc = 0;
    for (size_t b0 = 0; b0 < data->n && rc == 0; b0 += batch) {
        size_t bn = data->n - b0 < batch ? data->n - b0 : batch;
        for (size_t i = 0; i < bn && rc == 0;) {
            int c = cnnelm_train_chunk_len(net, i, bn);
            /* the chunk after this one: in this batch, or the first of the next */
            size_t next = b0 + i + (size_t)c, end = b0 + bn;
            if (next == end)
                end = data->n - next < batch ? data->n : next + batch;
            int next_n = cnnelm_train_chunk_len(net, next, end);
            if (cnnelm_train_stop_now(interruptible, err))
                rc = CNNELM_STATUS_INTERRUPTED;
            else if (cnnelm_net_forward_ahead(net, data->ds, data->rows, b0 + i, c, next, next_n, err) ||
                     cnnelm_net_accumulate(net, err))
                rc = -1;
            i += (size_t)c;
            if (rc == 0)
                cnnelm_progress_add(prog, (size_t)c);
        }
        if (rc == 0 && cnnelm_net_add_uv(net, m->U, m->V, err))
            rc = -1;
    }
    cnnelm_net_loader_drain(net); /* a load ahead left by a stop must end before data goes */
    if (rc == 0)
        m->n_examples = data->n;
    return rc;
}

/* The kernels onto the device, then the data's U and V into m: the first half of a fit. */
static int fit_sums(cnnelm_net *net, cnnelm_model *m, const cnnelm_subset *data,
                    const cnnelm_fit_opts *opts, int interruptible, cnnelm_progress *prog,
                    const char *stage, cnnelm_error *err)
{
    if (data->n == 0)
        return cnnelm_fail(err, "no training examples");
    if (cnnelm_net_set_params(net, m->params, err))
        return -1;
    if (cnnelm_net_set_sums(net, opts && opts->exact_sums, err))
        return -1;
    cnnelm_progress_begin(prog, stage, data->n);
    return sum_uv(net, m, data, cnnelm_fit_batch(opts), interruptible, prog, err);
}

int cnnelm_elm_sums(cnnelm_net *net, cnnelm_model *m, const cnnelm_subset *data,
                    const cnnelm_fit_opts *opts, cnnelm_progress *prog, const char *stage,
                    cnnelm_error *err)
{
    int sr = fit_sums(net, m, data, opts, 1, prog, stage, err);
    if (sr == 0)
        cnnelm_progress_end(prog, NULL);
    return sr;
}

/* lambda "auto" by held-out accuracy: U and V of the fit rows, every candidate's beta from one
 * reduction of that U, one pass over the held rows (their accuracy for each candidate, and
 * their U and V added on), then beta of the chosen lambda by Cholesky from every row's sums.
 * A subset too small to hold a row out falls back to GCV. */
static int held_fit(cnnelm_net *net, cnnelm_model *m, const cnnelm_subset *data, const cnnelm_fit_opts *o,
                    cnnelm_lambda_choice *ch, int interruptible, cnnelm_progress *prog, const char *stage,
                    cnnelm_error *err)
{
    size_t L = (size_t)m->arch.hidden, C = (size_t)m->arch.classes, n_fit, n_held;
    const double *cand = o->lambda_candidates;
    int n_cand = o->n_lambda_candidates;
    if (!cand || n_cand < 1) {
        cand = cnnelm_lambda_default_candidates;
        n_cand = 7;
    }
    size_t *fit = malloc((data->n ? data->n : 1) * sizeof *fit), *held = malloc((data->n ? data->n : 1) * sizeof *held);
    double *betas = malloc((size_t)n_cand * L * C * sizeof *betas);
    uint64_t right[CNNELM_LAMBDA_MAX_CANDIDATES];
    int rc = -1;
    if (!fit || !held || !betas) {
        cnnelm_fail(err, "out of memory for train.validation (%.1f MiB of candidate betas)",
                    (double)((size_t)n_cand * L * C * sizeof *betas) / 1048576.0);
        goto out;
    }
    if (cnnelm_holdout_split(data, o->validation, o->validation_seed, fit, &n_fit, held, &n_held, err))
        goto out;
    if (n_held == 0 || n_fit == 0) {
        cnnelm_progress_note(prog, "train.validation = %g holds out %s of these %zu rows: lambda by GCV",
                             o->validation, n_held ? "all" : "none", data->n);
        rc = fit_sums(net, m, data, o, interruptible, prog, stage, err);
        if (rc == 0)
            rc = cnnelm_elm_solve_model(m, cand, n_cand, ch, err);
        goto out;
    }
    cnnelm_subset fs = { data->ds, fit, n_fit }, hs = { data->ds, held, n_held };
    if (cnnelm_net_set_params(net, m->params, err))
        goto out;
    cnnelm_progress_begin(prog, stage, data->n);
    size_t batch = cnnelm_fit_batch(o);
    if ((rc = sum_uv(net, m, &fs, batch, interruptible, prog, err)) != 0)
        goto out;
    rc = -1;
    double t0 = cnnelm_now();
    if ((rc = cnnelm_elm_lambda_path(m->U, m->V, (int)L, (int)C, n_fit, cand, n_cand, ch, betas, err)) != 0)
        goto out;
    double t_path = cnnelm_now() - t0;
    if ((rc = cnnelm_holdout_score(net, m, &hs, betas, n_cand, batch, interruptible, prog, right, err)) != 0)
        goto out;
    t0 = cnnelm_now();
    ch->rule = CNNELM_LAMBDA_RULE_HELD;
    ch->n_held = n_held;
    ch->gcv_best = ch->best;
    for (int i = 0; i < n_cand; i++)
        ch->held[i] = right[i] == UINT64_MAX ? -1 : (double)right[i] / (double)n_held;
    ch->best = cnnelm_holdout_pick(ch);
    rc = -1;
    if (ch->best < 0) {
        cnnelm_fail_status(err, CNNELM_STATUS_NOT_POSITIVE_DEFINITE, "lambda = \"auto\": no candidate's "
                           "system could be solved on the %zu rows left after train.validation", n_fit);
        goto out;
    }
    m->n_examples = data->n;
    m->lambda = ch->lambda[ch->best];
    rc = cnnelm_elm_solve_float(m->U, m->V, (int)L, (int)C, m->lambda, m->beta, err);
    ch->seconds = t_path + (cnnelm_now() - t0); /* the choice's own cost: the reduction and the refit */
out:
    free(fit);
    free(held);
    free(betas);
    return rc;
}

int cnnelm_train_elm_fit(cnnelm_net *net, cnnelm_model *m, const cnnelm_subset *data,
                         const cnnelm_fit_opts *opts, cnnelm_lambda_choice *choice,
                         int interruptible, cnnelm_progress *prog, const char *stage,
                         cnnelm_error *err)
{
    cnnelm_lambda_choice local;
    cnnelm_lambda_choice *ch = choice ? choice : &local;
    int rc;
    if ((m->flags & CNNELM_MODEL_LAMBDA_AUTO) && opts && opts->validation > 0) {
        if (data->n == 0)
            return cnnelm_fail(err, "no training examples");
        rc = held_fit(net, m, data, opts, ch, interruptible, prog, stage, err);
        if (rc == CNNELM_STATUS_INTERRUPTED)
            return rc;
    } else {
        int sr = fit_sums(net, m, data, opts, interruptible, prog, stage, err);
        if (sr != 0)
            return sr;
        rc = cnnelm_elm_solve_model(m, opts ? opts->lambda_candidates : NULL,
                                    opts ? opts->n_lambda_candidates : 0, ch, err);
    }
    cnnelm_elm_symmetrize(m->U, m->arch.hidden); /* the model keeps the whole of U */
    if (rc == 0)
        rc = cnnelm_net_set_beta(net, m->beta, err);
    if (rc != 0)
        return rc;
    cnnelm_progress_end(prog, NULL);
    if (m->flags & CNNELM_MODEL_LAMBDA_AUTO)
        cnnelm_lambda_choice_note(prog, ch);
    return 0;
}

int cnnelm_elm_fit(cnnelm_net *net, cnnelm_model *m, const cnnelm_subset *data,
                   const cnnelm_fit_opts *opts, cnnelm_lambda_choice *choice,
                   cnnelm_progress *prog, const char *stage, cnnelm_error *err)
{
    return cnnelm_train_elm_fit(net, m, data, opts, choice, 1, prog, stage, err);
}

int cnnelm_predict_confusion(cnnelm_net *net, const cnnelm_subset *data, uint64_t *confusion,
                             cnnelm_progress *prog, const char *stage, cnnelm_error *err)
{
    int C = net->arch.classes;
    float *Y = malloc((size_t)net->chunk * C * sizeof *Y);
    if (!Y)
        return cnnelm_fail(err, "out of memory");
    cnnelm_progress_begin(prog, stage, data->n);
    uint64_t right = 0, total = 0;
    for (size_t i = 0; i < data->n;) {
        int c = cnnelm_train_chunk_len(net, i, data->n);
        int rc = cnnelm_train_stop_now(1, err) ? CNNELM_STATUS_INTERRUPTED : 0;
        if (rc == 0 && (cnnelm_net_forward_ahead(net, data->ds, data->rows, i, c, i + (size_t)c,
                                                 cnnelm_train_chunk_len(net, i + (size_t)c, data->n), err) ||
                        cnnelm_net_predict(net, Y, err)))
            rc = -1;
        if (rc != 0) {
            cnnelm_net_loader_drain(net); /* before the data set can go */
            free(Y);
            return rc;
        }
        for (int j = 0; j < c; j++) {
            int truth = net->labels[j];
            int guess = cnnelm_argmax(Y + (size_t)j * C, C);
            if (truth < C)
                confusion[(size_t)truth * C + guess]++;
            right += guess == truth;
            total++;
        }
        i += (size_t)c;
        cnnelm_progress_add(prog, (size_t)c);
    }
    free(Y);
    char detail[64];
    snprintf(detail, sizeof detail, "accuracy %.2f%%", total ? 100.0 * (double)right / (double)total : 0.0);
    cnnelm_progress_end(prog, detail);
    return 0;
}

int cnnelm_evaluate(cnnelm_net *net, const cnnelm_model *m, const cnnelm_subset *data,
                    uint64_t *confusion, cnnelm_progress *prog, const char *stage,
                    cnnelm_error *err)
{
    if (cnnelm_net_set_params(net, m->params, err) || cnnelm_net_set_beta(net, m->beta, err))
        return -1;
    return cnnelm_predict_confusion(net, data, confusion, prog, stage, err);
}

/* Accuracy of the kernels and beta currently on the device; NAN for an empty subset. */
int cnnelm_train_device_accuracy(cnnelm_net *net, const cnnelm_subset *data,
                                 cnnelm_progress *prog, const char *stage, double *acc,
                                 cnnelm_error *err)
{
    *acc = NAN;
    if (!data || data->n == 0)
        return 0;
    int C = net->arch.classes;
    uint64_t *conf = calloc((size_t)C * C, sizeof *conf);
    if (!conf)
        return cnnelm_fail(err, "out of memory");
    int rc = cnnelm_predict_confusion(net, data, conf, prog, stage, err);
    if (rc == 0) {
        cnnelm_metrics mt;
        cnnelm_metrics_compute(conf, C, &mt);
        *acc = mt.accuracy;
    }
    free(conf);
    return rc;
}

/* Fine-tuning in one go: finetune.c's steps, one after the other. */
int cnnelm_train_model(cnnelm_net *net, cnnelm_model *m, const cnnelm_subset *train,
                       const cnnelm_subset *test, const cnnelm_train_params *tp, cnnelm_progress *prog,
                       cnnelm_train_log *log, cnnelm_error *err)
{
    cnnelm_finetune ft;
    int rc = cnnelm_finetune_start(&ft, net, m, train, test, tp, prog, log, err);
    if (rc != 0 || tp->iterations == 0)
        return rc;
    int E = tp->iterations;
    for (int it = 1; it <= E; it++) {
        if ((rc = cnnelm_finetune_epoch_begin(&ft, net, it, err)) != 0)
            break;
        char stage[96];
        snprintf(stage, sizeof stage, "iteration %d/%d: fine-tune (rate %g)", it, E, ft.lr);
        cnnelm_progress_begin_weighted(prog, stage, train->n, cnnelm_finetune_weight(tp, net->chunk));
        int r = cnnelm_finetune_batches(&ft, net, (size_t)-1, prog, err);
        if (r == CNNELM_STATUS_INTERRUPTED) {
            cnnelm_progress_end(prog, "interrupted");
            ft.stopped = it;
            break;
        }
        if (r != 0) {
            rc = r;
            break;
        }
        if (log->diverged) {
            cnnelm_progress_end(prog, "diverged");
            break;
        }
        cnnelm_finetune_epoch_stats(&ft);
        char detail[96];
        snprintf(detail, sizeof detail, "J %.5f, training accuracy %.2f%%", ft.s.J,
                 100 * ft.s.train_accuracy);
        cnnelm_progress_end(prog, detail);
        if ((rc = cnnelm_finetune_epoch_end(&ft, net, prog, err)) != 0 || ft.stopped || log->diverged)
            break;
    }
    if (rc != 0) {
        cnnelm_finetune_free(&ft);
        return rc;
    }
    return cnnelm_finetune_finish(&ft, net, prog, err);
}
