/* cnnelm partitioning (see partition.h). */
#include "data/partition.h"

#include <stdlib.h>
#include <string.h>

#include "base/rng.h"

static void shuffle(size_t *v, size_t n, cnnelm_rng *r)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)cnnelm_rng_below(r, i);
        size_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

void cnnelm_partitions_free(cnnelm_partitions *p)
{
    free(p->rows);
    free(p->start);
    memset(p, 0, sizeof *p);
}

int cnnelm_partition(const size_t *rows, size_t n, const uint8_t *labels, int k,
                     cnnelm_partitioning mode, uint64_t seed, cnnelm_partitions *out,
                     cnnelm_error *err)
{
    memset(out, 0, sizeof *out);
    if (k < 1)
        return cnnelm_fail(err, "%d partitions: need at least 1", k);
    if ((size_t)k > n)
        return cnnelm_fail(err, "%d partitions of %zu examples: some would be empty", k, n);
    out->k = k;
    out->rows = malloc(n * sizeof *out->rows);
    out->start = malloc(((size_t)k + 1) * sizeof *out->start);
    size_t *tmp = malloc(n * sizeof *tmp);
    if (!out->rows || !out->start || !tmp) {
        free(tmp);
        cnnelm_partitions_free(out);
        return cnnelm_fail(err, "out of memory partitioning %zu examples", n);
    }
    for (size_t i = 0; i < n; i++)
        tmp[i] = rows ? rows[i] : i;
    for (int p = 0; p <= k; p++)
        out->start[p] = n * (size_t)p / (size_t)k; /* sizes differ by at most one */
    cnnelm_rng rng;
    cnnelm_rng_seed(&rng, seed, CNNELM_STREAM_PARTITION);

    switch (mode) {
    case CNNELM_PART_CONTIGUOUS:
        memcpy(out->rows, tmp, n * sizeof *tmp);
        break;
    case CNNELM_PART_SHUFFLE:
        shuffle(tmp, n, &rng);
        memcpy(out->rows, tmp, n * sizeof *tmp);
        break;
    case CNNELM_PART_BY_SOURCE:
    case CNNELM_PART_LABEL_SKEW:
    case CNNELM_PART_STRATIFIED: {
        /* counting sort by label (stable), shuffled within each class for stratified */
        size_t count[257] = { 0 };
        for (size_t i = 0; i < n; i++)
            count[labels[tmp[i]] + 1]++;
        for (int c = 0; c < 256; c++)
            count[c + 1] += count[c];
        size_t *sorted = out->rows;
        for (size_t i = 0; i < n; i++)
            sorted[count[labels[tmp[i]]]++] = tmp[i];
        if (mode == CNNELM_PART_LABEL_SKEW)
            break;
        if (mode == CNNELM_PART_BY_SOURCE) {
            /* partition p is exactly key p: keys must be 0..k-1, each present */
            for (int q = 0; q < k; q++) {
                out->start[q] = q ? count[q - 1] : 0;
                if ((q ? count[q - 1] : 0) == count[q]) {
                    free(tmp);
                    cnnelm_partitions_free(out);
                    return cnnelm_fail(err, "by-source partitioning: source %d has no examples", q + 1);
                }
            }
            if (count[k - 1] != n) {
                free(tmp);
                cnnelm_partitions_free(out);
                return cnnelm_fail(err, "by-source partitioning: %d partitions but the data has more sources", k);
            }
            out->start[k] = n;
            break;
        }
        size_t begin = 0;
        for (size_t i = 1; i <= n; i++)
            if (i == n || labels[sorted[i]] != labels[sorted[begin]]) {
                shuffle(sorted + begin, i - begin, &rng);
                begin = i;
            }
        /* deal the class-sorted list round-robin: item i goes to partition i % k, so each
         * partition keeps the class proportions (within one) and sizes differ by at most one */
        size_t at = 0;
        for (int q = 0; q < k; q++) {
            out->start[q] = at;
            for (size_t i = (size_t)q; i < n; i += (size_t)k)
                tmp[at++] = sorted[i];
        }
        out->start[k] = n;
        memcpy(out->rows, tmp, n * sizeof *tmp);
        break;
    }
    default:
        free(tmp);
        cnnelm_partitions_free(out);
        return cnnelm_fail(err, "unknown partitioning mode %d", (int)mode);
    }
    free(tmp);
    if (mode != CNNELM_PART_CONTIGUOUS)
        for (int p = 0; p < k; p++)
            shuffle(out->rows + out->start[p], cnnelm_partition_size(out, p), &rng);
    return 0;
}
