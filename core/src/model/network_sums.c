/* cnnelm network, the ELM sums: U = sum H^T H and V = sum H^T T of the loaded chunks on the
 * device, in float (elm_accumulate) or, with exact sums (train.sums = "double"), in double
 * (elm_accumulate_f64, or its CPU-reference fallback), then added into the host's double sums
 * once per ELM batch. The read back goes in blocks of rows, queued two at a time where the
 * backend can queue reads, so that adding one block on the host overlaps the next transfer. */
#include "model/network.h"
#include "model/network_internal.h"

#include <stdlib.h>
#include <string.h>

/* Bytes per read-back block: the device's preferred transfer size (ops.h), at least one row. */
static size_t block_rows(const cnnelm_net *net, size_t row_bytes)
{
    size_t want = cnnelm_op_transfer_bytes(&net->ops);
    size_t rows = want / row_bytes;
    return rows ? rows : 1;
}

size_t cnnelm_net_sums_stage_bytes(const cnnelm_net *net, size_t elem)
{
    size_t L = (size_t)net->arch.hidden, C = (size_t)net->arch.classes;
    size_t rows = block_rows(net, L * elem);
    if (2 * rows > L) /* two halves of at most all of U */
        rows = (L + 1) / 2;
    size_t bytes = 2 * rows * L * elem;
    return bytes < L * C * elem ? L * C * elem : bytes; /* V is read back whole */
}

int cnnelm_net_set_sums(cnnelm_net *net, int exact, cnnelm_error *err)
{
    if (!exact || net->u64)
        return 0;
    size_t L = (size_t)net->arch.hidden, C = (size_t)net->arch.classes;
    if (cnnelm_net_check_alloc(net, L * L * sizeof(double),
                               "U in double (train.sums = \"double\"; \"float\" needs half)", err))
        return -1;
    /* doubles: twice the floats' bytes */
    if (cnnelm_net_alloc(net, &net->u64, 2 * L * L, err) ||
        cnnelm_net_alloc(net, &net->v64, 2 * L * C, err))
        return -1;
    net->host_sums_bytes = cnnelm_net_sums_stage_bytes(net, sizeof(double));
    net->host_sums = malloc(net->host_sums_bytes);
    if (!net->host_sums)
        return cnnelm_fail(err, "out of memory for the exact ELM sums' read-back (%zu bytes)",
                           net->host_sums_bytes);
    /* planned like every other call: where it runs is decided now, not per chunk */
    net->planning = 1;
    net->n = net->chunk;
    int rc = 0;
    for (int s = 0; s < net->n_slots && rc == 0; s++) {
        cnnelm_op_call k = { .op = CNNELM_OP_ELM_ACCUMULATE_F64, .n = net->n, .l = (int)L,
                             .c = (int)C, .buf = { cnnelm_net_hidden_buffer(net), net->ts[s],
                                                   net->u64, net->v64 } };
        rc = cnnelm_net_run_op(net, &k, -1, err);
    }
    net->planning = 0;
    net->n = 0;
    if (rc != 0)
        return -1;
    net->exact_sums = 1;
    return cnnelm_net_reset_uv(net, err);
}

int cnnelm_net_reset_uv(cnnelm_net *net, cnnelm_error *err)
{
    size_t L = (size_t)net->arch.hidden, C = (size_t)net->arch.classes;
    if (net->exact_sums) { /* the float 0 fills doubles with zero bits: 0.0 */
        XFER("buffer_fill", cnnelm_op_fill, net->u64, 0, L * L * sizeof(double), 0.0f);
        XFER("buffer_fill", cnnelm_op_fill, net->v64, 0, L * C * sizeof(double), 0.0f);
        return 0;
    }
    XFER("buffer_fill", cnnelm_op_fill, net->u, 0, L * L * sizeof(float), 0.0f);
    XFER("buffer_fill", cnnelm_op_fill, net->v, 0, L * C * sizeof(float), 0.0f);
    return 0;
}

int cnnelm_net_accumulate(cnnelm_net *net, cnnelm_error *err)
{
    cnnelm_op_call k = { .op = net->exact_sums ? CNNELM_OP_ELM_ACCUMULATE_F64 : CNNELM_OP_ELM_ACCUMULATE,
                         .n = net->n, .l = net->arch.hidden, .c = net->arch.classes,
                         .buf = { cnnelm_net_hidden_buffer(net), net->t,
                                  net->exact_sums ? net->u64 : net->u,
                                  net->exact_sums ? net->v64 : net->v } };
    return cnnelm_net_run_op(net, &k, -1, err);
}

/* U's upper triangle, rows [r0, r1) of L floats or doubles at `blk`, added into the host's. */
static void add_rows(double *U, const void *blk, size_t r0, size_t r1, size_t L, int f64)
{
    for (size_t i = r0; i < r1; i++) {
        double *dst = U + i * L;
        if (f64) {
            const double *src = (const double *)blk + (i - r0) * L;
            for (size_t j = i; j < L; j++)
                dst[j] += src[j];
        } else {
            const float *src = (const float *)blk + (i - r0) * L;
            for (size_t j = i; j < L; j++)
                dst[j] += src[j];
        }
    }
}

/* U read back in blocks of rows into two halves of `stage`: while the host adds one block, the
 * next is queued (where the backend queues reads). */
static int add_u(cnnelm_net *net, double *U, const cnnelm_buffer *src, void *stage,
                 size_t stage_bytes, int f64, cnnelm_error *err)
{
    size_t L = (size_t)net->arch.hidden, es = f64 ? sizeof(double) : sizeof(float);
    size_t rows = stage_bytes / 2 / (L * es), want = block_rows(net, L * es);
    if (want < rows)
        rows = want;
    if (rows == 0)
        rows = 1;
    int two = cnnelm_op_can_queue_reads(&net->ops) && stage_bytes >= 2 * L * es;
    char *half[2] = { stage, (char *)stage + (two ? rows * L * es : 0) };
    size_t nb = (L + rows - 1) / rows;
    XFER("buffer_read", cnnelm_op_read_async, src, 0, half[0],
         (rows < L ? rows : L) * L * es);
    for (size_t b = 0; b < nb; b++) {
        size_t r0 = b * rows, r1 = r0 + rows < L ? r0 + rows : L;
        char why[512] = "";
        cnnelm_status st = cnnelm_op_sync(&net->ops, why, sizeof why);
        if (st != CNNELM_OK)
            return cnnelm_net_xfer_fail(net, st, "synchronize", why, err);
        if (b + 1 < nb && two) { /* the next block travels while this one is added */
            size_t n0 = r1, n1 = n0 + rows < L ? n0 + rows : L;
            XFER("buffer_read", cnnelm_op_read_async, src, n0 * L * es, half[(b + 1) % 2],
                 (n1 - n0) * L * es);
        }
        add_rows(U, half[two ? b % 2 : 0], r0, r1, L, f64);
        if (b + 1 < nb && !two) {
            size_t n0 = r1, n1 = n0 + rows < L ? n0 + rows : L;
            XFER("buffer_read", cnnelm_op_read, src, n0 * L * es, half[0], (n1 - n0) * L * es);
        }
    }
    return 0;
}

int cnnelm_net_add_uv(cnnelm_net *net, double *U, double *V, cnnelm_error *err)
{
    size_t L = (size_t)net->arch.hidden, C = (size_t)net->arch.classes;
    int f64 = net->exact_sums;
    void *stage = f64 ? (void *)net->host_sums : (void *)net->host_uv;
    size_t stage_bytes = f64 ? net->host_sums_bytes : cnnelm_net_sums_stage_bytes(net, sizeof(float));
    /* U is symmetric: only the upper triangle is summed (the solve reads only that one) */
    if (add_u(net, U, f64 ? net->u64 : net->u, stage, stage_bytes, f64, err) != 0)
        return -1;
    if (f64) {
        READ(net->v64, net->host_sums, L * C * sizeof(double));
        for (size_t i = 0; i < L * C; i++)
            V[i] += net->host_sums[i];
    } else {
        READ(net->v, net->host_uv, L * C * sizeof(float));
        for (size_t i = 0; i < L * C; i++)
            V[i] += net->host_uv[i];
    }
    /* the device sums start again from zero, so float only ever holds one batch */
    return cnnelm_net_reset_uv(net, err);
}
