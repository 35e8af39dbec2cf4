/* cnnelm run configuration: a libconfig file plus command-line overrides (-s key=value),
 * validated against a schema: unknown keys and out-of-range values are errors with file and line. */
#ifndef CNNELM_CONFIG_H
#define CNNELM_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "cnnelm/enums.h"
#include "cnnelm/error.h"
#include "cnnelm/layers.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CNNELM_PATH_MAX 4096
#define CNNELM_MAX_WORKERS 64

#define CNNELM_MAX_SOURCES 16

/* A list of numbers from the config (e.g. model.lambda_candidates). */
#define CNNELM_MAX_FLOAT_LIST 32
typedef struct cnnelm_float_list {
    int n;
    double v[CNNELM_MAX_FLOAT_LIST];
} cnnelm_float_list;

typedef struct cnnelm_worker_config {
    char backend[64];       /* plugin name: "cpu" loads libcnnelm-cpu.so */
    int device;             /* device index within the backend */
    char match[128];        /* non-empty: the first device whose name or vendor contains it */
    int threads;            /* host threads for this worker; 0: backend default */
    double op_timeout;      /* seconds one device call may take before the device is lost; 0: no limit */
} cnnelm_worker_config;

typedef struct cnnelm_config {
    char path[CNNELM_PATH_MAX];         /* the file it was read from */
    char plugin_path[CNNELM_PATH_MAX];  /* plugin_path: colon-separated directories, may be "" */
    char cache_dir[CNNELM_PATH_MAX];    /* cache_dir: backends' compiled programs; "": XDG default */
    struct {
        char train_images[CNNELM_PATH_MAX], train_labels[CNNELM_PATH_MAX];
        char test_images[CNNELM_PATH_MAX], test_labels[CNNELM_PATH_MAX]; /* "" = no test set */
        long train_limit, test_limit;    /* > 0: use only the first N examples */
        unsigned extend;                 /* CNNELM_NOISE_* mask; 0 = none */
        unsigned augment;                /* CNNELM_AUGMENT_* mask (training set only); 0 = none */
        int n_sources;                   /* > 0: data.sources replaces the four paths above */
        struct {
            char train_images[CNNELM_PATH_MAX], train_labels[CNNELM_PATH_MAX];
            char test_images[CNNELM_PATH_MAX], test_labels[CNNELM_PATH_MAX];
        } sources[CNNELM_MAX_SOURCES];
        char resize[32];                 /* "" or "WxH": image-folder images of another size resized */
        int grayscale;                   /* convert colour inputs to gray */
        long max_bad;                    /* unreadable or wrong-size image files skipped */
        char class_names[CNNELM_PATH_MAX];      /* "" or "name0,name1,..." */
        char class_names_file[CNNELM_PATH_MAX]; /* "" or a file with one class name a line */
        long long max_bytes;             /* most payload bytes one gzipped image file or label
                                          * file may read into memory; 0: half the RAM */
        char shards[CNNELM_PATH_MAX];    /* "" or a glob of IDX image files: the training set */
        int stream;                      /* read IDX images chunk by chunk (default) */
        long hold_mb;                    /* streamed files of at most this many MiB in all: read whole */
        char cache_dir[CNNELM_PATH_MAX]; /* "": $XDG_CACHE_HOME/cnnelm; gzipped files decompressed */
    } data;
    struct {
        char layers[256];                /* e.g. "6c-2s-12c-2s" */
        int kernel;                      /* k x k convolution kernels */
        cnnelm_activation activation;    /* after each convolution */
        cnnelm_pooling pooling;
        cnnelm_activation elm_activation;/* applied to the flattened last layer: H */
        double lambda;                   /* ridge: beta = (I/lambda + U)^-1 V; 0: "auto" (GCV) */
        cnnelm_float_list lambda_candidates; /* for "auto"; n = 0: 1, 10, ..., 1e6 */
        cnnelm_init init;                /* initial kernels */
        double whiten;                   /* init "patches": ZCA regulariser, share of the mean
                                          * patch variance; 0 = plain patches */
    } model;
    struct {
        uint64_t seed;
        int iterations;                  /* fine-tuning iterations (epochs); 0 = plain ELM */
        long batch;                      /* ELM update interval in examples; 0 = whole partition */
        int chunk;                       /* examples per device call */
        double learning_rate;
        cnnelm_lr_schedule lr_schedule;
        double momentum;                 /* in [0, 1) */
        int partitions;                  /* k */
        cnnelm_partitioning partitioning;
        cnnelm_reduce reduce;
        int sync_every;                  /* > 0: fine-tuning partitions average their kernels
                                          * every n batches; 0: once, at the end (the paper) */
        int sync_beta;                   /* with sync_every: every batch's beta solved from the
                                          * sums of U and V over all partitions */
        int compare_single;              /* also train one model on all the data, for the table */
        int trials;                      /* repeat with seeds seed, seed+1, ...; report mean +- std */
        int folds;                       /* > 1: n-fold cross-validation on the training set */
        char checkpoint_dir[CNNELM_PATH_MAX]; /* "" = none; else each finished partition's model */
        long memory_limit;               /* MiB the run may plan to use; 0 = MemAvailable */
        double validation;               /* [0, 0.5): share held out to choose lambda "auto"; 0 = GCV */
        cnnelm_sums sums;                /* U and V summed on the device in float or double */
    } train;
    int n_workers;
    cnnelm_worker_config workers[CNNELM_MAX_WORKERS];
    char *text;   /* the effective configuration (file + overrides) as libconfig text; owned */
} cnnelm_config;

/* Fills cfg with the defaults, then reads `path` (NULL or "": none) and applies each override
 * ("key=value", value written as in a libconfig file; for a string key a value that does not
 * parse is the string itself; a group value merges into the group, anything else replaces) in
 * order. Unknown keys, wrong types and out-of-range values are errors: "FILE:LINE: message" or
 * "-s OVERRIDE: message". On failure cfg holds the defaults and cfg->text is NULL. */
int cnnelm_config_load(cnnelm_config *cfg, const char *path, const char *const *overrides,
                       int n_overrides, cnnelm_error *err);
void cnnelm_config_free(cnnelm_config *cfg);

/* Fills cfg with the defaults of every key (one cpu worker); cfg->text is NULL.
 * cnnelm_config_load with path NULL or "" gives the same plus the overrides, and the text. */
void cnnelm_config_defaults(cnnelm_config *cfg);

/* Writes the reference of every key (a Markdown table: key, type, default, allowed values,
 * meaning), generated from the schema the loader checks against; docs/config.md embeds it. */
void cnnelm_config_write_reference(FILE *out);

/* Names for the enums, as written in config files. */
const char *cnnelm_activation_name(cnnelm_activation a);
const char *cnnelm_pooling_name(cnnelm_pooling p);
const char *cnnelm_reduce_name(cnnelm_reduce r);
const char *cnnelm_partitioning_name(cnnelm_partitioning p);
const char *cnnelm_lr_schedule_name(cnnelm_lr_schedule s);

#ifdef __cplusplus
}
#endif
#endif
