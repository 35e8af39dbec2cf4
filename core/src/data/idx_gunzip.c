/* IDX files (the MNIST format): a gzipped image file decompressed into a file descriptor, for
 * the streamed sets' decompression cache (cnnelm_idx_gunzip_to), with the reader's checks. */
#define _GNU_SOURCE

#include "data/idx_internal.h"
#include "data/idx_stream.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static int write_fd_all(int fd, const void *p, size_t len)
{
    const unsigned char *c = p;
    while (len > 0) {
        ssize_t w = write(fd, c, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        len -= (size_t)w;
    }
    return 0;
}

int cnnelm_idx_gunzip_to(const char *path, int out, const cnnelm_idx_info *want, cnnelm_error *err)
{
    int fd, is_gzip;
    struct stat st;
    if (cnnelm_idx_open(path, &fd, &is_gzip, &st, err))
        return -1;
    gzFile gz = cnnelm_idx_gz_from(fd, path, err);
    close(fd);
    if (!gz)
        return -1;
    int rc = -1, cut = 0;
    idx_header h;
    enum { STEP = 1 << 20 };
    unsigned char *buf = malloc(STEP);
    if (!buf) {
        cnnelm_fail(err, "%s: out of memory", path);
        goto done;
    }
    if (cnnelm_idx_read_gz_header(gz, path, &h, err))
        goto done;
    if (h.dims[0] != want->n || (int)h.dims[1] != want->rows || (int)h.dims[2] != want->cols ||
        (int)h.channels != want->channels) {
        cnnelm_fail(err, "%s: the file changed while in use (its header is not the one read before)", path);
        goto done;
    }
    /* the header as read, then the payload: a raw IDX file the reader can pread */
    unsigned char head[20];
    cnnelm_idx_put_image_header(head, h.header_bytes == 20, h.dims[0], h.channels, h.dims[1], h.dims[2]);
    if (write_fd_all(out, head, h.header_bytes)) {
        cnnelm_fail(err, "%s: cannot write the decompressed copy: %s", path, strerror(errno));
        goto done;
    }
    size_t total = 0;
    for (;;) {
        long long got = cnnelm_idx_gz_read(gz, path, buf, STEP, &cut, err);
        if (got < 0)
            goto done;
        size_t keep = (size_t)got;
        if (total + keep > h.payload_bytes) { /* trailing data: count it all for the message */
            size_t extra = total + keep;
            while (got == STEP) {
                got = cnnelm_idx_gz_read(gz, path, buf, STEP, &cut, err);
                if (got < 0)
                    goto done;
                extra += (size_t)got;
            }
            char n[32];
            snprintf(n, sizeof n, "%zu", extra);
            cnnelm_idx_fail_trailing(path, &h, 1, n, err);
            goto done;
        }
        if (keep && write_fd_all(out, buf, keep)) {
            cnnelm_fail(err, "%s: cannot write the decompressed copy: %s", path, strerror(errno));
            goto done;
        }
        total += keep;
        if (got < STEP)
            break;
    }
    if (total < h.payload_bytes) {
        cnnelm_idx_fail_truncated(path, &h, 1, total, err);
        goto done;
    }
    if (cut) {
        char what[160];
        cnnelm_idx_describe(&h, 1, what, sizeof what);
        cnnelm_fail(err, "%s: truncated: %s and all follow, but the gzip stream ends before its trailer",
                    path, what);
        goto done;
    }
    rc = 0;
done:
    free(buf);
    gzclose(gz);
    return rc;
}
