/* cnnelm clusters: one run spread over several processes (and nodes) with Open MPI. Partitions
 * are dealt to ranks (partition p to rank p mod size); sums are combined by collectives over
 * every rank, rank 0 solves and alone writes files. Built without MPI, or started without mpirun, a run is one process. */
#ifndef CNNELM_CLUSTER_H
#define CNNELM_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "cnnelm/error.h"
#include "cnnelm/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cnnelm_cluster {
    int rank, size;
    int mpi;          /* MPI was initialised (started under mpirun) */
} cnnelm_cluster;

/* Initialises MPI when this build has it and the process was started by mpirun (or another
 * MPI launcher); otherwise rank 0 of 1. */
int cnnelm_cluster_init(cnnelm_cluster *c, int *argc, char ***argv, cnnelm_error *err);
void cnnelm_cluster_finalize(cnnelm_cluster *c);

/* A rank that fails prints "cnnelm: error: rank R: MESSAGE" (or "cnnelm: error: MESSAGE" alone);
 * the caller then ends the whole job (the tool calls MPI_Abort, so a job never hangs waiting for
 * a dead rank). Library code never exits. */
void cnnelm_cluster_error(const cnnelm_cluster *c, const char *message);

static inline int cnnelm_cluster_owner(const cnnelm_cluster *c, int partition)
{
    return c ? partition % c->size : 0;
}

/* Rank 0's model is copied to every rank (whose *m must be free or zeroed). */
int cnnelm_cluster_bcast_model(const cnnelm_cluster *c, cnnelm_model *m, cnnelm_error *err);

/* Per-partition records to rank 0: for each partition p < k owned by a rank other than 0 the
 * owner calls encode (a malloc'd buffer, freed here) and rank 0 decode with what arrived.
 * Waits are bounded (CNNELM_MPI_TIMEOUT); `what` names the records in messages. */
typedef int (*cnnelm_cluster_encode_fn)(void *user, int p, unsigned char **buf, size_t *len,
                                        cnnelm_error *err);
typedef int (*cnnelm_cluster_decode_fn)(void *user, int p, const unsigned char *buf, size_t len,
                                        cnnelm_error *err);
int cnnelm_cluster_gather_each(const cnnelm_cluster *c, int k, cnnelm_cluster_encode_fn encode,
                               cnnelm_cluster_decode_fn decode, void *user, const char *what,
                               cnnelm_error *err);

/* Sums n 128-bit two's complement integers (w[2i] low limb, w[2i+1] high) over the ranks with
 * a user-defined MPI op, in slabs of 2^20, in place: on rank 0 only, or on every rank
 * (to_all). Integer sums: the same bits whatever tree MPI uses. */
int cnnelm_cluster_sum_limbs(const cnnelm_cluster *c, uint64_t *w, size_t n, int to_all,
                             const char *what, cnnelm_error *err);

typedef enum cnnelm_cluster_op {
    CNNELM_CLUSTER_SUM, CNNELM_CLUSTER_MIN, CNNELM_CLUSTER_MAX, CNNELM_CLUSTER_BOR
} cnnelm_cluster_op;

/* v[0..n) combined over every rank, result on every rank: sent to rank 0 point to point (so a
 * rank that never arrives is named, with bounded waits) and broadcast back. For small n. */
int cnnelm_cluster_allreduce_i64(const cnnelm_cluster *c, int64_t *v, int n, cnnelm_cluster_op op,
                                 const char *what, cnnelm_error *err);

/* Whole-job progress: between start and stop, ranks > 0 send their progress totals to rank 0
 * (at most two small non-blocking messages a second, at most one in flight) and rank 0 sums
 * them into `p`, whose live line and timestamped lines then cover the whole job (see
 * base/progress.h). Messages leave from the thread that reports when MPI gave
 * MPI_THREAD_MULTIPLE, else from the initialising thread only; rank 0 also takes them while it
 * waits in this module's bounded waits. Nothing without MPI or with one rank.
 * stop, complete != 0 (the run succeeded; every rank calls it): each rank sends its final
 * report and rank 0 takes them all, waiting at most CNNELM_MPI_TIMEOUT, so no message is left
 * unmatched at finalize; -1 with err on that timeout (the run's results are still good).
 * complete == 0 (a failing run, before the job is aborted): no waiting at all. */
struct cnnelm_progress;
int cnnelm_cluster_progress_start(const cnnelm_cluster *c, struct cnnelm_progress *p, cnnelm_error *err);
int cnnelm_cluster_progress_stop(const cnnelm_cluster *c, int complete, cnnelm_error *err);

/* Rank 0's n bytes to every rank. */
int cnnelm_cluster_bcast_bytes(const cnnelm_cluster *c, unsigned char *buf, size_t n, const char *what,
                               cnnelm_error *err);

#ifdef __cplusplus
}
#endif
#endif
