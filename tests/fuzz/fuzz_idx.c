/* libFuzzer harness for the IDX reader: the input as a file (raw, or gzip when it starts with
 * the gzip magic), then the same bytes gzip-compressed, read as images and as labels. The
 * reader must give a dataset or a one-line error naming the file, never a memory error. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "cnnelm/dataset.h"

static char path[64];

static void check_one(void)
{
    cnnelm_error err = { "" };
    cnnelm_dataset ds;
    memset(&ds, 0, sizeof ds);
    if (cnnelm_idx_read_images(path, &ds, &err) == 0) {
        /* every mapped or copied byte is readable */
        size_t px = (size_t)ds.rows * (size_t)ds.cols, sum = 0;
        for (size_t i = 0; i < ds.n * px; i++)
            sum += ds.images[i];
        (void)sum;
    } else if (strncmp(err.msg, path, strlen(path)) != 0 || strchr(err.msg, '\n')) {
        abort(); /* messages name the file, on one line */
    }
    cnnelm_dataset_free(&ds);
    memset(&ds, 0, sizeof ds);
    if (cnnelm_idx_read_labels(path, &ds, &err) == 0) {
        if (ds.classes < 1 || ds.classes > 256)
            abort();
    } else if (strchr(err.msg, '\n')) {
        abort();
    }
    cnnelm_dataset_free(&ds);
    (void)cnnelm_idx_check_size(path, 1u << 20, &err);
}

static void write_file(const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/cnnelm-fuzz-idx-%d", (int)getpid());
    write_file(data, size);
    check_one();
    /* the same bytes as a valid gzip stream, so the checks after decompression are reached */
    uLongf zlen = compressBound((uLong)size) + 32;
    uint8_t *z = malloc(zlen);
    z_stream s;
    memset(&s, 0, sizeof s);
    if (z && deflateInit2(&s, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK) {
        s.next_in = (Bytef *)data;
        s.avail_in = (uInt)size;
        s.next_out = z;
        s.avail_out = (uInt)zlen;
        if (deflate(&s, Z_FINISH) == Z_STREAM_END) {
            write_file(z, s.total_out);
            check_one();
        }
        deflateEnd(&s);
    }
    free(z);
    unlink(path);
    return 0;
}
