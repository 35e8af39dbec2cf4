/* cnnelm ELM solve: the one double-precision solver every path uses (training, fine-tuning,
 * reduce, refit), and the choice of lambda from the data by generalised cross-validation. */
#ifndef CNNELM_ELM_SOLVE_H
#define CNNELM_ELM_SOLVE_H

#include <stddef.h>
#include <stdint.h>

#include "cnnelm/error.h"
#include "cnnelm/model.h"

/* beta (L x C, row-major, double) = (I/lambda + U)^-1 V by Cholesky (LAPACK dpotrf/dpotrs).
 * U is L x L row-major and only its upper triangle (i <= j) is read: the symmetric matrix is
 * defined by that triangle, so a U whose two triangles differ by rounding cannot make the
 * solve disagree between paths. Returns 0; CNNELM_STATUS_NOT_POSITIVE_DEFINITE when the system
 * is not positive definite or U, V or the result is not finite (err says which, in words);
 * another negative status on other failures (CNNELM_STATUS_INVALID_ARGUMENT for lambda <= 0,
 * CNNELM_STATUS_OUT_OF_MEMORY). */
int cnnelm_elm_solve(const double *U, const double *V, int L, int C, double lambda, double *beta,
                     cnnelm_error *err);

/* The same, with beta rounded to float (what a model stores). */
int cnnelm_elm_solve_float(const double *U, const double *V, int L, int C, double lambda,
                           float *beta, cnnelm_error *err);

/* Mirrors U's upper triangle into its lower one (U is summed on one triangle only). */
void cnnelm_elm_symmetrize(double *U, int L);

/* Lambda chosen by generalised cross-validation from one tridiagonal reduction of U:
 * GCV(lambda) = N * RSS / (N - df)^2, with RSS = N - 2 tr(beta'V) + tr(beta'U beta) (one-hot
 * targets: tr(T'T) = N) and df = sum d_i / (d_i + 1/lambda). */
typedef struct cnnelm_lambda_choice {
    int n;                      /* candidates */
    double lambda[32];          /* the candidates, as given */
    double gcv[32];             /* the criterion for each (smaller is better) */
    double df[32];              /* effective degrees of freedom for each */
    int best;                   /* index of the chosen candidate */
    double seconds;             /* time of the eigendecomposition and the scan */
    /* train.validation > 0: chosen by held-out accuracy instead (rule 1); then held[i] is the
     * held-out accuracy (0..1) of candidate i's beta fitted without those rows (< 0: the
     * candidate's system does not factor), n_held the rows held out, and the final beta is
     * refitted on every row with the chosen lambda */
    int rule;                   /* 0: GCV; 1: held-out accuracy (CNNELM_LAMBDA_RULE_HELD) */
    double held[32];
    uint64_t n_held;
    int gcv_best;               /* rule 1: the candidate GCV would have chosen (same sums) */
} cnnelm_lambda_choice;

#define CNNELM_LAMBDA_RULE_HELD 1

#define CNNELM_LAMBDA_MAX_CANDIDATES 32

/* Fills *out for the candidates (1..32 values > 0) from U (upper triangle read), V and the
 * number of examples N summed into them; with beta non-NULL also beta (L x C, row-major) of the
 * chosen lambda, from the same reduction of U (no Cholesky after the choice). A candidate whose
 * system cannot be factored is not chosen (its gcv: HUGE_VAL). Returns 0,
 * CNNELM_STATUS_NOT_POSITIVE_DEFINITE when no candidate's system can be factored or the chosen
 * beta is not finite, or another negative status (err set; non-finite U or V: CNNELM_STATUS_FAILED). */
int cnnelm_elm_choose_lambda(const double *U, const double *V, int L, int C, uint64_t N,
                             const double *candidates, int n_candidates,
                             cnnelm_lambda_choice *out, double *beta, cnnelm_error *err);

/* The same reduction of U, and every candidate's beta into betas (n_candidates x L x C,
 * row-major, double; a candidate whose system does not factor: NaN), out->best still the GCV
 * choice: the betas a held-out choice compares. Returns as cnnelm_elm_choose_lambda. */
int cnnelm_elm_lambda_path(const double *U, const double *V, int L, int C, uint64_t N,
                           const double *candidates, int n_candidates, cnnelm_lambda_choice *out,
                           double *betas, cnnelm_error *err);

/* The model's beta from its U (upper triangle) and V: when its lambda rule is "auto"
 * (CNNELM_MODEL_LAMBDA_AUTO) lambda is chosen by GCV from `candidates` and stored in
 * m->lambda, the choice in *choice (may be NULL), and beta comes from the choice's reduction
 * of U; otherwise by Cholesky. Returns as cnnelm_elm_solve. */
int cnnelm_elm_solve_model(cnnelm_model *m, const double *candidates, int n_candidates,
                           cnnelm_lambda_choice *choice, cnnelm_error *err);

/* 1, 10, ..., 1e6: the candidates when the config names none. */
extern const double cnnelm_lambda_default_candidates[7];

#endif
