/* cnnelm OpenCL backend: platforms and devices (every device of every platform, in platform
 * order; enumerated once per plugin state), context_open by device index, and the program: built
 * once per context from cl/cnnelm.cl (embedded at build time) or loaded from the disk cache,
 * one file per device, driver, source and options. */
#define _GNU_SOURCE
#define CL_TARGET_OPENCL_VERSION 120
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnnelm_kernels.h" /* generated: static const char cnnelm_cl_source[] */
#include "ocl_internal.h"

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

cnnelm_status ocl_device_count(int *count)
{
    cl_device_id ds[256];
    if (!count)
        return CNNELM_ERR_INVALID_ARGUMENT;
    *count = list_devices(ds, NULL, 256);
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

cnnelm_status ocl_device_info(int index, cnnelm_device_info *info)
{
    cl_device_id ds[256];
    cl_platform_id ps[256];
    int n = list_devices(ds, ps, 256);
    if (!info || index < 0 || index >= n)
        return CNNELM_ERR_INVALID_ARGUMENT;
    describe(ds[index], ps[index], info);
    return CNNELM_OK;
}

static cnnelm_status no_device(int device, int n, char *error, size_t error_size)
{
    if (error)
        snprintf(error, error_size, n ? "no OpenCL device %d (there are %d)"
                                      : "no OpenCL platform or device found (is an ICD such as "
                                        "pocl-opencl-icd installed?)", device, n);
    return CNNELM_ERR_INVALID_ARGUMENT;
}

cnnelm_status ocl_context_open(int device, const cnnelm_context_params *params,
                               cnnelm_backend_ctx **out, char *error, size_t error_size)
{
    *out = NULL;
    cl_device_id ds[256];
    int n = list_devices(ds, NULL, 256);
    if (device < 0 || device >= n)
        return no_device(device, n, error, error_size);
    return ocl_open_on(ds[device], device, params, out, error, error_size);
}

/* ---- plugin state (ABI 1.1): the devices, enumerated once ---- */

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

cnnelm_status ocl_init(const cnnelm_plugin_params *params, void **state, char *error,
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

void ocl_shutdown(void *state)
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

cnnelm_status ocl_device_count_v11(void *state, int *count, char *error, size_t error_size)
{
    const ocl_state *s = enumerated(state);
    *count = s->n;
    if (s->why[0]) {
        snprintf(error, error_size, "%s", s->why);
        return CNNELM_ERR_DEVICE;
    }
    return CNNELM_OK;
}

cnnelm_status ocl_device_info_v11(void *state, int index, cnnelm_device_info *info)
{
    const ocl_state *s = enumerated(state);
    if (index < 0 || index >= s->n)
        return CNNELM_ERR_INVALID_ARGUMENT;
    describe(s->dev[index], s->plat[index], info);
    return CNNELM_OK;
}

cnnelm_status ocl_device_limits(void *state, int index, cnnelm_device_limits *limits)
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

cnnelm_status ocl_context_open_v11(void *state, int device, const cnnelm_context_params *params,
                                   cnnelm_backend_ctx **out, char *error, size_t error_size)
{
    const ocl_state *s = enumerated(state);
    *out = NULL;
    if (device < 0 || device >= s->n)
        return no_device(device, s->n, error, error_size);
    return ocl_open_on(s->dev[device], device, params, out, error, error_size);
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

cnnelm_status ocl_build_program(cnnelm_backend_ctx *c, const cnnelm_context_params *params)
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
        return ocl_fail(c, CNNELM_ERR_BUILD, "%s: the kernels do not build (OpenCL error %d): %s", c->name,
                    e, log[0] ? log : "no build log");
    }
    if (path[0])
        write_cache(c, path);
    return CNNELM_OK;
}
