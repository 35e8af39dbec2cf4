/* IDX files (the MNIST format): the header checks every reader uses (magic, dimensions, sizes,
 * with one-line messages for a truncated file or trailing data), opening a file and telling gzip
 * from raw, gzip reads, an image file's header alone (cnnelm_idx_image_info), the data.max_bytes
 * check and the label checks. */
#define _GNU_SOURCE

#include "cnnelm/dataset.h"
#include "data/idx_internal.h"
#include "data/idx_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static const char *magic_kind(uint32_t magic)
{
    if (magic == IDX_MAGIC_IMAGES) return " (an IDX image file)";
    if (magic == IDX_MAGIC_IMAGES_C) return " (an IDX image file with channels)";
    if ((magic >> 8) == 0x0d || (magic >> 8) == 0x0e) return " (an IDX file of float or double elements)";
    if (magic == IDX_MAGIC_LABELS) return " (an IDX label file)";
    if ((magic >> 16) == 0 && (magic >> 8 & 0xff) != 0x08) return " (an IDX file of another element type)";
    return "";
}

/* A 4-dimension image header n x c x h x w (magic 0x804): c must be 1 or 3; a file that looks
 * like n x h x w x c (interleaved) is refused with a message saying which order is read. */
static int parse_header_channels(const char *path, const unsigned char *p, size_t have,
                                 idx_header *h, cnnelm_error *err)
{
    if (have < 20)
        return cnnelm_fail(err, "%s: truncated: %zu bytes, too short for a 4-dimension IDX image header (20 bytes)",
                           path, have);
    uint32_t d[4];
    for (int i = 0; i < 4; i++) {
        d[i] = be32(p + 4 + 4 * i);
        if (d[i] == 0)
            return cnnelm_fail(err, "%s: header dimension %d is 0; every dimension must be non-zero", path, i);
    }
    if (d[1] != 1 && d[1] != 3) {
        if (d[3] == 1 || d[3] == 3)
            return cnnelm_fail(err, "%s: a 4-dimension IDX file of %ux%ux%ux%u looks like n x h x w x c "
                               "(interleaved); cnnelm reads n x c x h x w (planar, c = 1 or 3)",
                               path, d[0], d[1], d[2], d[3]);
        return cnnelm_fail(err, "%s: a 4-dimension IDX file with %u channels (n x c x h x w); "
                           "supported: 1 or 3 channels", path, d[1]);
    }
    if (d[2] > IDX_MAX_SIDE || d[3] > IDX_MAX_SIDE)
        return cnnelm_fail(err, "%s: images of %ux%u are too large (at most %ux%u)", path,
                           d[2], d[3], IDX_MAX_SIDE, IDX_MAX_SIDE);
    memset(h, 0, sizeof *h);
    h->dims[0] = d[0];
    h->dims[1] = d[2];
    h->dims[2] = d[3];
    h->channels = d[1];
    h->header_bytes = 20;
    size_t img = (size_t)d[1] * d[2] * d[3];
    if ((size_t)d[0] > SIZE_MAX / img)
        return cnnelm_fail(err, "%s: header says %u images of %ux%ux%u, which overflows the address space",
                           path, d[0], d[1], d[2], d[3]);
    h->payload_bytes = (size_t)d[0] * img;
    return 0;
}

/* Checks the magic and the dimensions of an IDX header (`have` bytes at `p`, as many as the
 * file gave, up to 20) and fills h. */
int cnnelm_idx_parse_header(const char *path, const unsigned char *p, size_t have, int images,
                            idx_header *h, cnnelm_error *err)
{
    uint32_t want_magic = images ? IDX_MAGIC_IMAGES : IDX_MAGIC_LABELS;
    size_t need = images ? 16 : 8;
    int ndims = images ? 3 : 1;
    static const char *const dim_names[3] = {"count", "rows", "cols"};

    if (have < 4)
        return cnnelm_fail(err, "%s: truncated: %zu bytes, too short for an IDX header (%zu bytes)",
                           path, have, need);
    uint32_t magic = be32(p);
    if (images && magic == IDX_MAGIC_IMAGES_C)
        return parse_header_channels(path, p, have, h, err);
    if (magic != want_magic)
        return cnnelm_fail(err, "%s: bad magic 0x%08x%s, expected 0x%08x (IDX %s)", path, magic,
                           magic_kind(magic), want_magic,
                           images ? "images: unsigned bytes, 3 dimensions"
                                  : "labels: unsigned bytes, 1 dimension");
    if (have < need)
        return cnnelm_fail(err, "%s: truncated: %zu bytes, too short for an IDX %s header (%zu bytes)",
                           path, have, images ? "image" : "label", need);
    memset(h, 0, sizeof *h);
    h->header_bytes = need;
    h->channels = 1;
    for (int i = 0; i < ndims; i++) {
        h->dims[i] = be32(p + 4 + 4 * i);
        if (h->dims[i] == 0)
            return cnnelm_fail(err, "%s: header dimension %d (%s) is 0; every dimension must be non-zero",
                               path, i, images ? dim_names[i] : "count");
    }
    if (images) {
        if (h->dims[1] > IDX_MAX_SIDE || h->dims[2] > IDX_MAX_SIDE)
            return cnnelm_fail(err, "%s: images of %ux%u are too large (at most %ux%u)", path,
                               h->dims[1], h->dims[2], IDX_MAX_SIDE, IDX_MAX_SIDE);
        size_t img = (size_t)h->dims[1] * h->dims[2];
        if ((size_t)h->dims[0] > SIZE_MAX / img)
            return cnnelm_fail(err, "%s: header says %u images of %ux%u, which overflows the address space",
                               path, h->dims[0], h->dims[1], h->dims[2]);
        h->payload_bytes = (size_t)h->dims[0] * img;
    } else {
        h->payload_bytes = h->dims[0];
    }
    return 0;
}

/* "header says N images of RxC (X bytes)" or "header says N labels (N bytes)". */
void cnnelm_idx_describe(const idx_header *h, int images, char *buf, size_t size)
{
    if (images)
        snprintf(buf, size, "header says %u images of %ux%u (%zu bytes)", h->dims[0], h->dims[1],
                 h->dims[2], h->payload_bytes);
    else
        snprintf(buf, size, "header says %u labels (%zu bytes)", h->dims[0], h->payload_bytes);
}

int cnnelm_idx_fail_truncated(const char *path, const idx_header *h, int images, size_t got,
                              cnnelm_error *err)
{
    char what[160];
    cnnelm_idx_describe(h, images, what, sizeof what);
    return cnnelm_fail(err, "%s: truncated: %s but only %zu bytes follow", path, what, got);
}

int cnnelm_idx_fail_trailing(const char *path, const idx_header *h, int images, const char *extra,
                             cnnelm_error *err)
{
    char what[160];
    cnnelm_idx_describe(h, images, what, sizeof what);
    return cnnelm_fail(err, "%s: %s but %s bytes follow: trailing data after the payload", path,
                       what, extra);
}

/* Reads up to len bytes; returns how many (short only at the end of the stream), or -1 (message
 * in err). A gzip stream cut short reads as a short count (zlib reports it as Z_BUF_ERROR, not
 * as a failure); *cut is then set. */
long long cnnelm_idx_gz_read(gzFile gz, const char *path, void *dst, size_t len, int *cut,
                             cnnelm_error *err)
{
    size_t done = 0;
    while (done < len) {
        size_t step = len - done < GZ_STEP ? len - done : GZ_STEP;
        int got = gzread(gz, (unsigned char *)dst + done, (unsigned)step);
        int code;
        const char *msg = gzerror(gz, &code);
        if (got < 0 || (code != Z_OK && code != Z_BUF_ERROR)) {
            if (code == Z_ERRNO)
                msg = strerror(errno);
            /* zlib names a gzdopen'd stream "<fd:N>": the file name is already there */
            if (msg && strncmp(msg, "<fd:", 4) == 0 && strstr(msg, ">: "))
                msg = strstr(msg, ">: ") + 3;
            return cnnelm_fail(err, "%s: cannot decompress: %s", path, msg ? msg : "unknown error");
        }
        if (got == 0) {
            if (code == Z_BUF_ERROR)
                *cut = 1;
            break;
        }
        done += (size_t)got;
    }
    return (long long)done;
}

/* Opens path and tells gzip from raw by the first two bytes. */
int cnnelm_idx_open(const char *path, int *fd_out, int *is_gzip, struct stat *st, cnnelm_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cnnelm_fail(err, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        return cnnelm_fail(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st->st_mode)) {
        close(fd);
        return cnnelm_fail(err, "%s: cannot read: is a directory", path);
    }
    *is_gzip = 0;
    if (S_ISREG(st->st_mode)) {
        unsigned char m[2];
        ssize_t got = pread(fd, m, 2, 0);
        if (got < 0) {
            int e = errno;
            close(fd);
            return cnnelm_fail(err, "%s: cannot read: %s", path, strerror(e));
        }
        *is_gzip = got == 2 && m[0] == 0x1f && m[1] == 0x8b;
    } else {
        *is_gzip = 1; /* pipes and the like: stream through zlib, which passes raw data through */
    }
    *fd_out = fd;
    return 0;
}

/* The header of an open IDX image stream (gzip or raw through zlib). */
int cnnelm_idx_read_gz_header(gzFile gz, const char *path, idx_header *h, cnnelm_error *err)
{
    unsigned char head[20];
    int cut = 0;
    long long got = cnnelm_idx_gz_read(gz, path, head, 16, &cut, err);
    if (got == 16 && be32(head) == IDX_MAGIC_IMAGES_C) {
        long long more = cnnelm_idx_gz_read(gz, path, head + 16, 4, &cut, err);
        if (more < 0)
            return -1;
        got += more;
    }
    if (got < 0)
        return -1;
    return cnnelm_idx_parse_header(path, head, (size_t)got, 1, h, err);
}

gzFile cnnelm_idx_gz_from(int fd, const char *path, cnnelm_error *err)
{
    int fd2 = dup(fd);
    gzFile gz = fd2 >= 0 ? gzdopen(fd2, "rb") : NULL;
    if (!gz) {
        if (fd2 >= 0)
            close(fd2);
        cnnelm_fail(err, "%s: cannot read: %s", path, fd2 < 0 ? strerror(errno) : "out of memory");
        return NULL;
    }
    gzbuffer(gz, 1u << 18);
    return gz;
}

int cnnelm_idx_image_info(const char *path, cnnelm_idx_info *info, cnnelm_error *err)
{
    int fd, is_gzip;
    struct stat st;
    memset(info, 0, sizeof *info);
    if (cnnelm_idx_open(path, &fd, &is_gzip, &st, err))
        return -1;
    idx_header h;
    int rc = -1;
    if (is_gzip) {
        gzFile gz = cnnelm_idx_gz_from(fd, path, err);
        if (gz) {
            rc = cnnelm_idx_read_gz_header(gz, path, &h, err);
            gzclose(gz);
        }
    } else {
        unsigned char head[20];
        size_t size = (size_t)st.st_size;
        ssize_t got = pread(fd, head, size < 20 ? size : 20, 0);
        if (got < 0)
            cnnelm_fail(err, "%s: cannot read: %s", path, strerror(errno));
        else if (cnnelm_idx_parse_header(path, head, (size_t)got, 1, &h, err) == 0) {
            size_t follow = size - h.header_bytes;
            if (follow < h.payload_bytes)
                cnnelm_idx_fail_truncated(path, &h, 1, follow, err);
            else if (follow > h.payload_bytes) {
                char n[32];
                snprintf(n, sizeof n, "%zu", follow);
                cnnelm_idx_fail_trailing(path, &h, 1, n, err);
            } else
                rc = 0;
        }
    }
    close(fd);
    if (rc)
        return -1;
    info->n = h.dims[0];
    info->rows = (int)h.dims[1];
    info->cols = (int)h.dims[2];
    info->channels = (int)h.channels;
    info->header_bytes = h.header_bytes;
    info->gzip = is_gzip;
    return 0;
}

/* Training labels set the class count (the largest + 1): a stray large label (200 among 0..9)
 * would silently make a model with classes that have no example. Classes must be 0..C-1 with
 * every one present; the error names the file, the first out-of-range index and its value. */
static int check_label_gaps(const char *path, const uint8_t *labels, size_t n, cnnelm_error *err)
{
    size_t count[256] = { 0 };
    for (size_t i = 0; i < n; i++)
        count[labels[i]]++;
    int top = 255;
    while (top > 0 && count[top] == 0)
        top--;
    int missing = -1;
    for (int c = 0; c < top && missing < 0; c++)
        if (count[c] == 0)
            missing = c;
    if (missing < 0)
        return 0;
    /* the labels above the first gap are the strays */
    for (size_t i = 0; i < n; i++)
        if (labels[i] > missing)
            return cnnelm_fail(err, "%s: label %d of example %zu is out of range: no example has "
                               "label %d%s", path, labels[i], i, missing,
                               missing ? "" : " (classes are numbered from 0)");
    return 0;
}

int cnnelm_idx_check_size(const char *path, unsigned long long max_bytes, cnnelm_error *err)
{
    struct stat pst;
    if (!path || !*path || (stat(path, &pst) == 0 && S_ISDIR(pst.st_mode)))
        return 0; /* nothing, or an image folder: not an IDX header to trust */
    if (max_bytes == 0) {
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        max_bytes = pages > 0 && page > 0 ? (unsigned long long)pages * (unsigned long long)page / 2
                                          : 1ull << 34;
    }
    int fd, is_gzip;
    struct stat st;
    if (cnnelm_idx_open(path, &fd, &is_gzip, &st, err))
        return -1;
    unsigned char head[20];
    long long got;
    int cut = 0;
    if (is_gzip) {
        gzFile gz = cnnelm_idx_gz_from(fd, path, err);
        if (!gz) {
            close(fd);
            return -1;
        }
        got = cnnelm_idx_gz_read(gz, path, head, sizeof head, &cut, err);
        gzclose(gz);
    } else {
        got = pread(fd, head, sizeof head, 0);
        if (got < 0)
            cnnelm_fail(err, "%s: cannot read: %s", path, strerror(errno));
    }
    close(fd);
    if (got < 0)
        return -1;
    if (got < 4)
        return 0; /* the reader reports it */
    int images = be32(head) == IDX_MAGIC_IMAGES || be32(head) == IDX_MAGIC_IMAGES_C;
    if (!is_gzip && images)
        return 0; /* mapped: costs no memory, and its size is checked against the file */
    idx_header h;
    cnnelm_error ignore;
    if (cnnelm_idx_parse_header(path, head, (size_t)got, images, &h, &ignore))
        return 0; /* the reader reports it */
    if (h.payload_bytes > max_bytes) {
        char what[160];
        cnnelm_idx_describe(&h, images, what, sizeof what);
        return cnnelm_fail(err, "%s: %s, more than data.max_bytes (%llu bytes) allows", path, what,
                           max_bytes);
    }
    return 0;
}

int cnnelm_idx_check_labels(const char *path, const uint8_t *labels, size_t n, int max_classes,
                            cnnelm_error *err)
{
    int training = max_classes == CNNELM_LABELS_TRAIN;
    if (training) max_classes = 256;
    if (max_classes < 1) max_classes = 1;
    for (size_t i = 0; i < n; i++)
        if (labels[i] >= max_classes)
            return cnnelm_fail(err, "%s: label %d of example %zu is out of range (at most %d classes: 0..%d)",
                               path, labels[i], i, max_classes, max_classes - 1);
    return training ? check_label_gaps(path, labels, n, err) : 0;
}
