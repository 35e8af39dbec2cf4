/* cnnelm op table, dispatch and argument checks, generated from the op table (see ops.h and
 * plugins/include/cnnelm/backend_ops.h): the table as data, a call's buffer sizes and roles, and
 * the checks every call passes before it runs. The buffers and transfers are in ops_transfer.c,
 * the plan, the run and the CPU-reference fallback in ops_fallback.c. */
#include "model/ops.h"
#include "model/ops_internal.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
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

int cnnelm_op_has_slot(const cnnelm_backend *be, cnnelm_op_id op)
{
    const cnnelm_op_desc *d = cnnelm_op_describe(op);
    if (!d)
        return 0;
    size_t v10 = offsetof(cnnelm_backend, elm_solve) + sizeof be->elm_solve;
    if (d->slot >= v10 && (be->abi_minor < 1 || be->table_size < d->slot + sizeof(void (*)(void))))
        return 0;
    void (*slot)(void);
    memcpy(&slot, (const char *)be + d->slot, sizeof slot);
    return slot != NULL;
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
        if (!cnnelm_op_has_slot(be, CNNELM_OP_##id))                                       \
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
    case CNNELM_OPSIZE_LL_F64: return BYTES(2, k->l, k->l);
    case CNNELM_OPSIZE_LC_F64: return BYTES(2, k->l, k->c);
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

const cnnelm_buf_record *cnnelm_op_find_record(const cnnelm_opctx *o, const cnnelm_buffer *b)
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
            const cnnelm_buf_record *r = cnnelm_op_find_record(o, k->buf[i]);
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
