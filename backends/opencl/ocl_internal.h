/* cnnelm OpenCL backend, private: the context and buffer types, the kernels' tuning values,
 * error helpers, and what each file gives the others. The files, by concern:
 *   opencl_backend.c  the plugin table
 *   ocl_device.c      platforms and devices (listing, plugin state, context_open) and the
 *                     compiled program with its disk cache
 *   ocl_context.c     contexts, buffers and transfers
 *   ocl_ops.c         kernel launches and their tuning (work-group sizes, local memory)
 *   ocl_blas.c        ELM products through CLBlast, and the solve on the host */
#ifndef CNNELM_OCL_INTERNAL_H
#define CNNELM_OCL_INTERNAL_H

#include <CL/cl.h>
#include <stddef.h>

#include "cnnelm/backend.h"
#include "cnnelm/backend_util.h"

/* Tuning values, passed to the kernels as -D options (see cl/cnnelm.cl). */
#define TILE 8
#define GROUP 64
#define KFIX 5 /* the kernel size unrolled at compile time */

enum { K_CONV_F, K_CONV_BD, K_CONV_BF, K_CONV_BB, K_POOL_F, K_POOL_B, K_ACT_F, K_ACT_B,
       K_CONV_F_L, K_CONV_BD_L, K_CONV_BF_L, K_SUM_CHUNKS, K_COUNT };
extern const char *const ocl_kernel_names[K_COUNT]; /* in ocl_ops.c */
/* Images per chunk of the filter-gradient partial sums: at most this many chunks per call. */
#define BF_CHUNKS 64

struct cnnelm_buffer {
    cl_mem mem;
    size_t bytes;
    CNNELM_BUFFER_LINKS;  /* the context's live buffers, freed by context_close */
};

struct cnnelm_backend_ctx {
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    cl_program program;
    cl_kernel kernel[K_COUNT];
    char name[160];
    cl_ulong max_alloc;
    cl_ulong local_mem;          /* bytes of local memory per work-group */
    size_t max_group;            /* work-items per work-group */
    size_t kernel_group[K_COUNT]; /* the same, per kernel (CL_KERNEL_WORK_GROUP_SIZE) */
    int vw;                      /* -DVW: floats per work-item along a row in the *_local kernels */
    int is_cpu;
    cl_mem scratch;              /* partial sums of conv2d_backward_filter, grown on demand */
    size_t scratch_bytes;
    cnnelm_buffer *buffers;
    cnnelm_log_fn log;
    void *log_user;
    char error[2048];
};

/* Sets the context's message and returns `st`. */
cnnelm_status ocl_fail(cnnelm_backend_ctx *c, cnnelm_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* OpenCL error codes to ABI statuses: allocation failures are memory, the rest a device error. */
cnnelm_status ocl_status_of(cl_int e);

#define CL_TRY(c, expr, what)                                                                    \
    do {                                                                                         \
        cl_int e_ = (expr);                                                                      \
        if (e_ != CL_SUCCESS)                                                                    \
            return ocl_fail((c), ocl_status_of(e_), "%s: %s failed (OpenCL error %d)", (c)->name, what, e_); \
    } while (0)

/* ocl_device.c: devices and the program (built from the embedded source, or loaded from the
 * disk cache, into c->program). */
cnnelm_status ocl_device_count(int *count);
cnnelm_status ocl_device_info(int index, cnnelm_device_info *info);
cnnelm_status ocl_context_open(int device, const cnnelm_context_params *params,
                               cnnelm_backend_ctx **out, char *error, size_t error_size);
cnnelm_status ocl_init(const cnnelm_plugin_params *params, void **state, char *error,
                       size_t error_size);
void ocl_shutdown(void *state);
cnnelm_status ocl_device_count_v11(void *state, int *count, char *error, size_t error_size);
cnnelm_status ocl_device_info_v11(void *state, int index, cnnelm_device_info *info);
cnnelm_status ocl_device_limits(void *state, int index, cnnelm_device_limits *limits);
cnnelm_status ocl_context_open_v11(void *state, int device, const cnnelm_context_params *params,
                                   cnnelm_backend_ctx **out, char *error, size_t error_size);
cnnelm_status ocl_build_program(cnnelm_backend_ctx *c, const cnnelm_context_params *params);

/* ocl_context.c: a context on one device (program, kernels, CLBlast warmed up), its buffers. */
cnnelm_status ocl_open_on(cl_device_id dev, int device, const cnnelm_context_params *params,
                          cnnelm_backend_ctx **out, char *error, size_t error_size);
void ocl_context_close(cnnelm_backend_ctx *c);
const char *ocl_last_error(const cnnelm_backend_ctx *c);
cnnelm_status ocl_buffer_alloc(cnnelm_backend_ctx *c, size_t bytes, cnnelm_buffer **out);
void ocl_buffer_free(cnnelm_backend_ctx *c, cnnelm_buffer *b);
cnnelm_status ocl_buffer_write(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t offset,
                               const void *src, size_t bytes);
cnnelm_status ocl_buffer_read(cnnelm_backend_ctx *c, const cnnelm_buffer *src, size_t offset,
                              void *dst, size_t bytes);
cnnelm_status ocl_buffer_write_async(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t offset,
                                     const void *src, size_t bytes);
cnnelm_status ocl_buffer_read_async(cnnelm_backend_ctx *c, const cnnelm_buffer *src,
                                    size_t offset, void *dst, size_t bytes);
cnnelm_status ocl_synchronize(cnnelm_backend_ctx *c);
cnnelm_status ocl_buffer_copy(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t dst_offset,
                              const cnnelm_buffer *src, size_t src_offset, size_t bytes);
cnnelm_status ocl_buffer_fill(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t offset,
                              size_t bytes, float value);

/* ocl_ops.c: the kernels' ops. */
cnnelm_status ocl_conv2d_forward(cnnelm_backend_ctx *c, const cnnelm_conv_shape *s,
                                 cnnelm_activation act, const cnnelm_buffer *x,
                                 const cnnelm_buffer *w, const cnnelm_buffer *b, cnnelm_buffer *y);
cnnelm_status ocl_conv2d_backward_data(cnnelm_backend_ctx *c, const cnnelm_conv_shape *s,
                                       const cnnelm_buffer *dy, const cnnelm_buffer *w,
                                       cnnelm_buffer *dx);
cnnelm_status ocl_conv2d_backward_filter(cnnelm_backend_ctx *c, const cnnelm_conv_shape *s,
                                         const cnnelm_buffer *x, const cnnelm_buffer *dy,
                                         cnnelm_buffer *dw, cnnelm_buffer *db, int accumulate);
cnnelm_status ocl_pool_forward(cnnelm_backend_ctx *c, const cnnelm_pool_shape *s,
                               cnnelm_pooling mode, const cnnelm_buffer *x, cnnelm_buffer *y);
cnnelm_status ocl_pool_backward(cnnelm_backend_ctx *c, const cnnelm_pool_shape *s,
                                cnnelm_pooling mode, const cnnelm_buffer *x,
                                const cnnelm_buffer *dy, cnnelm_buffer *dx);
cnnelm_status ocl_activation_forward(cnnelm_backend_ctx *c, cnnelm_activation act, size_t count,
                                     const cnnelm_buffer *x, cnnelm_buffer *y);
cnnelm_status ocl_activation_backward(cnnelm_backend_ctx *c, cnnelm_activation act, size_t count,
                                      const cnnelm_buffer *y, const cnnelm_buffer *dy,
                                      cnnelm_buffer *dx);
cnnelm_status ocl_supports(cnnelm_backend_ctx *c, const cnnelm_op_params *op);

/* ocl_blas.c: CLBlast (compiled at context_open by ocl_warm_clblast) and the solve. */
cnnelm_status ocl_warm_clblast(cnnelm_backend_ctx *c);
cnnelm_status ocl_elm_accumulate(cnnelm_backend_ctx *c, int n, int l, int k,
                                 const cnnelm_buffer *H, const cnnelm_buffer *T,
                                 cnnelm_buffer *U, cnnelm_buffer *V);
cnnelm_status ocl_elm_predict(cnnelm_backend_ctx *c, int n, int l, int k, const cnnelm_buffer *H,
                              const cnnelm_buffer *beta, cnnelm_buffer *Y);
cnnelm_status ocl_elm_backprop(cnnelm_backend_ctx *c, int n, int l, int k, const cnnelm_buffer *E,
                               const cnnelm_buffer *beta, cnnelm_buffer *dH);
cnnelm_status ocl_elm_solve(cnnelm_backend_ctx *c, int l, int k, double lambda,
                            const cnnelm_buffer *U, const cnnelm_buffer *V, cnnelm_buffer *beta);

#endif
