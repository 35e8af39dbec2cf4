/* cnnelm streamed data sets (dataset_stream.h): examples fetched by row into a caller's buffer,
 * from IDX files read with pread (a gzipped file through a decompressed copy in the cache
 * directory, made once and shared by every process), from in-memory sets, and noisy copies
 * and data.augment's transformed copies made per fetched row. Nothing here holds more than one row range of images. */
#define _GNU_SOURCE
#include "data/dataset_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/atomic_file.h"
#include "data/augment.h"
#include "data/idx_stream.h"
#include "data/noise.h"
#include "base/rng.h"

typedef struct stream_seg {
    char *path;              /* the IDX image file as configured; NULL for an in-memory set */
    size_t n, file_n;        /* examples used (the first n), and in the file */
    int rows, cols, channels;
    int state;               /* 0 not opened yet, 1 open, -1 failed (message in fail) */
    int lazy;                /* opened on first fetch: its header not checked at load */
    int fd;
    size_t offset;           /* the payload's offset in fd's file */
    char *fail;              /* a failed open's message, given again to every later fetch */
    cnnelm_dataset held;     /* an in-memory set */
    uint8_t *whole;          /* data.hold_mb: the file's n images, read at the first fetch */
    int hold_state;          /* 0 not decided yet, 1 whole, -1 row by row */
    pthread_mutex_t lock;    /* the first fetches race to open the file */
} stream_seg;

struct cnnelm_stream {
    size_t px;
    int n_seg, cap_seg;
    stream_seg *seg;
    size_t *start;           /* seg s holds original rows start[s] .. start[s+1]-1 */
    size_t n_base;
    int types[3], n_types;
    uint64_t seed;
    int aug[CNNELM_AUGMENT_KINDS], n_aug, aug_rows, aug_cols, aug_channels; /* data.augment */
    uint64_t aug_seed;
    char cache_dir[PATH_MAX];
    int quiet;
    unsigned long long max_bytes; /* data.max_bytes for a lazy gzipped file (0: the default) */
    int opened;              /* segment files opened so far */
    size_t hold_bytes;       /* data.hold_mb in bytes (0: always row by row) */
    size_t file_bytes;       /* the images of every file segment together */
};

int cnnelm_data_cache_dir(const char *configured, char *out, size_t size, cnnelm_error *err)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int len;
    if (configured && *configured)
        len = snprintf(out, size, "%s", configured);
    else if (xdg && *xdg)
        len = snprintf(out, size, "%s/cnnelm", xdg);
    else if (home && *home)
        len = snprintf(out, size, "%s/.cache/cnnelm", home);
    else
        len = snprintf(out, size, "%s", ""); /* no home: the temporary-file fallback */
    if (len < 0 || (size_t)len >= size)
        return cnnelm_fail(err, "data.cache_dir: path too long");
    return 0;
}

cnnelm_stream *cnnelm_stream_new(size_t px, const char *cache_dir, int quiet, cnnelm_error *err)
{
    cnnelm_stream *st = calloc(1, sizeof *st);
    if (!st) {
        cnnelm_fail(err, "out of memory");
        return NULL;
    }
    st->px = px;
    st->quiet = quiet;
    if (cnnelm_data_cache_dir(cache_dir, st->cache_dir, sizeof st->cache_dir, err)) {
        free(st);
        return NULL;
    }
    return st;
}

void cnnelm_stream_free(cnnelm_stream *st)
{
    if (!st)
        return;
    for (int s = 0; s < st->n_seg; s++) {
        stream_seg *g = &st->seg[s];
        if (g->state == 1 && g->fd >= 0)
            close(g->fd);
        free(g->path);
        free(g->fail);
        free(g->whole);
        cnnelm_dataset_free(&g->held);
        pthread_mutex_destroy(&g->lock);
    }
    free(st->seg);
    free(st->start);
    free(st);
}

static stream_seg *new_seg(cnnelm_stream *st, size_t n, cnnelm_error *err)
{
    if (st->n_seg == st->cap_seg) {
        int cap = st->cap_seg ? 2 * st->cap_seg : 8;
        stream_seg *s = realloc(st->seg, (size_t)cap * sizeof *s);
        if (s)
            st->seg = s;
        size_t *b = s ? realloc(st->start, ((size_t)cap + 1) * sizeof *b) : NULL;
        if (b)
            st->start = b;
        if (!s || !b) {
            cnnelm_fail(err, "out of memory");
            return NULL;
        }
        st->cap_seg = cap;
    }
    stream_seg *g = &st->seg[st->n_seg];
    memset(g, 0, sizeof *g);
    g->fd = -1;
    g->n = n;
    pthread_mutex_init(&g->lock, NULL);
    if (st->n_seg == 0)
        st->start[0] = 0;
    st->start[st->n_seg + 1] = st->start[st->n_seg] + n;
    st->n_base += n;
    st->n_seg++;
    return g;
}

static uint64_t fnv(uint64_t h, const void *p, size_t len)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < len; i++)
        h = (h ^ c[i]) * 0x100000001b3ULL;
    return h;
}

/* The cache file of a gzipped IDX file: named after it ("train-images-idx3-ubyte.gz" ->
 * "train-images-idx3-ubyte-<key>.idx"), keyed by its real path, size and modification time, so
 * an edited or replaced file gets a new copy and links to one file share one copy. */
static int cache_name(const cnnelm_stream *st, const char *path, char *out, size_t size)
{
    char real[PATH_MAX];
    struct stat sb;
    if (!realpath(path, real) || stat(real, &sb) != 0 || !st->cache_dir[0])
        return -1;
    uint64_t h = 0xcbf29ce484222325ULL;
    h = fnv(h, real, strlen(real));
    long long size_mtime[3] = { (long long)sb.st_size, (long long)sb.st_mtim.tv_sec,
                                (long long)sb.st_mtim.tv_nsec };
    h = fnv(h, size_mtime, sizeof size_mtime);
    const char *base = strrchr(real, '/') ? strrchr(real, '/') + 1 : real;
    size_t blen = strlen(base);
    if (blen > 3 && strcmp(base + blen - 3, ".gz") == 0)
        blen -= 3;
    if (blen > 160)
        blen = 160;
    int len = snprintf(out, size, "%s/%.*s-%016llx.idx", st->cache_dir, (int)blen, base,
                       (unsigned long long)h);
    return len < 0 || (size_t)len >= size ? -1 : 0;
}

/* A cached copy is used only when it is a complete raw IDX file with the expected header. */
static int cache_valid(const char *cache, const cnnelm_idx_info *want)
{
    cnnelm_idx_info got;
    cnnelm_error ignore;
    if (access(cache, R_OK) != 0 || cnnelm_idx_image_info(cache, &got, &ignore) != 0)
        return 0;
    return !got.gzip && got.n == want->n && got.rows == want->rows && got.cols == want->cols &&
           got.channels == want->channels && got.header_bytes == want->header_bytes;
}

/* A descriptor onto the raw bytes of a gzipped IDX file: the cached copy, made now if missing
 * (temporary file and rename, so concurrent processes each see a whole copy or none); where
 * the cache cannot be written, an unlinked temporary file, with a note. */
static int open_gz(cnnelm_stream *st, const char *path, const cnnelm_idx_info *info, int *fd_out,
                   cnnelm_error *err)
{
    char cache[PATH_MAX + 64];
    char why[PATH_MAX + 800] = "";
    if (cache_name(st, path, cache, sizeof cache) == 0) {
        if (!cache_valid(cache, info)) {
            cnnelm_atomic_file af;
            cnnelm_error e = { "" };
            if (cnnelm_make_dirs(st->cache_dir, &e) != 0) {
                snprintf(why, sizeof why, "%s", e.msg);
            } else if (cnnelm_atomic_open(&af, cache, &e) != 0) {
                snprintf(why, sizeof why, "%s", e.msg);
            } else {
                fflush(af.f);
                if (cnnelm_idx_gunzip_to(path, fileno(af.f), info, err) != 0) {
                    cnnelm_atomic_abort(&af);
                    return -1; /* the file itself is bad: no fallback helps */
                }
                if (cnnelm_atomic_commit(&af, &e) != 0)
                    snprintf(why, sizeof why, "%s", e.msg);
            }
        }
        if (!why[0]) {
            int fd = open(cache, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                *fd_out = fd;
                return 0;
            }
            snprintf(why, sizeof why, "%s: %s", cache, strerror(errno));
        }
    } else {
        snprintf(why, sizeof why, "no cache directory (data.cache_dir, XDG_CACHE_HOME and HOME unset)");
    }
    const char *tmp = getenv("TMPDIR");
    char name[PATH_MAX];
    snprintf(name, sizeof name, "%s/cnnelm-idx-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkostemp(name, O_CLOEXEC);
    if (fd < 0)
        return cnnelm_fail(err, "%s: cannot decompress to the cache (%s) nor to %s: %s", path, why,
                           name, strerror(errno));
    unlink(name); /* gone when closed */
    if (!st->quiet)
        fprintf(stderr, "cnnelm: note: %s: decompression cache not used (%s); decompressing to a "
                "temporary file\n", path, why);
    if (cnnelm_idx_gunzip_to(path, fd, info, err) != 0) {
        close(fd);
        return -1;
    }
    *fd_out = fd;
    return 0;
}

static int open_seg(cnnelm_stream *st, stream_seg *g, cnnelm_error *err)
{
    cnnelm_idx_info info;
    if (cnnelm_idx_image_info(g->path, &info, err))
        return -1;
    if (info.n != g->file_n)
        return cnnelm_fail(err, "%s: %zu images, but its labels file has %zu labels", g->path, info.n,
                           g->file_n);
    if (info.rows != g->rows || info.cols != g->cols || info.channels != g->channels)
        return cnnelm_fail(err, "%s: images are %dx%dx%d (channels x rows x cols) but the data set's "
                           "are %dx%dx%d", g->path, info.channels, info.rows, info.cols, g->channels,
                           g->rows, g->cols);
    /* what cnnelm_dataset_load_config checked at load for the files it opens then */
    if (info.gzip && g->lazy && cnnelm_idx_check_size(g->path, st->max_bytes, err))
        return -1;
    int fd;
    if (info.gzip) {
        if (open_gz(st, g->path, &info, &fd, err))
            return -1;
    } else {
        fd = open(g->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return cnnelm_fail(err, "%s: cannot open: %s", g->path, strerror(errno));
    }
    g->fd = fd;
    g->offset = info.header_bytes;
    __atomic_add_fetch(&st->opened, 1, __ATOMIC_RELAXED);
    return 0;
}

/* Opens g once: the first fetch that needs it does, the others wait; a failure is kept and
 * given to every later fetch. */
static int ensure_open(cnnelm_stream *st, stream_seg *g, cnnelm_error *err)
{
    int state = __atomic_load_n(&g->state, __ATOMIC_ACQUIRE);
    if (state == 0) {
        pthread_mutex_lock(&g->lock);
        state = g->state;
        if (state == 0) {
            cnnelm_error e = { "" };
            state = open_seg(st, g, &e) == 0 ? 1 : -1;
            if (state < 0)
                g->fail = strdup(e.msg);
            __atomic_store_n(&g->state, state, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&g->lock);
    }
    if (state < 0)
        return cnnelm_fail(err, "%s", g->fail ? g->fail : "cannot open a data file");
    return 0;
}

int cnnelm_stream_add_file(cnnelm_stream *st, const char *path, size_t n, size_t file_n, int rows,
                           int cols, int channels, int lazy, cnnelm_error *err)
{
    if ((size_t)channels * (size_t)rows * (size_t)cols != st->px)
        return cnnelm_fail(err, "%s: images are %dx%dx%d (channels x rows x cols) but the sources before it "
                           "have %zu bytes an image", path, channels, rows, cols, st->px);
    stream_seg *g = new_seg(st, n, err);
    if (!g)
        return -1;
    g->path = strdup(path);
    st->file_bytes += n * st->px;
    g->file_n = file_n;
    g->rows = rows;
    g->cols = cols;
    g->channels = channels;
    g->lazy = lazy;
    if (!g->path)
        return cnnelm_fail(err, "out of memory");
    return lazy ? 0 : ensure_open(st, g, err);
}

int cnnelm_stream_add_memory(cnnelm_stream *st, cnnelm_dataset *ds, cnnelm_error *err)
{
    if (cnnelm_dataset_example_bytes(ds) != st->px)
        return cnnelm_fail(err, "internal: an in-memory source of %zu bytes an image in a stream of %zu",
                           cnnelm_dataset_example_bytes(ds), st->px);
    stream_seg *g = new_seg(st, ds->n, err);
    if (!g)
        return -1;
    g->held = *ds;
    g->state = 1;
    memset(ds, 0, sizeof *ds);
    return 0;
}

void cnnelm_stream_set_noise(cnnelm_stream *st, const int *types, int n_types, uint64_t seed)
{
    st->n_types = n_types;
    for (int t = 0; t < n_types; t++)
        st->types[t] = types[t];
    st->seed = seed;
}

void cnnelm_stream_set_hold_mb(cnnelm_stream *st, long mb)
{
    /* MiB past the address space: every file fits */
    st->hold_bytes = mb <= 0 ? 0 : (unsigned long)mb > SIZE_MAX >> 20 ? SIZE_MAX : (size_t)mb << 20;
}

size_t cnnelm_stream_hold_bytes(const cnnelm_stream *st)
{
    return st->hold_bytes && st->file_bytes <= st->hold_bytes ? st->file_bytes : 0;
}

void cnnelm_stream_set_max_bytes(cnnelm_stream *st, unsigned long long max_bytes)
{
    st->max_bytes = max_bytes;
}

void cnnelm_stream_set_augment(cnnelm_stream *st, const int *types, int n_types, uint64_t seed,
                               int rows, int cols, int channels)
{
    st->n_aug = n_types;
    for (int t = 0; t < n_types; t++)
        st->aug[t] = types[t];
    st->aug_seed = seed;
    st->aug_rows = rows;
    st->aug_cols = cols;
    st->aug_channels = channels;
}

size_t cnnelm_stream_size(const cnnelm_stream *st)
{
    return st->n_base * (size_t)(1 + st->n_types) * (size_t)(1 + st->n_aug);
}

int cnnelm_stream_files_opened(const cnnelm_stream *st)
{
    return __atomic_load_n(&st->opened, __ATOMIC_RELAXED);
}

static int find_seg(const cnnelm_stream *st, size_t base)
{
    int lo = 0, hi = st->n_seg - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (st->start[mid] <= base)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

static int pread_full(int fd, uint8_t *dst, size_t len, size_t off, const char *path, cnnelm_error *err)
{
    while (len > 0) {
        ssize_t got = pread(fd, dst, len, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return cnnelm_fail(err, "%s: cannot read: %s", path, strerror(errno));
        if (got == 0)
            return cnnelm_fail(err, "%s: the file was truncated while in use", path);
        dst += got;
        off += (size_t)got;
        len -= (size_t)got;
    }
    return 0;
}

/* data.hold_mb: when the stream's files take at most hold_bytes together, the first fetch from a
 * file reads its images whole (one read), and rows are copied from memory from then on: random
 * rows of a shuffled partition cost one pread each otherwise, a quarter of a small network's fit
 * (bench/bench_abi.sh). Decided at the first fetch, when every file has been added; without the
 * memory for it the file streams row by row. */
static int ensure_held(cnnelm_stream *st, stream_seg *g, cnnelm_error *err)
{
    if (__atomic_load_n(&g->hold_state, __ATOMIC_ACQUIRE) != 0)
        return 0;
    int rc = 0;
    pthread_mutex_lock(&g->lock);
    if (g->hold_state == 0) {
        uint8_t *m = cnnelm_stream_hold_bytes(st) ? malloc(g->n * st->px + 1) : NULL;
        if (m && pread_full(g->fd, m, g->n * st->px, g->offset, g->path, err) != 0) {
            free(m);
            m = NULL;
            rc = -1;
        }
        g->whole = m;
        if (rc == 0)
            __atomic_store_n(&g->hold_state, m ? 1 : -1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&g->lock);
    return rc;
}

int cnnelm_stream_fetch(cnnelm_stream *st, const size_t *rows, size_t first, size_t n, uint8_t *out,
                        cnnelm_error *err)
{
    size_t total = cnnelm_stream_size(st), px = st->px;
    for (size_t j = 0; j < n;) {
        size_t r = rows ? rows[first + j] : first + j;
        if (r >= total)
            return cnnelm_fail(err, "internal: row %zu of a data set of %zu examples", r, total);
        size_t n_ext = st->n_base * (size_t)(1 + st->n_types), e = r % n_ext, aug = r / n_ext;
        size_t copy = e / st->n_base, base = e % st->n_base;
        int s = find_seg(st, base);
        stream_seg *g = &st->seg[s];
        size_t local = base - st->start[s];
        /* a run of consecutive rows of one segment and copy is one read */
        size_t m = 1;
        while (j + m < n && local + m < g->n) {
            size_t next = rows ? rows[first + j + m] : first + j + m;
            if (next != r + m)
                break;
            m++;
        }
        uint8_t *dst = out + j * px;
        if (g->path) {
            if (ensure_open(st, g, err) || ensure_held(st, g, err))
                return -1;
            if (g->whole)
                memcpy(dst, g->whole + local * px, m * px);
            else if (pread_full(g->fd, dst, m * px, g->offset + local * px, g->path, err))
                return -1;
        } else {
            memcpy(dst, g->held.images + local * px, m * px);
        }
        if (copy > 0)
            for (size_t i = 0; i < m; i++)
                cnnelm_noise_image(dst + i * px, dst + i * px, px, st->types[copy - 1], st->seed, base + i);
        if (aug > 0)
            for (size_t i = 0; i < m; i++)
                cnnelm_augment_image(dst + i * px, st->aug_rows, st->aug_cols, st->aug_channels,
                                     st->aug[aug - 1], st->aug_seed, e + i);
        j += m;
    }
    return 0;
}

int cnnelm_dataset_fetch(const cnnelm_dataset *ds, const size_t *rows, size_t first, size_t n,
                         uint8_t *out, cnnelm_error *err)
{
    if (ds->stream)
        return cnnelm_stream_fetch(ds->stream, rows, first, n, out, err);
    size_t px = cnnelm_dataset_example_bytes(ds);
    for (size_t j = 0; j < n; j++) {
        size_t r = rows ? rows[first + j] : first + j;
        if (r >= ds->n || !ds->images)
            return cnnelm_fail(err, "internal: row %zu of a data set of %zu examples", r, ds->n);
        memcpy(out + j * px, ds->images + r * px, px);
    }
    return 0;
}

int cnnelm_dataset_materialize(cnnelm_dataset *ds, cnnelm_error *err)
{
    if (!ds->stream)
        return 0;
    size_t px = cnnelm_dataset_example_bytes(ds);
    if (ds->n > SIZE_MAX / (px ? px : 1))
        return cnnelm_fail(err, "%zu images overflow the address space", ds->n);
    uint8_t *images = malloc(ds->n * px + 1);
    if (!images)
        return cnnelm_fail(err, "out of memory reading %zu images into memory", ds->n);
    if (cnnelm_stream_fetch(ds->stream, NULL, 0, ds->n, images, err)) {
        free(images);
        return -1;
    }
    cnnelm_stream_free(ds->stream);
    ds->stream = NULL;
    ds->images = ds->images_alloc = images;
    return 0;
}
