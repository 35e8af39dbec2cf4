/* cnnelm cluster internals shared by cluster.c and cluster_progress.c. */
#ifndef CNNELM_CLUSTER_INTERNAL_H
#define CNNELM_CLUSTER_INTERNAL_H

#include <pthread.h>

/* MPI gave MPI_THREAD_MULTIPLE (any thread may call it); else only cnnelm_cluster_thread,
 * the thread that initialised MPI, does */
extern int cnnelm_cluster_any_thread;
extern pthread_t cnnelm_cluster_thread;
/* cluster.c's bounded wait on *(MPI_Request *)req: 0, -1 MPI error, 1 past the deadline */
int cnnelm_cluster_wait_bounded(void *req, int cancellable);
double cnnelm_cluster_wait_limit(void);
const char *cnnelm_cluster_late_hint(void);
/* called by the bounded waits at every turn: whole-job progress goes on while a rank waits */
void cnnelm_cluster_progress_poll(void);

#endif
