/* cnnelm fixsum: exact 128-bit fixed-point sums of rounded contributions (see fixsum.h and
 * docs/reduce.md). Explicit limbs: the build is C11 and __int128 is a GNU extension. */
#include "base/fixsum.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EMPTY_LSB INT32_MAX

int cnnelm_fixsum_init(cnnelm_fixsum *s, size_t n, cnnelm_error *err)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    s->lsb = EMPTY_LSB;
    s->w = calloc(n ? 2 * n : 1, sizeof *s->w);
    if (!s->w)
        return cnnelm_fail(err, "out of memory for a sum of %zu values (%zu MiB)", n,
                           (2 * n * sizeof(uint64_t)) >> 20);
    return 0;
}

void cnnelm_fixsum_free(cnnelm_fixsum *s)
{
    free(s->w);
    s->w = NULL;
    s->n = 0;
}

void cnnelm_fixsum_clear(cnnelm_fixsum *s)
{
    memset(s->w, 0, 2 * s->n * sizeof *s->w);
    s->lsb = EMPTY_LSB;
    s->top = 0;
    s->terms = 0;
}

static int bit_length(uint64_t t)
{
    int b = 0;
    while (t) {
        b++;
        t >>= 1;
    }
    return b;
}

int cnnelm_fixsum_fits(int lsb, int top, uint64_t terms)
{
    /* |sum| <= terms * 2^top = terms * 2^(top - lsb) units < 2^(bits(terms) + top - lsb) */
    return terms == 0 || (long)top - (long)lsb + bit_length(terms) <= 126;
}

/* How far apart (in binary orders of magnitude) `terms` contributions may be and still fit:
 * the bound cnnelm_fixsum_fits checks, for messages. */
static int spread_allowed(uint64_t terms)
{
    return 126 - CNNELM_FIXSUM_BITS - bit_length(terms);
}

/* (hi, lo) <<= d, 0 <= d < 128 */
static void shl128(uint64_t *lo, uint64_t *hi, int d)
{
    if (d == 0)
        return;
    if (d >= 64) {
        *hi = *lo << (d - 64);
        *lo = 0;
    } else {
        *hi = (*hi << d) | (*lo >> (64 - d));
        *lo <<= d;
    }
}

static void add128(uint64_t *w, uint64_t lo, uint64_t hi)
{
    uint64_t l = w[0] + lo;
    w[1] += hi + (l < lo);
    w[0] = l;
}

void cnnelm_fixsum_add_limbs(uint64_t *inout, const uint64_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        add128(inout + 2 * i, in[2 * i], in[2 * i + 1]);
}

static void shift_all(cnnelm_fixsum *s, int d)
{
    for (size_t i = 0; d > 0 && i < s->n; i++)
        shl128(&s->w[2 * i], &s->w[2 * i + 1], d);
}

int cnnelm_fixsum_rescale(cnnelm_fixsum *s, int lsb, int top, uint64_t terms, cnnelm_error *err)
{
    if (terms == 0)
        return 0;
    if (!cnnelm_fixsum_fits(lsb, top, terms))
        return cnnelm_fail(err, "the sums to combine differ in magnitude by more than 2^%d: they "
                           "cannot be added exactly in 128 bits", spread_allowed(terms));
    if (s->terms > 0)
        shift_all(s, s->lsb - lsb);
    s->lsb = lsb;
    s->top = top;
    s->terms = terms;
    return 0;
}

/* One contribution: the exponent bound of its largest |value| (0: all zero), then each value
 * rounded to an integer count of 2^(top - BITS) and added at the accumulator's step. The
 * getter is a switch, not a callback, so the loops stay plain. */
enum { SRC_DOUBLE, SRC_FLOAT, SRC_UPPER };

typedef struct src {
    int kind;
    const double *d;
    const float *f;
    size_t L;
    double weight;
} src;

static int add_src(cnnelm_fixsum *s, const src *x, const char *what, cnnelm_error *err)
{
    double big = 0;
    int nan = 0;
    size_t n = s->n;
    size_t L = x->L;
    /* pass 1: the largest magnitude (and non-finite values) */
    if (x->kind == SRC_UPPER) {
        for (size_t i = 0; i < L; i++)
            for (size_t j = i; j < L; j++) {
                double v = fabs(x->d[i * L + j]);
                if (v > big)
                    big = v;
                else if (v != v)
                    nan = 1;
            }
    } else {
        for (size_t i = 0; i < n; i++) {
            double v = fabs(x->weight * (x->kind == SRC_DOUBLE ? x->d[i] : (double)x->f[i]));
            if (v > big)
                big = v;
            else if (v != v)
                nan = 1;
        }
    }
    if (nan || !isfinite(big))
        return cnnelm_fail(err, "%s holds a value that is not finite: it cannot be summed", what);
    if (big == 0)
        return 0; /* adds nothing, in any order */
    int top;
    frexp(big, &top); /* big < 2^top */
    int lsb = top - CNNELM_FIXSUM_BITS;
    int new_lsb = s->terms && s->lsb < lsb ? s->lsb : lsb;
    int new_top = s->terms && s->top > top ? s->top : top;
    if (!cnnelm_fixsum_fits(new_lsb, new_top, s->terms + 1))
        return cnnelm_fail(err, "%s differs in magnitude from the sums before it by more than 2^%d: "
                           "they cannot be added exactly in 128 bits", what, spread_allowed(s->terms + 1));
    if (s->terms)
        shift_all(s, s->lsb - new_lsb);
    s->lsb = new_lsb;
    s->top = new_top;
    s->terms++;
    int d = lsb - new_lsb; /* this contribution's step in units of the accumulator's */
    size_t at = 0;
    for (size_t i = 0; i < (x->kind == SRC_UPPER ? L : n); i++) {
        size_t j0 = x->kind == SRC_UPPER ? i : 0, j1 = x->kind == SRC_UPPER ? L : 1;
        for (size_t j = j0; j < j1; j++, at++) {
            double v = x->kind == SRC_UPPER   ? x->d[i * L + j]
                       : x->kind == SRC_DOUBLE ? x->weight * x->d[i]
                                               : x->weight * (double)x->f[i];
            /* |v| < 2^top, so |q| <= 2^BITS: exact in int64 */
            int64_t q = (int64_t)nearbyint(ldexp(v, -lsb));
            if (q == 0)
                continue;
            uint64_t lo = (uint64_t)q, hi = q < 0 ? ~(uint64_t)0 : 0;
            shl128(&lo, &hi, d);
            add128(s->w + 2 * at, lo, hi);
        }
    }
    return 0;
}

int cnnelm_fixsum_add(cnnelm_fixsum *s, const double *x, double weight, const char *what,
                      cnnelm_error *err)
{
    src v = { SRC_DOUBLE, x, NULL, 0, weight };
    return add_src(s, &v, what, err);
}

int cnnelm_fixsum_add_float(cnnelm_fixsum *s, const float *x, double weight, const char *what,
                            cnnelm_error *err)
{
    src v = { SRC_FLOAT, NULL, x, 0, weight };
    return add_src(s, &v, what, err);
}

int cnnelm_fixsum_add_upper(cnnelm_fixsum *s, const double *U, size_t L, const char *what,
                            cnnelm_error *err)
{
    if (s->n != L * (L + 1) / 2)
        return cnnelm_fail(err, "%s: a sum of %zu values cannot hold a %zu x %zu upper triangle",
                           what, s->n, L, L);
    src v = { SRC_UPPER, U, NULL, L, 1.0 };
    return add_src(s, &v, what, err);
}

double cnnelm_fixsum_get(const cnnelm_fixsum *s, size_t i)
{
    uint64_t lo = s->w[2 * i], hi = s->w[2 * i + 1];
    if (s->terms == 0 || (lo == 0 && hi == 0))
        return 0.0;
    int neg = (hi >> 63) != 0;
    if (neg) { /* two's complement negation: the magnitude */
        lo = ~lo + 1;
        hi = ~hi + (lo == 0);
    }
    double m;
    if (hi == 0) {
        m = ldexp((double)lo, s->lsb); /* uint64 -> double rounds to nearest */
    } else {
        /* the top 64 bits, with every bit below them folded into the last one ("sticky"): that
         * bit is 11 places below a double's last, so rounding to nearest is unchanged */
        int n = 64 - __builtin_clzll(hi);
        uint64_t top = n == 64 ? hi : (hi << (64 - n)) | (lo >> n);
        uint64_t below = n == 64 ? lo : lo & ((UINT64_C(1) << n) - 1);
        top |= below != 0;
        m = ldexp((double)top, n + s->lsb);
    }
    return neg ? -m : m;
}

void cnnelm_fixsum_to_double(const cnnelm_fixsum *s, double *out, double divisor)
{
    for (size_t i = 0; i < s->n; i++)
        out[i] = cnnelm_fixsum_get(s, i) / divisor;
}

void cnnelm_fixsum_to_float(const cnnelm_fixsum *s, float *out, double divisor)
{
    for (size_t i = 0; i < s->n; i++)
        out[i] = (float)(cnnelm_fixsum_get(s, i) / divisor);
}

void cnnelm_fixsum_to_upper(const cnnelm_fixsum *s, double *U, size_t L)
{
    size_t at = 0;
    for (size_t i = 0; i < L; i++)
        for (size_t j = i; j < L; j++, at++) {
            double v = cnnelm_fixsum_get(s, at);
            U[i * L + j] = v;
            U[j * L + i] = v;
        }
}
