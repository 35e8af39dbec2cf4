/* cnnelm partition checkpoints (see checkpoint.h): where each partition's model is saved under
 * train.checkpoint_dir, the fingerprint saved beside it, and the --resume check that reuses a
 * checkpoint only when its fingerprint matches this run's. */
#define _GNU_SOURCE
#include "training/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/atomic_file.h"

/* The checkpoint file of partition p of this run. */
static void checkpoint_path(const cnnelm_experiment *x, int p, char *out, size_t cap)
{
    snprintf(out, cap, "%s/seed%llu-fold%d-part%dof%d.model", x->cfg->train.checkpoint_dir,
             (unsigned long long)x->seed, x->fold, p + 1, x->k);
}

/* ---- checkpoint fingerprints ----
 * Beside each checkpoint NAME.model, NAME.model.fingerprint lists, one "key value" line each,
 * everything that determines the partition's result: the settings that change training, the
 * training files' identity and the partition's examples. --resume reuses a checkpoint only when
 * every line matches, and otherwise says which setting differs. Settings that do not change the
 * model (workers, threads, reduce, the test set, trials and checkpoint_dir) are left out. */
#define FINGERPRINT_VERSION 1

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 1099511628211ull;
    return h;
}

/* A data file's identity: size, mtime and a hash of its first and last 64 KiB (header
 * included), so an edited or replaced file is noticed without reading it all. */
static void fp_file(FILE *out, const char *key, const char *path)
{
    if (!path || !*path)
        return;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(out, "%s %s unreadable\n", key, path);
        if (fd >= 0)
            close(fd);
        return;
    }
    uint64_t h = 14695981039346656037ull;
    unsigned char block[65536];
    off_t at[2] = { 0, st.st_size > (off_t)sizeof block ? st.st_size - (off_t)sizeof block : 0 };
    for (int i = 0; i < 2; i++) {
        ssize_t got = pread(fd, block, sizeof block, at[i]);
        if (got > 0)
            h = fnv1a(h, block, (size_t)got);
    }
    close(fd);
    fprintf(out, "%s %s size %lld mtime %lld.%09ld hash %016llx\n", key, path, (long long)st.st_size,
            (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec, (unsigned long long)h);
}

char *cnnelm_checkpoint_run_text(const cnnelm_experiment *x)
{
    const cnnelm_config *c = x->cfg;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out)
        return NULL;
    fprintf(out, "fingerprint.version %d\n", FINGERPRINT_VERSION);
    fprintf(out, "model.layers %s\nmodel.kernel %d\n", c->model.layers, c->model.kernel);
    fprintf(out, "model.activation %s\nmodel.pooling %s\nmodel.elm_activation %s\n",
            cnnelm_activation_name(c->model.activation), cnnelm_pooling_name(c->model.pooling),
            cnnelm_activation_name(c->model.elm_activation));
    /* patches was written "uniform" before: such checkpoints no longer match, and are retrained */
    fprintf(out, "model.lambda %.17g\nmodel.init %s\n", c->model.lambda,
            c->model.init == CNNELM_INIT_ZERO_MEAN ? "zero-mean"
            : c->model.init == CNNELM_INIT_PATCHES ? "patches" : "uniform");
    /* the keys below are absent at their defaults, so that checkpoints of earlier runs match */
    if (c->model.whiten > 0)
        fprintf(out, "model.whiten %.17g\n", c->model.whiten);
    if (c->model.lambda_candidates.n > 0) {
        fprintf(out, "model.lambda_candidates");
        for (int i = 0; i < c->model.lambda_candidates.n; i++)
            fprintf(out, " %.17g", c->model.lambda_candidates.v[i]);
        fprintf(out, "\n");
    }
    if (c->train.validation > 0)
        fprintf(out, "train.validation %.17g\n", c->train.validation);
    if (c->data.augment)
        fprintf(out, "data.augment %u\n", c->data.augment);
    fprintf(out, "train.seed %llu\ntrain.iterations %d\ntrain.batch %ld\ntrain.chunk %d\n",
            (unsigned long long)x->seed, c->train.iterations, c->train.batch, c->train.chunk);
    fprintf(out, "train.learning_rate %.17g\ntrain.lr_schedule %s\ntrain.momentum %.17g\n",
            c->train.learning_rate, cnnelm_lr_schedule_name(c->train.lr_schedule), c->train.momentum);
    fprintf(out, "train.partitions %d\ntrain.partitioning %s\ntrain.folds %d\nfold %d\n", x->k,
            cnnelm_partitioning_name(c->train.partitioning), c->train.folds, x->fold);
    fprintf(out, "data.train_limit %ld\ndata.extend %u\n", c->data.train_limit, c->data.extend);
    if (c->train.sync_every > 0)
        fprintf(out, "train.sync_every %d\n", c->train.sync_every);
    if (c->train.sync_beta)
        fprintf(out, "train.sync_beta 1\n");
    if (c->train.sums == CNNELM_SUMS_DOUBLE) /* absent for float, as before the key */
        fprintf(out, "train.sums double\n");
    fp_file(out, "data.train_images", c->data.train_images);
    fp_file(out, "data.train_labels", c->data.train_labels);
    for (int s = 0; s < c->data.n_sources; s++) {
        char key[64];
        snprintf(key, sizeof key, "data.sources.%d.train_images", s);
        fp_file(out, key, c->data.sources[s].train_images);
        snprintf(key, sizeof key, "data.sources.%d.train_labels", s);
        fp_file(out, key, c->data.sources[s].train_labels);
    }
    if (c->data.shards[0]) {
        /* every shard of the set: a replaced or added shard changes the rows behind p */
        glob_t g;
        int grc = glob(c->data.shards, 0, NULL, &g);
        fprintf(out, "data.shards %s files %zu\n", c->data.shards, grc == 0 ? (size_t)g.gl_pathc : 0);
        for (size_t s = 0; grc == 0 && s < g.gl_pathc; s++) {
            char key[64];
            snprintf(key, sizeof key, "data.shards.%zu", s);
            fp_file(out, key, g.gl_pathv[s]);
        }
        if (grc == 0)
            globfree(&g);
    }
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* The fingerprint text of one partition (malloc'd): the run's part, then its examples; NULL
 * when out of memory. */
static char *fingerprint(const char *run_text, const cnnelm_subset *sub)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out)
        return NULL;
    fputs(run_text, out);

    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < sub->n; i++) {
        uint64_t row = sub->rows ? (uint64_t)sub->rows[i] : (uint64_t)i;
        h = fnv1a(h, &row, sizeof row);
    }
    fprintf(out, "partition.examples %zu\npartition.ids %016llx\n", sub->n, (unsigned long long)h);
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* The whole file as a string: a fingerprint grows with the shards (a line each), so a fixed
 * cap would cut a long one and no checkpoint of that run would ever match again. */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t n = 0, cap = 65536;
    char *buf = malloc(cap + 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *more = realloc(buf, 2 * cap + 1);
        if (!more) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = more;
        cap *= 2;
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

/* The first line of `want` that `have` lacks, as "KEY (now: VALUE; the checkpoint's: VALUE)". */
static void first_difference(const char *have, const char *want, char *out, size_t cap)
{
    for (const char *line = want; *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        const char *sp = memchr(line, ' ', n);
        size_t klen = sp ? (size_t)(sp - line) : n;
        /* the checkpoint's line with the same key */
        const char *old = NULL;
        size_t olen = 0;
        for (const char *h = have; *h;) {
            const char *he = strchr(h, '\n');
            size_t hn = he ? (size_t)(he - h) : strlen(h);
            if (hn > klen && strncmp(h, line, klen) == 0 && h[klen] == ' ') {
                old = h;
                olen = hn;
                break;
            }
            h = he ? he + 1 : h + hn;
        }
        if (!old || olen != n || memcmp(old, line, n) != 0) {
            snprintf(out, cap, "%.*s differs (now%.*s; the checkpoint's%.*s)", (int)klen, line,
                     (int)(n - klen), line + klen, old ? (int)(olen - klen) : 5,
                     old ? old + klen : " none");
            return;
        }
        line = end ? end + 1 : line + n;
    }
    snprintf(out, cap, "the fingerprint differs");
}

/* A usable checkpoint: its fingerprint matches this run's exactly. Says why any other
 * checkpoint found is trained again. */
int cnnelm_checkpoint_load(const cnnelm_experiment *x, const char *run_text, const cnnelm_model *init,
                           const cnnelm_subset *sub, int p, cnnelm_part_result *r)
{
    char path[CNNELM_PATH_MAX + 64], fp_path[CNNELM_PATH_MAX + 96];
    checkpoint_path(x, p, path, sizeof path);
    snprintf(fp_path, sizeof fp_path, "%s.fingerprint", path);
    if (access(path, F_OK) != 0)
        return 0; /* not trained yet */
    cnnelm_model m;
    cnnelm_error e;
    if (cnnelm_model_load(&m, path, &e) != 0) {
        cnnelm_progress_note(x->prog, "checkpoint is corrupt, training again: %s", e.msg);
        return 0;
    }
    char *want = fingerprint(run_text, sub), *have = read_text(fp_path);
    int ok = want && have && strcmp(want, have) == 0 && cnnelm_arch_equal(&m.arch, &init->arch) &&
             m.seed == init->seed && m.n_examples == sub->n;
    if (!ok) {
        char why[CNNELM_PATH_MAX + 512];
        if (!have)
            snprintf(why, sizeof why, "it has no fingerprint %s (an older cnnelm or an interrupted save)",
                     fp_path);
        else if (!want)
            snprintf(why, sizeof why, "out of memory");
        else if (strcmp(want, have) != 0)
            first_difference(have, want, why, sizeof why);
        else
            snprintf(why, sizeof why, "its model does not match its fingerprint");
        cnnelm_progress_note(x->prog, "checkpoint %s is not this run's partition %d, training again: %s",
                             path, p + 1, why);
        cnnelm_model_free(&m);
    } else {
        r->model = m;
        r->resumed = 1;
    }
    free(want);
    free(have);
    return ok;
}

/* The model first, then its fingerprint; an old fingerprint goes before the model is replaced,
 * so a save cut short leaves a checkpoint that is trained again, never a stale match. */
int cnnelm_checkpoint_save(const cnnelm_experiment *x, const char *run_text, const cnnelm_subset *sub,
                           int p, const cnnelm_model *m, cnnelm_error *err)
{
    char path[CNNELM_PATH_MAX + 64], fp_path[CNNELM_PATH_MAX + 96];
    checkpoint_path(x, p, path, sizeof path);
    snprintf(fp_path, sizeof fp_path, "%s.fingerprint", path);
    if (unlink(fp_path) != 0 && errno != ENOENT)
        return cnnelm_fail(err, "%s: cannot remove the old fingerprint: %s", fp_path, strerror(errno));
    if (cnnelm_model_save(m, path, err))
        return -1;
    char *text = fingerprint(run_text, sub);
    if (!text)
        return cnnelm_fail(err, "out of memory");
    cnnelm_atomic_file af;
    int rc = cnnelm_atomic_open(&af, fp_path, err);
    if (rc == 0) {
        size_t n = strlen(text);
        if (fwrite(text, 1, n, af.f) != n) {
            int e = errno;
            cnnelm_atomic_abort(&af);
            rc = cnnelm_fail(err, "%s: cannot write: %s", fp_path, strerror(e));
        } else {
            rc = cnnelm_atomic_commit(&af, err);
        }
    }
    free(text);
    return rc;
}
