/* What the train and eval jobs (run.c, eval.c) share. */
#ifndef CNNELM_JOBS_H
#define CNNELM_JOBS_H

#include "cnnelm/dataset.h"
#include "cnnelm/error.h"

/* Training and test sets that both name their classes must name them alike (two image
 * folders whose subfolders differ would otherwise give labels that silently disagree). */
int cnnelm_check_class_names(const cnnelm_dataset *train, const cnnelm_dataset *test, const char *cfg_path,
                             cnnelm_error *err);

#endif
