/* cnnelm class names: copying and freeing the owned name lists that data sets and models carry.
 * Apart from the data inputs so the model and the IDX reader need nothing else. */
#define _XOPEN_SOURCE 700

#include "cnnelm/dataset.h"

#include <stdlib.h>
#include <string.h>

char **cnnelm_class_names_copy(char *const *names, int n)
{
    if (!names || n <= 0)
        return NULL;
    char **out = calloc((size_t)n, sizeof *out);
    if (!out)
        return NULL;
    for (int i = 0; i < n; i++)
        if (!(out[i] = strdup(names[i] ? names[i] : ""))) {
            cnnelm_class_names_free(out, n);
            return NULL;
        }
    return out;
}

void cnnelm_class_names_free(char **names, int n)
{
    if (!names)
        return;
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}
