/* plugin-check's loading checks: the entry, the table, init() and shutdown() in a child whose
 * stage survives a crash, what the parent learns of the table (its ops and 1.1 slots), then
 * device_count, device_info and device_limits of every device, each in a child. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "base/child.h"
#include "report/plugin_check_internal.h"

/* Is the op's slot filled in the plugin's table? (its offset from the op table) */
static int has_op(const cnnelm_backend *be, cnnelm_op_id op) { return cnnelm_op_has_slot(be, op); }

static void child_load(void *arg, void *reply, size_t size)
{
    (void)reply;
    (void)size;
    load_reply *r = arg;
    cnnelm_plugin *p = NULL;
    cnnelm_error e = { "" };
    snprintf(r->stage, sizeof r->stage, "entry");
    if (cnnelm_child_table_with_init(r->file)) /* the entry ran: what follows is init() */
        snprintf(r->stage, sizeof r->stage, "init");
    if (cnnelm_plugin_load_file(r->file, &p, &e) != 0) {
        snprintf(r->message, sizeof r->message, "%.500s", e.msg);
        return;
    }
    r->ok = 1;
    snprintf(r->name, sizeof r->name, "%s", p->name);
    snprintf(r->description, sizeof r->description, "%s", p->ops->description ? p->ops->description : "");
    r->abi_major = p->ops->abi_major;
    r->abi_minor = p->ops->abi_minor;
    for (int op = 0; op < CNNELM_OP_COUNT; op++)
        if (has_op(p->ops, (cnnelm_op_id)op))
            r->ops |= 1u << op;
#define V11_BIT_(f) if (CNNELM_BACKEND_HAS(p->ops, f)) r->v11 |= 1u << V11_##f;
    V11_SLOTS(V11_BIT_)
#undef V11_BIT_
    snprintf(r->stage, sizeof r->stage, "shutdown");
    cnnelm_plugin_unload(p); /* shutdown(), then dlclose */
    snprintf(r->stage, sizeof r->stage, "done");
}

/* device_count (index < 0), device_info or device_limits (limits != 0) of one device, through
 * the 1.1 slots with the plugin's state where the plugin has them. */
typedef struct device_arg {
    const char *file;
    int index, limits;
} device_arg;

typedef struct device_reply {
    int status;  /* a cnnelm_status, or -1: the plugin did not load */
    int count;
    cnnelm_device_info info;
    cnnelm_device_limits lim;
    char message[512];
} device_reply;

static void child_device(void *arg, void *reply, size_t size)
{
    (void)size;
    const device_arg *a = arg;
    device_reply *r = reply;
    cnnelm_plugin *p = NULL;
    cnnelm_error e = { "" };
    r->status = -1;
    if (cnnelm_plugin_load_file(a->file, &p, &e) != 0) {
        snprintf(r->message, sizeof r->message, "%.500s", e.msg);
        return;
    }
    if (a->index < 0) {
        r->status = cnnelm_plugin_device_count(p, &r->count, r->message, sizeof r->message);
    } else if (a->limits) {
        r->lim.struct_size = sizeof r->lim;
        r->status = p->ops->device_limits(p->state, a->index, &r->lim);
    } else {
        r->status = cnnelm_plugin_device_info(p, a->index, &r->info);
    }
    r->message[sizeof r->message - 1] = '\0';
    r->info.name[sizeof r->info.name - 1] = r->info.vendor[sizeof r->info.vendor - 1] = '\0';
    /* no unload: shutdown() is checked once, in the loading child */
}

/* Loading (the entry, the table, init() and shutdown() where the plugin has them), then
 * device_count and device_info (device_limits too where the plugin has it) of every device,
 * each in a child. Returns the device count when the plugin loaded (*lr filled), -1 when
 * nothing more can be checked (also when the count says there is no device `device`: every
 * case would fail only for want of it). */
int cnnelm_pcheck_loading(const char *file, int device, double timeout, FILE *out, tally *t, load_reply *lr)
{
    char why[256], res[800];
    double secs = 0;
    int dummy;
    load_reply *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        snprintf(res, sizeof res, "FAIL: cannot map memory for the loading child: %s", strerror(errno));
        cnnelm_pcheck_verdict(out, t, "load", "", 0, res);
        return -1;
    }
    memset(sh, 0, sizeof *sh);
    sh->file = file;
    int crashed = cnnelm_child_run(child_load, sh, &dummy, sizeof dummy, timeout, &secs, why, sizeof why) != 0;
    *lr = *sh;
    munmap(sh, sizeof *sh);
    /* the child may have crashed (in shutdown, after the name was written): every string ends */
    lr->stage[sizeof lr->stage - 1] = '\0';
    lr->message[sizeof lr->message - 1] = '\0';
    lr->name[sizeof lr->name - 1] = lr->description[sizeof lr->description - 1] = '\0';
    int in_init = strcmp(lr->stage, "init") == 0, in_shutdown = strcmp(lr->stage, "shutdown") == 0;
    if (crashed && !in_shutdown) {
        if (in_init) {
            cnnelm_pcheck_row(out, "load", "entry, table", "PASS");
            cnnelm_pcheck_note(t, "load", "", 1, "", 0, -1);
            snprintf(res, sizeof res, "CRASH: %s", why);
            cnnelm_pcheck_verdict(out, t, "init", "", secs, res);
        } else {
            snprintf(res, sizeof res, "CRASH: loading it (its entry function) %s", why);
            cnnelm_pcheck_verdict(out, t, "load", "", secs, res);
        }
        return -1;
    }
    if (!lr->ok) {
        /* the loader's message for a failed init: "... failed to start: <status>: <message>" */
        const char *m = in_init ? strstr(lr->message, "failed to start: ") : NULL;
        if (m) {
            cnnelm_pcheck_row(out, "load", "entry, table", "PASS");
            cnnelm_pcheck_note(t, "load", "", 1, "", 0, -1);
            snprintf(res, sizeof res, "FAIL: returned %.500s", m + 17);
            cnnelm_pcheck_verdict(out, t, "init", "", secs, res);
        } else {
            snprintf(res, sizeof res, "FAIL: %s", lr->message);
            cnnelm_pcheck_verdict(out, t, "load", "", secs, res);
        }
        return -1;
    }
    fprintf(out, "  plugin '%s' (ABI %u.%u): %s\n", lr->name, lr->abi_major, lr->abi_minor, lr->description);
    cnnelm_pcheck_row(out, "load", "entry, table", "PASS");
    cnnelm_pcheck_note(t, "load", "", 1, "", secs, -1);
    if (HAS_V11(lr, init))
        cnnelm_pcheck_verdict(out, t, "init", "", 0, "PASS");
    if (crashed) {
        snprintf(res, sizeof res, "CRASH: %s (after init, with no context open)", why);
        cnnelm_pcheck_verdict(out, t, "shutdown", "", secs, res);
    } else if (HAS_V11(lr, shutdown)) {
        cnnelm_pcheck_verdict(out, t, "shutdown", "", 0, "PASS");
    }

    const char *count_slot = HAS_V11(lr, device_count_v11) ? "device_count_v11" : "device_count";
    const char *info_slot = HAS_V11(lr, device_info_v11) ? "device_info_v11" : "device_info";
    device_arg da = { file, -1, 0 };
    device_reply dr;
    int count = 0, counted = 0;
    if (cnnelm_child_run(child_device, &da, &dr, sizeof dr, timeout, &secs, why, sizeof why) != 0) {
        snprintf(res, sizeof res, "CRASH: %s", why);
    } else if (dr.status != CNNELM_OK) {
        snprintf(res, sizeof res, "FAIL: %.500s", dr.message[0] ? dr.message : cnnelm_status_name((cnnelm_status)dr.status));
    } else if (dr.count < 0 || dr.count > 4096) {
        snprintf(res, sizeof res, "FAIL: an impossible count (%d)", dr.count);
    } else {
        snprintf(res, sizeof res, "PASS: %d device%s", dr.count, dr.count == 1 ? "" : "s");
        count = dr.count;
        counted = 1;
    }
    cnnelm_pcheck_verdict(out, t, count_slot, "", secs, res);
    for (int i = 0; i < count && i < 64; i++) {
        char shape[32];
        snprintf(shape, sizeof shape, "device %d", i);
        da.index = i;
        if (cnnelm_child_run(child_device, &da, &dr, sizeof dr, timeout, &secs, why, sizeof why) != 0)
            snprintf(res, sizeof res, "CRASH: %s", why);
        else if (dr.status != CNNELM_OK)
            snprintf(res, sizeof res, "FAIL: %s", dr.status == -1 ? dr.message : cnnelm_status_name((cnnelm_status)dr.status));
        else if (!dr.info.name[0])
            snprintf(res, sizeof res, "FAIL: no device name");
        else
            snprintf(res, sizeof res, "PASS: %.120s", dr.info.name);
        cnnelm_pcheck_verdict(out, t, info_slot, shape, secs, res);
        if (!HAS_V11(lr, device_limits))
            continue;
        da.limits = 1;
        if (cnnelm_child_run(child_device, &da, &dr, sizeof dr, timeout, &secs, why, sizeof why) != 0)
            snprintf(res, sizeof res, "CRASH: %s", why);
        else if (dr.status != CNNELM_OK)
            snprintf(res, sizeof res, "FAIL: %s", dr.status == -1 ? dr.message : cnnelm_status_name((cnnelm_status)dr.status));
        else if (dr.lim.alignment & (dr.lim.alignment - 1))
            snprintf(res, sizeof res, "FAIL: alignment %llu is not a power of two",
                     (unsigned long long)dr.lim.alignment);
        else
            snprintf(res, sizeof res, "PASS: alignment %llu, largest buffer %.1f MiB, chunk %u, transfers %llu bytes",
                     (unsigned long long)dr.lim.alignment, (double)dr.lim.max_alloc_bytes / (1024.0 * 1024),
                     dr.lim.preferred_chunk, (unsigned long long)dr.lim.preferred_transfer_bytes);
        da.limits = 0;
        cnnelm_pcheck_verdict(out, t, "device_limits", shape, secs, res);
    }
    if (counted && (device < 0 || device >= count)) {
        char what[32];
        snprintf(what, sizeof what, "--device %d", device);
        snprintf(res, sizeof res, "FAIL: the plugin has %d device%s; see `cnnelm devices`", count,
                 count == 1 ? "" : "s");
        cnnelm_pcheck_verdict(out, t, what, "", 0, res);
        return -1;
    }
    return count;
}
