/* plugin-check's end-to-end check: a short training of 6c-2s-12c-2s on 300 random images on
 * the plugin in a child (ops it lacks on the CPU reference), whose predictions must agree with
 * the reference's for >= 97% of the images. */
#include <stdint.h>
#include <string.h>

#include "base/child.h"
#include "base/rng.h"
#include "cnnelm/config.h"
#include "cnnelm/metrics.h"
#include "model/network.h"
#include "training/train.h"
#include "report/plugin_check_internal.h"

/* The end-to-end check: a short training (ELM fit and one fine-tuning iteration of
 * 6c-2s-12c-2s on 300 random 28x28 images) on a backend, ops it lacks running on `reference`;
 * writes the predictions for the 300 images to `pred`. Returns 0 or -1 with err. */
enum { E2E_N = 300 };
static int train_small(const cnnelm_plugin *p, int device, const cnnelm_plugin *reference, int *pred,
                       cnnelm_error *err)
{
    static uint8_t images[E2E_N * 28 * 28], labels[E2E_N];
    cnnelm_rng r;
    cnnelm_rng_seed(&r, 7, 99);
    for (size_t i = 0; i < sizeof images; i++)
        images[i] = (uint8_t)cnnelm_rng_below(&r, 256);
    for (int i = 0; i < E2E_N; i++)
        labels[i] = (uint8_t)(i % 10);
    cnnelm_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.images = images;
    ds.labels = labels;
    ds.n = E2E_N;
    ds.rows = ds.cols = 28;
    ds.classes = 10;
    const char *sets[] = { "train.iterations=1", "train.batch=100", "train.chunk=100",
                           "train.learning_rate=0.05" };
    cnnelm_config cfg;
    cnnelm_arch a;
    cnnelm_model m;
    cnnelm_net net;
    memset(&m, 0, sizeof m);
    if (cnnelm_config_load(&cfg, NULL, sets, 4, err))
        return -1;
    int rc = -1;
    if (cnnelm_arch_init(&a, "6c-2s-12c-2s", 5, 1, 28, 28, 10, CNNELM_ACT_RELU, CNNELM_POOL_MEAN,
                         CNNELM_ACT_IDENTITY, err) ||
        cnnelm_model_init(&m, &a, 100, 1, 1, err) ||
        cnnelm_net_open(&net, p, device, 0, &a, 100, reference, err))
        goto out;
    cnnelm_progress prog;
    cnnelm_progress_init(&prog, 1);
    cnnelm_subset all = { &ds, NULL, E2E_N }, none = { &ds, NULL, 0 };
    cnnelm_train_log log;
    float Y[100 * 10];
    cnnelm_train_params tp = cnnelm_train_params_from_config(&cfg);
    rc = cnnelm_train_model(&net, &m, &all, &none, &tp, &prog, &log, err);
    cnnelm_train_log_free(&log);
    for (int i = 0; i < E2E_N && rc == 0; i += 100) {
        rc = cnnelm_net_forward(&net, &ds, NULL, (size_t)i, 100, err) || cnnelm_net_predict(&net, Y, err);
        for (int j = 0; j < 100 && rc == 0; j++)
            pred[i + j] = cnnelm_argmax(Y + j * 10, 10);
    }
    cnnelm_progress_destroy(&prog);
    cnnelm_net_close(&net);
out:
    cnnelm_model_free(&m);
    cnnelm_config_free(&cfg);
    return rc ? -1 : 0;
}

typedef struct e2e_arg {
    const char *file;
    int device;
    const cnnelm_plugin *ref;
} e2e_arg;

typedef struct e2e_reply {
    int status;
    char message[256];
    int pred[E2E_N];
} e2e_reply;

static void child_e2e(void *arg, void *reply, size_t size)
{
    (void)size;
    const e2e_arg *a = arg;
    e2e_reply *r = reply;
    cnnelm_plugin *p = NULL;
    cnnelm_error e = { "" };
    if (cnnelm_plugin_load_file(a->file, &p, &e) != 0 || train_small(p, a->device, a->ref, r->pred, &e) != 0) {
        r->status = 1;
        snprintf(r->message, sizeof r->message, "%.250s", e.msg);
    }
}

/* The end-to-end training in a child, compared with the reference's predictions. */
void cnnelm_pcheck_end_to_end(const char *file, int device, const cnnelm_plugin *ref, double timeout,
                              FILE *out, tally *t)
{
    static int want[E2E_N];
    static e2e_reply r;
    cnnelm_error e = { "" };
    const char *name = "end-to-end training";
    const char *shape = "6c-2s-12c-2s, 300 images";
    if (train_small(ref, 0, NULL, want, &e) != 0) {
        char res[400];
        snprintf(res, sizeof res, "SKIP: the reference failed: %.300s", e.msg);
        cnnelm_pcheck_row(out, name, shape, res);
        return;
    }
    e2e_arg a = { file, device, ref };
    char why[256];
    double secs = 0;
    if (cnnelm_child_run(child_e2e, &a, &r, sizeof r, timeout, &secs, why, sizeof why) != 0) {
        char res[300];
        snprintf(res, sizeof res, "CRASH: %s", why);
        cnnelm_pcheck_verdict(out, t, name, shape, secs, res);
        return;
    }
    r.message[sizeof r.message - 1] = '\0'; /* what came back is the child's memory */
    if (r.status != 0) {
        char res[300];
        snprintf(res, sizeof res, "FAIL: %s", r.message);
        cnnelm_pcheck_verdict(out, t, name, shape, secs, res);
        return;
    }
    int same = 0;
    for (int i = 0; i < E2E_N; i++)
        same += want[i] == r.pred[i];
    int ok = same * 100 >= E2E_N * 97;
    char agree[32];
    snprintf(agree, sizeof agree, "%d/%d same", same, E2E_N);
    fprintf(out, "  %-24s %-34s %12s %9s %11s  %s\n", name, shape, agree, ">= 97%", "-",
            ok ? "PASS" : "FAIL: predictions differ from the reference's");
    cnnelm_pcheck_note(t, name, shape, ok, "predictions differ from the reference's", secs, -1);
}
