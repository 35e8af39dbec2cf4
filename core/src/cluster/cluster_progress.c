/* cnnelm whole-job progress over MPI (see cnnelm/cluster.h): ranks > 0 report their progress
 * totals to rank 0 in small non-blocking messages on a tag of their own; rank 0 sums them into
 * its progress, so that its live line and timestamped lines cover the whole job. */
#define _GNU_SOURCE
#include "cnnelm/cluster.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/progress.h"
#include "cluster/cluster_internal.h"

#ifdef CNNELM_HAVE_MPI
#include <mpi.h>
#endif

#ifdef CNNELM_HAVE_MPI
#define TAG_PROGRESS 30002
#define PROGRESS_EVERY 0.5  /* s between two reports of a rank: at most 2 small messages a second */
#define PROGRESS_POLL 0.05  /* s between two looks of rank 0 */
/* a report: planned[2], done[2], images, images_done, seconds[2], images_timed[2], final flag */
#define REC_N 11

static struct {
    cnnelm_progress *prog;  /* NULL: no link */
    int rank, size;
    int stopping;           /* in cnnelm_cluster_progress_stop: the last exchange */
    double last;            /* MPI_Wtime of the last report (ranks > 0) or look (rank 0) */
    MPI_Request req;        /* ranks > 0: the report in flight (at most one) */
    int pending, final_sent;
    double out[REC_N];
    double *in;             /* rank 0: each rank's last report, size x REC_N */
    int *heard;             /* rank 0: per rank, 0 nothing yet, 1 reports, 2 its final one */
} plink;

static int may_call_mpi(void)
{
    return cnnelm_cluster_any_thread || pthread_equal(pthread_self(), cnnelm_cluster_thread);
}

static void pack(const cnnelm_progress *root, double *rec, int final)
{
    cnnelm_progress_totals t;
    cnnelm_progress_own_totals(root, &t);
    const double v[REC_N] = { t.planned[0], t.planned[1], t.done[0], t.done[1], t.images, t.images_done,
                              t.seconds[0], t.seconds[1], t.images_timed[0], t.images_timed[1], final };
    memcpy(rec, v, sizeof v);
}

/* Rank 0 (root's lock held, so one thread at a time probes and receives): every report that
 * has arrived, then the sum of each rank's last into the progress. */
static void take_reports(cnnelm_progress *root)
{
    for (;;) {
        int flag = 0;
        MPI_Status st;
        if (MPI_Iprobe(MPI_ANY_SOURCE, TAG_PROGRESS, MPI_COMM_WORLD, &flag, &st) != MPI_SUCCESS || !flag)
            break;
        double rec[REC_N];
        if (MPI_Recv(rec, REC_N, MPI_DOUBLE, st.MPI_SOURCE, TAG_PROGRESS, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE) != MPI_SUCCESS)
            break;
        int from = st.MPI_SOURCE;
        if (from > 0 && from < plink.size && plink.heard[from] < 2) {
            memcpy(plink.in + (size_t)from * REC_N, rec, sizeof rec);
            plink.heard[from] = rec[REC_N - 1] != 0 ? 2 : 1;
        }
    }
    cnnelm_progress_totals sum;
    memset(&sum, 0, sizeof sum);
    int reported = 0;
    for (int r = 1; r < plink.size; r++) {
        if (!plink.heard[r])
            continue;
        const double *v = plink.in + (size_t)r * REC_N;
        sum.planned[0] += v[0], sum.planned[1] += v[1], sum.done[0] += v[2], sum.done[1] += v[3];
        sum.images += v[4], sum.images_done += v[5];
        sum.seconds[0] += v[6], sum.seconds[1] += v[7], sum.images_timed[0] += v[8], sum.images_timed[1] += v[9];
        reported++;
    }
    cnnelm_progress_set_others(root, &sum, reported);
}

/* The progress hook (root's lock held, any thread): rank 0 looks for reports, the others send
 * theirs, each at a bounded rate and only from a thread MPI allows. */
static void progress_hook(void *user, cnnelm_progress *root)
{
    (void)user;
    if (!plink.prog || !may_call_mpi())
        return;
    double now = MPI_Wtime();
    if (plink.rank == 0) {
        if (plink.stopping || now - plink.last >= PROGRESS_POLL) {
            plink.last = now;
            take_reports(root);
        }
        return;
    }
    if (plink.stopping) { /* the final report, once the one in flight is complete */
        if (!plink.pending && !plink.final_sent) {
            pack(root, plink.out, 1);
            plink.final_sent = 1;
            plink.pending = MPI_Isend(plink.out, REC_N, MPI_DOUBLE, 0, TAG_PROGRESS, MPI_COMM_WORLD,
                                      &plink.req) == MPI_SUCCESS;
        }
        return;
    }
    if (root->run_images == 0 || now - plink.last < PROGRESS_EVERY)
        return;
    if (plink.pending) { /* rank 0 has not taken the last one yet: skip, never queue */
        int done = 0;
        if (MPI_Test(&plink.req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || !done)
            return;
        plink.pending = 0;
    }
    plink.last = now;
    pack(root, plink.out, 0);
    plink.pending = MPI_Isend(plink.out, REC_N, MPI_DOUBLE, 0, TAG_PROGRESS, MPI_COMM_WORLD, &plink.req) ==
                    MPI_SUCCESS;
}

/* From the bounded waits (the MPI thread): rank 0's figures and line go on while it waits. */
void cnnelm_cluster_progress_poll(void)
{
    if (plink.prog && !plink.stopping)
        cnnelm_progress_poll(plink.prog);
}

static void plink_free(void)
{
    free(plink.in);
    free(plink.heard);
    memset(&plink, 0, sizeof plink);
}
#endif

int cnnelm_cluster_progress_start(const cnnelm_cluster *c, struct cnnelm_progress *p, cnnelm_error *err)
{
#ifdef CNNELM_HAVE_MPI
    if (!c || c->size <= 1 || !c->mpi || !p || plink.prog)
        return 0;
    plink_free();
    if (c->rank == 0) {
        plink.in = calloc((size_t)c->size * REC_N, sizeof *plink.in);
        plink.heard = calloc((size_t)c->size, sizeof *plink.heard);
        if (!plink.in || !plink.heard) {
            plink_free();
            return cnnelm_fail(err, "out of memory");
        }
    }
    plink.rank = c->rank;
    plink.size = c->size;
    plink.last = -1e300; /* the first report goes at once */
    plink.prog = p;
    cnnelm_progress_set_hook(p, progress_hook, NULL, c->size);
#else
    (void)c;
    (void)p;
    (void)err;
#endif
    return 0;
}

int cnnelm_cluster_progress_stop(const cnnelm_cluster *c, int complete, cnnelm_error *err)
{
    (void)c;
#ifdef CNNELM_HAVE_MPI
    cnnelm_progress *p = plink.prog;
    if (!p)
        return 0;
    int rc = 0;
    plink.stopping = 1; /* from here the waits poll no more, and the hook makes the last exchange */
    if (!complete) {
        /* the job is failing (the tool aborts it): take what is there, leave nothing waiting
         * on this rank, and do not wait for anyone */
        if (plink.rank == 0)
            cnnelm_progress_poll(p);
        else if (plink.pending)
            MPI_Request_free(&plink.req); /* a small send completes, or dies with the job */
    } else if (plink.rank != 0) {
        int w = plink.pending ? cnnelm_cluster_wait_bounded(&plink.req, 1) : 0;
        plink.pending = 0;
        if (w == 0) {
            cnnelm_progress_poll(p); /* the hook sends the final report */
            w = plink.pending ? cnnelm_cluster_wait_bounded(&plink.req, 1) : 0;
            plink.pending = 0;
        }
        if (w)
            rc = cnnelm_fail(err, "MPI: rank 0 took no progress report for %.0f s: %s",
                             cnnelm_cluster_wait_limit(), cnnelm_cluster_late_hint());
    } else {
        /* every rank's final report, so that none is left unmatched at MPI_Finalize */
        double limit = cnnelm_cluster_wait_limit(), start = MPI_Wtime();
        for (;;) {
            cnnelm_progress_poll(p);
            int missing = 0, first = 0;
            for (int r = plink.size - 1; r > 0; r--)
                if (plink.heard[r] != 2)
                    missing++, first = r;
            if (!missing)
                break;
            if (limit > 0 && MPI_Wtime() - start > limit) {
                rc = cnnelm_fail(err, "MPI: rank %d sent no end-of-run progress report in %.0f s: %s", first,
                                 limit, cnnelm_cluster_late_hint());
                break;
            }
            struct timespec pause = { 0, 1000 * 1000 };
            nanosleep(&pause, NULL);
        }
    }
    cnnelm_progress_set_hook(p, NULL, NULL, 0); /* the last figures stay for the summary line */
    plink_free();
    return rc;
#else
    (void)complete;
    (void)err;
    return 0;
#endif
}
