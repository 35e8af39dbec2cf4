/* cnnelm JSON writer: just enough to emit reports (objects, arrays, numbers, strings), with
 * commas and escaping handled here so report code only says what goes where. */
#ifndef CNNELM_JSON_H
#define CNNELM_JSON_H

#include <stdio.h>

typedef struct cnnelm_json {
    FILE *f;
    int depth;
    int count[64];   /* members written at each depth, for commas */
} cnnelm_json;

void cnnelm_json_init(cnnelm_json *j, FILE *f);
/* `key` names the member inside an object; pass NULL inside arrays and at the top. */
void cnnelm_json_object(cnnelm_json *j, const char *key);
void cnnelm_json_array(cnnelm_json *j, const char *key);
void cnnelm_json_end(cnnelm_json *j, char close); /* '}' or ']' */
void cnnelm_json_number(cnnelm_json *j, const char *key, double v); /* non-finite -> null */
void cnnelm_json_int(cnnelm_json *j, const char *key, long long v);
void cnnelm_json_string(cnnelm_json *j, const char *key, const char *s);
void cnnelm_json_bool(cnnelm_json *j, const char *key, int v);

#endif
