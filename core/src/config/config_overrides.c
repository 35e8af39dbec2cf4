/* cnnelm configuration overrides: "-s key=value" parsed as libconfig text and merged into the
 * file's settings, and the workaround for libconfig's silent 32-bit wrap of wide integers. */
#define _XOPEN_SOURCE 700

#include "config/config_schema.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- how messages show an override ---- */

void cnnelm_config_show_override(const char *ov, char *out, size_t cap)
{
    int plain = 1;
    for (const char *p = ov; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
            plain = 0;
    if (plain) {
        snprintf(out, cap, "%.600s%s", ov, strlen(ov) > 600 ? "..." : "");
        return;
    }
    char esc[660];
    snprintf(out, cap, "\"%s\"", cnnelm_escape(ov, strlen(ov), esc, sizeof esc));
}

/* ---- integers beyond 32 bits ---- */

int cnnelm_config_find_wide_int(const char *text, char *tok, size_t tok_size)
{
    int line = 1;
    const char *p = text;
    while (*p) {
        if (*p == '\n') {
            line++; p++;
        } else if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1]) p++;
                else if (*p == '\n') line++;
            }
            if (*p) p++;
        } else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
            while (*p && *p != '\n') p++;
        } else if (p[0] == '/' && p[1] == '*') {
            for (p += 2; *p && !(p[0] == '*' && p[1] == '/'); p++)
                if (*p == '\n') line++;
            if (*p) p += 2;
        } else if (isalpha((unsigned char)*p) || *p == '_' || *p == '*' || *p == '@') {
            while (isalnum((unsigned char)*p) || *p == '_' || *p == '*' || *p == '-' || *p == '@') p++;
        } else if (isdigit((unsigned char)*p)) {
            const char *start = p;
            int is_float = 0, hex = p[0] == '0' && (p[1] == 'x' || p[1] == 'X');
            if (hex) p += 2;
            while (isalnum((unsigned char)*p) || *p == '.' ||
                   ((*p == '-' || *p == '+') && !hex && (p[-1] == 'e' || p[-1] == 'E'))) {
                if (*p == '.' || (!hex && (*p == 'e' || *p == 'E'))) is_float = 1;
                p++;
            }
            int has_l = p[-1] == 'L' || p[-1] == 'l';
            if (!is_float && !has_l) {
                int neg = start > text && start[-1] == '-';
                errno = 0;
                unsigned long long v = strtoull(start, NULL, hex ? 16 : 10);
                int wide = errno == ERANGE ||
                           (hex ? v > 0xffffffffull : v > (neg ? 2147483648ull : 2147483647ull));
                if (wide) {
                    snprintf(tok, tok_size, "%s%.*s", neg ? "-" : "", (int)(p - start > 40 ? 40 : p - start),
                             start);
                    return line;
                }
            }
        } else {
            p++;
        }
    }
    return 0;
}

/* ---- overrides ---- */

static void hook_all(config_setting_t *s, void *hook)
{
    config_setting_set_hook(s, hook);
    if (config_setting_is_aggregate(s))
        for (int i = 0; i < config_setting_length(s); i++)
            hook_all(config_setting_get_elem(s, (unsigned)i), hook);
}

/* Adds a deep copy of src under parent (name ignored for list and array elements). */
static config_setting_t *copy_setting(config_setting_t *parent, const char *name,
                                      const config_setting_t *src)
{
    int type = config_setting_type(src);
    config_setting_t *d = config_setting_add(parent, config_setting_is_group(parent) ? name : NULL, type);
    if (!d) return NULL;
    switch (type) {
    case CONFIG_TYPE_INT: config_setting_set_int(d, config_setting_get_int(src)); break;
    case CONFIG_TYPE_INT64: config_setting_set_int64(d, config_setting_get_int64(src)); break;
    case CONFIG_TYPE_FLOAT: config_setting_set_float(d, config_setting_get_float(src)); break;
    case CONFIG_TYPE_BOOL: config_setting_set_bool(d, config_setting_get_bool(src)); break;
    case CONFIG_TYPE_STRING: config_setting_set_string(d, config_setting_get_string(src)); break;
    default:
        for (int i = 0; i < config_setting_length(src); i++) {
            const config_setting_t *e = config_setting_get_elem(src, (unsigned)i);
            if (!copy_setting(d, config_setting_name(e), e))
                return NULL;
        }
    }
    config_setting_set_format(d, config_setting_get_format(src));
    return d;
}

/* Puts a copy of src at parent.name: groups merge member by member, anything else replaces. */
static int put_setting(config_setting_t *parent, const char *name, const config_setting_t *src, void *hook)
{
    config_setting_t *old = config_setting_get_member(parent, name);
    if (old && config_setting_is_group(old) && config_setting_is_group(src)) {
        config_setting_set_hook(old, hook);
        for (int i = 0; i < config_setting_length(src); i++) {
            const config_setting_t *e = config_setting_get_elem(src, (unsigned)i);
            if (put_setting(old, config_setting_name(e), e, hook))
                return -1;
        }
        return 0;
    }
    if (old && config_setting_remove(parent, name) != CONFIG_TRUE)
        return -1;
    config_setting_t *d = copy_setting(parent, name, src);
    if (!d)
        return -1;
    hook_all(d, hook);
    return 0;
}

static int valid_key(const char *key)
{
    /* libconfig names joined by '.': [A-Za-z*][-A-Za-z0-9_*]* */
    const char *p = key;
    for (;;) {
        if (!isalpha((unsigned char)*p) && *p != '*') return 0;
        while (isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '*') p++;
        if (*p == 0) return 1;
        if (*p != '.') return 0;
        p++;
    }
}

static int is_plain_decimal(const char *s)
{
    if (*s == '-' || *s == '+') s++;
    if (!isdigit((unsigned char)*s)) return 0;
    while (isdigit((unsigned char)*s)) s++;
    return *s == 0;
}

int cnnelm_config_apply_override(config_t *conf, const char *ov, cnnelm_error *err)
{
    char shown[700]; /* ov as messages show it: escaped, on one line */
    cnnelm_config_show_override(ov, shown, sizeof shown);
    const char *eq = strchr(ov, '=');
    if (!eq)
        return cnnelm_fail(err, "-s %s: expected key=value, e.g. -s train.seed=7", shown);
    char key[256];
    const char *kb = ov, *ke = eq;
    while (kb < ke && isspace((unsigned char)*kb)) kb++;
    while (ke > kb && isspace((unsigned char)ke[-1])) ke--;
    if ((size_t)(ke - kb) >= sizeof key)
        return cnnelm_fail(err, "-s %s: key too long", shown);
    memcpy(key, kb, (size_t)(ke - kb));
    key[ke - kb] = 0;
    if (!valid_key(key))
        return cnnelm_fail(err, "-s %s: bad key '%s' (want names joined by '.', e.g. train.seed)", shown, key);
    const key_def *k = cnnelm_schema_find(key, KEY_TOP);
    if (!k && !cnnelm_schema_is_group(key) && !cnnelm_config_is_list(key)) {
        config_ctx c = {"", err};
        config_setting_t fake;
        memset(&fake, 0, sizeof fake);
        fake.hook = (void *)ov;
        if (strncmp(key, "workers.", 8) == 0)
            return cnnelm_fail(err, "-s %s: workers is a list; override it whole, e.g. "
                               "-s 'workers=({backend=\"cpu\";device=0;})'", shown);
        if (strncmp(key, "data.sources.", 13) == 0)
            return cnnelm_fail(err, "-s %s: data.sources is a list; override it whole", shown);
        return cnnelm_config_fail_unknown(&c, &fake, key, key, KEY_TOP, "");
    }
    const char *value = eq + 1;
    while (isspace((unsigned char)*value)) value++;
    size_t vlen = strlen(value);
    while (vlen > 0 && isspace((unsigned char)value[vlen - 1])) vlen--;
    int string_key = k && (k->kind == K_STRING || k->kind == K_LAYERS || k->kind == K_ENUM ||
                           (k->auto_ok && vlen == 4 && strncmp(value, "auto", 4) == 0));

    /* "v = VALUE\n;" (a comment in VALUE ends at the newline); integers beyond 32 bits get the
     * L suffix libconfig needs. */
    size_t size = vlen + 16;
    char *text = malloc(size);
    if (!text)
        return cnnelm_fail(err, "-s %s: out of memory", shown);
    char *vcopy = strndup(value, vlen);
    if (!vcopy) {
        free(text);
        return cnnelm_fail(err, "-s %s: out of memory", shown);
    }
    char tok[64];
    int wide = cnnelm_config_find_wide_int(vcopy, tok, sizeof tok) > 0;
    snprintf(text, size, "v = %s%s\n;", vcopy, wide && is_plain_decimal(vcopy) ? "L" : "");
    config_t tmp;
    config_init(&tmp);
    int ok = config_read_string(&tmp, text) == CONFIG_TRUE &&
             config_setting_length(config_root_setting(&tmp)) == 1;
    config_setting_t *v = ok ? config_lookup(&tmp, "v") : NULL;
    int rc = -1;
    if (string_key && (!v || (config_setting_is_scalar(v) && config_setting_type(v) != CONFIG_TYPE_STRING))) {
        /* Convenience: a bare value for a string key is the string itself. */
        config_destroy(&tmp);
        config_init(&tmp);
        v = config_setting_add(config_root_setting(&tmp), "v", CONFIG_TYPE_STRING);
        config_setting_set_string(v, vcopy);
    } else if (!v) {
        cnnelm_fail(err, "-s %s: cannot parse the value: %s (write it as in a config file, strings "
                    "in double quotes)", shown, config_error_text(&tmp) ? config_error_text(&tmp)
                                                                  : "more than one setting");
        goto done;
    } else if (wide && !is_plain_decimal(vcopy)) {
        cnnelm_fail(err, "-s %s: integer %s does not fit in 32 bits; write it with the L suffix (%sL)",
                    shown, tok, tok);
        goto done;
    }

    /* Walk to the parent group, creating groups as needed. */
    config_setting_t *parent = config_root_setting(conf);
    char *seg = key;
    for (char *dot; (dot = strchr(seg, '.')) != NULL; seg = dot + 1) {
        *dot = 0;
        config_setting_t *g = config_setting_get_member(parent, seg);
        if (!g) {
            g = config_setting_add(parent, seg, CONFIG_TYPE_GROUP);
            config_setting_set_hook(g, (void *)ov);
        } else if (!config_setting_is_group(g)) {
            cnnelm_fail(err, "-s %s: '%s' is set to %s, not a group", shown, seg,
                        cnnelm_config_type_text(config_setting_type(g)));
            goto done;
        }
        parent = g;
    }
    if (put_setting(parent, seg, v, (void *)ov)) {
        cnnelm_fail(err, "-s %s: cannot apply the override", shown);
        goto done;
    }
    rc = 0;
done:
    config_destroy(&tmp);
    free(text);
    free(vcopy);
    return rc;
}
