/* cnnelm random numbers: a small seeded generator (xoshiro256**, seeded by splitmix64) so that
 * initial weights, shuffles and noise are the same on every platform and backend. */
#ifndef CNNELM_RNG_H
#define CNNELM_RNG_H

#include <stdint.h>

typedef struct cnnelm_rng {
    uint64_t s[4];
} cnnelm_rng;

static inline uint64_t cnnelm_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* `stream` separates independent uses of one seed (weights, partitions, noise, ...). */
static inline void cnnelm_rng_seed(cnnelm_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ULL);
    for (int i = 0; i < 4; i++)
        r->s[i] = cnnelm_splitmix64(&x);
}

static inline uint64_t cnnelm_rng_next(cnnelm_rng *r)
{
    uint64_t *s = r->s;
    uint64_t t = s[1] << 17, v = s[1] * 5;
    uint64_t result = ((v << 7) | (v >> 57)) * 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double cnnelm_rng_uniform(cnnelm_rng *r)
{
    return (double)(cnnelm_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform integer in [0, n), without modulo bias. */
static inline uint64_t cnnelm_rng_below(cnnelm_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t v;
    do
        v = cnnelm_rng_next(r);
    while (v >= limit);
    return v % n;
}

/* Stream ids of the seeded generators. Noise takes NOISE + 16 (type + 1) for each type (noise.c);
 * model.init = "patches" draws on 17, a number none of those reach. */
enum { CNNELM_STREAM_WEIGHTS = 1, CNNELM_STREAM_PARTITION = 2, CNNELM_STREAM_NOISE = 3,
       CNNELM_STREAM_ORDER = 4, CNNELM_STREAM_PATCHES = 17 };

#endif
