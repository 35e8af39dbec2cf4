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
    int live;   /* its slot in the table a SIGINT/SIGTERM handler cleans up; -1: none */
} cnnelm_atomic_file;

/* The file an output named `path` replaces: symbolic links followed to their target (written
 * through, not replaced); a directory or a special file (device, FIFO, socket) is an error, so
 * `-o /dev/null` never turns /dev/null into a regular file. */
int cnnelm_output_resolve(const char *path, char *out, size_t size, cnnelm_error *err);
/* Checks up front that `path` can be written: resolved as above, and a temporary file created
 * and removed beside it (a run finds a read-only output directory before it trains). */
int cnnelm_output_probe(const char *path, cnnelm_error *err);
/* Fails when `path` is the same file (device and inode, so also through links or another
 * spelling of the name) as one of the n `inputs` (NULL or "" entries are skipped). */
int cnnelm_output_not_input(const char *path, const char *const *inputs, int n, cnnelm_error *err);
/* Opens a temporary file in the directory of `path` (resolved as above), named
 * .NAME.tmpPID-XXXXXX; one left by a process that no longer exists is removed (and named on
 * stderr) first. Until commit or abort, SIGINT, SIGTERM and SIGHUP remove it before the process
 * ends (when the program has no handler of its own for them). */
int cnnelm_atomic_open(cnnelm_atomic_file *af, const char *path, cnnelm_error *err);
/* Interrupts: after this call (which clears the flag) the first SIGINT, SIGTERM or SIGHUP (where the program has no
 * handler of its own) only sets a flag, which training checks between chunks and iterations
 * (it stops, and the run saves what is complete and says so); a second one removes the
 * temporary files and ends the process as the signal would. */
void cnnelm_interrupt_catch(void);
/* Back to the default: a signal cleans up and ends the process (the flag stays readable). */
void cnnelm_interrupt_release(void);
/* The signal that interrupted the run, or 0. */
int cnnelm_interrupted(void);
/* Flushes, fsyncs and renames over the target; on any failure removes the temporary file. */
int cnnelm_atomic_commit(cnnelm_atomic_file *af, cnnelm_error *err);
/* Abandons the temporary file (the target is untouched). */
void cnnelm_atomic_abort(cnnelm_atomic_file *af);

/* mkdir -p: creates dir and its missing parents (the decompression cache, extend's output). */
int cnnelm_make_dirs(const char *dir, cnnelm_error *err);

#endif
