/* cnnelm models: the architecture (parsed from strings like "6c-2s-12c-2s"), the parameters
 * (kernels and biases in one block, beta) and the ELM sums U, V that make reduces exact. */
#ifndef CNNELM_MODEL_H
#define CNNELM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "cnnelm/error.h"
#include "cnnelm/layers.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CNNELM_MAX_LAYERS 16

typedef enum cnnelm_layer_kind { CNNELM_LAYER_CONV = 0, CNNELM_LAYER_POOL = 1 } cnnelm_layer_kind;

typedef struct cnnelm_layer {
    cnnelm_layer_kind kind;
    int size;                   /* conv: output maps; pool: block size s */
    int in_c, in_h, in_w;
    int out_c, out_h, out_w;
    size_t w_offset, b_offset;  /* conv: where its kernels and biases start in the params block */
    size_t h_offset;            /* pool in a multi-scale group: where its output starts in a row of H */
} cnnelm_layer;

typedef struct cnnelm_arch {
    char layers[64];            /* canonical string, e.g. "6c-2s-12c-2s" */
    int kernel;
    int in_c, in_h, in_w;
    int classes;
    cnnelm_activation activation;
    cnnelm_pooling pooling;
    cnnelm_activation elm_activation;
    int n_layers;
    /* A multi-scale group ends the string, e.g. "256c-(4s,12s)": the last n_scales layers are
     * pools of the same input (the layer before them), their outputs side by side in H. */
    int n_scales;
    int sqrt_features;          /* "-sqrt" ends the string: H = sign(h) sqrt(|h|), elementwise */
    cnnelm_layer layer[CNNELM_MAX_LAYERS];
    int hidden;                 /* L: size of the flattened last layer */
    size_t n_params;            /* kernels and biases of every conv layer */
    size_t max_maps;            /* largest per-image activation (floats), for buffer sizing */
} cnnelm_arch;

/* Parses `layers` and checks every shape: a kernel larger than its input or a pooling size
 * that does not divide its input is an error naming the layer ("layer 3 (12c): ..."). The
 * string may end with a multi-scale group "(As,Bs,...)": the maps before it pooled at each size
 * (at least 2 distinct sizes), H the concatenation (per example: every size's maps in order).
 * A final "-sqrt" takes the signed square root of every feature (power normalisation). */
int cnnelm_arch_init(cnnelm_arch *a, const char *layers, int kernel, int in_c, int in_h, int in_w,
                     int classes, cnnelm_activation act, cnnelm_pooling pool,
                     cnnelm_activation elm_act, cnnelm_error *err);

/* Two architectures describe the same network (string, kernel, input, classes, activations). */
int cnnelm_arch_equal(const cnnelm_arch *a, const cnnelm_arch *b);

/* Flags stored with a model. */
enum {
    CNNELM_MODEL_DIVERGED = 1u << 0, /* fine-tuning diverged; this is the last good iteration */
    CNNELM_MODEL_LAMBDA_AUTO = 1u << 1 /* lambda was chosen from the data (model.lambda = "auto"):
                                        * every solve of this model's sums chooses it again */
};

typedef struct cnnelm_model {
    cnnelm_arch arch;
    double lambda;
    uint64_t seed;              /* seed of the initial weights: models to average must share it */
    uint32_t iterations;        /* fine-tuning iterations completed */
    uint32_t flags;
    uint64_t n_examples;        /* examples summed into U and V */
    float *params;              /* arch.n_params: per conv layer, kernels [out][in][k][k] then biases */
    float *beta;                /* hidden x classes */
    double *U;                  /* hidden x hidden: sum of H^T H over the training examples */
    double *V;                  /* hidden x classes: sum of H^T T */
    /* format 2 (version-1 files load with 0, 0, NULL): */
    uint32_t partitions;        /* partitions combined into this model; 0 unknown, 1 one model */
    uint32_t reduce;            /* how they were combined: 0 not combined, 1 + cnnelm_reduce */
    char **class_names;         /* arch.classes names or NULL; owned (cnnelm_model_free) */
} cnnelm_model;

/* Sets (copies) a model's class names; NULL clears them. */
int cnnelm_model_set_class_names(cnnelm_model *m, char *const *names, cnnelm_error *err);

/* The format version of a model file, read from its header without loading it (0: not a model
 * file). Loading accepts versions 1 (no partitions, reduce, class names) and 2. */
#define CNNELM_MODEL_FORMAT_VERSION 2
unsigned cnnelm_model_file_version(const char *path);

/* Allocates a model for `arch` with kernels drawn from the seeded generator (uniform in
 * +-sqrt(6 / ((in + out) k^2)); with zero_mean, each kernel's mean is then subtracted), biases
 * zero: the same on every backend. beta, U, V zero. */
int cnnelm_model_init(cnnelm_model *m, const cnnelm_arch *arch, double lambda, uint64_t seed,
                      int zero_mean, cnnelm_error *err);
/* model.init = "patches": replaces the first convolution's kernels of a model made by
 * cnnelm_model_init with k x k patches of the training images rows[0..n) of ds (rows NULL: the
 * first n), drawn by `seed` alone (the same on every partition, worker and rank), each
 * mean-subtracted and scaled to the norm of the kernel it replaces. Deeper layers unchanged.
 * whiten > 0 (model.whiten): then each kernel w becomes (S + eps I)^-1 w at the same norm, S
 * the covariance of the mean-subtracted patches at every position of up to 256 of those images
 * (all when there are no more, else drawn by `seed`), eps = whiten x trace(S) / k^2 per
 * channel: the patch seen through ZCA-whitened inputs. 0: plain patches. */
struct cnnelm_dataset;
int cnnelm_model_init_patches(cnnelm_model *m, const struct cnnelm_dataset *ds, const size_t *rows,
                              size_t n, uint64_t seed, double whiten, cnnelm_error *err);
int cnnelm_model_copy(cnnelm_model *dst, const cnnelm_model *src, cnnelm_error *err);
void cnnelm_model_free(cnnelm_model *m);

/* Model files (format documented in docs/model-format.md). Saving writes a temporary file in
 * the same directory and renames it over `path`. */
int cnnelm_model_save(const cnnelm_model *m, const char *path, cnnelm_error *err);
int cnnelm_model_load(cnnelm_model *m, const char *path, cnnelm_error *err);

/* The same bytes in memory (for sending models between processes): encode allocates *out
 * (free() it); decode checks everything load checks, naming `what` in messages. */
int cnnelm_model_encode(const cnnelm_model *m, unsigned char **out, size_t *out_len, cnnelm_error *err);
int cnnelm_model_decode(cnnelm_model *m, const unsigned char *buf, size_t len, const char *what,
                        cnnelm_error *err);

#ifdef __cplusplus
}
#endif
#endif
