/* cnnelm noisy copies (data.extend, as in the paper): gaussian, salt-and-pepper and Poisson
 * noise, one seeded stream per (image, type), so a copy's bytes are the same whether a set is
 * extended in memory (cnnelm_dataset_add_noise) or a streamed row is made on the fly
 * (cnnelm_noise_image). */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "data/dataset_stream.h"
#include "data/noise.h"
#include "base/rng.h"

#define GAUSSIAN_SIGMA 25.5     /* 0.1 of full scale */
#define SALT_PEPPER_RATE 0.05

/* Replaces ds's storage by owned copies of n examples (images, labels, sources). */
int cnnelm_dataset_adopt(cnnelm_dataset *ds, uint8_t *images, uint8_t *labels, uint8_t *source,
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

/* Knuth's limits exp(-v), made once for the process (streamed fetches and whole copies alike;
 * the callers of poisson make sure of them first). */
static double noise_limits[POISSON_KNUTH_MAX + 1];
static pthread_once_t noise_limits_once = PTHREAD_ONCE_INIT;
static void noise_limits_init(void)
{
    for (int v = 0; v <= POISSON_KNUTH_MAX; v++)
        noise_limits[v] = exp_minus(v);
}

/* A Poisson sample of mean v (an integer grey level): Knuth's product of uniforms up to
 * POISSON_KNUTH_MAX, the normal approximation N(v, v) above (its error is well under a grey
 * level there). */
static double poisson(cnnelm_rng *r, int v)
{
    if (v <= 0)
        return 0;
    if (v > POISSON_KNUTH_MAX)
        return v + sqrt((double)v) * gaussian(r);
    double limit = noise_limits[v], p = 1.0;
    int k = 0;
    do {
        k++;
        p *= cnnelm_rng_uniform(r);
    } while (p > limit);
    return k - 1;
}

static void noisy_copy(const uint8_t *src, uint8_t *dst, size_t pixels, int type, uint64_t seed,
                       size_t index)
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
        default: dst[i] = clamp255(poisson(&r, src[i])); break;
        }
    }
}

void cnnelm_noise_image(const uint8_t *src, uint8_t *dst, size_t pixels, int type, uint64_t seed,
                        size_t index)
{
    pthread_once(&noise_limits_once, noise_limits_init);
    noisy_copy(src, dst, pixels, type, seed, index);
}

/* The noisy copies, split over threads by image: each image has its own stream, so the bytes
 * do not depend on the number of threads. */
typedef struct noise_job {
    const uint8_t *src;
    uint8_t *dst;           /* the copies, type after type */
    size_t n, px;
    int types[3], n_types;
    uint64_t seed;
    size_t begin, end;      /* this thread's images */
} noise_job;

static void *noise_worker(void *arg)
{
    const noise_job *j = arg;
    for (int t = 0; t < j->n_types; t++)
        for (size_t i = j->begin; i < j->end; i++)
            noisy_copy(j->src + i * j->px, j->dst + ((size_t)t * j->n + i) * j->px, j->px, j->types[t],
                       j->seed, i);
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
    if (cnnelm_dataset_materialize(ds, err))
        return -1;
    size_t px = cnnelm_dataset_example_bytes(ds), n = ds->n;
    if (px == 0 || n > SIZE_MAX / px / (size_t)(1 + copies))
        return cnnelm_fail(err, "%zu images of %dx%d with %d noisy copies overflow the address space",
                           n, ds->rows, ds->cols, copies);
    size_t total = n * (size_t)(1 + copies);
    pthread_once(&noise_limits_once, noise_limits_init);
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
    noise_job job = { .src = ds->images, .dst = images + n * px, .n = n, .px = px, .seed = seed };
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
    cnnelm_dataset_adopt(ds, images, labels, source, total, ds->rows, ds->cols, ds->classes, ds->n_sources);
    ds->channels = channels;
    ds->class_names = names;
    return 0;
}

