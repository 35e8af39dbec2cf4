/* IDX files (the MNIST format) written atomically (temporary file, fsync, rename), gzipped when
 * the name ends in ".gz": images and labels in one go, or an image file chunk by chunk
 * (cnnelm_idx_writer). */
#define _GNU_SOURCE

#include "cnnelm/dataset.h"
#include "base/atomic_file.h"
#include "data/idx_internal.h"
#include "data/idx_stream.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int gz_write_all(gzFile gz, const void *p, size_t len)
{
    const unsigned char *c = p;
    while (len > 0) {
        unsigned step = len < GZ_STEP ? (unsigned)len : GZ_STEP;
        int w = gzwrite(gz, c, step);
        if (w <= 0) return -1;
        c += w;
        len -= (size_t)w;
    }
    return 0;
}

/* The header and payload, gzipped when the name ends in .gz, through an atomic file. */
static int write_idx(const char *path, const unsigned char *header, size_t header_len,
                     const uint8_t *payload, size_t payload_len, cnnelm_error *err)
{
    cnnelm_atomic_file af;
    if (cnnelm_atomic_open(&af, path, err))
        return -1;
    const char *what = NULL;
    int e = 0;
    if (ends_with(path, ".gz")) {
        int fd2 = dup(fileno(af.f));
        gzFile gz = fd2 >= 0 ? gzdopen(fd2, "wb6") : NULL;
        if (!gz) {
            e = errno;
            if (fd2 >= 0) close(fd2);
            what = "cannot open gzip stream";
        } else {
            if (gz_write_all(gz, header, header_len) || gz_write_all(gz, payload, payload_len)) {
                int code;
                const char *msg = gzerror(gz, &code);
                e = code == Z_ERRNO ? errno : 0;
                what = code == Z_ERRNO ? "cannot write" : msg;
            }
            int zrc = gzclose(gz);
            if (!what && zrc != Z_OK) {
                e = zrc == Z_ERRNO ? errno : 0;
                what = "cannot write";
            }
        }
    } else if (fwrite(header, 1, header_len, af.f) != header_len ||
               fwrite(payload, 1, payload_len, af.f) != payload_len) {
        e = errno;
        what = "cannot write";
    }
    if (what) {
        cnnelm_atomic_abort(&af);
        return cnnelm_fail(err, "%s: %s: %s", path, what, e ? strerror(e) : "unknown error");
    }
    return cnnelm_atomic_commit(&af, err);
}

/* Checks an image file's shape (1 or 3 channels, 1..UINT32_MAX images, sides 1..IDX_MAX_SIDE, a
 * payload the address space holds) and builds its header: 16 bytes for one channel, 20 (the
 * 4-dimension magic) for three. */
static int image_header(const char *path, size_t n, int channels, int rows, int cols,
                        unsigned char header[20], size_t *header_len, size_t *payload,
                        cnnelm_error *err)
{
    if (channels != 1 && channels != 3)
        return cnnelm_fail(err, "%s: cannot write images of %d channels (1 or 3)", path, channels);
    if (n == 0 || n > UINT32_MAX)
        return cnnelm_fail(err, "%s: cannot write %zu images (IDX holds 1..%u)", path, n, UINT32_MAX);
    if (rows < 1 || cols < 1 || rows > (int)IDX_MAX_SIDE || cols > (int)IDX_MAX_SIDE)
        return cnnelm_fail(err, "%s: cannot write images of %dx%d (each side 1..%u)", path, rows,
                           cols, IDX_MAX_SIDE);
    size_t img = (size_t)channels * (size_t)rows * (size_t)cols;
    if (n > SIZE_MAX / img) {
        if (channels == 1)
            return cnnelm_fail(err, "%s: %zu images of %dx%d overflow the address space", path, n,
                               rows, cols);
        return cnnelm_fail(err, "%s: %zu images of %dx%dx%d overflow the address space", path, n,
                           channels, rows, cols);
    }
    *header_len = cnnelm_idx_put_image_header(header, channels != 1, (uint32_t)n, (uint32_t)channels,
                                              (uint32_t)rows, (uint32_t)cols);
    *payload = n * img;
    return 0;
}

int cnnelm_idx_write_images(const char *path, const uint8_t *images, size_t n, int rows, int cols,
                            cnnelm_error *err)
{
    return cnnelm_idx_write_images_c(path, images, n, 1, rows, cols, err);
}

int cnnelm_idx_write_labels(const char *path, const uint8_t *labels, size_t n, cnnelm_error *err)
{
    if (n == 0 || n > UINT32_MAX)
        return cnnelm_fail(err, "%s: cannot write %zu labels (IDX holds 1..%u)", path, n, UINT32_MAX);
    unsigned char header[8];
    put_be32(header, IDX_MAGIC_LABELS);
    put_be32(header + 4, (uint32_t)n);
    return write_idx(path, header, sizeof header, labels, n, err);
}

int cnnelm_idx_write_images_c(const char *path, const uint8_t *images, size_t n, int channels,
                              int rows, int cols, cnnelm_error *err)
{
    unsigned char header[20];
    size_t hlen = 0, payload = 0;
    if (image_header(path, n, channels, rows, cols, header, &hlen, &payload, err))
        return -1;
    return write_idx(path, header, hlen, images, payload, err);
}

int cnnelm_idx_writer_open(cnnelm_idx_writer *w, const char *path, size_t n, int channels, int rows,
                           int cols, cnnelm_error *err)
{
    memset(w, 0, sizeof *w);
    /* the same header as cnnelm_idx_write_images_c */
    unsigned char header[20];
    size_t hlen = 0, payload = 0;
    if (image_header(path, n, channels, rows, cols, header, &hlen, &payload, err))
        return -1;
    if (cnnelm_atomic_open(&w->af, path, err))
        return -1;
    w->open = 1;
    w->left = payload;
    if (ends_with(path, ".gz")) {
        int fd2 = dup(fileno(w->af.f));
        w->gz = fd2 >= 0 ? gzdopen(fd2, "wb6") : NULL;
        if (!w->gz) {
            int e = errno;
            if (fd2 >= 0) close(fd2);
            cnnelm_idx_writer_abort(w);
            return cnnelm_fail(err, "%s: cannot open gzip stream: %s", path, e ? strerror(e) : "out of memory");
        }
    }
    w->left += hlen; /* put counts the header too */
    if (cnnelm_idx_writer_put(w, header, hlen, err)) {
        cnnelm_idx_writer_abort(w);
        return -1;
    }
    return 0;
}

int cnnelm_idx_writer_put(cnnelm_idx_writer *w, const uint8_t *data, size_t len, cnnelm_error *err)
{
    if (len > w->left)
        return cnnelm_fail(err, "%s: internal: %zu bytes more than the header announces", w->af.path, len - w->left);
    int bad;
    if (w->gz) {
        bad = gz_write_all(w->gz, data, len) != 0;
        if (bad) {
            int code;
            const char *msg = gzerror(w->gz, &code);
            return cnnelm_fail(err, "%s: cannot write: %s", w->af.path, code == Z_ERRNO ? strerror(errno) : msg);
        }
    } else if (fwrite(data, 1, len, w->af.f) != len)
        return cnnelm_fail(err, "%s: cannot write: %s", w->af.path, strerror(errno));
    w->left -= len;
    return 0;
}

int cnnelm_idx_writer_commit(cnnelm_idx_writer *w, cnnelm_error *err)
{
    char path[sizeof w->af.path];
    snprintf(path, sizeof path, "%s", w->af.path);
    if (w->left) {
        cnnelm_idx_writer_abort(w);
        return cnnelm_fail(err, "%s: internal: %zu bytes of payload missing", path, w->left);
    }
    if (w->gz) {
        int zrc = gzclose(w->gz);
        w->gz = NULL;
        if (zrc != Z_OK) {
            int e = zrc == Z_ERRNO ? errno : 0;
            cnnelm_idx_writer_abort(w);
            return cnnelm_fail(err, "%s: cannot write: %s", path, e ? strerror(e) : "unknown error");
        }
    }
    w->open = 0;
    return cnnelm_atomic_commit(&w->af, err);
}

void cnnelm_idx_writer_abort(cnnelm_idx_writer *w)
{
    if (w->gz)
        gzclose(w->gz);
    w->gz = NULL;
    if (w->open)
        cnnelm_atomic_abort(&w->af);
    w->open = 0;
}
