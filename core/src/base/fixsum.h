/* cnnelm fixsum: order-independent sums of matrices of doubles (see docs/reduce.md).
 *
 * Each contribution (one partition's U, V, kernels or beta) is rounded once, by itself, to
 * integers at a step 2^lsb chosen from its own largest element (62 bits below it), and the
 * integers are added exactly in 128 bits (two 64-bit limbs, two's complement). Integer addition
 * is associative and commutative, so the sum has the same bits whatever the order, the number
 * of workers, the number of ranks or the shape of the tree that combined them; it is converted
 * back to double once. */
#ifndef CNNELM_FIXSUM_H
#define CNNELM_FIXSUM_H

#include <stddef.h>
#include <stdint.h>

#include "cnnelm/error.h"

/* Bits kept of each contribution below its largest element's leading bit. */
#define CNNELM_FIXSUM_BITS 62

typedef struct cnnelm_fixsum {
    size_t n;           /* elements */
    int lsb;            /* the integers count units of 2^lsb (INT32_MAX while empty) */
    int top;            /* every contribution so far is below 2^top in magnitude */
    uint64_t terms;     /* contributions added (for the overflow bound) */
    uint64_t *w;        /* 2 n limbs: w[2i] low, w[2i+1] high */
} cnnelm_fixsum;

int cnnelm_fixsum_init(cnnelm_fixsum *s, size_t n, cnnelm_error *err);
void cnnelm_fixsum_free(cnnelm_fixsum *s);
void cnnelm_fixsum_clear(cnnelm_fixsum *s);

/* s += weight * x[0..n) (n = s->n), weight * x[i] rounded to double first. Returns 0, or -1
 * when x holds a value that is not finite or the sum could overflow 128 bits (err names `what`). */
int cnnelm_fixsum_add(cnnelm_fixsum *s, const double *x, double weight, const char *what,
                      cnnelm_error *err);
int cnnelm_fixsum_add_float(cnnelm_fixsum *s, const float *x, double weight, const char *what,
                            cnnelm_error *err);
/* s += the upper triangle (i <= j) of the L x L row-major U; s->n = L (L + 1) / 2. */
int cnnelm_fixsum_add_upper(cnnelm_fixsum *s, const double *U, size_t L, const char *what,
                            cnnelm_error *err);

/* Moves s to the step 2^lsb (lsb <= s->lsb; exact: a left shift). Returns -1 when the sums
 * would not fit. Used to agree on one step before ranks add their limbs. */
int cnnelm_fixsum_rescale(cnnelm_fixsum *s, int lsb, int top, uint64_t terms, cnnelm_error *err);

/* The sum's element i, rounded to the nearest double (ties to even). */
double cnnelm_fixsum_get(const cnnelm_fixsum *s, size_t i);
/* Every element so, then divided by `divisor`. */
void cnnelm_fixsum_to_double(const cnnelm_fixsum *s, double *out, double divisor);
void cnnelm_fixsum_to_float(const cnnelm_fixsum *s, float *out, double divisor);
/* The whole symmetric L x L matrix from a sum of upper triangles. */
void cnnelm_fixsum_to_upper(const cnnelm_fixsum *s, double *U, size_t L);

/* 1 when a sum with these bounds fits in the 128-bit integers with room for every term. */
int cnnelm_fixsum_fits(int lsb, int top, uint64_t terms);

/* Limb arithmetic, for the MPI reduction op: inout[i] += in[i] for n two-limb integers. */
void cnnelm_fixsum_add_limbs(uint64_t *inout, const uint64_t *in, size_t n);

#endif
