/* cnnelm initial kernels drawn from the data (model.init = "patches"), optionally seen through
 * ZCA-whitened inputs (model.whiten). */
#include "cnnelm/model.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cnnelm/dataset.h"
#include "base/rng.h"

/* Images whose every patch goes into the whitening covariance: 256 x 576 patches of a 28 x 28
 * image at k = 5, far more than the k^2 x k^2 entries need; all images when there are fewer. */
#define WHITEN_IMAGES 256

/* Patch p (c, dy, dx order) of the image at (y, x), in [0, 1], its mean subtracted. */
static void patch_at(const uint8_t *img, const cnnelm_arch *a, int in_c, int y, int x, double *p)
{
    int k = a->kernel;
    size_t plane = (size_t)a->in_h * (size_t)a->in_w, per = (size_t)in_c * (size_t)k * (size_t)k;
    double mean = 0;
    for (int c = 0; c < in_c; c++)
        for (int dy = 0; dy < k; dy++)
            for (int dx = 0; dx < k; dx++) {
                double v = img[(size_t)c * plane + (size_t)(y + dy) * (size_t)a->in_w + (size_t)(x + dx)] / 255.0;
                p[((size_t)c * (size_t)k + (size_t)dy) * (size_t)k + (size_t)dx] = v;
                mean += v;
            }
    mean /= (double)per;
    for (size_t j = 0; j < per; j++)
        p[j] -= mean;
}

/* model.whiten: the covariance S of the mean-subtracted patches at every position of
 * WHITEN_IMAGES images (all when n is no more; else drawn by rng), then every kernel w becomes
 * (S + eps I)^-1 w at its former norm, eps = whiten x trace(S) / (patch size). A patch kernel
 * c applied to ZCA-whitened inputs W x, W = (S + eps I)^-1/2, with c itself a whitened patch
 * W p, is the kernel W^2 p on the raw input: what Coates and Ng's single-layer networks do,
 * without whitening every input. Directions the patches share (smooth gradients) weigh less,
 * rare ones (edges, texture) more. */
static int whiten_kernels(cnnelm_model *m, const cnnelm_layer *Ly, const cnnelm_dataset *ds,
                          const size_t *rows, size_t n, cnnelm_rng *rng, double whiten, uint8_t *img,
                          cnnelm_error *err)
{
    const cnnelm_arch *a = &m->arch;
    int k = a->kernel, ny = a->in_h - k + 1, nx = a->in_w - k + 1;
    size_t P = (size_t)Ly->in_c * (size_t)k * (size_t)k, npos = (size_t)ny * (size_t)nx;
    /* one row of positions at a time (bounded by the image's width, not its area); X later
     * holds one new kernel, P values */
    double *X = malloc((size_t)nx * P * sizeof *X), *S = calloc(P * P, sizeof *S);
    double *mu = calloc(P, sizeof *mu), *ev = malloc(P * sizeof *ev), *t = malloc(P * sizeof *t);
    int rc = 0;
    if (!X || !S || !mu || !ev || !t) {
        rc = cnnelm_fail(err, "out of memory for model.whiten's patch covariance (%zu x %zu)", P, P);
        goto out;
    }
    size_t images = n < WHITEN_IMAGES ? n : WHITEN_IMAGES;
    for (size_t s = 0; s < images && rc == 0; s++) {
        size_t i = n <= WHITEN_IMAGES ? s : (size_t)cnnelm_rng_below(rng, n);
        if ((rc = cnnelm_dataset_fetch(ds, rows, i, 1, img, err)) != 0)
            break;
        for (int y = 0; y < ny; y++) {
            for (int x = 0; x < nx; x++) {
                double *p = X + (size_t)x * P;
                patch_at(img, a, Ly->in_c, y, x, p);
                for (size_t j = 0; j < P; j++)
                    mu[j] += p[j];
            }
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)P, nx, 1.0, X, (int)P, 1.0, S, (int)P);
        }
    }
    if (rc != 0)
        goto out;
    double count = (double)images * (double)npos, trace = 0;
    for (size_t r = 0; r < P; r++)
        mu[r] /= count;
    for (size_t r = 0; r < P; r++) {
        for (size_t c = r; c < P; c++)
            S[r * P + c] = S[r * P + c] / count - mu[r] * mu[c];
        trace += S[r * P + r];
    }
    if (!(trace > 0)) /* every patch flat: nothing to whiten, the kernels stay as drawn */
        goto out;
    double eps = whiten * trace / (double)P;
    lapack_int info = LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)P, S, (lapack_int)P, ev);
    if (info != 0) {
        rc = cnnelm_fail(err, "model.whiten: the patches' %zu x %zu covariance has no "
                         "eigendecomposition (LAPACK info %d)", P, P, (int)info);
        goto out;
    }
    /* S now holds the eigenvectors as columns: w <- V diag(1 / (ev + eps)) V^T w */
    for (int o = 0; o < Ly->out_c; o++) {
        float *w = m->params + Ly->w_offset + (size_t)o * P;
        double before = 0, after = 0;
        for (size_t j = 0; j < P; j++) {
            double d = 0;
            for (size_t r = 0; r < P; r++)
                d += S[r * P + j] * w[r];
            t[j] = d / ((ev[j] > 0 ? ev[j] : 0) + eps);
        }
        for (size_t r = 0; r < P; r++) {
            double d = 0;
            for (size_t j = 0; j < P; j++)
                d += S[r * P + j] * t[j];
            before += (double)w[r] * w[r];
            X[r] = d; /* X is free now: the new kernel before its scale */
            after += d * d;
        }
        double scale = after > 0 ? sqrt(before / after) : 0;
        for (size_t r = 0; r < P && scale > 0; r++)
            w[r] = (float)(X[r] * scale);
    }
out:
    free(X);
    free(S);
    free(mu);
    free(ev);
    free(t);
    return rc;
}

/* model.init = "patches": the first convolution's kernels become k x k patches (all input
 * channels) of training images, drawn by the seeded generator (image, then position), each
 * mean-subtracted and scaled to the norm of the kernel it replaces; a flat patch (the
 * background) is drawn again, up to PATCH_TRIES times. */
#define PATCH_TRIES 32

int cnnelm_model_init_patches(cnnelm_model *m, const cnnelm_dataset *ds, const size_t *rows, size_t n,
                              uint64_t seed, double whiten, cnnelm_error *err)
{
    const cnnelm_arch *a = &m->arch;
    const cnnelm_layer *Ly = NULL;
    for (int i = 0; i < a->n_layers && !Ly; i++)
        if (a->layer[i].kind == CNNELM_LAYER_CONV)
            Ly = &a->layer[i];
    int k = a->kernel;
    if (!Ly || n == 0)
        return 0;
    if (Ly->in_c != a->in_c || a->in_h < k || a->in_w < k)
        return cnnelm_fail(err, "internal: patches for a first convolution of %d maps on %dx%dx%d images",
                           Ly->in_c, a->in_c, a->in_h, a->in_w);
    size_t px = cnnelm_dataset_example_bytes(ds), per = (size_t)Ly->in_c * (size_t)k * (size_t)k;
    if (px != (size_t)a->in_c * (size_t)a->in_h * (size_t)a->in_w)
        return cnnelm_fail(err, "internal: images of %zu bytes for a model of %dx%dx%d inputs", px,
                           a->in_c, a->in_h, a->in_w);
    uint8_t *img = malloc(px);
    double *p = malloc(per * sizeof *p);
    if (!img || !p) {
        free(img);
        free(p);
        return cnnelm_fail(err, "out of memory drawing kernels from patches");
    }
    cnnelm_rng rng;
    cnnelm_rng_seed(&rng, seed, CNNELM_STREAM_PATCHES);
    int rc = 0;
    for (int o = 0; o < Ly->out_c && rc == 0; o++) {
        float *w = m->params + Ly->w_offset + (size_t)o * per;
        double target = 0;
        for (size_t j = 0; j < per; j++)
            target += (double)w[j] * w[j];
        target = sqrt(target);
        for (int t = 0; t < PATCH_TRIES; t++) {
            size_t i = (size_t)cnnelm_rng_below(&rng, n);
            int y = (int)cnnelm_rng_below(&rng, (uint64_t)(a->in_h - k + 1));
            int x = (int)cnnelm_rng_below(&rng, (uint64_t)(a->in_w - k + 1));
            if ((rc = cnnelm_dataset_fetch(ds, rows, i, 1, img, err)) != 0)
                break;
            double norm = 0;
            patch_at(img, a, Ly->in_c, y, x, p);
            for (size_t j = 0; j < per; j++)
                norm += p[j] * p[j];
            norm = sqrt(norm);
            if (norm < 4.0 / 255.0 * sqrt((double)per)) /* spread under 4 grey levels: flat */
                continue;
            for (size_t j = 0; j < per; j++)
                w[j] = (float)(p[j] * (target / norm));
            break;
        }
    }
    /* drawn after the kernels, so that whitening leaves the patches drawn as they were */
    if (rc == 0 && whiten > 0)
        rc = whiten_kernels(m, Ly, ds, rows, n, &rng, whiten, img, err);
    free(img);
    free(p);
    return rc;
}
