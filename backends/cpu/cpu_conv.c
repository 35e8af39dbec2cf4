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

/* OB output maps x P positions (OB <= 6, P <= 4), accumulated over every (c, p, q) tap. The
 * accumulators are named variables, not an array: gcc keeps arrays indexed in loops in memory.
 * OB and P are constants after inlining, so the `if`s below are resolved at compile time. */
#define FWD_ROW(ob)                                                                         \
    __m256 a##ob##0, a##ob##1, a##ob##2, a##ob##3;                                          \
    a##ob##0 = a##ob##1 = a##ob##2 = a##ob##3 =                                             \
        _mm256_set1_ps(OB > ob && K->b ? K->b[o0 + (OB > ob ? ob : 0)] : 0.0f);
#define FWD_TAP(ob)                                                                         \
    if (OB > ob) {                                                                          \
        __m256 wv = _mm256_broadcast_ss(wr + ob * ckk + q);                                 \
        a##ob##0 = _mm256_fmadd_ps(v0, wv, a##ob##0);                                       \
        if (P > 1)                                                                          \
            a##ob##1 = _mm256_fmadd_ps(v1, wv, a##ob##1);                                   \
        if (P > 2)                                                                          \
            a##ob##2 = _mm256_fmadd_ps(v2, wv, a##ob##2);                                   \
        if (P > 3)                                                                          \
            a##ob##3 = _mm256_fmadd_ps(v3, wv, a##ob##3);                                   \
    }
#define FWD_ST(ob, pp)                                                                      \
    do {                                                                                    \
        __m256 v_ = relu ? _mm256_max_ps(a##ob##pp, zero) : a##ob##pp;                     \
        _mm256_storeu_ps(out + (size_t)(o0 + ob) * K->yp + K->yoff[pos0 + pp], v_);         \
    } while (0)
#define FWD_STORE(ob)                                                                       \
    if (OB > ob) {                                                                          \
        FWD_ST(ob, 0);                                                                      \
        if (P > 1)                                                                          \
            FWD_ST(ob, 1);                                                                  \
        if (P > 2)                                                                          \
            FWD_ST(ob, 2);                                                                  \
        if (P > 3)                                                                          \
            FWD_ST(ob, 3);                                                                  \
    }

TGT_AVX2 INL void fwd_tile(const int OB, const int P, const kern *K, const float *in, float *out,
                           int o0, int pos0, int relu)
{
    FWD_ROW(0) FWD_ROW(1) FWD_ROW(2) FWD_ROW(3) FWD_ROW(4) FWD_ROW(5)
    const float *x0 = in + K->xoff[pos0];
    const float *x1 = P > 1 ? in + K->xoff[pos0 + 1] : x0;
    const float *x2 = P > 2 ? in + K->xoff[pos0 + 2] : x0;
    const float *x3 = P > 3 ? in + K->xoff[pos0 + 3] : x0;
    const size_t ckk = (size_t)K->cin * K->kk;
    const float *wo = K->w + (size_t)o0 * ckk;
    for (int c = 0; c < K->cin; c++)
        for (int p = 0; p < K->k; p++) {
            const size_t xrow = (size_t)c * K->xp + (size_t)p * K->xs;
            const float *wr = wo + (size_t)c * K->kk + (size_t)p * K->k;
            for (int q = 0; q < K->k; q++) {
                __m256 v0 = _mm256_loadu_ps(x0 + xrow + q);
                __m256 v1 = P > 1 ? _mm256_loadu_ps(x1 + xrow + q) : v0;
                __m256 v2 = P > 2 ? _mm256_loadu_ps(x2 + xrow + q) : v0;
                __m256 v3 = P > 3 ? _mm256_loadu_ps(x3 + xrow + q) : v0;
                FWD_TAP(0) FWD_TAP(1) FWD_TAP(2) FWD_TAP(3) FWD_TAP(4) FWD_TAP(5)
            }
        }
    const __m256 zero = _mm256_setzero_ps();
    FWD_STORE(0) FWD_STORE(1) FWD_STORE(2) FWD_STORE(3) FWD_STORE(4) FWD_STORE(5)
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
    direct_tiled(6, 3, K, in, out, relu);
}

/* Input-gradient tile, as a product then a scatter (no work on zero padding): for MR kernel
 * taps m = (c, p, q) (MR <= 6) and NR dy positions (NR <= 4), acc = sum_o wt[m][o] dy[o][pos],
 * then dx[c][i+p][j+q .. +8) += acc, in a scratch dx wide enough for every vector. */
typedef struct bkern {
    int cout, M, npos;  /* M = c_in*k*k taps */
    const float *wt;    /* wt[m][o] = w[o][c][p][q] */
    size_t dyp;         /* dy plane stride */
    const int *yoff;    /* per position: offset in a dy plane */
    const int *poff;    /* per position: offset in a dx plane (i*dxs + 8*jb) */
    const int *moff;    /* per tap: c*dxp + p*dxs + q */
} bkern;

#define BWD_ROW(mr) __m256 a##mr##0 = z, a##mr##1 = z, a##mr##2 = z, a##mr##3 = z;
#define BWD_TAP(mr)                                                                         \
    if (MR > mr) {                                                                          \
        __m256 wv = _mm256_broadcast_ss(wo + (size_t)mr * B->cout);                         \
        a##mr##0 = _mm256_fmadd_ps(v0, wv, a##mr##0);                                       \
        if (NR > 1)                                                                         \
            a##mr##1 = _mm256_fmadd_ps(v1, wv, a##mr##1);                                   \
        if (NR > 2)                                                                         \
            a##mr##2 = _mm256_fmadd_ps(v2, wv, a##mr##2);                                   \
        if (NR > 3)                                                                         \
            a##mr##3 = _mm256_fmadd_ps(v3, wv, a##mr##3);                                   \
    }
#define BWD_ADD1(mr, nr)                                                                    \
    do {                                                                                    \
        float *d_ = dx + B->moff[m0 + mr] + B->poff[pos0 + nr];                             \
        _mm256_storeu_ps(d_, _mm256_add_ps(_mm256_loadu_ps(d_), a##mr##nr));                \
    } while (0)
#define BWD_ADD(mr)                                                                         \
    if (MR > mr) {                                                                          \
        BWD_ADD1(mr, 0);                                                                    \
        if (NR > 1)                                                                         \
            BWD_ADD1(mr, 1);                                                                \
        if (NR > 2)                                                                         \
            BWD_ADD1(mr, 2);                                                                \
        if (NR > 3)                                                                         \
            BWD_ADD1(mr, 3);                                                                \
    }

TGT_AVX2 INL void bwd_tile(const int MR, const int NR, const bkern *B, const float *dy, float *dx,
                           int m0, int pos0)
{
    const __m256 z = _mm256_setzero_ps();
    BWD_ROW(0) BWD_ROW(1) BWD_ROW(2) BWD_ROW(3) BWD_ROW(4) BWD_ROW(5)
    const float *y0 = dy + B->yoff[pos0];
    const float *y1 = NR > 1 ? dy + B->yoff[pos0 + 1] : y0;
    const float *y2 = NR > 2 ? dy + B->yoff[pos0 + 2] : y0;
    const float *y3 = NR > 3 ? dy + B->yoff[pos0 + 3] : y0;
    const float *wo = B->wt + (size_t)m0 * B->cout;
    for (int o = 0; o < B->cout; o++, wo++) {
        const size_t off = (size_t)o * B->dyp;
        __m256 v0 = _mm256_loadu_ps(y0 + off);
        __m256 v1 = NR > 1 ? _mm256_loadu_ps(y1 + off) : v0;
        __m256 v2 = NR > 2 ? _mm256_loadu_ps(y2 + off) : v0;
        __m256 v3 = NR > 3 ? _mm256_loadu_ps(y3 + off) : v0;
        BWD_TAP(0) BWD_TAP(1) BWD_TAP(2) BWD_TAP(3) BWD_TAP(4) BWD_TAP(5)
    }
    BWD_ADD(0) BWD_ADD(1) BWD_ADD(2) BWD_ADD(3) BWD_ADD(4) BWD_ADD(5)
}

#define BWD_CASE(MR, NR)                                                                    \
    case (MR) * 8 + (NR):                                                                   \
        bwd_tile(MR, NR, B, dy, dx, m0, pos);                                               \
        break;
#define BWD_CASES(MR) BWD_CASE(MR, 1) BWD_CASE(MR, 2) BWD_CASE(MR, 3) BWD_CASE(MR, 4)

TGT_AVX2 INL void bwd_tiled(const int MRMAX, const int NRMAX, const bkern *B, const float *dy,
                            float *dx)
{
    for (int pos = 0; pos < B->npos; pos += NRMAX) {
        int nr = B->npos - pos < NRMAX ? B->npos - pos : NRMAX;
        for (int m0 = 0; m0 < B->M; m0 += MRMAX) {
            int mr = B->M - m0 < MRMAX ? B->M - m0 : MRMAX;
            switch (mr * 8 + nr) {
                BWD_CASES(1) BWD_CASES(2) BWD_CASES(3) BWD_CASES(4) BWD_CASES(5) BWD_CASES(6)
            default:
                break;
            }
        }
    }
}

TGT_AVX2 static void bwd_avx2(const bkern *B, const float *dy, float *dx)
{
    bwd_tiled(6, 2, B, dy, dx);
}

TGT_AVX512 static void bwd_avx512(const bkern *B, const float *dy, float *dx)
{
    bwd_tiled(6, 4, B, dy, dx);
}

/* Filter gradient tile (OB <= 4, QB <= 5): A[o][c][p][q0..q0+QB) (8-lane partial sums) +=
 * sum over positions of dy[o][pos] * in[c][pos + p row + q]. Named accumulators, as above. */
#define BWF_AT(ob, qq) (A + 8 * ((((size_t)(o0 + ob) * K->cin + c) * K->kk) + (size_t)p * K->k + q0 + qq))
#define BWF_LOAD(ob)                                                                        \
    __m256 a##ob##0 = z, a##ob##1 = z, a##ob##2 = z, a##ob##3 = z, a##ob##4 = z;            \
    if (OB > ob) {                                                                          \
        a##ob##0 = _mm256_load_ps(BWF_AT(ob, 0));                                           \
        if (QB > 1) a##ob##1 = _mm256_load_ps(BWF_AT(ob, 1));                               \
        if (QB > 2) a##ob##2 = _mm256_load_ps(BWF_AT(ob, 2));                               \
        if (QB > 3) a##ob##3 = _mm256_load_ps(BWF_AT(ob, 3));                               \
        if (QB > 4) a##ob##4 = _mm256_load_ps(BWF_AT(ob, 4));                               \
    }
#define BWF_STORE(ob)                                                                       \
    if (OB > ob) {                                                                          \
        _mm256_store_ps(BWF_AT(ob, 0), a##ob##0);                                           \
        if (QB > 1) _mm256_store_ps(BWF_AT(ob, 1), a##ob##1);                               \
        if (QB > 2) _mm256_store_ps(BWF_AT(ob, 2), a##ob##2);                               \
        if (QB > 3) _mm256_store_ps(BWF_AT(ob, 3), a##ob##3);                               \
        if (QB > 4) _mm256_store_ps(BWF_AT(ob, 4), a##ob##4);                               \
    }
#define BWF_Q(qq)                                                                           \
    if (QB > qq) {                                                                          \
        __m256 xv = _mm256_loadu_ps(xr + qq);                                               \
        a0##qq = _mm256_fmadd_ps(d0, xv, a0##qq);                                           \
        if (OB > 1) a1##qq = _mm256_fmadd_ps(d1, xv, a1##qq);                               \
        if (OB > 2) a2##qq = _mm256_fmadd_ps(d2, xv, a2##qq);                               \
        if (OB > 3) a3##qq = _mm256_fmadd_ps(d3, xv, a3##qq);                               \
    }

TGT_AVX2 INL void bwf_tile(const int OB, const int QB, const kern *K, const float *in,
                           const float *dy, float *A, int o0, int c, int p, int q0)
{
    const __m256 z = _mm256_setzero_ps();
    BWF_LOAD(0) BWF_LOAD(1) BWF_LOAD(2) BWF_LOAD(3)
    const float *xb = in + (size_t)c * K->xp + (size_t)p * K->xs + q0;
    const float *d0p = dy + (size_t)o0 * K->yp;
    const size_t yp = K->yp;
    for (int pos = 0; pos < K->npos; pos++) {
        const float *dp = d0p + K->yoff[pos];
        __m256 d0 = _mm256_loadu_ps(dp);
        __m256 d1 = OB > 1 ? _mm256_loadu_ps(dp + yp) : d0;
        __m256 d2 = OB > 2 ? _mm256_loadu_ps(dp + 2 * yp) : d0;
        __m256 d3 = OB > 3 ? _mm256_loadu_ps(dp + 3 * yp) : d0;
        const float *xr = xb + K->xoff[pos];
        BWF_Q(0) BWF_Q(1) BWF_Q(2) BWF_Q(3) BWF_Q(4)
    }
    BWF_STORE(0) BWF_STORE(1) BWF_STORE(2) BWF_STORE(3)
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

/* ---- backward data ------------------------------------------------------------------------
 * Vector kernels: the product-and-scatter tiles above, into a zeroed scratch dx per image.
 * Plain loops: a forward pass over dy zero-padded by k-1 with the flipped kernel. */

typedef struct bwd_job {
    cnnelm_backend_ctx *ctx;
    const cnnelm_conv_shape *s;
    kern K;                 /* plain loops */
    bkern B;                /* vector kernels */
    int dxs, pad_dy;
    size_t dxp, in_floats, out_floats;
    const float *dy;
    float *dx;
} bwd_job;

static void bwd_task(void *arg, int begin, int end, int thread)
{
    bwd_job *j = arg;
    const cnnelm_conv_shape *s = j->s;
    int oh = s->h - s->k + 1, ow = s->w - s->k + 1, k1 = s->k - 1;
    size_t xin = (size_t)s->c_in * s->h * s->w, yout = (size_t)s->c_out * oh * ow;
    float *pin = j->ctx->scratch[thread].p, *pout = pin + j->in_floats;
    memset(pin, 0, sizeof(float) * j->in_floats); /* padding stays zero */
    for (int n = begin; n < end; n++) {
        const float *dy = j->dy + (size_t)n * yout;
        float *dx = j->dx + (size_t)n * xin;
        if (j->ctx->isa == CPU_ISA_GENERIC) {
            for (int o = 0; o < s->c_out; o++)
                copy_rows(pin + (size_t)o * j->K.xp + (size_t)k1 * j->K.xs + k1, j->K.xs,
                          dy + (size_t)o * oh * ow, ow, oh, ow);
            direct_generic(&j->K, s->h, s->w, pin, dx);
            continue;
        }
#if CPU_HAVE_X86
        if (j->pad_dy) {
            for (int o = 0; o < s->c_out; o++)
                copy_rows(pin + (size_t)o * j->B.dyp, round8(ow), dy + (size_t)o * oh * ow, ow, oh, ow);
            dy = pin;
        }
        memset(pout, 0, sizeof(float) * j->out_floats);
        if (j->ctx->isa == CPU_ISA_AVX512)
            bwd_avx512(&j->B, dy, pout);
        else
            bwd_avx2(&j->B, dy, pout);
        for (int c = 0; c < s->c_in; c++)
            copy_rows(dx + (size_t)c * s->h * s->w, s->w, pout + (size_t)c * j->dxp, j->dxs, s->h,
                      s->w);
#endif
    }
}

cnnelm_status cpu_conv_backward_data(cnnelm_backend_ctx *ctx, const cnnelm_conv_shape *s,
                                     const float *dy, const float *w, float *dx)
{
    int k = s->k, kk = k * k, oh = s->h - k + 1, ow = s->w - k + 1, owp = round8(ow);
    bwd_job j = { .ctx = ctx, .s = s, .dy = dy, .dx = dx };
    size_t M = (size_t)s->c_in * kk, npos = (size_t)oh * (owp / 8);
    size_t wt_floats = (size_t)s->c_in * s->c_out * kk, shared_floats;
    if (ctx->isa == CPU_ISA_GENERIC) {
        kern *K = &j.K;
        K->cin = s->c_out; /* the roles swap: dy's maps in, dx's maps out */
        K->cout = s->c_in;
        K->k = k;
        K->kk = kk;
        K->b = NULL;
        K->xs = s->w + k - 1;
        K->xp = (size_t)K->xs * (s->h + k - 1);
        K->ys = s->w;
        K->yp = (size_t)s->w * s->h;
        j.in_floats = (size_t)s->c_out * K->xp;
        shared_floats = wt_floats;
    } else {
        j.pad_dy = ow % 8 != 0;
        j.dxs = owp + k - 1;
        j.dxp = (size_t)j.dxs * s->h;
        j.in_floats = j.pad_dy ? (size_t)s->c_out * oh * owp : 0;
        j.out_floats = (size_t)s->c_in * j.dxp + 8; /* + 8: a vector may end past the last row */
        shared_floats = wt_floats + 2 * npos + M;
    }
    cnnelm_status st = cpu_scratch_reserve(ctx, sizeof(float) * (j.in_floats + j.out_floats + 16));
    if (st == CNNELM_OK)
        st = cpu_shared_reserve(ctx, sizeof(float) * (shared_floats + 16));
    if (st != CNNELM_OK)
        return st;
    float *wt = ctx->shared.p;
    if (ctx->isa == CPU_ISA_GENERIC) {
        /* wt[c][o][p][q] = w[o][c][k-1-p][k-1-q] */
        for (int c = 0; c < s->c_in; c++)
            for (int o = 0; o < s->c_out; o++)
                for (int p = 0; p < k; p++)
                    for (int q = 0; q < k; q++)
                        wt[(((size_t)c * s->c_out + o) * k + p) * k + q] =
                            w[(((size_t)o * s->c_in + c) * k + (k - 1 - p)) * k + (k - 1 - q)];
        j.K.w = wt;
    } else {
        /* wt[m][o] = w[o][m], m = (c, p, q); tables of offsets */
        for (size_t m = 0; m < M; m++)
            for (int o = 0; o < s->c_out; o++)
                wt[m * (size_t)s->c_out + (size_t)o] = w[(size_t)o * M + m];
        int *yoff = (int *)(wt + wt_floats), *poff = yoff + npos, *moff = poff + npos;
        make_positions(oh, ow, j.pad_dy ? owp : ow, j.dxs, yoff, poff);
        for (size_t m = 0; m < M; m++) {
            int c = (int)(m / (size_t)kk), p = (int)(m % (size_t)kk) / k, q = (int)(m % (size_t)kk) % k;
            moff[m] = (int)((size_t)c * j.dxp) + p * j.dxs + q;
        }
        j.B = (bkern){ .cout = s->c_out, .M = (int)M, .npos = (int)npos, .wt = wt,
                       .dyp = (size_t)oh * (j.pad_dy ? owp : ow), .yoff = yoff, .poff = poff,
                       .moff = moff };
    }
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
