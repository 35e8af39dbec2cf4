/* cnnelm OpenCL backend: every op of the plugin ABI on OpenCL buffers, on any platform the ICD
 * loader finds. Kernels come from cl/cnnelm.cl (embedded at build time); matrix products go
 * through CLBlast; compiled programs are cached on disk per device, driver and source. This file
 * is the plugin table; ocl_internal.h says which file holds what. */
#define _GNU_SOURCE
#define CL_TARGET_OPENCL_VERSION 120

#include "ocl_internal.h"

static const cnnelm_backend table = {
    .abi_major = CNNELM_BACKEND_ABI_MAJOR,
    .abi_minor = CNNELM_BACKEND_ABI_MINOR,
    .table_size = sizeof(cnnelm_backend),
    .name = "opencl",
    .description = "OpenCL devices of every platform (kernels from cl/cnnelm.cl, CLBlast GEMM)",
    .device_count = ocl_device_count,
    .device_info = ocl_device_info,
    .context_open = ocl_context_open,
    .context_close = ocl_context_close,
    .last_error = ocl_last_error,
    .buffer_alloc = ocl_buffer_alloc,
    .buffer_free = ocl_buffer_free,
    .buffer_write = ocl_buffer_write,
    .buffer_read = ocl_buffer_read,
    .conv2d_forward = ocl_conv2d_forward,
    .conv2d_backward_data = ocl_conv2d_backward_data,
    .conv2d_backward_filter = ocl_conv2d_backward_filter,
    .pool_forward = ocl_pool_forward,
    .pool_backward = ocl_pool_backward,
    .activation_forward = ocl_activation_forward,
    .activation_backward = ocl_activation_backward,
    .elm_accumulate = ocl_elm_accumulate,
    .elm_predict = ocl_elm_predict,
    .elm_backprop = ocl_elm_backprop,
    .elm_solve = ocl_elm_solve,
    .init = ocl_init,
    .shutdown = ocl_shutdown,
    .device_count_v11 = ocl_device_count_v11,
    .device_info_v11 = ocl_device_info_v11,
    .device_limits = ocl_device_limits,
    .context_open_v11 = ocl_context_open_v11,
    .supports = ocl_supports,
    .buffer_write_async = ocl_buffer_write_async,
    .buffer_read_async = ocl_buffer_read_async,
    .synchronize = ocl_synchronize,
    .buffer_copy = ocl_buffer_copy,
    .buffer_fill = ocl_buffer_fill,
};

CNNELM_BACKEND_DEFINE_ENTRY(table)
