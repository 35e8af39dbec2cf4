/* cnnelm data sets as a config builds them: several sources as one set (labels offset per
 * source), extended with noisy copies as in the paper, and written back out as IDX files. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "atomic_file.h"
#include "rng.h"

#define GAUSSIAN_SIGMA 25.5     /* 0.1 of full scale */
#define SALT_PEPPER_RATE 0.05

/* Replaces ds's storage by owned copies of n examples (images, labels, sources). */
static int take_owned(cnnelm_dataset *ds, uint8_t *images, uint8_t *labels, uint8_t *source,
                      size_t n, int rows, int cols, int classes, int n_sources)
{
    cnnelm_dataset_free(ds);
    ds->images = ds->images_alloc = images;
    ds->labels = ds->labels_alloc = labels;
    ds->source = source;
    ds->n = n;
    ds->rows = rows;
    ds->cols = cols;
    ds->classes = classes;
    ds->n_sources = n_sources;
    return 0;
}

static uint8_t clamp255(double v)
{
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lround(v));
}

static double gaussian(cnnelm_rng *r)
{
    double u1 = cnnelm_rng_uniform(r), u2 = cnnelm_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

#define POISSON_KNUTH_MAX 30

/* exp(-v) for v = 0..POISSON_KNUTH_MAX by repeated multiplication of one constant: only IEEE
 * multiplications, so the table (and Knuth's method) is the same on every platform. */
static double exp_minus(int v)
{
    double e = 1.0;
    for (int i = 0; i < v; i++)
        e *= 0x1.78b56362cef38p-2; /* exp(-1) rounded to double */
    return e;
}

/* A Poisson sample of mean v (an integer grey level): Knuth's product of uniforms up to
 * POISSON_KNUTH_MAX, the normal approximation N(v, v) above (its error is well under a grey
 * level there). */
static double poisson(cnnelm_rng *r, int v, const double *limits)
{
    if (v <= 0)
        return 0;
    if (v > POISSON_KNUTH_MAX)
        return v + sqrt((double)v) * gaussian(r);
    double limit = limits[v], p = 1.0;
    int k = 0;
    do {
        k++;
        p *= cnnelm_rng_uniform(r);
    } while (p > limit);
    return k - 1;
}

static void noisy_copy(const uint8_t *src, uint8_t *dst, size_t pixels, int type, uint64_t seed,
                       size_t index, const double *limits)
{
    cnnelm_rng r;
    /* one stream per (image, noise type): independent of threads and of the other images; the
     * index is hashed (splitmix64, a bijection) so nearby seeds and indices do not collide */
    uint64_t h = (uint64_t)index;
    cnnelm_rng_seed(&r, seed ^ cnnelm_splitmix64(&h), CNNELM_STREAM_NOISE + 16 * (uint64_t)(type + 1));
    for (size_t i = 0; i < pixels; i++) {
        double v = src[i];
        switch (type) {
        case 0: dst[i] = clamp255(v + GAUSSIAN_SIGMA * gaussian(&r)); break;
        case 1: {
            double u = cnnelm_rng_uniform(&r);
            dst[i] = u < SALT_PEPPER_RATE / 2 ? 0 : u < SALT_PEPPER_RATE ? 255 : src[i];
            break;
        }
        default: dst[i] = clamp255(poisson(&r, src[i], limits)); break;
        }
    }
}

/* data.resize ("WxH"), data.grayscale, data.max_bad as the loaders take them. */
static int input_options(const cnnelm_config *cfg, cnnelm_input_options *io, cnnelm_error *err)
{
    memset(io, 0, sizeof *io);
    if (cfg->data.resize[0]) {
        int w = 0, h = 0, used = 0;
        if (sscanf(cfg->data.resize, "%dx%d%n", &w, &h, &used) != 2 || cfg->data.resize[used] ||
            w < 1 || h < 1 || w > 4096 || h > 4096)
            return cnnelm_fail(err, "%s: data.resize = \"%s\": expected \"WxH\" such as \"28x28\" "
                               "(1..4096 each), or \"\"", cfg->path, cfg->data.resize);
        io->resize_w = w;
        io->resize_h = h;
    }
    io->grayscale = cfg->data.grayscale;
    io->max_bad = cfg->data.max_bad;
    return 0;
}

/* The noisy copies, split over threads by image: each image has its own stream, so the bytes
 * do not depend on the number of threads. */
typedef struct noise_job {
    const uint8_t *src;
    uint8_t *dst;           /* the copies, type after type */
    size_t n, px;
    int types[3], n_types;
    uint64_t seed;
    const double *limits;
    size_t begin, end;      /* this thread's images */
} noise_job;

static void *noise_worker(void *arg)
{
    const noise_job *j = arg;
    for (int t = 0; t < j->n_types; t++)
        for (size_t i = j->begin; i < j->end; i++)
            noisy_copy(j->src + i * j->px, j->dst + ((size_t)t * j->n + i) * j->px, j->px, j->types[t],
                       j->seed, i, j->limits);
    return NULL;
}

#define NOISE_MAX_THREADS 16

static void add_noise_threaded(noise_job *base)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t work = base->n * base->px * (size_t)base->n_types;
    int k = cpus < 1 ? 1 : cpus > NOISE_MAX_THREADS ? NOISE_MAX_THREADS : (int)cpus;
    if (work < ((size_t)1 << 20))  /* not worth a thread */
        k = 1;
    if ((size_t)k > base->n)
        k = (int)base->n;
    noise_job jobs[NOISE_MAX_THREADS];
    pthread_t th[NOISE_MAX_THREADS];
    int started[NOISE_MAX_THREADS] = { 0 };
    for (int w = 0; w < k; w++) {
        jobs[w] = *base;
        jobs[w].begin = base->n * (size_t)w / (size_t)k;
        jobs[w].end = base->n * (size_t)(w + 1) / (size_t)k;
        /* the first share runs on this thread; a thread that cannot start runs here too */
        if (w > 0)
            started[w] = pthread_create(&th[w], NULL, noise_worker, &jobs[w]) == 0;
    }
    noise_worker(&jobs[0]);
    for (int w = 1; w < k; w++) {
        if (started[w])
            pthread_join(th[w], NULL);
        else
            noise_worker(&jobs[w]);
    }
}

int cnnelm_dataset_add_noise(cnnelm_dataset *ds, unsigned mask, uint64_t seed, cnnelm_error *err)
{
    if (mask & ~(unsigned)(CNNELM_NOISE_GAUSSIAN | CNNELM_NOISE_SALT_PEPPER | CNNELM_NOISE_POISSON))
        return cnnelm_fail(err, "noise mask 0x%x has unknown bits (gaussian 1, salt_pepper 2, poisson 4)",
                           mask);
    int copies = 0;
    for (int t = 0; t < 3; t++)
        copies += (mask >> t) & 1u;
    if (copies == 0 || ds->n == 0)
        return 0;
    size_t px = cnnelm_dataset_example_bytes(ds), n = ds->n;
    if (px == 0 || n > SIZE_MAX / px / (size_t)(1 + copies))
        return cnnelm_fail(err, "%zu images of %dx%d with %d noisy copies overflow the address space",
                           n, ds->rows, ds->cols, copies);
    size_t total = n * (size_t)(1 + copies);
    double limits[POISSON_KNUTH_MAX + 1];
    for (int v = 0; v <= POISSON_KNUTH_MAX; v++)
        limits[v] = exp_minus(v);
    uint8_t *images = malloc(total * px), *labels = malloc(total);
    uint8_t *source = ds->source ? malloc(total) : NULL;
    if (!images || !labels || (ds->source && !source)) {
        free(images);
        free(labels);
        free(source);
        return cnnelm_fail(err, "out of memory extending %zu images to %zu", n, total);
    }
    memcpy(images, ds->images, n * px);
    memcpy(labels, ds->labels, n);
    if (source)
        memcpy(source, ds->source, n);
    noise_job job = { .src = ds->images, .dst = images + n * px, .n = n, .px = px, .seed = seed,
                      .limits = limits };
    for (int t = 0; t < 3; t++)
        if ((mask >> t) & 1u)
            job.types[job.n_types++] = t;
    add_noise_threaded(&job);
    size_t at = n;
    for (int t = 0; t < copies; t++) {
        memcpy(labels + at, ds->labels, n);
        if (source)
            memcpy(source + at, ds->source, n);
        at += n;
    }
    /* channels and class names survive the swap of storage */
    int channels = ds->channels;
    char **names = ds->class_names;
    ds->class_names = NULL;
    take_owned(ds, images, labels, source, total, ds->rows, ds->cols, ds->classes, ds->n_sources);
    ds->channels = channels;
    ds->class_names = names;
    return 0;
}

static int load_sources(cnnelm_dataset *ds, const cnnelm_config *cfg, int test, int max_classes,
                        cnnelm_error *err)
{
    int k = cfg->data.n_sources;
    cnnelm_dataset part[CNNELM_MAX_SOURCES];
    memset(part, 0, sizeof part);
    int offset[CNNELM_MAX_SOURCES + 1] = { 0 };
    size_t total = 0;
    int rc = -1, any_test = 0;
    for (int s = 0; s < k; s++) {
        const char *ti = cfg->data.sources[s].train_images, *tl = cfg->data.sources[s].train_labels;
        const char *img = test ? cfg->data.sources[s].test_images : ti;
        const char *lab = test ? cfg->data.sources[s].test_labels : tl;
        /* a source's class count comes from its whole training label file (limits do not change
         * it), for train and test alike; the test set reads the training labels for it */
        int classes = CNNELM_LABELS_TRAIN;
        if (test) {
            cnnelm_dataset labels_only;
            memset(&labels_only, 0, sizeof labels_only);
            if (cnnelm_idx_read_labels(tl, &labels_only, err))
                goto out;
            classes = labels_only.classes;
            cnnelm_dataset_free(&labels_only);
        }
        if (*img) {
            any_test = 1;
            /* test labels beyond the source's training classes are an error naming the file */
            cnnelm_input_options io;
            if (input_options(cfg, &io, err) ||
                cnnelm_dataset_load_any(&part[s], img, lab, classes,
                                        (size_t)(test ? cfg->data.test_limit : cfg->data.train_limit), &io, err))
                goto out;
        }
        if (!test)
            classes = part[s].classes;
        offset[s + 1] = offset[s] + classes;
        if (offset[s + 1] > 256) {
            cnnelm_fail(err, "%s: data.sources have %d classes together (at most 256)", cfg->path,
                        offset[s + 1]);
            goto out;
        }
        if (!*img)
            continue;
        if (total && (part[s].rows != ds->rows || part[s].cols != ds->cols ||
                      cnnelm_dataset_example_bytes(&part[s]) != cnnelm_dataset_example_bytes(ds))) {
            cnnelm_fail(err, "%s: images are %dx%d but the sources before it have %dx%d", img,
                        part[s].rows, part[s].cols, ds->rows, ds->cols);
            goto out;
        }
        ds->rows = part[s].rows;
        ds->cols = part[s].cols;
        ds->channels = part[s].channels;
        total += part[s].n;
    }
    if (test && !any_test) {
        rc = 0;
        goto out;
    }
    if (offset[k] > max_classes) {
        cnnelm_fail(err, "%s: data.sources have %d classes but the model has %d", cfg->path, offset[k],
                    max_classes);
        goto out;
    }
    size_t px = cnnelm_dataset_example_bytes(ds);
    uint8_t *images = malloc(total * px + 1), *labels = malloc(total + 1),
            *source = malloc(total + 1);
    if (!images || !labels || !source) {
        free(images);
        free(labels);
        free(source);
        cnnelm_fail(err, "out of memory for %zu images", total);
        goto out;
    }
    size_t at = 0;
    for (int s = 0; s < k; s++) {
        if (part[s].n == 0) /* a source without a test set */
            continue;
        memcpy(images + at * px, part[s].images, part[s].n * px);
        for (size_t i = 0; i < part[s].n; i++) {
            labels[at + i] = (uint8_t)(part[s].labels[i] + offset[s]);
            source[at + i] = (uint8_t)s;
        }
        at += part[s].n;
    }
    int rows = ds->rows, cols = ds->cols, channels = ds->channels;
    take_owned(ds, images, labels, source, total, rows, cols, offset[k], k);
    ds->channels = channels;
    rc = 0;
out:
    for (int s = 0; s < k; s++)
        cnnelm_dataset_free(&part[s]);
    if (rc)
        cnnelm_dataset_free(ds);
    return rc;
}

/* Headers that announce more than data.max_bytes are refused before any file is read. */
static int check_sizes(const cnnelm_config *cfg, int test, cnnelm_error *err)
{
    unsigned long long max = (unsigned long long)cfg->data.max_bytes;
    int k = cfg->data.n_sources;
    for (int s = -1; s < k; s++) {
        const char *img = s < 0 ? (k ? "" : test ? cfg->data.test_images : cfg->data.train_images)
                                : test ? cfg->data.sources[s].test_images : cfg->data.sources[s].train_images;
        const char *lab = s < 0 ? (k ? "" : test ? cfg->data.test_labels : cfg->data.train_labels)
                                : test ? cfg->data.sources[s].test_labels : cfg->data.sources[s].train_labels;
        if (cnnelm_idx_check_size(img, max, err) || cnnelm_idx_check_size(lab, max, err))
            return -1;
    }
    return 0;
}

int cnnelm_dataset_load_config(cnnelm_dataset *ds, const cnnelm_config *cfg, int test,
                               int max_classes, cnnelm_error *err)
{
    memset(ds, 0, sizeof *ds);
    if (check_sizes(cfg, test, err))
        return -1;
    if (cfg->data.n_sources > 0) {
        if (load_sources(ds, cfg, test, test ? max_classes : 256, err))
            return -1;
    } else {
        const char *img = test ? cfg->data.test_images : cfg->data.train_images;
        const char *lab = test ? cfg->data.test_labels : cfg->data.train_labels;
        if (test && !*img && !*lab)
            return 0;
        if (!*img || (!*lab && !cnnelm_input_holds_labels(img)))
            return cnnelm_fail(err, "%s: data.%s_images and data.%s_labels %s", cfg->path,
                               test ? "test" : "train", test ? "test" : "train",
                               test ? "go together (one is empty)" : "must name the training set");
        cnnelm_input_options io;
        if (input_options(cfg, &io, err) ||
            cnnelm_dataset_load_any(ds, img, lab, test ? max_classes : CNNELM_LABELS_TRAIN,
                                    (size_t)(test ? cfg->data.test_limit : cfg->data.train_limit), &io, err))
            return -1;
    }
    if (cnnelm_dataset_set_class_names(ds, cfg->data.class_names, cfg->data.class_names_file, err)) {
        if (cfg->data.class_names[0])
            cnnelm_fail_prefix(err, "%s", cfg->path);
        cnnelm_dataset_free(ds);
        return -1;
    }
    /* test copies get their own noise: seed + 1 keeps them apart from the training copies */
    if (cnnelm_dataset_add_noise(ds, cfg->data.extend, cfg->train.seed + (uint64_t)test, err)) {
        cnnelm_dataset_free(ds);
        return -1;
    }
    return 0;
}

/* mkdir -p: creates dir and its missing parents. */
static int make_dirs(const char *dir, cnnelm_error *err)
{
    char path[CNNELM_PATH_MAX];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof path)
        return cnnelm_fail(err, "%s: bad output directory name", dir);
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != 0)
            continue;
        char c = path[i];
        path[i] = 0;
        struct stat st;
        if (mkdir(path, 0777) != 0 && (errno != EEXIST || stat(path, &st) != 0 || !S_ISDIR(st.st_mode)))
            return cnnelm_fail(err, "%s: cannot create directory %s: %s", dir, path,
                               errno == EEXIST ? "not a directory" : strerror(errno));
        path[i] = c;
    }
    return 0;
}

/* extend writes into a directory of the user's choosing: never over one of the data files it
 * reads (the source data set would be replaced by its noisy copy). */
static int check_not_inputs(const cnnelm_config *cfg, const char *out, cnnelm_error *err)
{
    const char *in[4 + 4 * CNNELM_MAX_SOURCES];
    int n = 0;
    in[n++] = cfg->data.train_images;
    in[n++] = cfg->data.train_labels;
    in[n++] = cfg->data.test_images;
    in[n++] = cfg->data.test_labels;
    for (int s = 0; s < cfg->data.n_sources; s++) {
        in[n++] = cfg->data.sources[s].train_images;
        in[n++] = cfg->data.sources[s].train_labels;
        in[n++] = cfg->data.sources[s].test_images;
        in[n++] = cfg->data.sources[s].test_labels;
    }
    return cnnelm_output_not_input(out, in, n, err);
}

int cnnelm_run_extend(const char *config_path, const char *const *overrides, int n_overrides,
                      const char *dir, int quiet, cnnelm_error *err)
{
    cnnelm_config cfg;
    cnnelm_dataset train, test;
    memset(&train, 0, sizeof train);
    memset(&test, 0, sizeof test);
    int rc = -1;
    if (cnnelm_config_load(&cfg, config_path, overrides, n_overrides, err))
        return -1;
    if (cnnelm_dataset_load_config(&train, &cfg, 0, 256, err) ||
        cnnelm_dataset_load_config(&test, &cfg, 1, train.classes, err))
        goto out;
    if (make_dirs(dir, err))
        goto out;
    const struct {
        const cnnelm_dataset *ds;
        const char *images, *labels;
    } sets[2] = { { &train, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz" },
                  { &test, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz" } };
    for (int i = 0; i < 4; i++) { /* all four checked before any is written */
        char p[CNNELM_PATH_MAX + 64];
        snprintf(p, sizeof p, "%s/%s", dir, i % 2 ? sets[i / 2].labels : sets[i / 2].images);
        if (check_not_inputs(&cfg, p, err) || cnnelm_output_probe(p, err))
            goto out;
    }
    for (int i = 0; i < 2; i++) {
        if (sets[i].ds->n == 0)
            continue;
        char pi[CNNELM_PATH_MAX + 64], pl[CNNELM_PATH_MAX + 64];
        snprintf(pi, sizeof pi, "%s/%s", dir, sets[i].images);
        snprintf(pl, sizeof pl, "%s/%s", dir, sets[i].labels);
        if (cnnelm_idx_write_images_c(pi, sets[i].ds->images, sets[i].ds->n,
                                      sets[i].ds->channels > 0 ? sets[i].ds->channels : 1,
                                      sets[i].ds->rows, sets[i].ds->cols, err) ||
            cnnelm_idx_write_labels(pl, sets[i].ds->labels, sets[i].ds->n, err))
            goto out;
        /* one line per file on stdout (for scripts); the counts on stderr */
        printf("%s\n%s\n", pi, pl);
        fflush(stdout);
        if (!quiet)
            fprintf(stderr, "%s set: %zu images of %dx%d, %d classes\n", i ? "test" : "training",
                    sets[i].ds->n, sets[i].ds->rows, sets[i].ds->cols, sets[i].ds->classes);
    }
    rc = 0;
out:
    cnnelm_dataset_free(&train);
    cnnelm_dataset_free(&test);
    cnnelm_config_free(&cfg);
    return rc;
}
