/* The core's use of the 1.1 transfer slots and device limits, on an in-process counting stub
 * (host buffers; ops count and do nothing) that reports small limits:
 * - max_alloc_bytes lowers the chunk so that no buffer exceeds it, and a U that cannot fit is
 *   refused with one line;
 * - preferred_transfer_bytes is the size of the fallback's bounce slices and of U's read-back
 *   blocks (unset: 32 KiB on a CPU device, 1 MiB on a GPU), the blocks queued with
 *   buffer_read_async and still adding up to the right sums;
 * - a multi-scale group is gathered on the device with buffer_copy (the right rows, no
 *   transfer to the host);
 * - exact sums on a plugin without elm_accumulate_f64 run on the CPU reference and give the
 *   CPU backend's sums bit for bit. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnelm/backend_util.h"
#include "cnnelm/plugin.h"
#include "model/network.h"
#include "model/network_internal.h"
#include "model/ops.h"

struct cnnelm_buffer { CNNELM_BUFFER_LINKS; size_t bytes; float data[]; };
struct cnnelm_backend_ctx { char err[64]; struct cnnelm_buffer *buffers; };

static int reads, async_reads, copies, syncs;
static size_t largest_alloc, largest_read, largest_write;
static int refuse_pool;
static uint64_t limit_alloc, limit_transfer;

static cnnelm_status s_count(int *n) { *n = 1; return CNNELM_OK; }
static cnnelm_device_kind device_kind; /* what device_info says */
static cnnelm_status s_info(int i, cnnelm_device_info *d)
{
    (void)i;
    memset(d, 0, sizeof *d);
    d->kind = device_kind;
    return CNNELM_OK;
}
static cnnelm_backend_ctx the_ctx;
static cnnelm_status s_open(int dev, const cnnelm_context_params *p, cnnelm_backend_ctx **out, char *e, size_t n)
{ (void)dev; (void)p; (void)e; (void)n; *out = &the_ctx; return CNNELM_OK; }
static void s_close(cnnelm_backend_ctx *c) { CNNELM_BUFFER_LIST_FREE_ALL(&c->buffers, free); }
static const char *s_last(const cnnelm_backend_ctx *c) { return c->err; }
static cnnelm_status s_alloc(cnnelm_backend_ctx *c, size_t b, cnnelm_buffer **o)
{
    largest_alloc = b > largest_alloc ? b : largest_alloc;
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
{
    (void)c;
    largest_write = b > largest_write ? b : largest_write;
    memcpy((char *)d->data + o, s, b);
    return CNNELM_OK;
}
static cnnelm_status s_read(cnnelm_backend_ctx *c, const cnnelm_buffer *s, size_t o, void *d, size_t b)
{
    (void)c;
    reads++;
    largest_read = b > largest_read ? b : largest_read;
    memcpy(d, (const char *)s->data + o, b);
    return CNNELM_OK;
}
static cnnelm_status s_read_async(cnnelm_backend_ctx *c, const cnnelm_buffer *s, size_t o, void *d, size_t b)
{
    async_reads++;
    reads--; /* counted as queued, not blocking */
    return s_read(c, s, o, d, b);
}
static cnnelm_status s_sync(cnnelm_backend_ctx *c) { (void)c; syncs++; return CNNELM_OK; }
static cnnelm_status s_copy(cnnelm_backend_ctx *c, cnnelm_buffer *d, size_t doff, const cnnelm_buffer *s,
                            size_t soff, size_t b)
{
    (void)c;
    copies++;
    memcpy((char *)d->data + doff, (const char *)s->data + soff, b);
    return CNNELM_OK;
}
static cnnelm_status s_fill(cnnelm_backend_ctx *c, cnnelm_buffer *d, size_t o, size_t b, float v)
{
    (void)c;
    for (size_t i = 0; i < b / sizeof(float); i++)
        d->data[o / sizeof(float) + i] = v;
    return CNNELM_OK;
}
static cnnelm_status s_limits(void *state, int index, cnnelm_device_limits *l)
{
    (void)state;
    (void)index;
    l->max_alloc_bytes = limit_alloc;
    if (CNNELM_PARAMS_HAS(l, preferred_transfer_bytes))
        l->preferred_transfer_bytes = limit_transfer;
    return CNNELM_OK;
}
#define COUNTED(name, ...) static cnnelm_status name(cnnelm_backend_ctx *c, __VA_ARGS__) { (void)c; return CNNELM_OK; }
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
#pragma GCC diagnostic pop
static cnnelm_status s_supports(cnnelm_backend_ctx *c, const cnnelm_op_params *p)
{
    (void)c;
    return refuse_pool && (p->op == CNNELM_OP_POOL_FORWARD || p->op == CNNELM_OP_POOL_BACKWARD)
               ? CNNELM_ERR_UNSUPPORTED : CNNELM_OK;
}

static cnnelm_backend stub = {
    .abi_major = CNNELM_BACKEND_ABI_MAJOR, .abi_minor = CNNELM_BACKEND_ABI_MINOR,
    .table_size = sizeof(cnnelm_backend), .name = "limited", .description = "stub with small limits",
    .device_count = s_count, .device_info = s_info, .context_open = s_open, .context_close = s_close,
    .last_error = s_last, .buffer_alloc = s_alloc, .buffer_free = s_free, .buffer_write = s_write,
    .buffer_read = s_read, .conv2d_forward = s_cf, .conv2d_backward_data = s_cbd,
    .conv2d_backward_filter = s_cbf, .pool_forward = s_pf, .pool_backward = s_pb,
    .activation_forward = s_af, .activation_backward = s_ab, .elm_accumulate = s_acc,
    .elm_predict = s_pr, .elm_backprop = s_bp, .device_limits = s_limits, .supports = s_supports,
    .buffer_fill = s_fill, .buffer_read_async = s_read_async, .synchronize = s_sync,
    .buffer_copy = s_copy,
};
static cnnelm_plugin plugin = { .ops = &stub, .name = "limited" };

static cnnelm_plugin *cpu;
static const cnnelm_plugin *load_cpu(void *user, cnnelm_error *err)
{
    (void)user;
    if (!cpu && cnnelm_plugin_load("cpu", NULL, &cpu, err) != 0)
        return NULL;
    return cpu;
}

static void setup(void)
{
    reads = async_reads = copies = syncs = refuse_pool = 0;
    largest_alloc = largest_read = largest_write = 0;
    limit_alloc = limit_transfer = 0;
    device_kind = CNNELM_DEVICE_CPU;
}
static void teardown(void)
{
    cnnelm_plugin_unload(cpu);
    cpu = NULL;
}

/* 12x12 inputs, 3 classes; "2c-2s": conv 2x8x8, pool 2x4x4: L = 32. */
static cnnelm_arch arch_of(const char *layers)
{
    cnnelm_arch a;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_arch_init(&a, layers, 5, 1, 12, 12, 3, CNNELM_ACT_RELU, CNNELM_POOL_MEAN,
                                   CNNELM_ACT_IDENTITY, &err) == 0, "%s", err.msg);
    return a;
}

static void open_net(cnnelm_net *net, const cnnelm_arch *a, int chunk)
{
    cnnelm_reference_source ref = { .load = load_cpu };
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_net_open_ex(net, &plugin, 0, 1, a, chunk, &ref, &err) == 0, "%s", err.msg);
}

static uint8_t images[64 * 144], labels[64];
static cnnelm_dataset dataset(void)
{
    for (int i = 0; i < 64 * 144; i++)
        images[i] = (uint8_t)(i * 37 % 251 + 1);
    for (int i = 0; i < 64; i++)
        labels[i] = (uint8_t)(i % 3);
    return (cnnelm_dataset){ .n = 64, .rows = 12, .cols = 12, .classes = 3, .images = images, .labels = labels };
}

START_TEST(largest_allocation_lowers_the_chunk)
{
    /* the largest per-example buffer is the input, 144 floats = 576 bytes; U is 32 x 32 floats
     * = 4096 bytes: 4096 bytes allow 7 examples per chunk, not the 8 asked for */
    limit_alloc = 4096;
    cnnelm_arch a = arch_of("2c-2s");
    cnnelm_net net;
    open_net(&net, &a, 8);
    ck_assert_int_eq(net.chunk, 7);
    ck_assert_int_eq(net.chunk_requested, 8);
    ck_assert_uint_le(largest_alloc, 4096);
    cnnelm_dataset ds = dataset();
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_net_forward(&net, &ds, NULL, 0, 7, &err) == 0, "%s", err.msg);
    ck_assert_int_ne(cnnelm_net_forward(&net, &ds, NULL, 0, 8, &err), 0); /* beyond capacity */
    cnnelm_net_close(&net);
    /* no limit: the chunk asked for */
    limit_alloc = 0;
    open_net(&net, &a, 8);
    ck_assert_int_eq(net.chunk, 8);
    ck_assert_int_eq(net.chunk_requested, 0);
    cnnelm_net_close(&net);
}
END_TEST

START_TEST(u_larger_than_the_largest_allocation_is_refused)
{
    limit_alloc = 4000; /* U needs 4096 */
    cnnelm_arch a = arch_of("2c-2s");
    cnnelm_net net;
    cnnelm_reference_source ref = { .load = load_cpu };
    cnnelm_error err = { "" };
    ck_assert_int_ne(cnnelm_net_open_ex(&net, &plugin, 0, 1, &a, 8, &ref, &err), 0);
    ck_assert_msg(strstr(err.msg, "largest allocation") && strstr(err.msg, "U (32 x 32 floats") &&
                  !strchr(err.msg, '\n'), "%s", err.msg);
    /* exact sums need U in double: 8192 bytes, refused where float fits */
    limit_alloc = 6000;
    open_net(&net, &a, 4);
    ck_assert_int_ne(cnnelm_net_set_sums(&net, 1, &err), 0);
    ck_assert_msg(strstr(err.msg, "U in double") && strstr(err.msg, "largest allocation"), "%s", err.msg);
    cnnelm_net_close(&net);
}
END_TEST

START_TEST(bounce_slices_follow_the_preferred_transfer)
{
    /* pooling runs on the CPU reference: the conv output (8 x 2 x 8 x 8 floats = 4 KiB) crosses
     * to it, the pooled output back; every crossing goes in slices of 256 bytes */
    refuse_pool = 1;
    limit_transfer = 256;
    cnnelm_arch a = arch_of("2c-2s");
    cnnelm_net net;
    open_net(&net, &a, 8);
    ck_assert_uint_eq(cnnelm_op_transfer_bytes(&net.ops), 256);
    cnnelm_dataset ds = dataset();
    cnnelm_error err = { "" };
    int before = reads;
    ck_assert_msg(cnnelm_net_forward(&net, &ds, NULL, 0, 8, &err) == 0, "%s", err.msg);
    ck_assert_msg(net.ops.fell_back >> CNNELM_OP_POOL_FORWARD & 1u, "pooling did not fall back");
    ck_assert_int_eq(reads - before, 16); /* the conv output, 4096 bytes, in 16 slices of 256 */
    ck_assert_uint_le(largest_read, 256);
    ck_assert_uint_eq(net.ops.host_bytes, 256);
    largest_write = 0;
    ck_assert_msg(cnnelm_net_accumulate(&net, &err) == 0, "%s", err.msg); /* H back on the device */
    ck_assert_uint_eq(largest_write, 256); /* 1024 bytes of H in slices of 256 */
    cnnelm_net_close(&net);
    /* no opinion: the default slice, 32 KiB, so the 4 KiB cross in one read */
    limit_transfer = 0;
    open_net(&net, &a, 8);
    before = reads;
    ck_assert_msg(cnnelm_net_forward(&net, &ds, NULL, 0, 8, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(reads - before, 1);
    cnnelm_net_close(&net);
    /* a GPU that says nothing: 1 MiB transfers, not host-memory slices */
    device_kind = CNNELM_DEVICE_GPU;
    open_net(&net, &a, 8);
    ck_assert_uint_eq(cnnelm_op_transfer_bytes(&net.ops), 1u << 20);
    cnnelm_net_close(&net);
}
END_TEST

START_TEST(u_is_read_back_in_queued_blocks)
{
    /* L = 32: U rows of 128 bytes; 256-byte transfers: 16 blocks of 2 rows, each queued */
    limit_transfer = 256;
    cnnelm_arch a = arch_of("2c-2s");
    cnnelm_net net;
    open_net(&net, &a, 8);
    size_t L = 32, C = 3;
    float u[32 * 32], v[32 * 3];
    for (size_t i = 0; i < L * L; i++)
        u[i] = (float)(i % 97) * 0.25f - 7.0f;
    for (size_t i = 0; i < L * C; i++)
        v[i] = (float)i * 0.5f + 1.0f;
    cnnelm_error err = { "" };
    char why[256];
    ck_assert_int_eq(cnnelm_op_write(&net.ops, net.u, 0, u, sizeof u, why, sizeof why), CNNELM_OK);
    ck_assert_int_eq(cnnelm_op_write(&net.ops, net.v, 0, v, sizeof v, why, sizeof why), CNNELM_OK);
    double *U = calloc(L * L, sizeof *U), *V = calloc(L * C, sizeof *V);
    for (size_t i = 0; i < L * L; i++)
        U[i] = 1.0;
    syncs = async_reads = 0;
    ck_assert_msg(cnnelm_net_add_uv(&net, U, V, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(async_reads, 16);
    ck_assert_int_ge(syncs, 16);
    for (size_t i = 0; i < L; i++)
        for (size_t j = 0; j < L; j++)
            ck_assert_double_eq(U[i * L + j], j >= i ? 1.0 + u[i * L + j] : 1.0); /* upper only */
    for (size_t i = 0; i < L * C; i++)
        ck_assert_double_eq(V[i], v[i]);
    free(U);
    free(V);
    cnnelm_net_close(&net);
}
END_TEST

START_TEST(multi_scale_group_is_gathered_on_the_device)
{
    /* conv 2x8x8, then pools 2s (2x4x4 = 32) and 4s (2x2x2 = 8) side by side: L = 40 */
    cnnelm_arch a = arch_of("2c-(2s,4s)");
    ck_assert_int_eq(a.hidden, 40);
    cnnelm_net net;
    open_net(&net, &a, 4);
    net.n = 4;
    int first = a.n_layers - a.n_scales;
    char why[256];
    float block[4 * 32];
    for (int i = first; i < a.n_layers; i++) {
        size_t per = (size_t)a.layer[i].out_c * a.layer[i].out_h * a.layer[i].out_w;
        for (size_t q = 0; q < 4 * per; q++)
            block[q] = (float)(100 * i) + (float)q;
        ck_assert_int_eq(cnnelm_op_write(&net.ops, net.act[i], 0, block, 4 * per * sizeof(float), why,
                                         sizeof why), CNNELM_OK);
    }
    cnnelm_error err = { "" };
    int before_reads = reads;
    ck_assert_msg(cnnelm_net_gather_hidden(&net, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(copies, 4 * 2);       /* one per example and pool */
    ck_assert_int_eq(reads, before_reads); /* nothing came to the host */
    float h[4 * 40];
    ck_assert_int_eq(cnnelm_op_read(&net.ops, net.hcat, 0, h, sizeof h, why, sizeof why), CNNELM_OK);
    for (int i = first; i < a.n_layers; i++) {
        const cnnelm_layer *ly = &a.layer[i];
        size_t per = (size_t)ly->out_c * ly->out_h * ly->out_w;
        for (size_t j = 0; j < 4; j++)
            for (size_t q = 0; q < per; q++)
                ck_assert_float_eq(h[j * 40 + (size_t)ly->h_offset + q], (float)(100 * i) + (float)(j * per + q));
    }
    cnnelm_net_close(&net);
}
END_TEST

/* U and V of 20 examples in 3 chunks with exact sums, on `p`; read back into U, V. */
static uint32_t exact_sums_on(const cnnelm_plugin *p, double *U, double *V)
{
    cnnelm_arch a = arch_of("2c-2s");
    cnnelm_reference_source ref = { .plugin = cpu };
    cnnelm_net net;
    cnnelm_error err = { "" };
    ck_assert_msg(cnnelm_net_open_ex(&net, p, 0, 1, &a, 8, &ref, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_net_set_sums(&net, 1, &err) == 0, "%s", err.msg);
    float params[4096];
    for (size_t i = 0; i < a.n_params; i++)
        params[i] = (float)((int)(i * 7919 % 211) - 105) / 300.0f;
    ck_assert_msg(cnnelm_net_set_params(&net, params, &err) == 0, "%s", err.msg);
    cnnelm_dataset ds = dataset();
    for (int first = 0; first < 20; first += 8) {
        int n = 20 - first < 8 ? 20 - first : 8;
        ck_assert_msg(cnnelm_net_forward(&net, &ds, NULL, (size_t)first, n, &err) == 0 &&
                      cnnelm_net_accumulate(&net, &err) == 0, "%s", err.msg);
    }
    ck_assert_msg(cnnelm_net_add_uv(&net, U, V, &err) == 0, "%s", err.msg);
    uint32_t fell = net.ops.fell_back;
    cnnelm_net_close(&net);
    return fell;
}

START_TEST(exact_sums_without_the_op_run_on_the_reference)
{
    cnnelm_error err = { "" };
    ck_assert_msg(load_cpu(NULL, &err), "%s", err.msg);
    static cnnelm_backend nof64;
    nof64 = *cpu->ops;
    nof64.elm_accumulate_f64 = NULL;
    cnnelm_plugin partial = *cpu;
    partial.ops = &nof64;
    snprintf(partial.name, sizeof partial.name, "nof64");
    size_t L = 32, C = 3;
    double *U1 = calloc(L * L, sizeof *U1), *V1 = calloc(L * C, sizeof *V1);
    double *U2 = calloc(L * L, sizeof *U2), *V2 = calloc(L * C, sizeof *V2);
    ck_assert_uint_eq(exact_sums_on(cpu, U1, V1) >> CNNELM_OP_ELM_ACCUMULATE_F64 & 1u, 0);
    ck_assert_uint_eq(exact_sums_on(&partial, U2, V2) >> CNNELM_OP_ELM_ACCUMULATE_F64 & 1u, 1);
    double most = 0;
    for (size_t i = 0; i < L; i++)
        for (size_t j = i; j < L; j++)
            most = fmax(most, fabs(U1[i * L + j]));
    ck_assert_msg(most > 0, "U is zero: the test would prove nothing");
    ck_assert_msg(memcmp(U1, U2, L * L * sizeof *U1) == 0, "U differs between the op and its fallback");
    ck_assert_msg(memcmp(V1, V2, L * C * sizeof *V1) == 0, "V differs between the op and its fallback");
    free(U1);
    free(V1);
    free(U2);
    free(V2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("device_limits");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, largest_allocation_lowers_the_chunk);
    tcase_add_test(tc, u_larger_than_the_largest_allocation_is_refused);
    tcase_add_test(tc, bounce_slices_follow_the_preferred_transfer);
    tcase_add_test(tc, u_is_read_back_in_queued_blocks);
    tcase_add_test(tc, multi_scale_group_is_gathered_on_the_device);
    tcase_add_test(tc, exact_sums_without_the_op_run_on_the_reference);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
