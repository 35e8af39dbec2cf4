/* cnnelm data sets: IDX files (the MNIST format, raw or gzipped) of uint8 images and labels.
 * A set is either in memory (`images`: memory-mapped when the file is uncompressed, or read) or
 * streamed (`stream`: images stay on disk and are read by row, see cnnelm_dataset_fetch); labels
 * are always in memory. Images stay uint8 until a chunk is converted to float on its way to a
 * device. */
#ifndef CNNELM_DATASET_H
#define CNNELM_DATASET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cnnelm/error.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cnnelm_stream;

typedef struct cnnelm_dataset {
    const uint8_t *images;  /* n * rows * cols, row-major, image after image; NULL when streamed */
    const uint8_t *labels;  /* n labels */
    size_t n;
    int rows, cols;
    int classes;            /* 1 + the largest label present */
    const uint8_t *source;  /* per example, its data.sources index; NULL with a single source */
    int n_sources;          /* 0 with a single source */
    /* ownership: where images/labels came from, for cnnelm_dataset_free */
    void *images_alloc, *labels_alloc; /* malloc'd blocks or NULL */
    void *images_map;  size_t images_map_len; /* mmap'd file or NULL */
    int channels;           /* 1 (gray) or 3 (RGB); 0 reads as 1. images are n x channels x rows x cols */
    char **class_names;     /* `classes` names (from folder names or data.class_names) or NULL; owned */
    struct cnnelm_stream *stream; /* non-NULL: images are read by row from files (owned) */
} cnnelm_dataset;

/* Copies the images of examples rows[first .. first+n) (rows NULL: examples first .. first+n)
 * into out (n x example bytes), from memory or from the stream behind ds. Safe from several
 * threads at once. A read error (a file cut short while in use, a shard that cannot be opened)
 * is a one-line message naming the file; a file removed after it was opened is still read. */
int cnnelm_dataset_fetch(const cnnelm_dataset *ds, const size_t *rows, size_t first, size_t n,
                         uint8_t *out, cnnelm_error *err);

/* Reads a streamed set's images into memory (ds->images); an in-memory set is left as it is. */
int cnnelm_dataset_materialize(cnnelm_dataset *ds, cnnelm_error *err);

/* Bytes of one example: channels x rows x cols. */
static inline size_t cnnelm_dataset_example_bytes(const cnnelm_dataset *ds)
{
    return (size_t)(ds->channels > 0 ? ds->channels : 1) * (size_t)ds->rows * (size_t)ds->cols;
}

/* Reads an IDX image file (magic 0x00000803, 3 dimensions) or label file (0x00000801, 1
 * dimension), raw or gzip (detected by content, not by name). Checks the magic, the
 * dimensions (non-zero, rows/cols <= 4096) and that the payload length matches the header
 * exactly; every failure is a one-line message naming the file.
 * ds must be zero-initialised or hold what an earlier read left (that part is freed first).
 * Each sets ds->n to its own file's count; read_labels also sets ds->classes. */
int cnnelm_idx_read_images(const char *path, cnnelm_dataset *ds, cnnelm_error *err);
int cnnelm_idx_read_labels(const char *path, cnnelm_dataset *ds, cnnelm_error *err);

/* Refuses an IDX file read into memory (gzipped, or labels) whose header announces more than
 * max_bytes of payload (0: half the physical memory), before anything is allocated. */
int cnnelm_idx_check_size(const char *path, unsigned long long max_bytes, cnnelm_error *err);

/* max_classes for a training label file: its labels set the class count, so they must be
 * 0..C-1 with every class present (a stray 200 among 0..9 is an error, not a 201-class model). */
#define CNNELM_LABELS_TRAIN 0

/* Loads an image file and a label file into ds and checks that their counts agree and that
 * every label is < max_classes (pass 256 for no limit, CNNELM_LABELS_TRAIN for a training set);
 * sets ds->classes.
 * `limit` > 0 keeps only the first `limit` examples (no copy when mmap'd); the whole file is
 * still checked, and classes counts the whole label file, so a limit does not change it.
 * ds need not be initialised; on failure it is left empty. */
int cnnelm_dataset_load(cnnelm_dataset *ds, const char *images_path, const char *labels_path,
                        int max_classes, size_t limit, cnnelm_error *err);

void cnnelm_dataset_free(cnnelm_dataset *ds);

/* How images other than IDX are turned into a data set (data.resize, data.grayscale,
 * data.max_bad). */
typedef struct cnnelm_input_options {
    int resize_h, resize_w;  /* > 0: images of another size are resized to this (bilinear) */
    int grayscale;           /* convert colour to gray (luma) */
    long max_bad;            /* unreadable or wrong-size files skipped before it is an error */
    int quiet;               /* no notes on stderr (bad files, cache use) */
} cnnelm_input_options;

/* Loads a data set from whatever `images_path` is: an IDX image file (with labels_path, as
 * cnnelm_dataset_load; 1- or 3-channel), a folder of class subfolders of PNG/JPEG images
 * (labels from the sorted subfolder names, which become ds->class_names; labels_path must be
 * ""), or a CSV file (label first, then pixels; labels_path ""). Folders are decoded once and
 * cached as IDX in DIR/.cnnelm-cache/ (keyed by the file list, sizes and mtimes and the
 * options), so the next run reads the cache. Anything else is an error naming what the file is
 * and what is supported. */
int cnnelm_dataset_load_any(cnnelm_dataset *ds, const char *images_path, const char *labels_path,
                            int max_classes, size_t limit, const cnnelm_input_options *o,
                            cnnelm_error *err);

/* 1 when a data path carries its own labels (an image folder, a CSV file): no labels file. */
int cnnelm_input_holds_labels(const char *images_path);

/* Converts a 3-channel data set to gray in place (luma 299/587/114, rounded): data.grayscale. */
int cnnelm_dataset_to_gray(cnnelm_dataset *ds, cnnelm_error *err);

/* Sets ds->class_names from a comma-separated list (data.class_names) or a file with one name a
 * line (data.class_names_file); there must be at least ds->classes of them, and ds->classes
 * becomes their count. Either may be NULL or "". */
int cnnelm_dataset_set_class_names(cnnelm_dataset *ds, const char *list, const char *file,
                                   cnnelm_error *err);

/* Copies n class names (NULL: none) into a NULL-or-owned array; frees one. */
char **cnnelm_class_names_copy(char *const *names, int n);
void cnnelm_class_names_free(char **names, int n);

struct cnnelm_config;

/* Loads the training set (test = 0) or the test set (test = 1) as the config says: the four
 * data.* paths (with their limits), data.sources in order with each source's labels shifted by
 * the class counts of the sources before it (counted on their training labels, so training and
 * test agree), or (training set) the files data.shards matches, in name order; then, with
 * data.extend, one noisy copy of every image per noise type after the originals. No test set
 * configured: ds->n = 0, not an error. Test labels must be < max_classes.
 * IDX files are streamed (data.stream, the default): labels are read, images are not (a gzipped
 * file is decompressed once to data.cache_dir) and noisy copies are made when fetched; shards
 * after the first are opened on their first fetch. Image folders, CSV files and gray-converted
 * colour files are held in memory. data.stream = false holds everything in memory, as
 * cnnelm_dataset_load does; the fetched bytes are the same either way. */
int cnnelm_dataset_load_config(cnnelm_dataset *ds, const struct cnnelm_config *cfg, int test,
                               int max_classes, cnnelm_error *err);

/* Appends one noisy copy of every image per noise type in `mask` (CNNELM_NOISE_*), copies in
 * the order gaussian, salt_pepper, poisson, labels (and sources) copied; ds then owns its
 * memory. Each (image index, type) has its own stream of `seed`, so the bytes do not depend on
 * threads (copies are made on all cores) or on the other images. Levels (images in 0..255):
 * gaussian: + N(0, 25.5^2) (sigma 0.1 of full scale), rounded, clamped; salt_pepper: each
 * pixel with probability 0.05 set to 0 or 255 (half each); poisson: each pixel v replaced by a
 * Poisson sample of mean v (Knuth up to 30, normal approximation above), clamped to 255.
 * cnnelm_dataset_load_config seeds it with train.seed (training) and train.seed + 1 (test).
 * mask 0 or an empty ds: nothing to do. Unknown mask bits are an error. */
int cnnelm_dataset_add_noise(cnnelm_dataset *ds, unsigned mask, uint64_t seed, cnnelm_error *err);

/* cnnelm extend: writes the training and test sets as the config builds them into `dir`
 * (created with its parents if missing) as MNIST-named gzipped IDX files
 * (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-...; no t10k files without a
 * test set), each atomically and chunk by chunk (memory does not grow with the set); writes
 * each file's path on its own line to `paths` (NULL: nowhere), and unless `quiet` each set's
 * size on stderr. */
int cnnelm_run_extend(const char *config_path, const char *const *overrides, int n_overrides,
                      const char *dir, int quiet, FILE *paths, cnnelm_error *err);

/* Writes IDX files atomically (temporary file in the same directory, then rename); gzipped
 * when the path ends in ".gz". */
int cnnelm_idx_write_images(const char *path, const uint8_t *images, size_t n, int rows, int cols,
                            cnnelm_error *err);
/* A 3-channel set as IDX with 4 dimensions n x c x h x w (magic 0x00000804); c = 1 writes the
 * ordinary 3-dimension file. */
int cnnelm_idx_write_images_c(const char *path, const uint8_t *images, size_t n, int channels,
                              int rows, int cols, cnnelm_error *err);
int cnnelm_idx_write_labels(const char *path, const uint8_t *labels, size_t n, cnnelm_error *err);

#ifdef __cplusplus
}
#endif
#endif
