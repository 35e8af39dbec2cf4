/* cnnelm OpenCL backend: contexts (one queue, in order; the program's kernels; CLBlast warmed
 * up), buffers and transfers, and the error helpers every file uses. */
#define _GNU_SOURCE
#define CL_TARGET_OPENCL_VERSION 120
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl_internal.h"

cnnelm_status ocl_fail(cnnelm_backend_ctx *c, cnnelm_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    return st;
}

cnnelm_status ocl_status_of(cl_int e)
{
    switch (e) {
    case CL_SUCCESS: return CNNELM_OK;
    case CL_MEM_OBJECT_ALLOCATION_FAILURE:
    case CL_OUT_OF_RESOURCES:
    case CL_OUT_OF_HOST_MEMORY:
    case CL_INVALID_BUFFER_SIZE: return CNNELM_ERR_OUT_OF_MEMORY;
    case CL_BUILD_PROGRAM_FAILURE: return CNNELM_ERR_BUILD;
    default: return CNNELM_ERR_DEVICE;
    }
}

/* ---- contexts ---- */

static void release_buffer(cnnelm_buffer *b)
{
    clReleaseMemObject(b->mem);
    free(b);
}

void ocl_context_close(cnnelm_backend_ctx *c)
{
    if (!c)
        return;
    if (c->queue)
        clFinish(c->queue);
    CNNELM_BUFFER_LIST_FREE_ALL(&c->buffers, release_buffer);
    for (int k = 0; k < K_COUNT; k++)
        if (c->kernel[k])
            clReleaseKernel(c->kernel[k]);
    if (c->scratch)
        clReleaseMemObject(c->scratch);
    if (c->program)
        clReleaseProgram(c->program);
    if (c->queue)
        clReleaseCommandQueue(c->queue);
    if (c->context)
        clReleaseContext(c->context);
    free(c);
}

cnnelm_status ocl_open_on(cl_device_id dev, int device, const cnnelm_context_params *params,
                          cnnelm_backend_ctx **out, char *error, size_t error_size)
{
    *out = NULL;
    cnnelm_backend_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        if (error)
            snprintf(error, error_size, "out of host memory");
        return CNNELM_ERR_OUT_OF_MEMORY;
    }
    c->device = dev;
    if (CNNELM_PARAMS_HAS(params, log_user)) {
        c->log = params->log;
        c->log_user = params->log_user;
    }
    char dname[128] = "";
    clGetDeviceInfo(c->device, CL_DEVICE_NAME, sizeof dname - 1, dname, NULL);
    snprintf(c->name, sizeof c->name, "OpenCL device %d (%s)", device, dname);
    clGetDeviceInfo(c->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof c->max_alloc, &c->max_alloc, NULL);
    clGetDeviceInfo(c->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof c->local_mem, &c->local_mem, NULL);
    clGetDeviceInfo(c->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof c->max_group, &c->max_group, NULL);
    cl_device_type type = 0;
    clGetDeviceInfo(c->device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    c->is_cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
    c->vw = c->is_cpu ? 8 : 4; /* CPU: one AVX register per work-item; GPU: float4 loads */
    cl_int e;
    cnnelm_status st = CNNELM_OK;
    c->context = clCreateContext(NULL, 1, &c->device, NULL, NULL, &e);
    if (e == CL_SUCCESS)
        c->queue = clCreateCommandQueue(c->context, c->device, 0, &e); /* in order */
    if (e != CL_SUCCESS)
        st = ocl_fail(c, ocl_status_of(e), "%s: cannot create a context and queue (OpenCL error %d)", c->name, e);
    if (st == CNNELM_OK)
        st = ocl_build_program(c, params);
    for (int k = 0; k < K_COUNT && st == CNNELM_OK; k++) {
        c->kernel[k] = clCreateKernel(c->program, ocl_kernel_names[k], &e);
        if (e != CL_SUCCESS)
            st = ocl_fail(c, ocl_status_of(e), "%s: no kernel %s (OpenCL error %d)", c->name, ocl_kernel_names[k], e);
        else if (clGetKernelWorkGroupInfo(c->kernel[k], c->device, CL_KERNEL_WORK_GROUP_SIZE,
                                          sizeof c->kernel_group[k], &c->kernel_group[k], NULL) != CL_SUCCESS)
            c->kernel_group[k] = c->max_group;
    }
    if (st == CNNELM_OK)
        st = ocl_warm_clblast(c);
    if (st != CNNELM_OK) {
        if (error)
            snprintf(error, error_size, "%s", c->error);
        ocl_context_close(c);
        return st;
    }
    *out = c;
    return CNNELM_OK;
}

const char *ocl_last_error(const cnnelm_backend_ctx *c)
{
    return c ? c->error : "no context";
}

/* ---- buffers ---- */

cnnelm_status ocl_buffer_alloc(cnnelm_backend_ctx *c, size_t bytes, cnnelm_buffer **out)
{
    if (!c || !out || bytes == 0)
        return c ? ocl_fail(c, CNNELM_ERR_INVALID_ARGUMENT, "buffer_alloc: bad arguments")
                 : CNNELM_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (bytes > c->max_alloc)
        return ocl_fail(c, CNNELM_ERR_OUT_OF_MEMORY, "%s: a buffer of %zu bytes is larger than the "
                    "device allows (%llu bytes); use a smaller train.chunk", c->name, bytes,
                    (unsigned long long)c->max_alloc);
    cnnelm_buffer *b = calloc(1, sizeof *b);
    if (!b)
        return ocl_fail(c, CNNELM_ERR_OUT_OF_MEMORY, "out of host memory");
    cl_int e;
    b->mem = clCreateBuffer(c->context, CL_MEM_READ_WRITE, bytes, NULL, &e);
    if (e != CL_SUCCESS) {
        free(b);
        return ocl_fail(c, ocl_status_of(e), "%s: cannot allocate %zu bytes (OpenCL error %d)", c->name, bytes, e);
    }
    b->bytes = bytes;
    CNNELM_BUFFER_LIST_ADD(&c->buffers, b);
    *out = b;
    return CNNELM_OK;
}

void ocl_buffer_free(cnnelm_backend_ctx *c, cnnelm_buffer *b)
{
    if (!c || !b)
        return;
    CNNELM_BUFFER_LIST_REMOVE(&c->buffers, b);
    release_buffer(b);
}

cnnelm_status ocl_buffer_write(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t offset,
                               const void *src, size_t bytes)
{
    if (!c || !dst || !src || offset + bytes > dst->bytes || offset + bytes < offset)
        return c ? ocl_fail(c, CNNELM_ERR_INVALID_ARGUMENT, "buffer_write: outside the buffer")
                 : CNNELM_ERR_INVALID_ARGUMENT;
    /* blocking: the host memory may be reused as soon as the call returns */
    CL_TRY(c, clEnqueueWriteBuffer(c->queue, dst->mem, CL_TRUE, offset, bytes, src, 0, NULL, NULL),
           "clEnqueueWriteBuffer");
    return CNNELM_OK;
}

cnnelm_status ocl_buffer_read(cnnelm_backend_ctx *c, const cnnelm_buffer *src, size_t offset,
                              void *dst, size_t bytes)
{
    if (!c || !src || !dst || offset + bytes > src->bytes || offset + bytes < offset)
        return c ? ocl_fail(c, CNNELM_ERR_INVALID_ARGUMENT, "buffer_read: outside the buffer")
                 : CNNELM_ERR_INVALID_ARGUMENT;
    CL_TRY(c, clEnqueueReadBuffer(c->queue, src->mem, CL_TRUE, offset, bytes, dst, 0, NULL, NULL),
           "clEnqueueReadBuffer");
    return CNNELM_OK;
}

/* Non-blocking transfers, in order with the kernels on the context's one queue; the host
 * memory must stay valid until synchronize (clFinish). */
cnnelm_status ocl_buffer_write_async(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t offset,
                                     const void *src, size_t bytes)
{
    CL_TRY(c, clEnqueueWriteBuffer(c->queue, dst->mem, CL_FALSE, offset, bytes, src, 0, NULL, NULL),
           "clEnqueueWriteBuffer (non-blocking)");
    return CNNELM_OK;
}

cnnelm_status ocl_buffer_read_async(cnnelm_backend_ctx *c, const cnnelm_buffer *src,
                                    size_t offset, void *dst, size_t bytes)
{
    CL_TRY(c, clEnqueueReadBuffer(c->queue, src->mem, CL_FALSE, offset, bytes, dst, 0, NULL, NULL),
           "clEnqueueReadBuffer (non-blocking)");
    return CNNELM_OK;
}

cnnelm_status ocl_synchronize(cnnelm_backend_ctx *c)
{
    CL_TRY(c, clFinish(c->queue), "clFinish");
    return CNNELM_OK;
}

cnnelm_status ocl_buffer_copy(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t dst_offset,
                              const cnnelm_buffer *src, size_t src_offset, size_t bytes)
{
    CL_TRY(c, clEnqueueCopyBuffer(c->queue, src->mem, dst->mem, src_offset, dst_offset, bytes, 0,
                                  NULL, NULL), "clEnqueueCopyBuffer");
    return CNNELM_OK;
}

cnnelm_status ocl_buffer_fill(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t offset,
                              size_t bytes, float value)
{
    CL_TRY(c, clEnqueueFillBuffer(c->queue, dst->mem, &value, sizeof value, offset, bytes, 0, NULL,
                                  NULL), "clEnqueueFillBuffer");
    return CNNELM_OK;
}
