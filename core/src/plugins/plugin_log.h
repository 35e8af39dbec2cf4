/* cnnelm plugin messages: the log callback the core gives every plugin (ABI params.log). Messages
 * are shown on stderr with -v and kept (the first CNNELM_PLUGIN_LOG_MAX) for the JSON report.
 * The callback may be called from any thread. */
#ifndef CNNELM_PLUGIN_LOG_H
#define CNNELM_PLUGIN_LOG_H

#include <stddef.h>

#include "cnnelm/backend.h"

#define CNNELM_PLUGIN_LOG_MAX 256

/* Starts collecting (forgetting earlier messages) and hands the callback and the program-cache
 * directory to every plugin loaded from now on: `cache_dir` "" means $XDG_CACHE_HOME/cnnelm,
 * else ~/.cache/cnnelm. `verbose`: also print each message on stderr. */
void cnnelm_plugin_log_begin(int verbose, const char *cache_dir);

/* The callback itself (user is ignored). */
void cnnelm_plugin_log(void *user, cnnelm_log_level level, const char *message);

/* Messages collected so far; cnnelm_plugin_log_at's string lives until the next begin. */
size_t cnnelm_plugin_log_count(void);
const char *cnnelm_plugin_log_at(size_t i, cnnelm_log_level *level);

#endif
