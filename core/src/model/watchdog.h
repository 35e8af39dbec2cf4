/* cnnelm device-call watchdog: a network marks the device call it is in (op, shape, since
 * when); the worker pool reads the marks and gives up on a device whose call runs past
 * workers[i].op_timeout. A hung call cannot be interrupted: the device is marked abandoned,
 * every later call on it fails at once, and its thread and plugin are never touched again. */
#ifndef CNNELM_WATCHDOG_H
#define CNNELM_WATCHDOG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "model/ops.h"

typedef struct cnnelm_watch {
    atomic_flag lock;      /* guards the fields below; zero-initialised is clear */
    int64_t since_ns;      /* start of the current call, CLOCK_MONOTONIC; 0: not in one */
    char what[192];        /* "pool_forward (layer 2, n100 c6 24x24 s2 mean)" */
    int abandoned;         /* the pool gave up on this device */
} cnnelm_watch;

/* Marks the start of a device call: `op` its name, `layer` (-1: none), `call` its shape (may
 * be NULL, e.g. for a transfer). */
void cnnelm_watch_begin(cnnelm_watch *w, const char *op, int layer, const cnnelm_op_call *call);

/* Marks its end. Returns 0, or -1 when the device was abandoned meanwhile (the call's result
 * must not be used). */
int cnnelm_watch_end(cnnelm_watch *w);

/* For the pool: when the current call has run longer than `limit_s`, marks the device
 * abandoned, copies what the call is into `what` and returns 1; else 0. Atomic with
 * cnnelm_watch_end: a call that ends at that moment is either abandoned or not. */
int cnnelm_watch_expire(cnnelm_watch *w, double limit_s, char *what, size_t what_size);

int cnnelm_watch_abandoned(cnnelm_watch *w);

#endif
