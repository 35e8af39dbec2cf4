/* The convolution-only test plugin's engine: the CPU backend's own convolution kernels
 * (backends/cpu/cpu_conv.c, linked in with the context and thread pool they run on), so that
 * a training step on convonly differs from the CPU backend's only by what the core's fallback
 * costs (bench/bench_abi.sh), not by a slower convolution. */
#include "convonly_cpu.h"

#include "cpu_internal.h"

void *convonly_engine_open(int threads, char *error, size_t error_size)
{
    cnnelm_backend_ctx *c = NULL;
    return cpu_context_create(threads, &c, error, error_size) == CNNELM_OK ? c : NULL;
}

void convonly_engine_close(void *engine)
{
    if (engine)
        cpu_context_destroy(engine);
}

const char *convonly_engine_error(const void *engine)
{
    return ((const cnnelm_backend_ctx *)engine)->err;
}

cnnelm_status convonly_engine_conv(void *engine, const cnnelm_conv_shape *s, cnnelm_activation act,
                                   const float *x, const float *w, const float *b, float *y)
{
    return cpu_conv_forward(engine, s, act, x, w, b, y);
}
