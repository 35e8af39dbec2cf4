/* cnnelm streamed data sets: the reader behind a cnnelm_dataset whose images stay on disk.
 * Rows 0..n_base-1 are the originals, held in segments (an IDX file read with pread, or an
 * in-memory set); with noise types, copy t of every original follows as rows
 * (t + 1) * n_base .. (t + 2) * n_base - 1, generated when fetched; with augment types, copy a of
 * all those rows follows them, transformed when fetched. */
#ifndef CNNELM_DATASET_STREAM_H
#define CNNELM_DATASET_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "cnnelm/dataset.h"

typedef struct cnnelm_stream cnnelm_stream;

/* An empty stream of examples of `px` bytes; `cache_dir` ("" : $XDG_CACHE_HOME/cnnelm, else
 * ~/.cache/cnnelm) holds decompressed copies of gzipped files; `quiet` drops the notes. */
cnnelm_stream *cnnelm_stream_new(size_t px, const char *cache_dir, int quiet, cnnelm_error *err);
void cnnelm_stream_free(cnnelm_stream *st);

/* Appends the first n examples of the IDX image file at `path` (which must hold file_n images
 * of rows x cols x channels). lazy = 0 opens it now (a gzipped file is decompressed to the cache
 * now), so its errors come at load; lazy = 1 opens it on the first fetch that needs it. */
int cnnelm_stream_add_file(cnnelm_stream *st, const char *path, size_t n, size_t file_n, int rows,
                           int cols, int channels, int lazy, cnnelm_error *err);
/* Appends an in-memory set (its images; the stream takes ownership of *ds, emptied). */
int cnnelm_stream_add_memory(cnnelm_stream *st, cnnelm_dataset *ds, cnnelm_error *err);
/* data.max_bytes (0: half the physical memory) for the gzipped files added lazily: one whose
 * header announces more is refused when opened, before its copy is made. */
/* data.hold_mb: a stream whose files fit in it reads each whole at its first fetch (0: never). */
void cnnelm_stream_set_hold_mb(cnnelm_stream *st, long mb);
void cnnelm_stream_set_max_bytes(cnnelm_stream *st, unsigned long long max_bytes);
/* Noisy copies after the originals: types are 0 gaussian, 1 salt_pepper, 2 poisson. */
void cnnelm_stream_set_noise(cnnelm_stream *st, const int *types, int n_types, uint64_t seed);
/* data.augment's copies after all of those rows (originals and noisy copies): types are 0 hflip,
 * 1 shift (augment.h), applied to images of channels x rows x cols. */
void cnnelm_stream_set_augment(cnnelm_stream *st, const int *types, int n_types, uint64_t seed,
                               int rows, int cols, int channels);
/* The image bytes data.hold_mb will read into memory at first use (its files fit in it), else 0:
 * for the memory plan, which runs before any fetch. */
size_t cnnelm_stream_hold_bytes(const cnnelm_stream *st);
/* Examples in the stream (originals and copies). */
size_t cnnelm_stream_size(const cnnelm_stream *st);
/* How many segment files have been opened so far (for tests of lazy opening). */
int cnnelm_stream_files_opened(const cnnelm_stream *st);

int cnnelm_stream_fetch(cnnelm_stream *st, const size_t *rows, size_t first, size_t n, uint8_t *out,
                        cnnelm_error *err);

/* The data.cache_dir default: $XDG_CACHE_HOME/cnnelm, else $HOME/.cache/cnnelm. */
int cnnelm_data_cache_dir(const char *configured, char *out, size_t size, cnnelm_error *err);


#endif
