/* cnnelm progress reporting (see progress.h). Every field of a progress and of its children is
 * guarded by the root's lock, which also serialises all output, so lines never interleave. */
#define _POSIX_C_SOURCE 200809L
#include "base/progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

double cnnelm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void lock(cnnelm_progress *p) { pthread_mutex_lock(&p->root->lock); }
static void unlock(cnnelm_progress *p) { pthread_mutex_unlock(&p->root->lock); }

void cnnelm_progress_init(cnnelm_progress *p, int quiet)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
    p->mode = quiet ? CNNELM_PROGRESS_QUIET
                    : (isatty(STDERR_FILENO) ? CNNELM_PROGRESS_TTY : CNNELM_PROGRESS_LINES);
    /* CNNELM_PROGRESS=tty|lines overrides the guess: under mpirun stderr is a pipe even when
     * mpirun's own is a terminal, so rank 0 can only be told */
    const char *force = getenv("CNNELM_PROGRESS");
    if (!quiet && force && !strcmp(force, "tty"))
        p->mode = CNNELM_PROGRESS_TTY;
    else if (!quiet && force && !strcmp(force, "lines"))
        p->mode = CNNELM_PROGRESS_LINES;
    p->root = p;
    p->slot = -1;
    p->weight = 1;
}

void cnnelm_progress_init_child(cnnelm_progress *p, const cnnelm_progress *parent, const char *prefix)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
    p->mode = parent->mode == CNNELM_PROGRESS_QUIET ? CNNELM_PROGRESS_QUIET : CNNELM_PROGRESS_LINES;
    p->root = parent->root;
    p->slot = -1;
    p->weight = 1;
    snprintf(p->prefix, sizeof p->prefix, "%s", prefix);
}

/* The worker progress shown on each line under the live line (NULL: idle). A worker's
 * progress lives on its stack and removes itself on destroy. */
static cnnelm_progress **slots_of(cnnelm_progress *root)
{
    return root->slot_p;
}

void cnnelm_progress_init_worker(cnnelm_progress *p, cnnelm_progress *parent, const char *prefix,
                                 int slot)
{
    cnnelm_progress_init_child(p, parent, prefix);
    if (slot < 0 || slot >= CNNELM_PROGRESS_SLOTS)
        return;
    lock(p);
    p->slot = slot;
    slots_of(p->root)[slot] = p;
    if (slot + 1 > p->root->n_slots)
        p->root->n_slots = slot + 1;
    unlock(p);
}

static void clear_block(cnnelm_progress *r);

void cnnelm_progress_destroy(cnnelm_progress *p)
{
    if (p->root && p->root != p && p->slot >= 0) {
        lock(p);
        if (slots_of(p->root)[p->slot] == p)
            slots_of(p->root)[p->slot] = NULL;
        unlock(p);
    }
    if (p->root == p && p->mode == CNNELM_PROGRESS_TTY)
        clear_block(p);
    pthread_mutex_destroy(&p->lock);
}

void cnnelm_progress_set_run(cnnelm_progress *p, double forward_images, double tune_images,
                             double tune_weight)
{
    lock(p);
    cnnelm_progress *r = p->root;
    r->run_planned[0] = forward_images;
    r->run_planned[1] = tune_images;
    r->run_done[0] = r->run_done[1] = 0;
    r->stage_seconds[0] = r->stage_seconds[1] = r->stage_images[0] = r->stage_images[1] = 0;
    r->tune_weight = tune_weight > 0 ? tune_weight : 1;
    r->run_images = (size_t)(forward_images + tune_images);
    r->run_images_done = 0;
    r->run_start = cnnelm_now();
    unlock(p);
}

/* The hook exchanges totals with the other ranks (it limits its own rate). */
static void call_hook(cnnelm_progress *r)
{
    if (r->hook)
        r->hook(r->hook_user, r);
}

/* The cost of a fine-tuning image in forward passes: measured once both kinds of stage have
 * run (the ratio differs by backend, model and machine load), assumed until then. */
static double tune_weight(const cnnelm_progress_totals *t, double assumed)
{
    if (t->images_timed[0] > 0 && t->images_timed[1] > 0 && t->seconds[0] > 0 && t->seconds[1] > 0)
        return (t->seconds[1] / t->images_timed[1]) / (t->seconds[0] / t->images_timed[0]);
    return assumed;
}

static void run_state(const cnnelm_progress *r, double now, double *fraction, double *eta)
{
    *fraction = 0;
    *eta = -1;
    cnnelm_progress_totals t;
    cnnelm_progress_job_totals(r, &t);
    double w = tune_weight(&t, r->tune_weight);
    double total = t.planned[0] + w * t.planned[1];
    if (total <= 0)
        return;
    double done = t.done[0] + w * t.done[1];
    if (done > total)
        done = total;
    *fraction = done / total;
    double el = now - r->run_start;
    /* the rate over the whole run so far: steadier than a recent window, and every stage of the
     * run is in it in the proportion it will have to the end */
    if (done >= total)
        *eta = 0;
    else if (done > 0 && el > 0.5)
        *eta = (total - done) * el / done;
}

void cnnelm_progress_run_state(cnnelm_progress *p, double *fraction, double *eta)
{
    lock(p);
    run_state(p->root, cnnelm_now(), fraction, eta);
    unlock(p);
}

static void format_seconds(double s, char *out, size_t cap)
{
    if (s < 0)
        snprintf(out, cap, "?");
    else if (s < 60)
        snprintf(out, cap, "%.0f s", s);
    else if (s < 3600)
        snprintf(out, cap, "%d min %02d s", (int)(s / 60), (int)s % 60);
    else
        snprintf(out, cap, "%d h %02d min", (int)(s / 3600), (int)(s / 60) % 60);
}

static int term_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
        return ws.ws_col;
    return 120;
}

/* The prefix without its trailing ": ", e.g. "partition 2/4 [cpu:0#1]". */
static void prefix_name(const cnnelm_progress *p, char *out, size_t cap)
{
    snprintf(out, cap, "%s", p->prefix);
    size_t n = strlen(out);
    while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == ':'))
        out[--n] = '\0';
}

static void stage_text(const cnnelm_progress *p, char *out, size_t cap)
{
    if (!p->stage[0])
        snprintf(out, cap, "between stages");
    else if (p->total)
        snprintf(out, cap, "%s %.0f%%", p->stage, 100.0 * (double)(p->done < p->total ? p->done : p->total) /
                                                      (double)p->total);
    else
        snprintf(out, cap, "%s", p->stage);
}

/* Cursor at the start of the live line: erase it and the worker lines below it. */
static void clear_block(cnnelm_progress *r)
{
    if (r->mode != CNNELM_PROGRESS_TTY || !r->last_draw)
        return;
    fputs("\r\033[J", stderr);
    r->drawn = 0;
    r->last_draw = 0;
}

static void put_line(const char *s, int width)
{
    fprintf(stderr, "%.*s", width - 1, s);
}

/* The live line (whole run, or the root's stage when no run is set) and the worker lines. */
static void draw(cnnelm_progress *r, double now)
{
    int width = term_width();
    char line[512], st[200];
    if (r->run_images > 0) {
        double frac, eta;
        call_hook(r);
        run_state(r, now, &frac, &eta);
        cnnelm_progress_totals t;
        cnnelm_progress_job_totals(r, &t);
        double el = now - r->run_start;
        char e1[32], e2[32], ranks[32] = "";
        format_seconds(el, e1, sizeof e1);
        format_seconds(eta, e2, sizeof e2);
        if (r->ranks > 1)
            snprintf(ranks, sizeof ranks, " on %d ranks", r->ranks);
        int n = snprintf(line, sizeof line, "run %3.0f%%: %.0f/%.0f images%s, %.0f images/s, %s elapsed, ETA %s",
                         100 * frac, t.images_done, t.images, ranks, el > 0 ? t.images_done / el : 0.0, e1, e2);
        if (r->stage[0] && n > 0 && (size_t)n < sizeof line) {
            stage_text(r, st, sizeof st);
            snprintf(line + n, sizeof line - (size_t)n, " | %s%s", r->prefix, st);
        }
    } else {
        double el = now - r->start;
        double rate = el > 0 ? (double)r->done / el : 0;
        if (r->total && rate > 0)
            snprintf(line, sizeof line, "%s%s: %zu/%zu images, %.0f images/s, %.1f s elapsed, ETA %.1f s",
                     r->prefix, r->stage, r->done, r->total, rate, el,
                     (double)(r->total - (r->done < r->total ? r->done : r->total)) / rate);
        else
            snprintf(line, sizeof line, "%s%s: %zu images, %.0f images/s, %.1f s elapsed", r->prefix, r->stage,
                     r->done, rate, el);
    }
    fputs("\r\033[J", stderr);
    put_line(line, width);
    int shown = 0;
    cnnelm_progress **sl = slots_of(r);
    int busy = 0;
    for (int i = 0; i < r->n_slots; i++)
        busy += sl[i] != NULL;
    if (busy > 1 || (busy == 1 && r->n_slots > 1)) /* several workers: one line each */
        for (int i = 0; i < r->n_slots; i++) {
            char name[96];
            if (!sl[i])
                continue;
            prefix_name(sl[i], name, sizeof name);
            stage_text(sl[i], st, sizeof st);
            snprintf(line, sizeof line, "  worker %d: %s: %s", i + 1, name, st);
            fputc('\n', stderr);
            put_line(line, width);
            shown++;
        }
    if (shown)
        fprintf(stderr, "\033[%dA", shown);
    fputc('\r', stderr);
    fflush(stderr);
    r->drawn = shown;
    r->last_draw = now;
}

/* Redraw at most ten times a second. */
static void maybe_draw(cnnelm_progress *r, int force)
{
    if (r->mode != CNNELM_PROGRESS_TTY)
        return;
    double now = cnnelm_now();
    if (force || now - r->last_draw > 0.1)
        draw(r, now);
}

/* Before a log line: on a terminal the live block goes; otherwise a timestamp and, once the run
 * is known, how far it is. */
static void line_start(cnnelm_progress *r)
{
    if (r->mode == CNNELM_PROGRESS_TTY) {
        clear_block(r);
        return;
    }
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    char ts[16];
    strftime(ts, sizeof ts, "%H:%M:%S", &tm);
    if (r->run_images > 0) {
        double frac, eta;
        call_hook(r);
        run_state(r, cnnelm_now(), &frac, &eta);
        char e[32];
        format_seconds(eta, e, sizeof e);
        fprintf(stderr, "%s [%3.0f%%, ETA %s] ", ts, 100 * frac, e);
    } else {
        fprintf(stderr, "%s ", ts);
    }
}

/* After a log line: the live block comes back. */
static void line_end(cnnelm_progress *r)
{
    if (r->mode == CNNELM_PROGRESS_TTY && (r->run_images > 0 || r->stage[0]))
        draw(r, cnnelm_now());
}

void cnnelm_progress_begin_weighted(cnnelm_progress *p, const char *stage, size_t total, double weight)
{
    lock(p);
    snprintf(p->stage, sizeof p->stage, "%s", stage);
    p->total = total;
    p->done = 0;
    p->start = cnnelm_now();
    p->weight = weight > 0 ? weight : 1;
    if (p != p->root)
        p->last_draw = 0;
    unlock(p);
}

void cnnelm_progress_begin(cnnelm_progress *p, const char *stage, size_t total)
{
    cnnelm_progress_begin_weighted(p, stage, total, 1);
}

void cnnelm_progress_add(cnnelm_progress *p, size_t images)
{
    lock(p);
    cnnelm_progress *r = p->root;
    p->done += images;
    r->run_done[p->weight > 1] += (double)images;
    r->run_images_done += images;
    call_hook(r);
    if (r->mode == CNNELM_PROGRESS_TTY)
        maybe_draw(r, 0);
    unlock(p);
}

void cnnelm_progress_end(cnnelm_progress *p, const char *detail)
{
    lock(p);
    cnnelm_progress *r = p->root;
    double el = cnnelm_now() - p->start;
    if (p->done && el > 0) { /* worker-seconds per image of each kind, for the ETA's weight */
        r->stage_seconds[p->weight > 1] += el;
        r->stage_images[p->weight > 1] += (double)p->done;
    }
    if (p->mode != CNNELM_PROGRESS_QUIET) {
        line_start(r);
        if (p->done)
            fprintf(stderr, "%s%s: %zu images in %.2f s (%.0f images/s)%s%s\n", p->prefix, p->stage, p->done, el,
                    el > 0 ? (double)p->done / el : 0.0, detail ? ", " : "", detail ? detail : "");
        else
            fprintf(stderr, "%s%s: %.2f s%s%s\n", p->prefix, p->stage, el, detail ? ", " : "", detail ? detail : "");
    }
    p->stage[0] = '\0';
    p->total = p->done = 0;
    if (p->mode != CNNELM_PROGRESS_QUIET)
        line_end(r);
    unlock(p);
}

void cnnelm_progress_note(cnnelm_progress *p, const char *fmt, ...)
{
    if (p->mode == CNNELM_PROGRESS_QUIET)
        return;
    lock(p);
    cnnelm_progress *r = p->root;
    line_start(r);
    fputs(p->prefix, stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    line_end(r);
    unlock(p);
}

void cnnelm_progress_warn(cnnelm_progress *p, const char *fmt, ...)
{
    lock(p);
    cnnelm_progress *r = p->root;
    if (r->mode == CNNELM_PROGRESS_TTY)
        clear_block(r);
    fputs("cnnelm: warning: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    line_end(r);
    unlock(p);
}

void cnnelm_progress_finish(cnnelm_progress *p)
{
    lock(p);
    cnnelm_progress *r = p->root;
    if (r->run_images > 0 && r->mode != CNNELM_PROGRESS_QUIET) {
        double el = cnnelm_now() - r->run_start;
        line_start(r);
        cnnelm_progress_totals t;
        cnnelm_progress_job_totals(r, &t);
        char ranks[32] = "";
        if (r->ranks > 1)
            snprintf(ranks, sizeof ranks, " on %d ranks", r->ranks);
        fprintf(stderr, "%srun done: %.0f images%s in %.1f s (%.0f images/s)\n", r->prefix, t.images_done, ranks,
                el, el > 0 ? t.images_done / el : 0.0);
    }
    r->run_images = 0; /* no live line any more */
    r->run_planned[0] = r->run_planned[1] = 0;
    r->stage[0] = '\0';
    fflush(stderr);
    unlock(p);
}

void cnnelm_progress_poll(cnnelm_progress *p)
{
    lock(p);
    cnnelm_progress *r = p->root;
    call_hook(r);
    if (r->mode == CNNELM_PROGRESS_TTY && r->run_images > 0)
        maybe_draw(r, 0);
    unlock(p);
}
