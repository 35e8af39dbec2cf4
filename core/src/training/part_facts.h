/* cnnelm per-partition facts: what the report needs of a partition trained on another rank
 * (time, worker, test metrics, iteration series, lambda choice), as a little-endian record of
 * fixed fields (the layout is in part_facts.c and docs/reduce.md), never a struct's raw bytes. */
#ifndef CNNELM_PART_FACTS_H
#define CNNELM_PART_FACTS_H

#include <stddef.h>

#include "training/experiment.h"

/* r's facts into a malloc'd buffer. */
int cnnelm_part_facts_encode(const cnnelm_part_result *r, unsigned char **out, size_t *len,
                             cnnelm_error *err);

/* A record into r (partition p, for messages): its version checked, and its length exactly
 * what its fields need. r's model keeps only the counts the report reads. */
int cnnelm_part_facts_decode(cnnelm_part_result *r, int p, const unsigned char *buf, size_t len,
                             cnnelm_error *err);

#endif
