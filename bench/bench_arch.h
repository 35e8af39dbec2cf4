/* cnnelm-bench-backend on any architecture (bench_arch.c): the default network's benchmark
 * generalised to the network `layers` with k x k kernels on 1x28x28 inputs, 10 classes. */
#ifndef CNNELM_BENCH_ARCH_H
#define CNNELM_BENCH_ARCH_H

#include "cnnelm/plugin.h"

/* Times the forward + U/V chain (do_fwd) and the training step (do_train) on an open context,
 * prints both with a per-op breakdown and returns images/s in *fwd_rate and *train_rate.
 * Returns -1 (message printed) when the architecture does not fit 28x28 inputs. */
int bench_arch_run(const cnnelm_backend *be, cnnelm_backend_ctx *ctx, const char *layers,
                   int kernel, int batch, int repeats, int do_fwd, int do_train, double *fwd_rate,
                   double *train_rate);

/* Prints the OpenBLAS build and the core kernel it chose (OPENBLAS_CORETYPE overrides it): the
 * library the CPU backend's matrix products run in. */
void bench_print_blas(void);

#endif
