/* The core's side of the plugin contract (core/src/ops.c), against an in-process counting stub:
 * every bad call is refused before the plugin is called; supports() is asked once per op and
 * shape when a network opens, never per call; fallbacks run on the CPU reference with buffers
 * made once; the reference is loaded only when a fallback needs it; 1.0 tables never have
 * their 1.1 slots read. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnelm/backend_util.h"
#include "cnnelm/plugin.h"
#include "model/network.h"
#include "model/ops.h"

/* ---- the counting stub: host buffers, every op counts and does nothing ------------------- */

struct cnnelm_buffer { CNNELM_BUFFER_LINKS; size_t bytes; float data[]; };
struct cnnelm_backend_ctx { char err[64]; struct cnnelm_buffer *buffers; };

static int op_calls, supports_calls, fills, async_writes, syncs;
static int refuse_pool; /* supports() answers UNSUPPORTED for pooling */

static cnnelm_status s_count(int *n) { *n = 1; return CNNELM_OK; }
static cnnelm_status s_info(int i, cnnelm_device_info *d) { (void)i; memset(d, 0, sizeof *d); return CNNELM_OK; }
static cnnelm_backend_ctx the_ctx;
static cnnelm_status s_open(int dev, const cnnelm_context_params *p, cnnelm_backend_ctx **out, char *e, size_t n)
{ (void)dev; (void)p; (void)e; (void)n; *out = &the_ctx; return CNNELM_OK; }
static void s_close(cnnelm_backend_ctx *c) { CNNELM_BUFFER_LIST_FREE_ALL(&c->buffers, free); }
static const char *s_last(const cnnelm_backend_ctx *c) { return c->err; }
static cnnelm_status s_alloc(cnnelm_backend_ctx *c, size_t b, cnnelm_buffer **o)
{
    *o = calloc(1, sizeof **o + b);
    if (!*o)
        return CNNELM_ERR_OUT_OF_MEMORY;
    (*o)->bytes = b;
    CNNELM_BUFFER_LIST_ADD(&c->buffers, *o);
    return CNNELM_OK;
}
static void s_free(cnnelm_backend_ctx *c, cnnelm_buffer *b)
{
    if (b)
        CNNELM_BUFFER_LIST_REMOVE(&c->buffers, b);
    free(b);
}
static cnnelm_status s_write(cnnelm_backend_ctx *c, cnnelm_buffer *d, size_t o, const void *s, size_t b)
{ (void)c; memcpy((char *)d->data + o, s, b); return CNNELM_OK; }
static cnnelm_status s_read(cnnelm_backend_ctx *c, const cnnelm_buffer *s, size_t o, void *d, size_t b)
{ (void)c; memcpy(d, (const char *)s->data + o, b); return CNNELM_OK; }
#define COUNTED(name, ...) static cnnelm_status name(cnnelm_backend_ctx *c, __VA_ARGS__) { (void)c; op_calls++; return CNNELM_OK; }
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
COUNTED(s_cf, const cnnelm_conv_shape *s, cnnelm_activation a, const cnnelm_buffer *x, const cnnelm_buffer *w, const cnnelm_buffer *b, cnnelm_buffer *y)
COUNTED(s_cbd, const cnnelm_conv_shape *s, const cnnelm_buffer *dy, const cnnelm_buffer *w, cnnelm_buffer *dx)
COUNTED(s_cbf, const cnnelm_conv_shape *s, const cnnelm_buffer *x, const cnnelm_buffer *dy, cnnelm_buffer *dw, cnnelm_buffer *db, int acc)
COUNTED(s_pf, const cnnelm_pool_shape *s, cnnelm_pooling m, const cnnelm_buffer *x, cnnelm_buffer *y)
COUNTED(s_pb, const cnnelm_pool_shape *s, cnnelm_pooling m, const cnnelm_buffer *x, const cnnelm_buffer *dy, cnnelm_buffer *dx)
COUNTED(s_af, cnnelm_activation a, size_t n, const cnnelm_buffer *x, cnnelm_buffer *y)
COUNTED(s_ab, cnnelm_activation a, size_t n, const cnnelm_buffer *y, const cnnelm_buffer *dy, cnnelm_buffer *dx)
COUNTED(s_acc, int n, int l, int k, const cnnelm_buffer *H, const cnnelm_buffer *T, cnnelm_buffer *U, cnnelm_buffer *V)
COUNTED(s_pr, int n, int l, int k, const cnnelm_buffer *H, const cnnelm_buffer *b, cnnelm_buffer *Y)
COUNTED(s_bp, int n, int l, int k, const cnnelm_buffer *E, const cnnelm_buffer *b, cnnelm_buffer *dH)
COUNTED(s_sv, int l, int k, double lam, const cnnelm_buffer *U, const cnnelm_buffer *V, cnnelm_buffer *b)
#pragma GCC diagnostic pop
static cnnelm_status s_supports(cnnelm_backend_ctx *c, const cnnelm_op_params *p)
{
    (void)c;
    supports_calls++;
    return refuse_pool && (p->op == CNNELM_OP_POOL_FORWARD || p->op == CNNELM_OP_POOL_BACKWARD)
               ? CNNELM_ERR_UNSUPPORTED : CNNELM_OK;
}
static cnnelm_status s_fill(cnnelm_backend_ctx *c, cnnelm_buffer *d, size_t o, size_t b, float v)
{
    (void)c;
    fills++;
    for (size_t i = 0; i < b / sizeof(float); i++)
        d->data[o / sizeof(float) + i] = v;
    return CNNELM_OK;
}
static cnnelm_status s_write_async(cnnelm_backend_ctx *c, cnnelm_buffer *d, size_t o, const void *s, size_t b)
{ async_writes++; return s_write(c, d, o, s, b); }
static cnnelm_status s_sync(cnnelm_backend_ctx *c) { (void)c; syncs++; return CNNELM_OK; }

static cnnelm_backend stub = {
    .abi_major = CNNELM_BACKEND_ABI_MAJOR, .abi_minor = CNNELM_BACKEND_ABI_MINOR,
    .table_size = sizeof(cnnelm_backend), .name = "counting", .description = "counting stub",
    .device_count = s_count, .device_info = s_info, .context_open = s_open, .context_close = s_close,
    .last_error = s_last, .buffer_alloc = s_alloc, .buffer_free = s_free, .buffer_write = s_write,
    .buffer_read = s_read, .conv2d_forward = s_cf, .conv2d_backward_data = s_cbd,
    .conv2d_backward_filter = s_cbf, .pool_forward = s_pf, .pool_backward = s_pb,
    .activation_forward = s_af, .activation_backward = s_ab, .elm_accumulate = s_acc,
    .elm_predict = s_pr, .elm_backprop = s_bp, .elm_solve = s_sv,
    .supports = s_supports, .buffer_fill = s_fill, .buffer_write_async = s_write_async,
    .synchronize = s_sync,
};

static cnnelm_opctx o;
static cnnelm_buffer *buf(size_t floats)
{
    cnnelm_buffer *b = NULL;
    ck_assert_int_eq(cnnelm_op_alloc(&o, floats * sizeof(float), &b), CNNELM_OK);
    return b;
}

static void setup(void)
{
    op_calls = supports_calls = fills = async_writes = syncs = refuse_pool = 0;
    o = (cnnelm_opctx){ .be = &stub, .ctx = &the_ctx };
}
static cnnelm_plugin *cpu;

static void teardown(void)
{
    cnnelm_opctx_close(&o);
    s_close(&the_ctx);
    cnnelm_plugin_unload(cpu);
    cpu = NULL;
}

/* Runs the call; asserts it is refused with a message naming the op and `what`, and that the
 * plugin was not called. */
static void refused(cnnelm_op_call k, const char *what)
{
    int before = op_calls;
    char why[512] = "";
    cnnelm_status st = cnnelm_op_run(&o, &k, why, sizeof why);
    ck_assert_msg(st == CNNELM_ERR_INVALID_ARGUMENT, "%s: not refused (%s)", what, cnnelm_status_name(st));
    ck_assert_msg(op_calls == before, "%s: the plugin was called", what);
    ck_assert_msg(strstr(why, cnnelm_op_name(k.op)) && strstr(why, what),
                  "message '%s' does not name the op and '%s'", why, what);
}

START_TEST(bad_calls_never_reach_the_plugin)
{
    cnnelm_conv_shape s = { 2, 3, 8, 8, 4, 3 };
    cnnelm_buffer *x = buf(2 * 3 * 64), *w = buf(4 * 3 * 9), *b = buf(4), *y = buf(2 * 4 * 36);
    cnnelm_buffer *small = buf(3);
    cnnelm_op_call good = { .op = CNNELM_OP_CONV_FORWARD, .conv = s, .act = CNNELM_ACT_RELU,
                            .buf = { x, w, b, y } };
    char why[256];
    ck_assert_int_eq(cnnelm_op_run(&o, &good, why, sizeof why), CNNELM_OK);
    ck_assert_int_eq(op_calls, 1);

    cnnelm_op_call k = good;
    k.buf[3] = small;
    refused(k, "buffer y holds 12 bytes");
    k = good;
    k.buf[0] = NULL;
    refused(k, "buffer x is NULL");
    k = good;
    struct { size_t bytes; float data[1024]; } outside = { 4096, { 0 } }; /* not from the core */
    k.buf[3] = (cnnelm_buffer *)&outside;
    refused(k, "not a live buffer of this context");
    k = good;
    k.buf[3] = x;
    refused(k, "output y is the same buffer as input x");
    k = good;
    k.conv.k = 9;
    refused(k, "kernel is larger than the input");
    k = good;
    k.conv.c_out = 0;
    refused(k, "must be positive");
    k = good;
    k.conv.n = 1 << 30;
    k.conv.c_in = 1 << 30;
    refused(k, "overflows 64-bit sizes");
    k = good;
    k.act = (cnnelm_activation)42;
    refused(k, "unknown activation");

    cnnelm_op_call p = { .op = CNNELM_OP_POOL_FORWARD, .pool = { 2, 3, 8, 8, 3 }, .buf = { x, y } };
    refused(p, "h and w must be multiples of s");
    p.pool.s = 2;
    p.mode = (cnnelm_pooling)5;
    refused(p, "unknown pooling mode");

    cnnelm_op_call a = { .op = CNNELM_OP_ACT_BACKWARD, .count = 10, .buf = { x, y, x } };
    refused(a, "output dx is the same buffer as input y");
    a.buf[2] = y; /* dx may be dy */
    ck_assert_int_eq(cnnelm_op_run(&o, &a, why, sizeof why), CNNELM_OK);

    cnnelm_op_call sv = { .op = CNNELM_OP_ELM_SOLVE, .l = 4, .c = 2, .lambda = INFINITY, .buf = { y, b, w } };
    refused(sv, "lambda must be positive and finite");
    sv.lambda = 0;
    refused(sv, "lambda must be positive and finite");
    cnnelm_op_call acc = { .op = CNNELM_OP_ELM_ACCUMULATE, .n = 0, .l = 2, .c = 2, .buf = { x, y, w, b } };
    refused(acc, "n, l and c must be positive");
    acc.n = 2;
    acc.buf[3] = acc.buf[2];
    refused(acc, "output U is the same buffer as output V");
    ck_assert_int_eq(op_calls, 2);
}
END_TEST

START_TEST(transfers_are_range_checked)
{
    cnnelm_buffer *x = buf(16);
    float h[17] = { 0 };
    char why[256];
    ck_assert_int_eq(cnnelm_op_write(&o, x, 0, h, 64, why, sizeof why), CNNELM_OK);
    ck_assert_int_eq(cnnelm_op_write(&o, x, 4, h, 64, why, sizeof why), CNNELM_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(why, "do not fit"));
    ck_assert_int_eq(cnnelm_op_read(&o, x, SIZE_MAX, h, 2, why, sizeof why), CNNELM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(cnnelm_op_read(&o, x, 0, NULL, 4, why, sizeof why), CNNELM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(cnnelm_op_fill(&o, x, 0, 6, 0.0f, why, sizeof why), CNNELM_ERR_INVALID_ARGUMENT);
    /* zeroing is a fill on the device, not a host block written */
    ck_assert_int_eq(cnnelm_op_fill(&o, x, 0, 64, 0.0f, why, sizeof why), CNNELM_OK);
    ck_assert_int_eq(fills, 1);
}
END_TEST

/* ---- a network on the stub ---------------------------------------------------------------- */

static int loads;
static const cnnelm_plugin *load_cpu(void *user, cnnelm_error *err)
{
    (void)user;
    loads++;
    if (!cpu && cnnelm_plugin_load("cpu", NULL, &cpu, err) != 0)
        return NULL;
    return cpu;
}

static cnnelm_arch small_arch(void)
{
    cnnelm_arch a;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_arch_init(&a, "2c-2s", 5, 1, 12, 12, 3, CNNELM_ACT_RELU, CNNELM_POOL_MEAN,
                                   CNNELM_ACT_OPTTANH, &err) == 0, "%s", err.msg);
    return a;
}

START_TEST(supports_asked_when_the_network_opens)
{
    cnnelm_plugin plugin = { .ops = &stub, .name = "counting" };
    cnnelm_arch a = small_arch();
    cnnelm_reference_source ref = { .load = load_cpu };
    cnnelm_net net;
    cnnelm_error err = { "" };
    loads = 0;
    ck_assert_msg(cnnelm_net_open_ex(&net, &plugin, 0, 1, &a, 8, &ref, &err) == 0, "%s", err.msg);
    ck_assert_int_gt(supports_calls, 0);
    ck_assert_int_eq(loads, 0); /* every op runs on the plugin: no reference loaded */
    int asked = supports_calls;
    ck_assert_int_eq(cnnelm_net_reset_uv(&net, &err), 0);
    ck_assert_int_eq(fills, 2);
    cnnelm_net_close(&net);
    ck_assert_int_eq(supports_calls, asked);
}
END_TEST

START_TEST(planned_fallback_keeps_its_buffers)
{
    refuse_pool = 1;
    cnnelm_plugin plugin = { .ops = &stub, .name = "counting" };
    cnnelm_arch a = small_arch();
    cnnelm_reference_source ref = { .load = load_cpu };
    cnnelm_net net;
    cnnelm_error err = { "" };
    loads = 0;
    ck_assert_msg(cnnelm_net_open_ex(&net, &plugin, 0, 1, &a, 8, &ref, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(loads, 1);
    uint32_t planned = cnnelm_net_planned_fallbacks(&net);
    ck_assert_uint_eq(planned, (1u << CNNELM_OP_POOL_FORWARD) | (1u << CNNELM_OP_POOL_BACKWARD));
    int asked = supports_calls;
    void *host = net.ops.host;
    size_t host_bytes = net.ops.host_bytes;
    ck_assert_ptr_nonnull(host);
    uint8_t images[8 * 144];
    uint8_t labels[8];
    for (int i = 0; i < 8 * 144; i++)
        images[i] = (uint8_t)(i * 37 % 251);
    for (int i = 0; i < 8; i++)
        labels[i] = (uint8_t)(i % 3);
    cnnelm_dataset ds = { .n = 8, .rows = 12, .cols = 12, .classes = 3, .images = images, .labels = labels };
    for (int rep = 0; rep < 3; rep++) {
        int before = op_calls;
        ck_assert_msg(cnnelm_net_forward(&net, &ds, NULL, 0, 8, &err) == 0, "%s", err.msg);
        /* conv and the ELM activation on the plugin, pooling on the reference */
        ck_assert_int_eq(op_calls - before, 2);
    }
    ck_assert_uint_eq(net.ops.fell_back, 1u << CNNELM_OP_POOL_FORWARD);
    ck_assert_int_eq(supports_calls, asked);       /* never asked per call */
    ck_assert_ptr_eq(net.ops.host, host);          /* the bounce buffer is not remade */
    ck_assert_uint_eq(net.ops.host_bytes, host_bytes);
    ck_assert_int_eq(syncs, 3);                    /* one per chunk, before its upload */
    ck_assert_int_eq(async_writes, 6);             /* input and targets per chunk */
    ck_assert_int_eq(net.n_slots, 2);              /* double-buffered input */
    cnnelm_net_close(&net);
}
END_TEST

START_TEST(v10_table_keeps_working)
{
    /* a 1.0 plugin: minor 0 and the 1.0 size; its 1.1 slots (garbage here) are never read */
    static cnnelm_backend old;
    old = stub;
    old.abi_minor = 0;
    old.table_size = (uint32_t)(offsetof(cnnelm_backend, elm_solve) + sizeof old.elm_solve);
    memset((char *)&old + old.table_size, 0xA5, sizeof old - old.table_size);
    cnnelm_plugin plugin = { .ops = &old, .name = "old" };
    cnnelm_arch a = small_arch();
    cnnelm_reference_source ref = { .load = load_cpu };
    cnnelm_net net;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_net_open_ex(&net, &plugin, 0, 1, &a, 8, &ref, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(net.n_slots, 1);
    ck_assert_int_eq(cnnelm_net_reset_uv(&net, &err), 0);
    ck_assert_int_eq(fills, 0); /* zeroed with a write */
    ck_assert_int_eq(supports_calls, 0);
    cnnelm_net_close(&net);
}
END_TEST

START_TEST(missing_reference_is_an_error_naming_why)
{
    static cnnelm_backend partial;
    partial = stub;
    partial.pool_forward = NULL;
    cnnelm_plugin plugin = { .ops = &partial, .name = "partial" };
    cnnelm_arch a = small_arch();
    cnnelm_reference_source none = { .plugin = NULL };
    cnnelm_net net;
    cnnelm_error err = { "" };
    ck_assert_int_ne(cnnelm_net_open_ex(&net, &plugin, 0, 1, &a, 8, &none, &err), 0);
    ck_assert_msg(strstr(err.msg, "pool_forward") && strstr(err.msg, "CPU reference"), "%s", err.msg);
}
END_TEST

static cnnelm_status failing_count(void *state, int *count, char *error, size_t size)
{
    (void)state;
    *count = 0;
    snprintf(error, size, "the driver refused: firmware 1.2 is too old");
    return CNNELM_ERR_DEVICE;
}

START_TEST(failing_device_count_names_why)
{
    static cnnelm_backend t;
    t = stub;
    t.device_count_v11 = failing_count;
    cnnelm_plugin plugin = { .ops = &t, .name = "failing" };
    cnnelm_arch a = small_arch();
    cnnelm_reference_source none = { .plugin = NULL };
    cnnelm_net net;
    cnnelm_error err = { "" };
    ck_assert_int_ne(cnnelm_net_open_ex(&net, &plugin, 0, 1, &a, 8, &none, &err), 0);
    ck_assert_msg(strstr(err.msg, "firmware 1.2 is too old") && !strstr(err.msg, "has no device"), "%s", err.msg);
}
END_TEST

/* ---- the docs' op table, generated from the op table ------------------------------------- */

static const char *const size_text[] = { "n·c_in·h·w", "c_out·c_in·k·k", "c_out", "n·c_out·oh·ow",
                                         "n·c·h·w", "n·c·(h/s)·(w/s)", "count", "n·l", "n·c", "l·l", "l·c",
                                         "l·l doubles", "l·c doubles" };
static const char *const role_text[] = { "in", "out", "inout", "acc" };
static const char *const args_text[] = { "conv shape, activation", "conv shape", "conv shape; accumulate",
                                         "pool shape, mode", "activation, count", "n, l, c", "l, c, lambda" };

static void op_table_markdown(char *out, size_t cap)
{
    size_t len = (size_t)snprintf(out, cap, "| op | arguments | buffers (floats, role) | may alias | optional |\n"
                                            "|----|-----------|------------------------|-----------|----------|\n");
    for (int op = 0; op < CNNELM_OP_COUNT; op++) {
        const cnnelm_op_desc *d = cnnelm_op_describe((cnnelm_op_id)op);
        len += (size_t)snprintf(out + len, cap - len, "| `%s` | %s | ", d->name, args_text[d->args]);
        char alias[64] = "";
        for (int i = 0; i < d->n_buffers; i++) {
            const cnnelm_op_buffer_desc *b = &d->buf[i];
            len += (size_t)snprintf(out + len, cap - len, "%s`%s` %s %s", i ? ", " : "", b->name,
                                    size_text[b->size], role_text[b->role]);
            if (b->alias >= 0)
                snprintf(alias, sizeof alias, "`%s` = `%s`", b->name, d->buf[b->alias].name);
        }
        len += (size_t)snprintf(out + len, cap - len, " | %s | %s |\n", alias[0] ? alias : "none",
                                d->optional ? "yes" : "no");
    }
}

START_TEST(docs_op_table_is_current)
{
    const char *path = CNNELM_SOURCE_DIR "/plugins/README.md";
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    static char doc[1 << 17], table[1 << 14], fresh[1 << 17];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = '\0';
    const char *begin_mark = "<!-- BEGIN OP TABLE -->\n", *end_mark = "<!-- END OP TABLE -->";
    char *begin = strstr(doc, begin_mark), *end = begin ? strstr(begin, end_mark) : NULL;
    ck_assert_msg(begin && end, "%s: no op table markers", path);
    begin += strlen(begin_mark);
    op_table_markdown(table, sizeof table);
    if ((size_t)(end - begin) == strlen(table) && memcmp(begin, table, strlen(table)) == 0)
        return;
    const char *update = getenv("CNNELM_UPDATE_DOCS");
    ck_assert_msg(update && strcmp(update, "1") == 0,
                  "%s: the op table is out of date (run with CNNELM_UPDATE_DOCS=1 to rewrite it)", path);
    snprintf(fresh, sizeof fresh, "%.*s%s%s", (int)(begin - doc), doc, table, end);
    f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(fresh, f);
    fclose(f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("op_validation");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, bad_calls_never_reach_the_plugin);
    tcase_add_test(tc, transfers_are_range_checked);
    tcase_add_test(tc, supports_asked_when_the_network_opens);
    tcase_add_test(tc, planned_fallback_keeps_its_buffers);
    tcase_add_test(tc, v10_table_keeps_working);
    tcase_add_test(tc, missing_reference_is_an_error_naming_why);
    tcase_add_test(tc, failing_device_count_names_why);
    tcase_add_test(tc, docs_op_table_is_current);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
