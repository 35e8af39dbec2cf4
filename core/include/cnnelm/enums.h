/* cnnelm run-setting enums (how partitions are made and combined, initial kernels, learning-rate
 * schedule, noise types): what the modules acting on them include instead of all of config.h.
 * The names config files use for them are in config.h (cnnelm_reduce_name, ...). */
#ifndef CNNELM_ENUMS_H
#define CNNELM_ENUMS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Values are stored in model files (cnnelm_model.reduce = 1 + the mode): append only. */
typedef enum cnnelm_reduce {
    CNNELM_REDUCE_MEAN = 0,     /* plain mean of kernels, biases and beta (the paper) */
    CNNELM_REDUCE_WEIGHTED = 1, /* mean weighted by partition size */
    CNNELM_REDUCE_REFIT = 2     /* mean kernels, then beta solved from summed U and V */
} cnnelm_reduce;

/* train.sums: how the device sums U = H^T H and V = H^T T within an ELM batch. */
typedef enum cnnelm_sums {
    CNNELM_SUMS_FLOAT = 0,  /* float (elm_accumulate): fast; the grouping of examples into
                               chunks changes the sums by float rounding (~1e-7 relative) */
    CNNELM_SUMS_DOUBLE = 1  /* double (elm_accumulate_f64): exact products, sums independent
                               of the grouping beyond double rounding */
} cnnelm_sums;

typedef enum cnnelm_partitioning {
    CNNELM_PART_SHUFFLE = 0, CNNELM_PART_STRATIFIED = 1, CNNELM_PART_CONTIGUOUS = 2,
    CNNELM_PART_LABEL_SKEW = 3, CNNELM_PART_BY_SOURCE = 4 /* one partition per data.sources entry */
} cnnelm_partitioning;

/* data.extend: noisy copies added to the training and test sets (bit mask). */
enum {
    CNNELM_NOISE_GAUSSIAN = 1u << 0,
    CNNELM_NOISE_SALT_PEPPER = 1u << 1,
    CNNELM_NOISE_POISSON = 1u << 2
};

/* data.augment: train-only transformed copies, one of every training image per bit. */
enum {
    CNNELM_AUGMENT_HFLIP = 1u << 0,     /* mirrored left-right */
    CNNELM_AUGMENT_SHIFT = 1u << 1      /* moved one pixel (direction seeded per image), zero fill */
};

/* Initial kernels: uniform in +-sqrt(6 / ((in + out) k^2)) (the paper's toolbox), optionally with
 * each kernel's mean subtracted (zero-mean kernels respond to structure, not brightness: about
 * one point more test accuracy for a plain ELM on Fashion-MNIST, averaged over seeds). */
typedef enum cnnelm_init {
    CNNELM_INIT_ZERO_MEAN = 0,
    CNNELM_INIT_UNIFORM = 1,
    CNNELM_INIT_PATCHES = 2     /* first layer: zero-mean patches of training images (model.h) */
} cnnelm_init;

typedef enum cnnelm_lr_schedule {
    CNNELM_LR_CONSTANT = 0,     /* alpha */
    CNNELM_LR_INVERSE = 1       /* alpha / iteration (the paper's) */
} cnnelm_lr_schedule;

#ifdef __cplusplus
}
#endif
#endif
