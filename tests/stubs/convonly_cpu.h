/* The convolution-only test plugin's engine (convonly_cpu.c): the CPU backend's convolution
 * forward behind an opaque handle, so that convonly_plugin.c keeps its own context type. */
#ifndef CNNELM_CONVONLY_CPU_H
#define CNNELM_CONVONLY_CPU_H

#include <stddef.h>

#include "cnnelm/backend.h"

/* NULL on failure, with the reason in error. threads >= 1. */
void *convonly_engine_open(int threads, char *error, size_t error_size);
void convonly_engine_close(void *engine);
const char *convonly_engine_error(const void *engine);
cnnelm_status convonly_engine_conv(void *engine, const cnnelm_conv_shape *s, cnnelm_activation act,
                                   const float *x, const float *w, const float *b, float *y);

#endif
