/* cnnelm OpenCL backend: every op of the plugin ABI on OpenCL buffers, on any platform the ICD
 * loader finds. Kernels come from cl/cnnelm.cl (embedded at build time); matrix products go
 * through CLBlast; compiled programs are cached on disk per device, driver and source. */
#define _GNU_SOURCE
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <clblast_c.h>
#include <errno.h>
#include <lapacke.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cnnelm/backend.h"
#include "cnnelm/backend_util.h"
#include "cnnelm_kernels.h" /* generated: static const char cnnelm_cl_source[] */

/* Tuning values, passed to the kernels as -D options (see cl/cnnelm.cl). */
#define TILE 8
#define GROUP 64
#define KFIX 5 /* the kernel size unrolled at compile time */

enum { K_CONV_F, K_CONV_BD, K_CONV_BF, K_CONV_BB, K_POOL_F, K_POOL_B, K_ACT_F, K_ACT_B,
       K_CONV_F_L, K_CONV_BD_L, K_CONV_BF_L, K_SUM_CHUNKS, K_COUNT };
static const char *const kernel_names[K_COUNT] = {
    "conv_forward", "conv_backward_data", "conv_backward_filter", "conv_backward_bias",
    "pool_forward", "pool_backward", "activation_forward", "activation_backward",
    "conv_forward_local", "conv_backward_data_local", "conv_backward_filter_local", "sum_chunks",
};
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

static cnnelm_status fail(cnnelm_backend_ctx *c, cnnelm_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static cnnelm_status fail(cnnelm_backend_ctx *c, cnnelm_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    return st;
}

/* OpenCL error codes to ABI statuses: allocation failures are memory, the rest a device error. */
static cnnelm_status cl_status(cl_int e)
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

#define CL_TRY(c, expr, what)                                                                    \
    do {                                                                                         \
        cl_int e_ = (expr);                                                                      \
        if (e_ != CL_SUCCESS)                                                                    \
            return fail((c), cl_status(e_), "%s: %s failed (OpenCL error %d)", (c)->name, what, e_); \
    } while (0)

/* ---- devices: every device of every platform, in platform order ---- */

static int list_devices(cl_device_id *out, cl_platform_id *plat, int max)
{
    cl_uint np = 0;
    if (clGetPlatformIDs(0, NULL, &np) != CL_SUCCESS || np == 0)
        return 0; /* no ICD, or no platform (CL_PLATFORM_NOT_FOUND_KHR): no devices, not an error */
    cl_platform_id ps[16];
    if (np > 16)
        np = 16;
    if (clGetPlatformIDs(np, ps, NULL) != CL_SUCCESS)
        return 0;
    int n = 0;
    for (cl_uint p = 0; p < np && n < max; p++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(ps[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || nd == 0)
            continue;
        cl_device_id ds[64];
        if (nd > 64)
            nd = 64;
        if (clGetDeviceIDs(ps[p], CL_DEVICE_TYPE_ALL, nd, ds, NULL) != CL_SUCCESS)
            continue;
        for (cl_uint d = 0; d < nd && n < max; d++) {
            out[n] = ds[d];
            if (plat)
                plat[n] = ps[p];
            n++;
        }
    }
    return n;
}

static cnnelm_status ocl_device_count(int *count)
{
    cl_device_id ds[256];
    if (!count)
        return CNNELM_ERR_INVALID_ARGUMENT;
    *count = list_devices(ds, NULL, 256);
    return CNNELM_OK;
}

static void describe(cl_device_id d, cl_platform_id platform, cnnelm_device_info *info);

static cnnelm_status ocl_device_info(int index, cnnelm_device_info *info)
{
    cl_device_id ds[256];
    cl_platform_id ps[256];
    int n = list_devices(ds, ps, 256);
    if (!info || index < 0 || index >= n)
        return CNNELM_ERR_INVALID_ARGUMENT;
    describe(ds[index], ps[index], info);
    return CNNELM_OK;
}

static void describe(cl_device_id d, cl_platform_id platform, cnnelm_device_info *info)
{
    memset(info, 0, sizeof *info);
    char text[1024] = "";
    clGetDeviceInfo(d, CL_DEVICE_NAME, sizeof text - 1, text, NULL);
    snprintf(info->name, sizeof info->name, "%s", text);
    text[0] = '\0';
    clGetDeviceInfo(d, CL_DEVICE_VENDOR, sizeof text - 1, text, NULL);
    snprintf(info->vendor, sizeof info->vendor, "%s", text);
    /* a query fails (and leaves nothing) when the buffer is short: ask with room to spare,
     * the snprintf below truncates */
    char pn[256] = "", dv[256] = "", ver[256] = "";
    clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof pn - 1, pn, NULL);
    clGetDeviceInfo(d, CL_DEVICE_VERSION, sizeof ver - 1, ver, NULL);
    clGetDeviceInfo(d, CL_DRIVER_VERSION, sizeof dv - 1, dv, NULL);
    char full[800];
    snprintf(full, sizeof full, "%s, %s, driver %s", pn, ver, dv);
    full[sizeof info->driver - 1] = '\0'; /* truncated to fit */
    memcpy(info->driver, full, strlen(full) + 1);
    cl_device_type t = 0;
    clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof t, &t, NULL);
    info->kind = (t & CL_DEVICE_TYPE_GPU) ? CNNELM_DEVICE_GPU
                 : (t & CL_DEVICE_TYPE_CPU) ? CNNELM_DEVICE_CPU
                 : (t & CL_DEVICE_TYPE_ACCELERATOR) ? CNNELM_DEVICE_ACCELERATOR
                                                     : CNNELM_DEVICE_OTHER;
    cl_ulong mem = 0, alloc = 0;
    cl_uint cu = 0;
    clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL);
    clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof alloc, &alloc, NULL);
    clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
    info->memory_bytes = mem;
    info->max_alloc_bytes = alloc;
    info->compute_units = cu;
}

/* ---- the program, built once per context and cached on disk ---- */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static void log_msg(cnnelm_backend_ctx *c, cnnelm_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void log_msg(cnnelm_backend_ctx *c, cnnelm_log_level level, const char *fmt, ...)
{
    if (!c->log)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->log(c->log_user, level, msg);
}

/* The cache file for this device, driver, source and options; "" when no directory works. */
static void cache_path(cnnelm_backend_ctx *c, const cnnelm_context_params *params,
                       const char *options, char *out, size_t cap)
{
    out[0] = '\0';
    char dir[1024];
    const char *given = CNNELM_PARAMS_HAS(params, cache_dir) ? params->cache_dir : NULL;
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (given && *given)
        snprintf(dir, sizeof dir, "%s", given);
    else if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s/cnnelm", xdg);
    else if (home && *home)
        snprintf(dir, sizeof dir, "%s/.cache/cnnelm", home);
    else
        return;
    /* create the directory and its parent (~/.cache may not exist yet) */
    char parent[1024];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        mkdir(parent, 0700);
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return;
    char name[256] = "", driver[128] = "", version[128] = "";
    clGetDeviceInfo(c->device, CL_DEVICE_NAME, sizeof name - 1, name, NULL);
    clGetDeviceInfo(c->device, CL_DRIVER_VERSION, sizeof driver - 1, driver, NULL);
    clGetDeviceInfo(c->device, CL_DEVICE_VERSION, sizeof version - 1, version, NULL);
    uint64_t h = 0xcbf29ce484222325ULL;
    h = fnv1a(h, name, strlen(name));
    h = fnv1a(h, driver, strlen(driver));
    h = fnv1a(h, version, strlen(version));
    h = fnv1a(h, options, strlen(options));
    h = fnv1a(h, cnnelm_cl_source, sizeof cnnelm_cl_source);
    snprintf(out, cap, "%s/cnnelm-cl-%016llx.bin", dir, (unsigned long long)h);
}

static void *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    void *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n)) != NULL &&
            fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        *len = n > 0 ? (size_t)n : 0;
    }
    fclose(f);
    return buf;
}

/* Writes the binary beside its final name, then renames: readers never see half a file. */
static void write_cache(cnnelm_backend_ctx *c, const char *path)
{
    size_t size = 0;
    if (clGetProgramInfo(c->program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS ||
        size == 0)
        return;
    unsigned char *bin = malloc(size);
    if (!bin)
        return;
    unsigned char *bins[1] = { bin };
    /* a unique temporary name: contexts of one process open (and write) concurrently */
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    FILE *f = NULL;
    int fd = -1;
    if (clGetProgramInfo(c->program, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) == CL_SUCCESS &&
        (fd = mkstemp(tmp)) >= 0 && ((f = fdopen(fd, "wb")) != NULL || (close(fd), unlink(tmp), 0))) {
        int ok = fwrite(bin, 1, size, f) == size;
        ok &= fclose(f) == 0;
        if (ok && rename(tmp, path) == 0)
            log_msg(c, CNNELM_LOG_INFO, "%s: cache miss: kernels compiled and cached in %s", c->name, path);
        else
            unlink(tmp);
    }
    free(bin);
}

static cnnelm_status build_program(cnnelm_backend_ctx *c, const cnnelm_context_params *params)
{
    char options[256];
    snprintf(options, sizeof options, "-cl-std=CL1.2 -DTILE=%d -DGROUP=%d -DVW=%d -DKFIX=%d", TILE, GROUP,
             c->vw, KFIX);
    char path[1200];
    cache_path(c, params, options, path, sizeof path);
    cl_int e;
    if (path[0]) { /* a cached binary: no compilation */
        size_t len = 0;
        unsigned char *bin = read_file(path, &len);
        if (bin) {
            const unsigned char *bins[1] = { bin };
            cl_int bs;
            c->program = clCreateProgramWithBinary(c->context, 1, &c->device, &len, bins, &bs, &e);
            free(bin);
            if (e == CL_SUCCESS && bs == CL_SUCCESS &&
                clBuildProgram(c->program, 1, &c->device, options, NULL, NULL) == CL_SUCCESS) {
                log_msg(c, CNNELM_LOG_INFO, "%s: cache hit: kernels loaded from %s", c->name, path);
                return CNNELM_OK;
            }
            if (c->program)
                clReleaseProgram(c->program);
            c->program = NULL; /* a stale or foreign binary: build from source below */
        }
    }
    const char *src = cnnelm_cl_source;
    size_t src_len = sizeof cnnelm_cl_source - 1;
    c->program = clCreateProgramWithSource(c->context, 1, &src, &src_len, &e);
    CL_TRY(c, e, "clCreateProgramWithSource");
    e = clBuildProgram(c->program, 1, &c->device, options, NULL, NULL);
    if (e != CL_SUCCESS) {
        char log[1500] = "";
        size_t got = 0;
        clGetProgramBuildInfo(c->program, c->device, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, &got);
        for (char *p = log; *p; p++) /* one line: the build log is the message */
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        return fail(c, CNNELM_ERR_BUILD, "%s: the kernels do not build (OpenCL error %d): %s", c->name,
                    e, log[0] ? log : "no build log");
    }
    if (path[0])
        write_cache(c, path);
    return CNNELM_OK;
}

/* ---- contexts ---- */

static void release_buffer(cnnelm_buffer *b)
{
    clReleaseMemObject(b->mem);
    free(b);
}

static void ocl_context_close(cnnelm_backend_ctx *c)
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

static cnnelm_status warm_clblast(cnnelm_backend_ctx *c);

static cnnelm_status open_on(cl_device_id dev, int device, const cnnelm_context_params *params,
                             cnnelm_backend_ctx **out, char *error, size_t error_size);

static cnnelm_status no_device(int device, int n, char *error, size_t error_size)
{
    if (error)
        snprintf(error, error_size, n ? "no OpenCL device %d (there are %d)"
                                      : "no OpenCL platform or device found (is an ICD such as "
                                        "pocl-opencl-icd installed?)", device, n);
    return CNNELM_ERR_INVALID_ARGUMENT;
}

static cnnelm_status ocl_context_open(int device, const cnnelm_context_params *params,
                                      cnnelm_backend_ctx **out, char *error, size_t error_size)
{
    *out = NULL;
    cl_device_id ds[256];
    int n = list_devices(ds, NULL, 256);
    if (device < 0 || device >= n)
        return no_device(device, n, error, error_size);
    return open_on(ds[device], device, params, out, error, error_size);
}

static cnnelm_status open_on(cl_device_id dev, int device, const cnnelm_context_params *params,
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
        st = fail(c, cl_status(e), "%s: cannot create a context and queue (OpenCL error %d)", c->name, e);
    if (st == CNNELM_OK)
        st = build_program(c, params);
    for (int k = 0; k < K_COUNT && st == CNNELM_OK; k++) {
        c->kernel[k] = clCreateKernel(c->program, kernel_names[k], &e);
        if (e != CL_SUCCESS)
            st = fail(c, cl_status(e), "%s: no kernel %s (OpenCL error %d)", c->name, kernel_names[k], e);
        else if (clGetKernelWorkGroupInfo(c->kernel[k], c->device, CL_KERNEL_WORK_GROUP_SIZE,
                                          sizeof c->kernel_group[k], &c->kernel_group[k], NULL) != CL_SUCCESS)
            c->kernel_group[k] = c->max_group;
    }
    if (st == CNNELM_OK)
        st = warm_clblast(c);
    if (st != CNNELM_OK) {
        if (error)
            snprintf(error, error_size, "%s", c->error);
        ocl_context_close(c);
        return st;
    }
    *out = c;
    return CNNELM_OK;
}

static const char *ocl_last_error(const cnnelm_backend_ctx *c)
{
    return c ? c->error : "no context";
}

/* ---- buffers ---- */

static cnnelm_status ocl_buffer_alloc(cnnelm_backend_ctx *c, size_t bytes, cnnelm_buffer **out)
{
    if (!c || !out || bytes == 0)
        return c ? fail(c, CNNELM_ERR_INVALID_ARGUMENT, "buffer_alloc: bad arguments")
                 : CNNELM_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (bytes > c->max_alloc)
        return fail(c, CNNELM_ERR_OUT_OF_MEMORY, "%s: a buffer of %zu bytes is larger than the "
                    "device allows (%llu bytes); use a smaller train.chunk", c->name, bytes,
                    (unsigned long long)c->max_alloc);
    cnnelm_buffer *b = calloc(1, sizeof *b);
    if (!b)
        return fail(c, CNNELM_ERR_OUT_OF_MEMORY, "out of host memory");
    cl_int e;
    b->mem = clCreateBuffer(c->context, CL_MEM_READ_WRITE, bytes, NULL, &e);
    if (e != CL_SUCCESS) {
        free(b);
        return fail(c, cl_status(e), "%s: cannot allocate %zu bytes (OpenCL error %d)", c->name, bytes, e);
    }
    b->bytes = bytes;
    CNNELM_BUFFER_LIST_ADD(&c->buffers, b);
    *out = b;
    return CNNELM_OK;
}

static void ocl_buffer_free(cnnelm_backend_ctx *c, cnnelm_buffer *b)
{
    if (!c || !b)
        return;
    CNNELM_BUFFER_LIST_REMOVE(&c->buffers, b);
    release_buffer(b);
}

static cnnelm_status ocl_buffer_write(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t offset,
                                      const void *src, size_t bytes)
{
    if (!c || !dst || !src || offset + bytes > dst->bytes || offset + bytes < offset)
        return c ? fail(c, CNNELM_ERR_INVALID_ARGUMENT, "buffer_write: outside the buffer")
                 : CNNELM_ERR_INVALID_ARGUMENT;
    /* blocking: the host memory may be reused as soon as the call returns */
    CL_TRY(c, clEnqueueWriteBuffer(c->queue, dst->mem, CL_TRUE, offset, bytes, src, 0, NULL, NULL),
           "clEnqueueWriteBuffer");
    return CNNELM_OK;
}

static cnnelm_status ocl_buffer_read(cnnelm_backend_ctx *c, const cnnelm_buffer *src, size_t offset,
                                     void *dst, size_t bytes)
{
    if (!c || !src || !dst || offset + bytes > src->bytes || offset + bytes < offset)
        return c ? fail(c, CNNELM_ERR_INVALID_ARGUMENT, "buffer_read: outside the buffer")
                 : CNNELM_ERR_INVALID_ARGUMENT;
    CL_TRY(c, clEnqueueReadBuffer(c->queue, src->mem, CL_TRUE, offset, bytes, dst, 0, NULL, NULL),
           "clEnqueueReadBuffer");
    return CNNELM_OK;
}

static size_t round_up(size_t v, size_t m)
{
    return (v + m - 1) / m * m;
}

static cnnelm_status launch(cnnelm_backend_ctx *c, int k, cl_uint dims, const size_t *global,
                            const size_t *local)
{
    CL_TRY(c, clEnqueueNDRangeKernel(c->queue, c->kernel[k], dims, NULL, global, local, 0, NULL, NULL),
           kernel_names[k]);
    return CNNELM_OK;
}

#define ARG(k, i, v) CL_TRY(c, clSetKernelArg(c->kernel[k], (i), sizeof(v), &(v)), "clSetKernelArg")
#define LOCAL_ARG(k, i, bytes) CL_TRY(c, clSetKernelArg(c->kernel[k], (i), (bytes), NULL), "clSetKernelArg")

/* Work-items per work-group for the *_local kernels: a GPU wants at most 256; PoCL runs a whole
 * work-group on one core, where a bigger group shares one staged image among more work. */
static size_t local_cap(const cnnelm_backend_ctx *c, int k)
{
    size_t cap = c->is_cpu ? 1024 : 256;
    return c->kernel_group[k] && c->kernel_group[k] < cap ? c->kernel_group[k] : cap;
}

/* Local memory the *_local kernels may use: room for two groups per compute unit on a GPU. */
static size_t local_budget(const cnnelm_backend_ctx *c)
{
    size_t b = (size_t)(c->local_mem / 4 * 3);
    return b > 32768 ? 32768 : b;
}

/* The largest divisor d of total with base * d <= cap; 0 when not even d = 1 fits. */
static int fit_divisor(int total, size_t base, size_t cap)
{
    for (int d = total; d >= 1; d--)
        if (total % d == 0 && base * (size_t)d <= cap)
            return d;
    return 0;
}

static cnnelm_status ensure_scratch(cnnelm_backend_ctx *c, size_t bytes)
{
    if (c->scratch_bytes >= bytes)
        return CNNELM_OK;
    if (c->scratch)
        clReleaseMemObject(c->scratch); /* queued kernels keep it alive until they finish */
    c->scratch = NULL;
    c->scratch_bytes = 0;
    cl_int e;
    c->scratch = clCreateBuffer(c->context, CL_MEM_READ_WRITE, bytes, NULL, &e);
    if (e != CL_SUCCESS)
        return fail(c, cl_status(e), "%s: cannot allocate %zu bytes of scratch (OpenCL error %d)",
                    c->name, bytes, e);
    c->scratch_bytes = bytes;
    return CNNELM_OK;
}

/* ---- ops ---- */

static cnnelm_status ocl_conv2d_forward(cnnelm_backend_ctx *c, const cnnelm_conv_shape *s,
                                        cnnelm_activation act, const cnnelm_buffer *x,
                                        const cnnelm_buffer *w, const cnnelm_buffer *b, cnnelm_buffer *y)
{
    int oh = s->h - s->k + 1, ow = s->w - s->k + 1, a = (int)act;
    int vw = c->vw, nvx = (ow + vw - 1) / vw;
    size_t lbytes = (size_t)s->c_in * s->h * (size_t)(nvx * vw + s->k - 1) * sizeof(float);
    int nq = (s->c_out + 3) / 4, ob = fit_divisor(nq, (size_t)nvx * oh, local_cap(c, K_CONV_F_L));
    if (ob && lbytes <= local_budget(c)) { /* the whole image in local memory */
        ARG(K_CONV_F_L, 0, x->mem);
        ARG(K_CONV_F_L, 1, w->mem);
        ARG(K_CONV_F_L, 2, b->mem);
        ARG(K_CONV_F_L, 3, y->mem);
        ARG(K_CONV_F_L, 4, s->c_in);
        ARG(K_CONV_F_L, 5, s->h);
        ARG(K_CONV_F_L, 6, s->w);
        ARG(K_CONV_F_L, 7, s->c_out);
        ARG(K_CONV_F_L, 8, s->k);
        ARG(K_CONV_F_L, 9, a);
        LOCAL_ARG(K_CONV_F_L, 10, lbytes);
        size_t global[3] = { (size_t)nvx, (size_t)oh, (size_t)s->n * nq };
        size_t local[3] = { (size_t)nvx, (size_t)oh, (size_t)ob };
        return launch(c, K_CONV_F_L, 3, global, local);
    }
    ARG(K_CONV_F, 0, x->mem);
    ARG(K_CONV_F, 1, w->mem);
    ARG(K_CONV_F, 2, b->mem);
    ARG(K_CONV_F, 3, y->mem);
    ARG(K_CONV_F, 4, s->c_in);
    ARG(K_CONV_F, 5, s->h);
    ARG(K_CONV_F, 6, s->w);
    ARG(K_CONV_F, 7, s->c_out);
    ARG(K_CONV_F, 8, s->k);
    ARG(K_CONV_F, 9, a);
    ARG(K_CONV_F, 10, s->n);
    /* images per work-group: as many as the input patches of all maps fit in local memory
     * (at most 4); when not even one image's fit, the CPU reference takes this shape */
    size_t side = (size_t)TILE + (size_t)s->k - 1, per_image = (size_t)s->c_in * side * side * sizeof(float);
    size_t budget = c->local_mem / 2 < 16384 ? c->local_mem / 2 : 16384, imgs = 4;
    while (imgs > 1 && (imgs * per_image > budget || imgs * TILE * TILE > c->max_group))
        imgs /= 2;
    if (per_image > budget || TILE * TILE > c->max_group)
        return fail(c, CNNELM_ERR_UNSUPPORTED, "conv2d_forward: %d input maps with %dx%d kernels need "
                    "%zu bytes of local memory (the device gives %llu)", s->c_in, s->k, s->k, per_image,
                    (unsigned long long)c->local_mem);
    CL_TRY(c, clSetKernelArg(c->kernel[K_CONV_F], 11, imgs * per_image, NULL), "clSetKernelArg");
    size_t global[3] = { round_up((size_t)ow, TILE), round_up((size_t)oh, TILE), round_up((size_t)s->n, imgs) };
    size_t local[3] = { TILE, TILE, imgs };
    return launch(c, K_CONV_F, 3, global, local);
}

static cnnelm_status ocl_conv2d_backward_data(cnnelm_backend_ctx *c, const cnnelm_conv_shape *s,
                                              const cnnelm_buffer *dy, const cnnelm_buffer *w,
                                              cnnelm_buffer *dx)
{
    int oh = s->h - s->k + 1;
    int vw = c->vw, nvx = (s->w + vw - 1) / vw;
    size_t lbytes = (size_t)s->c_out * (size_t)(oh + 2 * (s->k - 1)) * (size_t)(nvx * vw + s->k - 1) *
                    sizeof(float);
    int nq = (s->c_in + 3) / 4, cb = fit_divisor(nq, (size_t)nvx * s->h, local_cap(c, K_CONV_BD_L));
    if (cb && lbytes <= local_budget(c)) { /* the image's dy, zero-padded, in local memory */
        ARG(K_CONV_BD_L, 0, dy->mem);
        ARG(K_CONV_BD_L, 1, w->mem);
        ARG(K_CONV_BD_L, 2, dx->mem);
        ARG(K_CONV_BD_L, 3, s->c_in);
        ARG(K_CONV_BD_L, 4, s->h);
        ARG(K_CONV_BD_L, 5, s->w);
        ARG(K_CONV_BD_L, 6, s->c_out);
        ARG(K_CONV_BD_L, 7, s->k);
        LOCAL_ARG(K_CONV_BD_L, 8, lbytes);
        size_t global[3] = { (size_t)nvx, (size_t)s->h, (size_t)s->n * nq };
        size_t local[3] = { (size_t)nvx, (size_t)s->h, (size_t)cb };
        return launch(c, K_CONV_BD_L, 3, global, local);
    }
    ARG(K_CONV_BD, 0, dy->mem);
    ARG(K_CONV_BD, 1, w->mem);
    ARG(K_CONV_BD, 2, dx->mem);
    ARG(K_CONV_BD, 3, s->c_in);
    ARG(K_CONV_BD, 4, s->h);
    ARG(K_CONV_BD, 5, s->w);
    ARG(K_CONV_BD, 6, s->c_out);
    ARG(K_CONV_BD, 7, s->k);
    size_t global[3] = { round_up((size_t)s->w, 8), round_up((size_t)s->h, 8), (size_t)s->n * s->c_in };
    size_t local[3] = { 8, 8, 1 };
    return launch(c, K_CONV_BD, 3, global, local);
}

static cnnelm_status ocl_conv2d_backward_filter(cnnelm_backend_ctx *c, const cnnelm_conv_shape *s,
                                                const cnnelm_buffer *x, const cnnelm_buffer *dy,
                                                cnnelm_buffer *dw, cnnelm_buffer *db, int accumulate)
{
    cnnelm_status st;
    int oh = s->h - s->k + 1, ow = s->w - s->k + 1, per = oh * ow, acc = accumulate != 0;
    size_t nw = (size_t)s->c_out * s->c_in * s->k * s->k;
    int kk = s->k * s->k, owv = (ow + c->vw - 1) / c->vw * c->vw, pitch = owv + s->k - 1;
    int ob = fit_divisor(s->c_out, (size_t)kk * s->c_in,
                         local_cap(c, K_CONV_BF_L) < 256 ? local_cap(c, K_CONV_BF_L) : 256);
    size_t lbytes = ((size_t)s->c_in * s->h * pitch + (size_t)ob * oh * owv) * sizeof(float);
    if (ob && lbytes <= local_budget(c)) { /* partial sums per chunk of images, then their sum */
        int chunks = s->n < BF_CHUNKS ? s->n : BF_CHUNKS, per_chunk = (s->n + chunks - 1) / chunks;
        chunks = (s->n + per_chunk - 1) / per_chunk;
        int ipb = 1; /* images staged per pass: as many as fit, up to 8 */
        while (ipb < 8 && ipb < per_chunk && (size_t)(ipb + 1) * lbytes <= local_budget(c))
            ipb++;
        lbytes *= (size_t)ipb;
        int row = (int)nw + s->c_out;
        st = ensure_scratch(c, (size_t)chunks * row * sizeof(float));
        if (st != CNNELM_OK)
            return st;
        ARG(K_CONV_BF_L, 0, x->mem);
        ARG(K_CONV_BF_L, 1, dy->mem);
        ARG(K_CONV_BF_L, 2, c->scratch);
        ARG(K_CONV_BF_L, 3, s->n);
        ARG(K_CONV_BF_L, 4, s->c_in);
        ARG(K_CONV_BF_L, 5, s->h);
        ARG(K_CONV_BF_L, 6, s->w);
        ARG(K_CONV_BF_L, 7, s->c_out);
        ARG(K_CONV_BF_L, 8, s->k);
        ARG(K_CONV_BF_L, 9, per_chunk);
        ARG(K_CONV_BF_L, 10, ipb);
        LOCAL_ARG(K_CONV_BF_L, 11, lbytes);
        size_t global[3] = { (size_t)kk, (size_t)s->c_in, (size_t)s->c_out * chunks };
        size_t local[3] = { (size_t)kk, (size_t)s->c_in, (size_t)ob };
        st = launch(c, K_CONV_BF_L, 3, global, local);
        if (st != CNNELM_OK)
            return st;
        int inw = (int)nw;
        ARG(K_SUM_CHUNKS, 0, c->scratch);
        ARG(K_SUM_CHUNKS, 1, dw->mem);
        ARG(K_SUM_CHUNKS, 2, db->mem);
        ARG(K_SUM_CHUNKS, 3, inw);
        ARG(K_SUM_CHUNKS, 4, s->c_out);
        ARG(K_SUM_CHUNKS, 5, chunks);
        ARG(K_SUM_CHUNKS, 6, acc);
        size_t g1 = round_up((size_t)row, 64), l1 = 64;
        return launch(c, K_SUM_CHUNKS, 1, &g1, &l1);
    }
    ARG(K_CONV_BF, 0, x->mem);
    ARG(K_CONV_BF, 1, dy->mem);
    ARG(K_CONV_BF, 2, dw->mem);
    ARG(K_CONV_BF, 3, s->n);
    ARG(K_CONV_BF, 4, s->c_in);
    ARG(K_CONV_BF, 5, s->h);
    ARG(K_CONV_BF, 6, s->w);
    ARG(K_CONV_BF, 7, s->c_out);
    ARG(K_CONV_BF, 8, s->k);
    ARG(K_CONV_BF, 9, acc);
    size_t global = nw * GROUP, local = GROUP;
    st = launch(c, K_CONV_BF, 1, &global, &local);
    if (st != CNNELM_OK)
        return st;
    ARG(K_CONV_BB, 0, dy->mem);
    ARG(K_CONV_BB, 1, db->mem);
    ARG(K_CONV_BB, 2, s->n);
    ARG(K_CONV_BB, 3, s->c_out);
    ARG(K_CONV_BB, 4, per);
    ARG(K_CONV_BB, 5, acc);
    global = (size_t)s->c_out * GROUP;
    return launch(c, K_CONV_BB, 1, &global, &local);
}

static cnnelm_status ocl_pool_forward(cnnelm_backend_ctx *c, const cnnelm_pool_shape *s,
                                      cnnelm_pooling mode, const cnnelm_buffer *x, cnnelm_buffer *y)
{
    int oh = s->h / s->s, ow = s->w / s->s, is_max = mode == CNNELM_POOL_MAX;
    ARG(K_POOL_F, 0, x->mem);
    ARG(K_POOL_F, 1, y->mem);
    ARG(K_POOL_F, 2, s->h);
    ARG(K_POOL_F, 3, s->w);
    ARG(K_POOL_F, 4, s->s);
    ARG(K_POOL_F, 5, is_max);
    size_t global[3] = { round_up((size_t)ow, 8), round_up((size_t)oh, 8), (size_t)s->n * s->c };
    size_t local[3] = { 8, 8, 1 };
    return launch(c, K_POOL_F, 3, global, c->is_cpu ? NULL : local);
}

static cnnelm_status ocl_pool_backward(cnnelm_backend_ctx *c, const cnnelm_pool_shape *s,
                                       cnnelm_pooling mode, const cnnelm_buffer *x,
                                       const cnnelm_buffer *dy, cnnelm_buffer *dx)
{
    int oh = s->h / s->s, ow = s->w / s->s, is_max = mode == CNNELM_POOL_MAX;
    ARG(K_POOL_B, 0, x->mem);
    ARG(K_POOL_B, 1, dy->mem);
    ARG(K_POOL_B, 2, dx->mem);
    ARG(K_POOL_B, 3, s->h);
    ARG(K_POOL_B, 4, s->w);
    ARG(K_POOL_B, 5, s->s);
    ARG(K_POOL_B, 6, is_max);
    size_t global[3] = { round_up((size_t)ow, 8), round_up((size_t)oh, 8), (size_t)s->n * s->c };
    size_t local[3] = { 8, 8, 1 };
    return launch(c, K_POOL_B, 3, global, c->is_cpu ? NULL : local);
}

static cnnelm_status ocl_activation_forward(cnnelm_backend_ctx *c, cnnelm_activation act, size_t count,
                                            const cnnelm_buffer *x, cnnelm_buffer *y)
{
    if (count > 0x7fffffff) /* the kernels index with int: a device limit, not a bad call */
        return fail(c, CNNELM_ERR_UNSUPPORTED, "activation_forward: %zu elements is more than 2^31 - 1", count);
    int a = (int)act, n = (int)count;
    ARG(K_ACT_F, 0, x->mem);
    ARG(K_ACT_F, 1, y->mem);
    ARG(K_ACT_F, 2, a);
    ARG(K_ACT_F, 3, n);
    size_t local = 64, global = round_up(count, local);
    return launch(c, K_ACT_F, 1, &global, &local);
}

static cnnelm_status ocl_activation_backward(cnnelm_backend_ctx *c, cnnelm_activation act, size_t count,
                                             const cnnelm_buffer *y, const cnnelm_buffer *dy,
                                             cnnelm_buffer *dx)
{
    if (count > 0x7fffffff) /* the kernels index with int: a device limit, not a bad call */
        return fail(c, CNNELM_ERR_UNSUPPORTED, "activation_backward: %zu elements is more than 2^31 - 1", count);
    int a = (int)act, n = (int)count;
    ARG(K_ACT_B, 0, y->mem);
    ARG(K_ACT_B, 1, dy->mem);
    ARG(K_ACT_B, 2, dx->mem);
    ARG(K_ACT_B, 3, a);
    ARG(K_ACT_B, 4, n);
    size_t local = 64, global = round_up(count, local);
    return launch(c, K_ACT_B, 1, &global, &local);
}

/* ---- ELM products through CLBlast ---- */

static cnnelm_status gemm(cnnelm_backend_ctx *c, const char *op, CLBlastTranspose ta, CLBlastTranspose tb,
                          size_t m, size_t n, size_t k, const cnnelm_buffer *a, size_t lda,
                          const cnnelm_buffer *b, size_t ldb, float beta, cnnelm_buffer *out, size_t ldc)
{
    CLBlastStatusCode e = CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, m, n, k, 1.0f, a->mem, 0, lda,
                                       b->mem, 0, ldb, beta, out->mem, 0, ldc, &c->queue, NULL);
    if (e != CLBlastSuccess)
        return fail(c, e == CLBlastOpenCLOutOfResources || e == CLBlastInsufficientMemoryTemp
                           ? CNNELM_ERR_OUT_OF_MEMORY : CNNELM_ERR_DEVICE,
                    "%s: CLBlast SGEMM failed (status %d)", op, (int)e);
    return CNNELM_OK;
}

/* CLBlast compiles its kernels on first use in each context (and keeps them for the context's
 * life): a tiny SGEMM in each transposition used here moves that cost to context_open. */
static cnnelm_status warm_clblast(cnnelm_backend_ctx *c)
{
    cnnelm_buffer *a = NULL, *b = NULL, *o = NULL;
    cnnelm_status st = ocl_buffer_alloc(c, 64 * sizeof(float), &a);
    if (st == CNNELM_OK)
        st = ocl_buffer_alloc(c, 64 * sizeof(float), &b);
    if (st == CNNELM_OK)
        st = ocl_buffer_alloc(c, 64 * sizeof(float), &o);
    if (st == CNNELM_OK)
        st = gemm(c, "warm-up", CLBlastTransposeYes, CLBlastTransposeNo, 8, 8, 8, a, 8, b, 8, 0.0f, o, 8);
    if (st == CNNELM_OK)
        st = gemm(c, "warm-up", CLBlastTransposeNo, CLBlastTransposeNo, 8, 8, 8, a, 8, b, 8, 0.0f, o, 8);
    if (st == CNNELM_OK)
        st = gemm(c, "warm-up", CLBlastTransposeNo, CLBlastTransposeYes, 8, 8, 8, a, 8, b, 8, 0.0f, o, 8);
    if (st == CNNELM_OK && clFinish(c->queue) != CL_SUCCESS)
        st = fail(c, CNNELM_ERR_DEVICE, "%s: clFinish failed", c->name);
    ocl_buffer_free(c, a);
    ocl_buffer_free(c, b);
    ocl_buffer_free(c, o);
    return st;
}

static cnnelm_status ocl_elm_accumulate(cnnelm_backend_ctx *c, int n, int l, int k,
                                        const cnnelm_buffer *H, const cnnelm_buffer *T,
                                        cnnelm_buffer *U, cnnelm_buffer *V)
{
    /* full H^T H with beta = 1: both triangles, computed identically, stay exactly symmetric */
    cnnelm_status st = gemm(c, "elm_accumulate", CLBlastTransposeYes, CLBlastTransposeNo, (size_t)l, (size_t)l,
              (size_t)n, H, (size_t)l, H, (size_t)l, 1.0f, U, (size_t)l);
    if (st == CNNELM_OK)
        st = gemm(c, "elm_accumulate", CLBlastTransposeYes, CLBlastTransposeNo, (size_t)l, (size_t)k,
                  (size_t)n, H, (size_t)l, T, (size_t)k, 1.0f, V, (size_t)k);
    return st;
}

static cnnelm_status ocl_elm_predict(cnnelm_backend_ctx *c, int n, int l, int k, const cnnelm_buffer *H,
                                     const cnnelm_buffer *beta, cnnelm_buffer *Y)
{
    return gemm(c, "elm_predict", CLBlastTransposeNo, CLBlastTransposeNo, (size_t)n, (size_t)k, (size_t)l,
                H, (size_t)l, beta, (size_t)k, 0.0f, Y, (size_t)k);
}

static cnnelm_status ocl_elm_backprop(cnnelm_backend_ctx *c, int n, int l, int k, const cnnelm_buffer *E,
                                      const cnnelm_buffer *beta, cnnelm_buffer *dH)
{
    return gemm(c, "elm_backprop", CLBlastTransposeNo, CLBlastTransposeYes, (size_t)n, (size_t)l, (size_t)k,
                E, (size_t)k, beta, (size_t)k, 0.0f, dH, (size_t)l);
}

/* A 192 x 192 Cholesky is tiny: it runs on the host in double, where it is also most accurate. */
static cnnelm_status ocl_elm_solve(cnnelm_backend_ctx *c, int l, int k, double lambda,
                                   const cnnelm_buffer *U, const cnnelm_buffer *V, cnnelm_buffer *beta)
{
    cnnelm_status st = CNNELM_OK;
    size_t L = (size_t)l, C = (size_t)k;
    float *uf = malloc(L * L * sizeof *uf), *vf = malloc(L * C * sizeof *vf);
    double *A = malloc(L * L * sizeof *A), *B = malloc(L * C * sizeof *B);
    if (!uf || !vf || !A || !B) {
        st = fail(c, CNNELM_ERR_OUT_OF_MEMORY, "elm_solve: out of host memory");
        goto out;
    }
    if ((st = ocl_buffer_read(c, U, 0, uf, L * L * sizeof *uf)) != CNNELM_OK ||
        (st = ocl_buffer_read(c, V, 0, vf, L * C * sizeof *vf)) != CNNELM_OK)
        goto out;
    for (size_t i = 0; i < L; i++)
        for (size_t j = 0; j < L; j++)
            A[i * L + j] = 0.5 * ((double)uf[i * L + j] + (double)uf[j * L + i]) + (i == j ? 1.0 / lambda : 0.0);
    for (size_t i = 0; i < L * C; i++)
        B[i] = vf[i];
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)L, A, (lapack_int)L);
    if (info != 0) {
        st = fail(c, CNNELM_ERR_NOT_POSITIVE_DEFINITE, "I/lambda + U is not positive definite "
                  "(lambda = %g; LAPACK dpotrf info %d)", lambda, (int)info);
        goto out;
    }
    info = LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'L', (lapack_int)L, (lapack_int)C, A, (lapack_int)L, B, (lapack_int)C);
    for (size_t i = 0; i < L * C && info == 0; i++) {
        vf[i] = (float)B[i];
        if (!isfinite(vf[i]))
            info = -1;
    }
    if (info != 0) {
        st = fail(c, CNNELM_ERR_NOT_POSITIVE_DEFINITE, "elm_solve gave a non-finite beta (lambda = %g)", lambda);
        goto out;
    }
    st = ocl_buffer_write(c, beta, 0, vf, L * C * sizeof *vf);
out:
    free(uf);
    free(vf);
    free(A);
    free(B);
    return st;
}

/* ---- ABI 1.1 ---- */

/* Plugin state: the platforms and devices, enumerated once (not on every call), on first use
 * rather than in init: OpenCL runtimes start threads that do not survive fork(), and the core
 * loads plugins in processes that fork (plugin-check). */
typedef struct ocl_state {
    pthread_mutex_t lock;
    int enumerated;
    int n;
    cl_device_id dev[256];
    cl_platform_id plat[256];
    char why[256];     /* why enumeration failed, when it did */
} ocl_state;

static cnnelm_status ocl_init(const cnnelm_plugin_params *params, void **state, char *error,
                              size_t error_size)
{
    (void)params;
    (void)error;
    (void)error_size;
    ocl_state *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(error, error_size, "out of host memory");
        return CNNELM_ERR_OUT_OF_MEMORY;
    }
    pthread_mutex_init(&s->lock, NULL);
    *state = s;
    return CNNELM_OK;
}

static void ocl_shutdown(void *state)
{
    ocl_state *s = state;
    if (!s)
        return;
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static ocl_state *enumerated(void *state)
{
    ocl_state *s = state;
    pthread_mutex_lock(&s->lock);
    if (!s->enumerated) {
        s->enumerated = 1;
        cl_uint np = 0;
        cl_int e = clGetPlatformIDs(0, NULL, &np);
        if (e != CL_SUCCESS && e != -1001 /* CL_PLATFORM_NOT_FOUND_KHR: no ICD, no devices */)
            snprintf(s->why, sizeof s->why, "clGetPlatformIDs failed (OpenCL error %d)", e);
        else
            s->n = list_devices(s->dev, s->plat, 256);
    }
    pthread_mutex_unlock(&s->lock);
    return s;
}

static cnnelm_status ocl_device_count_v11(void *state, int *count, char *error, size_t error_size)
{
    const ocl_state *s = enumerated(state);
    *count = s->n;
    if (s->why[0]) {
        snprintf(error, error_size, "%s", s->why);
        return CNNELM_ERR_DEVICE;
    }
    return CNNELM_OK;
}

static cnnelm_status ocl_device_info_v11(void *state, int index, cnnelm_device_info *info)
{
    const ocl_state *s = enumerated(state);
    if (index < 0 || index >= s->n)
        return CNNELM_ERR_INVALID_ARGUMENT;
    describe(s->dev[index], s->plat[index], info);
    return CNNELM_OK;
}

static cnnelm_status ocl_device_limits(void *state, int index, cnnelm_device_limits *limits)
{
    const ocl_state *s = enumerated(state);
    if (index < 0 || index >= s->n)
        return CNNELM_ERR_INVALID_ARGUMENT;
    cl_uint align_bits = 0;
    cl_ulong alloc = 0;
    clGetDeviceInfo(s->dev[index], CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits, &align_bits, NULL);
    clGetDeviceInfo(s->dev[index], CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof alloc, &alloc, NULL);
    if (CNNELM_PARAMS_HAS(limits, alignment))
        limits->alignment = align_bits / 8;
    if (CNNELM_PARAMS_HAS(limits, max_alloc_bytes))
        limits->max_alloc_bytes = alloc;
    if (CNNELM_PARAMS_HAS(limits, preferred_chunk))
        limits->preferred_chunk = 0;
    return CNNELM_OK;
}

static cnnelm_status ocl_context_open_v11(void *state, int device, const cnnelm_context_params *params,
                                          cnnelm_backend_ctx **out, char *error, size_t error_size)
{
    const ocl_state *s = enumerated(state);
    *out = NULL;
    if (device < 0 || device >= s->n)
        return no_device(device, s->n, error, error_size);
    return open_on(s->dev[device], device, params, out, error, error_size);
}

/* The kernels index elements with int: larger activations run on the reference. */
static cnnelm_status ocl_supports(cnnelm_backend_ctx *c, const cnnelm_op_params *op)
{
    (void)c;
    if ((op->op == CNNELM_OP_ACT_FORWARD || op->op == CNNELM_OP_ACT_BACKWARD) && op->count > 0x7fffffff)
        return CNNELM_ERR_UNSUPPORTED;
    return CNNELM_OK;
}

/* Non-blocking transfers, in order with the kernels on the context's one queue; the host
 * memory must stay valid until synchronize (clFinish). */
static cnnelm_status ocl_buffer_write_async(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t offset,
                                            const void *src, size_t bytes)
{
    CL_TRY(c, clEnqueueWriteBuffer(c->queue, dst->mem, CL_FALSE, offset, bytes, src, 0, NULL, NULL),
           "clEnqueueWriteBuffer (non-blocking)");
    return CNNELM_OK;
}

static cnnelm_status ocl_buffer_read_async(cnnelm_backend_ctx *c, const cnnelm_buffer *src,
                                           size_t offset, void *dst, size_t bytes)
{
    CL_TRY(c, clEnqueueReadBuffer(c->queue, src->mem, CL_FALSE, offset, bytes, dst, 0, NULL, NULL),
           "clEnqueueReadBuffer (non-blocking)");
    return CNNELM_OK;
}

static cnnelm_status ocl_synchronize(cnnelm_backend_ctx *c)
{
    CL_TRY(c, clFinish(c->queue), "clFinish");
    return CNNELM_OK;
}

static cnnelm_status ocl_buffer_copy(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t dst_offset,
                                     const cnnelm_buffer *src, size_t src_offset, size_t bytes)
{
    CL_TRY(c, clEnqueueCopyBuffer(c->queue, src->mem, dst->mem, src_offset, dst_offset, bytes, 0,
                                  NULL, NULL), "clEnqueueCopyBuffer");
    return CNNELM_OK;
}

static cnnelm_status ocl_buffer_fill(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t offset,
                                     size_t bytes, float value)
{
    CL_TRY(c, clEnqueueFillBuffer(c->queue, dst->mem, &value, sizeof value, offset, bytes, 0, NULL,
                                  NULL), "clEnqueueFillBuffer");
    return CNNELM_OK;
}

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
