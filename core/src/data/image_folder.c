/* cnnelm image folders (DIR/<class>/<image>, torchvision's ImageFolder layout): PNG and JPEG
 * decoded once, bad files counted and skipped up to data.max_bad, the result cached as IDX. */
#define _GNU_SOURCE /* open_memstream */

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "base/atomic_file.h"
#include "data/image.h"
#include "data/image_folder.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_DIR ".cnnelm-cache"

static int name_cmp(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int not_hidden(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

static void files_free(cnnelm_file_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->path[i]);
    free(l->path);
    free(l->label);
    cnnelm_class_names_free(l->class_names, l->n_classes);
    memset(l, 0, sizeof *l);
}

void cnnelm_file_list_free(cnnelm_file_list *l) { files_free(l); }

static int files_add(cnnelm_file_list *l, const char *path, int label, const struct stat *st)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        char **p = realloc(l->path, cap * sizeof *p);
        if (!p)
            return -1;
        l->path = p;
        int *lab = realloc(l->label, cap * sizeof *lab);
        if (!lab)
            return -1;
        l->label = lab;
        l->cap = cap;
    }
    l->path[l->n] = strdup(path);
    if (!l->path[l->n])
        return -1;
    l->label[l->n++] = label;
    /* FNV-1a over name, size and mtime: the cache key */
    const unsigned char *s = (const unsigned char *)path;
    uint64_t h = l->key ? l->key : 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ *s) * 1099511628211ull;
    uint64_t facts[3] = { (uint64_t)st->st_size, (uint64_t)st->st_mtim.tv_sec, (uint64_t)st->st_mtim.tv_nsec };
    for (int i = 0; i < 3; i++)
        for (int b = 0; b < 8; b++)
            h = (h ^ ((facts[i] >> (8 * b)) & 0xff)) * 1099511628211ull;
    l->key = h;
    return 0;
}

int cnnelm_folder_scan(const char *dir, int need_classes, cnnelm_file_list *l, cnnelm_error *err)
{
    memset(l, 0, sizeof *l);
    struct dirent **ent;
    int n = scandir(dir, &ent, not_hidden, name_cmp);
    if (n < 0)
        return cnnelm_fail(err, "%s: cannot list folder: %s", dir, strerror(errno));
    char path[CNNELM_PATH_MAX * 2];
    int rc = -1, n_sub = 0;
    for (int i = 0; i < n; i++) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, ent[i]->d_name);
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            n_sub++;
    }
    if (n_sub > 256) {
        cnnelm_fail(err, "%s: %d class subfolders (at most 256 classes)", dir, n_sub);
        goto out;
    }
    if (n_sub == 0 && need_classes) {
        cnnelm_fail(err, "%s: no class subfolders: expected DIR/<class>/<image>.png|jpg (one folder per class)", dir);
        goto out;
    }
    if (n_sub > 0) {
        l->class_names = calloc((size_t)n_sub, sizeof *l->class_names);
        if (!l->class_names)
            goto oom;
    }
    for (int i = 0; i < n; i++) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, ent[i]->d_name);
        if (stat(path, &st) != 0)
            continue;
        if (!S_ISDIR(st.st_mode)) {
            if (n_sub == 0 && files_add(l, path, -1, &st))
                goto oom;
            continue; /* with class subfolders, loose files at the top are not examples */
        }
        int label = l->n_classes;
        l->class_names[l->n_classes++] = strdup(ent[i]->d_name);
        if (!l->class_names[label])
            goto oom;
        struct dirent **sub;
        int m = scandir(path, &sub, not_hidden, name_cmp);
        if (m < 0) {
            cnnelm_fail(err, "%s: cannot list folder: %s", path, strerror(errno));
            goto out;
        }
        int bad = 0;
        for (int k = 0; k < m; k++) {
            char file[CNNELM_PATH_MAX * 3];
            struct stat fs;
            snprintf(file, sizeof file, "%s/%s", path, sub[k]->d_name);
            if (!bad && stat(file, &fs) == 0 && S_ISREG(fs.st_mode) && files_add(l, file, label, &fs))
                bad = 1;
            free(sub[k]);
        }
        free(sub);
        if (bad)
            goto oom;
    }
    if (l->n == 0) {
        cnnelm_fail(err, "%s: no image files found", dir);
        goto out;
    }
    rc = 0;
    goto out;
oom:
    cnnelm_fail(err, "%s: out of memory listing the folder", dir);
out:
    for (int i = 0; i < n; i++)
        free(ent[i]);
    free(ent);
    if (rc)
        files_free(l);
    return rc;
}

/* The most common size among decoded images: the set's size when data.resize is not given. */
static void common_size(const cnnelm_image *im, size_t n, int *h, int *w)
{
    size_t best = 0;
    *h = *w = 0;
    for (size_t i = 0; i < n; i++) {
        if (!im[i].pix)
            continue;
        size_t count = 0;
        for (size_t j = 0; j < n; j++)
            count += im[j].pix && im[j].h == im[i].h && im[j].w == im[i].w;
        if (count > best) {
            best = count;
            *h = im[i].h;
            *w = im[i].w;
        }
        if (best * 2 > n)
            break;
    }
}

static void cache_paths(const char *dir, uint64_t key, char *img, char *lab, char *bad, size_t size)
{
    snprintf(img, size, "%s/" CACHE_DIR "/%016llx-images.idx", dir, (unsigned long long)key);
    snprintf(lab, size, "%s/" CACHE_DIR "/%016llx-labels.idx", dir, (unsigned long long)key);
    snprintf(bad, size, "%s/" CACHE_DIR "/%016llx-skipped.txt", dir, (unsigned long long)key);
}

/* The skipped files' messages, one a line, beside the cache: a cached run applies data.max_bad
 * to them as the decoding run did. Returns how many (0 without the file); *first gets one. */
static long read_skipped(const char *path, char *first, size_t size)
{
    FILE *f = fopen(path, "r");
    first[0] = 0;
    if (!f)
        return 0;
    long n = 0;
    char line[1100];
    while (fgets(line, sizeof line, f)) {
        if (n++ == 0) {
            line[strcspn(line, "\n")] = 0;
            snprintf(first, size, "%.900s", line);
        }
    }
    fclose(f);
    return n;
}

/* The skipped-files list beside the cache, atomically (always written, empty when none). */
static int write_skipped(const char *path, const char *text, size_t len, cnnelm_error *err)
{
    cnnelm_atomic_file af;
    if (cnnelm_atomic_open(&af, path, err))
        return -1;
    if (len && fwrite(text, 1, len, af.f) != len) {
        cnnelm_atomic_abort(&af);
        return cnnelm_fail(err, "%s: write failed", path);
    }
    return cnnelm_atomic_commit(&af, err);
}

/* A file that cannot be used: counted, the first message kept, listed for the cache's skip
 * file, and named on stderr unless quiet. */
static void skip_file(const char *msg, long *bad, char *first_bad, size_t size, FILE *skip_log, int quiet)
{
    (*bad)++;
    if (!first_bad[0])
        snprintf(first_bad, size, "%s", msg);
    fprintf(skip_log, "%s\n", msg);
    if (!quiet)
        fprintf(stderr, "cnnelm: skipping %s\n", msg);
}

int cnnelm_folder_load(cnnelm_dataset *ds, const char *dir, const cnnelm_input_options *o,
                       cnnelm_error *err)
{
    memset(ds, 0, sizeof *ds);
    cnnelm_file_list l;
    if (cnnelm_folder_scan(dir, 1, &l, err))
        return -1;
    /* the options that change the decoded bytes are part of the key */
    uint64_t key = l.key;
    uint64_t opt[3] = { (uint64_t)o->resize_h, (uint64_t)o->resize_w, (uint64_t)o->grayscale };
    for (int i = 0; i < 3; i++)
        key = (key ^ opt[i]) * 1099511628211ull;
    char ci[CNNELM_PATH_MAX * 2], cl[CNNELM_PATH_MAX * 2], cb[CNNELM_PATH_MAX * 2];
    cache_paths(dir, key, ci, cl, cb, sizeof ci);
    if (access(ci, R_OK) == 0 && access(cl, R_OK) == 0) {
        cnnelm_error cerr;
        char first[1024];
        long skipped = read_skipped(cb, first, sizeof first);
        if (skipped > o->max_bad) {
            cnnelm_fail(err, "%s: %ld of %zu files are unreadable or of another size (data.max_bad = %ld), "
                        "the first: %s", dir, skipped, l.n, o->max_bad, first);
            files_free(&l);
            return -1;
        }
        if (cnnelm_dataset_load(ds, ci, cl, 256, 0, &cerr) == 0 && ds->classes <= l.n_classes) {
            ds->classes = l.n_classes;
            ds->class_names = l.class_names;
            l.class_names = NULL;
            if (!o->quiet)
                fprintf(stderr, "cnnelm: %s: %zu images read from the cache %s (%ld files skipped "
                        "when it was built, listed in %s)\n", dir, ds->n, ci, skipped, cb);
            files_free(&l);
            return 0;
        }
        cnnelm_dataset_free(ds);
        if (!o->quiet)
            fprintf(stderr, "cnnelm: %s: ignoring a bad cache file (%s); decoding again\n", dir, cerr.msg);
    }

    int rc = -1;
    char *skipped = NULL; /* every skipped file's message, one a line, for the cache */
    size_t skipped_len = 0;
    FILE *skip_log = NULL;
    cnnelm_image *im = calloc(l.n, sizeof *im);
    uint8_t *images = NULL, *labels = NULL;
    if (!im) {
        cnnelm_fail(err, "%s: out of memory", dir);
        goto out;
    }
    long bad = 0;
    int colour = 0;
    char first_bad[1024] = "";
    skip_log = open_memstream(&skipped, &skipped_len);
    if (!skip_log) {
        cnnelm_fail(err, "%s: out of memory", dir);
        goto out;
    }
    for (size_t i = 0; i < l.n; i++) {
        cnnelm_error e;
        if (cnnelm_image_read(l.path[i], &im[i], &e)) {
            skip_file(e.msg, &bad, first_bad, sizeof first_bad, skip_log, o->quiet);
            continue;
        }
        colour |= !o->grayscale && cnnelm_image_is_colour(&im[i]);
    }
    int c = colour ? 3 : 1, h = o->resize_h, w = o->resize_w;
    if (h <= 0 || w <= 0)
        common_size(im, l.n, &h, &w);
    size_t example = (size_t)c * h * w, kept = 0;
    images = malloc(l.n * example + 1);
    labels = malloc(l.n + 1);
    if (!images || !labels) {
        cnnelm_fail(err, "%s: out of memory for %zu images", dir, l.n);
        goto out;
    }
    for (size_t i = 0; i < l.n; i++) {
        if (!im[i].pix)
            continue;
        cnnelm_error e;
        if (cnnelm_image_to_input(&im[i], l.path[i], c, h, w, o->resize_h > 0, images + kept * example, &e)) {
            skip_file(e.msg, &bad, first_bad, sizeof first_bad, skip_log, o->quiet);
        } else {
            labels[kept++] = (uint8_t)l.label[i];
        }
        cnnelm_image_free(&im[i]);
    }
    if (bad > o->max_bad) {
        cnnelm_fail(err, "%s: %ld of %zu files are unreadable or of another size (data.max_bad = %ld), "
                    "the first: %s", dir, bad, l.n, o->max_bad, first_bad);
        goto out;
    }
    if (kept == 0) {
        cnnelm_fail(err, "%s: no readable images", dir);
        goto out;
    }
    if (bad && !o->quiet)
        fprintf(stderr, "cnnelm: %s: %ld of %zu files skipped (unreadable or of another size)\n", dir,
                bad, l.n);
    /* the cache: best effort; a read-only data folder only costs the decoding next time */
    char cdir[CNNELM_PATH_MAX * 2];
    snprintf(cdir, sizeof cdir, "%s/" CACHE_DIR, dir);
    cnnelm_error cerr = { "" };
    if (mkdir(cdir, 0777) != 0 && errno != EEXIST)
        cnnelm_fail(&cerr, "%s: %s", cdir, strerror(errno));
    fclose(skip_log);
    skip_log = NULL;
    if (!cerr.msg[0] && write_skipped(cb, skipped, skipped_len, &cerr) == 0 &&
        cnnelm_idx_write_images_c(ci, images, kept, c, h, w, &cerr) == 0 &&
        cnnelm_idx_write_labels(cl, labels, kept, &cerr) == 0) {
        if (!o->quiet)
            fprintf(stderr, "cnnelm: %s: %zu images decoded, cached in %s\n", dir, kept, ci);
    } else if (!o->quiet) {
        fprintf(stderr, "cnnelm: %s: %zu images decoded; no cache written (%s)\n", dir, kept, cerr.msg);
    }
    ds->images = ds->images_alloc = images;
    ds->labels = ds->labels_alloc = labels;
    images = labels = NULL;
    ds->n = kept;
    ds->rows = h;
    ds->cols = w;
    ds->channels = c;
    ds->classes = l.n_classes;
    ds->class_names = l.class_names;
    l.class_names = NULL;
    rc = 0;
out:
    if (skip_log)
        fclose(skip_log);
    free(skipped);
    if (im)
        for (size_t i = 0; i < l.n; i++)
            cnnelm_image_free(&im[i]);
    free(im);
    free(images);
    free(labels);
    files_free(&l);
    return rc;
}
