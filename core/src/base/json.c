/* cnnelm JSON writer (see json.h). */
#include "base/json.h"

#include <math.h>

void cnnelm_json_init(cnnelm_json *j, FILE *f)
{
    j->f = f;
    j->depth = 0;
    j->count[0] = 0;
}

static void put_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void member(cnnelm_json *j, const char *key)
{
    if (j->count[j->depth]++ > 0)
        fputc(',', j->f);
    if (j->depth > 0) {
        fputc('\n', j->f);
        for (int i = 0; i < j->depth; i++)
            fputs("  ", j->f);
    }
    if (key) {
        put_string(j->f, key);
        fputs(": ", j->f);
    }
}

static void open_(cnnelm_json *j, const char *key, char c)
{
    member(j, key);
    fputc(c, j->f);
    if (j->depth < 63)
        j->count[++j->depth] = 0;
}

void cnnelm_json_object(cnnelm_json *j, const char *key) { open_(j, key, '{'); }
void cnnelm_json_array(cnnelm_json *j, const char *key) { open_(j, key, '['); }

void cnnelm_json_end(cnnelm_json *j, char close)
{
    int had = j->count[j->depth];
    if (j->depth > 0)
        j->depth--;
    if (had) {
        fputc('\n', j->f);
        for (int i = 0; i < j->depth; i++)
            fputs("  ", j->f);
    }
    fputc(close, j->f);
    if (j->depth == 0)
        fputc('\n', j->f);
}

void cnnelm_json_number(cnnelm_json *j, const char *key, double v)
{
    member(j, key);
    if (isfinite(v))
        fprintf(j->f, "%.10g", v);
    else
        fputs("null", j->f);
}

void cnnelm_json_int(cnnelm_json *j, const char *key, long long v)
{
    member(j, key);
    fprintf(j->f, "%lld", v);
}

void cnnelm_json_string(cnnelm_json *j, const char *key, const char *s)
{
    member(j, key);
    put_string(j->f, s);
}

void cnnelm_json_bool(cnnelm_json *j, const char *key, int v)
{
    member(j, key);
    fputs(v ? "true" : "false", j->f);
}
