/* cnnelm train-only augmentation (data.augment): a mirrored copy ("hflip") and a copy moved by
 * one pixel ("shift") of every training image, made in place on each fetched row by the stream
 * (dataset_stream.c), so a streamed and an in-memory set give the same bytes and memory holds
 * only the labels of the copies. */
#include "data/augment.h"

#include <stdlib.h>
#include <string.h>

#include "cnnelm/enums.h"
#include "base/rng.h"
#include "data/dataset_stream.h"

void cnnelm_augment_shift_of(uint64_t seed, size_t index, int *dx, int *dy)
{
    /* one hash per (seed, image), as the noise streams: independent of threads and partitions */
    uint64_t h = (uint64_t)index;
    h = seed ^ cnnelm_splitmix64(&h);
    int d = (int)(cnnelm_splitmix64(&h) >> 62);
    static const int DX[4] = { 1, -1, 0, 0 }, DY[4] = { 0, 0, 1, -1 };
    *dx = DX[d];
    *dy = DY[d];
}

static void hflip(uint8_t *p, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        uint8_t *row = p + (size_t)r * (size_t)cols;
        for (int a = 0, b = cols - 1; a < b; a++, b--) {
            uint8_t t = row[a];
            row[a] = row[b];
            row[b] = t;
        }
    }
}

/* out(r, c) = in(r - dy, c - dx), 0 outside: memmove handles the overlap of in place */
static void shift(uint8_t *p, int rows, int cols, int dx, int dy)
{
    size_t w = (size_t)cols, h = (size_t)rows;
    if (dx != 0 && w > 0)
        for (size_t r = 0; r < h; r++) {
            uint8_t *row = p + r * w;
            if (dx > 0) {
                memmove(row + 1, row, w - 1);
                row[0] = 0;
            } else {
                memmove(row, row + 1, w - 1);
                row[w - 1] = 0;
            }
        }
    if (dy > 0 && h > 0) {
        memmove(p + w, p, (h - 1) * w);
        memset(p, 0, w);
    } else if (dy < 0 && h > 0) {
        memmove(p, p + w, (h - 1) * w);
        memset(p + (h - 1) * w, 0, w);
    }
}

void cnnelm_augment_image(uint8_t *img, int rows, int cols, int channels, int type, uint64_t seed,
                          size_t index)
{
    size_t plane = (size_t)rows * (size_t)cols;
    int dx = 0, dy = 0;
    if (type == 1)
        cnnelm_augment_shift_of(seed, index, &dx, &dy);
    for (int ch = 0; ch < (channels > 0 ? channels : 1); ch++) {
        uint8_t *p = img + (size_t)ch * plane;
        if (type == 0)
            hflip(p, rows, cols);
        else
            shift(p, rows, cols, dx, dy);
    }
}

int cnnelm_build_augment(cnnelm_dataset *ds, unsigned mask, uint64_t seed, const char *cache_dir,
                         cnnelm_error *err)
{
    if (mask & ~(unsigned)(CNNELM_AUGMENT_HFLIP | CNNELM_AUGMENT_SHIFT))
        return cnnelm_fail(err, "augment mask 0x%x has unknown bits (hflip 1, shift 2)", mask);
    int types[CNNELM_AUGMENT_KINDS], copies = 0;
    for (int t = 0; t < CNNELM_AUGMENT_KINDS; t++)
        if ((mask >> t) & 1u)
            types[copies++] = t;
    if (copies == 0 || ds->n == 0)
        return 0;
    size_t n = ds->n;
    if (n > SIZE_MAX / (size_t)(1 + copies))
        return cnnelm_fail(err, "%zu images with %d augmented copies overflow the address space", n, copies);
    size_t total = n * (size_t)(1 + copies);
    if (!ds->stream) {
        /* the set's own images become the stream's one segment (moved, not copied) */
        cnnelm_stream *st = cnnelm_stream_new(cnnelm_dataset_example_bytes(ds), cache_dir, 1, err);
        if (!st)
            return -1;
        cnnelm_dataset img;
        memset(&img, 0, sizeof img);
        img.images = ds->images;
        img.images_alloc = ds->images_alloc;
        img.images_map = ds->images_map;
        img.images_map_len = ds->images_map_len;
        img.n = n;
        img.rows = ds->rows;
        img.cols = ds->cols;
        img.channels = ds->channels;
        img.classes = ds->classes;
        if (cnnelm_stream_add_memory(st, &img, err)) {
            cnnelm_stream_free(st);
            return -1;
        }
        ds->images = NULL;
        ds->images_alloc = ds->images_map = NULL;
        ds->images_map_len = 0;
        ds->stream = st;
    }
    uint8_t *labels = malloc(total);
    if (!labels)
        return cnnelm_fail(err, "out of memory augmenting %zu images to %zu", n, total);
    memcpy(labels, ds->labels, n);
    free(ds->labels_alloc);
    ds->labels = ds->labels_alloc = labels;
    if (ds->source) {
        uint8_t *source = realloc((void *)ds->source, total);
        if (!source)
            return cnnelm_fail(err, "out of memory augmenting %zu images to %zu", n, total);
        ds->source = source;
        for (int t = 1; t <= copies; t++)
            memcpy(source + (size_t)t * n, source, n);
    }
    for (int t = 1; t <= copies; t++)
        memcpy(labels + (size_t)t * n, labels, n);
    cnnelm_stream_set_augment(ds->stream, types, copies, seed, ds->rows, ds->cols, ds->channels);
    ds->n = total;
    return 0;
}
