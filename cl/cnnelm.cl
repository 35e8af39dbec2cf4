/* cnnelm OpenCL kernels: convolution, pooling and activations, float32, NCHW, row-major.
 * Written the way a GPU wants them: work-groups over output tiles with the input tile and the
 * kernel weights staged in local memory, reductions through local memory, neighbouring
 * work-items touching neighbouring addresses. Build options: -DTILE=<n> (output tile side of
 * the convolution work-groups) and -DGROUP=<n> (work-group size of the reductions). */

#ifndef TILE
#define TILE 8
#endif
#ifndef GROUP
#define GROUP 64
#endif
#define ACT_IDENTITY 0
#define ACT_RELU 1
#define ACT_OPTTANH 2

inline float activate(float x, int act)
{
    if (act == ACT_RELU)
        return x > 0.0f ? x : 0.0f;
    if (act == ACT_OPTTANH)
        return 1.7159f * tanh(x * (2.0f / 3.0f));
    return x;
}

/* f'(x) written through the output y = f(x) */
inline float derivative(float y, int act)
{
    if (act == ACT_RELU)
        return y > 0.0f ? 1.0f : 0.0f;
    if (act == ACT_OPTTANH)
        return (2.0f / 3.0f) * (1.7159f - y * y / 1.7159f);
    return 1.0f;
}

/* y[n][o][i][j] = act(b[o] + sum_c,p,q x[n][c][i+p][j+q] w[o][c][p][q]).
 * Work-group: a TILE x TILE block of output pixels of `imgs` images (local size TILE, TILE,
 * imgs). The (TILE+k-1)^2 input patches of every input map go to local memory once; then each
 * work-item computes its pixel for every output map, reading the patch c_out times from local
 * memory (the weights are the same address for the whole group: a broadcast). */
__kernel void conv_forward(__global const float *x, __global const float *w, __global const float *b,
                           __global float *y, int c_in, int h, int wd, int c_out, int k, int act,
                           int nimg, __local float *patch)
{
    const int oh = h - k + 1, ow = wd - k + 1, side = TILE + k - 1, area = side * side;
    const int j = get_global_id(0), i = get_global_id(1), n = get_global_id(2);
    const int lj = get_local_id(0), li = get_local_id(1), lz = get_local_id(2);
    const int i0 = get_group_id(1) * TILE, j0 = get_group_id(0) * TILE;
    __local float *mine = patch + lz * c_in * area;
    for (int t = li * TILE + lj; t < c_in * area; t += TILE * TILE) {
        int c = t / area, r = t % area, pi = i0 + r / side, pj = j0 + r % side;
        mine[t] = (n < nimg && pi < h && pj < wd) ? x[(((size_t)n * c_in + c) * h + pi) * wd + pj] : 0.0f;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (n >= nimg || i >= oh || j >= ow)
        return;
    /* four output maps at a time: each patch value read from local memory feeds four sums */
    for (int o = 0; o < c_out; o += 4) {
        const int m = c_out - o < 4 ? c_out - o : 4;
        float a0 = b[o], a1 = m > 1 ? b[o + 1] : 0.0f, a2 = m > 2 ? b[o + 2] : 0.0f, a3 = m > 3 ? b[o + 3] : 0.0f;
        const size_t kk = (size_t)k * k, step = (size_t)c_in * kk;
        for (int c = 0; c < c_in; c++) {
            __local const float *pc = mine + c * area + li * side + lj;
            __global const float *w0 = w + (size_t)o * step + c * kk;
            for (int p = 0; p < k; p++)
                for (int q = 0; q < k; q++) {
                    const float v = pc[p * side + q];
                    const int t = p * k + q;
                    a0 += v * w0[t];
                    if (m > 1) a1 += v * w0[step + t];
                    if (m > 2) a2 += v * w0[2 * step + t];
                    if (m > 3) a3 += v * w0[3 * step + t];
                }
        }
        __global float *out = y + (((size_t)n * c_out + o) * oh + i) * ow + j;
        const size_t plane = (size_t)oh * ow;
        out[0] = activate(a0, act);
        if (m > 1) out[plane] = activate(a1, act);
        if (m > 2) out[2 * plane] = activate(a2, act);
        if (m > 3) out[3 * plane] = activate(a3, act);
    }
}

/* dx[n][c][yy][xx] = sum_o,p,q dy[n][o][yy-p][xx-q] w[o][c][p][q]: one work-item per input
 * pixel (global: w, h, n * c_in); neighbours read neighbouring dy. */
__kernel void conv_backward_data(__global const float *dy, __global const float *w,
                                 __global float *dx, int c_in, int h, int wd, int c_out, int k)
{
    const int xx = get_global_id(0), yy = get_global_id(1);
    const int c = get_global_id(2) % c_in, n = get_global_id(2) / c_in;
    if (xx >= wd || yy >= h)
        return;
    const int oh = h - k + 1, ow = wd - k + 1;
    float acc = 0.0f;
    for (int o = 0; o < c_out; o++) {
        __global const float *d = dy + ((size_t)n * c_out + o) * oh * ow;
        __global const float *wk = w + ((size_t)o * c_in + c) * k * k;
        for (int p = 0; p < k; p++) {
            int i = yy - p;
            if (i < 0 || i >= oh)
                continue;
            for (int q = 0; q < k; q++) {
                int j = xx - q;
                if (j >= 0 && j < ow)
                    acc += d[i * ow + j] * wk[p * k + q];
            }
        }
    }
    dx[(((size_t)n * c_in + c) * h + yy) * wd + xx] = acc;
}

/* Sums `count` terms in a work-group of GROUP items through local memory; item 0 gets it. */
inline float group_sum(float v, __local float *scratch)
{
    const int lid = get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = GROUP / 2; s > 0; s >>= 1) {
        if (lid < s)
            scratch[lid] += scratch[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return scratch[0];
}

/* dw[o][c][p][q] (+)= sum_n,i,j dy[n][o][i][j] x[n][c][i+p][j+q]: one work-group per weight,
 * its GROUP items striding over the n * oh * ow terms (adjacent items, adjacent pixels). */
__kernel __attribute__((reqd_work_group_size(GROUP, 1, 1)))
void conv_backward_filter(__global const float *x, __global const float *dy, __global float *dw,
                          int nimg, int c_in, int h, int wd, int c_out, int k, int accumulate)
{
    __local float scratch[GROUP];
    const int widx = get_group_id(0);
    const int q = widx % k, p = (widx / k) % k, c = (widx / (k * k)) % c_in, o = widx / (k * k * c_in);
    const int oh = h - k + 1, ow = wd - k + 1, per = oh * ow;
    float acc = 0.0f;
    /* per image: the rows of dy and the shifted rows of x, GROUP pixels at a time; one integer
     * division per term (index arithmetic, not the multiply-adds, bounds this kernel) */
    for (int n = 0; n < nimg; n++) {
        __global const float *d = dy + ((size_t)n * c_out + o) * per;
        __global const float *xs = x + (((size_t)n * c_in + c) * h + p) * wd + q;
        for (int r = get_local_id(0); r < per; r += GROUP) {
            const int i = r / ow, j = r - i * ow;
            acc += d[r] * xs[i * wd + j];
        }
    }
    float s = group_sum(acc, scratch);
    if (get_local_id(0) == 0)
        dw[widx] = accumulate ? dw[widx] + s : s;
}

/* db[o] (+)= sum_n,i,j dy[n][o][i][j]: one work-group per output map. */
__kernel __attribute__((reqd_work_group_size(GROUP, 1, 1)))
void conv_backward_bias(__global const float *dy, __global float *db, int nimg, int c_out, int per,
                        int accumulate)
{
    __local float scratch[GROUP];
    const int o = get_group_id(0);
    float acc = 0.0f;
    for (int n = 0; n < nimg; n++) {
        __global const float *d = dy + ((size_t)n * c_out + o) * per;
        for (int r = get_local_id(0); r < per; r += GROUP)
            acc += d[r];
    }
    float s = group_sum(acc, scratch);
    if (get_local_id(0) == 0)
        db[o] = accumulate ? db[o] + s : s;
}

/* y = mean or max of each s x s block: one work-item per output (global: ow, oh, n * c). */
__kernel void pool_forward(__global const float *x, __global float *y, int h, int wd, int s, int is_max)
{
    const int j = get_global_id(0), i = get_global_id(1), m = get_global_id(2);
    const int oh = h / s, ow = wd / s;
    if (i >= oh || j >= ow)
        return;
    __global const float *xm = x + (size_t)m * h * wd;
    float v = is_max ? -INFINITY : 0.0f;
    for (int p = 0; p < s; p++)
        for (int q = 0; q < s; q++) {
            float e = xm[(i * s + p) * wd + j * s + q];
            v = is_max ? fmax(v, e) : v + e;
        }
    y[((size_t)m * oh + i) * ow + j] = is_max ? v : v / (float)(s * s);
}

/* dx: one work-item per input element (global: w, h, n * c). mean: dy / s^2; max: dy to the
 * first maximum of the block in row-major order, zero elsewhere. */
__kernel void pool_backward(__global const float *x, __global const float *dy, __global float *dx,
                            int h, int wd, int s, int is_max)
{
    const int xx = get_global_id(0), yy = get_global_id(1), m = get_global_id(2);
    if (xx >= wd || yy >= h)
        return;
    const int oh = h / s, ow = wd / s, i = yy / s, j = xx / s;
    const float g = dy[((size_t)m * oh + i) * ow + j];
    float out;
    if (!is_max) {
        out = g / (float)(s * s);
    } else {
        __global const float *xm = x + (size_t)m * h * wd;
        float best = -INFINITY;
        int arg = 0;
        for (int p = 0; p < s; p++)
            for (int q = 0; q < s; q++) {
                float e = xm[(i * s + p) * wd + j * s + q];
                if (e > best) {
                    best = e;
                    arg = p * s + q;
                }
            }
        out = arg == (yy - i * s) * s + (xx - j * s) ? g : 0.0f;
    }
    dx[((size_t)m * h + yy) * wd + xx] = out;
}

__kernel void activation_forward(__global const float *x, __global float *y, int act, int count)
{
    const int t = get_global_id(0);
    if (t < count)
        y[t] = activate(x[t], act);
}

__kernel void activation_backward(__global const float *y, __global const float *dy,
                                  __global float *dx, int act, int count)
{
    const int t = get_global_id(0);
    if (t < count)
        dx[t] = dy[t] * derivative(y[t], act);
}
