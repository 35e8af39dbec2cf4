/* Plain-loop reference implementations of every backend op, straight from the formulas in
 * plugins/include/cnnelm/backend.h, accumulating in double: the yardstick for every backend.
 * Host arrays only; shapes as in backend.h (float32, NCHW, row-major, densely packed). */
#ifndef CNNELM_REF_OPS_H
#define CNNELM_REF_OPS_H

#include <stddef.h>

#include "cnnelm/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Output sizes of a conv or pool shape, in floats. */
size_t ref_conv_x_count(const cnnelm_conv_shape *s);  /* n*c_in*h*w */
size_t ref_conv_w_count(const cnnelm_conv_shape *s);  /* c_out*c_in*k*k */
size_t ref_conv_y_count(const cnnelm_conv_shape *s);  /* n*c_out*(h-k+1)*(w-k+1) */
size_t ref_pool_x_count(const cnnelm_pool_shape *s);  /* n*c*h*w */
size_t ref_pool_y_count(const cnnelm_pool_shape *s);  /* n*c*(h/s)*(w/s) */

/* y = act(b + x (*) w), cross-correlation, valid, stride 1. */
void ref_conv2d_forward(const cnnelm_conv_shape *s, cnnelm_activation act, const float *x,
                        const float *w, const float *b, float *y);
/* dx[n][c][h][w] = sum_o,p,q dy[n][o][h-p][w-q] w[o][c][p][q]; dx overwritten. */
void ref_conv2d_backward_data(const cnnelm_conv_shape *s, const float *dy, const float *w,
                              float *dx);
/* dw[o][c][p][q] (+)= sum_n,i,j dy x[..][i+p][j+q]; db[o] (+)= sum dy. */
void ref_conv2d_backward_filter(const cnnelm_conv_shape *s, const float *x, const float *dy,
                                float *dw, float *db, int accumulate);

void ref_pool_forward(const cnnelm_pool_shape *s, cnnelm_pooling mode, const float *x, float *y);
/* Mean spreads dy/(s*s); max routes dy to the first maximum (row-major) of each block. */
void ref_pool_backward(const cnnelm_pool_shape *s, cnnelm_pooling mode, const float *x,
                       const float *dy, float *dx);

/* Scalar activation and its derivative expressed through the output y. */
double ref_act(cnnelm_activation act, double x);
double ref_act_deriv(cnnelm_activation act, double y);
/* y = f(x) and dx = dy * f'(y) element-wise; y may alias x, dx may alias dy. */
void ref_activation_forward(cnnelm_activation act, size_t count, const float *x, float *y);
void ref_activation_backward(cnnelm_activation act, size_t count, const float *y, const float *dy,
                             float *dx);

/* U (l x l) += H^T H, V (l x c) += H^T T. */
void ref_elm_accumulate(int n, int l, int c, const float *H, const float *T, float *U, float *V);
/* Y (n x c) = H beta. */
void ref_elm_predict(int n, int l, int c, const float *H, const float *beta, float *Y);
/* dH (n x l) = E beta^T. */
void ref_elm_backprop(int n, int l, int c, const float *E, const float *beta, float *dH);
/* beta = (I/lambda + U)^-1 V by the core's double solver (elm_solve.h), with U symmetrised as
 * (U + U^T)/2.
 * Returns 0, or -1 (beta untouched) when the matrix is not positive definite or the result is
 * not finite. */
int ref_elm_solve(int l, int c, double lambda, const float *U, const float *V, float *beta);

#ifdef __cplusplus
}
#endif
#endif
