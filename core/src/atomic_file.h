/* cnnelm atomic file writes: write to a temporary file beside the target, fsync, rename, so a
 * crash or an error never leaves a half-written file in place of an earlier good one. */
#ifndef CNNELM_ATOMIC_FILE_H
#define CNNELM_ATOMIC_FILE_H

#include <stdio.h>

#include "cnnelm/error.h"

typedef struct cnnelm_atomic_file {
    FILE *f;
    char tmp[4200];
    char path[4096];
} cnnelm_atomic_file;

/* Opens a temporary file in the directory of `path`. */
int cnnelm_atomic_open(cnnelm_atomic_file *af, const char *path, cnnelm_error *err);
/* Flushes, fsyncs and renames over the target; on any failure removes the temporary file. */
int cnnelm_atomic_commit(cnnelm_atomic_file *af, cnnelm_error *err);
/* Abandons the temporary file (the target is untouched). */
void cnnelm_atomic_abort(cnnelm_atomic_file *af);

#endif
