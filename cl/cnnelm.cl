/* cnnelm OpenCL kernels: convolution, pooling and activations, float32, NCHW, row-major.
 * Written the way a GPU wants them: work-groups over output tiles with the input tile and the
 * kernel weights staged in local memory, reductions through local memory, neighbouring
 * work-items touching neighbouring addresses. Build options: -DTILE=<n> (output tile side of
 * the convolution work-groups), -DGROUP=<n> (work-group size of the reductions) and -DVW=<1|2|4|8>
 * (the floats one work-item handles along a row in the *_local kernels: explicit vectors, so a
 * CPU device uses its SIMD lanes without relying on the compiler to vectorise across items). */

#ifndef TILE
#define TILE 8
#endif
#ifndef GROUP
#define GROUP 64
#endif
#ifndef VW
#define VW 4
#endif
#if VW == 8
typedef float8 floatv;
#define VLOAD(p) vload8(0, (p))
#define VSTORE(v, p) vstore8((v), 0, (p))
#define HSUM(v) ((v).s0 + (v).s1 + (v).s2 + (v).s3 + (v).s4 + (v).s5 + (v).s6 + (v).s7)
#elif VW == 4
typedef float4 floatv;
#define VLOAD(p) vload4(0, (p))
#define VSTORE(v, p) vstore4((v), 0, (p))
#define HSUM(v) ((v).s0 + (v).s1 + (v).s2 + (v).s3)
#elif VW == 2
typedef float2 floatv;
#define VLOAD(p) vload2(0, (p))
#define VSTORE(v, p) vstore2((v), 0, (p))
#define HSUM(v) ((v).s0 + (v).s1)
#elif VW == 1
typedef float floatv;
#define VLOAD(p) (*(p))
#define VSTORE(v, p) (*(p) = (v))
#define HSUM(v) (v)
#else
#error "VW must be 1, 2, 4 or 8"
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

/* dx: one work-item per output (global: ow, oh, n * c), writing its s x s block. mean: dy / s^2;
 * max: dy to the first maximum of the block in row-major order, zero elsewhere. */
__kernel void pool_backward(__global const float *x, __global const float *dy, __global float *dx,
                            int h, int wd, int s, int is_max)
{
    const int j = get_global_id(0), i = get_global_id(1), m = get_global_id(2);
    const int oh = h / s, ow = wd / s;
    if (i >= oh || j >= ow)
        return;
    const float g = dy[((size_t)m * oh + i) * ow + j];
    const size_t base = ((size_t)m * h + (size_t)i * s) * wd + (size_t)j * s;
    int arg = -1;
    if (is_max) {
        float best = -INFINITY;
        arg = 0;
        for (int p = 0; p < s; p++)
            for (int q = 0; q < s; q++) {
                const float e = x[base + (size_t)p * wd + q];
                if (e > best) {
                    best = e;
                    arg = p * s + q;
                }
            }
    }
    const float mean = g / (float)(s * s);
    for (int p = 0; p < s; p++)
        for (int q = 0; q < s; q++)
            dx[base + (size_t)p * wd + q] = arg < 0 ? mean : (arg == p * s + q ? g : 0.0f);
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

/* PoCL (CPU devices) turns a loop whose trip count is the same for every work-item into a loop
 * around the work-item loop (an implicit barrier), which moves register accumulators to memory:
 * 3x slower here. A bound that only looks item-dependent keeps each work-item's loop nest in
 * registers; on a GPU it costs one shift. Never use it on a loop that holds a barrier. */
#define PER_ITEM(n) ((n) + (int)(get_local_id(0) >> 30))

/* ---- the *_local kernels: one work-group holds a whole image (all its maps) in local memory;
 * the host uses them when the image fits and falls back to the kernels above otherwise. Local
 * rows are padded with zeros to a multiple of VW plus the kernel overhang, so every vector load
 * is in bounds and the padding adds nothing. ---- */

/* Copies `rows` rows of `len` floats (row stride `stride` in global memory) into local rows of
 * `pitch` floats starting at column `col0`, zero elsewhere; row r of the copy lands at local row
 * r + row0 of a block with `lrows` rows per map. Work-items take whole rows. */
inline void stage_rows(__global const float *src, int maps, int rows, int len, __local float *dst,
                       int lrows, int pitch, int row0, int col0, int lid, int lsize)
{
    for (int t = lid; t < maps * lrows; t += lsize) {
        const int m = t / lrows, r = t - m * lrows - row0;
        __local float *d = dst + (size_t)t * pitch;
        if (r < 0 || r >= rows) {
            for (int u = 0; u < pitch; u++)
                d[u] = 0.0f;
            continue;
        }
        __global const float *g = src + ((size_t)m * rows + r) * len;
        for (int u = 0; u < pitch; u++) {
            const int v = u - col0;
            d[u] = v >= 0 && v < len ? g[v] : 0.0f;
        }
    }
}

/* Four weights of one kernel row applied to the VW-wide windows of a local row: the same
 * loaded vector feeds four accumulators (four output maps, or four input maps). KFIX is the
 * kernel size unrolled at compile time (the common 5); other sizes take the plain loop. */
#ifndef KFIX
#define KFIX 5
#endif
#define ROW4(row, sign, w0, w1, w2, w3, kq)                                                     \
    for (int q = 0; q < (kq); q++) {                                                           \
        const floatv v = VLOAD((row) + (sign) * q);                                            \
        a0 += v * (w0)[q];                                                                     \
        a1 += v * (w1)[q];                                                                     \
        a2 += v * (w2)[q];                                                                     \
        a3 += v * (w3)[q];                                                                     \
    }

/* Writes the first `m` of four VW-wide accumulators to rows `plane` floats apart, `live` floats
 * of each (the rest is row padding). */
#define STORE4(out, plane, m, live, f)                                                         \
    do {                                                                                       \
        float r_[4][VW];                                                                       \
        VSTORE(a0, r_[0]);                                                                     \
        VSTORE(a1, r_[1]);                                                                     \
        VSTORE(a2, r_[2]);                                                                     \
        VSTORE(a3, r_[3]);                                                                     \
        for (int e_ = 0; e_ < (m); e_++)                                                       \
            for (int u_ = 0; u_ < VW && u_ < (live); u_++)                                     \
                (out)[e_ * (size_t)(plane) + u_] = f(r_[e_][u_]);                              \
    } while (0)

/* Forward. Global (nvx, oh, n * nq), local (nvx, oh, qb) with nq = ceil(c_out / 4), qb dividing
 * nq and nvx = ceil(ow / VW): a work-group is one image and qb groups of four output maps; each
 * work-item computes VW neighbouring outputs of one row of four maps. xl: the image, all maps,
 * c_in * h * (nvx * VW + k - 1) floats. */
__kernel void conv_forward_local(__global const float *x, __global const float *w,
                                 __global const float *b, __global float *y, int c_in, int h,
                                 int wd, int c_out, int k, int act, __local float *xl)
{
    const int vx = get_local_id(0), i = get_local_id(1), lq = get_local_id(2);
    const int nvx = get_local_size(0), qb = get_local_size(2), nq = (c_out + 3) / 4;
    const int first = get_group_id(2) * qb, n = first / nq, o = (first % nq + lq) * 4;
    const int m = min(4, c_out - o);
    const int oh = h - k + 1, ow = wd - k + 1, pitch = nvx * VW + k - 1;
    const int lid = (lq * oh + i) * nvx + vx, lsize = nvx * oh * qb;
    stage_rows(x + (size_t)n * c_in * h * wd, c_in, h, wd, xl, h, pitch, 0, 0, lid, lsize);
    barrier(CLK_LOCAL_MEM_FENCE);
    const int kk = k * k, step = c_in * kk;
    /* maps past c_out read map o's weights (in bounds) and are not stored */
    __global const float *w0 = w + (size_t)o * step;
    __global const float *w1 = w0 + (m > 1 ? step : 0), *w2 = w0 + (m > 2 ? 2 * step : 0);
    __global const float *w3 = w0 + (m > 3 ? 3 * step : 0);
    floatv a0 = (floatv)(b[o]), a1 = (floatv)(b[o + (m > 1)]), a2 = (floatv)(b[o + (m > 2) * 2]);
    floatv a3 = (floatv)(b[o + (m > 3) * 3]);
    for (int c = 0; c < PER_ITEM(c_in); c++)
        for (int p = 0; p < k; p++) {
            __local const float *xr = xl + (c * h + i + p) * pitch + vx * VW;
            const int t = c * kk + p * k;
            if (k == KFIX) {
                ROW4(xr, 1, w0 + t, w1 + t, w2 + t, w3 + t, KFIX)
            } else {
                ROW4(xr, 1, w0 + t, w1 + t, w2 + t, w3 + t, k)
            }
        }
    __global float *out = y + (((size_t)n * c_out + o) * oh + i) * ow + vx * VW;
#define ACTIVATE(v) activate((v), act)
    STORE4(out, oh * ow, m, ow - vx * VW, ACTIVATE);
#undef ACTIVATE
}

/* Input gradient as a transposed convolution. Global (nvx, h, n * nq), local (nvx, h, qb) with
 * nq = ceil(c_in / 4), qb dividing nq and nvx = ceil(w / VW); each work-item computes VW
 * neighbouring pixels of one row of four input maps. dl: dy of the image, every map, padded by
 * k-1 on each side: c_out * (oh + 2k - 2) * (nvx * VW + k - 1) floats. */
__kernel void conv_backward_data_local(__global const float *dy, __global const float *w,
                                       __global float *dx, int c_in, int h, int wd, int c_out,
                                       int k, __local float *dl)
{
    const int vx = get_local_id(0), yy = get_local_id(1), lq = get_local_id(2);
    const int nvx = get_local_size(0), qb = get_local_size(2), nq = (c_in + 3) / 4;
    const int first = get_group_id(2) * qb, n = first / nq, c = (first % nq + lq) * 4;
    const int m = min(4, c_in - c);
    const int oh = h - k + 1, ow = wd - k + 1, pitch = nvx * VW + k - 1, prow = oh + 2 * (k - 1);
    const int lid = (lq * h + yy) * nvx + vx, lsize = nvx * h * qb;
    stage_rows(dy + (size_t)n * c_out * oh * ow, c_out, oh, ow, dl, prow, pitch, k - 1, k - 1, lid, lsize);
    barrier(CLK_LOCAL_MEM_FENCE);
    floatv a0 = (floatv)(0.0f), a1 = a0, a2 = a0, a3 = a0;
    const int kk = k * k;
    const int d1 = m > 1 ? kk : 0, d2 = m > 2 ? 2 * kk : 0, d3 = m > 3 ? 3 * kk : 0;
    for (int o = 0; o < PER_ITEM(c_out); o++) {
        __global const float *wk = w + ((size_t)o * c_in + c) * kk;
        for (int p = 0; p < k; p++) {
            __local const float *d = dl + (o * prow + yy + k - 1 - p) * pitch + vx * VW + k - 1;
            __global const float *wr = wk + p * k;
            if (k == KFIX) {
                ROW4(d, -1, wr, wr + d1, wr + d2, wr + d3, KFIX)
            } else {
                ROW4(d, -1, wr, wr + d1, wr + d2, wr + d3, k)
            }
        }
    }
    __global float *out = dx + (((size_t)n * c_in + c) * h + yy) * wd + vx * VW;
#define SAME(v) (v)
    STORE4(out, h * wd, m, wd - vx * VW, SAME);
#undef SAME
}

/* Kernel and bias gradients, partial sums over a chunk of images. Global (k*k, c_in,
 * (c_out / ob) * chunks), local (k*k, c_in, ob): one work-item per weight of ob output maps.
 * Image by image, x (all maps) and dy (the ob maps) go to local memory, then each work-item
 * runs a vectorised dot product of a dy map with a shifted x window. part: chunks rows of
 * c_out*c_in*k*k weights followed by c_out biases. xl: c_in*h*(owv+k-1) + ob*oh*owv floats. */
__kernel void conv_backward_filter_local(__global const float *x, __global const float *dy,
                                         __global float *part, int nimg, int c_in, int h, int wd,
                                         int c_out, int k, int per_chunk, int ipb, __local float *xl)
{
    const int pq = get_local_id(0), c = get_local_id(1), lo = get_local_id(2);
    const int kk = k * k, ob = get_local_size(2), groups = c_out / ob;
    const int og = get_group_id(2) % groups, chunk = get_group_id(2) / groups, o = og * ob + lo;
    const int p = pq / k, q = pq - p * k;
    const int oh = h - k + 1, ow = wd - k + 1, owv = (ow + VW - 1) / VW * VW, pitch = owv + k - 1;
    const int lid = (lo * c_in + c) * kk + pq, lsize = kk * c_in * ob;
    __local float *dl = xl + ipb * c_in * h * pitch;
    floatv acc = (floatv)(0.0f), bacc = (floatv)(0.0f);
    const int n0 = chunk * per_chunk, n1 = min(nimg, n0 + per_chunk);
    /* ipb images per pass between barriers */
    for (int n = n0; n < n1; n += ipb) {
        const int cnt = min(ipb, n1 - n);
        barrier(CLK_LOCAL_MEM_FENCE);
        stage_rows(x + (size_t)n * c_in * h * wd, cnt * c_in, h, wd, xl, h, pitch, 0, 0, lid, lsize);
        for (int u = 0; u < cnt; u++)
            stage_rows(dy + ((size_t)(n + u) * c_out + og * ob) * oh * ow, ob, oh, ow,
                       dl + u * ob * oh * owv, oh, owv, 0, 0, lid, lsize);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int u = 0; u < PER_ITEM(cnt); u++) {
            __local const float *d = dl + (u * ob + lo) * oh * owv;
            __local const float *xs = xl + ((u * c_in + c) * h + p) * pitch + q;
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < owv; j += VW)
                    acc += VLOAD(d + i * owv + j) * VLOAD(xs + i * pitch + j);
            if (pq == 0 && c == 0)
                for (int t = 0; t < oh * owv; t += VW)
                    bacc += VLOAD(d + t);
        }
    }
    __global float *mine = part + (size_t)chunk * (c_out * c_in * kk + c_out);
    mine[((size_t)o * c_in + c) * kk + pq] = HSUM(acc);
    if (pq == 0 && c == 0)
        mine[c_out * c_in * kk + o] = HSUM(bacc);
}

/* dst[t] (+)= sum over chunks of part[chunk][t], t < count (weights then biases). */
__kernel void sum_chunks(__global const float *part, __global float *dw, __global float *db,
                         int nw, int c_out, int chunks, int accumulate)
{
    const int t = get_global_id(0), row = nw + c_out;
    if (t >= row)
        return;
    float s = 0.0f;
    for (int ch = 0; ch < chunks; ch++)
        s += part[(size_t)ch * row + t];
    __global float *d = t < nw ? dw + t : db + (t - nw);
    *d = accumulate ? *d + s : s;
}
