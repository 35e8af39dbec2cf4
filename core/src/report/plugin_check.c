/* cnnelm plugin-check: every op of a plugin against the CPU reference on random inputs, then a
 * short end-to-end training; loading, the entry and the device queries too. Each case runs in a
 * forked child with a time limit so that a crash or a hang becomes a row of the report (see
 * plugin_check.h for what is checked and the tolerances). The plugin's code never runs in this
 * process: runtimes such as OpenCL's do not survive fork, so each child starts its own.
 * This file drives the check (the loading and transfer checks, every op case against the
 * reference, the end-to-end training, the summary); the parts are in plugin_check_*.c, named
 * in plugin_check_internal.h. */
#include "cnnelm/plugin_check.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/child.h"
#include "cnnelm/plugin.h"
#include "model/ops.h"
#include "report/plugin_check_internal.h"

#define DEFAULT_TIMEOUT_S 60

int cnnelm_plugin_check_run(const char *plugin_file, const cnnelm_plugin_check_options *opts, FILE *out,
                            cnnelm_plugin_check_summary *summary, cnnelm_error *err)
{
    if (summary)
        memset(summary, 0, sizeof *summary);
    double timeout = opts && opts->timeout_s > 0 ? opts->timeout_s : DEFAULT_TIMEOUT_S;
    int device = opts ? opts->device : 0, verbose = opts ? opts->verbose : 0;
    cnnelm_plugin *ref = NULL;
    if (cnnelm_plugin_load("cpu", NULL, &ref, err) != 0)
        return cnnelm_fail_prefix(err, "plugin-check needs the CPU reference");
    fprintf(out, "plugin-check: %s, device %d, against %s, %g s per case\n", plugin_file, device, ref->path,
            timeout);
    tally t;
    memset(&t, 0, sizeof t);
    load_reply lr;
    if (cnnelm_pcheck_loading(plugin_file, device, timeout, out, &t, &lr) < 0) {
        cnnelm_pcheck_finish(out, &t);
        cnnelm_plugin_unload(ref);
        return cnnelm_pcheck_summarize(&t, summary);
    }
    cnnelm_pcheck_transfers(plugin_file, device, &lr, timeout, out, &t);
    cnnelm_backend_ctx *rctx = NULL;
    char why[256] = "";
    if (cnnelm_plugin_context_open(ref, 0, 1, &rctx, why, sizeof why) != CNNELM_OK) {
        cnnelm_plugin_unload(ref);
        return cnnelm_fail(err, "cannot open the CPU reference: %s", why);
    }
    static check_case cases[MAX_CASES];
    int n = cnnelm_pcheck_build_cases(cases);
    fprintf(out, "  %-24s %-34s %12s %9s %11s  %s\n", "op", "shape", "max rel err", "tolerance", "speed/ref",
            "result");
    fflush(out);
    uint32_t timed_out = 0;
    int unsupported = 0, asked = 0; /* cases supports() declined, of those it was asked about */
    for (int ci = 0; ci < n; ci++) {
        const check_case *cc = &cases[ci];
        const char *name = cnnelm_op_name(cc->call.op);
        if (!(lr.ops >> cc->call.op & 1u)) {
            cnnelm_pcheck_row(out, name, cc->shape, "not implemented: runs on the CPU reference");
            continue;
        }
        if (timed_out >> cc->call.op & 1u) {
            cnnelm_pcheck_row(out, name, cc->shape, "SKIP: an earlier case of this op timed out");
            continue;
        }
        case_layout lay;
        cnnelm_pcheck_layout(&cc->call, &lay);
        case_result refres[2];
        memset(refres, 0, sizeof refres);
        double ref_s = 0;
        cnnelm_status rst = CNNELM_OK;
        for (int v = 0; v < cc->threads && rst == CNNELM_OK; v++) {
            rst = cnnelm_pcheck_result_alloc(&refres[v], cc, &lay) ? CNNELM_ERR_OUT_OF_MEMORY : CNNELM_OK;
            if (rst == CNNELM_OK)
                rst = cnnelm_pcheck_exec(ref->ops, rctx, cc, &lay, v, &refres[v], v == 0 ? &ref_s : NULL, NULL,
                                         0);
        }
        char result[600] = "";
        double worst = NAN, speed = NAN, secs = 0;
        int ok = 0;
        if (rst != CNNELM_OK) {
            snprintf(result, sizeof result, "SKIP: the reference failed: %.200s", ref->ops->last_error(rctx));
            ok = 2;
        } else {
            op_arg a = { plugin_file, device, cc, &lay, { &refres[0], &refres[1] } };
            op_reply r;
            double limit = cc->threads > 1 ? timeout * RACE_ROUNDS : timeout;
            int crashed =
                cnnelm_child_run(cnnelm_pcheck_child_op, &a, &r, sizeof r, limit, &secs, why, sizeof why) != 0;
            asked += !crashed;
            if (crashed) {
                snprintf(result, sizeof result, "CRASH: %s", why);
                if (strstr(why, "timed out"))
                    timed_out |= 1u << cc->call.op;
            } else if (r.supports == CNNELM_ERR_UNSUPPORTED) {
                snprintf(result, sizeof result, "supports() says unsupported: runs on the CPU reference in training");
                ok = 2;
                unsupported++;
            } else if (r.supports != CNNELM_OK) {
                snprintf(result, sizeof result, "FAIL: supports() returned %s (not OK or unsupported)",
                         cnnelm_status_name((cnnelm_status)r.supports));
            } else if (r.status == CNNELM_ERR_UNSUPPORTED) {
                snprintf(result, sizeof result, "unsupported for this shape: runs on the CPU reference");
                ok = 2;
            } else if (r.status != CNNELM_OK) {
                snprintf(result, sizeof result, "FAIL: %s: %.400s", cnnelm_status_name((cnnelm_status)r.status),
                         r.message);
            } else {
                worst = r.worst;
                speed = r.seconds > 0 ? ref_s / r.seconds : NAN;
                ok = r.pass;
                snprintf(result, sizeof result, ok ? "PASS" : "FAIL: %.560s", r.message);
            }
        }
        char errs[32] = "-", speeds[32] = "-";
        if (!isnan(worst))
            snprintf(errs, sizeof errs, "%.2e", worst);
        if (!isnan(speed))
            snprintf(speeds, sizeof speeds, "%.2fx", speed);
        if (ok != 2)
            cnnelm_pcheck_note(&t, name, cc->shape, ok, strchr(result, ' ') ? strchr(result, ' ') + 1 : result,
                               secs, cc->call.op);
        fprintf(out, "  %-24s %-34s %12s %9.0e %11s  %s\n", name, cc->shape, errs, cc->tol, speeds, result);
        if (verbose && !isnan(speed))
            fprintf(out, "  %-24s %-34s reference %.3f ms per call\n", "", "", 1e3 * ref_s);
        fflush(out);
        cnnelm_pcheck_result_free(&refres[0]);
        cnnelm_pcheck_result_free(&refres[1]);
    }
    if (HAS_V11(&lr, supports))
        fprintf(out, "  supports(): %d of the %d cases asked said unsupported (they run on the CPU reference in "
                "training)\n",
                unsupported, asked);
    if (timed_out)
        cnnelm_pcheck_row(out, "end-to-end training", "6c-2s-12c-2s, 300 images", "SKIP: an op timed out");
    else
        cnnelm_pcheck_end_to_end(plugin_file, device, ref, 10 * timeout, out, &t);
    ref->ops->context_close(rctx);
    cnnelm_plugin_unload(ref);
    cnnelm_pcheck_finish(out, &t);
    return cnnelm_pcheck_summarize(&t, summary);
}

int cnnelm_plugin_check(const char *plugin_file, int device, int verbose, FILE *out,
                        cnnelm_plugin_check_summary *summary, cnnelm_error *err)
{
    cnnelm_plugin_check_options o = { .device = device, .verbose = verbose, .timeout_s = DEFAULT_TIMEOUT_S };
    return cnnelm_plugin_check_run(plugin_file, &o, out, summary, err);
}
