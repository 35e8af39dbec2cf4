/* cnnelm op layer: buffers and transfers. Every buffer is allocated through here and recorded
 * with its size, so that each write, read and fill is checked against its range; a buffer whose
 * newest data a CPU-reference fallback wrote is flushed back first, or read from the reference
 * (the mirror state: ops_fallback.c). */
#include "model/ops.h"
#include "model/ops_internal.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

cnnelm_buf_record *cnnelm_op_record_of(cnnelm_opctx *o, const cnnelm_buffer *b)
{
    return (cnnelm_buf_record *)cnnelm_op_find_record(o, b);
}

cnnelm_status cnnelm_op_alloc(cnnelm_opctx *o, size_t bytes, cnnelm_buffer **out)
{
    *out = NULL;
    if (o->n_rec == o->cap_rec) {
        int cap = o->cap_rec ? 2 * o->cap_rec : 64;
        cnnelm_buf_record *r = realloc(o->rec, (size_t)cap * sizeof *r);
        if (!r)
            return CNNELM_ERR_OUT_OF_MEMORY;
        o->rec = r;
        o->cap_rec = cap;
    }
    cnnelm_status st = o->be->buffer_alloc(o->ctx, bytes, out);
    if (st != CNNELM_OK) {
        *out = NULL;
        return st;
    }
    o->rec[o->n_rec++] = (cnnelm_buf_record){ .handle = *out, .bytes = bytes };
    return CNNELM_OK;
}

static cnnelm_status range_check(cnnelm_opctx *o, const char *what, const cnnelm_buffer *b,
                                 size_t offset, size_t bytes, const void *host,
                                 cnnelm_buf_record **rec, char *why, size_t why_size)
{
    *rec = cnnelm_op_record_of(o, b);
    if (!*rec) {
        snprintf(why, why_size, "%s: not a live buffer of this context", what);
        return CNNELM_ERR_INVALID_ARGUMENT;
    }
    if (offset > (*rec)->bytes || bytes > (*rec)->bytes - offset || (!host && bytes)) {
        snprintf(why, why_size, "%s: %zu bytes at offset %zu do not fit in a buffer of %zu bytes",
                 what, bytes, offset, (*rec)->bytes);
        return CNNELM_ERR_INVALID_ARGUMENT;
    }
    return CNNELM_OK;
}

void cnnelm_op_backend_why(cnnelm_opctx *o, char *why, size_t why_size)
{
    const char *m = o->be->last_error(o->ctx);
    snprintf(why, why_size, "%s", m && *m ? m : "no detail");
}

/* A write (blocking or queued, by `fn`) of a checked range; a partial write keeps the rest of
 * the buffer as it is, so a newer mirror of it is flushed back first. A buffer with a mirror
 * is written to both sides. */
static cnnelm_status write_with(cnnelm_opctx *o, const char *what,
                                cnnelm_status (*fn)(cnnelm_backend_ctx *, cnnelm_buffer *, size_t,
                                                    const void *, size_t),
                                cnnelm_buffer *dst, size_t offset, const void *src, size_t bytes,
                                char *why, size_t why_size)
{
    cnnelm_buf_record *r;
    cnnelm_status st = range_check(o, what, dst, offset, bytes, src, &r, why, why_size);
    if (st == CNNELM_OK && (offset > 0 || bytes < r->bytes))
        st = cnnelm_op_flush_mirror(o, r, why, why_size);
    if (st != CNNELM_OK)
        return st;
    r->mirror_valid = 0;
    st = fn(o->ctx, dst, offset, src, bytes);
    if (st != CNNELM_OK) {
        cnnelm_op_backend_why(o, why, why_size);
        return st;
    }
    /* A buffer a fallback reads (it has a mirror) gets the host's data on the reference too:
     * one write now instead of a read from the device and a write when the fallback runs. */
    if (r->mirror && o->ref_ctx && offset == 0 && bytes > 0) {
        const cnnelm_backend *ref = o->reference->ops;
        if (ref->buffer_write(o->ref_ctx, r->mirror, 0, src, bytes) == CNNELM_OK)
            r->mirror_valid = bytes;
    }
    return CNNELM_OK;
}

cnnelm_status cnnelm_op_write(cnnelm_opctx *o, cnnelm_buffer *dst, size_t offset, const void *src,
                              size_t bytes, char *why, size_t why_size)
{
    return write_with(o, "buffer_write", o->be->buffer_write, dst, offset, src, bytes, why, why_size);
}

cnnelm_status cnnelm_op_write_async(cnnelm_opctx *o, cnnelm_buffer *dst, size_t offset,
                                    const void *src, size_t bytes, char *why, size_t why_size)
{
    if (!CNNELM_BACKEND_HAS(o->be, buffer_write_async) || !CNNELM_BACKEND_HAS(o->be, synchronize))
        return cnnelm_op_write(o, dst, offset, src, bytes, why, why_size);
    return write_with(o, "buffer_write_async", o->be->buffer_write_async, dst, offset, src, bytes,
                      why, why_size);
}

cnnelm_status cnnelm_op_sync(cnnelm_opctx *o, char *why, size_t why_size)
{
    if (!CNNELM_BACKEND_HAS(o->be, synchronize))
        return CNNELM_OK;
    cnnelm_status st = o->be->synchronize(o->ctx);
    if (st != CNNELM_OK)
        cnnelm_op_backend_why(o, why, why_size);
    return st;
}

static cnnelm_status read_with(cnnelm_opctx *o, int queued, const cnnelm_buffer *src, size_t offset,
                               void *dst, size_t bytes, char *why, size_t why_size)
{
    cnnelm_buf_record *r;
    cnnelm_status st = range_check(o, queued ? "buffer_read_async" : "buffer_read", src, offset,
                                   bytes, dst, &r, why, why_size);
    if (st != CNNELM_OK)
        return st;
    if (r->mirror_valid == SIZE_MAX) {
        /* the reference holds the newest data (a fallback wrote it): read it from there */
        st = o->reference->ops->buffer_read(o->ref_ctx, r->mirror, offset, dst, bytes);
        if (st != CNNELM_OK)
            snprintf(why, why_size, "the CPU reference failed: %s",
                     o->reference->ops->last_error(o->ref_ctx));
        return st;
    }
    st = queued ? o->be->buffer_read_async(o->ctx, src, offset, dst, bytes)
                : o->be->buffer_read(o->ctx, src, offset, dst, bytes);
    if (st != CNNELM_OK)
        cnnelm_op_backend_why(o, why, why_size);
    return st;
}

cnnelm_status cnnelm_op_read(cnnelm_opctx *o, const cnnelm_buffer *src, size_t offset, void *dst,
                             size_t bytes, char *why, size_t why_size)
{
    return read_with(o, 0, src, offset, dst, bytes, why, why_size);
}

int cnnelm_op_can_queue_reads(const cnnelm_opctx *o)
{
    return CNNELM_BACKEND_HAS(o->be, buffer_read_async) && CNNELM_BACKEND_HAS(o->be, synchronize);
}

cnnelm_status cnnelm_op_read_async(cnnelm_opctx *o, const cnnelm_buffer *src, size_t offset,
                                   void *dst, size_t bytes, char *why, size_t why_size)
{
    return read_with(o, cnnelm_op_can_queue_reads(o), src, offset, dst, bytes, why, why_size);
}

cnnelm_status cnnelm_op_copy(cnnelm_opctx *o, cnnelm_buffer *dst, size_t dst_offset,
                             const cnnelm_buffer *src, size_t src_offset, size_t bytes, char *why,
                             size_t why_size)
{
    cnnelm_buf_record *rd, *rs;
    cnnelm_status st = range_check(o, "buffer_copy", dst, dst_offset, bytes, "", &rd, why, why_size);
    if (st == CNNELM_OK)
        st = range_check(o, "buffer_copy", src, src_offset, bytes, "", &rs, why, why_size);
    if (st == CNNELM_OK && dst == src) {
        snprintf(why, why_size, "buffer_copy: source and destination are the same buffer");
        st = CNNELM_ERR_INVALID_ARGUMENT;
    }
    /* the device copies must be the newest: a fallback's newer mirror goes back first */
    if (st == CNNELM_OK)
        st = cnnelm_op_flush_mirror(o, rs, why, why_size);
    if (st == CNNELM_OK && (dst_offset > 0 || bytes < rd->bytes))
        st = cnnelm_op_flush_mirror(o, rd, why, why_size);
    if (st != CNNELM_OK)
        return st;
    rd->mirror_valid = 0;
    if (!CNNELM_BACKEND_HAS(o->be, buffer_copy))
        return CNNELM_ERR_UNSUPPORTED; /* the caller moves it through the host */
    st = o->be->buffer_copy(o->ctx, dst, dst_offset, src, src_offset, bytes);
    if (st != CNNELM_OK)
        cnnelm_op_backend_why(o, why, why_size);
    return st;
}

int cnnelm_op_can_copy(const cnnelm_opctx *o) { return CNNELM_BACKEND_HAS(o->be, buffer_copy); }

cnnelm_status cnnelm_op_fill(cnnelm_opctx *o, cnnelm_buffer *dst, size_t offset, size_t bytes,
                             float value, char *why, size_t why_size)
{
    cnnelm_buf_record *r;
    cnnelm_status st = range_check(o, "buffer_fill", dst, offset, bytes, "", &r, why, why_size);
    if (st == CNNELM_OK && bytes % sizeof(float)) {
        snprintf(why, why_size, "buffer_fill: %zu bytes is not a whole number of floats", bytes);
        st = CNNELM_ERR_INVALID_ARGUMENT;
    }
    if (st == CNNELM_OK && (offset > 0 || bytes < r->bytes))
        st = cnnelm_op_flush_mirror(o, r, why, why_size);
    if (st != CNNELM_OK)
        return st;
    r->mirror_valid = 0;
    if (CNNELM_BACKEND_HAS(o->be, buffer_fill)) {
        st = o->be->buffer_fill(o->ctx, dst, offset, bytes, value);
        if (st != CNNELM_OK) {
            cnnelm_op_backend_why(o, why, why_size);
            return st;
        }
        /* the sums a fallback accumulates (U, V) are zeroed on the reference too, rather than
         * crossing the device's zeros to it at the next chunk */
        const cnnelm_backend *ref = o->ref_ctx ? o->reference->ops : NULL;
        if (r->mirror && ref && offset == 0 && CNNELM_BACKEND_HAS(ref, buffer_fill) &&
            ref->buffer_fill(o->ref_ctx, r->mirror, 0, bytes, value) == CNNELM_OK)
            r->mirror_valid = bytes;
        return CNNELM_OK;
    }
    /* a 1.0 plugin: a host block of the value, written */
    float *block = malloc(bytes ? bytes : 1);
    if (!block) {
        snprintf(why, why_size, "out of host memory for a fill of %zu bytes", bytes);
        return CNNELM_ERR_OUT_OF_MEMORY;
    }
    for (size_t i = 0; i < bytes / sizeof(float); i++)
        block[i] = value;
    st = o->be->buffer_write(o->ctx, dst, offset, block, bytes);
    free(block);
    if (st != CNNELM_OK)
        cnnelm_op_backend_why(o, why, why_size);
    return st;
}
