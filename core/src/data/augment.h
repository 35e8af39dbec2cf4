/* cnnelm train-only augmentation (data.augment): transformed copies of every training image,
 * made per fetched row by the stream, so memory does not grow with the copies. */
#ifndef CNNELM_DATA_AUGMENT_H
#define CNNELM_DATA_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "cnnelm/dataset.h"

/* The transforms, in the order their copies follow the untransformed rows. */
enum { CNNELM_AUGMENT_KINDS = 2 }; /* 0 hflip, 1 shift */

/* Transform `type` (0 hflip, 1 shift) of one image of channels x rows x cols bytes, in place.
 * index: the image's row among the untransformed rows; with seed it picks a shift's direction
 * (right, left, down or up by one pixel; the pixels shifted in are 0). */
void cnnelm_augment_image(uint8_t *img, int rows, int cols, int channels, int type, uint64_t seed,
                          size_t index);

/* The direction cnnelm_augment_image shifts image `index` by: dx, dy in {-1, 0, 1}, one of them 0. */
void cnnelm_augment_shift_of(uint64_t seed, size_t index, int *dx, int *dy);

/* data.augment on a training set: labels (and sources) repeated per copy after the rows there
 * are (originals and data.extend's copies); the images are made when fetched. An in-memory set
 * becomes a stream over its own images (no copy). cache_dir: data.cache_dir. */
int cnnelm_build_augment(cnnelm_dataset *ds, unsigned mask, uint64_t seed, const char *cache_dir,
                         cnnelm_error *err);

#endif
