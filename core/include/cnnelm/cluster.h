/* cnnelm clusters: one run spread over several processes (and nodes) with Open MPI. Partitions
 * are dealt to ranks (partition p to rank p mod size); rank 0 gathers, reduces, evaluates and
 * alone writes files. Built without MPI, or started without mpirun, a run is one process. */
#ifndef CNNELM_CLUSTER_H
#define CNNELM_CLUSTER_H

#include <stddef.h>

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

/* A rank that fails ends the whole job: prints "cnnelm: error: rank R: MESSAGE" and aborts
 * every rank (MPI_Abort), so a job never hangs waiting for a dead rank. Without MPI it only
 * prints and returns: the caller ends the process (library code never calls exit). */
void cnnelm_cluster_abort(const cnnelm_cluster *c, const char *message);

static inline int cnnelm_cluster_owner(const cnnelm_cluster *c, int partition)
{
    return c ? partition % c->size : 0;
}

/* After the call rank 0 holds models[p] for every p < k: each partition's model is sent by
 * its owner. The other ranks' models are unchanged. */
int cnnelm_cluster_gather_models(const cnnelm_cluster *c, cnnelm_model *models, int k,
                                 cnnelm_error *err);

/* Rank 0's model is copied to every rank (whose *m must be free or zeroed). */
int cnnelm_cluster_bcast_model(const cnnelm_cluster *c, cnnelm_model *m, cnnelm_error *err);

/* blocks holds k blocks of `count` doubles; block p is sent by its owner to rank 0. */
int cnnelm_cluster_gather_blocks(const cnnelm_cluster *c, double *blocks, size_t count, int k,
                                 cnnelm_error *err);

/* The same, for k blocks of `count` bytes. */
int cnnelm_cluster_gather_bytes(const cnnelm_cluster *c, unsigned char *blocks, size_t count, int k,
                                cnnelm_error *err);

#ifdef __cplusplus
}
#endif
#endif
