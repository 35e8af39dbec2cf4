/* cnnelm periodic averaging (train.sync_every = n > 0): the partitions fine-tune together,
 * round by round; each round runs every partition's next n batches on the worker pool, then
 * their kernels, biases and momentum velocities are averaged, exactly (fixsum.h) over every
 * worker and rank, and every partition continues from the average. See docs/reduce.md. */
#ifndef CNNELM_SYNC_H
#define CNNELM_SYNC_H

#include "training/experiment.h"

/* The Map of an experiment whose partitions average every train.sync_every batches: what
 * cnnelm_worker_pool_run(train_task) does for the partitions of this rank (j->ids, `mine` of
 * them), with every rank taking part in each round. Returns 0 or a negative status (err set);
 * CNNELM_STATUS_INTERRUPTED when a signal stopped it (on any rank). */
int cnnelm_sync_map(cnnelm_map_job *j, int mine, cnnelm_error *err);

#endif
