/* cnnelm data sets: IDX files (the MNIST format, raw or gzipped) of uint8 images and labels.
 * Images stay uint8 in memory (memory-mapped when the file is uncompressed) until a chunk is
 * converted to float on its way to a device. */
#ifndef CNNELM_DATASET_H
#define CNNELM_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "cnnelm/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cnnelm_dataset {
    const uint8_t *images;  /* n * rows * cols, row-major, image after image */
    const uint8_t *labels;  /* n labels */
    size_t n;
    int rows, cols;
    int classes;            /* 1 + the largest label present */
    /* ownership: where images/labels came from, for cnnelm_dataset_free */
    void *images_alloc, *labels_alloc; /* malloc'd blocks or NULL */
    void *images_map;  size_t images_map_len; /* mmap'd file or NULL */
} cnnelm_dataset;

/* Reads an IDX image file (magic 0x00000803, 3 dimensions) or label file (0x00000801, 1
 * dimension), raw or gzip (detected by content, not by name). Checks the magic, the
 * dimensions (non-zero, rows/cols <= 4096) and that the payload length matches the header
 * exactly; every failure is a one-line message naming the file.
 * ds must be zero-initialised or hold what an earlier read left (that part is freed first).
 * Each sets ds->n to its own file's count; read_labels also sets ds->classes. */
int cnnelm_idx_read_images(const char *path, cnnelm_dataset *ds, cnnelm_error *err);
int cnnelm_idx_read_labels(const char *path, cnnelm_dataset *ds, cnnelm_error *err);

/* Loads an image file and a label file into ds and checks that their counts agree and that
 * every label is < max_classes (pass 256 for no limit); sets ds->classes.
 * `limit` > 0 keeps only the first `limit` examples (no copy when mmap'd); the whole file is
 * still checked, and classes counts the whole label file, so a limit does not change it.
 * ds need not be initialised; on failure it is left empty. */
int cnnelm_dataset_load(cnnelm_dataset *ds, const char *images_path, const char *labels_path,
                        int max_classes, size_t limit, cnnelm_error *err);

void cnnelm_dataset_free(cnnelm_dataset *ds);

/* Writes IDX files atomically (temporary file in the same directory, then rename); gzipped
 * when the path ends in ".gz". */
int cnnelm_idx_write_images(const char *path, const uint8_t *images, size_t n, int rows, int cols,
                            cnnelm_error *err);
int cnnelm_idx_write_labels(const char *path, const uint8_t *labels, size_t n, cnnelm_error *err);

#ifdef __cplusplus
}
#endif
#endif
