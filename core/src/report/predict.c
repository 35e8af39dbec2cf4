/* cnnelm predict: a model on one device applied to inputs of every kind, read and predicted chunk
 * by chunk so memory does not grow with the number of inputs; one CSV row per example. This file
 * holds the job and the CSV writer; the input readers are in predict_input.c. */
#define _GNU_SOURCE /* fopencookie (and X/Open 7) */

#include "cnnelm/predict.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/atomic_file.h"
#include "cnnelm/metrics.h"
#include "report/predict_job.h"

/* A CSV field: quoted when it holds a comma, a quote or a line break. */
static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void write_header(predict_job *j)
{
    const cnnelm_predict_options *o = j->o;
    int C = j->m->arch.classes;
    fputs("source,predicted", j->out);
    if (j->m->class_names)
        fputs(",predicted_name", j->out);
    fputs(",label", j->out);
    for (int k = 1; k <= o->top_k && k <= C; k++)
        fprintf(j->out, ",top%d,top%d_score", k, k);
    for (int k = 0; o->scores && k < C; k++) {
        fputs(",score_", j->out);
        csv_field(j->out, j->m->class_names ? j->m->class_names[k] : "");
        if (!j->m->class_names)
            fprintf(j->out, "%d", k);
    }
    fputc('\n', j->out);
}

/* Predicts the examples gathered so far and writes their rows. */
static int flush_chunk(predict_job *j, cnnelm_error *err)
{
    if (j->fill == 0)
        return 0;
    int C = j->m->arch.classes;
    if (cnnelm_predictor_run(j->p, j->x, (size_t)j->fill, j->y, err))
        return -1;
    if (!j->header_done) {
        write_header(j);
        j->header_done = 1;
    }
    for (int i = 0; i < j->fill; i++) {
        const float *s = j->y + (size_t)i * C;
        int guess = cnnelm_argmax(s, C);
        csv_field(j->out, j->source[i]);
        fprintf(j->out, ",%d", guess);
        if (j->m->class_names) {
            fputc(',', j->out);
            csv_field(j->out, j->m->class_names[guess]);
        }
        if (j->truth[i] >= 0) {
            fprintf(j->out, ",%d", j->truth[i]);
            j->labelled++;
            j->right += guess == j->truth[i];
        } else {
            fputc(',', j->out);
        }
        /* top K by repeated selection: K and C are small */
        memset(j->taken, 0, (size_t)C);
        for (int k = 0; k < j->o->top_k && k < C; k++) {
            int best = -1;
            for (int c = 0; c < C; c++)
                if (!j->taken[c] && (best < 0 || s[c] > s[best]))
                    best = c;
            j->taken[best] = 1;
            fprintf(j->out, ",%d,%.6g", best, s[best]);
        }
        for (int c = 0; j->o->scores && c < C; c++)
            fprintf(j->out, ",%.6g", s[c]);
        fputc('\n', j->out);
        free(j->source[i]);
        j->source[i] = NULL;
        j->rows++;
    }
    j->fill = 0;
    if (ferror(j->out))
        return cnnelm_fail(err, "%s: write failed", j->o->output_path ? j->o->output_path : "the output stream");
    return 0;
}

/* Claims the next slot of the chunk (flushing a full one); returns its index or -1. */
int cnnelm_predict_next_slot(predict_job *j, const char *source, int truth, cnnelm_error *err)
{
    if (j->fill == j->chunk && flush_chunk(j, err))
        return -1;
    int i = j->fill;
    j->source[i] = strdup(source);
    if (!j->source[i])
        return cnnelm_fail(err, "out of memory");
    j->truth[i] = truth;
    return i;
}
static ssize_t discard_write(void *cookie, const char *buf, size_t n)
{
    (void)cookie;
    (void)buf;
    return (ssize_t)n;
}

int cnnelm_run_predict(const cnnelm_predict_options *o, cnnelm_error *err)
{
    if (o->n_inputs < 1)
        return cnnelm_fail(err, "no inputs to predict");
    if (o->top_k < 0)
        return cnnelm_fail(err, "--top %d: expected 1 or more", o->top_k);
    cnnelm_config *cfg = NULL;
    int rc = -1;
    cnnelm_model m;
    memset(&m, 0, sizeof m);
    predict_job j;
    memset(&j, 0, sizeof j);
    j.o = o;
    cnnelm_atomic_file af;
    int af_open = 0;
    FILE *discard = NULL; /* out = NULL without output_path: the rows go nowhere */
    if (o->config_path || o->n_overrides) {
        if (!(cfg = malloc(sizeof *cfg)))
            return cnnelm_fail(err, "out of memory");
        if (cnnelm_config_load(cfg, o->config_path, o->overrides, o->n_overrides, err)) {
            free(cfg);
            return -1;
        }
    }
    if (cnnelm_model_load(&m, o->model_path, err))
        goto out;
    j.m = &m;
    if (cnnelm_predictor_open(&j.p, &m, cfg, err))
        goto out;
    j.chunk = cnnelm_predictor_chunk(j.p);
    j.ex = (size_t)m.arch.in_c * m.arch.in_h * m.arch.in_w;
    j.x = malloc((size_t)j.chunk * j.ex);
    j.truth = malloc((size_t)j.chunk * sizeof *j.truth);
    j.source = calloc((size_t)j.chunk, sizeof *j.source);
    j.y = malloc((size_t)j.chunk * m.arch.classes * sizeof *j.y);
    j.taken = malloc((size_t)m.arch.classes);
    if (!j.x || !j.truth || !j.source || !j.y || !j.taken) {
        cnnelm_fail(err, "out of memory");
        goto out;
    }
    if (o->output_path) {
        if (cnnelm_atomic_open(&af, o->output_path, err))
            goto out;
        af_open = 1;
        j.out = af.f;
    } else if (o->out) {
        j.out = o->out;
    } else if ((j.out = discard = fopencookie(NULL, "w", (cookie_io_functions_t){ .write = discard_write })) == NULL) {
        cnnelm_fail(err, "out of memory");
        goto out;
    }
    if (!o->quiet)
        fprintf(stderr, "cnnelm: model %s (%s, %dx%dx%d inputs, %d classes) on %s\n", o->model_path,
                m.arch.layers, m.arch.in_c, m.arch.in_h, m.arch.in_w, m.arch.classes,
                cnnelm_predictor_device(j.p));
    for (int i = 0; i < o->n_inputs; i++)
        if (cnnelm_predict_input(&j, o->inputs[i], err))
            goto out;
    if (flush_chunk(&j, err))
        goto out;
    if (af_open) {
        af_open = 0;
        if (cnnelm_atomic_commit(&af, err))
            goto out;
    } else if (fflush(j.out) != 0 || ferror(j.out)) {
        cnnelm_fail(err, "writing the predictions failed: %s", strerror(errno));
        goto out;
    }
    /* with the CSV in a file the summary goes to the caller's stream, else beside the CSV on stderr */
    FILE *msg = o->output_path ? o->out : stderr;
    if (o->output_path && msg)
        fprintf(msg, "%llu predictions written to %s\n", (unsigned long long)j.rows, o->output_path);
    if (j.labelled && msg)
        fprintf(msg, "accuracy %.2f%% (%llu of %llu labelled examples)\n",
                100.0 * (double)j.right / (double)j.labelled, (unsigned long long)j.right,
                (unsigned long long)j.labelled);
    rc = 0;
out:
    if (af_open)
        cnnelm_atomic_abort(&af);
    if (discard)
        fclose(discard);
    if (j.source)
        for (int i = 0; i < j.chunk; i++)
            free(j.source[i]);
    free(j.source);
    free(j.x);
    free(j.truth);
    free(j.y);
    free(j.taken);
    cnnelm_predictor_close(j.p);
    cnnelm_model_free(&m);
    if (cfg) {
        cnnelm_config_free(cfg);
        free(cfg);
    }
    return rc;
}
