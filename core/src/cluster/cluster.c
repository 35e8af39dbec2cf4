/* cnnelm clusters over Open MPI (see cluster.h). Models travel in the model-file encoding, so
 * what rank 0 receives is checked (CRC and all) exactly like a file. */
#define _GNU_SOURCE
#include "cnnelm/cluster.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>

#include "cluster/cluster_internal.h"

#ifdef CNNELM_HAVE_MPI
#include <mpi.h>
int cnnelm_cluster_any_thread;
pthread_t cnnelm_cluster_thread;
#endif

/* Launched by an MPI launcher? (Open MPI, MPICH/Hydra, Slurm's PMI.) Without one we do not
 * initialise MPI at all, so the same binary runs as a plain program. */
static int launched_by_mpi(void)
{
    static const char *vars[] = { "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS" };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]))
            return 1;
    return 0;
}

int cnnelm_cluster_init(cnnelm_cluster *c, int *argc, char ***argv, cnnelm_error *err)
{
    c->rank = 0;
    c->size = 1;
    c->mpi = 0;
#ifdef CNNELM_HAVE_MPI
    if (!launched_by_mpi())
        return 0;
    /* MULTIPLE when the library has it (Open MPI does): progress messages then leave from
     * whichever thread reports; every other call stays on this thread */
    int provided = MPI_THREAD_SINGLE;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
        return cnnelm_fail(err, "MPI_Init failed");
    cnnelm_cluster_any_thread = provided >= MPI_THREAD_MULTIPLE;
    cnnelm_cluster_thread = pthread_self();
    c->mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
#else
    (void)argc;
    (void)argv;
    if (launched_by_mpi())
        return cnnelm_fail(err, "started by an MPI launcher, but this cnnelm was built without MPI "
                           "(configure with -DCNNELM_MPI=ON)");
#endif
    return 0;
}

void cnnelm_cluster_finalize(cnnelm_cluster *c)
{
#ifdef CNNELM_HAVE_MPI
    if (c->mpi)
        MPI_Finalize();
#endif
    c->mpi = 0;
}

void cnnelm_cluster_error(const cnnelm_cluster *c, const char *message)
{
    if (c && c->size > 1)
        fprintf(stderr, "cnnelm: error: rank %d: %s\n", c->rank, message);
    else
        fprintf(stderr, "cnnelm: error: %s\n", message);
    fflush(stderr);
    /* the tool ends the job (MPI_Abort): library code never exits */
}

#ifdef CNNELM_HAVE_MPI
/* Large messages go in pieces: MPI counts are int. send_bytes returns 0, -1 on an MPI error, 1
 * when the receiver took none of it within the deadline. */
#define PIECE (1 << 30)
/* Tags stay under the 32767 every MPI allows; order per (source, tag) keeps them apart. */
#define TAG(p) ((p) % 30000)
/* How long a rank waits for another (rank 0 for a result, the others for rank 0 to take theirs
 * or to broadcast) before it calls the job hung (a stopped or wedged process would otherwise
 * hold every rank forever): CNNELM_MPI_TIMEOUT seconds, default 3600; 0 waits forever. */
static double wait_limit(void)
{
    const char *v = getenv("CNNELM_MPI_TIMEOUT");
    char *end;
    double t = v && *v ? strtod(v, &end) : 3600;
    return v && *v && (*end || !(t >= 0)) ? 3600 : t; /* "nan" too: not a wait */
}

/* Waits for a non-blocking request with the deadline above: polls MPI_Test. Returns 0, -1 on
 * an MPI error, 1 when the deadline passed (a point-to-point request is cancelled; a collective
 * cannot be, and the caller ends the job). */
static int wait_bounded(MPI_Request req, int cancellable)
{
    double limit = wait_limit(), start = MPI_Wtime();
    for (;;) {
        int done = 0;
        if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return -1;
        if (done)
            return 0;
        cnnelm_cluster_progress_poll(); /* rank 0's line goes on while it waits; the others keep reporting */
        double waited = MPI_Wtime() - start;
        if (limit > 0 && waited > limit) {
            if (cancellable) {
                MPI_Cancel(&req);
                MPI_Request_free(&req);
            }
            return 1;
        }
        /* Open MPI advances a non-blocking collective only inside MPI_Test: a large sum is
         * thousands of steps, and a 5 ms nap between each made a 33 MB reduce take 20 s. So
         * poll at full speed for the first 2 s (long enough for any slab once every rank is
         * there: the reducer's small agreements just before line the ranks up), and nap only
         * when a rank is really late. The deadline is checked first, so a limit under 2 s holds. */
        if (waited < 2.0) {
            sched_yield();
            continue;
        }
        struct timespec pause = { 0, 5 * 1000 * 1000 };
        nanosleep(&pause, NULL);
    }
}

/* MPI_Recv with a deadline. */
static int recv_bounded(void *buf, int count, MPI_Datatype type, int from, int tag)
{
    MPI_Request req;
    if (MPI_Irecv(buf, count, type, from, tag, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
        return -1;
    return wait_bounded(req, 1);
}

/* MPI_Send with a deadline (a large message waits for its receiver: a stopped rank 0 would hold
 * the sender forever). */
static int send_bounded(const void *buf, int count, MPI_Datatype type, int to, int tag)
{
    MPI_Request req;
    if (MPI_Isend(buf, count, type, to, tag, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
        return -1;
    return wait_bounded(req, 1);
}

/* MPI_Bcast from rank 0 with a deadline. */
static int bcast_bounded(void *buf, int count, MPI_Datatype type)
{
    MPI_Request req;
    if (MPI_Ibcast(buf, count, type, 0, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
        return -1;
    return wait_bounded(req, 0);
}

static int send_bytes(const unsigned char *p, size_t n, int to, int tag)
{
    unsigned long long len = n;
    int w = send_bounded(&len, 1, MPI_UNSIGNED_LONG_LONG, to, tag);
    if (w != 0)
        return w;
    for (size_t off = 0; off < n; off += PIECE) {
        int part = (int)(n - off < PIECE ? n - off : PIECE);
        if ((w = send_bounded(p + off, part, MPI_BYTE, to, tag)) != 0)
            return w;
    }
    return 0;
}

static unsigned char *recv_bytes(size_t *n, int from, int tag, int *timed_out)
{
    unsigned long long len;
    *timed_out = 0;
    int w = recv_bounded(&len, 1, MPI_UNSIGNED_LONG_LONG, from, tag);
    if (w != 0) {
        *timed_out = w == 1;
        return NULL;
    }
    unsigned char *p = malloc(len ? len : 1);
    if (!p)
        return NULL;
    for (size_t off = 0; off < len; off += PIECE) {
        int part = (int)(len - off < PIECE ? len - off : PIECE);
        int wr = recv_bounded(p + off, part, MPI_BYTE, from, tag);
        if (wr != 0) {
            *timed_out = wr == 1;
            free(p);
            return NULL;
        }
    }
    *n = len;
    return p;
}

static const char *late_hint = "a rank is stopped, hung or far slower than expected "
                               "(CNNELM_MPI_TIMEOUT sets the wait, in seconds)";

/* for cluster_progress.c (cluster_internal.h) */
int cnnelm_cluster_wait_bounded(void *req, int cancellable)
{
    return wait_bounded(*(MPI_Request *)req, cancellable);
}
double cnnelm_cluster_wait_limit(void)
{
    return wait_limit();
}
const char *cnnelm_cluster_late_hint(void)
{
    return late_hint;
}

/* Rank 0's count elements of type to every rank, in pieces (MPI counts are int), each wait
 * bounded; a failure is named by `what`. Every broadcast goes through here. */
static int bcast_checked(void *buf, size_t count, MPI_Datatype type, const char *what, cnnelm_error *err)
{
    int size, w = 0;
    MPI_Type_size(type, &size);
    for (size_t off = 0; w == 0 && off < count; off += PIECE) {
        int part = (int)(count - off < PIECE ? count - off : PIECE);
        w = bcast_bounded((unsigned char *)buf + off * (size_t)size, part, type);
    }
    if (w == 1)
        return cnnelm_fail(err, "MPI: the broadcast of %s from rank 0 did not complete in %.0f s: %s", what,
                           wait_limit(), late_hint);
    if (w)
        return cnnelm_fail(err, "MPI: the broadcast of %s from rank 0 failed", what);
    return 0;
}
#endif

int cnnelm_cluster_bcast_model(const cnnelm_cluster *c, cnnelm_model *m, cnnelm_error *err)
{
    if (!c || c->size == 1)
        return 0;
#ifdef CNNELM_HAVE_MPI
    unsigned char *buf = NULL;
    unsigned long long len = 0;
    size_t n = 0;
    if (c->rank == 0) {
        if (cnnelm_model_encode(m, &buf, &n, err))
            return -1;
        len = n;
    }
    /* bounded like the receives: a stopped rank leaves every other one here otherwise */
    const char *what = "the reduced model";
    if (bcast_checked(&len, 1, MPI_UNSIGNED_LONG_LONG, what, err)) {
        free(buf);
        return -1;
    }
    if (c->rank != 0 && !(buf = malloc(len ? len : 1)))
        return cnnelm_fail(err, "out of memory");
    if (bcast_checked(buf, len, MPI_BYTE, what, err)) {
        free(buf);
        return -1;
    }
    int rc = 0;
    if (c->rank != 0) {
        cnnelm_model_free(m);
        rc = cnnelm_model_decode(m, buf, len, "the model broadcast by rank 0", err);
    }
    free(buf);
    return rc;
#else
    (void)m;
    return cnnelm_fail(err, "this cnnelm was built without MPI");
#endif
}

int cnnelm_cluster_gather_each(const cnnelm_cluster *c, int k, cnnelm_cluster_encode_fn encode,
                               cnnelm_cluster_decode_fn decode, void *user, const char *what,
                               cnnelm_error *err)
{
    if (!c || c->size == 1)
        return 0;
#ifdef CNNELM_HAVE_MPI
    for (int p = 0; p < k; p++) {
        int owner = cnnelm_cluster_owner(c, p);
        if (owner == 0)
            continue;
        if (c->rank == owner) {
            unsigned char *buf = NULL;
            size_t len = 0;
            if (encode(user, p, &buf, &len, err))
                return -1;
            int rc = send_bytes(buf, len, 0, TAG(p));
            free(buf);
            if (rc == 1)
                return cnnelm_fail(err, "MPI: rank 0 took nothing of partition %d's %s for %.0f s: it is "
                                   "stopped, hung or far slower than expected (CNNELM_MPI_TIMEOUT sets "
                                   "the wait, in seconds)", p + 1, what, wait_limit());
            if (rc)
                return cnnelm_fail(err, "MPI: sending partition %d's %s to rank 0 failed", p + 1, what);
        } else if (c->rank == 0) {
            size_t len = 0;
            int late;
            unsigned char *b = recv_bytes(&len, owner, TAG(p), &late);
            if (!b && late)
                return cnnelm_fail(err, "MPI: rank %d sent nothing for %.0f s (partition %d's %s): it is "
                                   "stopped, hung or far slower than expected (CNNELM_MPI_TIMEOUT sets "
                                   "the wait, in seconds)", owner, wait_limit(), p + 1, what);
            if (!b)
                return cnnelm_fail(err, "MPI: receiving partition %d's %s from rank %d failed", p + 1, what,
                                   owner);
            int rc = decode(user, p, b, len, err);
            free(b);
            if (rc)
                return -1;
        }
    }
    return 0;
#else
    (void)k;
    (void)encode;
    (void)decode;
    (void)user;
    (void)what;
    return cnnelm_fail(err, "this cnnelm was built without MPI");
#endif
}

#ifdef CNNELM_HAVE_MPI
/* The user-defined reduction: 128-bit two's complement integers as (low, high) limb pairs.
 * Integer addition is associative and commutative, so any reduction tree gives the same bits. */
static void add_i128(void *in, void *inout, int *len, MPI_Datatype *type)
{
    (void)type;
    const uint64_t *a = in;
    uint64_t *b = inout;
    for (int i = 0; i < *len; i++) {
        uint64_t lo = b[2 * i] + a[2 * i];
        b[2 * i + 1] += a[2 * i + 1] + (lo < a[2 * i]);
        b[2 * i] = lo;
    }
}

/* Elements per collective call: 2^20 pairs = 16 MiB, so MPI's own buffers stay small. */
#define SLAB ((size_t)1 << 20)
#endif

int cnnelm_cluster_sum_limbs(const cnnelm_cluster *c, uint64_t *w, size_t n, int to_all,
                             const char *what, cnnelm_error *err)
{
    if (!c || c->size == 1)
        return 0;
#ifdef CNNELM_HAVE_MPI
    MPI_Datatype pair;
    MPI_Op op;
    if (MPI_Type_contiguous(2, MPI_UINT64_T, &pair) != MPI_SUCCESS || MPI_Type_commit(&pair) != MPI_SUCCESS)
        return cnnelm_fail(err, "MPI: cannot make the 128-bit integer type");
    if (MPI_Op_create(add_i128, 1, &op) != MPI_SUCCESS) {
        MPI_Type_free(&pair);
        return cnnelm_fail(err, "MPI: cannot make the 128-bit sum");
    }
    int w8 = 0;
    for (size_t off = 0; w8 == 0 && off < n; off += SLAB) {
        int part = (int)(n - off < SLAB ? n - off : SLAB);
        uint64_t *at = w + 2 * off;
        MPI_Request req;
        int rc;
        if (to_all)
            rc = MPI_Iallreduce(MPI_IN_PLACE, at, part, pair, op, MPI_COMM_WORLD, &req);
        else
            rc = MPI_Ireduce(c->rank == 0 ? MPI_IN_PLACE : at, c->rank == 0 ? at : NULL, part, pair, op,
                             0, MPI_COMM_WORLD, &req);
        w8 = rc != MPI_SUCCESS ? -1 : wait_bounded(req, 0);
    }
    MPI_Op_free(&op);
    MPI_Type_free(&pair);
    if (w8 == 1)
        return cnnelm_fail(err, "MPI: the reduce of %s did not complete in %.0f s: %s", what, wait_limit(),
                           late_hint);
    if (w8)
        return cnnelm_fail(err, "MPI: the reduce of %s failed", what);
    return 0;
#else
    (void)w;
    (void)n;
    (void)to_all;
    (void)what;
    return cnnelm_fail(err, "this cnnelm was built without MPI");
#endif
}

/* The small agreements go to rank 0 point to point, and back by broadcast: P tiny messages,
 * and rank 0 can name a rank that never arrives (a collective could only say it is late). */
#define TAG_SMALL 30001

int cnnelm_cluster_allreduce_i64(const cnnelm_cluster *c, int64_t *v, int n, cnnelm_cluster_op op,
                                 const char *what, cnnelm_error *err)
{
    if (!c || c->size == 1)
        return 0;
#ifdef CNNELM_HAVE_MPI
    if (c->rank != 0) {
        int w = send_bounded(v, n, MPI_INT64_T, 0, TAG_SMALL);
        if (w == 1)
            return cnnelm_fail(err, "MPI: rank 0 took nothing of %s for %.0f s: it is stopped, hung or far "
                               "slower than expected (CNNELM_MPI_TIMEOUT sets the wait, in seconds)", what,
                               wait_limit());
        if (w)
            return cnnelm_fail(err, "MPI: sending %s to rank 0 failed", what);
    } else {
        int64_t *in = malloc((size_t)(n > 0 ? n : 1) * sizeof *in);
        if (!in)
            return cnnelm_fail(err, "out of memory");
        for (int from = 1; from < c->size; from++) {
            int w = recv_bounded(in, n, MPI_INT64_T, from, TAG_SMALL);
            if (w) {
                free(in);
                if (w == 1)
                    return cnnelm_fail(err, "MPI: rank %d sent nothing for %.0f s (%s): it is stopped, hung or "
                                       "far slower than expected (CNNELM_MPI_TIMEOUT sets the wait, in "
                                       "seconds)", from, wait_limit(), what);
                return cnnelm_fail(err, "MPI: receiving %s from rank %d failed", what, from);
            }
            for (int i = 0; i < n; i++)
                v[i] = op == CNNELM_CLUSTER_SUM ? v[i] + in[i]
                       : op == CNNELM_CLUSTER_MIN ? (in[i] < v[i] ? in[i] : v[i])
                       : op == CNNELM_CLUSTER_MAX ? (in[i] > v[i] ? in[i] : v[i])
                                                  : (v[i] | in[i]);
        }
        free(in);
    }
    return bcast_checked(v, (size_t)n, MPI_INT64_T, what, err);
#else
    (void)v;
    (void)n;
    (void)op;
    (void)what;
    return cnnelm_fail(err, "this cnnelm was built without MPI");
#endif
}

int cnnelm_cluster_bcast_bytes(const cnnelm_cluster *c, unsigned char *buf, size_t n, const char *what,
                               cnnelm_error *err)
{
    if (!c || c->size == 1)
        return 0;
#ifdef CNNELM_HAVE_MPI
    return bcast_checked(buf, n, MPI_BYTE, what, err);
#else
    (void)buf;
    (void)n;
    (void)what;
    return cnnelm_fail(err, "this cnnelm was built without MPI");
#endif
}
