/* Chunks loaded ahead (cnnelm_net_forward_ahead, network_load.c): the loader thread's chunk is
 * the one asked for, so H and the labels after each call equal those of plain
 * cnnelm_net_forward, chunk by chunk, with shuffled rows and a short last chunk; a call for
 * another chunk than the one loaded ahead gets its own; a read error in a chunk loaded ahead
 * is reported by the call for that chunk (naming the file), not before; the network closes
 * with a load still pending. */
#define _XOPEN_SOURCE 700
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnnelm/config.h"
#include "cnnelm/plugin.h"
#include "model/network.h"
#include "model/network_internal.h"

enum { N = 23, C = 4, SIDE = 12, K = 3, CHUNK = 5 };

static cnnelm_plugin *plugin;
static uint8_t images[N * SIDE * SIDE], labels[N];

static cnnelm_dataset memory_set(void)
{
    srand(31);
    for (int i = 0; i < N * SIDE * SIDE; i++)
        images[i] = (uint8_t)(1 + rand() % 255);
    for (int e = 0; e < N; e++)
        labels[e] = (uint8_t)(rand() % C);
    cnnelm_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.images = images;
    ds.labels = labels;
    ds.n = N;
    ds.rows = ds.cols = SIDE;
    ds.classes = C;
    return ds;
}

static void open_net(cnnelm_net *net, cnnelm_arch *a, float **params)
{
    cnnelm_error err = {""};
    ck_assert_msg(cnnelm_arch_init(a, "3c-2s", K, 1, SIDE, SIDE, C, CNNELM_ACT_RELU, CNNELM_POOL_MEAN,
                                   CNNELM_ACT_IDENTITY, &err) == 0, "%s", err.msg);
    *params = malloc(a->n_params * sizeof(float));
    for (size_t i = 0; i < a->n_params; i++)
        (*params)[i] = (float)((double)rand() / RAND_MAX - 0.5);
    ck_assert_msg(cnnelm_net_open(net, plugin, 0, 1, a, CHUNK, NULL, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(net->n_slots, 2); /* the CPU backend queues uploads: the loader is used */
    ck_assert_msg(cnnelm_net_set_params(net, *params, &err) == 0, "%s", err.msg);
}

/* Two networks with the same kernels: one to check, one for the reference. */
static void open_pair(cnnelm_net *net, cnnelm_net *other, cnnelm_arch *a, float **params)
{
    cnnelm_error err = {""};
    open_net(net, a, params);
    ck_assert_msg(cnnelm_net_open(other, plugin, 0, 1, a, CHUNK, NULL, &err) == 0 &&
                  cnnelm_net_set_params(other, *params, &err) == 0, "%s", err.msg);
}

/* The network's H after the last forward (n x L floats, malloc'd). */
static float *hidden_of(cnnelm_net *net, int n)
{
    size_t bytes = (size_t)n * net->arch.hidden * sizeof(float);
    float *H = malloc(bytes);
    char why[256] = "";
    ck_assert_int_eq(cnnelm_op_read(&net->ops, cnnelm_net_hidden_buffer(net), 0, H, bytes, why, sizeof why),
                     CNNELM_OK);
    return H;
}

/* Every chunk of `rows` (NULL: in order) through forward_ahead equals forward's, bit for bit. */
static void check_order(const size_t *rows)
{
    cnnelm_dataset ds = memory_set();
    cnnelm_arch a;
    float *params;
    cnnelm_net plain, ahead;
    open_pair(&plain, &ahead, &a, &params);
    cnnelm_error err = {""};
    for (size_t i = 0; i < N;) {
        int c = N - i < CHUNK ? (int)(N - i) : CHUNK;
        size_t next = i + (size_t)c;
        int next_n = next >= N ? 0 : N - next < CHUNK ? (int)(N - next) : CHUNK;
        ck_assert_msg(cnnelm_net_forward(&plain, &ds, rows, i, c, &err) == 0, "%s", err.msg);
        ck_assert_msg(cnnelm_net_forward_ahead(&ahead, &ds, rows, i, c, next, next_n, &err) == 0, "%s", err.msg);
        float *h0 = hidden_of(&plain, c), *h1 = hidden_of(&ahead, c);
        ck_assert_msg(memcmp(h0, h1, (size_t)c * a.hidden * sizeof(float)) == 0, "chunk at %zu: H differs", i);
        ck_assert_int_eq(memcmp(plain.labels, ahead.labels, (size_t)c), 0);
        for (int j = 0; j < c; j++)
            ck_assert_int_eq(ahead.labels[j], labels[rows ? rows[i + (size_t)j] : i + (size_t)j]);
        free(h0);
        free(h1);
        i = next;
    }
    /* every chunk but the first came from the loader */
    ck_assert_uint_eq(ahead.loaded_ahead, (N + CHUNK - 1) / CHUNK - 1);
    ck_assert_uint_eq(plain.loaded_ahead, 0);
    cnnelm_net_close(&plain);
    cnnelm_net_close(&ahead);
    free(params);
}

START_TEST(same_chunks_as_forward)
{
    check_order(NULL);
    size_t rows[N];
    for (int i = 0; i < N; i++)
        rows[i] = (size_t)((i * 7 + 3) % N); /* a permutation: 7 is prime to 23 */
    check_order(rows);
}
END_TEST

START_TEST(another_chunk_than_loaded)
{
    cnnelm_dataset ds = memory_set();
    cnnelm_arch a;
    float *params;
    cnnelm_net net, ref;
    open_pair(&net, &ref, &a, &params);
    cnnelm_error err = {""};
    /* chunk 0 with 10..15 loaded ahead, then 5..9 asked for instead */
    ck_assert_msg(cnnelm_net_forward_ahead(&net, &ds, NULL, 0, CHUNK, 10, CHUNK, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_net_forward(&net, &ds, NULL, 5, 4, &err) == 0, "%s", err.msg);
    ck_assert_msg(cnnelm_net_forward(&ref, &ds, NULL, 5, 4, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(net.loaded_ahead, 0); /* the chunk loaded ahead was not the one asked for */
    float *h0 = hidden_of(&ref, 4), *h1 = hidden_of(&net, 4);
    ck_assert_int_eq(memcmp(h0, h1, 4 * (size_t)a.hidden * sizeof(float)), 0);
    ck_assert_int_eq(memcmp(net.labels, labels + 5, 4), 0);
    free(h0);
    free(h1);
    /* closing with a load ahead still pending */
    ck_assert_msg(cnnelm_net_forward_ahead(&net, &ds, NULL, 0, CHUNK, 5, CHUNK, &err) == 0, "%s", err.msg);
    cnnelm_net_close(&net);
    cnnelm_net_close(&ref);
    free(params);
}
END_TEST

/* Two shards of 8 images; the second is cut short after the set is opened: its chunk fails,
 * with the file named, when that chunk is asked for; the chunk before it still succeeds. */
START_TEST(read_error_of_a_chunk_loaded_ahead)
{
    char dir[] = "/tmp/cnnelm_test_net_load.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    cnnelm_error err = {""};
    static uint8_t img[8 * SIDE * SIDE], lab[8];
    char pi[2][512], pl[512];
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; i < sizeof img; i++)
            img[i] = (uint8_t)(1 + (i * 13 + (size_t)s) % 250);
        for (int e = 0; e < 8; e++)
            lab[e] = (uint8_t)((e + s) % C);
        snprintf(pi[s], sizeof pi[s], "%s/part-%d-images-idx3-ubyte", dir, s);
        snprintf(pl, sizeof pl, "%s/part-%d-labels-idx1-ubyte", dir, s);
        ck_assert_msg(cnnelm_idx_write_images(pi[s], img, 8, SIDE, SIDE, &err) == 0 &&
                      cnnelm_idx_write_labels(pl, lab, 8, &err) == 0, "%s", err.msg);
    }
    char cfgpath[600], text[2048];
    snprintf(cfgpath, sizeof cfgpath, "%s/run.cfg", dir);
    snprintf(text, sizeof text, "data = { shards = \"%s/part-*-images-idx3-ubyte\"; hold_mb = 0; };\n", dir);
    FILE *f = fopen(cfgpath, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    cnnelm_config cfg;
    ck_assert_msg(cnnelm_config_load(&cfg, cfgpath, NULL, 0, &err) == 0, "%s", err.msg);
    cnnelm_dataset ds;
    ck_assert_msg(cnnelm_dataset_load_config(&ds, &cfg, 0, 256, &err) == 0, "%s", err.msg);
    ck_assert_ptr_nonnull(ds.stream);
    ck_assert_int_eq(truncate(pi[1], 16 + 2 * SIDE * SIDE), 0); /* 2 of its 8 images left */

    cnnelm_arch a;
    float *params;
    cnnelm_net net;
    open_net(&net, &a, &params);
    /* rows 3..7 (shard 0's last five) with 8..12 loaded ahead (shard 1's first five: cut) */
    ck_assert_msg(cnnelm_net_forward_ahead(&net, &ds, NULL, 3, CHUNK, 8, CHUNK, &err) == 0, "%s", err.msg);
    err.msg[0] = 0;
    ck_assert_int_ne(cnnelm_net_forward_ahead(&net, &ds, NULL, 8, CHUNK, 13, 3, &err), 0);
    ck_assert_msg(strstr(err.msg, "part-1-images-idx3-ubyte"), "the error does not name the file: %s", err.msg);
    /* the network still serves a good chunk afterwards */
    ck_assert_msg(cnnelm_net_forward(&net, &ds, NULL, 0, CHUNK, &err) == 0, "%s", err.msg);
    cnnelm_net_close(&net);
    free(params);
    cnnelm_dataset_free(&ds);
    cnnelm_config_free(&cfg);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void)
{
    cnnelm_error err;
    if (cnnelm_plugin_load("cpu", NULL, &plugin, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    Suite *s = suite_create("net_load");
    TCase *tc = tcase_create("net_load");
    tcase_add_test(tc, same_chunks_as_forward);
    tcase_add_test(tc, another_chunk_than_loaded);
    tcase_add_test(tc, read_error_of_a_chunk_loaded_ahead);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    cnnelm_plugin_unload(plugin);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
