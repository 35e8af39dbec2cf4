/* cnnelm plot: turns a JSON report's per-iteration series into a PNG or SVG through gnuplot
 * (the paper's Fig. 7: accuracy and J against fine-tuning iterations, for any run).
 * A small JSON reader walks the report and collects every "iterations" array. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "atomic_file.h"
#include "cnnelm/run.h"

typedef struct point {
    double it, J, train, test;
} point;

typedef struct series {
    char name[64];
    int n;
    point *p;
} series;

typedef struct reader {
    const char *s, *end, *base;
    const char *file;
    cnnelm_error *err;
    series *out;
    int n_out, cap_out;
    int partition;          /* counts "partitions" elements to name series */
    int in_single;
} reader;

static void ws(reader *r)
{
    while (r->s < r->end && isspace((unsigned char)*r->s))
        r->s++;
}

static int bad(reader *r, const char *what)
{
    return cnnelm_fail(r->err, "%s: not a cnnelm report: %s at byte %ld", r->file, what,
                       (long)(r->s - r->base));
}

static int parse_value(reader *r, const char *key, point *pt);

static int parse_string(reader *r, char *buf, size_t cap)
{
    if (*r->s != '"')
        return bad(r, "expected a string");
    r->s++;
    size_t n = 0;
    while (r->s < r->end && *r->s != '"') {
        char ch = *r->s++;
        if (ch == '\\' && r->s < r->end) {
            ch = *r->s++;
            if (ch == 'u') { /* keep it simple: skip the code point */
                r->s += 4;
                ch = '?';
            } else if (ch == 'n') {
                ch = '\n';
            } else if (ch == 't') {
                ch = '\t';
            }
        }
        if (buf && n + 1 < cap)
            buf[n++] = ch;
    }
    if (r->s >= r->end)
        return bad(r, "unterminated string");
    r->s++;
    if (buf)
        buf[n] = '\0';
    return 0;
}

static int push_series(reader *r, const char *name)
{
    if (r->n_out == r->cap_out) {
        int cap = r->cap_out ? r->cap_out * 2 : 8;
        series *ns = realloc(r->out, (size_t)cap * sizeof *ns);
        if (!ns)
            return cnnelm_fail(r->err, "out of memory");
        r->out = ns;
        r->cap_out = cap;
    }
    series *s = &r->out[r->n_out++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    return 0;
}

/* An "iterations" array: objects with iteration, J, train_accuracy, test_accuracy. */
static int parse_series(reader *r)
{
    char name[64];
    if (r->in_single)
        snprintf(name, sizeof name, "single model");
    else if (r->partition > 0)
        snprintf(name, sizeof name, "partition %d", r->partition);
    else
        snprintf(name, sizeof name, "model");
    if (push_series(r, name))
        return -1;
    int idx = r->n_out - 1;
    r->s++; /* '[' */
    ws(r);
    while (r->s < r->end && *r->s != ']') {
        point pt = { NAN, NAN, NAN, NAN };
        if (parse_value(r, "iteration-object", &pt))
            return -1;
        series *s = &r->out[idx];
        point *np = realloc(s->p, (size_t)(s->n + 1) * sizeof *np);
        if (!np)
            return cnnelm_fail(r->err, "out of memory");
        s->p = np;
        s->p[s->n++] = pt;
        ws(r);
        if (*r->s == ',')
            r->s++;
        ws(r);
    }
    if (r->s >= r->end)
        return bad(r, "unterminated array");
    r->s++;
    return 0;
}

static int parse_value(reader *r, const char *key, point *pt)
{
    ws(r);
    if (r->s >= r->end)
        return bad(r, "unexpected end");
    char c = *r->s;
    if (c == '{') {
        r->s++;
        int is_point = key && strcmp(key, "iteration-object") == 0;
        int is_single = key && strcmp(key, "single") == 0;
        if (is_single)
            r->in_single++;
        ws(r);
        while (r->s < r->end && *r->s != '}') {
            char k[64];
            if (parse_string(r, k, sizeof k))
                return -1;
            ws(r);
            if (*r->s != ':')
                return bad(r, "expected ':'");
            r->s++;
            ws(r);
            if (is_point && (*r->s == '-' || isdigit((unsigned char)*r->s) || *r->s == 'n')) {
                double v = NAN;
                if (*r->s == 'n') {
                    if (strncmp(r->s, "null", 4) != 0)
                        return bad(r, "bad literal");
                    r->s += 4;
                } else {
                    char *e;
                    v = strtod(r->s, &e);
                    r->s = e;
                }
                if (!strcmp(k, "iteration"))
                    pt->it = v;
                else if (!strcmp(k, "J"))
                    pt->J = v;
                else if (!strcmp(k, "train_accuracy"))
                    pt->train = v;
                else if (!strcmp(k, "test_accuracy"))
                    pt->test = v;
            } else if (*r->s == '[' && !strcmp(k, "iterations")) {
                if (parse_series(r))
                    return -1;
            } else {
                if (parse_value(r, k, NULL))
                    return -1;
            }
            ws(r);
            if (*r->s == ',')
                r->s++;
            ws(r);
        }
        if (r->s >= r->end)
            return bad(r, "unterminated object");
        r->s++;
        if (is_single)
            r->in_single--;
        return 0;
    }
    if (c == '[') {
        int partitions = key && !strcmp(key, "partitions");
        if (partitions)
            r->partition = 0;
        r->s++;
        ws(r);
        while (r->s < r->end && *r->s != ']') {
            if (partitions)
                r->partition++;
            if (parse_value(r, NULL, NULL))
                return -1;
            ws(r);
            if (*r->s == ',')
                r->s++;
            ws(r);
        }
        if (partitions)
            r->partition = 0;
        if (r->s >= r->end)
            return bad(r, "unterminated array");
        r->s++;
        return 0;
    }
    if (c == '"')
        return parse_string(r, NULL, 0);
    if (!strncmp(r->s, "true", 4) || !strncmp(r->s, "null", 4)) {
        r->s += 4;
        return 0;
    }
    if (!strncmp(r->s, "false", 5)) {
        r->s += 5;
        return 0;
    }
    char *e;
    strtod(r->s, &e);
    if (e == r->s)
        return bad(r, "unexpected character");
    r->s = e;
    return 0;
}

static char *read_all(const char *path, size_t *len, cnnelm_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cnnelm_fail(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                cnnelm_fail(err, "%s: out of memory", path);
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* gnuplot can exit 0 with a short or empty file (a full disk): the figure must be complete, a
 * PNG ending in its IEND chunk or an SVG ending in </svg>, before it replaces an earlier one. */
static int check_figure(const char *tmp, int png, const char *out, cnnelm_error *err)
{
    FILE *f = fopen(tmp, "rb");
    if (!f)
        return cnnelm_fail(err, "%s: gnuplot wrote no figure: %s", out, strerror(errno));
    unsigned char head[8] = { 0 }, tail[64] = { 0 };
    size_t nh = fread(head, 1, sizeof head, f);
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    size_t nt = 0;
    if (size >= (long)sizeof tail && fseek(f, size - (long)sizeof tail, SEEK_SET) == 0)
        nt = fread(tail, 1, sizeof tail, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr)
        return cnnelm_fail(err, "%s: cannot read back the figure gnuplot wrote", out);
    int whole;
    if (png)
        whole = nh == 8 && memcmp(head, "\x89PNG\r\n\x1a\n", 8) == 0 && nt == sizeof tail &&
                memcmp(tail + sizeof tail - 8, "IEND", 4) == 0;
    else
        whole = nt == sizeof tail && memmem(tail, sizeof tail, "</svg>", 6) != NULL;
    if (!whole)
        return cnnelm_fail(err, "%s: gnuplot exited 0 but wrote an incomplete %s (%ld bytes; a full "
                           "disk?): the earlier file, if any, is kept", out, png ? "PNG" : "SVG",
                           size < 0 ? 0 : size);
    return 0;
}

int cnnelm_run_plot(const char *report, const char *out, cnnelm_error *err)
{
    const char *dot = strrchr(out, '.');
    const char *term = NULL;
    if (dot && !strcmp(dot, ".png"))
        term = "pngcairo size 900,560 noenhanced";
    else if (dot && !strcmp(dot, ".svg"))
        term = "svg size 900,560 noenhanced";
    if (!term)
        return cnnelm_fail(err, "%s: the output must end in .png or .svg", out);
    size_t len;
    char *text = read_all(report, &len, err);
    if (!text)
        return -1;
    reader r = { .s = text, .end = text + len, .base = text, .file = report, .err = err };
    int rc = parse_value(&r, NULL, NULL);
    if (rc == 0 && r.n_out == 0)
        rc = cnnelm_fail(err, "%s: the report has no per-iteration series (\"iterations\")", report);
    cnnelm_atomic_file af;
    if (rc == 0)
        rc = cnnelm_atomic_open(&af, out, err);
    if (rc == 0) {
        /* gnuplot writes into the temporary file; it is renamed only if gnuplot succeeds */
        FILE *gp = popen("gnuplot 2>&1", "w");
        if (!gp) {
            cnnelm_atomic_abort(&af);
            rc = cnnelm_fail(err, "cannot run gnuplot: %s (install Debian's gnuplot-nox)", strerror(errno));
        } else {
            fprintf(gp, "set terminal %s\nset output '%s'\n", term, af.tmp);
            fprintf(gp, "set title 'cnnelm: %s'\nset xlabel 'iteration'\nset ylabel 'accuracy (%%)'\n"
                        "set y2label 'J (mean per example)'\nset ytics nomirror\nset y2tics\n"
                        "set key outside right\nset grid\nset xtics 1\n", report);
            fprintf(gp, "plot ");
            int first = 1;
            for (int i = 0; i < r.n_out; i++) {
                const char *what[3] = { "test accuracy", "training accuracy", "J" };
                for (int w = 0; w < 3; w++) {
                    fprintf(gp, "%s'-' using 1:2 with linespoints %stitle '%s: %s'", first ? "" : ", ",
                            w == 2 ? "axes x1y2 dashtype 2 " : "", r.out[i].name, what[w]);
                    first = 0;
                }
            }
            fprintf(gp, "\n");
            for (int i = 0; i < r.n_out; i++)
                for (int w = 0; w < 3; w++) {
                    for (int k = 0; k < r.out[i].n; k++) {
                        const point *p = &r.out[i].p[k];
                        double v = w == 0 ? 100 * p->test : w == 1 ? 100 * p->train : p->J;
                        if (isnan(v))
                            fprintf(gp, "%g NaN\n", p->it);
                        else
                            fprintf(gp, "%g %.10g\n", p->it, v);
                    }
                    fprintf(gp, "e\n");
                }
            fflush(gp);
            int st = pclose(gp);
            if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                cnnelm_atomic_abort(&af);
                rc = cnnelm_fail(err, "gnuplot failed (exit status %d); is Debian's gnuplot-nox installed?",
                                 st == -1 ? -1 : WEXITSTATUS(st));
            } else if (check_figure(af.tmp, term[0] == 'p', out, err)) {
                cnnelm_atomic_abort(&af);
                rc = -1;
            } else {
                rc = cnnelm_atomic_commit(&af, err);
            }
        }
    }
    for (int i = 0; i < r.n_out; i++)
        free(r.out[i].p);
    free(r.out);
    free(text);
    return rc;
}
