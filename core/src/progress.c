/* cnnelm progress reporting (see progress.h). */
#define _POSIX_C_SOURCE 200809L
#include "progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double cnnelm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cnnelm_progress_init(cnnelm_progress *p, int quiet)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
    p->mode = quiet ? CNNELM_PROGRESS_QUIET
                    : (isatty(STDERR_FILENO) ? CNNELM_PROGRESS_TTY : CNNELM_PROGRESS_LINES);
}

void cnnelm_progress_init_child(cnnelm_progress *p, const cnnelm_progress *parent, const char *prefix)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
    p->mode = parent->mode == CNNELM_PROGRESS_QUIET ? CNNELM_PROGRESS_QUIET : CNNELM_PROGRESS_LINES;
    snprintf(p->prefix, sizeof p->prefix, "%s", prefix);
}

void cnnelm_progress_destroy(cnnelm_progress *p)
{
    pthread_mutex_destroy(&p->lock);
}

void cnnelm_progress_begin(cnnelm_progress *p, const char *stage, size_t total)
{
    pthread_mutex_lock(&p->lock);
    snprintf(p->stage, sizeof p->stage, "%s", stage);
    p->total = total;
    p->done = 0;
    p->start = cnnelm_now();
    p->last_draw = 0;
    pthread_mutex_unlock(&p->lock);
}

static void draw(cnnelm_progress *p, double now)
{
    double el = now - p->start;
    double rate = el > 0 ? (double)p->done / el : 0;
    if (p->total && rate > 0) {
        double eta = (double)(p->total - (p->done < p->total ? p->done : p->total)) / rate;
        fprintf(stderr, "\r\033[K%s%s: %zu/%zu images, %.0f images/s, %.1f s elapsed, ETA %.1f s",
                p->prefix, p->stage, p->done, p->total, rate, el, eta);
    } else {
        fprintf(stderr, "\r\033[K%s%s: %zu images, %.0f images/s, %.1f s elapsed", p->prefix, p->stage, p->done,
                rate, el);
    }
    fflush(stderr);
}

void cnnelm_progress_add(cnnelm_progress *p, size_t images)
{
    pthread_mutex_lock(&p->lock);
    p->done += images;
    if (p->mode == CNNELM_PROGRESS_TTY) {
        double now = cnnelm_now();
        if (now - p->last_draw > 0.1) {
            p->last_draw = now;
            draw(p, now);
        }
    }
    pthread_mutex_unlock(&p->lock);
}

void cnnelm_progress_end(cnnelm_progress *p, const char *detail)
{
    pthread_mutex_lock(&p->lock);
    if (p->mode != CNNELM_PROGRESS_QUIET) {
        double el = cnnelm_now() - p->start;
        if (p->mode == CNNELM_PROGRESS_TTY)
            fputs("\r\033[K", stderr);
        if (p->done)
            fprintf(stderr, "%s%s: %zu images in %.2f s (%.0f images/s)%s%s\n", p->prefix, p->stage, p->done, el,
                    el > 0 ? (double)p->done / el : 0.0, detail ? ", " : "", detail ? detail : "");
        else
            fprintf(stderr, "%s%s: %.2f s%s%s\n", p->prefix, p->stage, el, detail ? ", " : "", detail ? detail : "");
    }
    pthread_mutex_unlock(&p->lock);
}

void cnnelm_progress_note(cnnelm_progress *p, const char *fmt, ...)
{
    if (p->mode == CNNELM_PROGRESS_QUIET)
        return;
    pthread_mutex_lock(&p->lock);
    if (p->mode == CNNELM_PROGRESS_TTY)
        fputs("\r\033[K", stderr);
    fputs(p->prefix, stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    pthread_mutex_unlock(&p->lock);
}
