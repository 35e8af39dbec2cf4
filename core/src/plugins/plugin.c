/* cnnelm plugin loader: dlopen, and the checks of the table that turn a bad plugin into a
 * message naming the file instead of a crash; the backend naming rule and the scan of the search
 * path; what every plugin is given and the calls that pick a 1.0 or 1.1 slot. The search path
 * and the file permission rules are in plugin_path.c. */
#define _GNU_SOURCE
#include "cnnelm/plugin.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>

#include "cnnelm/backend_util.h"
#include "plugins/plugin_path.h"

/* What every plugin is given (cnnelm_plugin_set_host): part of the plugin registry. */
static struct {
    cnnelm_log_fn log;
    void *log_user;
    char cache_dir[4096];
} host;

static void host_params(cnnelm_plugin_params *p)
{
    p->cache_dir = host.cache_dir[0] ? host.cache_dir : NULL;
    p->log = host.log;
    p->log_user = host.log_user;
}

/* the words are the plugin SDK's (backend_util.h), so a plugin's messages and ours agree */
const char *cnnelm_status_name(cnnelm_status s) { return cnnelm_backend_status_name(s); }

/* Slots every 1.0 plugin must fill; the offsets keep this table honest if the ABI grows. The
 * ops are optional: one a plugin lacks runs on the CPU reference (core/src/ops.c). */
static const struct {
    const char *name;
    size_t offset;
} required_slots[] = {
#define SLOT(f) { #f, offsetof(cnnelm_backend, f) }
    SLOT(device_count), SLOT(device_info), SLOT(context_open), SLOT(context_close),
    SLOT(last_error), SLOT(buffer_alloc), SLOT(buffer_free), SLOT(buffer_write),
    SLOT(buffer_read),
#undef SLOT
};

static int check_table(const char *file, const cnnelm_backend *t, cnnelm_error *err)
{
    if (!t)
        return cnnelm_fail(err, "%s: %s() returned NULL", file, CNNELM_BACKEND_ENTRY);
    if (t->abi_major != CNNELM_BACKEND_ABI_MAJOR)
        return cnnelm_fail(err, "%s: incompatible plugin ABI version %u.%u (this cnnelm needs %u.x)",
                           file, t->abi_major, t->abi_minor, CNNELM_BACKEND_ABI_MAJOR);
    /* A 1.x table can be shorter than ours only if it is an older minor: never shorter than 1.0. */
    size_t v10_size = offsetof(cnnelm_backend, elm_solve) + sizeof t->elm_solve;
    if (t->table_size < v10_size)
        return cnnelm_fail(err, "%s: plugin table is %u bytes, smaller than ABI 1.0's %zu",
                           file, t->table_size, v10_size);
    if (!t->name || !t->name[0])
        return cnnelm_fail(err, "%s: plugin table has no name", file);
    for (size_t i = 0; i < sizeof required_slots / sizeof required_slots[0]; i++) {
        void *slot;
        memcpy(&slot, (const char *)t + required_slots[i].offset, sizeof slot);
        if (!slot)
            return cnnelm_fail(err, "%s: plugin '%s' has no '%s' (a required slot)", file, t->name,
                               required_slots[i].name);
    }
    return 0;
}

int cnnelm_plugin_load_file(const char *file, cnnelm_plugin **out, cnnelm_error *err)
{
    *out = NULL;
    /* what is opened is the resolved file, after its checks: a link is shown as its target */
    char real[PATH_MAX];
    if (cnnelm_plugin_resolve_and_check(file, real, err))
        return -1;
    void *h = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return cnnelm_fail(err, "%s: cannot load plugin: %s", file, dlerror());
    dlerror();
    void *sym = dlsym(h, CNNELM_BACKEND_ENTRY);
    if (!sym) {
        dlclose(h);
        return cnnelm_fail(err, "%s: not a cnnelm plugin: no entry point '%s'", file,
                           CNNELM_BACKEND_ENTRY);
    }
    cnnelm_backend_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry); /* object pointer to function pointer, as POSIX allows */
    const cnnelm_backend *t = entry();
    if (check_table(file, t, err) != 0) {
        dlclose(h);
        return -1;
    }
    cnnelm_plugin *p = calloc(1, sizeof *p);
    if (!p) {
        dlclose(h);
        return cnnelm_fail(err, "%s: out of memory", file);
    }
    if (CNNELM_BACKEND_HAS(t, init)) {
        cnnelm_plugin_params params = { .struct_size = sizeof params };
        host_params(&params);
        char why[512] = "";
        cnnelm_status ist = t->init(&params, &p->state, why, sizeof why);
        if (ist != CNNELM_OK) {
            /* the message first: t and its strings live in the library dlclose unmaps */
            cnnelm_fail(err, "%s: plugin '%s' failed to start: %s: %s", file, t->name,
                        cnnelm_status_name(ist), why[0] ? why : "no detail");
            free(p);
            dlclose(h);
            return -1;
        }
    }
    p->ops = t;
    p->handle = h;
    snprintf(p->name, sizeof p->name, "%s", t->name);
    snprintf(p->path, sizeof p->path, "%s", real);
    *out = p;
    return 0;
}

static int valid_name(const char *name)
{
    if (!name[0] || strlen(name) > 48)
        return 0;
    for (const char *c = name; *c; c++)
        if (!(*c == '-' || *c == '_' || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
              (*c >= '0' && *c <= '9')))
            return 0;
    return 1;
}

int cnnelm_plugin_load(const char *name, const char *extra_path, cnnelm_plugin **out,
                       cnnelm_error *err)
{
    *out = NULL;
    if (!valid_name(name))
        return cnnelm_fail(err, "invalid backend name '%s' (letters, digits, '-' and '_' only)", name);
    cnnelm_plugin_dirs dirs;
    if (cnnelm_plugin_dirs_get(extra_path, &dirs, err))
        return -1;
    char looked[2048] = "";
    for (int i = 0; i < dirs.n; i++) {
        char file[PATH_MAX + 64];
        snprintf(file, sizeof file, "%s/libcnnelm-%s.so", dirs.dir[i], name);
        struct stat st;
        if (stat(file, &st) == 0) {
            int rc = cnnelm_plugin_load_file(file, out, err);
            cnnelm_plugin_dirs_free(&dirs);
            return rc;
        }
        size_t used = strlen(looked);
        snprintf(looked + used, sizeof looked - used, "%s%s", i ? ", " : "", dirs.dir[i]);
    }
    int n = dirs.n;
    cnnelm_plugin_dirs_free(&dirs);
    return cnnelm_fail(err, "backend '%s' not found: no libcnnelm-%s.so in %s "
                       "(set plugin_path in the config or CNNELM_PLUGIN_PATH)", name, name,
                       n ? looked : "(empty search path)");
}

void cnnelm_plugin_unload(cnnelm_plugin *p)
{
    if (!p)
        return;
    if (p->ops && CNNELM_BACKEND_HAS(p->ops, shutdown))
        p->ops->shutdown(p->state);
    if (p->handle)
        dlclose(p->handle);
    free(p);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int cnnelm_plugin_scan(const cnnelm_plugin_dirs *dirs, void (*fn)(const char *path, void *user),
                       void *user)
{
    int n = dirs->n;
    char *seen[256];
    int n_seen = 0, found = 0;
    for (int i = 0; i < n; i++) {
        DIR *d = opendir(dirs->dir[i]);
        if (!d)
            continue;
        char *names[256];
        int k = 0;
        struct dirent *e;
        while ((e = readdir(d)) && k < 256) {
            size_t len = strlen(e->d_name);
            /* only the naming rule's files: libcnnelm-<valid backend name>.so */
            char name[64];
            if (strncmp(e->d_name, "libcnnelm-", 10) != 0 || len <= 13 || len - 13 >= sizeof name ||
                strcmp(e->d_name + len - 3, ".so") != 0)
                continue;
            snprintf(name, sizeof name, "%.*s", (int)(len - 13), e->d_name + 10);
            if (valid_name(name))
                names[k++] = strdup(e->d_name);
        }
        closedir(d);
        qsort(names, (size_t)k, sizeof names[0], cmp_str);
        for (int j = 0; j < k; j++) {
            int dup = 0;
            for (int s = 0; s < n_seen; s++)
                dup |= strcmp(seen[s], names[j]) == 0;
            if (dup || !names[j] || n_seen >= 256) {
                free(names[j]);
                continue;
            }
            char file[PATH_MAX + 300];
            snprintf(file, sizeof file, "%s/%s", dirs->dir[i], names[j]);
            seen[n_seen++] = names[j];
            fn(file, user);
            found++;
        }
    }
    for (int s = 0; s < n_seen; s++)
        free(seen[s]);
    return found;
}

void cnnelm_plugin_set_host(cnnelm_log_fn log, void *log_user, const char *cache_dir)
{
    host.log = log;
    host.log_user = log_user;
    snprintf(host.cache_dir, sizeof host.cache_dir, "%s", cache_dir ? cache_dir : "");
}

cnnelm_status cnnelm_plugin_device_count(const cnnelm_plugin *p, int *count, char *why,
                                         size_t why_size)
{
    *count = 0;
    if (why_size)
        why[0] = '\0';
    cnnelm_status st;
    if (CNNELM_BACKEND_HAS(p->ops, device_count_v11))
        st = p->ops->device_count_v11(p->state, count, why, why_size);
    else
        st = p->ops->device_count(count);
    if (st != CNNELM_OK && why_size && !why[0])
        snprintf(why, why_size, "device_count returned %s", cnnelm_status_name(st));
    return st;
}

cnnelm_status cnnelm_plugin_device_info(const cnnelm_plugin *p, int index, cnnelm_device_info *info)
{
    if (CNNELM_BACKEND_HAS(p->ops, device_info_v11))
        return p->ops->device_info_v11(p->state, index, info);
    return p->ops->device_info(index, info);
}

cnnelm_status cnnelm_plugin_context_open(const cnnelm_plugin *p, int device, int threads,
                                         cnnelm_backend_ctx **out, char *why, size_t why_size)
{
    cnnelm_context_params params = { .struct_size = sizeof params, .threads = threads };
    cnnelm_plugin_params hp;
    host_params(&hp);
    params.cache_dir = hp.cache_dir;
    params.log = hp.log;
    params.log_user = hp.log_user;
    *out = NULL;
    if (CNNELM_BACKEND_HAS(p->ops, context_open_v11))
        return p->ops->context_open_v11(p->state, device, &params, out, why, why_size);
    return p->ops->context_open(device, &params, out, why, why_size);
}
