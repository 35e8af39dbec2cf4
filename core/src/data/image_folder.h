/* cnnelm image folders: listing DIR/<class>/<file> in a stable order (the cache key comes from
 * the names, sizes and mtimes) and loading them as a data set. */
#ifndef CNNELM_IMAGE_FOLDER_H
#define CNNELM_IMAGE_FOLDER_H

#include <stdint.h>

#include "cnnelm/dataset.h"

typedef struct cnnelm_file_list {
    char **path;         /* n files, sorted by class then name (byte order) */
    int *label;          /* their class index, or -1 for a folder without class subfolders */
    size_t n, cap;
    char **class_names;  /* n_classes subfolder names, sorted */
    int n_classes;
    uint64_t key;        /* FNV-1a of every path, size and mtime */
} cnnelm_file_list;

/* Lists a folder: with class subfolders, their regular files (hidden names skipped); without
 * any, the folder's own files (label -1), an error when need_classes. */
int cnnelm_folder_scan(const char *dir, int need_classes, cnnelm_file_list *l, cnnelm_error *err);
void cnnelm_file_list_free(cnnelm_file_list *l);

/* Decodes every image of DIR/<class>/ into ds (channels 3 when some image has colour and
 * o->grayscale is off, else 1; size o->resize_* or the most common one), skipping bad files up
 * to o->max_bad, through the IDX cache in DIR/.cnnelm-cache/. */
int cnnelm_folder_load(cnnelm_dataset *ds, const char *dir, const cnnelm_input_options *o,
                       cnnelm_error *err);

/* Parses a CSV file (label, then pixels 0..255; an optional header row) into ds: rows of P
 * pixels give s x s gray images when P = s^2, 3 x s x s planar RGB when P = 3 s^2. */
int cnnelm_csv_load(cnnelm_dataset *ds, const char *path, cnnelm_error *err);

/* Parses the pixel count of a CSV row into a shape (see above); -1 with a message otherwise. */
int cnnelm_csv_shape(const char *path, size_t pixels, int *c, int *h, int *w, cnnelm_error *err);

#endif
