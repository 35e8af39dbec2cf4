/* cnnelm memory plan: what a training run will hold (ELM sums in double, solve workspace,
 * device buffers per worker, per-partition models), said before the run and checked against
 * the memory available so that a wide model is refused in words instead of killed. */
#ifndef CNNELM_MEMORY_PLAN_H
#define CNNELM_MEMORY_PLAN_H

#include <stddef.h>

#include "cnnelm/config.h"
#include "cnnelm/model.h"

typedef struct cnnelm_memory_plan {
    int workers, partitions;
    double device_per_worker;  /* the network's device buffers (activations, U, V, ...) */
    double host_per_worker;    /* host staging of one worker: chunk, U and V in float */
    double solve_per_worker;   /* the solve: I/lambda + U in double (+ eigenvectors for "auto") */
    double model;              /* one model: kernels, beta, U and V in double */
    double models;             /* whole models held at once: initial, one in training per worker,
                                * reduced, single */
    double sums;               /* the reduce's order-independent sums: 16 bytes a value for the
                                * upper triangle of U, V, kernels and beta (not for refit; k > 1) */
    double data_held;          /* streamed image files data.hold_mb will read whole (the
                                * in-memory sets are loaded already: MemAvailable has them) */
    double host_total;         /* on the host, counting CPU workers' device buffers */
    double device_total;       /* on other devices (not on the host) */
} cnnelm_memory_plan;

/* The plan of a `cnnelm train` run of cfg on arch. */
void cnnelm_memory_plan_make(const cnnelm_config *cfg, const cnnelm_arch *arch,
                             cnnelm_memory_plan *p);

/* Adds the bytes data.hold_mb will hold (cnnelm_stream_hold_bytes) to the plan. */
void cnnelm_memory_plan_add_data(cnnelm_memory_plan *p, double bytes);

/* Bytes of memory available: MemAvailable from /proc/meminfo; 0 when unknown. */
double cnnelm_memory_available(void);

/* Writes one line saying the plan (for the log) into line; returns 0, or -1 (err set, a
 * message naming the largest parts) when host_total exceeds limit_bytes, or, with limit_bytes
 * 0, the memory available. */
int cnnelm_memory_plan_check(const cnnelm_memory_plan *p, double limit_bytes, char *line,
                             size_t line_size, cnnelm_error *err);

#endif
