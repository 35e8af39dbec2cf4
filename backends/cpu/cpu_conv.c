/* cnnelm CPU backend: convolution forward and backward, direct (no im2col), one image per task.
 * AVX2/AVX-512 register-tiled kernels chosen at run time, plain loops elsewhere. */
#define _POSIX_C_SOURCE 200809L
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_HAVE_X86 1
#endif

#include "cpu_internal.h"

/* Images per block of conv2d_backward_filter: each block's partial sums are kept apart and
 * added in block order, so the result does not depend on the thread count. */
#define BF_BLOCK 16

/* ---- geometry ----------------------------------------------------------------------------
 * A "direct" pass computes, for each image, out[o][i][j] (i < orows, j < ocols) =
 * bias[o] + sum_c,p,q in[c][i+p][j+q] w[o][c][p][q] over an input laid out with row stride xs
 * and plane stride xp, output row stride ys and plane stride yp. Output columns are covered by
 * 8-wide vectors ("positions"); when ocols is not a multiple of 8 the input and output are
 * padded copies in scratch, so vector loads never leave a buffer. */
typedef struct kern {
    int cin, cout, k, kk;
    const float *w, *b;   /* w[o][c][p][q]; b may be NULL (zero) */
    int xs, ys;
    size_t xp, yp;
    int npos;
    const int *xoff, *yoff; /* per position: offset of its first input / output element */
} kern;

static int round8(int v) { return (v + 7) / 8 * 8; }

/* Fills the position tables for orows x ceil(ocols/8) vectors. */
static void make_positions(int orows, int ocols, int xs, int ys, int *xoff, int *yoff)
{
    int nvb = (ocols + 7) / 8, at = 0;
    for (int i = 0; i < orows; i++)
        for (int jb = 0; jb < nvb; jb++, at++) {
            xoff[at] = i * xs + jb * 8;
            yoff[at] = i * ys + jb * 8;
        }
}

/* ---- plain-loop kernels (any CPU) --------------------------------------------------------- */

static void direct_generic(const kern *K, int orows, int ocols, const float *in, float *out)
{
    for (int o = 0; o < K->cout; o++)
        for (int i = 0; i < orows; i++) {
            float *yr = out + (size_t)o * K->yp + (size_t)i * K->ys;
            float bias = K->b ? K->b[o] : 0.0f;
            for (int j = 0; j < ocols; j++)
                yr[j] = bias;
            for (int c = 0; c < K->cin; c++)
                for (int p = 0; p < K->k; p++) {
                    const float *xr = in + (size_t)c * K->xp + (size_t)(i + p) * K->xs;
                    const float *wr = K->w + ((size_t)o * K->cin + c) * K->kk + (size_t)p * K->k;
                    for (int q = 0; q < K->k; q++) {
                        float wv = wr[q];
                        for (int j = 0; j < ocols; j++)
                            yr[j] += wv * xr[j + q];
                    }
                }
        }
}

/* ---- AVX2 / AVX-512 kernels --------------------------------------------------------------- */
#if CPU_HAVE_X86
#define TGT_AVX2 __attribute__((target("avx2,fma")))
#define TGT_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define INL static inline __attribute__((always_inline))

/* OB output maps x P positions, accumulated over every (c, p, q) tap. OB and P are constants
 * after inlining, so acc[][] lives in registers. */
TGT_AVX2 INL void fwd_tile(const int OB, const int P, const kern *K, const float *in, float *out,
                           int o0, int pos0, int relu)
{
    __m256 acc[OB][P];
    const float *xo[P];
    for (int ob = 0; ob < OB; ob++) {
        __m256 bv = _mm256_set1_ps(K->b ? K->b[o0 + ob] : 0.0f);
        for (int pp = 0; pp < P; pp++)
            acc[ob][pp] = bv;
    }
    for (int pp = 0; pp < P; pp++)
        xo[pp] = in + K->xoff[pos0 + pp];
    const size_t ckk = (size_t)K->cin * K->kk;
    const float *wo = K->w + (size_t)o0 * ckk;
    for (int c = 0; c < K->cin; c++)
        for (int p = 0; p < K->k; p++) {
            const size_t xrow = (size_t)c * K->xp + (size_t)p * K->xs;
            const float *wr = wo + (size_t)c * K->kk + (size_t)p * K->k;
            for (int q = 0; q < K->k; q++) {
                __m256 xv[P];
                for (int pp = 0; pp < P; pp++)
                    xv[pp] = _mm256_loadu_ps(xo[pp] + xrow + q);
                for (int ob = 0; ob < OB; ob++) {
                    __m256 wv = _mm256_broadcast_ss(wr + ob * ckk + q);
                    for (int pp = 0; pp < P; pp++)
                        acc[ob][pp] = _mm256_fmadd_ps(xv[pp], wv, acc[ob][pp]);
                }
            }
        }
    const __m256 zero = _mm256_setzero_ps();
    for (int ob = 0; ob < OB; ob++)
        for (int pp = 0; pp < P; pp++) {
            __m256 v = relu ? _mm256_max_ps(acc[ob][pp], zero) : acc[ob][pp];
            _mm256_storeu_ps(out + (size_t)(o0 + ob) * K->yp + K->yoff[pos0 + pp], v);
        }
}

#define FWD_CASE(OB, P)                                                                     \
    case (OB) * 8 + (P):                                                                    \
        fwd_tile(OB, P, K, in, out, o0, pos, relu);                                         \
        break;
#define FWD_CASES(OB) FWD_CASE(OB, 1) FWD_CASE(OB, 2) FWD_CASE(OB, 3) FWD_CASE(OB, 4)

TGT_AVX2 INL void direct_tiled(const int OBMAX, const int PMAX, const kern *K, const float *in,
                               float *out, int relu)
{
    for (int o0 = 0; o0 < K->cout; o0 += OBMAX) {
        int ob = K->cout - o0 < OBMAX ? K->cout - o0 : OBMAX;
        for (int pos = 0; pos < K->npos; pos += PMAX) {
            int np = K->npos - pos < PMAX ? K->npos - pos : PMAX;
            switch (ob * 8 + np) {
                FWD_CASES(1) FWD_CASES(2) FWD_CASES(3) FWD_CASES(4) FWD_CASES(5) FWD_CASES(6)
            default:
                break;
            }
        }
    }
}

TGT_AVX2 static void direct_avx2(const kern *K, const float *in, float *out, int relu)
{
    direct_tiled(6, 2, K, in, out, relu);
}

TGT_AVX512 static void direct_avx512(const kern *K, const float *in, float *out, int relu)
{
    direct_tiled(6, 4, K, in, out, relu);
}

/* Filter gradient tile: A[o][c][p][q0..q0+QB) (8-lane partial sums) += sum over positions of
 * dy[o][pos] * in[c][pos + p row + q]. */
TGT_AVX2 INL void bwf_tile(const int OB, const int QB, const kern *K, const float *in,
                           const float *dy, float *A, int o0, int c, int p, int q0)
{
    __m256 acc[OB][QB];
    for (int ob = 0; ob < OB; ob++)
        for (int qq = 0; qq < QB; qq++)
            acc[ob][qq] = _mm256_load_ps(
                A + 8 * ((((size_t)(o0 + ob) * K->cin + c) * K->kk) + (size_t)p * K->k + q0 + qq));
    const float *xb = in + (size_t)c * K->xp + (size_t)p * K->xs + q0;
    for (int pos = 0; pos < K->npos; pos++) {
        __m256 d[OB];
        for (int ob = 0; ob < OB; ob++)
            d[ob] = _mm256_loadu_ps(dy + (size_t)(o0 + ob) * K->yp + K->yoff[pos]);
        const float *xr = xb + K->xoff[pos];
        for (int qq = 0; qq < QB; qq++) {
            __m256 xv = _mm256_loadu_ps(xr + qq);
            for (int ob = 0; ob < OB; ob++)
                acc[ob][qq] = _mm256_fmadd_ps(d[ob], xv, acc[ob][qq]);
        }
    }
    for (int ob = 0; ob < OB; ob++)
        for (int qq = 0; qq < QB; qq++)
            _mm256_store_ps(
                A + 8 * ((((size_t)(o0 + ob) * K->cin + c) * K->kk) + (size_t)p * K->k + q0 + qq),
                acc[ob][qq]);
}

#define BWF_CASE(OB, QB)                                                                    \
    case (OB) * 8 + (QB):                                                                   \
        bwf_tile(OB, QB, K, in, dy, A, o0, c, p, q0);                                       \
        break;
#define BWF_CASES(OB) BWF_CASE(OB, 1) BWF_CASE(OB, 2) BWF_CASE(OB, 3) BWF_CASE(OB, 4) BWF_CASE(OB, 5)

TGT_AVX2 INL void bwf_tiled(const int OBMAX, const int QBMAX, const kern *K, const float *in,
                            const float *dy, float *A, float *Ab)
{
    for (int c = 0; c < K->cin; c++)
        for (int p = 0; p < K->k; p++)
            for (int o0 = 0; o0 < K->cout; o0 += OBMAX) {
                int ob = K->cout - o0 < OBMAX ? K->cout - o0 : OBMAX;
                for (int q0 = 0; q0 < K->k; q0 += QBMAX) {
                    int qb = K->k - q0 < QBMAX ? K->k - q0 : QBMAX;
                    switch (ob * 8 + qb) {
                        BWF_CASES(1) BWF_CASES(2) BWF_CASES(3) BWF_CASES(4)
                    default:
                        break;
                    }
                }
            }
    for (int o = 0; o < K->cout; o++) {
        __m256 s0 = _mm256_load_ps(Ab + 8 * (size_t)o), s1 = _mm256_setzero_ps();
        const float *d = dy + (size_t)o * K->yp;
        int pos = 0;
        for (; pos + 1 < K->npos; pos += 2) {
            s0 = _mm256_add_ps(s0, _mm256_loadu_ps(d + K->yoff[pos]));
            s1 = _mm256_add_ps(s1, _mm256_loadu_ps(d + K->yoff[pos + 1]));
        }
        if (pos < K->npos)
            s0 = _mm256_add_ps(s0, _mm256_loadu_ps(d + K->yoff[pos]));
        _mm256_store_ps(Ab + 8 * (size_t)o, _mm256_add_ps(s0, s1));
    }
}

TGT_AVX2 static void bwf_avx2(const kern *K, const float *in, const float *dy, float *A, float *Ab)
{
    bwf_tiled(2, 5, K, in, dy, A, Ab);
}

TGT_AVX512 static void bwf_avx512(const kern *K, const float *in, const float *dy, float *A,
                                  float *Ab)
{
    bwf_tiled(4, 5, K, in, dy, A, Ab);
}
#endif /* CPU_HAVE_X86 */

/* Plain-loop filter gradient: lane 0 of each 8-float slot of A and Ab holds the sum. */
static void bwf_generic(const kern *K, int orows, int ocols, const float *in, const float *dy,
                        float *A, float *Ab)
{
    for (int o = 0; o < K->cout; o++) {
        const float *d = dy + (size_t)o * K->yp;
        for (int c = 0; c < K->cin; c++)
            for (int p = 0; p < K->k; p++)
                for (int q = 0; q < K->k; q++) {
                    float s = 0.0f;
                    for (int i = 0; i < orows; i++) {
                        const float *xr = in + (size_t)c * K->xp + (size_t)(i + p) * K->xs + q;
                        const float *dr = d + (size_t)i * K->ys;
                        for (int j = 0; j < ocols; j++)
                            s += dr[j] * xr[j];
                    }
                    A[8 * (((size_t)o * K->cin + c) * K->kk + (size_t)p * K->k + q)] += s;
                }
        float s = 0.0f;
        for (int i = 0; i < orows; i++)
            for (int j = 0; j < ocols; j++)
                s += d[(size_t)i * K->ys + j];
        Ab[8 * (size_t)o] += s;
    }
}

static void run_direct(int isa, const kern *K, int orows, int ocols, const float *in, float *out,
                       int relu)
{
#if CPU_HAVE_X86
    if (isa == CPU_ISA_AVX512) {
        direct_avx512(K, in, out, relu);
        return;
    }
    if (isa == CPU_ISA_AVX2) {
        direct_avx2(K, in, out, relu);
        return;
    }
#endif
    (void)isa;
    direct_generic(K, orows, ocols, in, out);
    if (relu)
        for (int o = 0; o < K->cout; o++)
            for (int i = 0; i < orows; i++)
                cpu_act_apply(CNNELM_ACT_RELU, out + (size_t)o * K->yp + (size_t)i * K->ys,
                              (size_t)ocols);
}

/* Copies `rows` rows of `cols` floats from a dense plane into a strided one (or back). */
static void copy_rows(float *dst, int dst_stride, const float *src, int src_stride, int rows,
                      int cols)
{
    for (int r = 0; r < rows; r++)
        memcpy(dst + (size_t)r * dst_stride, src + (size_t)r * src_stride, sizeof(float) * (size_t)cols);
}

/* ---- forward ------------------------------------------------------------------------------ */

typedef struct fwd_job {
    cnnelm_backend_ctx *ctx;
    const cnnelm_conv_shape *s;
    cnnelm_activation act;
    kern K;
    const float *x;
    float *y;
    int pad_in, pad_out;
    size_t pad_in_floats;
} fwd_job;

static void fwd_task(void *arg, int begin, int end, int thread)
{
    fwd_job *j = arg;
    const cnnelm_conv_shape *s = j->s;
    int oh = s->h - s->k + 1, ow = s->w - s->k + 1;
    size_t xin = (size_t)s->c_in * s->h * s->w, yout = (size_t)s->c_out * oh * ow;
    float *scr = j->ctx->scratch[thread].p;
    float *pin = scr, *pout = scr + j->pad_in_floats;
    if (j->pad_in)
        memset(pin, 0, sizeof(float) * j->pad_in_floats);
    int relu = j->act == CNNELM_ACT_RELU;
    for (int n = begin; n < end; n++) {
        const float *x = j->x + (size_t)n * xin;
        float *y = j->y + (size_t)n * yout;
        if (j->pad_in) {
            for (int c = 0; c < s->c_in; c++)
                copy_rows(pin + (size_t)c * j->K.xp, j->K.xs, x + (size_t)c * s->h * s->w, s->w,
                          s->h, s->w);
            x = pin;
        }
        run_direct(j->ctx->isa, &j->K, oh, ow, x, j->pad_out ? pout : y, relu);
        if (j->pad_out)
            for (int o = 0; o < s->c_out; o++)
                copy_rows(y + (size_t)o * oh * ow, ow, pout + (size_t)o * j->K.yp, j->K.ys, oh, ow);
        if (j->act == CNNELM_ACT_OPTTANH)
            cpu_act_apply(j->act, y, yout);
    }
}

cnnelm_status cpu_conv_forward(cnnelm_backend_ctx *ctx, const cnnelm_conv_shape *s,
                               cnnelm_activation act, const float *x, const float *w,
                               const float *b, float *y)
{
    int oh = s->h - s->k + 1, ow = s->w - s->k + 1, owp = round8(ow);
    fwd_job j = { .ctx = ctx, .s = s, .act = act, .x = x, .y = y };
    j.pad_in = j.pad_out = (ctx->isa != CPU_ISA_GENERIC && ow % 8 != 0);
    kern *K = &j.K;
    K->cin = s->c_in;
    K->cout = s->c_out;
    K->k = s->k;
    K->kk = s->k * s->k;
    K->w = w;
    K->b = b;
    K->xs = j.pad_in ? owp + s->k - 1 : s->w;
    K->xp = (size_t)K->xs * s->h;
    K->ys = j.pad_out ? owp : ow;
    K->yp = (size_t)K->ys * oh;
    K->npos = oh * (owp / 8);
    j.pad_in_floats = j.pad_in ? (size_t)s->c_in * K->xp : 0;
    size_t pad_out_floats = j.pad_out ? (size_t)s->c_out * K->yp : 0;
    cnnelm_status st = cpu_scratch_reserve(ctx, sizeof(float) * (j.pad_in_floats + pad_out_floats + 16));
    if (st == CNNELM_OK)
        st = cpu_shared_reserve(ctx, sizeof(int) * 2 * (size_t)K->npos);
    if (st != CNNELM_OK)
        return st;
    int *off = ctx->shared.p;
    make_positions(oh, ow, K->xs, K->ys, off, off + K->npos);
    K->xoff = off;
    K->yoff = off + K->npos;
    cpu_parallel(ctx, s->n, fwd_task, &j);
    return CNNELM_OK;
}

/* ---- backward data: a forward pass of dy, zero-padded by k-1, with the flipped kernel ------ */

typedef struct bwd_job {
    cnnelm_backend_ctx *ctx;
    const cnnelm_conv_shape *s;
    kern K;
    const float *dy;
    float *dx;
    int pad_out;
    size_t pad_in_floats;
} bwd_job;

static void bwd_task(void *arg, int begin, int end, int thread)
{
    bwd_job *j = arg;
    const cnnelm_conv_shape *s = j->s;
    int oh = s->h - s->k + 1, ow = s->w - s->k + 1, k1 = s->k - 1;
    size_t xin = (size_t)s->c_in * s->h * s->w, yout = (size_t)s->c_out * oh * ow;
    float *pin = j->ctx->scratch[thread].p, *pout = pin + j->pad_in_floats;
    memset(pin, 0, sizeof(float) * j->pad_in_floats); /* the border stays zero */
    for (int n = begin; n < end; n++) {
        const float *dy = j->dy + (size_t)n * yout;
        float *dx = j->dx + (size_t)n * xin;
        for (int o = 0; o < s->c_out; o++)
            copy_rows(pin + (size_t)o * j->K.xp + (size_t)k1 * j->K.xs + k1, j->K.xs,
                      dy + (size_t)o * oh * ow, ow, oh, ow);
        run_direct(j->ctx->isa, &j->K, s->h, s->w, pin, j->pad_out ? pout : dx, 0);
        if (j->pad_out)
            for (int c = 0; c < s->c_in; c++)
                copy_rows(dx + (size_t)c * s->h * s->w, s->w, pout + (size_t)c * j->K.yp, j->K.ys,
                          s->h, s->w);
    }
}

cnnelm_status cpu_conv_backward_data(cnnelm_backend_ctx *ctx, const cnnelm_conv_shape *s,
                                     const float *dy, const float *w, float *dx)
{
    int k = s->k, kk = k * k, wp = round8(s->w);
    bwd_job j = { .ctx = ctx, .s = s, .dy = dy, .dx = dx };
    j.pad_out = (ctx->isa != CPU_ISA_GENERIC && s->w % 8 != 0);
    int cols = j.pad_out || ctx->isa != CPU_ISA_GENERIC ? wp : s->w;
    kern *K = &j.K;
    K->cin = s->c_out; /* the roles swap: dy's maps in, dx's maps out */
    K->cout = s->c_in;
    K->k = k;
    K->kk = kk;
    K->b = NULL;
    K->xs = cols + k - 1;
    K->xp = (size_t)K->xs * (s->h + k - 1);
    K->ys = j.pad_out ? wp : s->w;
    K->yp = (size_t)K->ys * s->h;
    K->npos = s->h * (wp / 8);
    j.pad_in_floats = (size_t)s->c_out * K->xp;
    size_t pad_out_floats = j.pad_out ? (size_t)s->c_in * K->yp : 0;
    size_t wt_floats = (size_t)s->c_in * s->c_out * kk;
    cnnelm_status st = cpu_scratch_reserve(ctx, sizeof(float) * (j.pad_in_floats + pad_out_floats + 16));
    if (st == CNNELM_OK)
        st = cpu_shared_reserve(ctx, sizeof(float) * (wt_floats + 2 * (size_t)K->npos + 16));
    if (st != CNNELM_OK)
        return st;
    /* wt[c][o][p][q] = w[o][c][k-1-p][k-1-q] */
    float *wt = ctx->shared.p;
    for (int c = 0; c < s->c_in; c++)
        for (int o = 0; o < s->c_out; o++)
            for (int p = 0; p < k; p++)
                for (int q = 0; q < k; q++)
                    wt[(((size_t)c * s->c_out + o) * k + p) * k + q] =
                        w[(((size_t)o * s->c_in + c) * k + (k - 1 - p)) * k + (k - 1 - q)];
    int *off = (int *)(wt + wt_floats);
    make_positions(s->h, s->w, K->xs, K->ys, off, off + K->npos);
    K->w = wt;
    K->xoff = off;
    K->yoff = off + K->npos;
    cpu_parallel(ctx, s->n, bwd_task, &j);
    return CNNELM_OK;
}

/* ---- backward filter ----------------------------------------------------------------------- */

typedef struct bwf_job {
    cnnelm_backend_ctx *ctx;
    const cnnelm_conv_shape *s;
    kern K;
    const float *x, *dy;
    float *partial;   /* per block: c_out*c_in*k*k weights then c_out biases */
    size_t wfloats;   /* c_out*c_in*k*k */
    int pad;
    size_t pad_x_floats, pad_dy_floats, acc_floats;
    float *dw, *db;
    int accumulate, blocks;
} bwf_job;

static void bwf_task(void *arg, int begin, int end, int thread)
{
    bwf_job *j = arg;
    const cnnelm_conv_shape *s = j->s;
    int oh = s->h - s->k + 1, ow = s->w - s->k + 1;
    size_t xin = (size_t)s->c_in * s->h * s->w, yout = (size_t)s->c_out * oh * ow;
    size_t nw = j->wfloats;
    float *A = j->ctx->scratch[thread].p;             /* 8 lanes per weight, then per bias */
    float *Ab = A + 8 * nw;
    float *px = A + j->acc_floats, *pdy = px + j->pad_x_floats;
    if (j->pad) {
        memset(px, 0, sizeof(float) * (j->pad_x_floats + j->pad_dy_floats));
    }
    for (int blk = begin; blk < end; blk++) {
        memset(A, 0, sizeof(float) * j->acc_floats);
        int n1 = (blk + 1) * BF_BLOCK < s->n ? (blk + 1) * BF_BLOCK : s->n;
        for (int n = blk * BF_BLOCK; n < n1; n++) {
            const float *x = j->x + (size_t)n * xin, *dy = j->dy + (size_t)n * yout;
            if (j->pad) {
                for (int c = 0; c < s->c_in; c++)
                    copy_rows(px + (size_t)c * j->K.xp, j->K.xs, x + (size_t)c * s->h * s->w, s->w,
                              s->h, s->w);
                for (int o = 0; o < s->c_out; o++)
                    copy_rows(pdy + (size_t)o * j->K.yp, j->K.ys, dy + (size_t)o * oh * ow, ow, oh, ow);
                x = px;
                dy = pdy;
            }
#if CPU_HAVE_X86
            if (j->ctx->isa == CPU_ISA_AVX512)
                bwf_avx512(&j->K, x, dy, A, Ab);
            else if (j->ctx->isa == CPU_ISA_AVX2)
                bwf_avx2(&j->K, x, dy, A, Ab);
            else
#endif
                bwf_generic(&j->K, oh, ow, x, dy, A, Ab);
        }
        float *part = j->partial + (size_t)blk * (nw + (size_t)s->c_out);
        for (size_t i = 0; i < nw + (size_t)s->c_out; i++) {
            const float *l = A + 8 * i;
            part[i] = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
        }
    }
}

/* Sums the block partials in block order into dw and db. Tasks: chunks of 256 weights. */
static void bwf_reduce_task(void *arg, int begin, int end, int thread)
{
    (void)thread;
    bwf_job *j = arg;
    size_t stride = j->wfloats + (size_t)j->s->c_out, total = stride;
    size_t i0 = (size_t)begin * 256, i1 = (size_t)end * 256 < total ? (size_t)end * 256 : total;
    for (size_t i = i0; i < i1; i++) {
        float sum = 0.0f;
        for (int b = 0; b < j->blocks; b++)
            sum += j->partial[(size_t)b * stride + i];
        float *dst = i < j->wfloats ? j->dw + i : j->db + (i - j->wfloats);
        *dst = j->accumulate ? *dst + sum : sum;
    }
}

cnnelm_status cpu_conv_backward_filter(cnnelm_backend_ctx *ctx, const cnnelm_conv_shape *s,
                                       const float *x, const float *dy, float *dw, float *db,
                                       int accumulate)
{
    int oh = s->h - s->k + 1, ow = s->w - s->k + 1, owp = round8(ow);
    bwf_job j = { .ctx = ctx, .s = s, .x = x, .dy = dy, .dw = dw, .db = db, .accumulate = accumulate };
    j.pad = (ctx->isa != CPU_ISA_GENERIC && ow % 8 != 0);
    j.wfloats = (size_t)s->c_out * s->c_in * s->k * s->k;
    j.blocks = (s->n + BF_BLOCK - 1) / BF_BLOCK;
    kern *K = &j.K;
    K->cin = s->c_in;
    K->cout = s->c_out;
    K->k = s->k;
    K->kk = s->k * s->k;
    K->w = NULL;
    K->b = NULL;
    K->xs = j.pad ? owp + s->k - 1 : s->w;
    K->xp = (size_t)K->xs * s->h;
    K->ys = j.pad ? owp : ow;
    K->yp = (size_t)K->ys * oh;
    K->npos = oh * (owp / 8);
    j.acc_floats = 8 * (j.wfloats + (size_t)s->c_out);
    j.pad_x_floats = j.pad ? (size_t)s->c_in * K->xp : 0;
    j.pad_dy_floats = j.pad ? (size_t)s->c_out * K->yp : 0;
    size_t part_floats = (size_t)j.blocks * (j.wfloats + (size_t)s->c_out);
    cnnelm_status st = cpu_scratch_reserve(
        ctx, sizeof(float) * (j.acc_floats + j.pad_x_floats + j.pad_dy_floats + 16));
    if (st == CNNELM_OK)
        st = cpu_shared_reserve(ctx, sizeof(float) * (part_floats + 2 * (size_t)K->npos + 16));
    if (st != CNNELM_OK)
        return st;
    j.partial = ctx->shared.p;
    int *off = (int *)(j.partial + part_floats);
    make_positions(oh, ow, K->xs, K->ys, off, off + K->npos);
    K->xoff = off;
    K->yoff = off + K->npos;
    cpu_parallel(ctx, j.blocks, bwf_task, &j);
    cpu_parallel(ctx, (int)((j.wfloats + (size_t)s->c_out + 255) / 256), bwf_reduce_task, &j);
    return CNNELM_OK;
}
