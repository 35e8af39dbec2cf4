/* cnnelm op layer: the plan and the run of one call, and the CPU-reference fallback. A call runs
 * on the backend, or, when the backend lacks the op (a NULL slot, supports() says no, or
 * CNNELM_ERR_UNSUPPORTED), on the CPU reference: its buffers cross to reference mirrors through a
 * host bounce buffer (`cross`) and its outputs stay there until the backend or the host needs
 * them. cnnelm_op_plan decides where each op runs once, before a run. */
#include "model/ops.h"
#include "model/ops_internal.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* mirror_valid: 0 the mirror is stale; n the mirror's first n bytes equal the device's;
 * SIZE_MAX the mirror is newer than the device (a fallback wrote it; flushed when the backend or
 * a transfer needs the device copy). */

/* Data crosses between the backend and the reference through the host in slices of
 * cnnelm_op_transfer_bytes: on a host-memory device a small slice read from one side is still
 * in the cache when it is written to the other, so a crossing costs about one copy's worth of
 * memory traffic, not two (chunks of activations are megabytes, larger than the caches); a
 * device across a bus says how large its transfers should be (device_limits). */

size_t cnnelm_op_transfer_bytes(const cnnelm_opctx *o)
{
    return o->transfer_bytes ? o->transfer_bytes : CNNELM_OP_DEFAULT_SLICE;
}

/* The bounce buffer: one slice (or less when every buffer is smaller), made once. */
static cnnelm_status ensure_host(cnnelm_opctx *o, size_t bytes)
{
    if (bytes > cnnelm_op_transfer_bytes(o))
        bytes = cnnelm_op_transfer_bytes(o);
    if (bytes <= o->host_bytes)
        return CNNELM_OK;
    void *h = realloc(o->host, bytes);
    if (!h)
        return CNNELM_ERR_OUT_OF_MEMORY;
    o->host = h;
    o->host_bytes = bytes;
    return CNNELM_OK;
}

/* Copies `bytes` at `offset` of r between the backend's buffer and its mirror, slice by slice
 * (to_mirror: backend -> reference; else back). On failure `why` names the side that failed. */
static cnnelm_status cross(cnnelm_opctx *o, cnnelm_buf_record *r, int to_mirror, size_t offset,
                           size_t bytes, char *why, size_t why_size)
{
    const cnnelm_backend *ref = o->reference->ops;
    if (ensure_host(o, bytes) != CNNELM_OK) {
        snprintf(why, why_size, "out of host memory for a fallback's bounce buffer");
        return CNNELM_ERR_OUT_OF_MEMORY;
    }
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < o->host_bytes ? bytes - done : o->host_bytes;
        cnnelm_status st;
        if (to_mirror) {
            if ((st = o->be->buffer_read(o->ctx, r->handle, offset + done, o->host, n)) != CNNELM_OK) {
                snprintf(why, why_size, "the backend failed, moving data for a CPU fallback: %s",
                         o->be->last_error(o->ctx));
                return st;
            }
            if ((st = ref->buffer_write(o->ref_ctx, r->mirror, offset + done, o->host, n)) != CNNELM_OK) {
                snprintf(why, why_size, "the CPU reference failed: %s", ref->last_error(o->ref_ctx));
                return st;
            }
        } else {
            if ((st = ref->buffer_read(o->ref_ctx, r->mirror, offset + done, o->host, n)) != CNNELM_OK) {
                snprintf(why, why_size, "the CPU reference failed, moving data back: %s",
                         ref->last_error(o->ref_ctx));
                return st;
            }
            if ((st = o->be->buffer_write(o->ctx, r->handle, offset + done, o->host, n)) != CNNELM_OK) {
                snprintf(why, why_size, "the backend failed, moving data from a CPU fallback: %s",
                         o->be->last_error(o->ctx));
                return st;
            }
        }
        done += n;
    }
    return CNNELM_OK;
}

static cnnelm_status ensure_reference(cnnelm_opctx *o, char *why, size_t why_size)
{
    if (o->ref_ctx)
        return CNNELM_OK;
    if (!o->reference && o->source.load) {
        cnnelm_error err = { "" };
        o->reference = o->source.load(o->source.user, &err);
        if (!o->reference) {
            snprintf(why, why_size, "the CPU reference backend is needed for a fallback but "
                     "cannot be loaded: %s", err.msg);
            return CNNELM_ERR_UNSUPPORTED;
        }
    }
    if (!o->reference || o->reference->ops == o->be) {
        snprintf(why, why_size, "not supported by this backend, and no CPU reference to fall back to");
        return CNNELM_ERR_UNSUPPORTED;
    }
    const cnnelm_backend *ref = o->reference->ops;
    cnnelm_context_params p = { .struct_size = sizeof p, .threads = o->threads };
    char e[256] = "";
    cnnelm_status st = ref->context_open(0, &p, &o->ref_ctx, e, sizeof e);
    if (st != CNNELM_OK) {
        o->ref_ctx = NULL;
        snprintf(why, why_size, "cannot open the CPU reference for a fallback: %s", e);
    }
    return st;
}

static cnnelm_status ensure_mirror(cnnelm_opctx *o, cnnelm_buf_record *r, char *why, size_t why_size)
{
    if (r->mirror)
        return CNNELM_OK;
    cnnelm_status st = o->reference->ops->buffer_alloc(o->ref_ctx, r->bytes, &r->mirror);
    if (st != CNNELM_OK) {
        r->mirror = NULL;
        snprintf(why, why_size, "the CPU reference failed: %s",
                 o->reference->ops->last_error(o->ref_ctx));
    }
    return st;
}

/* Device copy up to date: copies a newer mirror back (through the host). */
cnnelm_status cnnelm_op_flush_mirror(cnnelm_opctx *o, cnnelm_buf_record *r, char *why, size_t why_size)
{
    if (r->mirror_valid != SIZE_MAX)
        return CNNELM_OK;
    cnnelm_status st = cross(o, r, 0, 0, r->bytes, why, why_size);
    if (st == CNNELM_OK)
        r->mirror_valid = r->bytes;
    return st;
}

/* Reference buffers for the call's buffers, and the bounce buffer, made once. */
static cnnelm_status prepare_fallback(cnnelm_opctx *o, const cnnelm_op_call *k,
                                      cnnelm_buf_record **recs, char *why, size_t why_size)
{
    cnnelm_status st = ensure_reference(o, why, why_size);
    if (st != CNNELM_OK)
        return st;
    const cnnelm_op_desc *d = cnnelm_op_describe(k->op);
    for (int i = 0; i < d->n_buffers; i++) {
        recs[i] = cnnelm_op_record_of(o, k->buf[i]);
        if ((st = ensure_mirror(o, recs[i], why, why_size)) != CNNELM_OK)
            return st;
        if (ensure_host(o, recs[i]->bytes) != CNNELM_OK) {
            snprintf(why, why_size, "out of host memory for a fallback's bounce buffer");
            return CNNELM_ERR_OUT_OF_MEMORY;
        }
    }
    return CNNELM_OK;
}

static cnnelm_status fallback(cnnelm_opctx *o, const cnnelm_op_call *k, char *why, size_t why_size)
{
    cnnelm_buf_record *recs[CNNELM_OP_MAX_BUFFERS] = { 0 };
    cnnelm_status st = prepare_fallback(o, k, recs, why, why_size);
    if (st != CNNELM_OK)
        return st;
    const cnnelm_backend *ref = o->reference->ops;
    size_t bytes[6];
    unsigned in = 0, out = 0;
    int nb = cnnelm_op_layout(k, bytes, &in, &out);
    cnnelm_buffer *rb[6] = { 0 };
    for (int i = 0; i < nb; i++) {
        cnnelm_buf_record *r = recs[i];
        rb[i] = r->mirror;
        if (!(in >> i & 1u) || r->mirror_valid >= bytes[i])
            continue; /* not read, or the mirror already holds it */
        if ((st = cross(o, r, 1, 0, bytes[i], why, why_size)) != CNNELM_OK)
            return st;
        r->mirror_valid = bytes[i];
    }
    st = cnnelm_op_dispatch(ref, o->ref_ctx, k, rb);
    if (st != CNNELM_OK) {
        snprintf(why, why_size, "the CPU reference failed: %s", ref->last_error(o->ref_ctx));
        return st;
    }
    /* Outputs stay on the reference until the backend or the host needs them. A partly
     * written buffer (the tensor smaller than the buffer) is whole on neither side: copy its
     * device rest first, so that the mirror is the newest whole copy. */
    for (int i = 0; i < nb; i++)
        if (out >> i & 1u) {
            cnnelm_buf_record *r = recs[i];
            if (bytes[i] < r->bytes && r->mirror_valid < r->bytes && r->mirror_valid != SIZE_MAX) {
                if ((st = cross(o, r, 1, bytes[i], r->bytes - bytes[i], why, why_size)) != CNNELM_OK)
                    return st;
            }
            r->mirror_valid = SIZE_MAX;
        }
    o->fell_back |= 1u << k->op;
    return CNNELM_OK;
}

cnnelm_status cnnelm_op_plan(cnnelm_opctx *o, const cnnelm_op_call *k, char *why, size_t why_size)
{
    cnnelm_status st = cnnelm_op_validate(o, k, why, why_size);
    if (st != CNNELM_OK)
        return st;
    int falls_back = !cnnelm_op_has_slot(o->be, k->op);
    if (!falls_back && CNNELM_BACKEND_HAS(o->be, supports)) {
        cnnelm_op_params p;
        cnnelm_op_params_of(k, &p);
        falls_back = o->be->supports(o->ctx, &p) == CNNELM_ERR_UNSUPPORTED;
    }
    if (!falls_back)
        return CNNELM_OK;
    o->planned_fallback |= 1u << k->op;
    cnnelm_buf_record *recs[CNNELM_OP_MAX_BUFFERS];
    return prepare_fallback(o, k, recs, why, why_size);
}

cnnelm_status cnnelm_op_run(cnnelm_opctx *o, const cnnelm_op_call *k, char *why, size_t why_size)
{
    cnnelm_status st = cnnelm_op_validate(o, k, why, why_size);
    if (st != CNNELM_OK)
        return st;
    if (o->planned_fallback >> k->op & 1u)
        return fallback(o, k, why, why_size);
    size_t bytes[6];
    unsigned in = 0, out = 0;
    int nb = cnnelm_op_layout(k, bytes, &in, &out);
    cnnelm_buf_record *recs[6] = { 0 };
    for (int i = 0; i < nb; i++) {
        recs[i] = cnnelm_op_record_of(o, k->buf[i]);
        /* every buffer, not only inputs: an output may be written only in part */
        if ((st = cnnelm_op_flush_mirror(o, recs[i], why, why_size)) != CNNELM_OK)
            return st;
    }
    st = cnnelm_op_dispatch(o->be, o->ctx, k, k->buf);
    if (st == CNNELM_OK) {
        for (int i = 0; i < nb; i++)
            if (out >> i & 1u)
                recs[i]->mirror_valid = 0;
        return CNNELM_OK;
    }
    if (st == CNNELM_ERR_UNSUPPORTED)
        return fallback(o, k, why, why_size);
    cnnelm_op_backend_why(o, why, why_size);
    return st;
}

void cnnelm_opctx_close(cnnelm_opctx *o)
{
    if (o->ref_ctx)
        o->reference->ops->context_close(o->ref_ctx); /* frees the mirrors */
    o->ref_ctx = NULL;
    free(o->rec);
    o->rec = NULL;
    o->n_rec = o->cap_rec = 0;
    free(o->host);
    o->host = NULL;
    o->host_bytes = 0;
}
