/* cnnelm progress of a job over several processes (see progress.h): the whole job's totals
 * from this process's own and the other ranks' reports (cluster.c exchanges them). */
#include "base/progress.h"

void cnnelm_progress_own_totals(const cnnelm_progress *r, cnnelm_progress_totals *t)
{
    for (int k = 0; k < 2; k++) {
        t->planned[k] = r->run_planned[k];
        t->done[k] = r->run_done[k];
        t->seconds[k] = r->stage_seconds[k];
        t->images_timed[k] = r->stage_images[k];
    }
    t->images = (double)r->run_images;
    t->images_done = (double)r->run_images_done;
}

/* The whole job's totals: this process's, the other ranks' last reports, and for each rank not
 * heard from yet this one's plan again (ranks share the partitions about evenly). */
void cnnelm_progress_job_totals(const cnnelm_progress *r, cnnelm_progress_totals *t)
{
    cnnelm_progress_own_totals(r, t);
    if (r->ranks <= 1)
        return;
    const cnnelm_progress_totals *o = &r->others;
    int unknown = r->ranks - 1 - r->reported;
    double guess = unknown > 0 ? unknown : 0;
    for (int k = 0; k < 2; k++) {
        t->planned[k] += guess * t->planned[k] + o->planned[k];
        t->done[k] += o->done[k];
        t->seconds[k] += o->seconds[k];
        t->images_timed[k] += o->images_timed[k];
    }
    t->images += guess * t->images + o->images;
    t->images_done += o->images_done;
}

void cnnelm_progress_set_hook(cnnelm_progress *p, void (*hook)(void *user, cnnelm_progress *root),
                              void *user, int ranks)
{
    pthread_mutex_lock(&p->root->lock);
    cnnelm_progress *r = p->root;
    r->hook = hook;
    r->hook_user = user;
    r->ranks = hook && ranks > 1 ? ranks : r->ranks;
    pthread_mutex_unlock(&p->root->lock);
}

void cnnelm_progress_set_others(cnnelm_progress *root, const cnnelm_progress_totals *sum, int reported)
{
    root->others = *sum;
    root->reported = reported;
}

