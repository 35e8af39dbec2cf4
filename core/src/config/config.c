/* cnnelm configuration: defaults, loading a libconfig file plus "-s key=value" overrides
 * through the schema's checks, and the effective configuration as text. The schema and the
 * reference are in config_schema.c, the checks in config_checks.c, overrides in
 * config_overrides.c. */
#define _XOPEN_SOURCE 700

#include "config/config_schema.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cnnelm_config_defaults(cnnelm_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < cnnelm_schema_n; i++) {
        if (cnnelm_schema[i].worker == KEY_IN_WORKERS)
            cnnelm_schema_store_default(&cfg->workers[0], &cnnelm_schema[i]);
        else if (cnnelm_schema[i].worker == KEY_TOP)
            cnnelm_schema_store_default(cfg, &cnnelm_schema[i]);
    }
    cfg->n_workers = 1;
}

/* ---- the effective configuration as text ---- */

static config_setting_t *group_for(config_setting_t *root, const char *path)
{
    const char *dot = strchr(path, '.');
    if (!dot) return root;
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(dot - path), path);
    config_setting_t *g = config_setting_get_member(root, name);
    return g ? g : config_setting_add(root, name, CONFIG_TYPE_GROUP);
}

static void add_value(config_setting_t *parent, const key_def *k, const void *base)
{
    const char *name = cnnelm_schema_leaf(k->path);
    const char *p = (const char *)base + k->offset;
    switch (k->kind) {
    case K_INT: {
        long long v = cnnelm_schema_load_int(base, k);
        int wide = k->size != sizeof(int) && (v > INT_MAX || strcmp(k->path, "train.seed") == 0);
        config_setting_t *s = config_setting_add(parent, name, wide ? CONFIG_TYPE_INT64 : CONFIG_TYPE_INT);
        if (wide) config_setting_set_int64(s, v);
        else config_setting_set_int(s, (int)v);
        break;
    }
    case K_FLOAT: {
        double v;
        memcpy(&v, p, sizeof v);
        if (k->auto_ok && v == 0)
            config_setting_set_string(config_setting_add(parent, name, CONFIG_TYPE_STRING), "auto");
        else
            config_setting_set_float(config_setting_add(parent, name, CONFIG_TYPE_FLOAT), v);
        break;
    }
    case K_FLOATS: {
        config_setting_t *a = config_setting_add(parent, name, CONFIG_TYPE_ARRAY);
        cnnelm_float_list list;
        memcpy(&list, p, sizeof list);
        for (int i = 0; i < list.n; i++)
            config_setting_set_float(config_setting_add(a, NULL, CONFIG_TYPE_FLOAT), list.v[i]);
        break;
    }
    case K_ENUM:
        config_setting_set_string(config_setting_add(parent, name, CONFIG_TYPE_STRING),
                                  cnnelm_schema_enum_name(k->names, (int)cnnelm_schema_load_int(base, k)));
        break;
    case K_BOOL:
        config_setting_set_bool(config_setting_add(parent, name, CONFIG_TYPE_BOOL),
                                (int)cnnelm_schema_load_int(base, k));
        break;
    case K_NOISE: {
        config_setting_t *a = config_setting_add(parent, name, CONFIG_TYPE_ARRAY);
        unsigned mask = (unsigned)cnnelm_schema_load_int(base, k);
        for (int i = 0; k->names[i]; i++)
            if (mask >> i & 1u)
                config_setting_set_string(config_setting_add(a, NULL, CONFIG_TYPE_STRING), k->names[i]);
        break;
    }
    default:
        config_setting_set_string(config_setting_add(parent, name, CONFIG_TYPE_STRING), p);
    }
}

static char *effective_text(const cnnelm_config *cfg)
{
    config_t out;
    config_init(&out);
    config_setting_t *root = config_root_setting(&out);
    for (size_t i = 0; i < cnnelm_schema_n; i++)
        if (cnnelm_schema[i].worker == KEY_TOP)
            add_value(group_for(root, cnnelm_schema[i].path), &cnnelm_schema[i], cfg);
    config_setting_t *data = group_for(root, "data.x");
    config_setting_t *sources = config_setting_add(data, "sources", CONFIG_TYPE_LIST);
    for (int i = 0; i < cfg->data.n_sources; i++) {
        config_setting_t *g = config_setting_add(sources, NULL, CONFIG_TYPE_GROUP);
        const char *base = (const char *)cfg + (size_t)i * sizeof cfg->data.sources[0];
        for (size_t j = 0; j < cnnelm_schema_n; j++)
            if (cnnelm_schema[j].worker == KEY_IN_SOURCES)
                add_value(g, &cnnelm_schema[j], base);
    }
    config_setting_t *list = config_setting_add(root, "workers", CONFIG_TYPE_LIST);
    for (int w = 0; w < cfg->n_workers; w++) {
        config_setting_t *g = config_setting_add(list, NULL, CONFIG_TYPE_GROUP);
        for (size_t i = 0; i < cnnelm_schema_n; i++)
            if (cnnelm_schema[i].worker == KEY_IN_WORKERS)
                add_value(g, &cnnelm_schema[i], &cfg->workers[w]);
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f) {
        config_write(&out, f);
        if (fclose(f) != 0) {
            free(text);
            text = NULL;
        }
    }
    config_destroy(&out);
    return text;
}

/* ---- loading ---- */

static int read_file(config_t *conf, const char *path, cnnelm_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cnnelm_fail(err, "%s: cannot open: %s", path, strerror(errno));
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            size_t ncap = cap ? cap * 2 : 16384;
            char *t = realloc(text, ncap);
            if (!t) {
                free(text);
                fclose(f);
                return cnnelm_fail(err, "%s: out of memory", path);
            }
            text = t;
            cap = ncap;
        }
        size_t got = fread(text + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    int e = errno;
    fclose(f);
    if (bad) {
        free(text);
        return cnnelm_fail(err, "%s: cannot read: %s", path, strerror(e));
    }
    text[len] = 0;
    char tok[64];
    int line = cnnelm_config_find_wide_int(text, tok, sizeof tok);
    free(text);
    if (line)
        return cnnelm_fail(err, "%s:%d: integer %s does not fit in 32 bits; write it with the L suffix (%sL)",
                           path, line, tok, tok);

    /* @include paths are relative to the file's directory. */
    char dir[CNNELM_PATH_MAX];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    if (slash == path) snprintf(dir, sizeof dir, "/");
    config_set_include_dir(conf, dir);
    if (config_read_file(conf, path) != CONFIG_TRUE) {
        if (config_error_type(conf) == CONFIG_ERR_FILE_IO)
            return cnnelm_fail(err, "%s: cannot read: %s", config_error_file(conf) ? config_error_file(conf) : path,
                               config_error_text(conf) ? config_error_text(conf) : "I/O error");
        return cnnelm_fail(err, "%s:%d: %s", config_error_file(conf) ? config_error_file(conf) : path,
                           config_error_line(conf), config_error_text(conf) ? config_error_text(conf) : "parse error");
    }
    return 0;
}

/* Relative plugin_path entries name directories beside the config file, not wherever the
 * command runs (a directory a user happens to be in must not supply plugins); without a file,
 * the working directory. Rewritten absolute, so the effective config says what is searched. */
static int absolute_plugin_path(cnnelm_config *cfg, cnnelm_error *err)
{
    char base[CNNELM_PATH_MAX], out[CNNELM_PATH_MAX] = "";
    const char *slash = strrchr(cfg->path, '/');
    if (slash)
        snprintf(base, sizeof base, "%.*s", slash == cfg->path ? 1 : (int)(slash - cfg->path), cfg->path);
    else
        base[0] = '\0';
    if (base[0] != '/') {
        char cwd[CNNELM_PATH_MAX], rel[CNNELM_PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            return cnnelm_fail(err, "plugin_path: cannot read the working directory");
        snprintf(rel, sizeof rel, "%s", base);
        if (snprintf(base, sizeof base, "%s%s%s", cwd, rel[0] ? "/" : "", rel) >= (int)sizeof base)
            return cnnelm_fail(err, "plugin_path: the config file's directory is too long");
    }
    size_t used = 0;
    for (const char *p = cfg->plugin_path; *p;) {
        const char *end = strchr(p, ':');
        int len = end ? (int)(end - p) : (int)strlen(p);
        if (len > 0) {
            int n = p[0] == '/' ? snprintf(out + used, sizeof out - used, "%s%.*s", used ? ":" : "", len, p)
                                : snprintf(out + used, sizeof out - used, "%s%s/%.*s", used ? ":" : "",
                                           base, len, p);
            if (n < 0 || (size_t)n >= sizeof out - used)
                return cnnelm_fail(err, "plugin_path: too long once relative entries are made absolute "
                                   "against %s", base);
            used += (size_t)n;
        }
        if (!end)
            break;
        p = end + 1;
    }
    memcpy(cfg->plugin_path, out, sizeof out);
    return 0;
}

int cnnelm_config_load(cnnelm_config *cfg, const char *path, const char *const *overrides,
                       int n_overrides, cnnelm_error *err)
{
    cnnelm_config_defaults(cfg);
    if (path && strlen(path) >= sizeof cfg->path)
        return cnnelm_fail(err, "%.200s...: path too long", path);
    snprintf(cfg->path, sizeof cfg->path, "%s", path ? path : "");
    config_t conf;
    config_init(&conf);
    int rc = -1;
    if (path && *path && read_file(&conf, path, err))
        goto done;
    for (int i = 0; i < n_overrides; i++)
        if (cnnelm_config_apply_override(&conf, overrides[i], err))
            goto done;
    config_ctx c = {path && *path ? path : "(defaults)", err};
    if (cnnelm_config_check_group(&c, config_root_setting(&conf), "", cfg))
        goto done;
    if (cnnelm_config_check_relations(&c, &conf, cfg))
        goto done;
    if (absolute_plugin_path(cfg, err))
        goto done;
    cfg->text = effective_text(cfg);
    if (!cfg->text) {
        cnnelm_fail(err, "%s: out of memory", c.path);
        goto done;
    }
    rc = 0;
done:
    config_destroy(&conf);
    if (rc) {
        char keep[CNNELM_PATH_MAX];
        memcpy(keep, cfg->path, sizeof keep);
        cnnelm_config_defaults(cfg);
        memcpy(cfg->path, keep, sizeof keep);
    }
    return rc;
}

void cnnelm_config_free(cnnelm_config *cfg)
{
    if (!cfg) return;
    free(cfg->text);
    cfg->text = NULL;
}
