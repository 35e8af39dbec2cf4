/* cnnelm-bench-lambda: is lambda = "auto" worth it? One ELM fit of a config's model on its
 * training set, then for every lambda candidate the test accuracy of the beta it gives, GCV's
 * choice among them, and what the choice costs against the fit (all in one run).
 *
 * usage: cnnelm-bench-lambda -c CONFIG [-s key=value ...]
 * Figures only: no pass/fail. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "cnnelm/metrics.h"
#include "cnnelm/plugin.h"
#include "model/elm_solve.h"
#include "model/network.h"
#include "training/train.h"

static int die(const char *msg)
{
    fprintf(stderr, "cnnelm-bench-lambda: %s\n", msg);
    return 1;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    const char *sets[64];
    int n_sets = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc && n_sets < 64)
            sets[n_sets++] = argv[++i];
        else
            return die("usage: cnnelm-bench-lambda -c CONFIG [-s key=value ...]");
    }
    if (!path)
        return die("usage: cnnelm-bench-lambda -c CONFIG [-s key=value ...]");
    cnnelm_error err = { "" };
    cnnelm_config cfg;
    cnnelm_dataset train, test;
    memset(&train, 0, sizeof train);
    memset(&test, 0, sizeof test);
    if (cnnelm_config_load(&cfg, path, sets, n_sets, &err) ||
        cnnelm_dataset_load_config(&train, &cfg, 0, 256, &err) ||
        cnnelm_dataset_load_config(&test, &cfg, 1, train.classes, &err))
        return die(err.msg);
    if (test.n == 0)
        return die("the config names no test set");
    cnnelm_arch a;
    cnnelm_plugin *plugin = NULL;
    cnnelm_model m;
    cnnelm_net net;
    if (cnnelm_arch_init(&a, cfg.model.layers, cfg.model.kernel, 1, train.rows, train.cols,
                         train.classes, cfg.model.activation, cfg.model.pooling,
                         cfg.model.elm_activation, &err) ||
        cnnelm_plugin_load(cfg.workers[0].backend, cfg.plugin_path, &plugin, &err) ||
        cnnelm_model_init(&m, &a, 1.0, cfg.train.seed, cfg.model.init != CNNELM_INIT_UNIFORM, &err) ||
        (cfg.model.init == CNNELM_INIT_PATCHES &&
         cnnelm_model_init_patches(&m, &train, NULL, train.n, cfg.train.seed, cfg.model.whiten, &err)) ||
        cnnelm_net_open(&net, plugin, cfg.workers[0].device, cfg.workers[0].threads, &a,
                        cfg.train.chunk, NULL, &err))
        return die(err.msg);
    const double *cand = cfg.model.lambda_candidates.n ? cfg.model.lambda_candidates.v
                                                       : cnnelm_lambda_default_candidates;
    int n_cand = cfg.model.lambda_candidates.n ? cfg.model.lambda_candidates.n : 7;
    cnnelm_progress prog;
    cnnelm_progress_init(&prog, 1);
    cnnelm_fit_opts fo = cnnelm_fit_opts_from_config(&cfg);
    cnnelm_subset tr = { &train, NULL, train.n }, te = { &test, NULL, test.n };
    double t0 = cnnelm_now();
    if (cnnelm_elm_fit(&net, &m, &tr, &fo, NULL, &prog, "fit", &err))
        return die(err.msg);
    double t_fit = cnnelm_now() - t0;
    t0 = cnnelm_now();
    if (cnnelm_elm_solve_float(m.U, m.V, a.hidden, a.classes, 1000.0, m.beta, &err))
        return die(err.msg);
    double t_solve = cnnelm_now() - t0;
    /* what "auto" runs instead of the Cholesky: the choice, with beta of the chosen lambda */
    cnnelm_lambda_choice ch;
    double *beta_auto = malloc(sizeof(double) * (size_t)a.hidden * a.classes);
    if (!beta_auto ||
        cnnelm_elm_choose_lambda(m.U, m.V, a.hidden, a.classes, m.n_examples, cand, n_cand, &ch,
                                 beta_auto, &err))
        return die(beta_auto ? err.msg : "out of memory");
    free(beta_auto);
    printf("%s k%d, L = %d, %zu training / %zu test images\n", a.layers, a.kernel, a.hidden, train.n,
           test.n);
    printf("%12s %12s %10s %10s\n", "lambda", "GCV", "df", "test %");
    double acc[CNNELM_LAMBDA_MAX_CANDIDATES], best = 0;
    for (int i = 0; i < n_cand; i++) {
        if (cnnelm_elm_solve_float(m.U, m.V, a.hidden, a.classes, cand[i], m.beta, &err)) {
            printf("%12g %12.6g %10.1f %10s (%s)\n", cand[i], ch.gcv[i], ch.df[i], "-", err.msg);
            acc[i] = 0;
            continue;
        }
        uint64_t *conf = calloc((size_t)a.classes * a.classes, sizeof *conf);
        if (!conf || cnnelm_evaluate(&net, &m, &te, conf, &prog, "test", &err))
            return die(conf ? err.msg : "out of memory");
        cnnelm_metrics mt;
        cnnelm_metrics_compute(conf, a.classes, &mt);
        free(conf);
        acc[i] = 100 * mt.accuracy;
        best = acc[i] > best ? acc[i] : best;
        printf("%12g %12.6g %10.1f %10.2f%s\n", cand[i], ch.gcv[i], ch.df[i], acc[i],
               i == ch.best ? "  <- GCV" : "");
    }
    printf("auto: lambda %g, %.2f%% (best candidate %.2f%%: %+.2f points)\n", ch.lambda[ch.best],
           acc[ch.best], best, acc[ch.best] - best);
    printf("cost: ELM fit %.2f s (sums + one Cholesky solve of %.3f s); \"auto\" replaces that solve "
           "by GCV over %d candidates + beta: %.3f s, i.e. %.2f s more = %.1f%% of the fit\n", t_fit,
           t_solve, n_cand, ch.seconds, ch.seconds - t_solve, 100 * (ch.seconds - t_solve) / t_fit);
    if (cfg.train.validation > 0) {
        /* train.validation: the whole held-out fit (sums without the held rows, one reduction,
         * the held rows scored and added, the refit), against the plain fit above */
        cnnelm_model mv;
        cnnelm_lambda_choice vc;
        if (cnnelm_model_init(&mv, &a, 1.0, cfg.train.seed, cfg.model.init == CNNELM_INIT_ZERO_MEAN, &err))
            return die(err.msg);
        mv.flags |= CNNELM_MODEL_LAMBDA_AUTO;
        t0 = cnnelm_now();
        if (cnnelm_elm_fit(&net, &mv, &tr, &fo, &vc, &prog, "fit", &err))
            return die(err.msg);
        double t_val = cnnelm_now() - t0;
        uint64_t *conf = calloc((size_t)a.classes * a.classes, sizeof *conf);
        if (!conf || cnnelm_evaluate(&net, &mv, &te, conf, &prog, "test", &err))
            return die(conf ? err.msg : "out of memory");
        cnnelm_metrics mt;
        cnnelm_metrics_compute(conf, a.classes, &mt);
        free(conf);
        printf("validation %g (%llu held-out rows): held-out accuracy by lambda:", cfg.train.validation,
               (unsigned long long)vc.n_held);
        for (int i = 0; i < vc.n; i++)
            printf(" %g: %.2f%%", vc.lambda[i], 100 * vc.held[i]);
        printf("\nvalidation: lambda %g, %.2f%% after the refit on every row (GCV %g: %.2f%%; best candidate "
               "%.2f%%: %+.2f points)\n", vc.lambda[vc.best], 100 * mt.accuracy, ch.lambda[ch.best], acc[ch.best],
               best, 100 * mt.accuracy - best);
        /* the plain fit once more, after the held-out one: the first fit of a run also warms up */
        cnnelm_model mp;
        if (cnnelm_model_init(&mp, &a, 1000.0, cfg.train.seed, cfg.model.init == CNNELM_INIT_ZERO_MEAN, &err))
            return die(err.msg);
        t0 = cnnelm_now();
        if (cnnelm_elm_fit(&net, &mp, &tr, &fo, NULL, &prog, "fit", &err))
            return die(err.msg);
        double t_fit2 = cnnelm_now() - t0;
        cnnelm_model_free(&mp);
        printf("cost: the held-out fit %.2f s against the plain fit's %.2f s (%.2f s first): %+.1f%% (its "
               "reduction, candidates' betas and refit %.3f s)\n", t_val, t_fit2, t_fit,
               100 * (t_val - t_fit2) / t_fit2, vc.seconds);
        cnnelm_model_free(&mv);
    }
    cnnelm_progress_destroy(&prog);
    cnnelm_net_close(&net);
    cnnelm_model_free(&m);
    cnnelm_dataset_free(&train);
    cnnelm_dataset_free(&test);
    cnnelm_config_free(&cfg);
    return 0;
}
