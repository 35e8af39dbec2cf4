/* cnnelm network, loading chunks: the examples fetched from the data set (memory or stream),
 * widened to float in [0, 1] with their one-hot targets and labels, into one of the two host
 * slots. A loop that knows its next chunk has it loaded on the loader thread while this thread
 * runs the device on the current one (cnnelm_net_forward_ahead): for a small network, fetching
 * and widening cost a fifth of the ELM fit when they wait for the device and the device for them. */
#include "model/network.h"
#include "model/network_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { LOADER_IDLE, LOADER_QUEUED, LOADER_DONE };

typedef struct cnnelm_net_loader cnnelm_net_loader;

struct cnnelm_net_loader {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int state, quit;
    cnnelm_net *net;
    /* the request, and its outcome once LOADER_DONE */
    const cnnelm_dataset *ds;
    const size_t *rows;
    size_t first;
    int n, slot, rc;
    cnnelm_error err;
};

/* Bytes to floats in [0, 1]. In a buffer of their own, not widened in place at the back of the
 * floats: the compiler cannot vectorise a loop whose source and destination may overlap, and
 * the scalar loop cost a fifth of a small network's ELM fit. */
static void widen(const uint8_t *restrict src, float *restrict dst, size_t n)
{
    for (size_t k = 0; k < n; k++)
        dst[k] = (float)src[k] * (1.0f / 255.0f);
}

int cnnelm_net_load_slot(cnnelm_net *net, int slot, const cnnelm_dataset *ds, const size_t *rows,
                         size_t first, int n, cnnelm_error *err)
{
    const cnnelm_arch *a = &net->arch;
    size_t in = (size_t)a->in_c * a->in_h * a->in_w, C = (size_t)a->classes;
    float *x = net->host_xs[slot], *t = net->host_ts[slot];
    unsigned char *labels = net->labels_s[slot];
    memset(t, 0, (size_t)n * C * sizeof(float));
    size_t total = (size_t)n * in;
    if (cnnelm_dataset_fetch(ds, rows, first, (size_t)n, net->host_bytes[slot], err))
        return -1;
    widen(net->host_bytes[slot], x, total);
    for (int j = 0; j < n; j++) {
        size_t r = rows ? rows[first + (size_t)j] : first + (size_t)j;
        unsigned char lab = ds->labels[r];
        labels[j] = lab;
        if (lab < C)
            t[(size_t)j * C + lab] = 1.0f;
    }
    return 0;
}

static void *loader_main(void *arg)
{
    cnnelm_net_loader *ld = arg;
    pthread_mutex_lock(&ld->lock);
    for (;;) {
        while (ld->state != LOADER_QUEUED && !ld->quit)
            pthread_cond_wait(&ld->cond, &ld->lock);
        if (ld->quit)
            break;
        const cnnelm_dataset *ds = ld->ds;
        const size_t *rows = ld->rows;
        size_t first = ld->first;
        int n = ld->n, slot = ld->slot;
        pthread_mutex_unlock(&ld->lock);
        cnnelm_error e = { "" };
        int rc = cnnelm_net_load_slot(ld->net, slot, ds, rows, first, n, &e);
        pthread_mutex_lock(&ld->lock);
        ld->rc = rc;
        ld->err = e;
        ld->state = LOADER_DONE;
        pthread_cond_broadcast(&ld->cond);
    }
    pthread_mutex_unlock(&ld->lock);
    return NULL;
}

/* The loader, started on first use; NULL when no thread can be had (loads are then made on
 * the calling thread, as before the loader). */
static cnnelm_net_loader *loader_of(cnnelm_net *net)
{
    if (net->loader || net->loader_failed)
        return net->loader;
    cnnelm_net_loader *ld = calloc(1, sizeof *ld);
    if (ld && pthread_mutex_init(&ld->lock, NULL) == 0) {
        if (pthread_cond_init(&ld->cond, NULL) == 0) {
            ld->net = net;
            if (pthread_create(&ld->thread, NULL, loader_main, ld) == 0)
                return net->loader = ld;
            pthread_cond_destroy(&ld->cond);
        }
        pthread_mutex_destroy(&ld->lock);
    }
    free(ld);
    net->loader_failed = 1;
    return NULL;
}

void cnnelm_net_load_ahead(cnnelm_net *net, int slot, const cnnelm_dataset *ds, const size_t *rows,
                           size_t first, int n)
{
    cnnelm_net_loader *ld = loader_of(net);
    if (!ld)
        return;
    pthread_mutex_lock(&ld->lock);
    while (ld->state == LOADER_QUEUED) /* one request at a time: the caller drained it before */
        pthread_cond_wait(&ld->cond, &ld->lock);
    ld->ds = ds;
    ld->rows = rows;
    ld->first = first;
    ld->n = n;
    ld->slot = slot;
    ld->state = LOADER_QUEUED;
    pthread_cond_broadcast(&ld->cond);
    pthread_mutex_unlock(&ld->lock);
}

int cnnelm_net_take_loaded(cnnelm_net *net, int slot, const cnnelm_dataset *ds, const size_t *rows,
                           size_t first, int n, cnnelm_error *err)
{
    cnnelm_net_loader *ld = net->loader;
    if (!ld)
        return 0;
    pthread_mutex_lock(&ld->lock);
    while (ld->state == LOADER_QUEUED)
        pthread_cond_wait(&ld->cond, &ld->lock);
    int got = 0;
    if (ld->state == LOADER_DONE && ld->ds == ds && ld->rows == rows && ld->first == first &&
        ld->n == n && ld->slot == slot) {
        got = ld->rc == 0 ? 1 : -1;
        if (got < 0 && err)
            *err = ld->err;
    }
    ld->state = LOADER_IDLE; /* another chunk's load is dropped: the caller loads its own */
    pthread_mutex_unlock(&ld->lock);
    return got;
}

void cnnelm_net_loader_drain(cnnelm_net *net)
{
    (void)cnnelm_net_take_loaded(net, -1, NULL, NULL, 0, 0, NULL);
}

void cnnelm_net_loader_close(cnnelm_net *net)
{
    cnnelm_net_loader *ld = net->loader;
    if (!ld)
        return;
    pthread_mutex_lock(&ld->lock);
    ld->quit = 1; /* a load in progress ends first: the thread checks quit between loads */
    pthread_cond_broadcast(&ld->cond);
    pthread_mutex_unlock(&ld->lock);
    pthread_join(ld->thread, NULL);
    pthread_cond_destroy(&ld->cond);
    pthread_mutex_destroy(&ld->lock);
    free(ld);
    net->loader = NULL;
}
