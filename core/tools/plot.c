/* cnnelm plot: draws a JSON train report as a PNG or SVG through gnuplot. A fine-tuning run:
 * accuracy and J against iterations per partition (trials as mean +- std bands), the single
 * model's series and the reduced model as a marked point (the paper's Fig. 7 for any run). A run
 * without fine-tuning: bars of each partition vs the reduced vs the single model. */
#define _GNU_SOURCE /* open_memstream */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "base/atomic_file.h"
#include "plot.h"

/* ---- a small JSON reader: the whole report as a tree ---- */

typedef enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jv {
    jtype t;
    double num;
    char *str;
    int n;
    char **keys;        /* objects: n keys */
    struct jv *items;   /* arrays and objects: n values */
} jv;

typedef struct reader {
    const char *s, *end, *base;
    const char *file;
    cnnelm_error *err;
    int depth;
} reader;

static void jv_free(jv *v)
{
    for (int i = 0; i < v->n; i++) {
        jv_free(&v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
}

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

static int parse_string(reader *r, char **out)
{
    if (r->s >= r->end || *r->s != '"')
        return bad(r, "expected a string");
    r->s++;
    size_t cap = 32, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return cnnelm_fail(r->err, "out of memory");
    while (r->s < r->end && *r->s != '"') {
        char ch = *r->s++;
        if (ch == '\\' && r->s < r->end) {
            ch = *r->s++;
            if (ch == 'u') { /* a report's strings are ASCII: a code point becomes '?' */
                r->s += r->end - r->s >= 4 ? 4 : r->end - r->s;
                ch = '?';
            } else if (ch == 'n') {
                ch = '\n';
            } else if (ch == 't') {
                ch = '\t';
            }
        }
        if (n + 2 > cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return cnnelm_fail(r->err, "out of memory");
            }
            buf = nb;
        }
        buf[n++] = ch;
    }
    if (r->s >= r->end) {
        free(buf);
        return bad(r, "unterminated string");
    }
    r->s++;
    buf[n] = '\0';
    *out = buf;
    return 0;
}

static int push(reader *r, jv *v, char *key, jv *item)
{
    jv *ni = realloc(v->items, (size_t)(v->n + 1) * sizeof *ni);
    if (!ni)
        return cnnelm_fail(r->err, "out of memory");
    v->items = ni;
    if (v->t == J_OBJ) {
        char **nk = realloc(v->keys, (size_t)(v->n + 1) * sizeof *nk);
        if (!nk)
            return cnnelm_fail(r->err, "out of memory");
        v->keys = nk;
        v->keys[v->n] = key;
    }
    v->items[v->n++] = *item;
    return 0;
}

static int parse_value(reader *r, jv *v)
{
    memset(v, 0, sizeof *v);
    ws(r);
    if (r->s >= r->end)
        return bad(r, "unexpected end");
    if (++r->depth > 64)
        return bad(r, "nested too deeply");
    char c = *r->s;
    int rc = 0;
    if (c == '{' || c == '[') {
        v->t = c == '{' ? J_OBJ : J_ARR;
        char close = c == '{' ? '}' : ']';
        r->s++;
        ws(r);
        while (rc == 0 && r->s < r->end && *r->s != close) {
            char *key = NULL;
            if (v->t == J_OBJ) {
                if (parse_string(r, &key))
                    return -1;
                ws(r);
                if (r->s >= r->end || *r->s != ':') {
                    free(key);
                    return bad(r, "expected ':'");
                }
                r->s++;
            }
            jv item;
            if (parse_value(r, &item)) {
                free(key);
                jv_free(&item);
                return -1;
            }
            if (push(r, v, key, &item)) {
                free(key);
                jv_free(&item);
                return -1;
            }
            ws(r);
            if (r->s < r->end && *r->s == ',')
                r->s++;
            else if (r->s < r->end && *r->s != close)
                return bad(r, "expected ',' or the end of a list");
            ws(r);
        }
        if (r->s >= r->end)
            return bad(r, v->t == J_OBJ ? "unterminated object" : "unterminated array");
        r->s++;
    } else if (c == '"') {
        v->t = J_STR;
        rc = parse_string(r, &v->str);
    } else if (!strncmp(r->s, "true", 4) || !strncmp(r->s, "false", 5)) {
        v->t = J_BOOL;
        v->num = *r->s == 't';
        r->s += *r->s == 't' ? 4 : 5;
    } else if (!strncmp(r->s, "null", 4)) {
        v->t = J_NULL;
        v->num = NAN;
        r->s += 4;
    } else {
        char *e;
        v->t = J_NUM;
        v->num = strtod(r->s, &e);
        if (e == r->s)
            return bad(r, "unexpected character");
        r->s = e;
    }
    r->depth--;
    return rc;
}

static const jv *get(const jv *o, const char *key)
{
    if (!o || o->t != J_OBJ)
        return NULL;
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->keys[i], key))
            return &o->items[i];
    return NULL;
}

static double num(const jv *v)
{
    return v && (v->t == J_NUM || v->t == J_BOOL) ? v->num : NAN;
}

static int len(const jv *v)
{
    return v && v->t == J_ARR ? v->n : 0;
}

/* ---- what is drawn ---- */

/* One model's per-iteration values over the runs (trials), by iteration index. */
typedef struct track {
    int n_it;                    /* iterations 0 .. n_it-1 */
    double *sum, *sq;            /* [what][it]: 0 train accuracy, 1 test accuracy, 2 J */
    int *cnt;
    double final_sum, final_sq;  /* the model's test accuracy after training */
    int final_n;
} track;

#define WHAT 3

static int track_add_series(track *t, const jv *iters)
{
    int n = len(iters);
    if (n > t->n_it) {
        double *ns = realloc(t->sum, (size_t)WHAT * n * sizeof *ns);
        double *nq = realloc(t->sq, (size_t)WHAT * n * sizeof *nq);
        int *nc = realloc(t->cnt, (size_t)WHAT * n * sizeof *nc);
        if (ns)
            t->sum = ns;
        if (nq)
            t->sq = nq;
        if (nc)
            t->cnt = nc;
        if (!ns || !nq || !nc)
            return -1;
        /* widen [what][old n] to [what][n], back to front */
        for (int w = WHAT - 1; w >= 0; w--)
            for (int i = n - 1; i >= 0; i--) {
                int old = i < t->n_it;
                t->sum[w * n + i] = old ? t->sum[w * t->n_it + i] : 0;
                t->sq[w * n + i] = old ? t->sq[w * t->n_it + i] : 0;
                t->cnt[w * n + i] = old ? t->cnt[w * t->n_it + i] : 0;
            }
        t->n_it = n;
    }
    for (int i = 0; i < n; i++) {
        const jv *p = &iters->items[i];
        double v[WHAT] = { 100 * num(get(p, "train_accuracy")), 100 * num(get(p, "test_accuracy")),
                           num(get(p, "J")) };
        for (int w = 0; w < WHAT; w++)
            if (isfinite(v[w])) {
                t->sum[w * t->n_it + i] += v[w];
                t->sq[w * t->n_it + i] += v[w] * v[w];
                t->cnt[w * t->n_it + i]++;
            }
    }
    return 0;
}

static void track_add_final(track *t, const jv *metrics)
{
    double a = 100 * num(get(metrics, "accuracy"));
    if (isfinite(a)) {
        t->final_sum += a;
        t->final_sq += a * a;
        t->final_n++;
    }
}

static double mean_std(double sum, double sq, int n, double *sd)
{
    double m = n ? sum / n : NAN;
    double v = n > 1 ? (sq - sum * sum / n) / (n - 1) : 0;
    *sd = v > 0 ? sqrt(v) : 0;
    return m;
}

static int track_has(const track *t, int w)
{
    for (int i = 0; i < t->n_it; i++)
        if (t->cnt && t->cnt[w * t->n_it + i])
            return 1;
    return 0;
}

static void track_free(track *t)
{
    free(t->sum);
    free(t->sq);
    free(t->cnt);
}

typedef struct figure {
    int k, runs;
    track *part;      /* k */
    track reduced, single;
    int has_single;
    char reduce[32];
    int iterations;   /* the longest series, in iterations after 0 */
} figure;

static int collect(const jv *root, figure *f, const char *file, cnnelm_error *err)
{
    const jv *runs = get(root, "runs");
    if (len(runs) == 0)
        return cnnelm_fail(err, "%s: the report has no training runs to plot (\"runs\"; plot draws train "
                           "reports)", file);
    const jv *red = get(root, "reduce");
    snprintf(f->reduce, sizeof f->reduce, "%s", red && red->t == J_STR ? red->str : "mean");
    for (int r = 0; r < runs->n; r++) {
        const jv *run = &runs->items[r];
        if (num(get(run, "all_training_data")) == 1)
            continue; /* k-fold's final model: nothing to compare with */
        const jv *parts = get(run, "partitions");
        int k = len(parts);
        if (k == 0)
            continue;
        if (!f->part) {
            f->k = k;
            f->part = calloc((size_t)k, sizeof *f->part);
            if (!f->part)
                return cnnelm_fail(err, "out of memory");
        }
        for (int p = 0; p < k && p < f->k; p++) {
            const jv *pr = &parts->items[p];
            if (track_add_series(&f->part[p], get(pr, "iterations")))
                return cnnelm_fail(err, "out of memory");
            track_add_final(&f->part[p], get(pr, "test"));
        }
        track_add_final(&f->reduced, get(run, "reduced"));
        const jv *single = get(run, "single");
        if (single) {
            f->has_single = 1;
            if (track_add_series(&f->single, get(single, "iterations")))
                return cnnelm_fail(err, "out of memory");
            track_add_final(&f->single, get(single, "test"));
        }
        f->runs++;
    }
    if (f->runs == 0)
        return cnnelm_fail(err, "%s: the report's runs have no partitions to plot", file);
    for (int p = 0; p < f->k; p++)
        if (f->part[p].n_it - 1 > f->iterations)
            f->iterations = f->part[p].n_it - 1;
    if (f->single.n_it - 1 > f->iterations)
        f->iterations = f->single.n_it - 1;
    return 0;
}

/* A series as gnuplot inline data: iteration, mean, std. */
static void data_track(FILE *gp, const track *t, int w)
{
    for (int i = 0; i < t->n_it; i++) {
        int c = t->cnt[w * t->n_it + i];
        if (!c)
            continue;
        double sd, m = mean_std(t->sum[w * t->n_it + i], t->sq[w * t->n_it + i], c, &sd);
        fprintf(gp, "%d %.8g %.8g\n", i, m, sd);
    }
    fprintf(gp, "e\n");
}

/* Partitions drawn with a legend entry each; the rest share one entry. */
#define LEGEND_PARTITIONS 8

typedef struct plot_cmd {
    char spec[256];         /* the plot clause, e.g. "'-' using 1:2 with lines title '...'" */
    const track *t;
    int what;               /* 0..2 series; 3: final test accuracy point */
    double x;
} plot_cmd;

/* Fine-tuning: accuracy panel and J panel. */
static void script_series(FILE *gp, const figure *f)
{
    int bands = f->runs > 1;
    char band_note[64] = "";
    if (bands)
        snprintf(band_note, sizeof band_note, " (mean +- std, %d runs)", f->runs);
    if (f->k == 1)
        fprintf(gp, "set multiplot layout 1,2 title 'cnnelm: one model on all the training data%s' font ',12'\n",
                band_note);
    else
        fprintf(gp, "set multiplot layout 1,2 title 'cnnelm: %d partitions, reduce = %s%s' font ',12'\n", f->k,
                f->reduce, band_note);
    fprintf(gp, "set key below maxrows 4 font ',9' samplen 2 spacing 0.9\nset grid\n"
                "unset xlabel\nset xrange [-0.2:%g]\n"
                "set style fill transparent solid 0.15 noborder\n",
            f->iterations + 0.8);
    if (f->iterations <= 20)
        fprintf(gp, "set xtics 1\n");
    for (int panel = 0; panel < 2; panel++) {
        plot_cmd cmds[4 * 64 + 16];
        int nc = 0;
        int shown = f->k < 64 ? f->k : 64; /* beyond that, a figure is no help: the JSON has them */
        fprintf(gp, panel == 0 ? "set ylabel 'accuracy (%%)'\nset title 'accuracy against fine-tuning iteration'\n"
                               : "set ylabel 'J (mean per example)'\nset title 'J against fine-tuning iteration'\n");
        for (int p = 0; p < shown; p++) {
            const track *t = &f->part[p];
            int w = panel == 0 ? 0 : 2;
            if (!track_has(t, w))
                continue;
            char name[96];
            if (f->k == 1)
                snprintf(name, sizeof name, "model: %s", panel == 0 ? "training" : "J");
            else if (p < LEGEND_PARTITIONS)
                snprintf(name, sizeof name, "partition %d%s", p + 1, panel == 0 ? ": training" : "");
            else if (p == LEGEND_PARTITIONS)
                snprintf(name, sizeof name, "partitions %d-%d", p + 1, f->k);
            else
                name[0] = '\0';
            int lc = p < LEGEND_PARTITIONS ? p + 1 : LEGEND_PARTITIONS + 1;
            if (bands) {
                plot_cmd *b = &cmds[nc++];
                snprintf(b->spec, sizeof b->spec, "'-' using 1:($2-$3):($2+$3) with filledcurves lc %d notitle",
                         lc);
                b->t = t;
                b->what = w;
            }
            plot_cmd *c = &cmds[nc++];
            snprintf(c->spec, sizeof c->spec, "'-' using 1:2 with linespoints lc %d pt 7 ps 0.5 %s%s%s", lc,
                     name[0] ? "title '" : "notitle", name, name[0] ? "'" : "");
            c->t = t;
            c->what = w;
            /* k = 1: the model's own test accuracy per iteration */
            if (panel == 0 && f->k == 1 && track_has(t, 1)) {
                plot_cmd *d = &cmds[nc++];
                snprintf(d->spec, sizeof d->spec,
                         "'-' using 1:2 with linespoints lc %d dt 2 pt 6 title 'model: test'", lc);
                d->t = t;
                d->what = 1;
            }
        }
        if (f->has_single && track_has(&f->single, panel == 0 ? 1 : 2)) {
            plot_cmd *c = &cmds[nc++];
            snprintf(c->spec, sizeof c->spec, "'-' using 1:2 with linespoints lc rgb 'black' dt 2 pt 4 lw 1.5 "
                     "title 'single model (all data)%s'", panel == 0 ? ": test" : "");
            c->t = &f->single;
            c->what = panel == 0 ? 1 : 2;
        }
        if (panel == 0) {
            /* the test accuracies after training: partitions, single, and the reduced model, marked
             * just right of the last iteration */
            if (f->k > 1) {
                plot_cmd *c = &cmds[nc++];
                snprintf(c->spec, sizeof c->spec, "'-' using 1:2 with points lc rgb 'gray40' pt 2 ps 1.2 "
                         "title 'partitions: test, final'");
                c->t = NULL;
                c->what = 4;
                c->x = f->iterations;
            }
            double sd, m = mean_std(f->reduced.final_sum, f->reduced.final_sq, f->reduced.final_n, &sd);
            if (f->reduced.final_n) {
                plot_cmd *c = &cmds[nc++];
                if (f->k > 1)
                    snprintf(c->spec, sizeof c->spec, "'-' using 1:2:3 with yerrorbars lc rgb 'red' pt 3 ps 2.5 "
                             "lw 2 title 'reduced (%s): test %.1f%%'", f->reduce, m);
                else
                    snprintf(c->spec, sizeof c->spec, "'-' using 1:2:3 with yerrorbars lc rgb 'red' pt 3 ps 2.5 "
                             "lw 2 title 'saved model: test %.1f%%'", m);
                c->t = &f->reduced;
                c->what = 3;
                c->x = f->iterations + 0.4;
            }
        }
        if (nc == 0)
            continue;
        if (panel == 1)
            fprintf(gp, "set xrange [-0.2:%g]\n", f->iterations + 0.2);
        fprintf(gp, "plot ");
        for (int i = 0; i < nc; i++)
            fprintf(gp, "%s%s", i ? ", " : "", cmds[i].spec);
        fprintf(gp, "\n");
        for (int i = 0; i < nc; i++) {
            const plot_cmd *c = &cmds[i];
            if (c->what < 3) {
                data_track(gp, c->t, c->what);
            } else if (c->what == 3) {
                double sd, m = mean_std(c->t->final_sum, c->t->final_sq, c->t->final_n, &sd);
                fprintf(gp, "%g %.8g %.8g\ne\n", c->x, m, sd);
            } else {
                for (int p = 0; p < f->k; p++) {
                    double sd, m = mean_std(f->part[p].final_sum, f->part[p].final_sq, f->part[p].final_n, &sd);
                    if (f->part[p].final_n)
                        fprintf(gp, "%g %.8g\n", c->x + 0.2, m);
                }
                fprintf(gp, "e\n");
            }
        }
    }
    fprintf(gp, "unset multiplot\n");
}

/* No fine-tuning: one bar per partition, the reduced and the single model (means, std bars). */
static void script_bars(FILE *gp, const figure *f)
{
    int n = 0;
    double lo = 100, hi = 0;
    fprintf(gp, "$bars << EOD\n");
    for (int i = 0; i < f->k + 2; i++) {
        const track *t = i < f->k ? &f->part[i] : i == f->k ? &f->reduced : &f->single;
        if (!t->final_n || (i == f->k && f->k == 1))
            continue;
        double sd, m = mean_std(t->final_sum, t->final_sq, t->final_n, &sd);
        char name[48];
        if (i < f->k)
            snprintf(name, sizeof name, f->k == 1 ? "model" : "P%d", i + 1);
        else if (i == f->k)
            snprintf(name, sizeof name, "reduced (%s)", f->reduce);
        else
            snprintf(name, sizeof name, "single");
        fprintf(gp, "%d \"%s\" %.8g %.8g %d\n", n++, name, m, sd, i < f->k ? 1 : i == f->k ? 2 : 3);
        lo = m - sd < lo ? m - sd : lo;
        hi = m + sd > hi ? m + sd : hi;
    }
    fprintf(gp, "EOD\n");
    double pad = (hi - lo) * 0.15 + 1;
    if (f->k == 1)
        fprintf(gp, "set title 'cnnelm: test accuracy of the model%s' font ',12'\n",
                f->runs > 1 ? " (mean +- std over the runs)" : "");
    else
        fprintf(gp, "set title 'cnnelm: test accuracy of %d partitions, the reduced (%s)%s model%s' font ',12'\n",
                f->k, f->reduce, f->has_single ? " and the single" : "",
                f->runs > 1 ? " (mean +- std over the runs)" : "");
    fprintf(gp, "set ylabel 'test accuracy (%%)'\nset yrange [%g:%g]\nset grid ytics\nset style fill solid 0.6 "
                "border -1\nset boxwidth 0.7\nset key off\nset rmargin 10\nset xtics rotate by -45 font ',9'\n"
                "set linetype 11 lc rgb '#4c72b0'\nset linetype 12 lc rgb '#dd2222'\nset linetype 13 lc rgb "
                "'#333333'\n", lo - pad > 0 ? lo - pad : 0, hi + pad < 100 ? hi + pad : 100);
    if (n > 40)
        fprintf(gp, "set xtics 0,%d\n", n / 20);
    double side = n < 4 ? (4 - n) / 2.0 : 0; /* a bar or two keep a bar's width */
    fprintf(gp, "set xrange [%g:%g]\n", -0.6 - side, n - 0.4 + side);
    fprintf(gp, "plot $bars using 1:3:($5+10):xtic(2) with boxes lc variable, "
                "$bars using 1:3:4 with yerrorbars lc rgb 'black' ps 0, "
                "$bars using 1:($3+$4+%g):(sprintf('%%.1f', $3)) with labels font ',8'\n", pad * 0.3);
}

/* Runs the script through gnuplot into `out`, atomically (a temporary file renamed on success). */
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

static int write_figure(const char *out, const char *term, const char *script, cnnelm_error *err)
{
    cnnelm_atomic_file af;
    if (cnnelm_atomic_open(&af, out, err))
        return -1;
    FILE *gp = popen("gnuplot 2>&1", "w");
    if (!gp) {
        cnnelm_atomic_abort(&af);
        return cnnelm_fail(err, "cannot run gnuplot: %s (install Debian's gnuplot-nox)", strerror(errno));
    }
    fprintf(gp, "set terminal %s\nset output '%s'\n", term, af.tmp);
    fputs(script, gp);
    fflush(gp);
    int st = pclose(gp);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        cnnelm_atomic_abort(&af);
        return cnnelm_fail(err, "gnuplot failed (exit status %d); is Debian's gnuplot-nox installed?",
                           st == -1 ? -1 : WEXITSTATUS(st));
    }
    if (check_figure(af.tmp, term[0] == 'p', out, err)) {
        cnnelm_atomic_abort(&af);
        return -1;
    }
    return cnnelm_atomic_commit(&af, err);
}

static char *read_all(const char *path, size_t *n_out, cnnelm_error *err)
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
    *n_out = n;
    return buf;
}

int cnnelm_run_plot(const char *report, const char *out, cnnelm_error *err)
{
    const char *dot = strrchr(out, '.');
    const char *term = NULL;
    if (dot && !strcmp(dot, ".png"))
        term = "pngcairo size 1200,560 noenhanced font ',10'";
    else if (dot && !strcmp(dot, ".svg"))
        term = "svg size 1200,560 noenhanced font 'sans,10'";
    if (!term)
        return cnnelm_fail(err, "%s: the output must end in .png or .svg", out);
    size_t n;
    char *text = read_all(report, &n, err);
    if (!text)
        return -1;
    reader r = { .s = text, .end = text + n, .base = text, .file = report, .err = err };
    jv root;
    int rc = parse_value(&r, &root);
    if (rc == 0 && root.t != J_OBJ)
        rc = bad(&r, "not an object");
    figure f;
    memset(&f, 0, sizeof f);
    if (rc == 0)
        rc = collect(&root, &f, report, err);
    char *script = NULL;
    size_t script_len = 0;
    if (rc == 0) {
        FILE *s = open_memstream(&script, &script_len);
        if (!s) {
            rc = cnnelm_fail(err, "out of memory");
        } else {
            if (f.iterations > 0)
                script_series(s, &f);
            else
                script_bars(s, &f);
            fclose(s);
        }
    }
    if (rc == 0)
        rc = write_figure(out, term, script, err);
    free(script);
    for (int p = 0; p < f.k && f.part; p++)
        track_free(&f.part[p]);
    free(f.part);
    track_free(&f.reduced);
    track_free(&f.single);
    jv_free(&root);
    free(text);
    return rc;
}
