/* cnnelm op dispatch: calls a backend's op, and when the backend lacks it (a NULL slot, or
 * CNNELM_ERR_UNSUPPORTED for that shape) runs it on the CPU reference instead, moving the
 * op's inputs and outputs between the two through the host. This is what lets an FPGA team
 * start with convolution forward only and still train. */
#ifndef CNNELM_OPS_H
#define CNNELM_OPS_H

#include <stdint.h>

#include "cnnelm/plugin.h"

typedef enum cnnelm_op_id {
    CNNELM_OP_CONV_FORWARD, CNNELM_OP_CONV_BACKWARD_DATA, CNNELM_OP_CONV_BACKWARD_FILTER,
    CNNELM_OP_POOL_FORWARD, CNNELM_OP_POOL_BACKWARD, CNNELM_OP_ACT_FORWARD, CNNELM_OP_ACT_BACKWARD,
    CNNELM_OP_ELM_ACCUMULATE, CNNELM_OP_ELM_PREDICT, CNNELM_OP_ELM_BACKPROP, CNNELM_OP_ELM_SOLVE,
    CNNELM_OP_COUNT
} cnnelm_op_id;

const char *cnnelm_op_name(cnnelm_op_id op);

typedef struct cnnelm_opctx {
    const cnnelm_backend *be;
    cnnelm_backend_ctx *ctx;
    const cnnelm_plugin *reference;  /* the CPU plugin for fallbacks; NULL: none */
    cnnelm_backend_ctx *ref_ctx;     /* opened on the first fallback */
    int threads;
    uint32_t fell_back;              /* bit per cnnelm_op_id that ran on the reference */
} cnnelm_opctx;

/* One op call: the shape arguments and its buffers in the slot's argument order. */
typedef struct cnnelm_op_call {
    cnnelm_op_id op;
    cnnelm_conv_shape conv;
    cnnelm_pool_shape pool;
    cnnelm_activation act;
    cnnelm_pooling mode;
    size_t count;                    /* activations */
    int n, l, c, accumulate;
    double lambda;
    cnnelm_buffer *buf[6];
} cnnelm_op_call;

/* Runs the call on the backend, falling back to the reference when it must. Returns the
 * status of whichever ran; on failure `why` says which side failed and why. */
cnnelm_status cnnelm_op_run(cnnelm_opctx *o, const cnnelm_op_call *call, char *why, size_t why_size);

/* The call on one backend, no fallback: CNNELM_ERR_UNSUPPORTED when its slot is NULL. */
cnnelm_status cnnelm_op_dispatch(const cnnelm_backend *be, cnnelm_backend_ctx *ctx,
                                 const cnnelm_op_call *call, cnnelm_buffer *const *bufs);

/* The call's buffer arguments: their sizes in bytes, and bit masks of those it reads (in) and
 * writes (out). Returns the number of buffer arguments. */
int cnnelm_op_layout(const cnnelm_op_call *call, size_t bytes[6], unsigned *in, unsigned *out);

/* Closes the reference context, if one was opened. */
void cnnelm_opctx_close(cnnelm_opctx *o);

#endif
