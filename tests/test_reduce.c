/* Checks for the reduce (core/src/fixsum.c, core/src/reduce.c) on synthetic random data:
 * - the fixed-point accumulator gives the same bits for any order or tree of additions, within
 *   its stated bound of a long-double Kahan reference, and refuses what it cannot add exactly;
 * - mean and weighted reduces equal a plain double average to float rounding, for any order;
 * - refit of partition sums equals a one-machine fit of all the data (the same solver): beta
 *   within 1e-5 relative and identical predictions;
 * - the per-partition facts record survives a round trip and refuses a malformed one. */
#define _GNU_SOURCE
#include "cnnelm/reduce.h"
#include "model/elm_solve.h"
#include "base/fixsum.h"
#include "training/part_facts.h"
#include "training/reducer.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t next_u64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform(void) { return (double)(next_u64() >> 11) / 9007199254740992.0; }

/* A value of random sign, mantissa and exponent in [-spread, spread] around 2^scale. */
static double wild(int scale, int spread)
{
    int e = scale + (int)(next_u64() % (uint64_t)(2 * spread + 1)) - spread;
    return (next_u64() & 1 ? -1 : 1) * ldexp(0.5 + uniform() / 2, e);
}

enum { K = 24, N = 500 };
static double X[K][N];

static void fill(int spread_between, int spread_within)
{
    for (int p = 0; p < K; p++) {
        int scale = (int)(next_u64() % (uint64_t)(2 * spread_between + 1)) - spread_between;
        for (int i = 0; i < N; i++)
            X[p][i] = wild(scale, spread_within);
    }
}

static void sum_in_order(cnnelm_fixsum *s, const int *order, int n)
{
    cnnelm_error err = { "" };
    ck_assert_int_eq(cnnelm_fixsum_init(s, N, &err), 0);
    for (int i = 0; i < n; i++)
        ck_assert_msg(cnnelm_fixsum_add(s, X[order[i]], 1.0, "x", &err) == 0, "%s", err.msg);
}

/* a + b as two ranks would: agree on the step, then add limbs */
static void merge(cnnelm_fixsum *a, cnnelm_fixsum *b)
{
    cnnelm_error err = { "" };
    if (b->terms == 0)
        return;
    int lsb = a->terms && a->lsb < b->lsb ? a->lsb : b->lsb;
    int top = a->terms && a->top > b->top ? a->top : b->top;
    uint64_t terms = a->terms + b->terms;
    ck_assert_msg(cnnelm_fixsum_rescale(a, lsb, top, terms, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_fixsum_rescale(b, lsb, top, terms, &err) == 0, "%s", err.msg);
    cnnelm_fixsum_add_limbs(a->w, b->w, N);
}

/* A tree: the partitions dealt to `ranks` ranks (p mod ranks, in reverse order on each), each
 * rank's sum merged pairwise (rank 0 + 1, 2 + 3, ..., then again). */
static void sum_as_tree(cnnelm_fixsum *out, int ranks)
{
    cnnelm_fixsum part[K];
    for (int r = 0; r < ranks; r++) {
        int order[K], n = 0;
        for (int p = K - 1; p >= 0; p--)
            if (p % ranks == r)
                order[n++] = p;
        sum_in_order(&part[r], order, n);
    }
    for (int step = 1; step < ranks; step *= 2)
        for (int r = 0; r + step < ranks; r += 2 * step)
            merge(&part[r], &part[r + step]);
    *out = part[0];
    for (int r = 1; r < ranks; r++)
        cnnelm_fixsum_free(&part[r]);
}

static void check_same_bits(const cnnelm_fixsum *a, const cnnelm_fixsum *b, const char *what)
{
    double da[N], db[N];
    cnnelm_fixsum_to_double(a, da, 1.0);
    cnnelm_fixsum_to_double(b, db, 1.0);
    ck_assert_msg(memcmp(da, db, sizeof da) == 0, "%s: the sums differ", what);
}

/* Kahan in long double: error ~ 2^-64 of the sum of magnitudes */
static long double kahan(int i, long double *abs_sum)
{
    long double s = 0, c = 0, a = 0;
    for (int p = 0; p < K; p++) {
        long double y = X[p][i] - c, t = s + y;
        c = (t - s) - y;
        s = t;
        a += fabsl((long double)X[p][i]);
    }
    *abs_sum = a;
    return s;
}

static void check_orders(int spread_between, int spread_within)
{
    fill(spread_between, spread_within);
    int fwd[K], rev[K], shuf[K];
    for (int p = 0; p < K; p++)
        fwd[p] = rev[K - 1 - p] = shuf[p] = p;
    for (int p = K - 1; p > 0; p--) {
        int q = (int)(next_u64() % (uint64_t)(p + 1)), t = shuf[p];
        shuf[p] = shuf[q];
        shuf[q] = t;
    }
    cnnelm_fixsum a, b, c, t2, t3, t7;
    sum_in_order(&a, fwd, K);
    sum_in_order(&b, rev, K);
    sum_in_order(&c, shuf, K);
    sum_as_tree(&t2, 2);
    sum_as_tree(&t3, 3);
    sum_as_tree(&t7, 7);
    check_same_bits(&a, &b, "forward vs reverse");
    check_same_bits(&a, &c, "forward vs shuffled");
    check_same_bits(&a, &t2, "one sum vs a tree of 2");
    check_same_bits(&a, &t3, "one sum vs a tree of 3");
    check_same_bits(&a, &t7, "one sum vs a tree of 7");
    /* the bound (docs/reduce.md): sum_p 2^(top_p - 63) for the rounding of each contribution,
     * half an ulp for the conversion back; plus the reference's own error */
    double bound_terms = 0;
    for (int p = 0; p < K; p++) {
        double big = 0;
        for (int i = 0; i < N; i++)
            big = fmax(big, fabs(X[p][i]));
        int top;
        frexp(big, &top);
        bound_terms += ldexp(1.0, top - 63);
    }
    double worst = 0;
    for (int i = 0; i < N; i++) {
        long double abs_sum, ref = kahan(i, &abs_sum);
        double got = cnnelm_fixsum_get(&a, i);
        double bound = bound_terms + ldexp(fabs((double)ref), -53) + (double)(abs_sum * 0x1p-62L);
        double diff = (double)fabsl((long double)got - ref);
        ck_assert_msg(diff <= bound, "element %d: %.17g vs reference %.17Lg (diff %g > bound %g)", i, got,
                      ref, diff, bound);
        if (bound > 0 && diff / bound > worst)
            worst = diff / bound;
    }
    printf("fixsum: spread 2^%d between, 2^%d within: same bits in 6 orders/trees; worst error %.3f "
           "of the bound\n", spread_between, spread_within, worst);
    cnnelm_fixsum_free(&a);
    cnnelm_fixsum_free(&b);
    cnnelm_fixsum_free(&c);
    cnnelm_fixsum_free(&t2);
    cnnelm_fixsum_free(&t3);
    cnnelm_fixsum_free(&t7);
}

START_TEST(fixsum_order_independent_and_bounded)
{
    check_orders(0, 3);   /* similar magnitudes: like partitions' U */
    check_orders(20, 10); /* contributions 2^40 apart */
    check_orders(3, 60);  /* tiny elements beside large ones */
}
END_TEST

START_TEST(fixsum_cancels_exactly)
{
    cnnelm_error err = { "" };
    cnnelm_fixsum s;
    fill(5, 30);
    ck_assert_int_eq(cnnelm_fixsum_init(&s, N, &err), 0);
    double neg[N];
    for (int i = 0; i < N; i++)
        neg[i] = -X[0][i];
    ck_assert_int_eq(cnnelm_fixsum_add(&s, X[0], 1.0, "x", &err), 0);
    ck_assert_int_eq(cnnelm_fixsum_add(&s, X[1], 1.0, "y", &err), 0);
    ck_assert_int_eq(cnnelm_fixsum_add(&s, neg, 1.0, "-x", &err), 0);
    /* x + y - x: y rounded at x's and y's steps, i.e. y to within 2^(top(y) - 63) */
    int top_y;
    double big = 0;
    for (int i = 0; i < N; i++)
        big = fmax(big, fabs(X[1][i]));
    frexp(big, &top_y);
    for (int i = 0; i < N; i++)
        ck_assert_msg(fabs(cnnelm_fixsum_get(&s, i) - X[1][i]) <= ldexp(1.0, top_y - 63) + ldexp(fabs(X[1][i]), -53),
                      "element %d", i);
    /* and x - x is exactly 0 */
    cnnelm_fixsum_clear(&s);
    ck_assert_int_eq(cnnelm_fixsum_add(&s, X[0], 1.0, "x", &err), 0);
    ck_assert_int_eq(cnnelm_fixsum_add(&s, neg, 1.0, "-x", &err), 0);
    for (int i = 0; i < N; i++)
        ck_assert(cnnelm_fixsum_get(&s, i) == 0.0);
    cnnelm_fixsum_free(&s);
}
END_TEST

START_TEST(fixsum_refuses_what_it_cannot_add)
{
    cnnelm_error err = { "" };
    cnnelm_fixsum s;
    ck_assert_int_eq(cnnelm_fixsum_init(&s, 2, &err), 0);
    double a[2] = { 1.0, -3.0 }, huge[2] = { 0x1p70, 1.0 }, bad[2] = { 1.0, NAN };
    ck_assert_int_eq(cnnelm_fixsum_add(&s, a, 1.0, "partition 1's U", &err), 0);
    ck_assert_int_eq(cnnelm_fixsum_add(&s, huge, 1.0, "partition 2's U", &err), -1);
    ck_assert_msg(strstr(err.msg, "partition 2's U differs in magnitude") != NULL, "%s", err.msg);
    /* the message states the bound for 2 terms: 126 - 62 - bits(2) */
    ck_assert_msg(strstr(err.msg, "by more than 2^62:") != NULL, "%s", err.msg);
    ck_assert_int_eq(cnnelm_fixsum_add(&s, bad, 1.0, "partition 3's V", &err), -1);
    ck_assert_msg(strstr(err.msg, "partition 3's V holds a value that is not finite") != NULL, "%s", err.msg);
    /* a weight that overflows a finite value is refused too (weighted: n_i x_i) */
    double big[2] = { 1e300, 1.0 };
    ck_assert_int_eq(cnnelm_fixsum_add(&s, big, 1e10, "partition 4's beta", &err), -1);
    ck_assert_msg(strstr(err.msg, "partition 4's beta holds a value that is not finite") != NULL, "%s", err.msg);
    /* the refused ones left the sum as it was */
    ck_assert(cnnelm_fixsum_get(&s, 0) == 1.0 && cnnelm_fixsum_get(&s, 1) == -3.0);
    /* exactly at the bound (|a| < 2^2, |edge| < 2^64: 62 apart) still adds, exactly */
    double edge[2] = { 0x1p63, 0.0 };
    ck_assert_msg(cnnelm_fixsum_add(&s, edge, 1.0, "partition 5's U", &err) == 0, "%s", err.msg);
    ck_assert(cnnelm_fixsum_get(&s, 0) == 0x1p63 && cnnelm_fixsum_get(&s, 1) == -3.0);
    double unedge[2] = { -0x1p63, 0.0 };
    ck_assert_msg(cnnelm_fixsum_add(&s, unedge, 1.0, "partition 6's U", &err) == 0, "%s", err.msg);
    ck_assert(cnnelm_fixsum_get(&s, 0) == 1.0 && cnnelm_fixsum_get(&s, 1) == -3.0);
    cnnelm_fixsum_free(&s);
}
END_TEST

/* ---- models ---- */

static cnnelm_arch arch;

static void setup_arch(void)
{
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_arch_init(&arch, "3c-2s", 3, 1, 10, 10, 4, CNNELM_ACT_RELU, CNNELM_POOL_MEAN,
                                   CNNELM_ACT_IDENTITY, &err) == 0, "%s", err.msg);
}

/* Partition p's model: kernels perturbed (as if fine-tuned) when tuned, random beta, U = H'H
 * and V = H'T of rows [lo, hi) of H, T. */
static void make_model(cnnelm_model *m, const cnnelm_model *init, int tuned, const double *H,
                       const double *T, size_t lo, size_t hi)
{
    cnnelm_error err = { "" };
    ck_assert_int_eq(cnnelm_model_copy(m, init, &err), 0);
    size_t L = (size_t)arch.hidden, C = (size_t)arch.classes;
    for (size_t i = 0; tuned && i < arch.n_params; i++)
        m->params[i] += (float)(0.01 * (uniform() - 0.5));
    for (size_t i = 0; i < L * C; i++)
        m->beta[i] = (float)(uniform() - 0.5);
    memset(m->U, 0, L * L * sizeof *m->U);
    memset(m->V, 0, L * C * sizeof *m->V);
    for (size_t r = lo; r < hi; r++)
        for (size_t i = 0; i < L; i++) {
            for (size_t j = 0; j < L; j++)
                m->U[i * L + j] += H[r * L + i] * H[r * L + j];
            for (size_t c = 0; c < C; c++)
                m->V[i * C + c] += H[r * L + i] * T[r * C + c];
        }
    m->n_examples = hi - lo;
}

enum { KM = 5, ROWS = 400 };

static double *H, *T;
static int labels[ROWS];
static cnnelm_model init_model, models[KM];
static size_t cut[KM + 1];

static void make_data(int tuned)
{
    cnnelm_error err = { "" };
    setup_arch();
    size_t L = (size_t)arch.hidden, C = (size_t)arch.classes;
    H = malloc(ROWS * L * sizeof *H);
    T = calloc(ROWS * C, sizeof *T);
    ck_assert(H && T);
    /* features that carry the label, so predictions are meaningful */
    for (size_t r = 0; r < ROWS; r++) {
        labels[r] = (int)(next_u64() % C);
        for (size_t i = 0; i < L; i++)
            H[r * L + i] = uniform() + (i % C == (size_t)labels[r] ? 0.5 : 0.0);
        T[r * C + (size_t)labels[r]] = 1.0;
    }
    ck_assert_int_eq(cnnelm_model_init(&init_model, &arch, 10.0, 7, 0, &err), 0);
    /* unequal partitions, so weighted differs from mean */
    size_t sizes[KM] = { 40, 130, 70, 100, 60 };
    cut[0] = 0;
    for (int p = 0; p < KM; p++) {
        cut[p + 1] = cut[p] + sizes[p];
        make_model(&models[p], &init_model, tuned, H, T, cut[p], cut[p + 1]);
    }
    ck_assert_uint_eq(cut[KM], ROWS);
}

static void free_data(void)
{
    for (int p = 0; p < KM; p++)
        cnnelm_model_free(&models[p]);
    cnnelm_model_free(&init_model);
    free(H);
    free(T);
}

static void check_mode(cnnelm_reduce mode)
{
    cnnelm_error err = { "" };
    size_t L = (size_t)arch.hidden, C = (size_t)arch.classes, P = arch.n_params;
    const cnnelm_model *fwd[KM], *rev[KM];
    for (int p = 0; p < KM; p++) {
        fwd[p] = &models[p];
        rev[p] = &models[KM - 1 - p];
    }
    cnnelm_model a, b;
    ck_assert_msg(cnnelm_reduce_models(fwd, KM, mode, &a, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_reduce_models(rev, KM, mode, &b, &err) == 0, "%s", err.msg);
    ck_assert_msg(memcmp(a.params, b.params, P * sizeof *a.params) == 0, "kernels depend on the order");
    ck_assert_msg(memcmp(a.beta, b.beta, L * C * sizeof *a.beta) == 0, "beta depends on the order");
    ck_assert_msg(memcmp(a.U, b.U, L * L * sizeof *a.U) == 0, "U depends on the order");
    ck_assert_msg(memcmp(a.V, b.V, L * C * sizeof *a.V) == 0, "V depends on the order");
    /* a plain double reference */
    double total = 0;
    for (int p = 0; p < KM; p++)
        total += (double)models[p].n_examples;
    for (size_t i = 0; i < P; i++) {
        double ref = 0;
        for (int p = 0; p < KM; p++)
            ref += (mode == CNNELM_REDUCE_WEIGHTED ? models[p].n_examples / total : 1.0 / KM) * models[p].params[i];
        ck_assert_msg(fabs(a.params[i] - ref) <= 1e-6 * fabs(ref) + 1e-9, "kernel %zu: %g vs %g", i, a.params[i], ref);
    }
    for (size_t i = 0; i < L * C; i++) {
        double ref = 0, rv = 0;
        for (int p = 0; p < KM; p++) {
            ref += (mode == CNNELM_REDUCE_WEIGHTED ? models[p].n_examples / total : 1.0 / KM) * models[p].beta[i];
            rv += models[p].V[i];
        }
        ck_assert_msg(fabs(a.beta[i] - ref) <= 1e-6 * fabs(ref) + 1e-7, "beta %zu: %g vs %g", i, a.beta[i], ref);
        ck_assert_msg(fabs(a.V[i] - rv) <= 1e-14 * fabs(rv), "V %zu: %.17g vs %.17g", i, a.V[i], rv);
    }
    for (size_t i = 0; i < L * L; i++) {
        double ru = 0;
        for (int p = 0; p < KM; p++)
            ru += models[p].U[i];
        ck_assert_msg(fabs(a.U[i] - ru) <= 1e-14 * fabs(ru), "U %zu: %.17g vs %.17g", i, a.U[i], ru);
    }
    ck_assert_uint_eq(a.n_examples, ROWS);
    cnnelm_model_free(&a);
    cnnelm_model_free(&b);
}

START_TEST(mean_and_weighted_match_plain_average)
{
    make_data(1);
    check_mode(CNNELM_REDUCE_MEAN);
    check_mode(CNNELM_REDUCE_WEIGHTED);
    /* not fine-tuned: the kernels are exactly the initial ones, not a rounded mean of them */
    cnnelm_error err = { "" };
    free_data();
    make_data(0);
    const cnnelm_model *ptr[KM];
    for (int p = 0; p < KM; p++)
        ptr[p] = &models[p];
    cnnelm_model a;
    ck_assert_msg(cnnelm_reduce_models(ptr, KM, CNNELM_REDUCE_MEAN, &a, &err) == 0, "%s", err.msg);
    ck_assert(memcmp(a.params, init_model.params, arch.n_params * sizeof(float)) == 0);
    cnnelm_model_free(&a);
    free_data();
}
END_TEST

START_TEST(refit_equals_one_machine_fit)
{
    make_data(0);
    cnnelm_error err = { "" };
    size_t L = (size_t)arch.hidden, C = (size_t)arch.classes;
    /* the partitions folded in a scrambled order, as workers would finish */
    cnnelm_reducer r;
    ck_assert_int_eq(cnnelm_reducer_init(&r, &init_model, CNNELM_REDUCE_REFIT, &err), 0);
    int order[KM] = { 3, 0, 4, 1, 2 };
    for (int i = 0; i < KM; i++)
        ck_assert_msg(cnnelm_reducer_add(&r, &models[order[i]], order[i], NULL, &err) == 0, "%s", err.msg);
    cnnelm_progress prog;
    cnnelm_progress_init(&prog, 1);
    cnnelm_model out;
    ck_assert_msg(cnnelm_reducer_refit(&r, NULL, NULL, NULL, KM, NULL, &prog, &out, NULL, &err) == 0, "%s",
                  err.msg);
    cnnelm_progress_destroy(&prog);
    cnnelm_reducer_free(&r);
    /* one machine: U, V over all rows at once, the same solver */
    cnnelm_model one;
    make_model(&one, &init_model, 0, H, T, 0, ROWS);
    float *beta = malloc(L * C * sizeof *beta);
    ck_assert_msg(cnnelm_elm_solve_float(one.U, one.V, (int)L, (int)C, one.lambda, beta, &err) == 0, "%s",
                  err.msg);
    ck_assert_uint_eq(out.n_examples, ROWS);
    ck_assert(out.lambda == one.lambda);
    double d = 0, s = 0;
    for (size_t i = 0; i < L * C; i++) {
        d += ((double)out.beta[i] - beta[i]) * ((double)out.beta[i] - beta[i]);
        s += (double)beta[i] * beta[i];
    }
    ck_assert_msg(sqrt(d / s) < 1e-5, "beta differs by %g relative", sqrt(d / s));
    int same = 0, right = 0;
    for (size_t row = 0; row < ROWS; row++) {
        int pa = 0, pb = 0;
        double ba = -INFINITY, bb = -INFINITY;
        for (size_t c = 0; c < C; c++) {
            double ya = 0, yb = 0;
            for (size_t i = 0; i < L; i++) {
                ya += H[row * L + i] * out.beta[i * C + c];
                yb += H[row * L + i] * beta[i * C + c];
            }
            if (ya > ba) { ba = ya; pa = (int)c; }
            if (yb > bb) { bb = yb; pb = (int)c; }
        }
        same += pa == pb;
        right += pa == labels[row];
    }
    ck_assert_int_eq(same, ROWS);
    ck_assert_msg(right > ROWS / 2, "refit predicts only %d of %d", right, ROWS);
    printf("refit: beta within %.2g of the one-machine fit, %d/%d identical predictions\n", sqrt(d / s), same,
           ROWS);
    free(beta);
    cnnelm_model_free(&one);
    cnnelm_model_free(&out);
    free_data();
}
END_TEST

START_TEST(reduce_refuses_mismatched_models)
{
    make_data(0);
    cnnelm_error err = { "" };
    models[2].seed = 99;
    const cnnelm_model *ptr[KM];
    for (int p = 0; p < KM; p++)
        ptr[p] = &models[p];
    cnnelm_model a;
    ck_assert_int_eq(cnnelm_reduce_models(ptr, KM, CNNELM_REDUCE_MEAN, &a, &err), -1);
    ck_assert_msg(strstr(err.msg, "different initial weights") != NULL, "%s", err.msg);
    models[2].seed = models[0].seed;
    models[3].U[5] = NAN;
    ck_assert_int_eq(cnnelm_reduce_models(ptr, KM, CNNELM_REDUCE_MEAN, &a, &err), -1);
    ck_assert_msg(strstr(err.msg, "partition 4's U holds a value that is not finite") != NULL, "%s", err.msg);
    free_data();
}
END_TEST

/* cnnelm average: a file named twice (or by a second name) is refused, not counted double. */
START_TEST(average_refuses_a_repeated_file)
{
    make_data(0);
    cnnelm_error err = { "" };
    char dir[] = "/tmp/test_reduce.XXXXXX", a[64], b[64], link_b[64], out[64];
    ck_assert(mkdtemp(dir) != NULL);
    snprintf(a, sizeof a, "%s/a.model", dir);
    snprintf(b, sizeof b, "%s/b.model", dir);
    snprintf(link_b, sizeof link_b, "%s/also-b.model", dir);
    snprintf(out, sizeof out, "%s/out.model", dir);
    ck_assert_msg(cnnelm_model_save(&models[0], a, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_model_save(&models[1], b, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(link(b, link_b), 0);
    const char *two[2] = { a, b }, *again[3] = { a, b, a }, *linked[2] = { b, link_b };
    cnnelm_average_options o;
    memset(&o, 0, sizeof o);
    o.output = out;
    o.reduce = CNNELM_REDUCE_MEAN;
    o.quiet = 1;
    uint64_t n = 0;
    o.models = two;
    o.n_models = 2;
    ck_assert_msg(cnnelm_average_models(&o, &n, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(n, models[0].n_examples + models[1].n_examples);
    o.models = again;
    o.n_models = 3;
    ck_assert_int_eq(cnnelm_average_models(&o, &n, &err), -1);
    ck_assert_msg(strstr(err.msg, "a.model are the same file") != NULL, "%s", err.msg);
    o.models = linked;
    o.n_models = 2;
    ck_assert_int_eq(cnnelm_average_models(&o, &n, &err), -1);
    ck_assert_msg(strstr(err.msg, "also-b.model are the same file") != NULL, "%s", err.msg);
    unlink(a);
    unlink(b);
    unlink(link_b);
    unlink(out);
    ck_assert_int_eq(rmdir(dir), 0);
    free_data();
}
END_TEST

/* ---- the per-partition facts record ---- */

START_TEST(facts_round_trip)
{
    cnnelm_error err = { "" };
    cnnelm_part_result a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.seconds = 12.5;
    a.worker = 3;
    a.rank = 2;
    a.resumed = 1;
    a.model.iterations = 4;
    a.model.flags = 3;
    a.model.lambda = 123.25;
    a.examples = 987654321;
    a.test = (cnnelm_metrics){ 1000, 0.875, 0.8611, 0.0123 };
    a.log.n = 3;
    a.log.iters = calloc(3, sizeof *a.log.iters);
    for (int i = 0; i < 3; i++)
        a.log.iters[i] = (cnnelm_iter_stats){ i, 0.5 / (i + 1), 0.7 + i / 100.0, NAN, i * 0.01, 1.5 * i };
    a.log.diverged = 1;
    snprintf(a.log.divergence, sizeof a.log.divergence, "J rose by %d%%", 40);
    a.log.lambda_choice.n = 2;
    a.log.lambda_choice.best = 1;
    a.log.lambda_choice.lambda[1] = 10;
    a.log.lambda_choice.gcv[1] = 0.25;
    a.log.lambda_choice.df[1] = 77;
    a.log.lambda_choice.rule = CNNELM_LAMBDA_RULE_HELD; /* train.validation's fields (version 2) */
    a.log.lambda_choice.gcv_best = 0;
    a.log.lambda_choice.n_held = 4321;
    a.log.lambda_choice.held[1] = 0.8125;
    unsigned char *buf;
    size_t len;
    ck_assert_msg(cnnelm_part_facts_encode(&a, &buf, &len, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(len, 136 + strlen(a.log.divergence) + 2 * 32 + 3 * 44); /* docs/reduce.md */
    ck_assert_msg(cnnelm_part_facts_decode(&b, 0, buf, len, &err) == 0, "%s", err.msg);
    ck_assert(b.seconds == a.seconds && b.worker == 3 && b.rank == 2 && b.resumed == 1);
    ck_assert(b.model.iterations == 4 && b.model.flags == 3 && b.model.lambda == a.model.lambda);
    ck_assert(b.examples == a.examples && b.model.n_examples == a.examples);
    ck_assert(memcmp(&b.test, &a.test, sizeof a.test) == 0);
    ck_assert_int_eq(b.log.n, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert(b.log.iters[i].iteration == i && b.log.iters[i].J == a.log.iters[i].J);
        ck_assert(isnan(b.log.iters[i].test_accuracy) && b.log.iters[i].seconds == a.log.iters[i].seconds);
    }
    ck_assert(b.log.diverged == 1 && strcmp(b.log.divergence, a.log.divergence) == 0);
    ck_assert(b.log.lambda_choice.n == 2 && b.log.lambda_choice.best == 1 && b.log.lambda_choice.df[1] == 77);
    ck_assert(b.log.lambda_choice.rule == CNNELM_LAMBDA_RULE_HELD && b.log.lambda_choice.n_held == 4321 &&
              b.log.lambda_choice.held[1] == 0.8125 && b.log.lambda_choice.gcv_best == 0);
    /* one byte short, one byte long, another version: refused with a message */
    ck_assert_int_eq(cnnelm_part_facts_decode(&b, 4, buf, len - 1, &err), -1);
    ck_assert_msg(strstr(err.msg, "partition 5's facts") != NULL, "%s", err.msg);
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    ck_assert_int_eq(cnnelm_part_facts_decode(&b, 4, longer, len + 1, &err), -1);
    ck_assert_msg(strstr(err.msg, "partition 5's facts are") != NULL, "%s", err.msg);
    buf[0] = 9;
    ck_assert_int_eq(cnnelm_part_facts_decode(&b, 4, buf, len, &err), -1);
    ck_assert_msg(strstr(err.msg, "version 9") != NULL, "%s", err.msg);
    free(longer);
    free(buf);
    free(a.log.iters);
    free(b.log.iters);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("reduce");
    TCase *tc = tcase_create("reduce");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, fixsum_order_independent_and_bounded);
    tcase_add_test(tc, fixsum_cancels_exactly);
    tcase_add_test(tc, fixsum_refuses_what_it_cannot_add);
    tcase_add_test(tc, mean_and_weighted_match_plain_average);
    tcase_add_test(tc, refit_equals_one_machine_fit);
    tcase_add_test(tc, reduce_refuses_mismatched_models);
    tcase_add_test(tc, average_refuses_a_repeated_file);
    tcase_add_test(tc, facts_round_trip);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
