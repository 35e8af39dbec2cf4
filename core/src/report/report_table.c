/* cnnelm report as text: the results table (partitions, reduced, single model, one line per
 * run), the saved model's confusion matrix and per-class figures, to the stream given. */
#include "report/report.h"

#include <stdlib.h>
#include <string.h>

/* Tables with more partitions than this list min / median / max and the worst ones instead. */
#define TABLE_MAX_PARTITIONS 20
#define TABLE_WORST 3

static const char *class_name(char *const *names, int k)
{
    return names && names[k] ? names[k] : "";
}

/* Rows carry the class names when there are any (columns keep the numbers: names are too wide). */
static void print_confusion(FILE *out, const uint64_t *confusion, int classes, char *const *names)
{
    int w = 0; /* width of the name column, at most 16 */
    for (int r = 0; names && r < classes; r++) {
        int n = names[r] ? (int)strlen(names[r]) : 0;
        w = n > w ? (n > 16 ? 16 : n) : w;
    }
    fprintf(out, "confusion matrix (rows: true class, columns: predicted class):\n");
    fprintf(out, "      %*s", w ? w + 1 : 0, "");
    for (int c = 0; c < classes; c++)
        fprintf(out, " %6d", c);
    fprintf(out, "\n");
    for (int r = 0; r < classes; r++) {
        if (w)
            fprintf(out, "  %3d %-*.*s:", r, w, w, names[r] ? names[r] : "");
        else
            fprintf(out, "  %3d:", r);
        for (int c = 0; c < classes; c++)
            fprintf(out, " %6llu", (unsigned long long)confusion[(size_t)r * classes + c]);
        fprintf(out, "\n");
    }
}

/* Per class: name, precision, recall, F1 and support, under the confusion matrix. */
static void print_class_metrics(FILE *out, const uint64_t *confusion, int classes, char *const *names)
{
    cnnelm_class_metrics *pc = calloc((size_t)classes, sizeof *pc);
    if (!pc)
        return;
    cnnelm_metrics_per_class(confusion, classes, pc);
    fprintf(out, "per class:  class  precision  recall      F1  support  name\n");
    for (int k = 0; k < classes; k++)
        fprintf(out, "            %5d  %9.4f  %6.4f  %6.4f  %7llu  %s\n", k, pc[k].precision, pc[k].recall,
                pc[k].f1, (unsigned long long)pc[k].support, class_name(names, k));
    free(pc);
}

static void print_row(FILE *out, const char *name, const cnnelm_report_row *r)
{
    if (r->n == 0)
        return;
    if (r->n == 1)
        fprintf(out, "  %-28s %8.2f%%   %7.4f\n", name, 100 * cnnelm_report_mean(r->acc_sum, 1),
                cnnelm_report_mean(r->kappa_sum, 1));
    else
        fprintf(out, "  %-28s %6.2f%% +- %5.2f   %7.4f +- %6.4f\n", name, 100 * cnnelm_report_mean(r->acc_sum, r->n),
                100 * cnnelm_report_std(r->acc_sum, r->acc_sq, r->n), cnnelm_report_mean(r->kappa_sum, r->n),
                cnnelm_report_std(r->kappa_sum, r->kappa_sq, r->n));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double row_acc(const cnnelm_report_row *r) { return cnnelm_report_mean(r->acc_sum, r->n); }

/* Many partitions: their mean accuracies as min / median / max and the worst few by number. */
static void print_partition_summary(FILE *out, const cnnelm_report *s)
{
    int k = s->k;
    double *acc = malloc((size_t)k * sizeof *acc);
    int *worst = malloc((size_t)k * sizeof *worst);
    int n = 0;
    for (int p = 0; acc && worst && p < k; p++)
        if (s->part[p].n)
            acc[n++] = row_acc(&s->part[p]);
    if (n == 0) {
        free(acc);
        free(worst);
        return;
    }
    qsort(acc, (size_t)n, sizeof *acc, cmp_double);
    double median = n % 2 ? acc[n / 2] : 0.5 * (acc[n / 2 - 1] + acc[n / 2]);
    fprintf(out, "  %d partitions (listed in the JSON report): accuracy min %.2f%%, median %.2f%%, max %.2f%%\n",
            k, 100 * acc[0], 100 * median, 100 * acc[n - 1]);
    /* the worst ones, lowest first (ties by partition number) */
    int nw = 0;
    for (int p = 0; p < k; p++)
        if (s->part[p].n)
            worst[nw++] = p;
    for (int a = 0; a < nw && a < TABLE_WORST; a++)
        for (int b = a + 1; b < nw; b++)
            if (row_acc(&s->part[worst[b]]) < row_acc(&s->part[worst[a]])) {
                int t = worst[a];
                worst[a] = worst[b];
                worst[b] = t;
            }
    char name[64];
    for (int a = 0; a < nw && a < TABLE_WORST; a++) {
        snprintf(name, sizeof name, "worst: partition %d", worst[a] + 1);
        print_row(out, name, &s->part[worst[a]]);
    }
    free(acc);
    free(worst);
}

static void print_results(FILE *out, const cnnelm_report *s)
{
    const cnnelm_config *c = s->cfg;
    int cv = c->train.folds > 1;
    fprintf(out, "%s results (accuracy, Cohen's kappa%s):\n", cv ? "cross-validation" : "test",
            s->runs_total > 1 ? (cv ? "; mean +- standard deviation over the folds"
                                    : "; mean +- standard deviation over the runs") : "");
    char name[64];
    if (s->k > TABLE_MAX_PARTITIONS)
        print_partition_summary(out, s);
    else if (s->k > 1)
        for (int p = 0; p < s->k; p++) {
            snprintf(name, sizeof name, "partition %d", p + 1);
            print_row(out, name, &s->part[p]);
        }
    if (s->k > 1)
        snprintf(name, sizeof name, "reduced (%s)", cnnelm_reduce_name(c->train.reduce));
    else
        snprintf(name, sizeof name, "model");
    print_row(out, name, &s->reduced);
    print_row(out, "single model (all data)", &s->single);
    /* each run (fold) on its own line, so the spread behind the +- is visible */
    int n_est = 0;
    for (int i = 0; i < s->n_runs; i++)
        n_est += s->runs[i].fold >= 0;
    if (n_est > 1 && n_est <= TABLE_MAX_PARTITIONS)
        for (int i = 0; i < s->n_runs; i++) {
            const cnnelm_report_run *r = &s->runs[i];
            if (r->fold < 0 || r->test_n == 0)
                continue;
            if (cv && c->train.trials > 1)
                snprintf(name, sizeof name, "  trial %d, fold %d", r->trial, r->fold);
            else if (cv)
                snprintf(name, sizeof name, "  fold %d", r->fold);
            else
                snprintf(name, sizeof name, "  trial %d", r->trial);
            fprintf(out, "  %-28s %8.2f%%   %7.4f\n", name, 100 * r->reduced.accuracy, r->reduced.kappa);
        }
}

void cnnelm_report_write_table(const cnnelm_report *r, FILE *out)
{
    if (!out)
        return;
    if (r->eval) {
        fprintf(out, "test accuracy %.2f%% (%llu examples), kappa %.4f (standard error %.4f)\n",
                100 * r->test.accuracy, (unsigned long long)r->test.n, r->test.kappa, r->test.kappa_se);
        if (r->confusion) {
            print_confusion(out, r->confusion, r->classes, r->class_names);
            print_class_metrics(out, r->confusion, r->classes, r->class_names);
        }
        return;
    }
    if (!r->has_test_set) {
        fprintf(out, "no test set configured (data.test_images, or train.folds for cross-validation)\n");
        return;
    }
    print_results(out, r);
    if (r->final_all_data)
        fprintf(out, "saved model: trained on all %zu training examples after the %d folds (their "
                "results above estimate its accuracy)\n", r->final_examples, r->cfg->train.folds);
    if (r->confusion) {
        fprintf(out, "%s: test accuracy %.2f%% (%llu examples), kappa %.4f (standard error %.4f)\n",
                r->runs_total > 1 ? (r->k > 1 ? "first run's reduced model" : "first run's model")
                                  : (r->k > 1 ? "reduced model" : "model"), 100 * r->test.accuracy,
                (unsigned long long)r->test.n, r->test.kappa, r->test.kappa_se);
        print_confusion(out, r->confusion, r->classes, r->class_names);
        print_class_metrics(out, r->confusion, r->classes, r->class_names);
    }
}
