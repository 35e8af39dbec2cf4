/* Plain-loop reference ops (double accumulation), one function per backend slot; see ref_ops.h.
 * Written for clarity, not speed: every index is spelled out as in backend.h. */
#include "ref_ops.h"

#include "model/elm_solve.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define OPTTANH_A 1.7159
#define OPTTANH_B (2.0 / 3.0)

static int oh_of(const cnnelm_conv_shape *s) { return s->h - s->k + 1; }
static int ow_of(const cnnelm_conv_shape *s) { return s->w - s->k + 1; }

size_t ref_conv_x_count(const cnnelm_conv_shape *s)
{
    return (size_t)s->n * s->c_in * s->h * s->w;
}
size_t ref_conv_w_count(const cnnelm_conv_shape *s)
{
    return (size_t)s->c_out * s->c_in * s->k * s->k;
}
size_t ref_conv_y_count(const cnnelm_conv_shape *s)
{
    return (size_t)s->n * s->c_out * oh_of(s) * ow_of(s);
}
size_t ref_pool_x_count(const cnnelm_pool_shape *s)
{
    return (size_t)s->n * s->c * s->h * s->w;
}
size_t ref_pool_y_count(const cnnelm_pool_shape *s)
{
    return (size_t)s->n * s->c * (s->h / s->s) * (s->w / s->s);
}

/* Index helpers: element [a][b][r][q] of a tensor with dims (., B, R, Q). */
static size_t at4(int a, int b, int r, int q, int B, int R, int Q)
{
    return (((size_t)a * B + b) * R + r) * Q + q;
}

double ref_act(cnnelm_activation act, double x)
{
    switch (act) {
    case CNNELM_ACT_RELU:
        return x > 0 ? x : 0;
    case CNNELM_ACT_OPTTANH:
        return OPTTANH_A * tanh(OPTTANH_B * x);
    default:
        return x;
    }
}

double ref_act_deriv(cnnelm_activation act, double y)
{
    switch (act) {
    case CNNELM_ACT_RELU:
        return y > 0 ? 1 : 0;
    case CNNELM_ACT_OPTTANH:
        return OPTTANH_B * (OPTTANH_A - y * y / OPTTANH_A);
    default:
        return 1;
    }
}

void ref_conv2d_forward(const cnnelm_conv_shape *s, cnnelm_activation act, const float *x,
                        const float *w, const float *b, float *y)
{
    int oh = oh_of(s), ow = ow_of(s);
    for (int n = 0; n < s->n; n++)
        for (int o = 0; o < s->c_out; o++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    double sum = b[o];
                    for (int c = 0; c < s->c_in; c++)
                        for (int p = 0; p < s->k; p++)
                            for (int q = 0; q < s->k; q++)
                                sum += (double)x[at4(n, c, i + p, j + q, s->c_in, s->h, s->w)] *
                                       w[at4(o, c, p, q, s->c_in, s->k, s->k)];
                    y[at4(n, o, i, j, s->c_out, oh, ow)] = (float)ref_act(act, sum);
                }
}

void ref_conv2d_backward_data(const cnnelm_conv_shape *s, const float *dy, const float *w,
                              float *dx)
{
    int oh = oh_of(s), ow = ow_of(s);
    for (int n = 0; n < s->n; n++)
        for (int c = 0; c < s->c_in; c++)
            for (int r = 0; r < s->h; r++)
                for (int q0 = 0; q0 < s->w; q0++) {
                    double sum = 0;
                    for (int o = 0; o < s->c_out; o++)
                        for (int p = 0; p < s->k; p++)
                            for (int q = 0; q < s->k; q++) {
                                int i = r - p, j = q0 - q;
                                if (i < 0 || i >= oh || j < 0 || j >= ow)
                                    continue;
                                sum += (double)dy[at4(n, o, i, j, s->c_out, oh, ow)] *
                                       w[at4(o, c, p, q, s->c_in, s->k, s->k)];
                            }
                    dx[at4(n, c, r, q0, s->c_in, s->h, s->w)] = (float)sum;
                }
}

void ref_conv2d_backward_filter(const cnnelm_conv_shape *s, const float *x, const float *dy,
                                float *dw, float *db, int accumulate)
{
    int oh = oh_of(s), ow = ow_of(s);
    for (int o = 0; o < s->c_out; o++) {
        for (int c = 0; c < s->c_in; c++)
            for (int p = 0; p < s->k; p++)
                for (int q = 0; q < s->k; q++) {
                    double sum = 0;
                    for (int n = 0; n < s->n; n++)
                        for (int i = 0; i < oh; i++)
                            for (int j = 0; j < ow; j++)
                                sum += (double)dy[at4(n, o, i, j, s->c_out, oh, ow)] *
                                       x[at4(n, c, i + p, j + q, s->c_in, s->h, s->w)];
                    size_t k = at4(o, c, p, q, s->c_in, s->k, s->k);
                    dw[k] = (float)(accumulate ? dw[k] + sum : sum);
                }
        double sum = 0;
        for (int n = 0; n < s->n; n++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++)
                    sum += dy[at4(n, o, i, j, s->c_out, oh, ow)];
        db[o] = (float)(accumulate ? db[o] + sum : sum);
    }
}

void ref_pool_forward(const cnnelm_pool_shape *s, cnnelm_pooling mode, const float *x, float *y)
{
    int oh = s->h / s->s, ow = s->w / s->s;
    for (int n = 0; n < s->n; n++)
        for (int c = 0; c < s->c; c++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    double acc = mode == CNNELM_POOL_MAX ? -INFINITY : 0;
                    for (int p = 0; p < s->s; p++)
                        for (int q = 0; q < s->s; q++) {
                            double v = x[at4(n, c, i * s->s + p, j * s->s + q, s->c, s->h, s->w)];
                            if (mode == CNNELM_POOL_MAX)
                                acc = v > acc ? v : acc;
                            else
                                acc += v;
                        }
                    if (mode == CNNELM_POOL_MEAN)
                        acc /= (double)s->s * s->s;
                    y[at4(n, c, i, j, s->c, oh, ow)] = (float)acc;
                }
}

void ref_pool_backward(const cnnelm_pool_shape *s, cnnelm_pooling mode, const float *x,
                       const float *dy, float *dx)
{
    int oh = s->h / s->s, ow = s->w / s->s;
    memset(dx, 0, sizeof(float) * ref_pool_x_count(s));
    for (int n = 0; n < s->n; n++)
        for (int c = 0; c < s->c; c++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    double g = dy[at4(n, c, i, j, s->c, oh, ow)];
                    if (mode == CNNELM_POOL_MEAN) {
                        for (int p = 0; p < s->s; p++)
                            for (int q = 0; q < s->s; q++)
                                dx[at4(n, c, i * s->s + p, j * s->s + q, s->c, s->h, s->w)] =
                                    (float)(g / ((double)s->s * s->s));
                        continue;
                    }
                    size_t best = at4(n, c, i * s->s, j * s->s, s->c, s->h, s->w);
                    for (int p = 0; p < s->s; p++)
                        for (int q = 0; q < s->s; q++) {
                            size_t k = at4(n, c, i * s->s + p, j * s->s + q, s->c, s->h, s->w);
                            if (x[k] > x[best]) /* strict: the first maximum wins */
                                best = k;
                        }
                    dx[best] = (float)g;
                }
}

void ref_activation_forward(cnnelm_activation act, size_t count, const float *x, float *y)
{
    for (size_t i = 0; i < count; i++)
        y[i] = (float)ref_act(act, x[i]);
}

void ref_activation_backward(cnnelm_activation act, size_t count, const float *y, const float *dy,
                             float *dx)
{
    for (size_t i = 0; i < count; i++)
        dx[i] = (float)((double)dy[i] * ref_act_deriv(act, y[i]));
}

void ref_elm_accumulate(int n, int l, int c, const float *H, const float *T, float *U, float *V)
{
    for (int a = 0; a < l; a++) {
        for (int b = 0; b < l; b++) {
            double sum = 0;
            for (int r = 0; r < n; r++)
                sum += (double)H[(size_t)r * l + a] * H[(size_t)r * l + b];
            U[(size_t)a * l + b] = (float)(U[(size_t)a * l + b] + sum);
        }
        for (int b = 0; b < c; b++) {
            double sum = 0;
            for (int r = 0; r < n; r++)
                sum += (double)H[(size_t)r * l + a] * T[(size_t)r * c + b];
            V[(size_t)a * c + b] = (float)(V[(size_t)a * c + b] + sum);
        }
    }
}

void ref_elm_predict(int n, int l, int c, const float *H, const float *beta, float *Y)
{
    for (int r = 0; r < n; r++)
        for (int b = 0; b < c; b++) {
            double sum = 0;
            for (int a = 0; a < l; a++)
                sum += (double)H[(size_t)r * l + a] * beta[(size_t)a * c + b];
            Y[(size_t)r * c + b] = (float)sum;
        }
}

void ref_elm_backprop(int n, int l, int c, const float *E, const float *beta, float *dH)
{
    for (int r = 0; r < n; r++)
        for (int a = 0; a < l; a++) {
            double sum = 0;
            for (int b = 0; b < c; b++)
                sum += (double)E[(size_t)r * c + b] * beta[(size_t)a * c + b];
            dH[(size_t)r * l + a] = (float)sum;
        }
}

int ref_elm_solve(int l, int c, double lambda, const float *U, const float *V, float *beta)
{
    /* the core's solver (itself tested against plain elimination in test_elm_solve), fed the
     * symmetrised U in its upper triangle */
    size_t L = (size_t)l, C = (size_t)c;
    double *A = malloc(sizeof(double) * (L * L + L * C));
    float *out = malloc(sizeof(float) * (L * C + 1));
    if (!A || !out) {
        free(A);
        free(out);
        return -1;
    }
    double *B = A + L * L;
    for (size_t i = 0; i < L; i++)
        for (size_t j = 0; j < L; j++)
            A[i * L + j] = 0.5 * ((double)U[i * L + j] + (double)U[j * L + i]);
    for (size_t i = 0; i < L * C; i++)
        B[i] = V[i];
    int rc = cnnelm_elm_solve_float(A, B, l, c, lambda, out, NULL) == 0 ? 0 : -1;
    if (rc == 0)
        memcpy(beta, out, L * C * sizeof *beta);
    free(A);
    free(out);
    return rc;
}
