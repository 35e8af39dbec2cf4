/* IDX files (the MNIST format) read into memory: raw image files memory-mapped (with the SIGBUS
 * guard for a file truncated under us), gzip files and labels streamed through zlib into a
 * growing buffer; cnnelm_dataset_load and cnnelm_dataset_free. */
#define _GNU_SOURCE

#include "cnnelm/dataset.h"
#include "data/dataset_stream.h"
#include "data/idx_internal.h"
#include "data/idx_stream.h"

#include <errno.h>
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

#define GZ_FIRST_BLOCK ((size_t)1 << 22) /* the payload buffer starts at 4 MiB and doubles */

static void map_register(const void *start, size_t len, const char *path);

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
    long long got = cnnelm_idx_gz_read(gz, path, head, images ? 16 : 8, &cut, err);
    if (got == 16 && images && be32(head) == IDX_MAGIC_IMAGES_C) {
        long long more = cnnelm_idx_gz_read(gz, path, head + 16, 4, &cut, err);
        if (more < 0)
            goto done;
        got += more;
    }
    if (got < 0 || cnnelm_idx_parse_header(path, head, (size_t)got, images, h, err))
        goto done;

    size_t example = images ? (size_t)h->channels * h->dims[1] * h->dims[2] : 1;
    size_t keep = h->payload_bytes;
    if (keep_examples > 0 && keep_examples < h->dims[0])
        keep = keep_examples * example;
    /* A raw file's size is known: a header that claims more than follows is refused before
     * anything is allocated. */
    if (raw_size >= 0 && (uint64_t)raw_size - h->header_bytes < h->payload_bytes) {
        cnnelm_idx_fail_truncated(path, h, images, (size_t)raw_size - h->header_bytes, err);
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
        got = cnnelm_idx_gz_read(gz, path, buf + total, cap - total, &cut, err);
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
            got = cnnelm_idx_gz_read(gz, path, scratch, want, &cut, err);
            if (got < 0)
                goto done;
            total += (size_t)got;
            if ((size_t)got < want)
                break;
        }
    }
    if (total < h->payload_bytes) {
        cnnelm_idx_fail_truncated(path, h, images, total, err);
        goto done;
    }
    /* Anything more is an error; count it all for the message. */
    unsigned char extra[16384];
    size_t extra_total = 0;
    do {
        got = cnnelm_idx_gz_read(gz, path, extra, sizeof extra, &cut, err);
        if (got < 0)
            goto done;
        extra_total += (size_t)got;
    } while (got == (long long)sizeof extra);
    if (extra_total > 0) {
        char n[32];
        snprintf(n, sizeof n, "%zu", total + extra_total);
        cnnelm_idx_fail_trailing(path, h, images, n, err);
        goto done;
    }
    if (cut) {
        char what[160];
        cnnelm_idx_describe(h, images, what, sizeof what);
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

/* Reads one IDX file into *data (a pointer into *map_out when mmap'd, else into *alloc_out). */
static int read_idx(const char *path, int images, size_t keep_examples, idx_header *h,
                    const uint8_t **data, void **alloc_out, void **map_out, size_t *map_len,
                    cnnelm_error *err)
{
    int fd, is_gzip;
    struct stat st;
    *data = NULL; *alloc_out = NULL; *map_out = NULL; *map_len = 0;
    if (cnnelm_idx_open(path, &fd, &is_gzip, &st, err))
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
    if (cnnelm_idx_parse_header(path, head, (size_t)got, images, h, err))
        goto done;
    size_t follow = size - h->header_bytes;
    if (follow < h->payload_bytes) {
        cnnelm_idx_fail_truncated(path, h, images, follow, err);
        goto done;
    }
    if (follow > h->payload_bytes) {
        char n[32];
        snprintf(n, sizeof n, "%zu", follow);
        cnnelm_idx_fail_trailing(path, h, images, n, err);
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
            _exit(1); /* exit-ok: a fatal signal in a mapped data file: no return is possible */
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
