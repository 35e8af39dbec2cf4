/* cnnelm configuration checks: every setting of the parsed file and overrides against the
 * schema (type, range, names), unknown keys with "did you mean" suggestions, the lists of groups
 * (workers, data.sources) through one checker; the keys that depend on each other are in
 * config_relations.c. */
#include "config/config_schema.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- error locations ---- */

int cnnelm_config_fail_at(const config_ctx *c, const config_setting_t *s, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* values quoted in msg come from files and -s: control bytes shown as \xNN, one line */
    char clean[sizeof msg * 4];
    size_t o = 0;
    for (const char *p = msg; *p && o + 5 < sizeof clean; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20 || ch == 0x7f)
            o += (size_t)snprintf(clean + o, sizeof clean - o, "\\x%02x", ch);
        else
            clean[o++] = (char)ch;
    }
    clean[o] = '\0';
    const char *hook = s ? config_setting_get_hook(s) : NULL;
    if (hook) {
        char shown[700];
        cnnelm_config_show_override(hook, shown, sizeof shown);
        return cnnelm_fail(c->err, "-s %s: %s", shown, clean);
    }
    const char *file = s && config_setting_source_file(s) ? config_setting_source_file(s) : c->path;
    if (s && config_setting_source_line(s) > 0)
        return cnnelm_fail(c->err, "%s:%u: %s", file, config_setting_source_line(s), clean);
    return cnnelm_fail(c->err, "%s: %s", file, clean);
}

const char *cnnelm_config_type_text(int type)
{
    switch (type) {
    case CONFIG_TYPE_GROUP: return "a group";
    case CONFIG_TYPE_INT: case CONFIG_TYPE_INT64: return "an integer";
    case CONFIG_TYPE_FLOAT: return "a float";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_ARRAY: return "an array";
    case CONFIG_TYPE_LIST: return "a list";
    default: return "nothing";
    }
}

/* ---- suggestions by edit distance ---- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 128 || lb > 128) return (size_t)-1;
    size_t row[129];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static void consider(const char *name, const char *cand, const char **best, size_t *best_d)
{
    size_t d = edit_distance(name, cand);
    if (strcmp(cnnelm_schema_leaf(name), cnnelm_schema_leaf(cand)) == 0 && d > 1)
        d = 1; /* the right key in the wrong group */
    if (d < *best_d) {
        *best_d = d;
        *best = cand;
    }
}

/* The closest known name to `name` (a full path, or a worker key's leaf), or NULL. */
static const char *suggest(const char *name, int worker)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < cnnelm_schema_n; i++)
        if (cnnelm_schema[i].worker == worker)
            consider(name, worker ? cnnelm_schema_leaf(cnnelm_schema[i].path) : cnnelm_schema[i].path,
                     &best, &best_d);
    static const char *const group_names[] = {"data", "model", "train", "workers"};
    if (!worker)
        for (int i = 0; i < 4; i++)
            consider(name, group_names[i], &best, &best_d);
    size_t limit = strlen(name) / 3;
    if (limit < 2) limit = 2;
    return best && best_d <= limit ? best : NULL;
}

int cnnelm_config_fail_unknown(const config_ctx *c, const config_setting_t *s, const char *shown,
                               const char *name, int worker, const char *shown_prefix)
{
    const char *sug = suggest(name, worker);
    if (sug)
        return cnnelm_config_fail_at(c, s, "unknown setting '%s' (did you mean '%s%s'?)", shown,
                                     shown_prefix, sug);
    return cnnelm_config_fail_at(c, s, "unknown setting '%s'", shown);
}

/* ---- checking one value ---- */

/* "6c-2s-12c-2s": tokens N followed by c or s, N in 1..1024, joined by '-'. */
static int layers_syntax(const char *s, char *bad, size_t bad_size)
{
    if (!*s) {
        snprintf(bad, bad_size, "(empty)");
        return -1;
    }
    const char *p = s;
    for (;;) {
        const char *start = p;
        long n = 0;
        /* a multi-scale group "(4s,12s,...)" and then "sqrt" may end the string (model.c
         * checks them) */
        const char *close = *p == '(' ? p + 1 + strspn(p + 1, "0123456789s,") : NULL;
        if (p > s && ((close && *close == ')' && (!close[1] || !strcmp(close + 1, "-sqrt"))) ||
                      !strcmp(p, "sqrt")))
            return 0;
        while (isdigit((unsigned char)*p) && n <= 1024) n = n * 10 + (*p++ - '0');
        int ok = p > start && n >= 1 && n <= 1024 && (*p == 'c' || *p == 's') &&
                 (p[1] == '-' || p[1] == 0);
        if (!ok) {
            const char *end = strchr(start, '-');
            int len = end ? (int)(end - start) : (int)strlen(start);
            snprintf(bad, bad_size, "'%.*s'", len > 40 ? 40 : len, start);
            return -1;
        }
        p++;
        if (*p == 0) return 0;
        p++; /* '-' */
    }
}

static int check_value(const config_ctx *c, const config_setting_t *s, const key_def *k, const char *shown,
                       void *base)
{
    int type = config_setting_type(s);
    char range[160];
    cnnelm_schema_range_text(k, range, sizeof range);
    switch (k->kind) {
    case K_INT: {
        if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
            return cnnelm_config_fail_at(c, s, "%s must be an integer, not %s", shown,
                                         cnnelm_config_type_text(type));
        long long v = config_setting_get_int64(s);
        if (v < k->imin || v > k->imax)
            return cnnelm_config_fail_at(c, s, "%s = %lld is out of range (%s)", shown, v, range);
        cnnelm_schema_store_int(base, k, v);
        return 0;
    }
    case K_BOOL:
        if (type != CONFIG_TYPE_BOOL)
            return cnnelm_config_fail_at(c, s, "%s must be true or false, not %s", shown,
                                         cnnelm_config_type_text(type));
        cnnelm_schema_store_int(base, k, config_setting_get_bool(s));
        return 0;
    case K_NOISE: {
        if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
            return cnnelm_config_fail_at(c, s, "%s must be an array of strings, e.g. [\"%s\"], not %s",
                                         shown, k->names[0], cnnelm_config_type_text(type));
        unsigned mask = 0;
        int n = config_setting_length(s);
        for (int i = 0; i < n; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            const char *v = config_setting_type(e) == CONFIG_TYPE_STRING ? config_setting_get_string(e)
                                                                         : NULL;
            int found = -1;
            for (int j = 0; v && k->names[j]; j++)
                if (strcmp(v, k->names[j]) == 0)
                    found = j;
            if (found < 0)
                return cnnelm_config_fail_at(c, s, "%s[%d] is not one of %s", shown, i, range);
            if (mask & (1u << found))
                return cnnelm_config_fail_at(c, s, "%s lists \"%s\" twice", shown, v);
            mask |= 1u << found;
        }
        cnnelm_schema_store_int(base, k, (long long)mask);
        return 0;
    }
    case K_FLOATS: {
        if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
            return cnnelm_config_fail_at(c, s, "%s must be an array of numbers, e.g. [10.0, 100.0, "
                                         "1000.0], not %s", shown, cnnelm_config_type_text(type));
        cnnelm_float_list list;
        memset(&list, 0, sizeof list);
        int n = config_setting_length(s);
        if (n > CNNELM_MAX_FLOAT_LIST)
            return cnnelm_config_fail_at(c, s, "%s has %d entries (at most %d)", shown, n,
                                         CNNELM_MAX_FLOAT_LIST);
        for (int i = 0; i < n; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            if (!config_setting_is_number(e))
                return cnnelm_config_fail_at(c, s, "%s[%d] must be a number, not %s", shown, i,
                               cnnelm_config_type_text(config_setting_type(e)));
            double v = config_setting_type(e) == CONFIG_TYPE_FLOAT ? config_setting_get_float(e)
                                                                   : (double)config_setting_get_int64(e);
            if (!(v > 0) || !isfinite(v))
                return cnnelm_config_fail_at(c, s, "%s[%d] = %g is out of range (a number > 0)", shown, i, v);
            list.v[list.n++] = v;
        }
        memcpy((char *)base + k->offset, &list, sizeof list);
        return 0;
    }
    case K_FLOAT: {
        if (k->auto_ok && type == CONFIG_TYPE_STRING && strcmp(config_setting_get_string(s), "auto") == 0) {
            double zero = 0; /* "auto" */
            memcpy((char *)base + k->offset, &zero, sizeof zero);
            return 0;
        }
        if (!config_setting_is_number(s))
            return cnnelm_config_fail_at(c, s, "%s must be a number, not %s", shown,
                                         cnnelm_config_type_text(type));
        double v = type == CONFIG_TYPE_FLOAT ? config_setting_get_float(s)
                                             : (double)config_setting_get_int64(s);
        int low = k->fmin_open ? !(v > k->fmin) : !(v >= k->fmin);
        int high = k->fmax == HUGE_VAL ? !isfinite(v) : k->fmax_open ? !(v < k->fmax) : !(v <= k->fmax);
        if (low || high)
            return cnnelm_config_fail_at(c, s, "%s = %g is out of range (%s)", shown, v, range);
        memcpy((char *)base + k->offset, &v, sizeof v);
        return 0;
    }
    default:
        break;
    }
    if (type != CONFIG_TYPE_STRING)
        return cnnelm_config_fail_at(c, s, "%s must be a string (in double quotes), not %s", shown,
                                     cnnelm_config_type_text(type));
    const char *v = config_setting_get_string(s);
    char *dst = (char *)base + k->offset;
    if (k->kind == K_ENUM) {
        for (int i = 0; k->names[i]; i++) {
            if (strcmp(v, k->names[i]) == 0) {
                cnnelm_schema_store_int(base, k, i);
                return 0;
            }
        }
        return cnnelm_config_fail_at(c, s, "%s = \"%.200s\" is not one of %s", shown, v, range);
    }
    if (strlen(v) >= k->size)
        return cnnelm_config_fail_at(c, s, "%s is too long (%zu characters, at most %zu)", shown,
                                     strlen(v), k->size - 1);
    if (k->kind == K_LAYERS) {
        char bad[64];
        if (layers_syntax(v, bad, sizeof bad))
            return cnnelm_config_fail_at(c, s, "%s = \"%s\": bad layer %s (want layers like 6c or 2s: a "
                           "count 1..1024 then c (convolution) or s (pooling), joined by '-', e.g. "
                           "\"6c-2s-12c-2s\")",
                           shown, v, bad);
    }
    if (k->kind == K_BACKEND) {
        if (!*v)
            return cnnelm_config_fail_at(c, s, "%s is empty (want a backend name such as \"cpu\")", shown);
        for (const char *p = v; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
                return cnnelm_config_fail_at(c, s, "%s = \"%s\": a backend name has only letters, "
                                             "digits, '_' and '-'", shown, v);
    }
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

/* ---- lists of groups ---- */

/* A list of groups whose elements hold the KEY_IN_* keys: one checker walks both, so the
 * two say the same things in the same words. */
typedef struct list_def {
    const char *path;           /* "workers", "data.sources" */
    int member;                 /* KEY_IN_WORKERS, KEY_IN_SOURCES */
    int max;                    /* elements at most */
    const char *example;        /* a one-element list, for "must be a list of groups, e.g. ..." */
    const char *shape;          /* what an element looks like, for "must be a group ..." */
    const char *empty;          /* non-NULL: an empty list is refused with this text */
    size_t first, stride;       /* element i's members are at cfg + first + i * stride */
    size_t count;               /* where the number of elements is stored (an int) */
    /* checks across an element's keys once they are stored (NULL: none) */
    int (*check_element)(const config_ctx *c, const config_setting_t *elem, const char *where,
                         const cnnelm_config *cfg, int i);
} list_def;

static int check_source(const config_ctx *c, const config_setting_t *src, const char *where,
                        const cnnelm_config *cfg, int i)
{
    if (!cfg->data.sources[i].test_images[0] != !cfg->data.sources[i].test_labels[0])
        return cnnelm_config_fail_at(c, src, "%s: test_images and test_labels go together (one is "
                                     "empty)", where);
    return 0;
}

static const list_def lists[] = {
    {.path = "workers", .member = KEY_IN_WORKERS, .max = CNNELM_MAX_WORKERS,
     .example = "( { backend = \"cpu\"; device = 0; } )", .shape = "such as { backend = \"cpu\"; }",
     .empty = "workers is empty: at least one worker is needed, e.g. ( { backend = \"cpu\"; } )",
     .first = offsetof(cnnelm_config, workers), .stride = sizeof(cnnelm_worker_config),
     .count = offsetof(cnnelm_config, n_workers)},
    {.path = "data.sources", .member = KEY_IN_SOURCES, .max = CNNELM_MAX_SOURCES,
     .example = "( { train_images = \"a.gz\"; train_labels = \"b.gz\"; } )",
     .shape = "{ train_images = ...; train_labels = ...; }",
     /* source i's keys are offsets into cnnelm_config at sources[0]: element i is i strides on */
     .first = 0, .stride = sizeof(((cnnelm_config *)0)->data.sources[0]),
     .count = offsetof(cnnelm_config, data.n_sources), .check_element = check_source},
};

static const list_def *find_list(const char *path)
{
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        if (strcmp(lists[i].path, path) == 0)
            return &lists[i];
    return NULL;
}

int cnnelm_config_is_list(const char *path)
{
    return find_list(path) != NULL;
}

static int check_list(const config_ctx *c, const config_setting_t *list, const list_def *l,
                      cnnelm_config *cfg)
{
    int type = config_setting_type(list);
    if (type != CONFIG_TYPE_LIST && !(type == CONFIG_TYPE_ARRAY && config_setting_length(list) == 0))
        return cnnelm_config_fail_at(c, list, "%s must be a list of groups, e.g. %s, not %s", l->path,
                                     l->example, cnnelm_config_type_text(type));
    int n = config_setting_length(list);
    if (n == 0 && l->empty)
        return cnnelm_config_fail_at(c, list, "%s", l->empty);
    if (n > l->max)
        return cnnelm_config_fail_at(c, list, "%s has %d entries (at most %d)", l->path, n, l->max);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        char *base = (char *)cfg + l->first + (size_t)i * l->stride;
        char where[48];
        snprintf(where, sizeof where, "%s[%d]", l->path, i);
        if (!config_setting_is_group(e))
            return cnnelm_config_fail_at(c, e, "%s must be a group %s, not %s", where, l->shape,
                                         cnnelm_config_type_text(config_setting_type(e)));
        for (size_t j = 0; j < cnnelm_schema_n; j++)
            if (cnnelm_schema[j].worker == l->member)
                cnnelm_schema_store_default(base, &cnnelm_schema[j]);
        int m = config_setting_length(e);
        for (int j = 0; j < m; j++) {
            const config_setting_t *s = config_setting_get_elem(e, (unsigned)j);
            const char *name = config_setting_name(s);
            char shown[128];
            snprintf(shown, sizeof shown, "%s.%.60s", where, name);
            const key_def *k = cnnelm_schema_find(name, l->member);
            if (!k) {
                char prefix[64];
                snprintf(prefix, sizeof prefix, "%s.", where);
                return cnnelm_config_fail_unknown(c, s, shown, name, l->member, prefix);
            }
            if (check_value(c, s, k, shown, base))
                return -1;
        }
        for (size_t j = 0; j < cnnelm_schema_n; j++) {
            const key_def *k = &cnnelm_schema[j];
            if (k->worker != l->member || !k->required)
                continue;
            const char *name = cnnelm_schema_leaf(k->path);
            if (config_setting_get_member(e, name))
                continue;
            /* a required string with a default shows it as the example (backend = "cpu";) */
            if (k->sdef && *k->sdef)
                return cnnelm_config_fail_at(c, e, "%s has no %s (e.g. %s = \"%s\";)", where, name, name,
                                             k->sdef);
            return cnnelm_config_fail_at(c, e, "%s has no %s", where, name);
        }
        if (l->check_element && l->check_element(c, e, where, cfg, i))
            return -1;
    }
    memcpy((char *)cfg + l->count, &n, sizeof n);
    return 0;
}

/* ---- walking the tree ---- */

int cnnelm_config_check_group(const config_ctx *c, const config_setting_t *g, const char *prefix,
                              cnnelm_config *cfg)
{
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        char path[256];
        snprintf(path, sizeof path, "%s%s%.200s", prefix, *prefix ? "." : "", config_setting_name(s));
        const list_def *l = find_list(path);
        if (l) {
            if (check_list(c, s, l, cfg))
                return -1;
            continue;
        }
        if (cnnelm_schema_is_group(path)) {
            if (!config_setting_is_group(s))
                return cnnelm_config_fail_at(c, s, "%s must be a group { ... }, not %s", path,
                                             cnnelm_config_type_text(config_setting_type(s)));
            if (cnnelm_config_check_group(c, s, path, cfg))
                return -1;
            continue;
        }
        const key_def *k = cnnelm_schema_find(path, KEY_TOP);
        if (!k)
            return cnnelm_config_fail_unknown(c, s, path, path, KEY_TOP, "");
        if (check_value(c, s, k, path, cfg))
            return -1;
    }
    return 0;
}
