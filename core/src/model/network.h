/* cnnelm network execution: a model's layers run chunk by chunk on one backend context.
 * Holds the device buffers (activations, gradients, ELM matrices) sized for one chunk. */
#ifndef CNNELM_NETWORK_H
#define CNNELM_NETWORK_H

#include <stddef.h>

#include "cnnelm/dataset.h"
#include "cnnelm/model.h"
#include "cnnelm/plugin.h"
#include "model/ops.h"
#include "model/watchdog.h"

typedef struct cnnelm_net {
    const cnnelm_backend *be;
    cnnelm_backend_ctx *ctx;
    cnnelm_opctx ops;                   /* op dispatch, with the CPU fallback */
    char where[128];                    /* "cpu:0", for messages */
    cnnelm_arch arch;
    int chunk;                          /* capacity in examples */
    int chunk_requested;                /* > 0: the chunk asked for, lowered to `chunk` so that
                                           every buffer fits the device's largest allocation */
    uint64_t max_alloc;                 /* the device's largest allocation; 0: unknown */
    int n;                              /* examples in the loaded chunk */
    int device_lost;                    /* an op returned CNNELM_ERR_DEVICE: the context is unusable */
    cnnelm_buffer *x;                   /* input chunk (one of xs) */
    cnnelm_buffer *xs[2], *ts[2];       /* inputs and targets, double-buffered when async */
    int n_slots, slot;                  /* 2 when the backend queues uploads; the next slot */
    int planning;                       /* ops are being planned (cnnelm_op_plan), not run */
    cnnelm_buffer *act[CNNELM_MAX_LAYERS]; /* each layer's output (after activation) */
    cnnelm_buffer *h;                   /* H after the ELM activation (NULL: H is the last act) */
    cnnelm_buffer *hcat;                /* multi-scale group: its pools side by side (else NULL) */
    cnnelm_buffer *w[CNNELM_MAX_LAYERS], *b[CNNELM_MAX_LAYERS];
    cnnelm_buffer *dw[CNNELM_MAX_LAYERS], *db[CNNELM_MAX_LAYERS];
    cnnelm_buffer *g[2];                /* gradient ping-pong */
    cnnelm_buffer *t, *u, *v, *beta, *y, *e;
    int exact_sums;                     /* U, V summed in double on the device (u64, v64) */
    cnnelm_buffer *u64, *v64;           /* exact sums: L x L and L x C doubles */
    double *host_sums;                  /* exact sums: their read-back blocks */
    size_t host_sums_bytes;
    float *host_x, *host_t, *host_uv;   /* host_x, host_t: the current slot's */
    float *host_xs[2], *host_ts[2];
    uint8_t *host_bytes[2];             /* each slot's chunk as fetched, before widening */
    float *host_scale, *host_h;         /* multi-scale group: one pool read back; H interleaved */
    unsigned char *labels;              /* labels of the loaded chunk (the current slot's) */
    unsigned char *labels_s[2];
    struct cnnelm_net_loader *loader;   /* loads the next chunk ahead (network_load.c); NULL
                                           until first asked */
    int loader_failed;                  /* no thread could be started: loads stay on the caller */
    unsigned long loaded_ahead;         /* chunks taken from the loader (the rest loaded on call) */
    cnnelm_watch watch;                 /* the device call in progress, for the pool's watchdog */
} cnnelm_net;

/* Opens a context on `device` of the plugin and allocates buffers for `chunk` examples (fewer
 * when a buffer of `chunk` would exceed the device's largest allocation: net->chunk is the
 * capacity, net->chunk_requested what was asked). Ops the plugin lacks run on `reference` (the
 * CPU plugin; NULL: none, such ops fail). */
int cnnelm_net_open(cnnelm_net *net, const cnnelm_plugin *plugin, int device, int threads,
                    const cnnelm_arch *arch, int chunk, const cnnelm_plugin *reference,
                    cnnelm_error *err);
/* The same, with the reference loaded only when a fallback needs it (see ops.h). Every call the
 * network will make is checked and planned here: supports() is asked once per op and shape. */
int cnnelm_net_open_ex(cnnelm_net *net, const cnnelm_plugin *plugin, int device, int threads,
                       const cnnelm_arch *arch, int chunk, const cnnelm_reference_source *reference,
                       cnnelm_error *err);
void cnnelm_net_close(cnnelm_net *net);

/* Ops decided at open to run on the CPU reference (bit per cnnelm_op_id). */
uint32_t cnnelm_net_planned_fallbacks(const cnnelm_net *net);

int cnnelm_net_set_params(cnnelm_net *net, const float *params, cnnelm_error *err);
int cnnelm_net_set_beta(cnnelm_net *net, const float *beta, cnnelm_error *err);

/* Loads examples rows[first .. first+n) (rows NULL: examples first .. first+n) of ds, converts
 * them to float in [0, 1], runs every layer and leaves H on the device. n <= chunk. */
int cnnelm_net_forward(cnnelm_net *net, const cnnelm_dataset *ds, const size_t *rows, size_t first,
                       int n, cnnelm_error *err);
/* The same, and while the layers run, the loader thread fetches and converts the next chunk,
 * rows[next .. next+next_n) of the same ds (next_n = 0: none), for the next call to use. A loop
 * that stops before that call (an error, an interruption) calls cnnelm_net_loader_drain before
 * its data set or rows go away. */
int cnnelm_net_forward_ahead(cnnelm_net *net, const cnnelm_dataset *ds, const size_t *rows,
                             size_t first, int n, size_t next, int next_n, cnnelm_error *err);
/* Waits for a load ahead in progress and drops it. */
void cnnelm_net_loader_drain(cnnelm_net *net);

/* U, V on the device (float, one ELM batch at a time; double with exact sums): zero them; add
 * the loaded chunk; add them into the host's double sums U (upper triangle only: i <= j) and V,
 * then zero them. */
/* exact != 0: from now on the device sums U and V in double (elm_accumulate_f64, or the CPU
 * reference's when the backend lacks it): the sums then do not depend on how the examples are
 * grouped into chunks and batches beyond double rounding (train.sums = "double"). Allocates
 * the double buffers and plans the op once; exact == 0, or a second call, does nothing. */
int cnnelm_net_set_sums(cnnelm_net *net, int exact, cnnelm_error *err);
int cnnelm_net_reset_uv(cnnelm_net *net, cnnelm_error *err);
int cnnelm_net_accumulate(cnnelm_net *net, cnnelm_error *err);
int cnnelm_net_add_uv(cnnelm_net *net, double *U, double *V, cnnelm_error *err);

/* beta = (I/lambda + U)^-1 V from the host's double sums (upper triangle of U read) by the
 * core's solver (elm_solve.h), uploaded to the device and copied to beta_out (may be NULL).
 * Returns CNNELM_STATUS_NOT_POSITIVE_DEFINITE (err set) when the system is not positive
 * definite, another negative status on any other failure. */
int cnnelm_net_solve(cnnelm_net *net, const double *U, const double *V, double lambda,
                     float *beta_out, cnnelm_error *err);

/* Y (n x classes) = H beta for the loaded chunk, read to the host. */
int cnnelm_net_predict(cnnelm_net *net, float *Y, cnnelm_error *err);

/* Back-propagates E (n x classes, host, dJ/dY already scaled) through the loaded chunk and adds
 * (accumulate != 0) or writes the kernel and bias gradients. */
int cnnelm_net_backward(cnnelm_net *net, const float *E, int accumulate, cnnelm_error *err);

/* 0 when the architecture can be fine-tuned; a multi-scale group or "-sqrt" has no backward
 * pass: CNNELM_STATUS_INVALID_ARGUMENT with the message (cnnelm_net_backward refuses the same). */
int cnnelm_net_check_backprop(const cnnelm_arch *a, cnnelm_error *err);

/* Reads the gradients into a block laid out like the model's params. */
int cnnelm_net_read_grads(cnnelm_net *net, float *grads, cnnelm_error *err);

#endif
