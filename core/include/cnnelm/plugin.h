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
    char path[4096];            /* the file it was loaded from, symlinks resolved */
    void *state;                /* from the plugin's init() (ABI 1.1); NULL otherwise */
} cnnelm_plugin;

/* The plugin search path, owned by the caller (free with cnnelm_plugin_dirs_free). In order:
 * - `extra` (colon-separated, typically the config's plugin_path; may be NULL); a relative entry
 *   resolves against the working directory (cnnelm_config_load has already made the config's
 *   relative entries absolute against the config file's directory);
 * - $CNNELM_PLUGIN_PATH; a relative entry is an error unless written "./..." or "../...";
 * - the install-relative directory: "cnnelm" beside libcnnelm.so, or <bindir>/../lib/cnnelm for
 *   a program linking the core statically (the cnnelm command, the tests in build/bin).
 * No absolute directory is built in. Entries are absolute, symlinks resolved, repeats dropped. */
#define CNNELM_PLUGIN_MAX_DIRS 32
typedef struct cnnelm_plugin_dirs {
    int n;
    char *dir[CNNELM_PLUGIN_MAX_DIRS];
} cnnelm_plugin_dirs;

int cnnelm_plugin_dirs_get(const char *extra, cnnelm_plugin_dirs *out, cnnelm_error *err);
void cnnelm_plugin_dirs_free(cnnelm_plugin_dirs *d);

/* Plugin files are trusted only when the file, its directory and the directory of the link it
 * was found through (those directories, not their ancestors) are owned by root or the user and
 * not writable by group or others; else
 * loading is refused. allow != 0 (the command's --allow-insecure-plugins) loads them with a
 * warning on stderr instead. Process-wide. */
void cnnelm_plugin_allow_insecure(int allow);

/* Loads the backend called `name` (file libcnnelm-<name>.so) from the search path. When it is
 * not found, the message lists every directory looked in. */
int cnnelm_plugin_load(const char *name, const char *extra_path, cnnelm_plugin **out,
                       cnnelm_error *err);

/* Loads a plugin from an explicit file: symlinks resolved (p->path is the real file), the
 * ownership and permission rules above checked, then dlopen and the table checks. */
int cnnelm_plugin_load_file(const char *file, cnnelm_plugin **out, cnnelm_error *err);

/* Closes the library. Call only after every context of the plugin is closed. */
void cnnelm_plugin_unload(cnnelm_plugin *p);

/* Calls fn(path, user) for every distinct libcnnelm-<name>.so (name: letters, digits, '-', '_')
 * in `dirs` (first hit of a name wins), in search order then name order. Returns the number of
 * files found. */
int cnnelm_plugin_scan(const cnnelm_plugin_dirs *dirs, void (*fn)(const char *path, void *user),
                       void *user);

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
