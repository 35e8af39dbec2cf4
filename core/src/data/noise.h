/* cnnelm noisy copies: internal helpers shared by the data set builder and the stream reader. */
#ifndef CNNELM_DATA_NOISE_H
#define CNNELM_DATA_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "cnnelm/dataset.h"

/* One noisy copy of one image, exactly as cnnelm_dataset_add_noise makes it (index: the image's
 * row among the originals; type 0 gaussian, 1 salt_pepper, 2 poisson). src may equal dst. */
void cnnelm_noise_image(const uint8_t *src, uint8_t *dst, size_t pixels, int type, uint64_t seed,
                        size_t index);

/* Replaces ds's storage by owned blocks of n examples (images, labels, sources; ds frees them). */
int cnnelm_dataset_adopt(cnnelm_dataset *ds, uint8_t *images, uint8_t *labels, uint8_t *source,
                         size_t n, int rows, int cols, int classes, int n_sources);

#endif
