/* cnnelm plugin loading: finds libcnnelm-<name>.so on a search path, opens it with dlopen and
 * checks its entry table (ABI major version, table size, every required slot). */
#ifndef CNNELM_PLUGIN_H
#define CNNELM_PLUGIN_H

#include <stddef.h>

#include "cnnelm/backend.h"
#include "cnnelm/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cnnelm_plugin {
    const cnnelm_backend *ops;  /* the plugin's table, checked */
    void *handle;               /* dlopen handle */
    char name[64];              /* ops->name */
    char path[4096];            /* the file it was loaded from */
    void *state;                /* from the plugin's init() (ABI 1.1); NULL otherwise */
} cnnelm_plugin;

/* The directories searched, in order: `extra` (colon-separated, typically the config's
 * plugin_path; may be NULL), $CNNELM_PLUGIN_PATH, the directory "cnnelm" beside the loaded
 * libcnnelm.so, the build tree, the install directory (repeats dropped).
 * Writes up to `max` directory pointers (into a static table) and returns how many. */
int cnnelm_plugin_search_path(const char *extra, const char **dirs, int max);

/* Loads the backend called `name` (file libcnnelm-<name>.so) from the search path. When it is
 * not found, the message lists every directory looked in. */
int cnnelm_plugin_load(const char *name, const char *extra_path, cnnelm_plugin **out,
                       cnnelm_error *err);

/* Loads a plugin from an explicit file. */
int cnnelm_plugin_load_file(const char *file, cnnelm_plugin **out, cnnelm_error *err);

/* Closes the library. Call only after every context of the plugin is closed. */
void cnnelm_plugin_unload(cnnelm_plugin *p);

/* Calls fn(path, user) for every distinct libcnnelm-*.so on the search path (first hit of a
 * name wins), in search order then name order. Returns the number of files found. */
int cnnelm_plugin_scan(const char *extra_path, void (*fn)(const char *path, void *user), void *user);

const char *cnnelm_status_name(cnnelm_status s);

/* What the core gives every plugin it loads from now on: a log callback (NULL: messages are
 * dropped; called from any thread) and the program-cache directory (NULL: each backend's
 * default). Call before loading plugins; the strings are copied. */
void cnnelm_plugin_set_host(cnnelm_log_fn log, void *log_user, const char *cache_dir);

/* The device slots through the plugin's state when it has the 1.1 slots, the 1.0 ones otherwise;
 * on failure `why` says why. context_open passes the log callback and the cache directory. */
cnnelm_status cnnelm_plugin_device_count(const cnnelm_plugin *p, int *count, char *why,
                                         size_t why_size);
cnnelm_status cnnelm_plugin_device_info(const cnnelm_plugin *p, int index, cnnelm_device_info *info);
cnnelm_status cnnelm_plugin_context_open(const cnnelm_plugin *p, int device, int threads,
                                         cnnelm_backend_ctx **out, char *why, size_t why_size);

#ifdef __cplusplus
}
#endif
#endif
