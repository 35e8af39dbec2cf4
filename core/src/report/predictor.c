/* cnnelm predictor: a trained model on one worker (the config's first, or the CPU), applied to
 * chunks of images: the scores of each class. What `cnnelm predict` and programs using the
 * library call. */
#include "cnnelm/predict.h"

#include <stdlib.h>
#include <string.h>

#include "model/network.h"
#include "training/workers.h"

struct cnnelm_predictor {
    cnnelm_worker_pool pool;
    cnnelm_arch arch;
    uint8_t *zero_labels;  /* chunk zeros: net_forward reads labels, predictions have none */
};

int cnnelm_predictor_open(cnnelm_predictor **out, const cnnelm_model *m, const cnnelm_config *cfg,
                          cnnelm_error *err)
{
    *out = NULL;
    /* a config is a few hundred KiB: on the heap, not the caller's stack */
    cnnelm_config *one = malloc(sizeof *one);
    cnnelm_predictor *p = calloc(1, sizeof *p);
    if (!one || !p) {
        free(one);
        free(p);
        return cnnelm_fail(err, "out of memory");
    }
    if (cfg)
        *one = *cfg;
    else
        cnnelm_config_defaults(one);
    one->n_workers = 1; /* predictions run on the first worker, like eval */
    one->text = NULL;
    p->arch = m->arch;
    int rc = cnnelm_worker_pool_open(&p->pool, one, &m->arch, err);
    free(one);
    if (rc) {
        free(p);
        return -1;
    }
    cnnelm_net *net = &p->pool.w[0].net;
    p->zero_labels = calloc((size_t)net->chunk, 1);
    if (!p->zero_labels) {
        cnnelm_predictor_close(p);
        return cnnelm_fail(err, "out of memory");
    }
    if (cnnelm_net_set_params(net, m->params, err) || cnnelm_net_set_beta(net, m->beta, err)) {
        cnnelm_predictor_close(p);
        return -1;
    }
    *out = p;
    return 0;
}

void cnnelm_predictor_close(cnnelm_predictor *p)
{
    if (!p)
        return;
    cnnelm_worker_pool_close(&p->pool);
    free(p->zero_labels);
    free(p);
}

/* what the predictor runs on, through the pool's description of its one worker */
const char *cnnelm_predictor_device(const cnnelm_predictor *p)
{
    cnnelm_worker_desc d;
    return cnnelm_worker_pool_describe(&p->pool, 0, &d) == 0 ? d.device : "";
}

int cnnelm_predictor_chunk(const cnnelm_predictor *p)
{
    cnnelm_worker_desc d;
    return cnnelm_worker_pool_describe(&p->pool, 0, &d) == 0 ? d.chunk : 0;
}

int cnnelm_predictor_run(cnnelm_predictor *p, const uint8_t *inputs, size_t n, float *scores,
                         cnnelm_error *err)
{
    cnnelm_net *net = &p->pool.w[0].net;
    const cnnelm_arch *a = &p->arch;
    size_t ex = (size_t)a->in_c * a->in_h * a->in_w;
    for (size_t i = 0; i < n;) {
        int c = n - i < (size_t)net->chunk ? (int)(n - i) : net->chunk;
        cnnelm_dataset ds;
        memset(&ds, 0, sizeof ds);
        ds.images = inputs + i * ex;
        ds.labels = p->zero_labels;
        ds.n = (size_t)c;
        ds.rows = a->in_h;
        ds.cols = a->in_w;
        ds.channels = a->in_c;
        ds.classes = a->classes;
        if (cnnelm_net_forward(net, &ds, NULL, 0, c, err) ||
            cnnelm_net_predict(net, scores + i * (size_t)a->classes, err))
            return -1;
        i += (size_t)c;
    }
    return 0;
}
