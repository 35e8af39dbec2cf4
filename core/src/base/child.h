/* cnnelm child processes: runs plugin code in a forked child with a time limit, so that a
 * plugin that crashes or hangs becomes a message instead of taking the caller down with it. */
#ifndef CNNELM_CHILD_H
#define CNNELM_CHILD_H

#include <stddef.h>

#include "cnnelm/backend.h"

/* Runs in the child: fills `reply` (reply_size bytes, zeroed on entry), which goes back to the
 * parent. The child exits after it returns. */
typedef void (*cnnelm_child_fn)(void *arg, void *reply, size_t reply_size);

/* Forks and runs fn(arg, reply, reply_size) in the child. Returns 0 with *reply filled by the
 * child; -1 with `why` saying what happened instead: "crashed (signal 11, Segmentation fault)",
 * "timed out after 2 s" (the child is killed), "exited with status 1 before reporting" (e.g. a
 * sanitizer catching a fault), or a fork/pipe failure. *seconds (may be NULL): wall time. */
int cnnelm_child_run(cnnelm_child_fn fn, void *arg, void *reply, size_t reply_size, double timeout_s,
                     double *seconds, char *why, size_t why_size);

/* In a child, before cnnelm_plugin_load_file: dlopen `file` and call its entry, so that a crash
 * after this returns is the plugin's init() rather than its entry. Returns the table only when
 * it is a 1.x table that has init (the loader will call it), NULL otherwise (the loader then
 * reports what is wrong). The library stays loaded for the life of the child. */
const cnnelm_backend *cnnelm_child_table_with_init(const char *file);

#endif
