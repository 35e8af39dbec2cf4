/* cnnelm plugin conformance checker: runs every op a plugin has on random inputs of several
 * shapes against the CPU reference, each in a forked child so that a crashing or hanging op is
 * reported instead of taking the checker down.
 *
 * Tolerances (max |plugin - reference| / (1 + |reference|) over the outputs):
 *   activations, pooling            1e-4
 *   convolution (all three), ELM GEMM-like products and the solve's predictions   1e-3
 * End to end: a short training (ELM fit and one fine-tuning iteration on 300 random images, ops
 * the plugin lacks on the CPU reference) must give the reference's predictions for >= 97% of
 * the images.
 * elm_solve is judged by its predictions H beta (the ridge system is ill-conditioned: beta
 * itself may move along directions that change no output). */
#ifndef CNNELM_PLUGIN_CHECK_H
#define CNNELM_PLUGIN_CHECK_H

#include <stdio.h>

#include "cnnelm/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Checks the plugin file on `device` and prints a table (op, shape, max relative error,
 * tolerance, speed relative to the reference, result) to `out`, then
 * "plugin-check: N passed, M failed". Returns 0 when every check passes, 1 when some fail
 * (a plugin that does not load is one failed check), -1 when the checker cannot run (err set,
 * e.g. no CPU reference). An op the plugin leaves NULL is listed as running on the CPU
 * reference, not as a failure. */
int cnnelm_plugin_check(const char *plugin_file, int device, int verbose, FILE *out, cnnelm_error *err);

#ifdef __cplusplus
}
#endif
#endif
