/* cnnelm backend plugin ABI: the one header a backend (CPU, OpenCL, FPGA, ...) includes.
 * A plugin is a shared library exporting CNNELM_BACKEND_ENTRY, which returns a const table. */
#ifndef CNNELM_BACKEND_H
#define CNNELM_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Major changes break the table layout or a slot's meaning: the core refuses another major.
 * Minor changes only append slots at the end of struct cnnelm_backend; the core checks
 * `abi_minor` and `table_size` before calling an appended slot. */
#define CNNELM_BACKEND_ABI_MAJOR 1
#define CNNELM_BACKEND_ABI_MINOR 1

/* The one symbol a plugin exports; its type is cnnelm_backend_entry_fn. */
#define CNNELM_BACKEND_ENTRY "cnnelm_backend_entry"

/* Plugins are built with -fvisibility=hidden; this marks the entry as the only export. */
#if defined(__GNUC__)
#define CNNELM_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define CNNELM_PLUGIN_EXPORT
#endif

/* Every function returns one of these. Plugins never exit, abort or print: they return a
 * status and keep a message for last_error(). */
typedef enum cnnelm_status {
    CNNELM_OK = 0,
    CNNELM_ERR_INVALID_ARGUMENT = 1,   /* a shape, size or pointer the op cannot accept */
    CNNELM_ERR_OUT_OF_MEMORY = 2,      /* host or device allocation failed */
    CNNELM_ERR_DEVICE = 3,             /* the device failed or was lost; the context is unusable */
    CNNELM_ERR_UNSUPPORTED = 4,        /* this op or shape is not implemented by this backend */
    CNNELM_ERR_NOT_POSITIVE_DEFINITE = 5, /* elm_solve: I/lambda + U is not positive definite */
    CNNELM_ERR_BUILD = 6,              /* device code failed to compile (message: the build log) */
    CNNELM_ERR_INTERNAL = 7            /* anything else; the message says what */
} cnnelm_status;

typedef enum cnnelm_device_kind {
    CNNELM_DEVICE_CPU = 0,
    CNNELM_DEVICE_GPU = 1,
    CNNELM_DEVICE_ACCELERATOR = 2,
    CNNELM_DEVICE_FPGA = 3,
    CNNELM_DEVICE_OTHER = 4
} cnnelm_device_kind;

typedef struct cnnelm_device_info {
    char name[128];
    char vendor[128];
    char driver[128];          /* driver / platform version, free text */
    cnnelm_device_kind kind;
    uint64_t memory_bytes;     /* global memory; 0 when unknown */
    uint64_t max_alloc_bytes;  /* largest single buffer; 0 when unknown */
    uint32_t compute_units;
} cnnelm_device_info;

/* Element-wise activations. Backward ops take the forward *output* y (not the input). */
#ifndef CNNELM_LAYER_ENUMS_DEFINED /* also defined, same values, by the public cnnelm/layers.h */
#define CNNELM_LAYER_ENUMS_DEFINED
typedef enum cnnelm_activation {
    CNNELM_ACT_IDENTITY = 0,
    CNNELM_ACT_RELU = 1,       /* y = max(0, x);                 dy/dx = y > 0 */
    CNNELM_ACT_OPTTANH = 2     /* y = 1.7159 tanh(2x/3);         dy/dx = (2/3)(1.7159 - y^2/1.7159) */
} cnnelm_activation;

typedef enum cnnelm_pooling {
    CNNELM_POOL_MEAN = 0,      /* mean of each s x s block */
    CNNELM_POOL_MAX = 1        /* max of each block; backward routes to the first maximum in row-major order */
} cnnelm_pooling;
#endif

/* Logging through the host: a plugin may report diagnostics (never to stdout/stderr itself). */
typedef enum cnnelm_log_level { CNNELM_LOG_DEBUG = 0, CNNELM_LOG_INFO = 1, CNNELM_LOG_WARN = 2 } cnnelm_log_level;
typedef void (*cnnelm_log_fn)(void *user, cnnelm_log_level level, const char *message);

/* Parameters for context_open. `struct_size` lets the struct grow: plugins read only the
 * fields that fit in struct_size. */
typedef struct cnnelm_context_params {
    uint32_t struct_size;      /* sizeof(cnnelm_context_params) as the core was built */
    int threads;               /* host threads the context may use; <= 0: backend default */
    const char *cache_dir;     /* directory for compiled device code; NULL: backend default */
    cnnelm_log_fn log;         /* may be NULL */
    void *log_user;
} cnnelm_context_params;

/* Shapes. Tensors are float32, NCHW, row-major, densely packed from offset 0 of their buffer. */
typedef struct cnnelm_conv_shape {
    int n;          /* images */
    int c_in, h, w; /* input maps and size */
    int c_out;      /* output maps */
    int k;          /* k x k kernel, valid, stride 1: output is c_out x (h-k+1) x (w-k+1) */
} cnnelm_conv_shape;

typedef struct cnnelm_pool_shape {
    int n, c, h, w; /* input; h and w are multiples of s */
    int s;          /* s x s non-overlapping blocks: output is c x h/s x w/s */
} cnnelm_pool_shape;

#include "cnnelm/backend_ops.h"

/* One op call without its buffers, as supports() sees it: `op` says which shape fields
 * matter (the op table's args column). */
typedef struct cnnelm_op_params {
    uint32_t struct_size;      /* sizeof(cnnelm_op_params) as the core was built */
    cnnelm_op_id op;
    cnnelm_conv_shape conv;    /* CONV, CONV_ACT, CONV_ACC */
    cnnelm_pool_shape pool;    /* POOL */
    cnnelm_activation act;     /* CONV_ACT, ACT */
    cnnelm_pooling mode;       /* POOL */
    size_t count;              /* ACT */
    int n, l, c;               /* ELM (n unused by SOLVE) */
    int accumulate;            /* CONV_ACC */
    double lambda;             /* SOLVE */
} cnnelm_op_params;

/* ABI 1.1: plugin-level parameters, given to init() once per load. */
typedef struct cnnelm_plugin_params {
    uint32_t struct_size;      /* sizeof(cnnelm_plugin_params) as the core was built */
    const char *cache_dir;     /* directory for compiled device code; NULL: backend default */
    cnnelm_log_fn log;         /* never NULL when set by the core; callable from any thread */
    void *log_user;
} cnnelm_plugin_params;

/* ABI 1.1: what a scheduler needs to size work for a device. 0 means "no limit / no opinion".
 * The core uses them when a network opens: no buffer it allocates is larger than
 * max_alloc_bytes (the chunk is lowered so that every per-chunk buffer fits; a U that does not
 * fit is refused with a message), and copies in pieces are cut to preferred_transfer_bytes.
 * Without device_limits, device_info's max_alloc_bytes is used. Buffers are whole allocations
 * the plugin makes, so `alignment` is the plugin's to honour; the core's transfer offsets
 * within a buffer are multiples of a row (4 or 8 bytes times a row's length). */
typedef struct cnnelm_device_limits {
    uint32_t struct_size;      /* set by the core; the plugin fills the fields that fit */
    uint64_t alignment;        /* bytes; buffers the plugin allocates are aligned to this */
    uint64_t max_alloc_bytes;  /* largest single buffer_alloc */
    uint32_t preferred_chunk;  /* images per chunk the device runs best at */
    /* appended within 1.1 (read only when struct_size reaches it): bytes per transfer call the
     * device moves efficiently; the core cuts the copies it makes in pieces (a fallback's
     * bounce slices, U's read-back blocks) to this size. 0: 32 KiB for a CNNELM_DEVICE_CPU
     * device (host memory: slices that stay in the cache), 1 MiB for any other kind. */
    uint64_t preferred_transfer_bytes;
} cnnelm_device_limits;

typedef struct cnnelm_backend_ctx cnnelm_backend_ctx; /* a plugin's per-thread state */
typedef struct cnnelm_buffer cnnelm_buffer;           /* a plugin's device allocation */

/* The contract in words (the questions a plugin author would otherwise guess at):
 * - Transfers: offsets and sizes are in bytes; the core checks offset + bytes <= the buffer's
 *   size (and a non-NULL host pointer) before calling, so a plugin never sees a range error.
 * - Zero-size buffers: the core never allocates 0 bytes; a plugin may refuse 0 (INVALID_ARGUMENT).
 * - Buffers larger than their tensor are normal: an op reads and writes only the tensor's first
 *   bytes and leaves the rest of the buffer as it was.
 * - No buffer argument is ever NULL (a bias included): every op has all of its buffers.
 * - Shape rules are the core's: before any op it checks every size positive, k <= h and w,
 *   h and w multiples of s, known activation and pooling modes, lambda > 0 and finite, buffer
 *   sizes from the shape (64-bit, overflow refused), that every buffer belongs to the context,
 *   and the aliasing rules of the op table (backend_ops.h). Plugins hold no such checks.
 * - n = 0 (or any size <= 0, count = 0) never reaches a plugin: the core refuses the call.
 * - A failed init() returns the status that says why (CNNELM_ERR_DEVICE: no usable runtime,
 *   CNNELM_ERR_OUT_OF_MEMORY, ...) and a message in `error`; the core refuses the plugin with
 *   it. No device at all is not a failure: init succeeds and device_count says 0.
 * - last_error(ctx): the string stays valid until the next call on that context (or its close);
 *   success need not clear it: the core reads it only right after a call that failed.
 * - context_close(NULL) and buffer_free(ctx, NULL) are no-ops (the core does not make them).
 * - A queued op's failure is reported by the next call on the context that waits for it
 *   (synchronize, buffer_read, a blocking buffer_write) or by any later op, with its message
 *   kept for last_error; CNNELM_ERR_DEVICE then means the context is lost.
 * - log may be called from any thread, at any time until shutdown (plugin params) or
 *   context_close (context params); a plugin may keep the pointers of either params struct
 *   (log, log_user, cache_dir) that long, but not the struct itself.
 * - The table's `name` should be the file's NAME (libcnnelm-NAME.so); the core does not enforce
 *   it: the file name selects the plugin, `name` is what messages and reports show.
 * - table_size = sizeof(struct cnnelm_backend) as the plugin was built. A newer minor's longer
 *   table loads into an older core (which reads only what it knows); the core reads an
 *   appended slot only when abi_minor and table_size say it is there (CNNELM_BACKEND_HAS); a
 *   table shorter than 1.0's is refused.
 * - elm_accumulate may keep float32 U and V (the core reads them back into double); it
 *   must match the CPU reference to 1e-3 relative (plugin-check's tolerance) over one chunk,
 *   so no half-precision sums.
 *
 * WARNING: the layout of this struct is the ABI. Never reorder or remove a member. New slots
 * are appended at the end with a minor version bump; the core calls an appended slot only when
 * abi_minor and table_size say the plugin has it.
 *
 * Threading: the device-level slots (device_count, device_info) may be called from any thread.
 * One context is used by one thread at a time; different contexts may be used from different
 * threads at once. Ops on a context may be queued asynchronously: buffer_read returns only
 * when the data is on the host, after all earlier work on the context has finished.
 *
 * Ops: all buffers belong to the context they are passed with; outputs never alias inputs
 * unless a slot says so. Every op returns CNNELM_OK or a status with a message kept for
 * last_error(); CNNELM_ERR_UNSUPPORTED means "not for this shape", not a failure. */
typedef struct cnnelm_backend {
    /* --- version 1.0 --- */
    uint32_t abi_major;        /* CNNELM_BACKEND_ABI_MAJOR the plugin was built with */
    uint32_t abi_minor;        /* CNNELM_BACKEND_ABI_MINOR the plugin was built with */
    uint32_t table_size;       /* sizeof(struct cnnelm_backend) the plugin was built with */
    const char *name;          /* short name, e.g. "cpu", "opencl" */
    const char *description;   /* one line for `cnnelm devices` */

    /* Devices. */
    cnnelm_status (*device_count)(int *count);
    cnnelm_status (*device_info)(int index, cnnelm_device_info *info);

    /* Contexts: open one per worker thread. On failure *out is NULL and, when `error` is
     * non-NULL, a message (at most error_size bytes, NUL-terminated) says why. */
    cnnelm_status (*context_open)(int device, const cnnelm_context_params *params,
                                  cnnelm_backend_ctx **out, char *error, size_t error_size);
    void (*context_close)(cnnelm_backend_ctx *ctx);  /* frees every buffer still allocated */
    const char *(*last_error)(const cnnelm_backend_ctx *ctx); /* message of the last failure */

    /* Buffers: opaque device allocations of `bytes` bytes, uninitialised. */
    cnnelm_status (*buffer_alloc)(cnnelm_backend_ctx *ctx, size_t bytes, cnnelm_buffer **out);
    void (*buffer_free)(cnnelm_backend_ctx *ctx, cnnelm_buffer *buf);        /* NULL is a no-op */
    /* host -> device; the host memory `src` may be reused as soon as the call returns */
    cnnelm_status (*buffer_write)(cnnelm_backend_ctx *ctx, cnnelm_buffer *dst, size_t offset,
                                  const void *src, size_t bytes);
    cnnelm_status (*buffer_read)(cnnelm_backend_ctx *ctx, const cnnelm_buffer *src, size_t offset,
                                 void *dst, size_t bytes);                   /* device -> host, blocking */

    /* Convolution forward: y[n][o][i][j] = act(b[o] + sum_c,p,q x[n][c][i+p][j+q] w[o][c][p][q])
     * (cross-correlation). x: n*c_in*h*w, w: c_out*c_in*k*k, b: c_out, y: n*c_out*oh*ow. */
    cnnelm_status (*conv2d_forward)(cnnelm_backend_ctx *ctx, const cnnelm_conv_shape *s,
                                    cnnelm_activation act, const cnnelm_buffer *x,
                                    const cnnelm_buffer *w, const cnnelm_buffer *b, cnnelm_buffer *y);
    /* Input gradient: dx[n][c][h][w] = sum_o,p,q dy[n][o][h-p][w-q] w[o][c][p][q] (terms outside
     * dy are zero). dy is the gradient with respect to the pre-activation output. dx overwritten. */
    cnnelm_status (*conv2d_backward_data)(cnnelm_backend_ctx *ctx, const cnnelm_conv_shape *s,
                                          const cnnelm_buffer *dy, const cnnelm_buffer *w,
                                          cnnelm_buffer *dx);
    /* Kernel and bias gradients: dw[o][c][p][q] = sum_n,i,j dy[n][o][i][j] x[n][c][i+p][j+q],
     * db[o] = sum_n,i,j dy[n][o][i][j]. With accumulate != 0 they are added to dw and db;
     * otherwise dw and db are overwritten. */
    cnnelm_status (*conv2d_backward_filter)(cnnelm_backend_ctx *ctx, const cnnelm_conv_shape *s,
                                            const cnnelm_buffer *x, const cnnelm_buffer *dy,
                                            cnnelm_buffer *dw, cnnelm_buffer *db, int accumulate);

    /* Pooling. x: n*c*h*w, y: n*c*(h/s)*(w/s). */
    cnnelm_status (*pool_forward)(cnnelm_backend_ctx *ctx, const cnnelm_pool_shape *s,
                                  cnnelm_pooling mode, const cnnelm_buffer *x, cnnelm_buffer *y);
    /* dx (shape of x) overwritten: mean spreads dy/(s*s) over the block; max routes dy to the
     * first maximum of the block in x (row-major order), zero elsewhere. */
    cnnelm_status (*pool_backward)(cnnelm_backend_ctx *ctx, const cnnelm_pool_shape *s,
                                   cnnelm_pooling mode, const cnnelm_buffer *x,
                                   const cnnelm_buffer *dy, cnnelm_buffer *dx);

    /* Activations on `count` floats. forward: y = f(x), y may alias x. backward:
     * dx = dy * f'(.) expressed through the forward output y; dx may alias dy. */
    cnnelm_status (*activation_forward)(cnnelm_backend_ctx *ctx, cnnelm_activation act, size_t count,
                                        const cnnelm_buffer *x, cnnelm_buffer *y);
    cnnelm_status (*activation_backward)(cnnelm_backend_ctx *ctx, cnnelm_activation act, size_t count,
                                         const cnnelm_buffer *y, const cnnelm_buffer *dy,
                                         cnnelm_buffer *dx);

    /* ELM products. H: n x l, T: n x c, beta: l x c, all row-major.
     * elm_accumulate: U (l x l) += H^T H, V (l x c) += H^T T; every element of U is updated
     * (do not copy one triangle onto the other: U need not be symmetric on entry).
     * Optional ops (every slot from conv2d_forward on): NULL, or CNNELM_ERR_UNSUPPORTED for a
     * shape, makes the core run that call on the CPU reference. */
    cnnelm_status (*elm_accumulate)(cnnelm_backend_ctx *ctx, int n, int l, int c,
                                    const cnnelm_buffer *H, const cnnelm_buffer *T,
                                    cnnelm_buffer *U, cnnelm_buffer *V);
    /* Y (n x c) = H beta. */
    cnnelm_status (*elm_predict)(cnnelm_backend_ctx *ctx, int n, int l, int c,
                                 const cnnelm_buffer *H, const cnnelm_buffer *beta, cnnelm_buffer *Y);
    /* dH (n x l) = E beta^T, E: n x c. */
    cnnelm_status (*elm_backprop)(cnnelm_backend_ctx *ctx, int n, int l, int c,
                                  const cnnelm_buffer *E, const cnnelm_buffer *beta, cnnelm_buffer *dH);
    /* beta (l x c) = (I/lambda + U)^-1 V by Cholesky; U and V are unchanged. lambda > 0.
     * Returns CNNELM_ERR_NOT_POSITIVE_DEFINITE (beta untouched) when the factorisation fails or
     * the result is not finite. Implementations may compute in higher precision. */
    cnnelm_status (*elm_solve)(cnnelm_backend_ctx *ctx, int l, int c, double lambda,
                               const cnnelm_buffer *U, const cnnelm_buffer *V, cnnelm_buffer *beta);

    /* --- version 1.1 (every slot optional: NULL, or a 1.0 table, gets the 1.0 behaviour) --- */

    /* Plugin state: init() once after loading, before any other slot; shutdown() once after
     * every context is closed. `state` is passed to the 1.1 device slots below. On failure
     * init returns a status (CNNELM_ERR_DEVICE when there is no usable runtime, ...) and a
     * message in `error`; the core then refuses the plugin with that message. The plugin may
     * keep `params` pointers (cache_dir, log) until shutdown. */
    cnnelm_status (*init)(const cnnelm_plugin_params *params, void **state, char *error,
                          size_t error_size);
    void (*shutdown)(void *state);
    /* Device slots with the plugin state and a reason on failure; used instead of
     * device_count / device_info / context_open when present. */
    cnnelm_status (*device_count_v11)(void *state, int *count, char *error, size_t error_size);
    cnnelm_status (*device_info_v11)(void *state, int index, cnnelm_device_info *info);
    cnnelm_status (*device_limits)(void *state, int index, cnnelm_device_limits *limits);
    cnnelm_status (*context_open_v11)(void *state, int device, const cnnelm_context_params *params,
                                      cnnelm_backend_ctx **out, char *error, size_t error_size);

    /* Asked once per op and shape when a network opens (never per call): CNNELM_OK when this
     * context runs the call, CNNELM_ERR_UNSUPPORTED when the core should run it on the CPU
     * reference. An op whose slot is NULL is never asked. */
    cnnelm_status (*supports)(cnnelm_backend_ctx *ctx, const cnnelm_op_params *op);

    /* Asynchronous transfers: queued in order with the context's ops. The host memory must
     * stay valid and unchanged (write) or untouched (read) until synchronize() returns. */
    cnnelm_status (*buffer_write_async)(cnnelm_backend_ctx *ctx, cnnelm_buffer *dst, size_t offset,
                                        const void *src, size_t bytes);
    cnnelm_status (*buffer_read_async)(cnnelm_backend_ctx *ctx, const cnnelm_buffer *src,
                                       size_t offset, void *dst, size_t bytes);
    /* Waits for every queued op and transfer of the context; returns the first failure. */
    cnnelm_status (*synchronize)(cnnelm_backend_ctx *ctx);
    /* Device-side copy of `bytes` (the two ranges do not overlap) and fill of `bytes` (a
     * multiple of 4) with the float `value`; offsets in bytes; queued like ops. */
    cnnelm_status (*buffer_copy)(cnnelm_backend_ctx *ctx, cnnelm_buffer *dst, size_t dst_offset,
                                 const cnnelm_buffer *src, size_t src_offset, size_t bytes);
    cnnelm_status (*buffer_fill)(cnnelm_backend_ctx *ctx, cnnelm_buffer *dst, size_t offset,
                                 size_t bytes, float value);

    /* Exact ELM sums (train.sums = "double"; appended within 1.1 after buffer_fill: the core
     * checks table_size before reading it). H (n x l) and T (n x c) are float as for
     * elm_accumulate; U (l x l) and V (l x c) hold doubles (8 bytes per element):
     *   U[i][j] += sum_r (double)H[r][i] * (double)H[r][j]   for i <= j only (the strictly lower
     *                                                          triangle is left as it was),
     *   V[i][k] += sum_r (double)H[r][i] * (double)T[r][k].
     * Each product of two floats is exact in double, and the sums must be kept in double (no
     * float or mixed-precision step): the result then depends on the order of the terms only
     * by double rounding, so two groupings of the same examples into chunks agree to ~1e-15
     * relative. NULL or UNSUPPORTED: the core runs it on the CPU reference (H crosses to the
     * host once per chunk). */
    cnnelm_status (*elm_accumulate_f64)(cnnelm_backend_ctx *ctx, int n, int l, int c,
                                        const cnnelm_buffer *H, const cnnelm_buffer *T,
                                        cnnelm_buffer *U, cnnelm_buffer *V);
} cnnelm_backend;

typedef const cnnelm_backend *(*cnnelm_backend_entry_fn)(void);

/* Whether table `t` has the appended slot `f` filled: its minor and size say the slot exists
 * (the rule the core follows before calling any slot after elm_solve). */
#define CNNELM_BACKEND_HAS(t, f)                                                       \
    ((t)->abi_minor >= 1 && (t)->table_size >= offsetof(cnnelm_backend, f) + sizeof((t)->f) && \
     (t)->f != NULL)

/* A plugin defines its entry with:  CNNELM_BACKEND_DEFINE_ENTRY(my_table)  */
#define CNNELM_BACKEND_DEFINE_ENTRY(table)                                   \
    CNNELM_PLUGIN_EXPORT const cnnelm_backend *cnnelm_backend_entry(void);   \
    CNNELM_PLUGIN_EXPORT const cnnelm_backend *cnnelm_backend_entry(void) { return &(table); }

#ifdef __cplusplus
}
#endif
#endif /* CNNELM_BACKEND_H */
