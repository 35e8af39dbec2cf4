/* cnnelm devices: every backend plugin on the search path and its devices, each plugin probed in
 * a child process (one that crashes or hangs is listed as broken), written to the caller's
 * stream. */
#define _GNU_SOURCE /* MAP_ANONYMOUS */
#include "cnnelm/run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/child.h"
#include "cnnelm/plugin.h"

typedef struct scan_ctx {
    int verbose, backends;
    double timeout_s;
    FILE *out;
} scan_ctx;

static const char *kind_name(cnnelm_device_kind k)
{
    static const char *names[] = { "cpu", "gpu", "accelerator", "fpga", "other" };
    return (unsigned)k <= CNNELM_DEVICE_OTHER ? names[k] : "unknown";
}

/* What a child learns of one plugin file: loading it, its devices, and how far it got (in
 * memory shared with the parent, so a crash still says where). */
#define PROBE_TIMEOUT_S 30
#define PROBE_DEVICES 16
typedef struct probe_reply {
    int loaded;
    char message[512];
    char name[64], description[256];
    unsigned abi_major, abi_minor;
    int init_failed;  /* loading stopped at the plugin's init() */
    int count_status, count;
    char count_why[256];
    int info_status[PROBE_DEVICES];
    cnnelm_device_info info[PROBE_DEVICES];
} probe_reply;

typedef struct probe_arg {
    const char *path;
    char *stage;  /* shared with the parent */
} probe_arg;

static void probe_child(void *arg, void *reply, size_t size)
{
    (void)size;
    const probe_arg *a = arg;
    probe_reply *r = reply;
    cnnelm_plugin *p;
    cnnelm_error e = { "" };
    snprintf(a->stage, 64, "loading it (its entry function)");
    if (cnnelm_child_table_with_init(a->path)) /* the entry ran: what follows is init() */
        snprintf(a->stage, 64, "its init()");
    if (cnnelm_plugin_load_file(a->path, &p, &e) != 0) {
        /* the loader's words for a failed init (a table it refused fails before init) */
        r->init_failed = strcmp(a->stage, "its init()") == 0 && strstr(e.msg, "failed to start: ");
        snprintf(r->message, sizeof r->message, "%.500s", e.msg);
        return;
    }
    r->loaded = 1;
    snprintf(r->name, sizeof r->name, "%s", p->name);
    snprintf(r->description, sizeof r->description, "%s", p->ops->description ? p->ops->description : "");
    r->abi_major = p->ops->abi_major;
    r->abi_minor = p->ops->abi_minor;
    /* the 1.1 slots with the plugin's state when it has them, the 1.0 ones otherwise */
    int v11 = CNNELM_BACKEND_HAS(p->ops, device_count_v11);
    snprintf(a->stage, 64, "%s", v11 ? "device_count (device_count_v11)" : "device_count");
    r->count_status = cnnelm_plugin_device_count(p, &r->count, r->count_why, sizeof r->count_why);
    r->count_why[sizeof r->count_why - 1] = '\0';
    v11 = CNNELM_BACKEND_HAS(p->ops, device_info_v11);
    for (int i = 0; r->count_status == CNNELM_OK && i < r->count && i < PROBE_DEVICES; i++) {
        snprintf(a->stage, 64, "device_info of device %d%s", i, v11 ? " (device_info_v11)" : "");
        r->info_status[i] = cnnelm_plugin_device_info(p, i, &r->info[i]);
    }
}

/* Is the file name libcnnelm-<name>.so with a name the loader accepts? */
static int plugin_file_name_ok(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    if (strncmp(base, "libcnnelm-", 10) != 0 || len <= 13 || strcmp(base + len - 3, ".so") != 0)
        return 0;
    for (const char *c = base + 10; c < base + len - 3; c++)
        if (!(*c == '-' || *c == '_' || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
              (*c >= '0' && *c <= '9')))
            return 0;
    return 1;
}

/* Lists one plugin, probed in a child process: a plugin that crashes or hangs while loading or
 * describing its devices is listed as broken, and the listing goes on. */
static void list_plugin(const char *path, void *user)
{
    scan_ctx *s = user;
    if (!plugin_file_name_ok(path))
        return;
    char *stage = mmap(NULL, 64, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (stage == MAP_FAILED) {
        fprintf(s->out, "%s: broken: cannot probe it: %s\n", path, strerror(errno));
        return;
    }
    stage[0] = '\0';
    probe_arg a = { path, stage };
    probe_reply *r = calloc(1, sizeof *r);
    char why[256];
    if (!r) {
        fprintf(s->out, "%s: broken: cannot probe it: out of memory\n", path);
    } else if (cnnelm_child_run(probe_child, &a, r, sizeof *r, s->timeout_s, NULL, why, sizeof why) != 0) {
        stage[63] = '\0';
        fprintf(s->out, "%s: broken: %s%s%s\n", path, why, stage[0] ? " in " : "", stage[0] ? stage : "");
    } else if (!r->loaded) {
        const char *m = r->init_failed ? strstr(r->message, "failed to start: ") : NULL;
        if (m)
            fprintf(s->out, "%s: broken: init failed: %s\n", path, m + 17);
        else
            fprintf(s->out, "%s: unusable: %s\n", path, r->message);
    } else {
        s->backends++;
        fprintf(s->out, "backend %s (%s, ABI %u.%u): %s\n", r->name, path, r->abi_major, r->abi_minor, r->description);
        if (r->count_status != CNNELM_OK)
            fprintf(s->out, "  cannot count devices: %.250s\n", r->count_why);
        else if (r->count == 0)
            fprintf(s->out, "  no devices\n");
        for (int i = 0; r->count_status == CNNELM_OK && i < r->count; i++) {
            if (i >= PROBE_DEVICES) {
                fprintf(s->out, "  ... and %d more devices\n", r->count - PROBE_DEVICES);
                break;
            }
            cnnelm_device_info *info = &r->info[i];
            if (r->info_status[i] != CNNELM_OK) {
                fprintf(s->out, "  device %d: cannot describe it\n", i);
                continue;
            }
            info->name[sizeof info->name - 1] = info->vendor[sizeof info->vendor - 1] = '\0';
            info->driver[sizeof info->driver - 1] = '\0';
            fprintf(s->out, "  device %d: %s [%s], vendor %s, %u compute units, %.1f GiB memory", i, info->name,
                   kind_name(info->kind), info->vendor, info->compute_units,
                   (double)info->memory_bytes / (1024.0 * 1024 * 1024));
            if (s->verbose && info->driver[0])
                fprintf(s->out, ", driver %s", info->driver);
            fprintf(s->out, "\n");
        }
    }
    fflush(s->out);
    free(r);
    munmap(stage, 64);
}

int cnnelm_run_devices(const char *plugin_path, int verbose, FILE *out, cnnelm_error *err)
{
    return cnnelm_run_devices_timeout(plugin_path, verbose, PROBE_TIMEOUT_S, out, err);
}

int cnnelm_run_devices_timeout(const char *plugin_path, int verbose, double timeout_s, FILE *out,
                               cnnelm_error *err)
{
    scan_ctx s = { verbose, 0, timeout_s > 0 ? timeout_s : PROBE_TIMEOUT_S, out };
    cnnelm_plugin_dirs dirs;
    if (cnnelm_plugin_dirs_get(plugin_path, &dirs, err))
        return -1;
    if (verbose) {
        fprintf(out, "plugin search path:\n");
        for (int i = 0; i < dirs.n; i++)
            fprintf(out, "  %s\n", dirs.dir[i]);
    }
    int found = cnnelm_plugin_scan(&dirs, list_plugin, &s);
    if (found == 0) {
        char looked[2048] = "";
        for (int i = 0; i < dirs.n; i++) {
            size_t used = strlen(looked);
            snprintf(looked + used, sizeof looked - used, "%s%s", i ? ", " : "", dirs.dir[i]);
        }
        cnnelm_plugin_dirs_free(&dirs);
        return cnnelm_fail(err, "no backend plugins (libcnnelm-*.so) found in %s", looked);
    }
    cnnelm_plugin_dirs_free(&dirs);
    return s.backends;
}
