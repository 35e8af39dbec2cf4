/* cnnelm op layer, internal: what ops.c (table, dispatch, checks), ops_transfer.c (buffers and
 * transfers) and ops_fallback.c (plan, run, CPU-reference fallback) share. Not for other files:
 * they use ops.h. */
#ifndef CNNELM_OPS_INTERNAL_H
#define CNNELM_OPS_INTERNAL_H

#include "model/ops.h"

/* The record of a live buffer of this context, or NULL (ops.c). */
const cnnelm_buf_record *cnnelm_op_find_record(const cnnelm_opctx *o, const cnnelm_buffer *b);

/* The same record, writable (ops_transfer.c). */
cnnelm_buf_record *cnnelm_op_record_of(cnnelm_opctx *o, const cnnelm_buffer *b);

/* The backend's last error into why, "no detail" when it has none (ops_transfer.c). */
void cnnelm_op_backend_why(cnnelm_opctx *o, char *why, size_t why_size);

/* Device copy up to date: copies a newer mirror back through the host (ops_fallback.c). */
cnnelm_status cnnelm_op_flush_mirror(cnnelm_opctx *o, cnnelm_buf_record *r, char *why,
                                     size_t why_size);

#endif
