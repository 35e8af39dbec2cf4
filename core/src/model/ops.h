/* cnnelm op dispatch: every call a network makes on a backend goes through here. The core checks
 * each call once against the op table (plugins/include/cnnelm/backend_ops.h): sizes from the
 * shape, overflow, buffer ownership, aliasing, shape rules; then calls the backend's op, and when
 * the backend lacks it (a NULL slot, supports() says no, or CNNELM_ERR_UNSUPPORTED) runs it on
 * the CPU reference, through reference buffers and a host bounce buffer kept for the whole run.
 * This is what lets an FPGA team start with convolution forward only and still train. */
#ifndef CNNELM_OPS_H
#define CNNELM_OPS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "cnnelm/plugin.h"

const char *cnnelm_op_name(cnnelm_op_id op);

/* The op table as data, for the dispatcher, the conformance checker and the docs. */
enum { CNNELM_OPARGS_CONV_ACT, CNNELM_OPARGS_CONV, CNNELM_OPARGS_CONV_ACC, CNNELM_OPARGS_POOL,
       CNNELM_OPARGS_ACT, CNNELM_OPARGS_ELM, CNNELM_OPARGS_SOLVE };
enum { CNNELM_OPSIZE_CONV_X, CNNELM_OPSIZE_CONV_W, CNNELM_OPSIZE_CONV_B, CNNELM_OPSIZE_CONV_Y,
       CNNELM_OPSIZE_POOL_X, CNNELM_OPSIZE_POOL_Y, CNNELM_OPSIZE_COUNT, CNNELM_OPSIZE_NL,
       CNNELM_OPSIZE_NC, CNNELM_OPSIZE_LL, CNNELM_OPSIZE_LC, CNNELM_OPSIZE_LL_F64,
       CNNELM_OPSIZE_LC_F64 };
enum { CNNELM_OPROLE_IN, CNNELM_OPROLE_OUT, CNNELM_OPROLE_INOUT, CNNELM_OPROLE_ACC };

typedef struct cnnelm_op_buffer_desc {
    const char *name;  /* "x", "w", ... as in backend.h */
    int size;          /* CNNELM_OPSIZE_* */
    int role;          /* CNNELM_OPROLE_* */
    int alias;         /* the input this output may be, or -1 */
} cnnelm_op_buffer_desc;

typedef struct cnnelm_op_desc {
    cnnelm_op_id id;
    const char *name;  /* the slot's name */
    size_t slot;       /* offsetof(cnnelm_backend, slot) */
    int args;          /* CNNELM_OPARGS_* */
    int n_buffers;
    int optional;
    cnnelm_op_buffer_desc buf[CNNELM_OP_MAX_BUFFERS];
} cnnelm_op_desc;

/* The row of `op` (NULL when out of range); iterate with op from 0 to CNNELM_OP_COUNT - 1. */
const cnnelm_op_desc *cnnelm_op_describe(cnnelm_op_id op);

/* Whether table `be` fills the slot of `op`: NULL slots, and slots appended after elm_solve that
 * the table's abi_minor and table_size do not reach, are absent (a 1.0 table is never read past
 * its end). */
int cnnelm_op_has_slot(const cnnelm_backend *be, cnnelm_op_id op);

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

/* A buffer the core allocated on a backend context: the plugin's handle, its size, and the CPU
 * reference's mirror of it when a fallback op uses it (valid: holds the same data). */
typedef struct cnnelm_buf_record {
    cnnelm_buffer *handle;
    size_t bytes;
    cnnelm_buffer *mirror;
    size_t mirror_valid;             /* bytes of the mirror equal to the device's; SIZE_MAX:
                                        the mirror is newer (a fallback wrote it) */
} cnnelm_buf_record;

/* Where the CPU reference comes from: a plugin already loaded, or a loader called the first
 * time a fallback needs one (so the reference is loaded only when it is used). */
typedef struct cnnelm_reference_source {
    const cnnelm_plugin *plugin;
    const cnnelm_plugin *(*load)(void *user, cnnelm_error *err);
    void *user;
} cnnelm_reference_source;

typedef struct cnnelm_opctx {
    const cnnelm_backend *be;
    cnnelm_backend_ctx *ctx;
    cnnelm_reference_source source;
    const cnnelm_plugin *reference;  /* the CPU plugin for fallbacks, once loaded; NULL: none */
    cnnelm_backend_ctx *ref_ctx;     /* opened on the first fallback */
    int threads;
    uint32_t fell_back;              /* bit per cnnelm_op_id that ran on the reference */
    uint32_t planned_fallback;       /* ops supports() (or a NULL slot) sent to the reference */
    cnnelm_buf_record *rec;          /* every buffer allocated through cnnelm_op_alloc */
    int n_rec, cap_rec;
    void *host;                      /* the fallbacks' bounce buffer: one slice, made once, kept */
    size_t host_bytes;
    size_t transfer_bytes;           /* bytes per transfer slice (cnnelm_op_transfer_bytes) */
} cnnelm_opctx;

/* Buffers through the core, so that calls can be checked: alloc records the handle and size. */
cnnelm_status cnnelm_op_alloc(cnnelm_opctx *o, size_t bytes, cnnelm_buffer **out);
/* Transfers, range-checked against the record (offsets and sizes in bytes). */
cnnelm_status cnnelm_op_write(cnnelm_opctx *o, cnnelm_buffer *dst, size_t offset, const void *src,
                              size_t bytes, char *why, size_t why_size);
cnnelm_status cnnelm_op_read(cnnelm_opctx *o, const cnnelm_buffer *src, size_t offset, void *dst,
                             size_t bytes, char *why, size_t why_size);
/* Queued upload (ABI 1.1 buffer_write_async; a blocking write otherwise). `src` must stay
 * unchanged until cnnelm_op_sync. */
cnnelm_status cnnelm_op_write_async(cnnelm_opctx *o, cnnelm_buffer *dst, size_t offset,
                                    const void *src, size_t bytes, char *why, size_t why_size);
cnnelm_status cnnelm_op_sync(cnnelm_opctx *o, char *why, size_t why_size);
/* Queued download (ABI 1.1 buffer_read_async; a blocking read otherwise, and always from the
 * reference when a fallback holds the newest data): `dst` holds the data after cnnelm_op_sync. */
cnnelm_status cnnelm_op_read_async(cnnelm_opctx *o, const cnnelm_buffer *src, size_t offset,
                                   void *dst, size_t bytes, char *why, size_t why_size);
/* 1 when reads can be queued (buffer_read_async and synchronize). */
int cnnelm_op_can_queue_reads(const cnnelm_opctx *o);
/* Device-side copy (ABI 1.1 buffer_copy) of `bytes` between two different buffers, ranges
 * checked; a fallback's newer data is flushed to the device first. CNNELM_ERR_UNSUPPORTED
 * without buffer_copy (cnnelm_op_can_copy says so up front): the caller goes through the host. */
cnnelm_status cnnelm_op_copy(cnnelm_opctx *o, cnnelm_buffer *dst, size_t dst_offset,
                             const cnnelm_buffer *src, size_t src_offset, size_t bytes, char *why,
                             size_t why_size);
int cnnelm_op_can_copy(const cnnelm_opctx *o);
/* Sets `bytes` from `offset` to the float `value` (buffer_fill, or a host block written). */
cnnelm_status cnnelm_op_fill(cnnelm_opctx *o, cnnelm_buffer *dst, size_t offset, size_t bytes,
                             float value, char *why, size_t why_size);

/* The call's checks, without calling anything: CNNELM_ERR_INVALID_ARGUMENT and a message naming
 * the op, the argument and the shape when the call is not one a plugin may be given. With
 * o == NULL buffer ownership and sizes are not checked. */
cnnelm_status cnnelm_op_validate(const cnnelm_opctx *o, const cnnelm_op_call *call, char *why,
                                 size_t why_size);

/* Decides up front where the call runs (asks supports() once); opens the reference and its
 * buffers when it falls back. Call when a network opens, once per op and shape. */
cnnelm_status cnnelm_op_plan(cnnelm_opctx *o, const cnnelm_op_call *call, char *why, size_t why_size);

/* Checks the call, runs it on the backend, falling back to the reference when it must. Returns
 * the status of whichever ran; on failure `why` says which side failed and why. */
cnnelm_status cnnelm_op_run(cnnelm_opctx *o, const cnnelm_op_call *call, char *why, size_t why_size);

/* The call on one backend, no checks, no fallback: CNNELM_ERR_UNSUPPORTED when its slot is NULL. */
cnnelm_status cnnelm_op_dispatch(const cnnelm_backend *be, cnnelm_backend_ctx *ctx,
                                 const cnnelm_op_call *call, cnnelm_buffer *const *bufs);

/* The call's buffer arguments: their sizes in bytes (SIZE_MAX when the shape overflows), and
 * bit masks of those it reads (in) and writes (out). Returns the number of buffer arguments. */
int cnnelm_op_layout(const cnnelm_op_call *call, size_t bytes[6], unsigned *in, unsigned *out);

/* The call's shape fields as supports() receives them. */
void cnnelm_op_params_of(const cnnelm_op_call *call, cnnelm_op_params *out);

/* Bytes per transfer the core moves in one call when it slices (the fallbacks' bounce slice,
 * read-back blocks): the device's preferred transfer size (device_limits), else
 * CNNELM_OP_DEFAULT_SLICE. */
#define CNNELM_OP_DEFAULT_SLICE ((size_t)32 * 1024)
size_t cnnelm_op_transfer_bytes(const cnnelm_opctx *o);

/* Closes the reference context, if one was opened, and forgets the buffer records. */
void cnnelm_opctx_close(cnnelm_opctx *o);

#endif
