/* plugin-check's report: the rows, the tally of passes and failures (each failing op or slot
 * listed once, the slowest case), the last lines and the counts for the caller. */
#include <string.h>

#include "report/plugin_check_internal.h"

void cnnelm_pcheck_note(tally *t, const char *what, const char *shape, int ok, const char *why,
                        double seconds, int op)
{
    if (ok)
        t->passed++;
    else
        t->failed++;
    int listed = 0; /* a slot that is not an op: listed once too */
    size_t wl = strlen(what);
    for (const char *f = t->failures; op < 0 && (f = strstr(f, what)) != NULL; f += wl)
        listed |= (f == t->failures || (f >= t->failures + 2 && f[-2] == ';')) && f[wl] == ' ';
    if (!ok && !listed && (op < 0 || !(t->failed_ops >> op & 1u))) {
        if (op >= 0)
            t->failed_ops |= 1u << op;
        size_t len = strlen(t->failures);
        snprintf(t->failures + len, sizeof t->failures - len, "%s%s%s%.60s (%.120s)", len ? "; " : "", what,
                 shape[0] ? " " : "", shape, why);
    }
    if (seconds > t->slowest_s) {
        t->slowest_s = seconds;
        snprintf(t->slowest, sizeof t->slowest, "%s%s%.100s", what, shape[0] ? " " : "", shape);
    }
}

void cnnelm_pcheck_row(FILE *out, const char *what, const char *shape, const char *result)
{
    fprintf(out, "  %-24s %-34s %12s %9s %11s  %s\n", what, shape, "-", "-", "-", result);
    fflush(out);
}

void cnnelm_pcheck_finish(FILE *out, const tally *t)
{
    if (t->slowest[0])
        fprintf(out, "  slowest case: %s, %.2f s\n", t->slowest, t->slowest_s);
    fprintf(out, "plugin-check: %d passed, %d failed%s%s\n", t->passed, t->failed, t->failed ? ": " : "",
            t->failed ? t->failures : "");
}

/* A row of the report that counts: `res` is "PASS...", "FAIL: why" or "CRASH: why". */
void cnnelm_pcheck_verdict(FILE *out, tally *t, const char *what, const char *shape, double secs, const char *res)
{
    int ok = strncmp(res, "PASS", 4) == 0;
    const char *why = strchr(res, ' ') ? strchr(res, ' ') + 1 : res;
    cnnelm_pcheck_row(out, what, shape, res);
    cnnelm_pcheck_note(t, what, shape, ok, why, secs, -1);
}

/* The counts of a finished check, for the caller. */
int cnnelm_pcheck_summarize(const tally *t, cnnelm_plugin_check_summary *summary)
{
    if (summary) {
        summary->passed = t->passed;
        summary->failed = t->failed;
    }
    return 0;
}
