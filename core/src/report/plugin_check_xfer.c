/* plugin-check's 1.1 transfer slots: buffer_fill, buffer_copy and the asynchronous write and
 * read with synchronize, each in a child at three sizes, compared with the plain write and read
 * on random data with a guard tail past the range. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/child.h"
#include "base/rng.h"
#include "report/plugin_check_internal.h"

/* buffer_fill, buffer_copy and the asynchronous write and read with synchronize, each compared
 * with the plain buffer_write / buffer_read on random data, with a guard tail past the range
 * like the op cases. */
typedef enum xfer_kind { XFER_FILL, XFER_COPY, XFER_WRITE_ASYNC, XFER_READ_ASYNC } xfer_kind;
static const char *const xfer_slot[] = { "buffer_fill", "buffer_copy", "buffer_write_async",
                                         "buffer_read_async" };

typedef struct xfer_arg {
    const char *file;
    int device;
    xfer_kind kind;
    size_t n;  /* floats of the tensor; the buffer has GUARD_FLOATS more */
} xfer_arg;

typedef struct xfer_reply {
    int status;  /* of the plugin's calls */
    int pass;
    char message[480];
} xfer_reply;

/* Compares got with want over [0, n + GUARD_FLOATS); the range [lo, hi) is what the call
 * wrote. Names the first kind of difference: outside the range, then inside it. */
static int xfer_judge(const float *got, const float *want, size_t n, size_t lo, size_t hi, const char *what,
                      char *why, size_t why_size)
{
    size_t outside = 0, inside = 0, at = 0;
    for (size_t j = 0; j < n + GUARD_FLOATS; j++)
        if (bits_of(got[j]) != bits_of(want[j])) {
            if (j < lo || j >= hi)
                outside++;
            else if (!inside++)
                at = j;
        }
    if (outside)
        snprintf(why, why_size, "%s: changed %zu float%s outside the %zu floats at float %zu it was given", what,
                 outside, outside == 1 ? "" : "s", hi - lo, lo);
    else if (inside && bits_of(got[at]) == SENTINEL_BITS)
        snprintf(why, why_size, "%s: %zu of %zu floats wrong, first at float %zu (never written, expected %g)",
                 what, inside, hi - lo, at, (double)want[at]);
    else if (inside)
        snprintf(why, why_size, "%s: %zu of %zu floats wrong, first at float %zu (%g, expected %g)", what, inside,
                 hi - lo, at, (double)got[at], (double)want[at]);
    return !outside && !inside;
}

static void child_xfer(void *arg, void *reply, size_t size)
{
    (void)size;
    const xfer_arg *a = arg;
    xfer_reply *r = reply;
    cnnelm_plugin *p = NULL;
    cnnelm_error e = { "" };
    r->status = CNNELM_ERR_INTERNAL;
    if (cnnelm_plugin_load_file(a->file, &p, &e) != 0) {
        snprintf(r->message, sizeof r->message, "%.470s", e.msg);
        return;
    }
    const cnnelm_backend *be = p->ops;
    cnnelm_backend_ctx *ctx = NULL;
    char why[256] = "";
    cnnelm_status st = cnnelm_plugin_context_open(p, a->device, 0, &ctx, why, sizeof why);
    if (st != CNNELM_OK) {
        r->status = st;
        snprintf(r->message, sizeof r->message, "context_open: %.400s", why);
        return;
    }
    size_t n = a->n, total = n + GUARD_FLOATS, bytes = total * sizeof(float);
    size_t off = n > 4 ? 3 : 0; /* an offset that is not a multiple of anything */
    float *data = malloc(bytes), *other = malloc(bytes), *got = malloc(bytes), *want = malloc(bytes);
    cnnelm_buffer *b = NULL, *src = NULL;
    if (!data || !other || !got || !want) {
        snprintf(r->message, sizeof r->message, "out of host memory");
        return;
    }
    cnnelm_rng rng;
    cnnelm_rng_seed(&rng, 20261201, (uint64_t)a->kind * 1000 + n);
    for (size_t j = 0; j < total; j++) {
        data[j] = (float)(2 * cnnelm_rng_uniform(&rng) - 1);
        other[j] = j < n ? from_bits(SENTINEL_BITS) : from_bits(GUARD_BITS);
    }
    for (size_t j = n; j < total; j++)
        data[j] = from_bits(GUARD_BITS);
    st = be->buffer_alloc(ctx, bytes, &b);
    if (st == CNNELM_OK && a->kind == XFER_COPY)
        st = be->buffer_alloc(ctx, bytes, &src);
    r->pass = 1;
    switch (a->kind) {
    case XFER_FILL: /* the middle, then all of it with zeros (how U and V start) */
        if (st == CNNELM_OK)
            st = be->buffer_write(ctx, b, 0, data, bytes);
        for (int round = 0; round < 2 && st == CNNELM_OK && r->pass; round++) {
            float value = round ? 0.0f : 0.75f;
            size_t lo = round ? 0 : off;
            st = be->buffer_fill(ctx, b, lo * sizeof(float), (n - lo) * sizeof(float), value);
            if (st == CNNELM_OK)
                st = be->buffer_read(ctx, b, 0, got, bytes);
            if (round == 0)
                memcpy(want, data, bytes);
            for (size_t j = lo; j < n; j++)
                want[j] = value;
            char w[64];
            snprintf(w, sizeof w, "with %g", (double)value);
            if (st == CNNELM_OK)
                r->pass = xfer_judge(got, want, n, lo, n, w, r->message, sizeof r->message);
        }
        break;
    case XFER_COPY: /* src + 1 float -> dst + off, n - off floats, dst pre-filled with the sentinel */
        if (st == CNNELM_OK)
            st = be->buffer_write(ctx, src, 0, data, bytes);
        if (st == CNNELM_OK)
            st = be->buffer_write(ctx, b, 0, other, bytes);
        if (st == CNNELM_OK)
            st = be->buffer_copy(ctx, b, off * sizeof(float), src, (n > 4 ? 1 : 0) * sizeof(float),
                                 (n - off) * sizeof(float));
        if (st == CNNELM_OK)
            st = be->buffer_read(ctx, b, 0, got, bytes);
        memcpy(want, other, bytes);
        memcpy(want + off, data + (n > 4 ? 1 : 0), (n - off) * sizeof(float));
        if (st == CNNELM_OK)
            r->pass = xfer_judge(got, want, n, off, n, "the copy", r->message, sizeof r->message);
        if (st == CNNELM_OK && r->pass)
            st = be->buffer_read(ctx, src, 0, got, bytes);
        if (st == CNNELM_OK && r->pass)
            r->pass = xfer_judge(got, data, n, 0, 0, "its source", r->message, sizeof r->message);
        break;
    case XFER_WRITE_ASYNC: /* then the host copy changes: the device must keep what was sent */
        if (st == CNNELM_OK)
            st = be->buffer_write(ctx, b, 0, other, bytes);
        memcpy(want, other, bytes);
        memcpy(want + off, data + off, (n - off) * sizeof(float));
        if (st == CNNELM_OK)
            st = be->buffer_write_async(ctx, b, off * sizeof(float), data + off, (n - off) * sizeof(float));
        if (st == CNNELM_OK)
            st = be->synchronize(ctx);
        for (size_t j = 0; j < total; j++)
            data[j] = -data[j];
        if (st == CNNELM_OK)
            st = be->buffer_read(ctx, b, 0, got, bytes);
        if (st == CNNELM_OK)
            r->pass = xfer_judge(got, want, n, off, n, "read back after synchronize", r->message,
                                 sizeof r->message);
        break;
    case XFER_READ_ASYNC: /* into a host block pre-filled with the sentinel */
        if (st == CNNELM_OK)
            st = be->buffer_write(ctx, b, 0, data, bytes);
        memcpy(got, other, bytes);
        memcpy(want, other, bytes);
        memcpy(want + off, data + off, (n - off) * sizeof(float));
        if (st == CNNELM_OK)
            st = be->buffer_read_async(ctx, b, off * sizeof(float), got + off, (n - off) * sizeof(float));
        if (st == CNNELM_OK)
            st = be->synchronize(ctx);
        if (st == CNNELM_OK)
            r->pass = xfer_judge(got, want, n, off, n, "on the host after synchronize", r->message,
                                 sizeof r->message);
        break;
    }
    r->status = st;
    if (st != CNNELM_OK)
        snprintf(r->message, sizeof r->message, "%.470s", be->last_error(ctx));
    /* no context_close or unload: the process ends, and shutdown() is checked once */
}

/* Rows for the transfer slots the plugin has, three sizes each. */
void cnnelm_pcheck_transfers(const char *file, int device, const load_reply *lr, double timeout,
                             FILE *out, tally *t)
{
    int has[4] = { HAS_V11(lr, buffer_fill), HAS_V11(lr, buffer_copy), HAS_V11(lr, buffer_write_async),
                   HAS_V11(lr, buffer_read_async) };
    if ((has[XFER_WRITE_ASYNC] || has[XFER_READ_ASYNC]) && !HAS_V11(lr, synchronize)) {
        cnnelm_pcheck_verdict(out, t, "synchronize", "", 0,
                              "FAIL: the plugin has asynchronous transfers but no synchronize");
        has[XFER_WRITE_ASYNC] = has[XFER_READ_ASYNC] = 0;
    }
    static const size_t sizes[] = { 1, 1001, 65536 };
    for (int k = 0; k < 4; k++) {
        if (!has[k])
            continue;
        int crashed = 0;
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && !crashed; i++) {
            char shape[48], why[256], res[600];
            snprintf(shape, sizeof shape, "%zu float%s%s", sizes[i], sizes[i] == 1 ? "" : "s",
                     sizes[i] > 4 ? " at +3" : "");
            if (k >= XFER_WRITE_ASYNC) {
                size_t len = strlen(shape);
                snprintf(shape + len, sizeof shape - len, ", synchronize");
            }
            xfer_arg a = { file, device, (xfer_kind)k, sizes[i] };
            xfer_reply r;
            double secs = 0;
            if (cnnelm_child_run(child_xfer, &a, &r, sizeof r, timeout, &secs, why, sizeof why) != 0) {
                snprintf(res, sizeof res, "CRASH: %s", why);
                crashed = 1; /* one crash or hang per slot is enough */
            } else if (r.status != CNNELM_OK) {
                snprintf(res, sizeof res, "FAIL: %s: %.400s", cnnelm_status_name((cnnelm_status)r.status), r.message);
            } else if (!r.pass) {
                snprintf(res, sizeof res, "FAIL: %.500s", r.message);
            } else {
                snprintf(res, sizeof res, "PASS");
            }
            cnnelm_pcheck_verdict(out, t, xfer_slot[k], shape, secs, res);
        }
    }
}
