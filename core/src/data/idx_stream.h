/* cnnelm IDX pieces the streamed data sets use: an image file's header alone and the label checks
 * of cnnelm_dataset_load (idx_header.c), a gzipped file decompressed into a file descriptor
 * (idx_gunzip.c), and a writer that takes the payload chunk by chunk (idx_write.c). */
#ifndef CNNELM_IDX_STREAM_H
#define CNNELM_IDX_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "base/atomic_file.h"
#include "cnnelm/error.h"

typedef struct cnnelm_idx_info {
    size_t n;               /* images the header announces */
    int rows, cols, channels;
    size_t header_bytes;    /* the payload starts here: 16, or 20 with channels */
    int gzip;               /* gzip stream (by content) */
} cnnelm_idx_info;

/* Reads and checks an IDX image file's header only (for a raw file, also that exactly the
 * payload follows: truncated or trailing data is the reader's one-line error). */
int cnnelm_idx_image_info(const char *path, cnnelm_idx_info *info, cnnelm_error *err);

/* Decompresses the whole IDX file at `path` (header and payload) into `fd` from its current
 * offset, with the reader's checks: the header as `want` says, exactly its payload, an intact
 * gzip trailer. */
int cnnelm_idx_gunzip_to(const char *path, int fd, const cnnelm_idx_info *want, cnnelm_error *err);

/* cnnelm_dataset_load's label checks: every label < max_classes, and for a training set
 * (CNNELM_LABELS_TRAIN) classes 0..C-1 all present. */
int cnnelm_idx_check_labels(const char *path, const uint8_t *labels, size_t n, int max_classes,
                            cnnelm_error *err);

/* An IDX image file written chunk by chunk, atomically, gzipped when the name ends in ".gz": the
 * same bytes as cnnelm_idx_write_images_c with all the payload at once. */
typedef struct cnnelm_idx_writer {
    cnnelm_atomic_file af;
    void *gz;               /* gzFile, or NULL for a raw file */
    size_t left;            /* payload bytes still expected */
    int open;
} cnnelm_idx_writer;

int cnnelm_idx_writer_open(cnnelm_idx_writer *w, const char *path, size_t n, int channels, int rows,
                           int cols, cnnelm_error *err);
int cnnelm_idx_writer_put(cnnelm_idx_writer *w, const uint8_t *data, size_t len, cnnelm_error *err);
/* Checks that the whole payload came, then commits; on failure the target is untouched. */
int cnnelm_idx_writer_commit(cnnelm_idx_writer *w, cnnelm_error *err);
void cnnelm_idx_writer_abort(cnnelm_idx_writer *w);

#endif
