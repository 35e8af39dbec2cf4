/* cnnelm plugin conformance checker: loads the plugin, calls its entry, init and shutdown (ABI
 * 1.1), device_count and device_info (their 1.1 slots with the plugin state where present, and
 * device_limits) of every device, the 1.1 transfer slots (buffer_fill, buffer_copy, the
 * asynchronous write and read with synchronize, against the plain write and read, with guard
 * tails), then runs every op it has on random inputs of many shapes against the CPU
 * reference, then a short end-to-end training; each case in a forked child with a time limit,
 * so that a crashing or hanging plugin is a row of the report instead of the checker's end.
 *
 * Every op case checks, on buffers allocated larger than the tensor:
 *   - guard regions: the tail past the tensor holds a pattern that must survive the op (a write
 *     past the end is named: op, shape, buffer, how many floats);
 *   - sentinels: outputs are pre-filled with a NaN pattern; one left is an unwritten output;
 *   - inputs: read back after the op, they must be unchanged (inputs are const);
 *   - values: max |plugin - reference| / (1 + |reference|) over the outputs within
 *       activations, pooling            1e-4
 *       convolution (all three), ELM GEMM-like products   1e-3
 *     elm_solve is judged relative to the largest |beta| of the reference.
 * Accumulating ops (elm_accumulate, conv2d_backward_filter with accumulate) are called three
 * times on one context with new inputs each time, compared after every call. Each op also runs
 * on two contexts in two threads at once, several rounds, compared with the single-threaded
 * reference. Shapes: odd and even sizes, n = 1 and partial chunks, kernels 1..7, several
 * channel counts, pooling mean and max with s = 1..4, every activation. Where the plugin has
 * supports(), it is asked for every case first: a case it declines is listed (the core runs it
 * on the CPU reference in training), not failed.
 * End to end: a short training (ELM fit and one fine-tuning iteration on 300 random images, ops
 * the plugin lacks on the CPU reference) must give the reference's predictions for >= 97% of
 * the images. */
#ifndef CNNELM_PLUGIN_CHECK_H
#define CNNELM_PLUGIN_CHECK_H

#include <stdio.h>

#include "cnnelm/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cnnelm_plugin_check_options {
    int device;        /* device index to check */
    int verbose;       /* also the reference's time per call */
    double timeout_s;  /* per case (the end-to-end training gets 10x); <= 0: 60 s */
} cnnelm_plugin_check_options;

/* What the checks found: the N and M of the report's last line. */
typedef struct cnnelm_plugin_check_summary {
    int passed, failed;  /* checks; a plugin that does not load is one failed check */
} cnnelm_plugin_check_summary;

/* Checks the plugin file and prints a table (op, shape, max relative error, tolerance, speed
 * relative to the reference, result) to `out`, the slowest case, then the last line
 * "plugin-check: N passed, M failed" followed, when some failed, by ": op (why); ...".
 * Failed checks are an outcome, not an error: the call returns 0 once the checks ran and
 * *summary (may be NULL) says how many passed and failed; a negative status when the checker
 * cannot run (err set, e.g. no CPU reference). An op the plugin leaves NULL is listed as
 * running on the CPU reference, not as a failure. */
int cnnelm_plugin_check_run(const char *plugin_file, const cnnelm_plugin_check_options *opts, FILE *out,
                            cnnelm_plugin_check_summary *summary, cnnelm_error *err);

/* The same with the default time limit. */
int cnnelm_plugin_check(const char *plugin_file, int device, int verbose, FILE *out,
                        cnnelm_plugin_check_summary *summary, cnnelm_error *err);

#ifdef __cplusplus
}
#endif
#endif
