/* cnnelm backend template: copy this directory to start a plugin for new hardware. It is a
 * complete, working plugin from the start: host-memory buffers and convolution forward in plain
 * loops; every op left NULL runs on the CPU reference (the core moves the data), so training
 * works at every step. Replace the STEPs with your device's code, one at a time, and run
 * `cnnelm plugin-check build/libcnnelm-mydevice.so` after each. The contract of every slot is
 * in cnnelm/backend.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cnnelm/backend.h>

/* STEP 1: your per-thread state. One context per worker thread; keep the last error message
 * here (plugins never print). A real device adds its handle, queue, compiled programs. */
struct cnnelm_backend_ctx {
    char error[256];
    struct cnnelm_buffer *buffers; /* every live buffer: context_close frees them */
};

/* STEP 2: your device memory. Here: host memory. A real device keeps its allocation handle. */
struct cnnelm_buffer {
    struct cnnelm_buffer *prev, *next;
    size_t bytes;
    float data[];
};

/* STEP 3: devices. Count and describe what this plugin can drive. */
static cnnelm_status my_device_count(int *count)
{
    *count = 1;
    return CNNELM_OK;
}

static cnnelm_status my_device_info(int index, cnnelm_device_info *info)
{
    if (index != 0)
        return CNNELM_ERR_INVALID_ARGUMENT;
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "my device (template)");
    snprintf(info->vendor, sizeof info->vendor, "my company");
    info->kind = CNNELM_DEVICE_FPGA;
    info->compute_units = 1;
    return CNNELM_OK;
}

/* STEP 4: contexts. Open the device for one worker thread; close frees everything. */
static cnnelm_status my_context_open(int device, const cnnelm_context_params *params,
                                     cnnelm_backend_ctx **out, char *error, size_t error_size)
{
    (void)params;
    *out = NULL;
    if (device != 0) {
        if (error)
            snprintf(error, error_size, "no device %d", device);
        return CNNELM_ERR_INVALID_ARGUMENT;
    }
    *out = calloc(1, sizeof **out);
    return *out ? CNNELM_OK : CNNELM_ERR_OUT_OF_MEMORY;
}

static void my_context_close(cnnelm_backend_ctx *c)
{
    while (c && c->buffers) {
        struct cnnelm_buffer *b = c->buffers;
        c->buffers = b->next;
        free(b);
    }
    free(c);
}

static const char *my_last_error(const cnnelm_backend_ctx *c)
{
    return c ? c->error : "no context";
}

/* STEP 5: buffers. Allocate, free, copy in and out (buffer_read returns when the data is on
 * the host, after all earlier work of the context). */
static cnnelm_status my_buffer_alloc(cnnelm_backend_ctx *c, size_t bytes, cnnelm_buffer **out)
{
    *out = malloc(sizeof **out + bytes);
    if (!*out) {
        snprintf(c->error, sizeof c->error, "cannot allocate %zu bytes", bytes);
        return CNNELM_ERR_OUT_OF_MEMORY;
    }
    (*out)->bytes = bytes;
    (*out)->prev = NULL;
    (*out)->next = c->buffers;
    if (c->buffers)
        c->buffers->prev = *out;
    c->buffers = *out;
    return CNNELM_OK;
}

static void my_buffer_free(cnnelm_backend_ctx *c, cnnelm_buffer *b)
{
    if (!b)
        return;
    if (b->prev)
        b->prev->next = b->next;
    else
        c->buffers = b->next;
    if (b->next)
        b->next->prev = b->prev;
    free(b);
}

static cnnelm_status my_buffer_write(cnnelm_backend_ctx *c, cnnelm_buffer *dst, size_t offset,
                                     const void *src, size_t bytes)
{
    if (offset + bytes > dst->bytes) {
        snprintf(c->error, sizeof c->error, "write past the end of a buffer");
        return CNNELM_ERR_INVALID_ARGUMENT;
    }
    memcpy((char *)dst->data + offset, src, bytes);
    return CNNELM_OK;
}

static cnnelm_status my_buffer_read(cnnelm_backend_ctx *c, const cnnelm_buffer *src, size_t offset,
                                    void *dst, size_t bytes)
{
    if (offset + bytes > src->bytes) {
        snprintf(c->error, sizeof c->error, "read past the end of a buffer");
        return CNNELM_ERR_INVALID_ARGUMENT;
    }
    memcpy(dst, (const char *)src->data + offset, bytes);
    return CNNELM_OK;
}

/* STEP 6: convolution forward, the op that dominates the time. Plain loops here: replace them
 * with your device's kernel. Return CNNELM_ERR_UNSUPPORTED for a shape or activation you do not
 * handle: the CPU reference then runs that call. */
static cnnelm_status my_conv2d_forward(cnnelm_backend_ctx *c, const cnnelm_conv_shape *s,
                                       cnnelm_activation act, const cnnelm_buffer *x,
                                       const cnnelm_buffer *w, const cnnelm_buffer *b, cnnelm_buffer *y)
{
    if (act != CNNELM_ACT_RELU && act != CNNELM_ACT_IDENTITY) {
        snprintf(c->error, sizeof c->error, "only relu and identity so far");
        return CNNELM_ERR_UNSUPPORTED;
    }
    int oh = s->h - s->k + 1, ow = s->w - s->k + 1;
    for (int n = 0; n < s->n; n++)
        for (int o = 0; o < s->c_out; o++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    float v = b->data[o];
                    for (int ci = 0; ci < s->c_in; ci++)
                        for (int p = 0; p < s->k; p++)
                            for (int q = 0; q < s->k; q++)
                                v += x->data[((size_t)(n * s->c_in + ci) * s->h + i + p) * s->w + j + q] *
                                     w->data[((size_t)(o * s->c_in + ci) * s->k + p) * s->k + q];
                    if (act == CNNELM_ACT_RELU && v < 0)
                        v = 0;
                    y->data[((size_t)(n * s->c_out + o) * oh + i) * ow + j] = v;
                }
    return CNNELM_OK;
}

/* STEP 7 and on: the other ops, in the order that pays: pool_forward, elm_accumulate (the ELM
 * fit), then for fine-tuning conv2d_backward_filter, conv2d_backward_data, pool_backward,
 * activation_backward, elm_predict, elm_backprop; elm_solve last (a tiny host-side solve is
 * fine). Fill a slot below when its op is written; until then NULL means "CPU reference". */
static const cnnelm_backend table = {
    .abi_major = CNNELM_BACKEND_ABI_MAJOR,
    .abi_minor = CNNELM_BACKEND_ABI_MINOR,
    .table_size = sizeof(cnnelm_backend),
    .name = "mydevice",          /* STEP 0: the name users write in `workers` (libcnnelm-NAME.so) */
    .description = "template plugin: convolution forward on the host, the rest on the CPU reference",
    .device_count = my_device_count,
    .device_info = my_device_info,
    .context_open = my_context_open,
    .context_close = my_context_close,
    .last_error = my_last_error,
    .buffer_alloc = my_buffer_alloc,
    .buffer_free = my_buffer_free,
    .buffer_write = my_buffer_write,
    .buffer_read = my_buffer_read,
    .conv2d_forward = my_conv2d_forward,
    .pool_forward = NULL,
    .pool_backward = NULL,
    .conv2d_backward_data = NULL,
    .conv2d_backward_filter = NULL,
    .activation_forward = NULL,
    .activation_backward = NULL,
    .elm_accumulate = NULL,
    .elm_predict = NULL,
    .elm_backprop = NULL,
    .elm_solve = NULL,
};

CNNELM_BACKEND_DEFINE_ENTRY(table)
