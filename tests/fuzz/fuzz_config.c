/* libFuzzer harness for the config loader: the input is a config file, and after a line that
 * is exactly "%%" one -s override per line. A config that loads must have an effective text
 * that reloads (with no overrides) to the same configuration and the same text. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnnelm/config.h"

static char path[64], path2[64];

static void write_text(const char *p, const char *text, size_t len)
{
    FILE *f = fopen(p, "wb");
    if (!f)
        abort();
    if (len && fwrite(text, 1, len, f) != len)
        abort();
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/cnnelm-fuzz-cfg-%d.cfg", (int)getpid());
        snprintf(path2, sizeof path2, "/tmp/cnnelm-fuzz-cfg-%d-effective.cfg", (int)getpid());
    }
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    const char *overrides[16];
    int n = 0;
    size_t file_len = size;
    char *sep = strstr(text, "\n%%\n");
    if (sep) {
        file_len = (size_t)(sep - text) + 1;
        *sep = '\0';
        for (char *line = sep + 4; *line && n < 16;) {
            char *end = strchr(line, '\n');
            if (end)
                *end = '\0';
            if (strchr(line, '='))
                overrides[n++] = line;
            if (!end)
                break;
            line = end + 1;
        }
    }
    write_text(path, text, strlen(text) < file_len ? strlen(text) : file_len);
    cnnelm_config a, b;
    cnnelm_error err = { "" };
    if (cnnelm_config_load(&a, path, overrides, n, &err) == 0) {
        write_text(path2, a.text, strlen(a.text));
        if (cnnelm_config_load(&b, path2, NULL, 0, &err) != 0)
            abort(); /* the effective text must load */
        if (strcmp(a.text, b.text) != 0)
            abort(); /* and be a fixed point */
        /* the same settings, apart from where they were read from */
        char *ta = a.text, *tb = b.text;
        a.text = b.text = NULL;
        memset(a.path, 0, sizeof a.path);
        memset(b.path, 0, sizeof b.path);
        if (memcmp(&a, &b, sizeof a) != 0)
            abort();
        a.text = ta;
        b.text = tb;
        cnnelm_config_free(&b);
        cnnelm_config_free(&a);
    } else if (strchr(err.msg, '\n')) {
        abort(); /* one-line messages */
    }
    unlink(path);
    unlink(path2);
    free(text);
    return 0;
}
