/* cnnelm op dispatch, argument checks and CPU-reference fallback, generated from the op table
 * (see ops.h and plugins/include/cnnelm/backend_ops.h). */
#include "model/ops.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the op table as data ----------------------------------------------------------------- */

static const cnnelm_op_desc op_table[CNNELM_OP_COUNT] = {
#define OP_ROW(op_, slot_, args_, nbuf, opt)                                               \
    [CNNELM_OP_##op_] = { .id = CNNELM_OP_##op_, .name = #slot_,                           \
                         .slot = offsetof(cnnelm_backend, slot_), .args = CNNELM_OPARGS_##args_, \
                         .n_buffers = nbuf, .optional = opt },
    CNNELM_OP_LIST(OP_ROW)
#undef OP_ROW
};

static const struct buffer_row {
    cnnelm_op_id op;
    int index;
    cnnelm_op_buffer_desc desc;
} buffer_rows[] = {
#define BUF_ROW(id, idx, name_, size_, role_, alias_)                                      \
    { CNNELM_OP_##id, idx, { #name_, CNNELM_OPSIZE_##size_, CNNELM_OPROLE_##role_, alias_ } },
    CNNELM_OP_BUFFER_LIST(BUF_ROW)
#undef BUF_ROW
};

static cnnelm_op_desc full_table[CNNELM_OP_COUNT];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void)
{
    memcpy(full_table, op_table, sizeof full_table);
    for (size_t i = 0; i < sizeof buffer_rows / sizeof buffer_rows[0]; i++)
        full_table[buffer_rows[i].op].buf[buffer_rows[i].index] = buffer_rows[i].desc;
}

const cnnelm_op_desc *cnnelm_op_describe(cnnelm_op_id op)
{
    if ((unsigned)op >= CNNELM_OP_COUNT)
        return NULL;
    pthread_once(&table_once, build_table);
    return &full_table[op];
}

const char *cnnelm_op_name(cnnelm_op_id op)
{
    return (unsigned)op < CNNELM_OP_COUNT ? op_table[op].name : "unknown op";
}

/* ---- dispatch ------------------------------------------------------------------------------ */

/* The slot's arguments before and after the buffers, per args kind. */
#define ARGS_CONV_ACT(k) &(k)->conv, (k)->act,
#define ARGS_CONV(k) &(k)->conv,
#define ARGS_CONV_ACC(k) &(k)->conv,
#define ARGS_POOL(k) &(k)->pool, (k)->mode,
#define ARGS_ACT(k) (k)->act, (k)->count,
#define ARGS_ELM(k) (k)->n, (k)->l, (k)->c,
#define ARGS_SOLVE(k) (k)->l, (k)->c, (k)->lambda,
#define TAIL_CONV_ACT(k)
#define TAIL_CONV(k)
#define TAIL_CONV_ACC(k) , (k)->accumulate
#define TAIL_POOL(k)
#define TAIL_ACT(k)
#define TAIL_ELM(k)
#define TAIL_SOLVE(k)
#define BUFS_2(b) b[0], b[1]
#define BUFS_3(b) b[0], b[1], b[2]
#define BUFS_4(b) b[0], b[1], b[2], b[3]

cnnelm_status cnnelm_op_dispatch(const cnnelm_backend *be, cnnelm_backend_ctx *ctx,
                                 const cnnelm_op_call *k, cnnelm_buffer *const *b)
{
    switch (k->op) {
#define OP_CASE(id, slot, args, nbuf, opt)                                                 \
    case CNNELM_OP_##id:                                                                   \
        if (!be->slot)                                                                     \
            return CNNELM_ERR_UNSUPPORTED;                                                 \
        return be->slot(ctx, ARGS_##args(k) BUFS_##nbuf(b) TAIL_##args(k));
        CNNELM_OP_LIST(OP_CASE)
#undef OP_CASE
    case CNNELM_OP_COUNT: break;
    }
    return CNNELM_ERR_INVALID_ARGUMENT;
}

/* ---- sizes --------------------------------------------------------------------------------- */

/* Product of non-negative ints times sizeof(float) in 64 bits; SIZE_MAX when it overflows or a
 * factor is negative. */
static size_t bytes_of(int n_factors, const long long *f)
{
    unsigned long long v = sizeof(float);
    for (int i = 0; i < n_factors; i++) {
        if (f[i] < 0 || __builtin_mul_overflow(v, (unsigned long long)f[i], &v))
            return SIZE_MAX;
    }
    return v > SIZE_MAX ? SIZE_MAX : (size_t)v;
}
#define BYTES(...) bytes_of((int)(sizeof((long long[]){ __VA_ARGS__ }) / sizeof(long long)), \
                            (long long[]){ __VA_ARGS__ })

static size_t size_of(const cnnelm_op_call *k, int kind)
{
    const cnnelm_conv_shape *s = &k->conv;
    const cnnelm_pool_shape *p = &k->pool;
    switch (kind) {
    case CNNELM_OPSIZE_CONV_X: return BYTES(s->n, s->c_in, s->h, s->w);
    case CNNELM_OPSIZE_CONV_W: return BYTES(s->c_out, s->c_in, s->k, s->k);
    case CNNELM_OPSIZE_CONV_B: return BYTES(s->c_out);
    case CNNELM_OPSIZE_CONV_Y:
        return BYTES(s->n, s->c_out, (long long)s->h - s->k + 1, (long long)s->w - s->k + 1);
    case CNNELM_OPSIZE_POOL_X: return BYTES(p->n, p->c, p->h, p->w);
    case CNNELM_OPSIZE_POOL_Y:
        return p->s > 0 ? BYTES(p->n, p->c, p->h / p->s, p->w / p->s) : SIZE_MAX;
    case CNNELM_OPSIZE_COUNT:
        return k->count > (size_t)(SIZE_MAX / sizeof(float)) ? SIZE_MAX : k->count * sizeof(float);
    case CNNELM_OPSIZE_NL: return BYTES(k->n, k->l);
    case CNNELM_OPSIZE_NC: return BYTES(k->n, k->c);
    case CNNELM_OPSIZE_LL: return BYTES(k->l, k->l);
    case CNNELM_OPSIZE_LC: return BYTES(k->l, k->c);
    }
    return SIZE_MAX;
}

int cnnelm_op_layout(const cnnelm_op_call *k, size_t bytes[6], unsigned *in, unsigned *out)
{
    memset(bytes, 0, 6 * sizeof bytes[0]);
    *in = *out = 0;
    const cnnelm_op_desc *d = cnnelm_op_describe(k->op);
    if (!d)
        return 0;
    for (int i = 0; i < d->n_buffers; i++) {
        int role = d->buf[i].role;
        bytes[i] = size_of(k, d->buf[i].size);
        if (role == CNNELM_OPROLE_IN || role == CNNELM_OPROLE_INOUT ||
            (role == CNNELM_OPROLE_ACC && k->accumulate))
            *in |= 1u << i;
        if (role != CNNELM_OPROLE_IN)
            *out |= 1u << i;
    }
    return d->n_buffers;
}

void cnnelm_op_params_of(const cnnelm_op_call *k, cnnelm_op_params *p)
{
    *p = (cnnelm_op_params){ .struct_size = sizeof *p, .op = k->op, .conv = k->conv,
                             .pool = k->pool, .act = k->act, .mode = k->mode, .count = k->count,
                             .n = k->n, .l = k->l, .c = k->c, .accumulate = k->accumulate,
                             .lambda = k->lambda };
}

/* ---- checks -------------------------------------------------------------------------------- */

static void shape_text(const cnnelm_op_call *k, int args, char *out, size_t size)
{
    const cnnelm_conv_shape *s = &k->conv;
    const cnnelm_pool_shape *p = &k->pool;
    switch (args) {
    case CNNELM_OPARGS_CONV_ACT: case CNNELM_OPARGS_CONV: case CNNELM_OPARGS_CONV_ACC:
        snprintf(out, size, "n=%d c_in=%d h=%d w=%d c_out=%d k=%d", s->n, s->c_in, s->h, s->w,
                 s->c_out, s->k);
        break;
    case CNNELM_OPARGS_POOL:
        snprintf(out, size, "n=%d c=%d h=%d w=%d s=%d", p->n, p->c, p->h, p->w, p->s);
        break;
    case CNNELM_OPARGS_ACT: snprintf(out, size, "count=%zu", k->count); break;
    case CNNELM_OPARGS_ELM: snprintf(out, size, "n=%d l=%d c=%d", k->n, k->l, k->c); break;
    default: snprintf(out, size, "l=%d c=%d lambda=%g", k->l, k->c, k->lambda); break;
    }
}

static const cnnelm_buf_record *find_record(const cnnelm_opctx *o, const cnnelm_buffer *b)
{
    for (int i = 0; i < o->n_rec; i++)
        if (o->rec[i].handle == b)
            return &o->rec[i];
    return NULL;
}

static int valid_act(cnnelm_activation a) { return (unsigned)a <= CNNELM_ACT_OPTTANH; }

/* The shape rule the call breaks, or NULL. */
static const char *shape_rule(const cnnelm_op_call *k, int args)
{
    const cnnelm_conv_shape *s = &k->conv;
    const cnnelm_pool_shape *p = &k->pool;
    switch (args) {
    case CNNELM_OPARGS_CONV_ACT:
        if (!valid_act(k->act))
            return "unknown activation";
        /* fall through */
    case CNNELM_OPARGS_CONV: case CNNELM_OPARGS_CONV_ACC:
        if (s->n <= 0 || s->c_in <= 0 || s->h <= 0 || s->w <= 0 || s->c_out <= 0 || s->k <= 0)
            return "every size must be positive";
        if (s->k > s->h || s->k > s->w)
            return "the kernel is larger than the input";
        return NULL;
    case CNNELM_OPARGS_POOL:
        if ((unsigned)k->mode > CNNELM_POOL_MAX)
            return "unknown pooling mode";
        if (p->n <= 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->s <= 0)
            return "every size must be positive";
        if (p->h % p->s || p->w % p->s)
            return "h and w must be multiples of s";
        return NULL;
    case CNNELM_OPARGS_ACT:
        if (!valid_act(k->act))
            return "unknown activation";
        return k->count == 0 ? "count must be positive" : NULL;
    case CNNELM_OPARGS_ELM:
        return k->n <= 0 || k->l <= 0 || k->c <= 0 ? "n, l and c must be positive" : NULL;
    default:
        if (k->l <= 0 || k->c <= 0)
            return "l and c must be positive";
        return !(k->lambda > 0) || isinf(k->lambda) ? "lambda must be positive and finite" : NULL;
    }
}

cnnelm_status cnnelm_op_validate(const cnnelm_opctx *o, const cnnelm_op_call *k, char *why,
                                 size_t why_size)
{
    const cnnelm_op_desc *d = cnnelm_op_describe(k->op);
    if (!d) {
        snprintf(why, why_size, "op %d is not in the op table", (int)k->op);
        return CNNELM_ERR_INVALID_ARGUMENT;
    }
    char shape[160];
    shape_text(k, d->args, shape, sizeof shape);
    const char *rule = shape_rule(k, d->args);
    if (rule) {
        snprintf(why, why_size, "%s: %s (%s)", d->name, rule, shape);
        return CNNELM_ERR_INVALID_ARGUMENT;
    }
    size_t bytes[6];
    unsigned in, out;
    cnnelm_op_layout(k, bytes, &in, &out);
    for (int i = 0; i < d->n_buffers; i++) {
        const char *name = d->buf[i].name;
        if (bytes[i] == SIZE_MAX) {
            snprintf(why, why_size, "%s: buffer %s of shape %s overflows 64-bit sizes", d->name,
                     name, shape);
            return CNNELM_ERR_INVALID_ARGUMENT;
        }
        if (!k->buf[i]) {
            snprintf(why, why_size, "%s: buffer %s is NULL (%s)", d->name, name, shape);
            return CNNELM_ERR_INVALID_ARGUMENT;
        }
        if (o) {
            const cnnelm_buf_record *r = find_record(o, k->buf[i]);
            if (!r) {
                snprintf(why, why_size, "%s: buffer %s is not a live buffer of this context (%s)",
                         d->name, name, shape);
                return CNNELM_ERR_INVALID_ARGUMENT;
            }
            if (r->bytes < bytes[i]) {
                snprintf(why, why_size, "%s: buffer %s holds %zu bytes, shape %s needs %zu",
                         d->name, name, r->bytes, shape, bytes[i]);
                return CNNELM_ERR_INVALID_ARGUMENT;
            }
        }
    }
    for (int i = 0; i < d->n_buffers; i++) {
        if (!(out >> i & 1u))
            continue;
        for (int j = 0; j < d->n_buffers; j++)
            if (j != i && k->buf[j] == k->buf[i] && d->buf[i].alias != j) {
                snprintf(why, why_size, "%s: output %s is the same buffer as %s %s (%s)", d->name,
                         d->buf[i].name, out >> j & 1u ? "output" : "input", d->buf[j].name, shape);
                return CNNELM_ERR_INVALID_ARGUMENT;
            }
    }
    return CNNELM_OK;
}

/* ---- buffers and transfers ---------------------------------------------------------------- */

static cnnelm_buf_record *record_of(cnnelm_opctx *o, const cnnelm_buffer *b)
{
    return (cnnelm_buf_record *)find_record(o, b);
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
    *rec = record_of(o, b);
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

static void backend_why(cnnelm_opctx *o, char *why, size_t why_size)
{
    const char *m = o->be->last_error(o->ctx);
    snprintf(why, why_size, "%s", m && *m ? m : "no detail");
}

static cnnelm_status flush_mirror(cnnelm_opctx *o, cnnelm_buf_record *r, char *why, size_t why_size);

cnnelm_status cnnelm_op_write(cnnelm_opctx *o, cnnelm_buffer *dst, size_t offset, const void *src,
                              size_t bytes, char *why, size_t why_size)
{
    cnnelm_buf_record *r;
    cnnelm_status st = range_check(o, "buffer_write", dst, offset, bytes, src, &r, why, why_size);
    if (st == CNNELM_OK && (offset > 0 || bytes < r->bytes))
        st = flush_mirror(o, r, why, why_size); /* the rest of the buffer must stay as it is */
    if (st != CNNELM_OK)
        return st;
    r->mirror_valid = 0;
    st = o->be->buffer_write(o->ctx, dst, offset, src, bytes);
    if (st != CNNELM_OK)
        backend_why(o, why, why_size);
    return st;
}

cnnelm_status cnnelm_op_write_async(cnnelm_opctx *o, cnnelm_buffer *dst, size_t offset,
                                    const void *src, size_t bytes, char *why, size_t why_size)
{
    if (!CNNELM_BACKEND_HAS(o->be, buffer_write_async) || !CNNELM_BACKEND_HAS(o->be, synchronize))
        return cnnelm_op_write(o, dst, offset, src, bytes, why, why_size);
    cnnelm_buf_record *r;
    cnnelm_status st = range_check(o, "buffer_write_async", dst, offset, bytes, src, &r, why, why_size);
    if (st == CNNELM_OK && (offset > 0 || bytes < r->bytes))
        st = flush_mirror(o, r, why, why_size);
    if (st != CNNELM_OK)
        return st;
    r->mirror_valid = 0;
    st = o->be->buffer_write_async(o->ctx, dst, offset, src, bytes);
    if (st != CNNELM_OK)
        backend_why(o, why, why_size);
    return st;
}

cnnelm_status cnnelm_op_sync(cnnelm_opctx *o, char *why, size_t why_size)
{
    if (!CNNELM_BACKEND_HAS(o->be, synchronize))
        return CNNELM_OK;
    cnnelm_status st = o->be->synchronize(o->ctx);
    if (st != CNNELM_OK)
        backend_why(o, why, why_size);
    return st;
}

cnnelm_status cnnelm_op_read(cnnelm_opctx *o, const cnnelm_buffer *src, size_t offset, void *dst,
                             size_t bytes, char *why, size_t why_size)
{
    cnnelm_buf_record *r;
    cnnelm_status st = range_check(o, "buffer_read", src, offset, bytes, dst, &r, why, why_size);
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
    st = o->be->buffer_read(o->ctx, src, offset, dst, bytes);
    if (st != CNNELM_OK)
        backend_why(o, why, why_size);
    return st;
}

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
        st = flush_mirror(o, r, why, why_size);
    if (st != CNNELM_OK)
        return st;
    r->mirror_valid = 0;
    if (CNNELM_BACKEND_HAS(o->be, buffer_fill)) {
        st = o->be->buffer_fill(o->ctx, dst, offset, bytes, value);
        if (st != CNNELM_OK)
            backend_why(o, why, why_size);
        return st;
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
        backend_why(o, why, why_size);
    return st;
}

/* ---- fallback ------------------------------------------------------------------------------ */

/* mirror_valid: 0 the mirror is stale; n the mirror's first n bytes equal the device's;
 * SIZE_MAX the mirror is newer than the device (a fallback wrote it; flushed when the backend or
 * a transfer needs the device copy). */

/* Data crosses between the backend and the reference through the host in slices of this many
 * bytes: a slice read from one side is still in the cache when it is written to the other, so
 * a crossing costs about one copy's worth of memory traffic, not two (chunks of activations
 * are megabytes, larger than the caches). */
#define BOUNCE_SLICE ((size_t)32 * 1024)

/* The bounce buffer: one slice (or less when every buffer is smaller), made once. */
static cnnelm_status ensure_host(cnnelm_opctx *o, size_t bytes)
{
    if (bytes > BOUNCE_SLICE)
        bytes = BOUNCE_SLICE;
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
static cnnelm_status flush_mirror(cnnelm_opctx *o, cnnelm_buf_record *r, char *why, size_t why_size)
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
        recs[i] = record_of(o, k->buf[i]);
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
    const cnnelm_op_desc *d = cnnelm_op_describe(k->op);
    void *slot;
    memcpy(&slot, (const char *)o->be + d->slot, sizeof slot);
    int falls_back = slot == NULL;
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
        recs[i] = record_of(o, k->buf[i]);
        /* every buffer, not only inputs: an output may be written only in part */
        if ((st = flush_mirror(o, recs[i], why, why_size)) != CNNELM_OK)
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
    backend_why(o, why, why_size);
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
