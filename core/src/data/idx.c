/* IDX files (the MNIST format): reading images and labels, raw (memory-mapped) or gzipped, with
 * every header and length checked, and writing them atomically (temporary file, fsync, rename). */
#define _GNU_SOURCE

#include "cnnelm/dataset.h"
#include "base/atomic_file.h"
#include "data/idx_stream.h"
#include "data/dataset_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_MAGIC_IMAGES_C 0x00000804u /* n x c x h x w: c channels, planar */
#define IDX_MAX_SIDE 4096u
#define GZ_STEP (1u << 30) /* gzread takes an unsigned int length */
#define GZ_FIRST_BLOCK ((size_t)1 << 22) /* the payload buffer starts at 4 MiB and doubles */

/* What a header announced. */
typedef struct idx_header {
    uint32_t dims[3];      /* count, rows, cols */
    uint32_t channels;     /* 1, or the second dimension of a 4-dimension image file */
    size_t header_bytes;   /* 8 for labels, 16 for images, 20 for 4-dimension images */
    size_t payload_bytes;  /* product of the dimensions */
} idx_header;

static void map_register(const void *start, size_t len, const char *path);

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);  p[3] = (unsigned char)v;
}

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
static int parse_header(const char *path, const unsigned char *p, size_t have, int images,
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
static void describe(const idx_header *h, int images, char *buf, size_t size)
{
    if (images)
        snprintf(buf, size, "header says %u images of %ux%u (%zu bytes)", h->dims[0], h->dims[1],
                 h->dims[2], h->payload_bytes);
    else
        snprintf(buf, size, "header says %u labels (%zu bytes)", h->dims[0], h->payload_bytes);
}

static int fail_truncated(const char *path, const idx_header *h, int images, size_t got,
                          cnnelm_error *err)
{
    char what[160];
    describe(h, images, what, sizeof what);
    return cnnelm_fail(err, "%s: truncated: %s but only %zu bytes follow", path, what, got);
}

static int fail_trailing(const char *path, const idx_header *h, int images, const char *extra,
                         cnnelm_error *err)
{
    char what[160];
    describe(h, images, what, sizeof what);
    return cnnelm_fail(err, "%s: %s but %s bytes follow: trailing data after the payload", path,
                       what, extra);
}

/* Reads up to len bytes; returns how many (short only at the end of the stream), or -1 (message
 * in err). A gzip stream cut short reads as a short count (zlib reports it as Z_BUF_ERROR, not
 * as a failure); *cut is then set. */
static long long gz_read_full(gzFile gz, const char *path, void *dst, size_t len, int *cut,
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

/* Streams the payload through zlib (which also reads non-gzip data transparently): keeps the
 * first `keep` bytes in a malloc'd block, drains the rest and checks that exactly
 * h->payload_bytes follow the header. */
static int read_stream(int fd, const char *path, int images, size_t keep_examples,
                       long long raw_size, idx_header *h, uint8_t **out, cnnelm_error *err)
{
    *out = NULL;
    int fd2 = dup(fd);
    if (fd2 < 0)
        return cnnelm_fail(err, "%s: cannot read: %s", path, strerror(errno));
    gzFile gz = gzdopen(fd2, "rb");
    if (!gz) {
        close(fd2);
        return cnnelm_fail(err, "%s: cannot read: out of memory", path);
    }
    gzbuffer(gz, 1u << 18);
    int rc = -1;
    unsigned char head[20];
    uint8_t *buf = NULL;
    int cut = 0;
    long long got = gz_read_full(gz, path, head, images ? 16 : 8, &cut, err);
    if (got == 16 && images && be32(head) == IDX_MAGIC_IMAGES_C) {
        long long more = gz_read_full(gz, path, head + 16, 4, &cut, err);
        if (more < 0)
            goto done;
        got += more;
    }
    if (got < 0 || parse_header(path, head, (size_t)got, images, h, err))
        goto done;

    size_t example = images ? (size_t)h->channels * h->dims[1] * h->dims[2] : 1;
    size_t keep = h->payload_bytes;
    if (keep_examples > 0 && keep_examples < h->dims[0])
        keep = keep_examples * example;
    /* A raw file's size is known: a header that claims more than follows is refused before
     * anything is allocated. */
    if (raw_size >= 0 && (uint64_t)raw_size - h->header_bytes < h->payload_bytes) {
        fail_truncated(path, h, images, (size_t)raw_size - h->header_bytes, err);
        goto done;
    }
    /* The header's count is not trusted: the buffer grows with what the stream actually gives
     * (a small gzip claiming 10^7 images costs what it holds, not 7.5 GB). */
    size_t total = 0, cap = 0;
    while (total < keep) {
        if (total == cap) {
            size_t next = cap ? cap * 2 : GZ_FIRST_BLOCK;
            if (next > keep || next < cap)
                next = keep;
            uint8_t *nb = realloc(buf, next);
            if (!nb) {
                cnnelm_fail(err, "%s: out of memory for %zu bytes of payload", path, next);
                goto done;
            }
            buf = nb;
            cap = next;
        }
        got = gz_read_full(gz, path, buf + total, cap - total, &cut, err);
        if (got < 0)
            goto done;
        total += (size_t)got;
        if (total < cap)
            break; /* the stream ended */
    }
    if (total == keep && keep < h->payload_bytes) {
        /* Drain what the limit leaves out, so that a bad file is still reported. */
        unsigned char scratch[16384];
        while (total < h->payload_bytes) {
            size_t want = h->payload_bytes - total;
            if (want > sizeof scratch) want = sizeof scratch;
            got = gz_read_full(gz, path, scratch, want, &cut, err);
            if (got < 0)
                goto done;
            total += (size_t)got;
            if ((size_t)got < want)
                break;
        }
    }
    if (total < h->payload_bytes) {
        fail_truncated(path, h, images, total, err);
        goto done;
    }
    /* Anything more is an error; count it all for the message. */
    unsigned char extra[16384];
    size_t extra_total = 0;
    do {
        got = gz_read_full(gz, path, extra, sizeof extra, &cut, err);
        if (got < 0)
            goto done;
        extra_total += (size_t)got;
    } while (got == (long long)sizeof extra);
    if (extra_total > 0) {
        char n[32];
        snprintf(n, sizeof n, "%zu", total + extra_total);
        fail_trailing(path, h, images, n, err);
        goto done;
    }
    if (cut) {
        char what[160];
        describe(h, images, what, sizeof what);
        cnnelm_fail(err, "%s: truncated: %s and all follow, but the gzip stream ends before its trailer",
                    path, what);
        goto done;
    }
    *out = buf;
    buf = NULL;
    rc = 0;
done:
    free(buf);
    gzclose(gz);
    return rc;
}

/* Opens path and tells gzip from raw by the first two bytes. */
static int open_idx(const char *path, int *fd_out, int *is_gzip, struct stat *st, cnnelm_error *err)
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

/* Reads one IDX file into *data (a pointer into *map_out when mmap'd, else into *alloc_out). */
static int read_idx(const char *path, int images, size_t keep_examples, idx_header *h,
                    const uint8_t **data, void **alloc_out, void **map_out, size_t *map_len,
                    cnnelm_error *err)
{
    int fd, is_gzip;
    struct stat st;
    *data = NULL; *alloc_out = NULL; *map_out = NULL; *map_len = 0;
    if (open_idx(path, &fd, &is_gzip, &st, err))
        return -1;
    int rc = -1;
    if (is_gzip || !images) {
        /* Labels are small: always copied, so that only images need an unmap. */
        uint8_t *buf;
        long long raw_size = !is_gzip && S_ISREG(st.st_mode) ? (long long)st.st_size : -1;
        if (read_stream(fd, path, images, keep_examples, raw_size, h, &buf, err) == 0) {
            *data = buf;
            *alloc_out = buf;
            rc = 0;
        }
        close(fd);
        return rc;
    }
    size_t size = (size_t)st.st_size;
    unsigned char head[20];
    ssize_t got = pread(fd, head, size < 20 ? size : 20, 0);
    if (got < 0) {
        cnnelm_fail(err, "%s: cannot read: %s", path, strerror(errno));
        goto done;
    }
    if (parse_header(path, head, (size_t)got, images, h, err))
        goto done;
    size_t follow = size - h->header_bytes;
    if (follow < h->payload_bytes) {
        fail_truncated(path, h, images, follow, err);
        goto done;
    }
    if (follow > h->payload_bytes) {
        char n[32];
        snprintf(n, sizeof n, "%zu", follow);
        fail_trailing(path, h, images, n, err);
        goto done;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        cnnelm_fail(err, "%s: cannot map %zu bytes: %s", path, size, strerror(errno));
        goto done;
    }
    map_register(map, size, path);
    *map_out = map;
    *map_len = size;
    *data = (const uint8_t *)map + h->header_bytes;
    rc = 0;
done:
    close(fd);
    return rc;
}

/* ---- a mapped file truncated under us ----
 * Reading a page of a mapped file that has since been cut short raises SIGBUS. The one
 * process-wide table of mapped data files lets a SIGBUS handler (installed with the first
 * mapping, when the program has none) say which file it was and exit 1, instead of a crash. */
#define MAPS_MAX 64
static struct { const char *start; size_t len; char path[512]; } maps[MAPS_MAX];
static int maps_used[MAPS_MAX];

static void put_err(const char *s)
{
    ssize_t w = write(2, s, strlen(s));
    (void)w;
}

static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    const char *addr = si ? (const char *)si->si_addr : NULL;
    for (int i = 0; i < MAPS_MAX; i++) {
        if (__atomic_load_n(&maps_used[i], __ATOMIC_ACQUIRE) == 1 && addr >= maps[i].start &&
            addr < maps[i].start + maps[i].len) {
            put_err("cnnelm: error: ");
            put_err(maps[i].path);
            put_err(": the file was truncated or changed while in use (reading it raised SIGBUS)\n");
            _exit(1);
        }
    }
    signal(sig, SIG_DFL); /* not ours: the default action, as if no handler had been set */
    raise(sig);
}

static void install_sigbus(void)
{
    struct sigaction old;
    if (sigaction(SIGBUS, NULL, &old) != 0 || old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO))
        return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
}

static void map_register(const void *start, size_t len, const char *path)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install_sigbus);
    for (int i = 0; i < MAPS_MAX; i++) {
        int expect = 0;
        if (__atomic_compare_exchange_n(&maps_used[i], &expect, 2, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            maps[i].start = start;
            maps[i].len = len;
            snprintf(maps[i].path, sizeof maps[i].path, "%s", path);
            __atomic_store_n(&maps_used[i], 1, __ATOMIC_RELEASE);
            return;
        }
    }
}

static void map_unregister(const void *start)
{
    for (int i = 0; i < MAPS_MAX; i++)
        if (__atomic_load_n(&maps_used[i], __ATOMIC_ACQUIRE) == 1 && maps[i].start == start) {
            __atomic_store_n(&maps_used[i], 0, __ATOMIC_RELEASE);
            return;
        }
}

static void free_images(cnnelm_dataset *ds)
{
    if (ds->images_map) {
        map_unregister(ds->images_map);
        munmap(ds->images_map, ds->images_map_len);
    }
    free(ds->images_alloc);
    ds->images = NULL; ds->images_alloc = NULL; ds->images_map = NULL; ds->images_map_len = 0;
}

static int read_images_limited(const char *path, cnnelm_dataset *ds, size_t limit, size_t *file_n,
                               cnnelm_error *err)
{
    idx_header h;
    const uint8_t *data;
    void *alloc, *map;
    size_t map_len;
    if (read_idx(path, 1, limit, &h, &data, &alloc, &map, &map_len, err))
        return -1;
    free_images(ds);
    ds->images = data;
    ds->images_alloc = alloc;
    ds->images_map = map;
    ds->images_map_len = map_len;
    ds->n = limit > 0 && limit < h.dims[0] ? limit : h.dims[0];
    ds->rows = (int)h.dims[1];
    ds->cols = (int)h.dims[2];
    ds->channels = (int)h.channels;
    *file_n = h.dims[0];
    return 0;
}

int cnnelm_idx_read_images(const char *path, cnnelm_dataset *ds, cnnelm_error *err)
{
    size_t file_n;
    return read_images_limited(path, ds, 0, &file_n, err);
}

int cnnelm_idx_read_labels(const char *path, cnnelm_dataset *ds, cnnelm_error *err)
{
    idx_header h;
    const uint8_t *data;
    void *alloc, *map;
    size_t map_len;
    if (read_idx(path, 0, 0, &h, &data, &alloc, &map, &map_len, err))
        return -1;
    free(ds->labels_alloc);
    ds->labels = data;
    ds->labels_alloc = alloc;
    ds->n = h.dims[0];
    int max = 0;
    for (size_t i = 0; i < ds->n; i++)
        if (data[i] > max) max = data[i];
    ds->classes = max + 1;
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
    if (open_idx(path, &fd, &is_gzip, &st, err))
        return -1;
    unsigned char head[20];
    long long got;
    int cut = 0;
    if (is_gzip) {
        int fd2 = dup(fd);
        gzFile gz = fd2 >= 0 ? gzdopen(fd2, "rb") : NULL;
        if (!gz) {
            if (fd2 >= 0)
                close(fd2);
            close(fd);
            return cnnelm_fail(err, "%s: cannot read: out of memory", path);
        }
        got = gz_read_full(gz, path, head, sizeof head, &cut, err);
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
    if (parse_header(path, head, (size_t)got, images, &h, &ignore))
        return 0; /* the reader reports it */
    if (h.payload_bytes > max_bytes) {
        char what[160];
        describe(&h, images, what, sizeof what);
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

int cnnelm_dataset_load(cnnelm_dataset *ds, const char *images_path, const char *labels_path,
                        int max_classes, size_t limit, cnnelm_error *err)
{
    memset(ds, 0, sizeof *ds);
    size_t n_images;
    if (read_images_limited(images_path, ds, limit, &n_images, err))
        return -1;
    cnnelm_dataset lab;
    memset(&lab, 0, sizeof lab);
    if (cnnelm_idx_read_labels(labels_path, &lab, err)) {
        cnnelm_dataset_free(ds);
        return -1;
    }
    ds->labels = lab.labels;
    ds->labels_alloc = lab.labels_alloc;
    if (lab.n != n_images) {
        cnnelm_dataset_free(ds);
        return cnnelm_fail(err, "%s: %zu labels, but %s has %zu images", labels_path, lab.n,
                           images_path, n_images);
    }
    if (cnnelm_idx_check_labels(labels_path, lab.labels, lab.n, max_classes, err)) {
        cnnelm_dataset_free(ds);
        return -1;
    }
    /* classes counts over the whole file, so a limit does not change the model's output size. */
    ds->classes = lab.classes;
    return 0;
}

void cnnelm_dataset_free(cnnelm_dataset *ds)
{
    if (!ds)
        return;
    free_images(ds);
    free(ds->labels_alloc);
    free((void *)ds->source); /* built by cnnelm_dataset_load_config, always malloc'd */
    cnnelm_stream_free(ds->stream);
    cnnelm_class_names_free(ds->class_names, ds->classes);
    memset(ds, 0, sizeof *ds);
}

/* ---- writing ---- */

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

int cnnelm_idx_write_images(const char *path, const uint8_t *images, size_t n, int rows, int cols,
                            cnnelm_error *err)
{
    if (n == 0 || n > UINT32_MAX)
        return cnnelm_fail(err, "%s: cannot write %zu images (IDX holds 1..%u)", path, n, UINT32_MAX);
    if (rows < 1 || cols < 1 || rows > (int)IDX_MAX_SIDE || cols > (int)IDX_MAX_SIDE)
        return cnnelm_fail(err, "%s: cannot write images of %dx%d (each side 1..%u)", path, rows,
                           cols, IDX_MAX_SIDE);
    size_t img = (size_t)rows * (size_t)cols;
    if (n > SIZE_MAX / img)
        return cnnelm_fail(err, "%s: %zu images of %dx%d overflow the address space", path, n, rows, cols);
    unsigned char header[16];
    put_be32(header, IDX_MAGIC_IMAGES);
    put_be32(header + 4, (uint32_t)n);
    put_be32(header + 8, (uint32_t)rows);
    put_be32(header + 12, (uint32_t)cols);
    return write_idx(path, header, sizeof header, images, n * img, err);
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
    if (channels == 1)
        return cnnelm_idx_write_images(path, images, n, rows, cols, err);
    if (channels != 3)
        return cnnelm_fail(err, "%s: cannot write images of %d channels (1 or 3)", path, channels);
    if (n == 0 || n > UINT32_MAX)
        return cnnelm_fail(err, "%s: cannot write %zu images (IDX holds 1..%u)", path, n, UINT32_MAX);
    if (rows < 1 || cols < 1 || rows > (int)IDX_MAX_SIDE || cols > (int)IDX_MAX_SIDE)
        return cnnelm_fail(err, "%s: cannot write images of %dx%d (each side 1..%u)", path, rows,
                           cols, IDX_MAX_SIDE);
    size_t img = (size_t)channels * (size_t)rows * (size_t)cols;
    if (n > SIZE_MAX / img)
        return cnnelm_fail(err, "%s: %zu images of %dx%dx%d overflow the address space", path, n,
                           channels, rows, cols);
    unsigned char header[20];
    put_be32(header, IDX_MAGIC_IMAGES_C);
    put_be32(header + 4, (uint32_t)n);
    put_be32(header + 8, (uint32_t)channels);
    put_be32(header + 12, (uint32_t)rows);
    put_be32(header + 16, (uint32_t)cols);
    return write_idx(path, header, sizeof header, images, n * img, err);
}

/* ---- pieces of the streamed data sets (idx_stream.h) ---- */

/* The header of an open IDX image stream (gzip or raw through zlib). */
static int read_gz_header(gzFile gz, const char *path, idx_header *h, cnnelm_error *err)
{
    unsigned char head[20];
    int cut = 0;
    long long got = gz_read_full(gz, path, head, 16, &cut, err);
    if (got == 16 && be32(head) == IDX_MAGIC_IMAGES_C) {
        long long more = gz_read_full(gz, path, head + 16, 4, &cut, err);
        if (more < 0)
            return -1;
        got += more;
    }
    if (got < 0)
        return -1;
    return parse_header(path, head, (size_t)got, 1, h, err);
}

static gzFile gz_from(int fd, const char *path, cnnelm_error *err)
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
    if (open_idx(path, &fd, &is_gzip, &st, err))
        return -1;
    idx_header h;
    int rc = -1;
    if (is_gzip) {
        gzFile gz = gz_from(fd, path, err);
        if (gz) {
            rc = read_gz_header(gz, path, &h, err);
            gzclose(gz);
        }
    } else {
        unsigned char head[20];
        size_t size = (size_t)st.st_size;
        ssize_t got = pread(fd, head, size < 20 ? size : 20, 0);
        if (got < 0)
            cnnelm_fail(err, "%s: cannot read: %s", path, strerror(errno));
        else if (parse_header(path, head, (size_t)got, 1, &h, err) == 0) {
            size_t follow = size - h.header_bytes;
            if (follow < h.payload_bytes)
                fail_truncated(path, &h, 1, follow, err);
            else if (follow > h.payload_bytes) {
                char n[32];
                snprintf(n, sizeof n, "%zu", follow);
                fail_trailing(path, &h, 1, n, err);
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
    if (open_idx(path, &fd, &is_gzip, &st, err))
        return -1;
    gzFile gz = gz_from(fd, path, err);
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
    if (read_gz_header(gz, path, &h, err))
        goto done;
    if (h.dims[0] != want->n || (int)h.dims[1] != want->rows || (int)h.dims[2] != want->cols ||
        (int)h.channels != want->channels) {
        cnnelm_fail(err, "%s: the file changed while in use (its header is not the one read before)", path);
        goto done;
    }
    /* the header as read, then the payload: a raw IDX file the reader can pread */
    unsigned char head[20];
    put_be32(head, h.header_bytes == 20 ? IDX_MAGIC_IMAGES_C : IDX_MAGIC_IMAGES);
    put_be32(head + 4, h.dims[0]);
    if (h.header_bytes == 20) {
        put_be32(head + 8, h.channels);
        put_be32(head + 12, h.dims[1]);
        put_be32(head + 16, h.dims[2]);
    } else {
        put_be32(head + 8, h.dims[1]);
        put_be32(head + 12, h.dims[2]);
    }
    if (write_fd_all(out, head, h.header_bytes)) {
        cnnelm_fail(err, "%s: cannot write the decompressed copy: %s", path, strerror(errno));
        goto done;
    }
    size_t total = 0;
    for (;;) {
        long long got = gz_read_full(gz, path, buf, STEP, &cut, err);
        if (got < 0)
            goto done;
        size_t keep = (size_t)got;
        if (total + keep > h.payload_bytes) { /* trailing data: count it all for the message */
            size_t extra = total + keep;
            while (got == STEP) {
                got = gz_read_full(gz, path, buf, STEP, &cut, err);
                if (got < 0)
                    goto done;
                extra += (size_t)got;
            }
            char n[32];
            snprintf(n, sizeof n, "%zu", extra);
            fail_trailing(path, &h, 1, n, err);
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
        fail_truncated(path, &h, 1, total, err);
        goto done;
    }
    if (cut) {
        char what[160];
        describe(&h, 1, what, sizeof what);
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

int cnnelm_idx_writer_open(cnnelm_idx_writer *w, const char *path, size_t n, int channels, int rows,
                           int cols, cnnelm_error *err)
{
    memset(w, 0, sizeof *w);
    if (channels != 1 && channels != 3)
        return cnnelm_fail(err, "%s: cannot write images of %d channels (1 or 3)", path, channels);
    if (n == 0 || n > UINT32_MAX)
        return cnnelm_fail(err, "%s: cannot write %zu images (IDX holds 1..%u)", path, n, UINT32_MAX);
    if (rows < 1 || cols < 1 || rows > (int)IDX_MAX_SIDE || cols > (int)IDX_MAX_SIDE)
        return cnnelm_fail(err, "%s: cannot write images of %dx%d (each side 1..%u)", path, rows,
                           cols, IDX_MAX_SIDE);
    size_t img = (size_t)channels * (size_t)rows * (size_t)cols;
    if (n > SIZE_MAX / img)
        return cnnelm_fail(err, "%s: %zu images of %dx%dx%d overflow the address space", path, n,
                           channels, rows, cols);
    /* the same header as cnnelm_idx_write_images_c */
    unsigned char header[20];
    size_t hlen = channels == 1 ? 16 : 20;
    put_be32(header, channels == 1 ? IDX_MAGIC_IMAGES : IDX_MAGIC_IMAGES_C);
    put_be32(header + 4, (uint32_t)n);
    if (channels == 1) {
        put_be32(header + 8, (uint32_t)rows);
        put_be32(header + 12, (uint32_t)cols);
    } else {
        put_be32(header + 8, (uint32_t)channels);
        put_be32(header + 12, (uint32_t)rows);
        put_be32(header + 16, (uint32_t)cols);
    }
    if (cnnelm_atomic_open(&w->af, path, err))
        return -1;
    w->open = 1;
    w->left = n * img;
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
