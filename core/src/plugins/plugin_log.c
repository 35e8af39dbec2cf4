/* cnnelm plugin messages (see plugin_log.h). */
#include "plugins/plugin_log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnelm/plugin.h"

/* Part of the plugin registry: one log per process, as plugins are loaded per process. */
static struct {
    pthread_mutex_t lock;
    int verbose;
    size_t n;
    char msg[CNNELM_PLUGIN_LOG_MAX][256];
    cnnelm_log_level level[CNNELM_PLUGIN_LOG_MAX];
} plog = { .lock = PTHREAD_MUTEX_INITIALIZER };

static const char *level_name(cnnelm_log_level l)
{
    return l == CNNELM_LOG_WARN ? "warning" : l == CNNELM_LOG_INFO ? "info" : "debug";
}

void cnnelm_plugin_log_begin(int verbose, const char *cache_dir)
{
    pthread_mutex_lock(&plog.lock);
    plog.verbose = verbose;
    plog.n = 0;
    pthread_mutex_unlock(&plog.lock);
    char dir[4096] = "";
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (cache_dir && *cache_dir)
        snprintf(dir, sizeof dir, "%s", cache_dir);
    else if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s/cnnelm", xdg);
    else if (home && *home)
        snprintf(dir, sizeof dir, "%s/.cache/cnnelm", home);
    cnnelm_plugin_set_host(cnnelm_plugin_log, NULL, dir[0] ? dir : NULL);
}

void cnnelm_plugin_log(void *user, cnnelm_log_level level, const char *message)
{
    (void)user;
    if (!message)
        return;
    pthread_mutex_lock(&plog.lock);
    if (plog.n < CNNELM_PLUGIN_LOG_MAX) {
        snprintf(plog.msg[plog.n], sizeof plog.msg[0], "%s", message);
        plog.level[plog.n] = level;
        plog.n++;
    }
    if (plog.verbose)
        fprintf(stderr, "cnnelm: plugin %s: %s\n", level_name(level), message);
    pthread_mutex_unlock(&plog.lock);
}

size_t cnnelm_plugin_log_count(void)
{
    pthread_mutex_lock(&plog.lock);
    size_t n = plog.n;
    pthread_mutex_unlock(&plog.lock);
    return n;
}

const char *cnnelm_plugin_log_at(size_t i, cnnelm_log_level *level)
{
    if (i >= CNNELM_PLUGIN_LOG_MAX)
        return NULL;
    if (level)
        *level = plog.level[i];
    return plog.msg[i];
}
