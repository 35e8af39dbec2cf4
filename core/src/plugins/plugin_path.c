/* cnnelm plugin search path and file permission rules (see plugin_path.h): the directories
 * plugins are looked for in (the caller's list, CNNELM_PLUGIN_PATH, the install-relative one),
 * and the checks that a plugin file, its directory and the directory of its link can be replaced
 * only by root or the user (--allow-insecure-plugins relaxes them to a warning). */
#define _GNU_SOURCE
#include "plugins/plugin_path.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where plugins sit relative to the code that loads them, never an absolute path: an installed
 * copy must not search the build tree it came from or a prefix it was not installed in. */
#ifndef CNNELM_BIN_TO_PLUGINS
#define CNNELM_BIN_TO_PLUGINS "../lib/cnnelm"
#endif

#define MAX_DIRS CNNELM_PLUGIN_MAX_DIRS

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
int cnnelm_plugin_resolve_and_check(const char *file, char *real, cnnelm_error *err)
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
