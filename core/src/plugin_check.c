/* cnnelm plugin-check: every op of a plugin against the CPU reference on random inputs, then a
 * short end-to-end training, each case in a forked child so that a crash or a hang becomes a
 * row of the report (see plugin_check.h for the tolerances). */
#define _GNU_SOURCE
#include "cnnelm/plugin_check.h"

#include <math.h>
#include <stdarg.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cnnelm/config.h"
#include "cnnelm/metrics.h"
#include "cnnelm/plugin.h"
#include "network.h"
#include "ops.h"
#include "rng.h"
#include "train.h"

#define CASE_TIMEOUT_S 60
#define TIMED_CALLS 5

typedef struct check_case {
    cnnelm_op_call call;
    char shape[64];
    double tol;
} check_case;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The inputs of a case, the same on both sides: uniform in [-1, 1] (never zeros), except the
 * solve's U, which must be symmetric positive definite: H^T H of a random H. */
static float **make_inputs(const check_case *cc, const size_t *bytes, int nb, unsigned in)
{
    float **v = calloc((size_t)nb, sizeof *v);
    cnnelm_rng r;
    cnnelm_rng_seed(&r, 20261124, (uint64_t)cc->call.op + 1);
    for (int i = 0; v && i < nb; i++) {
        size_t n = bytes[i] / sizeof(float);
        v[i] = malloc(bytes[i] ? bytes[i] : sizeof(float));
        for (size_t j = 0; v[i] && j < n; j++)
            v[i][j] = (in >> i & 1u) ? (float)(2 * cnnelm_rng_uniform(&r) - 1) : 0.0f;
    }
    if (v && cc->call.op == CNNELM_OP_ELM_SOLVE) {
        int l = cc->call.l, rows = 2 * l;
        double *h = malloc((size_t)rows * l * sizeof *h);
        for (int j = 0; h && j < rows * l; j++)
            h[j] = 2 * cnnelm_rng_uniform(&r) - 1;
        for (int a = 0; h && a < l; a++)
            for (int b = 0; b < l; b++) {
                double s = 0;
                for (int t = 0; t < rows; t++)
                    s += h[t * l + a] * h[t * l + b];
                v[0][a * l + b] = (float)s;
            }
        free(h);
    }
    return v;
}

/* Runs the case on one backend: writes the inputs, calls the op once (results) and then
 * TIMED_CALLS more times (median seconds), reads the outputs into `outs`. */
static cnnelm_status run_case(const cnnelm_backend *be, cnnelm_backend_ctx *ctx, const check_case *cc,
                              float **inputs, float **outs, double *seconds)
{
    size_t bytes[6];
    unsigned in = 0, out = 0;
    int nb = cnnelm_op_layout(&cc->call, bytes, &in, &out);
    cnnelm_buffer *b[6] = { 0 };
    cnnelm_status st = CNNELM_OK;
    for (int i = 0; i < nb && st == CNNELM_OK; i++) {
        st = be->buffer_alloc(ctx, bytes[i] ? bytes[i] : sizeof(float), &b[i]);
        if (st == CNNELM_OK)
            st = be->buffer_write(ctx, b[i], 0, inputs[i], bytes[i]);
    }
    if (st == CNNELM_OK)
        st = cnnelm_op_dispatch(be, ctx, &cc->call, b);
    for (int i = 0; i < nb && st == CNNELM_OK; i++)
        if (out >> i & 1u)
            st = be->buffer_read(ctx, b[i], 0, outs[i], bytes[i]);
    double t[TIMED_CALLS];
    for (int k = 0; k < TIMED_CALLS && st == CNNELM_OK; k++) {
        float sink;
        double t0 = now_s();
        st = cnnelm_op_dispatch(be, ctx, &cc->call, b);
        for (int i = 0; i < nb && st == CNNELM_OK; i++) /* a read waits for queued work */
            if (out >> i & 1u) {
                st = be->buffer_read(ctx, b[i], 0, &sink, sizeof sink);
                break;
            }
        t[k] = now_s() - t0;
    }
    if (st == CNNELM_OK) {
        qsort(t, TIMED_CALLS, sizeof t[0], cmp_double);
        *seconds = t[TIMED_CALLS / 2];
    }
    for (int i = 0; i < nb; i++)
        be->buffer_free(ctx, b[i]);
    return st;
}

/* What a child sends back: status, seconds, message, then the output buffers. */
typedef struct child_head {
    int status;
    double seconds;
    char message[256];
} child_head;

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n)
{
    char *c = p;
    while (n) {
        ssize_t r = read(fd, c, n);
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

/* In the child: load the plugin afresh, open the device, run the case, report, exit. */
static void child_main(int fd, const char *file, int device, const check_case *cc, float **inputs,
                       const size_t *bytes, int nb, unsigned out)
{
    alarm(CASE_TIMEOUT_S);
    signal(SIGPIPE, SIG_IGN); /* a parent that stopped reading is not a crash of the plugin */
    child_head h = { .status = CNNELM_ERR_INTERNAL };
    cnnelm_plugin *p = NULL;
    cnnelm_error e = { "" };
    float *outs[6] = { 0 };
    for (int i = 0; i < nb; i++)
        outs[i] = calloc(1, bytes[i] ? bytes[i] : sizeof(float));
    if (cnnelm_plugin_load_file(file, &p, &e) != 0) {
        snprintf(h.message, sizeof h.message, "%.250s", e.msg);
    } else {
        cnnelm_backend_ctx *ctx = NULL;
        cnnelm_context_params params = { .struct_size = sizeof params, .threads = 0 };
        char why[256] = "";
        cnnelm_status st = p->ops->context_open(device, &params, &ctx, why, sizeof why);
        if (st != CNNELM_OK) {
            h.status = st;
            snprintf(h.message, sizeof h.message, "context_open: %.230s", why);
        } else {
            h.status = run_case(p->ops, ctx, cc, inputs, outs, &h.seconds);
            if (h.status != CNNELM_OK)
                snprintf(h.message, sizeof h.message, "%.250s", p->ops->last_error(ctx));
            p->ops->context_close(ctx);
        }
    }
    int bad = write_all(fd, &h, sizeof h);
    for (int i = 0; i < nb && !bad && h.status == CNNELM_OK; i++) /* the parent reads no more otherwise */
        if (out >> i & 1u)
            bad = write_all(fd, outs[i], bytes[i]);
    _exit(bad ? 3 : 0);
}

static void add(check_case *cases, int *n, cnnelm_op_call call, double tol, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void add(check_case *cases, int *n, cnnelm_op_call call, double tol, const char *fmt, ...)
{
    check_case *c = &cases[(*n)++];
    c->call = call;
    c->tol = tol;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->shape, sizeof c->shape, fmt, ap);
    va_end(ap);
}

static int build_cases(check_case *cases)
{
    int n = 0;
    static const cnnelm_conv_shape convs[3] = { { 16, 1, 28, 28, 6, 5 }, { 16, 6, 12, 12, 12, 5 },
                                                { 3, 2, 9, 7, 3, 3 } };
    static const cnnelm_activation acts[3] = { CNNELM_ACT_RELU, CNNELM_ACT_OPTTANH, CNNELM_ACT_IDENTITY };
    for (int i = 0; i < 3; i++) {
        const cnnelm_conv_shape *s = &convs[i];
        char d[48];
        snprintf(d, sizeof d, "n%d %d->%d %dx%d k%d", s->n, s->c_in, s->c_out, s->h, s->w, s->k);
        static const char *const an[3] = { "relu", "opttanh", "identity" };
        add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_CONV_FORWARD, .conv = *s, .act = acts[i] }, 1e-3,
            "%s %s", d, an[i]);
        add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_CONV_BACKWARD_DATA, .conv = *s }, 1e-3, "%s", d);
        add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_CONV_BACKWARD_FILTER, .conv = *s, .accumulate = i == 1 },
            1e-3, "%s%s", d, i == 1 ? " accumulate" : "");
    }
    static const cnnelm_pool_shape pools[3] = { { 16, 6, 24, 24, 2 }, { 16, 6, 24, 24, 2 }, { 3, 2, 9, 9, 3 } };
    for (int i = 0; i < 3; i++) {
        const cnnelm_pool_shape *s = &pools[i];
        cnnelm_pooling mode = i == 0 ? CNNELM_POOL_MEAN : CNNELM_POOL_MAX;
        const char *m = mode == CNNELM_POOL_MEAN ? "mean" : "max";
        add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_POOL_FORWARD, .pool = *s, .mode = mode }, 1e-4,
            "n%d c%d %dx%d s%d %s", s->n, s->c, s->h, s->w, s->s, m);
        add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_POOL_BACKWARD, .pool = *s, .mode = mode }, 1e-4,
            "n%d c%d %dx%d s%d %s", s->n, s->c, s->h, s->w, s->s, m);
    }
    static const char *const act_names[3] = { "relu", "opttanh", "identity" };
    for (int i = 0; i < 3; i++) {
        add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_ACT_FORWARD, .act = acts[i], .count = 1000 }, 1e-4,
            "1000 %s", act_names[i]);
        add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_ACT_BACKWARD, .act = acts[i], .count = 1000 }, 1e-4,
            "1000 %s", act_names[i]);
    }
    add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_ELM_ACCUMULATE, .n = 64, .l = 192, .c = 10 }, 1e-3, "n64 l192 c10");
    add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_ELM_PREDICT, .n = 64, .l = 192, .c = 10 }, 1e-3, "n64 l192 c10");
    add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_ELM_BACKPROP, .n = 64, .l = 192, .c = 10 }, 1e-3, "n64 l192 c10");
    add(cases, &n, (cnnelm_op_call){ .op = CNNELM_OP_ELM_SOLVE, .l = 192, .c = 10, .lambda = 100 }, 1e-3,
        "l192 c10 lambda 100");
    return n;
}

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
    rc = cnnelm_train_model(&net, &m, &all, &none, &cfg, &prog, &log, err);
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

/* Runs the end-to-end check in a child (crash-safe) and compares with the reference. */
static int check_end_to_end(const char *file, int device, const cnnelm_plugin *ref, FILE *out)
{
    static int want[E2E_N], got[E2E_N];
    cnnelm_error e = { "" };
    const char *name = "end-to-end training";
    const char *shape = "6c-2s-12c-2s, 300 images";
    if (train_small(ref, 0, NULL, want, &e) != 0) {
        fprintf(out, "  %-24s %-30s SKIP: the reference failed: %s\n", name, shape, e.msg);
        return 1;
    }
    int fds[2];
    if (pipe(fds) != 0)
        return 0;
    fflush(out);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        alarm(10 * CASE_TIMEOUT_S);
        signal(SIGPIPE, SIG_IGN);
        cnnelm_plugin *p = NULL;
        child_head h = { .status = 0 };
        if (cnnelm_plugin_load_file(file, &p, &e) != 0 || train_small(p, device, ref, got, &e) != 0) {
            h.status = 1;
            snprintf(h.message, sizeof h.message, "%.250s", e.msg);
        }
        int bad = write_all(fds[1], &h, sizeof h) || (h.status == 0 && write_all(fds[1], got, sizeof got));
        _exit(bad ? 3 : 0);
    }
    close(fds[1]);
    child_head h;
    int ok_read = pid > 0 && read_all(fds[0], &h, sizeof h) == 0 &&
                  (h.status != 0 || read_all(fds[0], got, sizeof got) == 0);
    close(fds[0]);
    int status = 0;
    if (pid > 0)
        waitpid(pid, &status, 0);
    if (pid < 0 || !ok_read || WIFSIGNALED(status)) {
        fprintf(out, "  %-24s %-30s %12s %9s %11s  CRASH: crashed (%s)\n", name, shape, "-", "-", "-",
                WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "exited before reporting");
        return 0;
    }
    if (h.status != 0) {
        fprintf(out, "  %-24s %-30s %12s %9s %11s  FAIL: %s\n", name, shape, "-", "-", "-", h.message);
        return 0;
    }
    int same = 0;
    for (int i = 0; i < E2E_N; i++)
        same += want[i] == got[i];
    int ok = same * 100 >= E2E_N * 97;
    char agree[32];
    snprintf(agree, sizeof agree, "%d/%d same", same, E2E_N);
    fprintf(out, "  %-24s %-30s %12s %9s %11s  %s\n", name, shape, agree, ">= 97%", "-",
            ok ? "PASS" : "FAIL: predictions differ from the reference's");
    return ok;
}

/* Is the op's slot filled in the plugin's table? */
static int has_op(const cnnelm_backend *be, cnnelm_op_id op)
{
    switch (op) {
    case CNNELM_OP_CONV_FORWARD: return be->conv2d_forward != NULL;
    case CNNELM_OP_CONV_BACKWARD_DATA: return be->conv2d_backward_data != NULL;
    case CNNELM_OP_CONV_BACKWARD_FILTER: return be->conv2d_backward_filter != NULL;
    case CNNELM_OP_POOL_FORWARD: return be->pool_forward != NULL;
    case CNNELM_OP_POOL_BACKWARD: return be->pool_backward != NULL;
    case CNNELM_OP_ACT_FORWARD: return be->activation_forward != NULL;
    case CNNELM_OP_ACT_BACKWARD: return be->activation_backward != NULL;
    case CNNELM_OP_ELM_ACCUMULATE: return be->elm_accumulate != NULL;
    case CNNELM_OP_ELM_PREDICT: return be->elm_predict != NULL;
    case CNNELM_OP_ELM_BACKPROP: return be->elm_backprop != NULL;
    case CNNELM_OP_ELM_SOLVE: return be->elm_solve != NULL;
    case CNNELM_OP_COUNT: break;
    }
    return 0;
}

int cnnelm_plugin_check(const char *plugin_file, int device, int verbose, FILE *out, cnnelm_error *err)
{
    cnnelm_plugin *ref = NULL, *p = NULL;
    cnnelm_error e = { "" };
    if (cnnelm_plugin_load("cpu", NULL, &ref, err) != 0)
        return cnnelm_fail_prefix(err, "plugin-check needs the CPU reference");
    fprintf(out, "plugin-check: %s, device %d, against %s\n", plugin_file, device, ref->path);
    int passed = 0, failed = 0;
    /* Loading only reads the table: nothing of the plugin runs in this process, so its runtime
     * (threads that would not survive fork) starts in the children. */
    if (cnnelm_plugin_load_file(plugin_file, &p, &e) != 0) {
        fprintf(out, "  %-24s %-30s FAIL: %s\n", "load", "", e.msg);
        fprintf(out, "plugin-check: 0 passed, 1 failed\n");
        cnnelm_plugin_unload(ref);
        return 1;
    }
    fprintf(out, "  plugin '%s' (ABI %u.%u): %s\n", p->name, p->ops->abi_major, p->ops->abi_minor,
            p->ops->description ? p->ops->description : "");
    cnnelm_backend_ctx *rctx = NULL;
    cnnelm_context_params params = { .struct_size = sizeof params, .threads = 1 };
    char why[256] = "";
    if (ref->ops->context_open(0, &params, &rctx, why, sizeof why) != CNNELM_OK) {
        cnnelm_plugin_unload(p);
        cnnelm_plugin_unload(ref);
        return cnnelm_fail(err, "cannot open the CPU reference: %s", why);
    }
    check_case cases[64];
    int n = build_cases(cases);
    fprintf(out, "  %-24s %-30s %12s %9s %11s  %s\n", "op", "shape", "max rel err", "tolerance",
            "speed/ref", "result");
    fflush(out);
    for (int ci = 0; ci < n; ci++) {
        const check_case *cc = &cases[ci];
        const char *name = cnnelm_op_name(cc->call.op);
        if (!has_op(p->ops, cc->call.op)) {
            fprintf(out, "  %-24s %-30s %12s %9s %11s  not implemented: runs on the CPU reference\n", name,
                    cc->shape, "-", "-", "-");
            continue;
        }
        size_t bytes[6];
        unsigned in = 0, outm = 0;
        int nb = cnnelm_op_layout(&cc->call, bytes, &in, &outm);
        float **inputs = make_inputs(cc, bytes, nb, in);
        float *ref_out[6] = { 0 }, *got[6] = { 0 };
        for (int i = 0; i < nb; i++) {
            ref_out[i] = calloc(1, bytes[i] ? bytes[i] : sizeof(float));
            got[i] = calloc(1, bytes[i] ? bytes[i] : sizeof(float));
        }
        double ref_s = 0;
        cnnelm_status rst = run_case(ref->ops, rctx, cc, inputs, ref_out, &ref_s);
        int fds[2];
        char result[320] = "";
        double worst = NAN, speed = NAN;
        int ok = 0;
        if (rst != CNNELM_OK) {
            snprintf(result, sizeof result, "SKIP: the reference failed: %.200s", ref->ops->last_error(rctx));
        } else if (pipe(fds) != 0) {
            snprintf(result, sizeof result, "FAIL: cannot create a pipe");
        } else {
            fflush(out);
            pid_t pid = fork();
            if (pid == 0) {
                close(fds[0]);
                child_main(fds[1], plugin_file, device, cc, inputs, bytes, nb, outm);
            }
            close(fds[1]);
            child_head h;
            int got_all = pid > 0 && read_all(fds[0], &h, sizeof h) == 0;
            for (int i = 0; i < nb && got_all && h.status == CNNELM_OK; i++)
                if (outm >> i & 1u)
                    got_all = read_all(fds[0], got[i], bytes[i]) == 0;
            close(fds[0]);
            int status = 0;
            if (pid > 0)
                waitpid(pid, &status, 0);
            if (pid < 0) {
                snprintf(result, sizeof result, "FAIL: cannot fork");
            } else if (WIFSIGNALED(status)) {
                int sig = WTERMSIG(status);
                snprintf(result, sizeof result, sig == SIGALRM ? "CRASH: timed out after %d s"
                                                               : "CRASH: crashed (signal %d, %s)",
                         sig == SIGALRM ? CASE_TIMEOUT_S : sig, strsignal(sig));
            } else if (!got_all) {
                /* e.g. AddressSanitizer catching the fault and exiting */
                snprintf(result, sizeof result, "CRASH: crashed (its process exited with status %d "
                         "before reporting)", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
            } else if (h.status == CNNELM_ERR_UNSUPPORTED) {
                snprintf(result, sizeof result, "unsupported for this shape: runs on the CPU reference");
                ok = 2;
            } else if (h.status != CNNELM_OK) {
                snprintf(result, sizeof result, "FAIL: %s: %.200s", cnnelm_status_name((cnnelm_status)h.status),
                         h.message);
            } else {
                worst = 0;
                for (int i = 0; i < nb; i++) {
                    if (!(outm >> i & 1u))
                        continue;
                    size_t m = bytes[i] / sizeof(float);
                    double scale = 0;
                    if (cc->call.op == CNNELM_OP_ELM_SOLVE) /* beta: relative to its largest value */
                        for (size_t j = 0; j < m; j++)
                            scale = fmax(scale, fabs(ref_out[i][j]));
                    for (size_t j = 0; j < m; j++) {
                        double d = fabs((double)got[i][j] - ref_out[i][j]) /
                                   (cc->call.op == CNNELM_OP_ELM_SOLVE ? scale : 1 + fabs(ref_out[i][j]));
                        if (!(d <= worst))
                            worst = isnan(d) ? INFINITY : d;
                    }
                }
                speed = h.seconds > 0 ? ref_s / h.seconds : NAN;
                ok = worst <= cc->tol;
                snprintf(result, sizeof result, ok ? "PASS" : "FAIL: outside the tolerance");
            }
        }
        char errs[32] = "-", speeds[32] = "-";
        if (!isnan(worst))
            snprintf(errs, sizeof errs, "%.2e", worst);
        if (!isnan(speed))
            snprintf(speeds, sizeof speeds, "%.2fx", speed);
        if (ok)
            passed++;
        else
            failed++;
        fprintf(out, "  %-24s %-30s %12s %9.0e %11s  %s\n", name, cc->shape, errs, cc->tol, speeds, result);
        if (verbose && !isnan(speed))
            fprintf(out, "  %-24s %-30s reference %.3f ms per call\n", "", "", 1e3 * ref_s);
        fflush(out);
        for (int i = 0; i < nb; i++) {
            free(inputs[i]);
            free(ref_out[i]);
            free(got[i]);
        }
        free(inputs);
    }
    if (check_end_to_end(plugin_file, device, ref, out))
        passed++;
    else
        failed++;
    ref->ops->context_close(rctx);
    cnnelm_plugin_unload(p);
    cnnelm_plugin_unload(ref);
    fprintf(out, "plugin-check: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
