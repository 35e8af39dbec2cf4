/* cnnelm partitioning: splits a set of example rows into k partitions (shuffle, stratified,
 * contiguous, label-skew), deterministically for a seed. Every row lands in exactly one
 * partition. Also used for cross-validation folds. */
#ifndef CNNELM_PARTITION_H
#define CNNELM_PARTITION_H

#include <stddef.h>
#include <stdint.h>

#include "cnnelm/enums.h"
#include "cnnelm/error.h"

typedef struct cnnelm_partitions {
    int k;
    size_t *rows;     /* all rows, partition after partition */
    size_t *start;    /* partition p is rows[start[p] .. start[p+1]) ; k + 1 entries */
} cnnelm_partitions;

/* Splits rows[0..n) (rows NULL: 0..n) whose labels are labels[row]. For CNNELM_PART_BY_SOURCE
 * `labels` holds each row's source index instead and partition p is source p. Within a partition the
 * order is shuffled (except "contiguous", which keeps file order) so that batches mix. */
int cnnelm_partition(const size_t *rows, size_t n, const uint8_t *labels, int k,
                     cnnelm_partitioning mode, uint64_t seed, cnnelm_partitions *out,
                     cnnelm_error *err);
void cnnelm_partitions_free(cnnelm_partitions *p);

static inline size_t cnnelm_partition_size(const cnnelm_partitions *p, int i)
{
    return p->start[i + 1] - p->start[i];
}

#endif
