/* cnnelm network, internal: what network.c (open, close, buffers), network_run.c (the runs and
 * the plan), network_load.c (chunks into host slots) and network_features.c (the multi-scale
 * and "-sqrt" host step) share. Not for other
 * files: they use network.h. */
#ifndef CNNELM_NETWORK_INTERNAL_H
#define CNNELM_NETWORK_INTERNAL_H

#include "model/network.h"

/* A transfer (or fill, sync) through the op layer, which checks its range. */
int cnnelm_net_xfer_fail(cnnelm_net *net, cnnelm_status st, const char *what, const char *why,
                         cnnelm_error *err);
#define XFER(what, fn, ...)                                                             \
    do {                                                                                \
        char why_[512] = "";                                                            \
        cnnelm_status st_ = fn(&net->ops, __VA_ARGS__, why_, sizeof why_);              \
        if (st_ != CNNELM_OK)                                                           \
            return cnnelm_net_xfer_fail(net, st_, what, why_, err);                     \
    } while (0)
#define WRITE(buf, src, bytes) XFER("buffer_write", cnnelm_op_write, buf, 0, src, bytes)
#define READ(buf, dst, bytes) XFER("buffer_read", cnnelm_op_read, buf, 0, dst, bytes)

/* The device's limits applied when the network opens (network_limits.c): the op layer's slice
 * size, net->max_alloc, and the chunk lowered so that every per-chunk buffer fits; an error
 * when U cannot fit. */
int cnnelm_net_apply_limits(cnnelm_net *net, const cnnelm_plugin *plugin, int device,
                            cnnelm_error *err);
/* An error naming `what` when `bytes` exceed the device's largest allocation, else 0. */
int cnnelm_net_check_alloc(const cnnelm_net *net, size_t bytes, const char *what, cnnelm_error *err);

/* A device buffer of `floats` floats through the op layer (recorded, so calls can be checked). */
int cnnelm_net_alloc(cnnelm_net *net, cnnelm_buffer **b, size_t floats, cnnelm_error *err);

/* Runs one op through the dispatcher (which falls back to the CPU reference when it must), or
 * plans it while net->planning (network_run.c). layer < 0: not a layer's op. */
int cnnelm_net_run_op(cnnelm_net *net, cnnelm_op_call *k, int layer, cnnelm_error *err);

/* Host bytes that hold U's read-back (two blocks of rows, of the device's preferred transfer
 * size) and V's, in elements of `elem` bytes (network_sums.c). */
size_t cnnelm_net_sums_stage_bytes(const cnnelm_net *net, size_t elem);

/* The buffer holding H (after the ELM activation, or the gathered group, or the last layer). */
cnnelm_buffer *cnnelm_net_hidden_buffer(const cnnelm_net *net);

/* Every call a run makes, at the full chunk, checked and planned once (network_run.c). */
int cnnelm_net_plan_all(cnnelm_net *net, cnnelm_error *err);

/* The multi-scale / "-sqrt" hidden features gathered on the host into hcat (network_features.c). */
int cnnelm_net_gather_hidden(cnnelm_net *net, cnnelm_error *err);

/* Loading chunks (network_load.c). Examples rows[first .. first+n) of ds fetched and widened
 * into host slot `slot` (its floats, one-hot targets and labels); touches nothing else, so the
 * loader thread can run it while the caller drives the device. */
int cnnelm_net_load_slot(cnnelm_net *net, int slot, const cnnelm_dataset *ds, const size_t *rows,
                         size_t first, int n, cnnelm_error *err);
/* Asks the loader thread for that load (nothing when no thread can be had). */
void cnnelm_net_load_ahead(cnnelm_net *net, int slot, const cnnelm_dataset *ds, const size_t *rows,
                           size_t first, int n);
/* Waits for the loader; 1: the load asked for is in the slot, -1: it failed (err says why), 0:
 * none was asked for (another load ahead is dropped): the caller loads it itself. */
int cnnelm_net_take_loaded(cnnelm_net *net, int slot, const cnnelm_dataset *ds, const size_t *rows,
                           size_t first, int n, cnnelm_error *err);
/* Stops and joins the loader thread (net close). */
void cnnelm_net_loader_close(cnnelm_net *net);

#endif
