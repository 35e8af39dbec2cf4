/* cnnelm training, fine-tuning: SGD on the kernels by back-propagating the ELM error
 * (Algorithm 2 of the paper, see DESIGN.md), epoch by epoch, with an ELM fit after each, the
 * series of iterations in the training log, and the way back to the last good kernels on
 * divergence or an interrupt. A batch is two halves (forward and U, V; then beta, backward and
 * the step), which train.sync_beta separates to share the sums between them (sync.c). The ELM
 * fit and evaluation are in train.c, and so is cnnelm_train_model, the steps in one go. */
#include "training/train.h"
#include "training/train_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/atomic_file.h"
#include "cnnelm/metrics.h"
#include "model/elm_solve.h"

/* J exploding: a batch's mean J this many times iteration 0's mean J counts as divergence. */
#define DIVERGENCE_FACTOR 100.0

void cnnelm_train_log_free(cnnelm_train_log *log)
{
    free(log->iters);
    memset(log, 0, sizeof *log);
}

static int log_push(cnnelm_train_log *log, const cnnelm_iter_stats *s, cnnelm_error *err)
{
    cnnelm_iter_stats *n = realloc(log->iters, (size_t)(log->n + 1) * sizeof *n);
    if (!n)
        return cnnelm_fail(err, "out of memory");
    log->iters = n;
    log->iters[log->n++] = *s;
    return 0;
}

/* Mean J per example from the sums: 1/2 (tr(b'Ub) - 2 tr(b'V) + n), one-hot rows of norm 1. */
static double j_from_sums(const cnnelm_model *m)
{
    size_t L = (size_t)m->arch.hidden, C = (size_t)m->arch.classes;
    double q = 0, lin = 0;
    for (size_t c = 0; c < C; c++)
        for (size_t i = 0; i < L; i++) {
            double ub = 0;
            for (size_t k = 0; k < L; k++)
                ub += m->U[i * L + k] * m->beta[k * C + c];
            q += m->beta[i * C + c] * ub;
            lin += m->beta[i * C + c] * m->V[i * C + c];
        }
    return 0.5 * (q - 2 * lin + (double)m->n_examples) / (double)m->n_examples;
}

static int all_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

/* Divergence is an outcome, not a failure: the epoch stops, says why in the log and returns 0. */
static int diverge(cnnelm_train_log *log)
{
    log->diverged = 1;
    return 0;
}

void cnnelm_finetune_free(cnnelm_finetune *ft)
{
    free(ft->grads);
    free(ft->velocity);
    free(ft->good);
    free(ft->Y);
    free(ft->E);
    free(ft->dU);
    free(ft->dV);
    ft->grads = ft->velocity = ft->good = ft->Y = ft->E = NULL;
    ft->dU = ft->dV = NULL;
}

int cnnelm_finetune_epoch_begin(cnnelm_finetune *ft, cnnelm_net *net, int it, cnnelm_error *err)
{
    cnnelm_model *m = ft->m;
    ft->it = it;
    ft->lr = ft->tp.learning_rate;
    if (ft->tp.lr_schedule == CNNELM_LR_INVERSE)
        ft->lr /= it;
    ft->t_epoch = cnnelm_now();
    ft->b0 = 0;
    ft->jsum = 0;
    ft->correct = 0;
    ft->s = (cnnelm_iter_stats){ .iteration = it, .learning_rate = ft->lr };
    /* m->U, m->V hold the epoch's running sums (the ELM fit after the epoch recomputes them) */
    size_t L = (size_t)m->arch.hidden, C = (size_t)m->arch.classes;
    memset(m->U, 0, L * L * sizeof *m->U);
    memset(m->V, 0, L * C * sizeof *m->V);
    ft->pending = 0;
    if (ft->dU) {
        memset(ft->dU, 0, L * L * sizeof *ft->dU);
        memset(ft->dV, 0, L * C * sizeof *ft->dV);
    }
    return cnnelm_net_reset_uv(net, err) ? -1 : 0;
}

size_t cnnelm_train_batch_size(const cnnelm_train_params *tp, size_t n)
{
    return tp->batch > 0 ? tp->batch : n;
}

static size_t batch_size(const cnnelm_finetune *ft)
{
    return cnnelm_train_batch_size(&ft->tp, ft->train->n);
}

size_t cnnelm_finetune_batches_left(const cnnelm_finetune *ft)
{
    size_t B = batch_size(ft), left = ft->train->n - ft->b0;
    return B ? (left + B - 1) / B : 0;
}

static size_t batch_len(const cnnelm_finetune *ft)
{
    size_t B = batch_size(ft), left = ft->train->n - ft->b0;
    return left < B ? left : B;
}

/* The first half of the batch at ft->b0: forward and its U, V into the partition's running
 * sums (with a shared beta: into its increments since the last average). */
static int batch_accumulate(cnnelm_finetune *ft, cnnelm_net *net, cnnelm_error *err)
{
    size_t bn = batch_len(ft);
    for (size_t i = 0; i < bn;) {
        int c = cnnelm_train_chunk_len(net, i, bn);
        if (cnnelm_train_stop_now(1, err))
            return CNNELM_STATUS_INTERRUPTED;
        if (cnnelm_net_forward(net, ft->train->ds, ft->train->rows, ft->b0 + i, c, err) ||
            cnnelm_net_accumulate(net, err))
            return -1;
        i += (size_t)c;
    }
    return cnnelm_net_add_uv(net, ft->dU ? ft->dU : ft->m->U, ft->dV ? ft->dV : ft->m->V, err) ? -1 : 0;
}

int cnnelm_finetune_share(cnnelm_finetune *ft, const double *gU, const double *gV, cnnelm_error *err)
{
    size_t L = (size_t)ft->m->arch.hidden, C = (size_t)ft->m->arch.classes;
    ft->dU = calloc(L * L, sizeof *ft->dU);
    ft->dV = calloc(L * C, sizeof *ft->dV);
    if (!ft->dU || !ft->dV)
        return cnnelm_fail_status(err, CNNELM_STATUS_OUT_OF_MEMORY, "out of memory");
    ft->gU = gU;
    ft->gV = gV;
    return 0;
}

int cnnelm_finetune_accumulate(cnnelm_finetune *ft, cnnelm_net *net, cnnelm_error *err)
{
    if (ft->pending || ft->b0 >= ft->train->n)
        return 0;
    if (cnnelm_net_set_params(net, ft->m->params, err) || cnnelm_net_reset_uv(net, err))
        return -1;
    int r = batch_accumulate(ft, net, err);
    ft->pending = r == 0;
    return r;
}

/* One batch of Algorithm 2 at ft->b0 (its first half already done when ft->pending). Returns 0
 * (log->diverged set when it diverged, with the reason in log->divergence),
 * CNNELM_STATUS_INTERRUPTED, or another negative status. */
static int finetune_batch(cnnelm_finetune *ft, cnnelm_net *net, cnnelm_progress *prog,
                          cnnelm_error *err)
{
    cnnelm_model *m = ft->m;
    const cnnelm_subset *train = ft->train;
    cnnelm_train_log *log = ft->log;
    size_t b0 = ft->b0, bn = batch_len(ft);
    int C = m->arch.classes, it = ft->it;
    size_t P = m->arch.n_params;
    double lr = ft->lr;
    /* activations of a one-chunk batch stay loaded, unless its first half ran before an
     * average (the device ran other partitions since) */
    int single = bn <= (size_t)net->chunk && !ft->pending;
    if (!ft->pending) {
        int r = batch_accumulate(ft, net, err);
        if (r)
            return r;
    }
    ft->pending = 0;
    if (ft->dU) { /* shared beta: the sums of every partition at the last average, and ours since */
        size_t L = (size_t)m->arch.hidden, nv = L * (size_t)C;
        for (size_t q = 0; q < L * L; q++)
            m->U[q] = ft->gU[q] + ft->dU[q];
        for (size_t q = 0; q < nv; q++)
            m->V[q] = ft->gV[q] + ft->dV[q];
    }
    cnnelm_error solve_err;
    if (cnnelm_net_solve(net, m->U, m->V, m->lambda, NULL, &solve_err) != 0) {
        /* the solver's words mean nothing to a user here: say what happened */
        snprintf(log->divergence, sizeof log->divergence,
                 "iteration %d: the ELM system could not be solved: the hidden activations grew "
                 "too large or non-finite with learning rate %g, so I/lambda + U is no longer a "
                 "usable positive definite matrix; try a smaller train.learning_rate", it, lr);
        return diverge(log);
    }
    double jb = 0;
    for (size_t i = 0; i < bn;) {
        int c = cnnelm_train_chunk_len(net, i, bn);
        if (cnnelm_train_stop_now(1, err))
            return CNNELM_STATUS_INTERRUPTED;
        if (!single && cnnelm_net_forward(net, train->ds, train->rows, b0 + i, c, err))
            return -1;
        if (cnnelm_net_predict(net, ft->Y, err))
            return -1;
        for (int j = 0; j < c; j++) {
            const float *y = ft->Y + (size_t)j * C;
            float *e = ft->E + (size_t)j * C;
            int truth = net->labels[j];
            ft->correct += cnnelm_argmax(y, C) == truth;
            for (int k = 0; k < C; k++) {
                double d = (double)y[k] - (k == truth ? 1.0 : 0.0);
                jb += 0.5 * d * d;
                e[k] = (float)(d / (double)bn); /* J averaged over the batch */
            }
        }
        if (cnnelm_net_backward(net, ft->E, i > 0, err))
            return -1;
        i += (size_t)c;
        cnnelm_progress_add(prog, (size_t)c);
    }
    ft->jsum += jb;
    if (!isfinite(jb) || jb / (double)bn > DIVERGENCE_FACTOR * ft->j0) {
        snprintf(log->divergence, sizeof log->divergence,
                 "iteration %d: J exploded (batch mean %.4g, iteration 0 had %.4g) with learning "
                 "rate %g; try a smaller train.learning_rate", it, jb / (double)bn, ft->j0, lr);
        return diverge(log);
    }
    if (cnnelm_net_read_grads(net, ft->grads, err))
        return -1;
    double mu = ft->tp.momentum;
    for (size_t p = 0; p < P; p++) {
        ft->velocity[p] = (float)(mu * ft->velocity[p] - lr * ft->grads[p]);
        m->params[p] += ft->velocity[p];
    }
    if (!all_finite(m->params, P)) {
        snprintf(log->divergence, sizeof log->divergence,
                 "iteration %d: kernels became NaN or Inf with learning rate %g; try a smaller "
                 "train.learning_rate", it, lr);
        return diverge(log);
    }
    if (cnnelm_net_set_params(net, m->params, err))
        return -1;
    ft->b0 += bn;
    return 0;
}

int cnnelm_finetune_batches(cnnelm_finetune *ft, cnnelm_net *net, size_t max, cnnelm_progress *prog,
                            cnnelm_error *err)
{
    if (cnnelm_net_set_params(net, ft->m->params, err))
        return -1;
    for (size_t b = 0; b < max && ft->b0 < ft->train->n; b++) {
        int r = finetune_batch(ft, net, prog, err);
        if (r != 0 || ft->log->diverged)
            return r;
    }
    return 0;
}

void cnnelm_finetune_epoch_stats(cnnelm_finetune *ft)
{
    ft->s.J = ft->jsum / (double)ft->train->n;
    ft->s.train_accuracy = (double)ft->correct / (double)ft->train->n;
}

double cnnelm_finetune_weight(const cnnelm_train_params *p, int chunk)
{
    /* forward, then backward through data and filters (about twice a forward), and a second
     * forward when a batch spans several chunks (measured on the CPU backend: 3x, 4x) */
    size_t B = p->batch > 0 ? p->batch : (size_t)-1;
    return B <= (size_t)chunk ? 3.0 : 4.0;
}


int cnnelm_finetune_start(cnnelm_finetune *ft, cnnelm_net *net, cnnelm_model *m,
                          const cnnelm_subset *train, const cnnelm_subset *test,
                          const cnnelm_train_params *tp, cnnelm_progress *prog,
                          cnnelm_train_log *log, cnnelm_error *err)
{
    memset(ft, 0, sizeof *ft);
    memset(log, 0, sizeof *log);
    ft->m = m;
    ft->train = train;
    ft->test = test;
    ft->tp = *tp;
    ft->log = log;
    int E = tp->iterations;
    /* refused before iteration 0's fit and accuracies, not after them (minutes at L = 10240) */
    if (E > 0 && cnnelm_net_check_backprop(&m->arch, err))
        return CNNELM_STATUS_INVALID_ARGUMENT;
    double t0 = cnnelm_now();
    const cnnelm_fit_opts *fo = &tp->fit;
    cnnelm_lambda_choice *ch = &log->lambda_choice;
    int r0 = cnnelm_elm_fit(net, m, train, fo, ch, prog, "iteration 0: ELM fit", err);
    if (r0 == CNNELM_STATUS_INTERRUPTED)
        log->interrupted = cnnelm_interrupted(); /* nothing complete to keep */
    if (r0)
        return r0;
    cnnelm_iter_stats s0 = { .iteration = 0, .J = j_from_sums(m), .test_accuracy = NAN };
    if (E > 0) {
        /* the series wants both accuracies at every iteration */
        int a = cnnelm_train_device_accuracy(net, train, prog, "iteration 0: training accuracy",
                                             &s0.train_accuracy, err);
        if (a == 0)
            a = cnnelm_train_device_accuracy(net, test, prog, "iteration 0: test accuracy",
                                             &s0.test_accuracy, err);
        if (a == CNNELM_STATUS_INTERRUPTED) { /* the ELM model of iteration 0 is complete */
            log->interrupted = cnnelm_interrupted();
            log->kept = 1;
            m->iterations = 0;
        }
        if (a)
            return a;
    } else {
        s0.train_accuracy = NAN;
    }
    s0.seconds = cnnelm_now() - t0;
    if (log_push(log, &s0, err))
        return -1;
    if (E == 0)
        return 0;
    size_t P = m->arch.n_params, C = (size_t)m->arch.classes;
    ft->grads = malloc(P * sizeof(float));
    ft->velocity = calloc(P, sizeof(float));
    ft->good = malloc(P * sizeof(float));
    ft->Y = malloc((size_t)net->chunk * C * sizeof(float));
    ft->E = malloc((size_t)net->chunk * C * sizeof(float));
    if (!ft->grads || !ft->velocity || !ft->good || !ft->Y || !ft->E) {
        cnnelm_finetune_free(ft);
        return cnnelm_fail_status(err, CNNELM_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    memcpy(ft->good, m->params, P * sizeof(float));
    ft->j0 = s0.J > 1e-6 ? s0.J : 1e-6;
    return 0;
}

int cnnelm_finetune_epoch_end(cnnelm_finetune *ft, cnnelm_net *net, cnnelm_progress *prog,
                              cnnelm_error *err)
{
    cnnelm_model *m = ft->m;
    int it = ft->it;
    char stage[96];
    /* The series reports the model as it would be saved after this iteration: beta, U and V
     * re-solved on the iteration's final kernels (one more forward pass). */
    snprintf(stage, sizeof stage, "iteration %d: ELM fit on the new kernels", it);
    int fit = cnnelm_elm_fit(net, m, ft->train, &ft->tp.fit, &ft->log->lambda_choice, prog, stage, err);
    if (fit == CNNELM_STATUS_INTERRUPTED) {
        ft->stopped = it;
        return 0;
    }
    /* kernels so large that H overflowed, or U lost its positive definiteness to rounding */
    if (fit == CNNELM_STATUS_NOT_POSITIVE_DEFINITE) {
        snprintf(ft->log->divergence, sizeof ft->log->divergence,
                 "iteration %d: the ELM system of the new kernels is not positive definite "
                 "(the kernels grew too large with learning rate %g); try a smaller "
                 "train.learning_rate", it, ft->lr);
        return diverge(ft->log);
    }
    if (fit != 0)
        return fit;
    snprintf(stage, sizeof stage, "iteration %d: test accuracy", it);
    int a = cnnelm_train_device_accuracy(net, ft->test, prog, stage, &ft->s.test_accuracy, err);
    if (a == CNNELM_STATUS_INTERRUPTED) {
        ft->stopped = it;
        return 0;
    }
    if (a)
        return a;
    ft->s.seconds = cnnelm_now() - ft->t_epoch;
    if (log_push(ft->log, &ft->s, err))
        return -1;
    memcpy(ft->good, m->params, m->arch.n_params * sizeof(float));
    ft->done = it;
    return 0;
}

int cnnelm_finetune_finish(cnnelm_finetune *ft, cnnelm_net *net, cnnelm_progress *prog,
                           cnnelm_error *err)
{
    cnnelm_model *m = ft->m;
    cnnelm_train_log *log = ft->log;
    const cnnelm_fit_opts *fo = &ft->tp.fit;
    size_t P = m->arch.n_params;
    m->iterations = (uint32_t)ft->done;
    int rc = 0;
    if (ft->stopped) {
        /* back to the last complete iteration's kernels, with their own beta, U and V */
        log->interrupted = cnnelm_interrupted();
        log->interrupted_at = ft->stopped;
        memcpy(m->params, ft->good, P * sizeof(float));
        char stage[96];
        snprintf(stage, sizeof stage, "interrupted: ELM fit on the kernels of iteration %d, to keep them", ft->done);
        cnnelm_error fit_err;
        int kept = cnnelm_train_elm_fit(net, m, ft->train, fo, &log->lambda_choice, 0, prog, stage, &fit_err);
        if (kept != 0) {
            *err = fit_err;
            rc = kept;
        } else {
            log->kept = 1;
            rc = cnnelm_train_stop_now(1, err) ? CNNELM_STATUS_INTERRUPTED : -1;
        }
    } else if (log->diverged) {
        /* back to the last good kernels, with their own beta, U and V */
        memcpy(m->params, ft->good, P * sizeof(float));
        m->flags |= CNNELM_MODEL_DIVERGED;
        rc = cnnelm_train_elm_fit(net, m, ft->train, fo, &log->lambda_choice, 0, prog,
                                  "ELM fit on the last good kernels", err);
    }
    cnnelm_finetune_free(ft);
    return rc;
}
