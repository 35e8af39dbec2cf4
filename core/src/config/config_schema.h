/* cnnelm configuration internals, shared by the four config files only: the schema table
 * (config_schema.c), its checks (config_checks.c), -s overrides (config_overrides.c) and the
 * loader (config.c). Nothing outside core/src/config*.c includes this. */
#ifndef CNNELM_CONFIG_SCHEMA_H
#define CNNELM_CONFIG_SCHEMA_H

#include <libconfig.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>

#include "cnnelm/config.h"

/* ---- the schema (config_schema.c) ---- */

typedef enum key_kind {
    K_STRING,   /* char[size] */
    K_LAYERS,   /* char[size], syntax "6c-2s-..." */
    K_BACKEND,  /* char[size], a plugin name: letters, digits, '_' and '-' */
    K_INT,      /* int, long or uint64_t (by size), integer in [imin, imax] */
    K_FLOAT,    /* double in the float range */
    K_ENUM,     /* int-sized enum, one of names[] */
    K_BOOL,     /* int, true or false */
    K_NOISE,    /* unsigned mask: an array of names[] (data.extend) */
    K_FLOATS    /* cnnelm_float_list: an array of numbers > 0 (model.lambda_candidates) */
} key_kind;

#define NO_MAX LLONG_MAX

/* Where a key lives (key_def.worker): the top level, or each element of a list of groups. */
enum { KEY_TOP = 0, KEY_IN_WORKERS = 1, KEY_IN_SOURCES = 2 };

typedef struct key_def {
    const char *path;        /* "model.kernel"; worker keys: "workers.backend" (in each element) */
    key_kind kind;
    int worker;              /* KEY_IN_WORKERS: a member of each workers element, offset into
                              * cnnelm_worker_config; KEY_IN_SOURCES: of each data.sources element */
    int required;            /* 1: must be present (list members only) */
    size_t offset, size;
    long long imin, imax;    /* K_INT; imax NO_MAX = no upper bound */
    double fmin, fmax;       /* K_FLOAT; fmax HUGE_VAL = no upper bound */
    int fmin_open, fmax_open;
    const char *const *names;/* K_ENUM */
    long long idef;          /* default of K_INT, K_ENUM (index) */
    double fdef;             /* default of K_FLOAT */
    const char *sdef;        /* default of strings */
    const char *help;
    int auto_ok;             /* K_FLOAT: the string "auto" is allowed too, stored as 0 */
} key_def;

extern const key_def cnnelm_schema[];
extern const size_t cnnelm_schema_n;

/* The last component of a dotted path ("workers.backend" -> "backend"). */
const char *cnnelm_schema_leaf(const char *path);
/* The key at `path` (a full path; for list members, the member's leaf name) among the keys of
 * `where` (KEY_TOP, KEY_IN_*), or NULL. */
const key_def *cnnelm_schema_find(const char *path, int where);
/* A group of the schema: some top-level key lies under "path.". */
int cnnelm_schema_is_group(const char *path);
/* names[v], or "unknown" for a value outside the NULL-terminated list. */
const char *cnnelm_schema_enum_name(const char *const *names, int v);
/* The allowed values of k as the reference and messages say them ("1..27", "\"mean\", ..."). */
void cnnelm_schema_range_text(const key_def *k, char *buf, size_t size);

/* Integer-like members (K_INT, K_ENUM, K_BOOL, K_NOISE) of any size, at base + k->offset. */
void cnnelm_schema_store_int(void *base, const key_def *k, long long v);
long long cnnelm_schema_load_int(const void *base, const key_def *k);
/* Stores k's default at base + k->offset. */
void cnnelm_schema_store_default(void *base, const key_def *k);

/* ---- checks (config_checks.c) ---- */

/* Where messages point: the config file (or "(defaults)") for settings without a location. */
typedef struct config_ctx {
    const char *path;
    cnnelm_error *err;
} config_ctx;

/* "FILE:LINE: msg" for a setting from a file, "-s OVERRIDE: msg" for one from an override
 * (its hook points at the override text); s may be NULL. Returns -1. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
int cnnelm_config_fail_at(const config_ctx *c, const config_setting_t *s, const char *fmt, ...);

/* "an integer", "a group", ... for messages about a wrong type. */
const char *cnnelm_config_type_text(int type);

/* "unknown setting 'SHOWN'", with "(did you mean 'PREFIX<closest>'?)" when a key of `where`
 * (KEY_TOP, KEY_IN_*) is close to `name`. Returns -1. */
int cnnelm_config_fail_unknown(const config_ctx *c, const config_setting_t *s, const char *shown,
                               const char *name, int where, const char *shown_prefix);

/* 1 when `path` names a list of groups (workers, data.sources). */
int cnnelm_config_is_list(const char *path);

/* Checks every setting under g (the root: prefix "") against the schema and stores it in cfg. */
int cnnelm_config_check_group(const config_ctx *c, const config_setting_t *g, const char *prefix,
                              cnnelm_config *cfg);

/* Keys that depend on each other, once every key is stored; messages point at the setting
 * (file:line or -s) found in conf. */
int cnnelm_config_check_relations(const config_ctx *c, const config_t *conf, const cnnelm_config *cfg);

/* ---- overrides (config_overrides.c) ---- */

/* libconfig 1.5 reads an integer literal without the L suffix as 32 bits and silently wraps
 * larger ones. Finds the first such literal in `text` (skipping strings and comments): returns
 * its line (and the literal in tok), or 0 when there is none. */
int cnnelm_config_find_wide_int(const char *text, char *tok, size_t tok_size);

/* An override as messages show it, on one line: as typed, or, when it holds control bytes,
 * in double quotes with those bytes escaped (a newline as \x0a). */
void cnnelm_config_show_override(const char *ov, char *out, size_t cap);

/* Applies one "-s key=value" to the parsed file conf. */
int cnnelm_config_apply_override(config_t *conf, const char *ov, cnnelm_error *err);

#endif
