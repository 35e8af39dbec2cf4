/* cnnelm report: one struct holding what a train or eval job shows (its runs, the summary rows,
 * the saved model's test figures, the workers, the warnings), filled from the experiments'
 * results, and written as the printed tables or as the JSON report to a FILE * the caller
 * gives. Nothing here trains; nothing here prints unless given a stream. */
#ifndef CNNELM_REPORT_H
#define CNNELM_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "cnnelm/config.h"
#include "cnnelm/error.h"
#include "cnnelm/metrics.h"
#include "cnnelm/model.h"
#include "training/experiment.h"
#include "base/progress.h"
#include "training/train.h"
#include "training/workers.h"

/* Cohen's kappa below this: a model at chance level (issue 11). */
#define CNNELM_CHANCE_KAPPA 0.05
#define CNNELM_CHANCE_LISTED 16

/* One partition (or the single model) of one run, copied out of the experiment. */
typedef struct cnnelm_report_part {
    size_t examples;
    int rank, worker, resumed;
    double seconds;
    cnnelm_metrics test;        /* n = 0: not evaluated */
    cnnelm_train_log log;       /* its own copy of the series (iters owned here) */
    uint64_t class_examples[256];
} cnnelm_report_part;

/* One run (a trial, a fold, or k-fold's final model on all the data). */
typedef struct cnnelm_report_run {
    int trial;
    int fold;                   /* 1..folds; 0 without folds; -1 k-fold's final all-data model */
    uint64_t seed;
    size_t train_n, test_n;
    double map_seconds, reduce_seconds;
    int k;
    cnnelm_report_part *parts;  /* k */
    cnnelm_metrics reduced;     /* the reduced model on the test (validation) rows */
    int worse;                  /* reduced worse than every partition */
    cnnelm_lambda_choice reduced_lambda;
    int has_single;
    cnnelm_report_part single;
} cnnelm_report_run;

/* Accuracy and kappa of one table row over the runs. */
typedef struct cnnelm_report_row {
    double acc_sum, acc_sq, kappa_sum, kappa_sq;
    int n;
} cnnelm_report_row;

typedef struct cnnelm_report {
    /* the job */
    int eval;                   /* 1: `cnnelm eval`, 0: `cnnelm train` */
    const char *config_file, *model_file, *config_text;
    const cnnelm_config *cfg;
    const cnnelm_model *model;  /* the saved (train) or loaded (eval) model */
    int classes;
    char *const *class_names;   /* the classes' names, or NULL */
    int processes;
    int has_test_set;           /* a test set is configured (or folds validate) */
    cnnelm_worker_desc *workers;
    int n_workers;
    /* train: the runs, in order; then the summary (cnnelm_report_finish) */
    cnnelm_report_run *runs;
    int n_runs, cap_runs;
    int runs_total;             /* trials x folds (not k-fold's final model) */
    int k;                      /* partitions of the first run */
    cnnelm_report_row *part;    /* k, after finish */
    cnnelm_report_row reduced, single;
    int final_all_data;
    size_t final_examples;
    /* the saved model's figures on the test set (confusion NULL: none) */
    cnnelm_metrics test;
    uint64_t *confusion;        /* classes x classes, owned */
    /* chance level, after finish */
    int chance_n;
    char chance_name[CNNELM_CHANCE_LISTED][48];
    double chance_accuracy[CNNELM_CHANCE_LISTED], chance_kappa[CNNELM_CHANCE_LISTED];
    /* every warning of the job, in order */
    char **warnings;
    int n_warnings;
    cnnelm_progress *prog;      /* where warnings are shown */
    double t_load, t_train, t_eval;
} cnnelm_report;

/* An empty report whose warnings go through prog. */
void cnnelm_report_init(cnnelm_report *r, cnnelm_progress *prog);
void cnnelm_report_free(cnnelm_report *r);

/* A warning on stderr (through the progress, even with --quiet) and in the report. */
void cnnelm_report_warn(cnnelm_report *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The pool's workers as the report lists them. */
int cnnelm_report_set_workers(cnnelm_report *r, const cnnelm_worker_pool *pool, cnnelm_error *err);

/* Adds one finished experiment as a run: warns about divergence and a reduced model worse than
 * every partition (`run`: "" or "fold 2/5: " before the messages), and copies what the report
 * shows. fold as in cnnelm_report_run. */
int cnnelm_report_add_run(cnnelm_report *r, const cnnelm_experiment *x, int trial, int fold, uint64_t seed,
                          const char *run, cnnelm_error *err);

/* The saved model's figures on the test set (confusion copied; NULL: none). */
int cnnelm_report_set_test(cnnelm_report *r, const cnnelm_metrics *m, const uint64_t *confusion,
                           cnnelm_error *err);

/* After the last run: the summary rows and the chance-level warnings. */
int cnnelm_report_finish(cnnelm_report *r, cnnelm_error *err);

/* train: the results table, the confusion matrix and per-class figures of the saved model;
 * eval: the test accuracy line, confusion and per-class figures. */
void cnnelm_report_write_table(const cnnelm_report *r, FILE *out);

/* The JSON report. Returns 0, or -1 when writing fails (err set). */
int cnnelm_report_write_json(const cnnelm_report *r, FILE *f, cnnelm_error *err);

/* The JSON report written to `path` as a whole or not at all (atomic_file.h), then "report
 * written to PATH" on out (NULL: nowhere). Returns 0, or -1 with err set. */
int cnnelm_report_save_json(const cnnelm_report *r, const char *path, FILE *out, cnnelm_error *err);

/* Mean and sample standard deviation of a row. */
double cnnelm_report_mean(double sum, int n);
double cnnelm_report_std(double sum, double sq, int n);

#endif
