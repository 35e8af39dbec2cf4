/* plugin-check's parts, shared between its files (report/plugin_check*.c): the constants, an op
 * case and its buffers, the loading child's reply, the tally of the report, and the functions
 * one file calls in another. plugin_check.c drives the check: plugin_check_cases.c is the case
 * catalogue, plugin_check_op.c runs one case in a child against the reference,
 * plugin_check_load.c and plugin_check_xfer.c check the loading, the device queries and the
 * 1.1 transfer slots, plugin_check_e2e.c the end-to-end training, plugin_check_report.c the
 * report's rows and summary. */
#ifndef CNNELM_PLUGIN_CHECK_INTERNAL_H
#define CNNELM_PLUGIN_CHECK_INTERNAL_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cnnelm/plugin.h"
#include "cnnelm/plugin_check.h"
#include "model/ops.h"

#define MAX_CALLS 3          /* accumulating ops: calls on one context, compared after each */
#define RACE_ROUNDS 4        /* two-thread cases: rounds, every one compared */
#define GUARD_FLOATS 16      /* tail past every tensor that an op must leave alone */
#define GUARD_BITS 0x7f8dead1u   /* a signalling NaN no op computes */
#define SENTINEL_BITS 0x7fc0feedu /* a quiet NaN with a payload: "never written" */
#define MAX_CASES 160

typedef struct check_case {
    cnnelm_op_call call;
    char shape[80];
    double tol;
    int calls;    /* times called on one context, outputs compared after each */
    int threads;  /* 2: the same op on two contexts in two threads at once */
} check_case;

/* An op's buffer arguments: sizes, which it reads and writes, names for messages, all from
 * the op table (backend_ops.h through cnnelm_op_describe and cnnelm_op_layout). */
typedef struct case_layout {
    int nb;
    size_t bytes[6];
    unsigned in, out;
    unsigned f64;       /* buffers of doubles (elm_accumulate_f64's U and V): filled and
                           compared as doubles; their guard tails are floats like any other */
    const char *names[6];
} case_layout;

static inline size_t floats_of(const case_layout *lay, int i) { return lay->bytes[i] / sizeof(float); }
static inline size_t alloc_floats(const case_layout *lay, int i) { return floats_of(lay, i) + GUARD_FLOATS; }

static inline float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* The outputs of a case's calls: out[k][i] holds buffer i (with its tail) after call k. */
typedef struct case_result {
    float *out[MAX_CALLS][6];
} case_result;

/* The 1.1 plugin-level slots the checker exercises where a plugin has them. */
#define V11_SLOTS(X)                                                                         \
    X(init) X(shutdown) X(device_count_v11) X(device_info_v11) X(device_limits)              \
    X(context_open_v11) X(supports) X(buffer_write_async) X(buffer_read_async) X(synchronize) \
    X(buffer_copy) X(buffer_fill)
enum {
#define V11_ENUM_(f) V11_##f,
    V11_SLOTS(V11_ENUM_)
#undef V11_ENUM_
};
#define HAS_V11(lr, f) ((lr)->v11 >> V11_##f & 1u)

/* Loading: dlopen, the entry, the table's checks, init() and shutdown(); what the parent needs
 * to know of the table. In memory shared with the parent, so that a crash still says which
 * stage it was in ("entry", "init", "shutdown", "done"). */
typedef struct load_reply {
    const char *file;
    char stage[16];
    int ok;
    char message[512];
    char name[64], description[256];
    unsigned abi_major, abi_minor;
    uint32_t ops;  /* bit per cnnelm_op_id: slot filled */
    uint32_t v11;  /* bit per V11_*: slot filled */
} load_reply;

/* One op case: the reference's results are in this process's memory (computed before the
 * fork), so the child judges its own run and sends back only the verdict. */
typedef struct op_arg {
    const char *file;
    int device;
    const check_case *cc;
    const case_layout *lay;
    const case_result *ref[2];  /* variant 0 and, for two threads, variant 1 */
} op_arg;

typedef struct op_reply {
    int supports;  /* supports()'s answer when not CNNELM_OK: the op was not run */
    int status;    /* of the plugin's calls */
    int pass;
    double worst, seconds;
    char message[480];
} op_reply;

typedef struct tally {
    int passed, failed;
    char failures[1024];       /* "op (why); ..." for the last line, one entry per op */
    uint32_t failed_ops;
    double slowest_s;
    char slowest[160];
} tally;

/* plugin_check_cases.c: the catalogue, each case's buffers and what they hold before a call */
int cnnelm_pcheck_build_cases(check_case *cases);
void cnnelm_pcheck_layout(const cnnelm_op_call *call, case_layout *lay);
void cnnelm_pcheck_fill(const check_case *cc, const case_layout *lay, int variant, int k, int i, float *h);

/* plugin_check_op.c: one case's calls on a context, and the child that runs it on the plugin */
int cnnelm_pcheck_result_alloc(case_result *r, const check_case *cc, const case_layout *lay);
void cnnelm_pcheck_result_free(case_result *r);
cnnelm_status cnnelm_pcheck_exec(const cnnelm_backend *be, cnnelm_backend_ctx *ctx, const check_case *cc,
                        const case_layout *lay, int variant, case_result *res, double *seconds, char *changed,
                        size_t changed_size);
void cnnelm_pcheck_child_op(void *arg, void *reply, size_t size);

/* plugin_check_load.c, plugin_check_xfer.c, plugin_check_e2e.c: the checks that are not op cases */
int cnnelm_pcheck_loading(const char *file, int device, double timeout, FILE *out, tally *t, load_reply *lr);
void cnnelm_pcheck_transfers(const char *file, int device, const load_reply *lr, double timeout, FILE *out, tally *t);
void cnnelm_pcheck_end_to_end(const char *file, int device, const cnnelm_plugin *ref, double timeout, FILE *out,
                      tally *t);

/* plugin_check_report.c: the report's rows and its last lines */
void cnnelm_pcheck_note(tally *t, const char *what, const char *shape, int ok, const char *why, double seconds, int op);
void cnnelm_pcheck_row(FILE *out, const char *what, const char *shape, const char *result);
void cnnelm_pcheck_finish(FILE *out, const tally *t);
void cnnelm_pcheck_verdict(FILE *out, tally *t, const char *what, const char *shape, double secs, const char *res);
int cnnelm_pcheck_summarize(const tally *t, cnnelm_plugin_check_summary *summary);

#endif
