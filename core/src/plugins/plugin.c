/* cnnelm plugin loader: search path, dlopen, and the checks that turn a bad plugin into a
 * message naming the file instead of a crash. */
#define _GNU_SOURCE
#include "cnnelm/plugin.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <stdatomic.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where plugins sit relative to the code that loads them, never an absolute path: an installed
 * copy must not search the build tree it came from or a prefix it was not installed in. */
#ifndef CNNELM_BIN_TO_PLUGINS
#define CNNELM_BIN_TO_PLUGINS "../lib/cnnelm"
#endif

#define MAX_DIRS CNNELM_PLUGIN_MAX_DIRS

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

const char *cnnelm_status_name(cnnelm_status s)
{
    switch (s) {
    case CNNELM_OK: return "ok";
    case CNNELM_ERR_INVALID_ARGUMENT: return "invalid argument";
    case CNNELM_ERR_OUT_OF_MEMORY: return "out of memory";
    case CNNELM_ERR_DEVICE: return "device error";
    case CNNELM_ERR_UNSUPPORTED: return "unsupported";
    case CNNELM_ERR_NOT_POSITIVE_DEFINITE: return "not positive definite";
    case CNNELM_ERR_BUILD: return "device code build failed";
    case CNNELM_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

/* --allow-insecure-plugins: the one setting of the plugin registry (see plugin.h). */
static atomic_int allow_insecure;

void cnnelm_plugin_allow_insecure(int allow)
{
    atomic_store(&allow_insecure, allow != 0);
}

void cnnelm_plugin_dirs_free(cnnelm_plugin_dirs *d)
{
    if (!d)
        return;
    for (int i = 0; i < d->n; i++)
        free(d->dir[i]);
    d->n = 0;
}

/* Appends `dir` (made absolute against the working directory; symlinks resolved when it exists,
 * so what is listed is where files really come from), dropping repeats. */
static int add_dir(cnnelm_plugin_dirs *d, const char *dir, cnnelm_error *err)
{
    char joined[PATH_MAX + 1], real[PATH_MAX];
    if (dir[0] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            return cnnelm_fail(err, "plugin search path entry '%s': cannot read the working directory",
                               dir);
        if (snprintf(joined, sizeof joined, "%s/%s", cwd, dir) >= (int)sizeof joined)
            return cnnelm_fail(err, "plugin search path entry '%.200s...': path too long", dir);
        dir = joined;
    }
    if (realpath(dir, real))
        dir = real;
    for (int i = 0; i < d->n; i++)
        if (strcmp(d->dir[i], dir) == 0)
            return 0;
    if (d->n >= MAX_DIRS)
        return cnnelm_fail(err, "plugin search path: more than %d directories", MAX_DIRS);
    if (!(d->dir[d->n] = strdup(dir)))
        return cnnelm_fail(err, "out of memory");
    d->n++;
    return 0;
}

/* "./x", "../x", "." and "..": relative on purpose. */
static int explicitly_relative(const char *e, size_t len)
{
    return (len >= 1 && e[0] == '.' && (len == 1 || e[1] == '/')) ||
           (len >= 2 && e[0] == '.' && e[1] == '.' && (len == 2 || e[2] == '/'));
}

/* Adds each entry of a colon-separated list. `from_env`: a bare relative entry is refused, so
 * the directory a user happens to be in cannot supply plugins. */
static int add_list(cnnelm_plugin_dirs *d, const char *list, int from_env, cnnelm_error *err)
{
    if (!list)
        return 0;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len >= PATH_MAX)
            return cnnelm_fail(err, "plugin search path entry '%.200s...': path too long", p);
        if (len > 0) {
            char entry[PATH_MAX];
            memcpy(entry, p, len);
            entry[len] = '\0';
            if (from_env && entry[0] != '/' && !explicitly_relative(entry, len))
                return cnnelm_fail(err, "CNNELM_PLUGIN_PATH entry '%s' is a relative path: write "
                                   "'./%s' to search it from the working directory, or give an "
                                   "absolute path", entry, entry);
            if (add_dir(d, entry, err))
                return -1;
        }
        if (!end)
            return 0;
        p = end + 1;
    }
}

/* The install-relative directory: <libdir>/cnnelm beside libcnnelm.so when this code runs from
 * the shared library, <bindir>/CNNELM_BIN_TO_PLUGINS when it is linked into the program (the
 * cnnelm command and the tests). The build tree has the install layout (bin/, lib/cnnelm/), so
 * the same rule finds build/lib/cnnelm there and nothing else. */
static int install_relative_dir(char *out, size_t cap)
{
    Dl_info self, prog;
    if (!dladdr((void *)&cnnelm_plugin_dirs_get, &self) || !self.dli_fname)
        return 0;
    /* the program's own program headers lie in its first mapped segment */
    const void *phdr = (const void *)getauxval(AT_PHDR);
    int in_program = !phdr || !dladdr(phdr, &prog) || prog.dli_fbase == self.dli_fbase;
    char file[PATH_MAX];
    if (in_program) {
        ssize_t len = readlink("/proc/self/exe", file, sizeof file - 1);
        if (len <= 0)
            return 0;
        file[len] = '\0';
    } else if (!realpath(self.dli_fname, file)) {
        return 0;
    }
    char *slash = strrchr(file, '/');
    if (!slash)
        return 0;
    *slash = '\0';
    return snprintf(out, cap, "%s/%s", file, in_program ? CNNELM_BIN_TO_PLUGINS : "cnnelm") < (int)cap;
}

int cnnelm_plugin_dirs_get(const char *extra, cnnelm_plugin_dirs *out, cnnelm_error *err)
{
    memset(out, 0, sizeof *out);
    char here[PATH_MAX];
    if (add_list(out, extra, 0, err) || add_list(out, getenv("CNNELM_PLUGIN_PATH"), 1, err) ||
        (install_relative_dir(here, sizeof here) && add_dir(out, here, err))) {
        cnnelm_plugin_dirs_free(out);
        return -1;
    }
    return 0;
}

/* One path a plugin comes through (the file, or a directory holding it or its link) may be
 * replaced only by root or the user: owned by one of them, not writable by group or others. */
static int check_trusted(const char *plugin, const char *what, const char *path, cnnelm_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return cnnelm_fail(err, "%s: cannot inspect %s %s", plugin, what, path);
    const char *why = NULL;
    char owner[64];
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        snprintf(owner, sizeof owner, "owned by uid %u (neither root nor you)", (unsigned)st.st_uid);
        why = owner;
    } else if (st.st_mode & S_IWOTH) {
        why = "writable by others";
    } else if (st.st_mode & S_IWGRP) {
        why = "writable by its group";
    }
    if (!why)
        return 0;
    if (atomic_load(&allow_insecure)) {
        fprintf(stderr, "cnnelm: warning: loading plugin %s although %s %s is %s "
                "(--allow-insecure-plugins)\n", plugin, what, path, why);
        return 0;
    }
    return cnnelm_fail(err, "%s: refusing to load plugin: %s %s is %s (mode %04o); anyone who can "
                       "replace it runs code in cnnelm (fix: chmod go-w, chown; or pass "
                       "--allow-insecure-plugins)", plugin, what, path, why,
                       (unsigned)(st.st_mode & 07777));
}

/* Writes the directory part of `file` (which has a slash) into dir. */
static void dir_of(const char *file, char *dir, size_t cap)
{
    const char *slash = strrchr(file, '/');
    if (slash == file)
        snprintf(dir, cap, "/");
    else
        snprintf(dir, cap, "%.*s", (int)(slash - file), file);
}

/* Resolves `file` (symlinks and all) into `real` and checks the file, its directory, and the
 * directory the name was found in when that is another one (a link there can be replaced). */
static int resolve_and_check(const char *file, char *real, cnnelm_error *err)
{
    if (!realpath(file, real))
        return cnnelm_fail(err, "%s: no such plugin file", file);
    struct stat st;
    if (stat(real, &st) != 0 || !S_ISREG(st.st_mode))
        return cnnelm_fail(err, "%s: not a regular file%s%s", file, strcmp(file, real) ? " at " : "",
                           strcmp(file, real) ? real : "");
    char dir[PATH_MAX], link_dir[PATH_MAX + 1], link_real[PATH_MAX];
    dir_of(real, dir, sizeof dir);
    if (check_trusted(file, "the file", real, err) || check_trusted(file, "its directory", dir, err))
        return -1;
    if (strchr(file, '/'))
        dir_of(file, link_dir, sizeof link_dir);
    else
        snprintf(link_dir, sizeof link_dir, ".");
    if (realpath(link_dir, link_real) && strcmp(link_real, dir) != 0 &&
        check_trusted(file, "the directory of its link", link_real, err))
        return -1;
    return 0;
}

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
    if (resolve_and_check(file, real, err))
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
