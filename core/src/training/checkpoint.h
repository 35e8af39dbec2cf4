/* cnnelm partition checkpoints: with train.checkpoint_dir set, each partition's model is saved
 * as seedS-foldF-partPofK.model with a NAME.model.fingerprint beside it (the settings, data
 * files and examples that determine it); --resume reuses a checkpoint only when every line of
 * its fingerprint matches this run's. Internal to training/ (experiment.c). */
#ifndef CNNELM_CHECKPOINT_H
#define CNNELM_CHECKPOINT_H

#include "cnnelm/model.h"
#include "training/experiment.h"

/* The part of every partition's fingerprint that is the same for the whole run (settings, and
 * each data file's size, mtime and head/tail hash: reads of every shard), made once per
 * experiment (malloc'd; NULL when out of memory). */
char *cnnelm_checkpoint_run_text(const cnnelm_experiment *x);

/* Partition p's checkpoint into r (r->resumed set) when it exists and its fingerprint (run_text,
 * then the partition's examples) matches this run's, with init the initial weights and sub the
 * partition's examples: 1. Otherwise 0, noting why a checkpoint found is trained again. */
int cnnelm_checkpoint_load(const cnnelm_experiment *x, const char *run_text, const cnnelm_model *init,
                           const cnnelm_subset *sub, int p, cnnelm_part_result *r);
/* Saves m as partition p's checkpoint, then its fingerprint. */
int cnnelm_checkpoint_save(const cnnelm_experiment *x, const char *run_text, const cnnelm_subset *sub,
                           int p, const cnnelm_model *m, cnnelm_error *err);

#endif
