/* The core's ELM solve: against plain Gaussian elimination on random systems, its failure
 * messages, GCV against a direct computation from H, and (on Fashion-MNIST, skipped without it)
 * refit without fine-tuning against the single model: same sums, same solver, same beta. */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "cnnelm/plugin.h"
#include "cnnelm/reduce.h"
#include "model/elm_solve.h"
#include "training/experiment.h"
#include "helpers_runs.h"

static double urand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return ((*s >> 8) & 0xffffff) / (double)0x1000000 * 2.0 - 1.0;
}

/* A random problem: H (N x L, uniform in [-1, 1], never zero), one-hot T, U = H'H, V = H'T. */
typedef struct problem {
    int n, l, c;
    double *H, *T, *U, *V;
} problem;

static void problem_make(problem *p, int n, int l, int c, unsigned seed)
{
    p->n = n, p->l = l, p->c = c;
    p->H = malloc(sizeof(double) * (size_t)n * l);
    p->T = calloc((size_t)n * c, sizeof(double));
    p->U = calloc((size_t)l * l, sizeof(double));
    p->V = calloc((size_t)l * c, sizeof(double));
    for (int i = 0; i < n * l; i++)
        p->H[i] = urand(&seed);
    for (int r = 0; r < n; r++)
        p->T[r * c + (int)((urand(&seed) + 1) * 0.5 * c) % c] = 1;
    for (int r = 0; r < n; r++)
        for (int a = 0; a < l; a++) {
            for (int b = 0; b < l; b++)
                p->U[a * l + b] += p->H[r * l + a] * p->H[r * l + b];
            for (int k = 0; k < c; k++)
                p->V[a * c + k] += p->H[r * l + a] * p->T[r * c + k];
        }
}

static void problem_free(problem *p)
{
    free(p->H);
    free(p->T);
    free(p->U);
    free(p->V);
}

/* X = (U + I/lambda)^-1 B (B: l x m) by Gauss-Jordan with partial pivoting in long double. */
static void plain_solve(const double *U, int l, double lambda, const double *B, int m, double *X)
{
    int w = l + m;
    long double *A = malloc(sizeof(long double) * (size_t)l * w);
    for (int i = 0; i < l; i++) {
        for (int j = 0; j < l; j++)
            A[i * w + j] = U[i * l + j] + (i == j ? 1.0L / lambda : 0.0L);
        for (int j = 0; j < m; j++)
            A[i * w + l + j] = B[i * m + j];
    }
    for (int col = 0; col < l; col++) {
        int piv = col;
        for (int r = col + 1; r < l; r++)
            if (fabsl(A[r * w + col]) > fabsl(A[piv * w + col]))
                piv = r;
        for (int j = 0; j < w; j++) {
            long double t = A[col * w + j];
            A[col * w + j] = A[piv * w + j];
            A[piv * w + j] = t;
        }
        for (int r = 0; r < l; r++) {
            if (r == col)
                continue;
            long double f = A[r * w + col] / A[col * w + col];
            for (int j = col; j < w; j++)
                A[r * w + j] -= f * A[col * w + j];
        }
    }
    for (int i = 0; i < l; i++)
        for (int j = 0; j < m; j++)
            X[i * m + j] = (double)(A[i * w + l + j] / A[i * w + i]);
    free(A);
}

static double rel_diff(const double *a, const double *b, size_t n)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d += (a[i] - b[i]) * (a[i] - b[i]);
        s += b[i] * b[i];
    }
    return sqrt(d / (s > 0 ? s : 1));
}

START_TEST(solve_matches_plain_elimination)
{
    const double lambdas[] = { 0.01, 1, 100, 1e4 };
    for (int t = 0; t < 4; t++) {
        problem p;
        problem_make(&p, 400, 37 + 11 * t, 7, 11u + (unsigned)t);
        size_t LC = (size_t)p.l * p.c;
        double *got = malloc(LC * sizeof *got), *want = malloc(LC * sizeof *want);
        cnnelm_error err = { "" };
        ck_assert_msg(cnnelm_elm_solve(p.U, p.V, p.l, p.c, lambdas[t], got, &err) == 0, "%s", err.msg);
        plain_solve(p.U, p.l, lambdas[t], p.V, p.c, want);
        double r = rel_diff(got, want, LC);
        ck_assert_msg(r < 1e-10, "lambda %g: relative difference %g", lambdas[t], r);
        /* only the upper triangle is read: garbage below the diagonal changes nothing */
        double *beta2 = malloc(LC * sizeof *beta2);
        unsigned s = 99;
        for (int i = 0; i < p.l; i++)
            for (int j = 0; j < i; j++)
                p.U[i * p.l + j] = 1e6 * urand(&s);
        ck_assert_int_eq(cnnelm_elm_solve(p.U, p.V, p.l, p.c, lambdas[t], beta2, &err), 0);
        ck_assert_int_eq(memcmp(got, beta2, LC * sizeof *got), 0);
        free(beta2);
        free(got);
        free(want);
        problem_free(&p);
    }
}
END_TEST

START_TEST(failures_are_words)
{
    int l = 20, c = 3;
    double *U = calloc((size_t)l * l, sizeof *U), *V = calloc((size_t)l * c, sizeof *V);
    double *beta = malloc(sizeof(double) * (size_t)l * c);
    unsigned s = 5;
    for (int i = 0; i < l * c; i++)
        V[i] = urand(&s);
    for (int i = 0; i < l; i++)
        U[i * l + i] = -1.0 - i; /* not a sum of H'H: negative definite */
    cnnelm_error err = { "" };
    ck_assert_int_eq(cnnelm_elm_solve(U, V, l, c, 10.0, beta, &err), CNNELM_STATUS_NOT_POSITIVE_DEFINITE);
    ck_assert_msg(strstr(err.msg, "not positive definite") && strstr(err.msg, "lambda = 10") &&
                  !strstr(err.msg, "LAPACK") && !strstr(err.msg, "returned"), "%s", err.msg);
    U[0] = NAN;
    ck_assert_int_eq(cnnelm_elm_solve(U, V, l, c, 10.0, beta, &err), CNNELM_STATUS_NOT_POSITIVE_DEFINITE);
    ck_assert_msg(strstr(err.msg, "NaN or Inf"), "%s", err.msg);
    ck_assert_int_eq(cnnelm_elm_solve(U, V, l, c, 0.0, beta, &err), CNNELM_STATUS_INVALID_ARGUMENT);
    ck_assert_msg(strstr(err.msg, "lambda must be"), "%s", err.msg);
    free(U);
    free(V);
    free(beta);
}
END_TEST

/* One status convention: 0, or a negative code that says what kind of failure. A system that
 * cannot be solved is CNNELM_STATUS_NOT_POSITIVE_DEFINITE on every path (Cholesky, float
 * rounding, lambda = "auto"), so callers such as fine-tuning can tell it from other failures. */
START_TEST(statuses_say_what_failed)
{
    int l = 4, c = 2;
    double U[16] = { 0 }, V[8], beta[8];
    float fbeta[8];
    for (int i = 0; i < l; i++)
        U[i * l + i] = 1.0;
    for (int i = 0; i < l * c; i++)
        V[i] = 1e39; /* beta = V / (1 + 1/lambda): finite in double, too large for float */
    cnnelm_error err = { "" };
    ck_assert_int_eq(cnnelm_elm_solve(U, V, l, c, 1.0, beta, &err), 0);
    ck_assert(beta[0] > 3.4e38);
    ck_assert_int_eq(cnnelm_elm_solve_float(U, V, l, c, 1.0, fbeta, &err), CNNELM_STATUS_NOT_POSITIVE_DEFINITE);
    ck_assert_msg(strstr(err.msg, "too large for float"), "%s", err.msg);
    ck_assert_int_eq(cnnelm_elm_solve(U, V, 0, c, 1.0, beta, &err), CNNELM_STATUS_INVALID_ARGUMENT);

    /* lambda = "auto" on a negative definite U: no candidate's system can be factored */
    cnnelm_arch a;
    ck_assert_msg(cnnelm_arch_init(&a, "1c", 25, 1, 29, 29, 2, CNNELM_ACT_RELU, CNNELM_POOL_MEAN,
                                   CNNELM_ACT_IDENTITY, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(a.hidden, 25);
    cnnelm_model m;
    ck_assert_int_eq(cnnelm_model_init(&m, &a, 1.0, 1, 1, &err), 0);
    m.flags |= CNNELM_MODEL_LAMBDA_AUTO;
    m.n_examples = 100;
    for (int i = 0; i < a.hidden; i++)
        m.U[i * a.hidden + i] = -5.0 - i;
    for (int i = 0; i < a.hidden * 2; i++)
        m.V[i] = 1.0;
    ck_assert_int_eq(cnnelm_elm_solve_model(&m, NULL, 0, NULL, &err), CNNELM_STATUS_NOT_POSITIVE_DEFINITE);
    ck_assert_msg(strstr(err.msg, "not positive definite"), "%s", err.msg);
    /* the same sums without "auto": the Cholesky path says the same */
    m.flags &= ~(uint32_t)CNNELM_MODEL_LAMBDA_AUTO;
    ck_assert_int_eq(cnnelm_elm_solve_model(&m, NULL, 0, NULL, &err), CNNELM_STATUS_NOT_POSITIVE_DEFINITE);
    /* and the public reduce solve passes it on as a failure */
    ck_assert_int_ne(cnnelm_reduce_solve(&m, &err), 0);
    cnnelm_model_free(&m);

    /* every code has its own name; cnnelm_fail_status returns the code it is given */
    const int codes[] = { CNNELM_STATUS_OK, CNNELM_STATUS_FAILED, CNNELM_STATUS_INVALID_ARGUMENT,
                          CNNELM_STATUS_OUT_OF_MEMORY, CNNELM_STATUS_IO, CNNELM_STATUS_DATA,
                          CNNELM_STATUS_DEVICE, CNNELM_STATUS_NOT_POSITIVE_DEFINITE, CNNELM_STATUS_INTERRUPTED };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        ck_assert(codes[i] <= 0);
        ck_assert_str_ne(cnnelm_core_status_name(codes[i]), "unknown status");
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(cnnelm_core_status_name(codes[i]), cnnelm_core_status_name(codes[j]));
    }
    ck_assert_str_eq(cnnelm_core_status_name(5), "unknown status");
    ck_assert_int_eq(cnnelm_fail_status(&err, CNNELM_STATUS_IO, "%s: gone", "x.idx"), CNNELM_STATUS_IO);
    ck_assert_str_eq(err.msg, "x.idx: gone");
    ck_assert_int_eq(cnnelm_fail(&err, "plain"), CNNELM_STATUS_FAILED);
}
END_TEST

/* The beta that the choice gives on the way (from its reduction of U) is the Cholesky's. */
static void check_choice_beta(const problem *p, const double *cand, int n)
{
    size_t LC = (size_t)p->l * p->c;
    double *b1 = malloc(LC * sizeof *b1), *b2 = malloc(LC * sizeof *b2);
    cnnelm_lambda_choice ch;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_elm_choose_lambda(p->U, p->V, p->l, p->c, (uint64_t)p->n, cand, n, &ch, b1,
                                           &err) == 0, "%s", err.msg);
    ck_assert_int_eq(cnnelm_elm_solve(p->U, p->V, p->l, p->c, ch.lambda[ch.best], b2, &err), 0);
    double r = rel_diff(b1, b2, LC);
    ck_assert_msg(r < 1e-9, "L = %d: beta of the choice differs from the Cholesky's by %g", p->l, r);
    free(b1);
    free(b2);
}

/* Fewer examples than hidden units: U has rank 5 of 40, and a huge lambda loses I/lambda to
 * rounding, so that candidate's system does not factor. It is not chosen (gcv HUGE_VAL); the
 * others are, as if it were not there. Only when no candidate factors is the choice a failure. */
START_TEST(unfactorable_candidate_is_skipped)
{
    problem p;
    problem_make(&p, 5, 40, 3, 11u);
    const double cand[] = { 1, 10, 1e30 };
    cnnelm_lambda_choice ch;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_elm_choose_lambda(p.U, p.V, p.l, p.c, (uint64_t)p.n, cand, 3, &ch, NULL,
                                           &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ch.n, 3);
    ck_assert(ch.gcv[2] == HUGE_VAL);
    ck_assert(isfinite(ch.gcv[0]) && isfinite(ch.gcv[1]));
    ck_assert_int_eq(ch.best, ch.gcv[0] <= ch.gcv[1] ? 0 : 1);
    check_choice_beta(&p, cand, 3);
    /* the bad candidate first: the choice still starts from a usable one */
    const double rev[] = { 1e30, 10, 1 };
    ck_assert_msg(cnnelm_elm_choose_lambda(p.U, p.V, p.l, p.c, (uint64_t)p.n, rev, 3, &ch, NULL,
                                           &err) == 0, "%s", err.msg);
    ck_assert(ch.gcv[0] == HUGE_VAL);
    ck_assert_int_ne(ch.best, 0);
    check_choice_beta(&p, rev, 3);
    const double none[] = { 1e30, 1e31 };
    ck_assert_int_eq(cnnelm_elm_choose_lambda(p.U, p.V, p.l, p.c, (uint64_t)p.n, none, 2, &ch, NULL,
                                              &err), CNNELM_STATUS_NOT_POSITIVE_DEFINITE);
    ck_assert_msg(strstr(err.msg, "not positive definite for any candidate"), "%s", err.msg);
    problem_free(&p);
}
END_TEST

/* GCV from U, V, N alone equals GCV computed from H and T: RSS = ||T - H beta||^2 and
 * df = tr(H (U + I/lambda)^-1 H'), with explicit matrices. */
START_TEST(gcv_matches_direct_computation)
{
    problem p;
    problem_make(&p, 300, 30, 5, 3u);
    const double cand[] = { 0.1, 1, 10, 100, 1000 };
    cnnelm_lambda_choice ch;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_elm_choose_lambda(p.U, p.V, p.l, p.c, (uint64_t)p.n, cand, 5, &ch, NULL, &err) == 0,
                  "%s", err.msg);
    ck_assert_int_eq(ch.n, 5);
    int best = 0;
    double best_gcv = HUGE_VAL;
    for (int i = 0; i < 5; i++) {
        double *beta = malloc(sizeof(double) * (size_t)p.l * p.c);
        plain_solve(p.U, p.l, cand[i], p.V, p.c, beta);
        double rss = 0;
        for (int r = 0; r < p.n; r++)
            for (int k = 0; k < p.c; k++) {
                double y = 0;
                for (int a = 0; a < p.l; a++)
                    y += p.H[r * p.l + a] * beta[a * p.c + k];
                rss += (p.T[r * p.c + k] - y) * (p.T[r * p.c + k] - y);
            }
        /* df = tr((U + I/lambda)^-1 U) */
        double *X = malloc(sizeof(double) * (size_t)p.l * p.l);
        plain_solve(p.U, p.l, cand[i], p.U, p.l, X);
        double df = 0;
        for (int a = 0; a < p.l; a++)
            df += X[a * p.l + a];
        double gcv = p.n * rss / ((p.n - df) * (p.n - df));
        ck_assert_msg(fabs(ch.gcv[i] - gcv) <= 1e-9 * gcv, "lambda %g: GCV %.12g, direct %.12g",
                      cand[i], ch.gcv[i], gcv);
        ck_assert_msg(fabs(ch.df[i] - df) <= 1e-9 * df, "lambda %g: df %.12g, direct %.12g", cand[i],
                      ch.df[i], df);
        if (gcv < best_gcv)
            best_gcv = gcv, best = i;
        free(beta);
        free(X);
    }
    ck_assert_int_eq(ch.best, best);
    check_choice_beta(&p, cand, 5);
    problem_free(&p);
}
END_TEST

/* Wide U (L >= 512) takes the two-stage path (full -> band -> eigenvalues, banded solves):
 * the same GCV as RSS and df computed with the Cholesky solver from H itself. */
START_TEST(gcv_band_path_matches_direct)
{
    problem p;
    problem_make(&p, 700, 600, 4, 17u);
    const double cand[] = { 0.01, 1, 100 };
    cnnelm_lambda_choice ch;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_elm_choose_lambda(p.U, p.V, p.l, p.c, (uint64_t)p.n, cand, 3, &ch, NULL, &err) == 0,
                  "%s", err.msg);
    size_t L = (size_t)p.l;
    double *beta = malloc(sizeof(double) * L * p.c), *X = malloc(sizeof(double) * L * L);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(cnnelm_elm_solve(p.U, p.V, p.l, p.c, cand[i], beta, &err), 0);
        double rss = 0;
        for (int r = 0; r < p.n; r++)
            for (int k = 0; k < p.c; k++) {
                double y = 0;
                for (int a = 0; a < p.l; a++)
                    y += p.H[r * p.l + a] * beta[a * p.c + k];
                rss += (p.T[r * p.c + k] - y) * (p.T[r * p.c + k] - y);
            }
        ck_assert_int_eq(cnnelm_elm_solve(p.U, p.U, p.l, p.l, cand[i], X, &err), 0);
        double df = 0;
        for (size_t a = 0; a < L; a++)
            df += X[a * L + a];
        double gcv = p.n * rss / ((p.n - df) * (p.n - df));
        ck_assert_msg(fabs(ch.gcv[i] - gcv) <= 1e-7 * gcv, "lambda %g: GCV %.12g, direct %.12g",
                      cand[i], ch.gcv[i], gcv);
        ck_assert_msg(fabs(ch.df[i] - df) <= 1e-7 * df, "lambda %g: df %.12g, direct %.12g", cand[i],
                      ch.df[i], df);
    }
    free(beta);
    free(X);
    check_choice_beta(&p, cand, 3);
    problem_free(&p);
}
END_TEST

/* ---- on Fashion-MNIST: refit without fine-tuning == the single model ------------------ */

static cnnelm_dataset train_ds, test_ds;
static int have_data;

static void run_partitions(helpers_run *r, const char *const *sets, int n_sets, size_t n_train)
{
    cnnelm_error err = { "" };
    helpers_run_open(r, CNNELM_SOURCE_DIR "/conf/default.cfg", sets, n_sets);
    ck_assert_msg(helpers_run_experiment(r, (cnnelm_subset){ &train_ds, NULL, n_train },
                                         (cnnelm_subset){ &test_ds, NULL, test_ds.n }, &err) == 0, "%s", err.msg);
    ck_assert(r->x.has_single);
}

static double rel_diff_f(const float *a, const float *b, size_t n)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        s += (double)b[i] * b[i];
    }
    return sqrt(d / (s > 0 ? s : 1));
}

/* With the ELM batch at one example every product is rounded to float alone, identically in
 * both runs, and everything else is double: refit == single to double rounding. */
START_TEST(refit_equals_single_model)
{
    if (!have_data)
        return;
    const char *sets[] = { "train.partitions=4", "train.partitioning=shuffle", "train.reduce=refit",
                           "train.compare_single=true", "train.batch=1", "model.lambda=1000",
                           "workers=({backend=\"cpu\";threads=1;})" };
    helpers_run r;
    run_partitions(&r, sets, 7, 2000);
    const cnnelm_model *a = &r.x.reduced, *b = &r.x.single.model;
    size_t L = (size_t)a->arch.hidden, C = (size_t)a->arch.classes;
    ck_assert_uint_eq(a->n_examples, b->n_examples);
    ck_assert_int_eq(memcmp(a->params, b->params, a->arch.n_params * sizeof(float)), 0);
    double ru = rel_diff(a->U, b->U, L * L), rv = rel_diff(a->V, b->V, L * C);
    ck_assert_msg(ru < 1e-13 && rv < 1e-13, "U differs by %g, V by %g", ru, rv);
    /* the same solver on both: beta in double agrees to 1e-9 */
    double *ba = malloc(L * C * sizeof *ba), *bb = malloc(L * C * sizeof *bb);
    cnnelm_error err = { "" };
    ck_assert_int_eq(cnnelm_elm_solve(a->U, a->V, (int)L, (int)C, a->lambda, ba, &err), 0);
    ck_assert_int_eq(cnnelm_elm_solve(b->U, b->V, (int)L, (int)C, b->lambda, bb, &err), 0);
    double rb = rel_diff(ba, bb, L * C);
    ck_assert_msg(rb < 1e-9, "beta differs by %g relative", rb);
    double rbf = rel_diff_f(a->beta, b->beta, L * C);
    ck_assert_msg(rbf < 1e-7, "stored (float) beta differs by %g relative", rbf);
    printf("refit vs single: U %.3g, V %.3g, beta (double) %.3g, beta (float) %.3g relative; accuracy %.4f\n", ru, rv, rb, rbf, r.x.reduced_test.accuracy);
    /* and the predictions are identical: same confusion matrix */
    ck_assert_double_eq(r.x.reduced_test.accuracy, r.x.single.test.accuracy);
    ck_assert_double_eq(r.x.reduced_test.kappa, r.x.single.test.kappa);
    ck_assert(r.x.reduced_test.accuracy > 0.6);
    free(ba);
    free(bb);
    helpers_run_free(&r);
}
END_TEST

/* lambda = "auto": every partition and the refit choose by GCV; the refit's choice is on the
 * summed U, V, as the single model's; both solve to the same beta. */
START_TEST(auto_lambda_refit_and_single_agree)
{
    if (!have_data)
        return;
    const char *sets[] = { "train.partitions=3", "train.reduce=refit", "train.compare_single=true",
                           "model.lambda=\"auto\"", "model.lambda_candidates=[1.0, 100.0, 10000.0]" };
    helpers_run r;
    run_partitions(&r, sets, 5, 3000);
    const cnnelm_model *a = &r.x.reduced, *b = &r.x.single.model;
    ck_assert(a->flags & CNNELM_MODEL_LAMBDA_AUTO);
    ck_assert_int_eq(r.x.reduced_lambda.n, 3);
    ck_assert_int_eq(r.x.single.log.lambda_choice.n, 3);
    ck_assert_double_eq(a->lambda, b->lambda);
    ck_assert(a->lambda == 1.0 || a->lambda == 100.0 || a->lambda == 10000.0);
    for (int p = 0; p < 3; p++)
        ck_assert_int_eq(r.x.parts[p].log.lambda_choice.n, 3);
    double g = r.x.reduced_lambda.gcv[r.x.reduced_lambda.best];
    for (int i = 0; i < 3; i++)
        ck_assert(g <= r.x.reduced_lambda.gcv[i]);
    size_t LC = (size_t)a->arch.hidden * a->arch.classes;
    double rbf = rel_diff_f(a->beta, b->beta, LC);
    /* default ELM batch: float holds up to 10,000 products, grouped differently in the two runs */
    ck_assert_msg(rbf < 1e-3, "beta differs by %g relative", rbf);
    printf("auto: lambda %g, beta (float) differs by %.3g relative; accuracy %.4f vs %.4f\n", a->lambda, rbf, r.x.reduced_test.accuracy, r.x.single.test.accuracy);
    ck_assert(fabs(r.x.reduced_test.accuracy - r.x.single.test.accuracy) < 0.005);
    helpers_run_free(&r);
}
END_TEST

int main(void)
{
    have_data = helpers_fashion_slice(&train_ds, 3000, &test_ds, 1000); /* else the end-to-end cases skip */
    Suite *s = suite_create("elm_solve");
    TCase *tc = tcase_create("solve");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, solve_matches_plain_elimination);
    tcase_add_test(tc, failures_are_words);
    tcase_add_test(tc, statuses_say_what_failed);
    tcase_add_test(tc, gcv_matches_direct_computation);
    tcase_add_test(tc, unfactorable_candidate_is_skipped);
    tcase_add_test(tc, gcv_band_path_matches_direct);
    tcase_add_test(tc, refit_equals_single_model);
    tcase_add_test(tc, auto_lambda_refit_and_single_agree);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (have_data) {
        cnnelm_dataset_free(&train_ds);
        cnnelm_dataset_free(&test_ds);
    }
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
