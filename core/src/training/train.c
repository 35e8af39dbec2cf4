/* cnnelm training, the ELM side: the fit (U, V summed over the data chunk by chunk, beta
 * solved), prediction and evaluation on one network, and the options read from the config.
 * Fine-tuning (Algorithm 2 of the paper, see DESIGN.md) is in finetune.c. */
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
                          .n_lambda_candidates = cfg->model.lambda_candidates.n };
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
    for (int i = 0; i < ch->n && used < sizeof curve; i++)
        used += (size_t)snprintf(curve + used, sizeof curve - used, "%s%g: %.6g", i ? ", " : "",
                                 ch->lambda[i], ch->gcv[i]);
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
    for (size_t b0 = 0; b0 < data->n; b0 += batch) {
        size_t bn = data->n - b0 < batch ? data->n - b0 : batch;
        for (size_t i = 0; i < bn;) {
            int c = cnnelm_train_chunk_len(net, i, bn);
            if (cnnelm_train_stop_now(interruptible, err))
                return CNNELM_STATUS_INTERRUPTED;
            if (cnnelm_net_forward(net, data->ds, data->rows, b0 + i, c, err) ||
                cnnelm_net_accumulate(net, err))
                return -1;
            i += (size_t)c;
            cnnelm_progress_add(prog, (size_t)c);
        }
        if (cnnelm_net_add_uv(net, m->U, m->V, err))
            return -1;
    }
    m->n_examples = data->n;
    return 0;
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

int cnnelm_train_elm_fit(cnnelm_net *net, cnnelm_model *m, const cnnelm_subset *data,
                         const cnnelm_fit_opts *opts, cnnelm_lambda_choice *choice,
                         int interruptible, cnnelm_progress *prog, const char *stage,
                         cnnelm_error *err)
{
    int sr = fit_sums(net, m, data, opts, interruptible, prog, stage, err);
    if (sr != 0)
        return sr;
    cnnelm_lambda_choice local;
    cnnelm_lambda_choice *ch = choice ? choice : &local;
    int rc = cnnelm_elm_solve_model(m, opts ? opts->lambda_candidates : NULL,
                                    opts ? opts->n_lambda_candidates : 0, ch, err);
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
        if (cnnelm_train_stop_now(1, err)) {
            free(Y);
            return CNNELM_STATUS_INTERRUPTED;
        }
        if (cnnelm_net_forward(net, data->ds, data->rows, i, c, err) ||
            cnnelm_net_predict(net, Y, err)) {
            free(Y);
            return -1;
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
