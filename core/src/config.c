/* cnnelm configuration: defaults, a libconfig file, "-s key=value" overrides, and one schema
 * table that checks every setting and documents it (cnnelm_config_write_reference). */
#define _XOPEN_SOURCE 700

#include "cnnelm/config.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

_Static_assert(sizeof(cnnelm_activation) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(cnnelm_pooling) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(cnnelm_reduce) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(cnnelm_partitioning) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(cnnelm_lr_schedule) == sizeof(int), "enums are stored as int");

/* ---- enum names (index = enum value) ---- */

static const char *const activation_names[] = {"identity", "relu", "opttanh", NULL};
static const char *const pooling_names[] = {"mean", "max", NULL};
static const char *const reduce_names[] = {"mean", "weighted", "refit", NULL};
static const char *const partitioning_names[] = {"shuffle", "stratified", "contiguous", "label-skew",
                                                  "by-source", NULL};
static const char *const lr_schedule_names[] = {"constant", "inverse", NULL};
static const char *const init_names[] = {"zero-mean", "uniform", NULL};
static const char *const noise_names[] = {"gaussian", "salt_pepper", "poisson", NULL};

static const char *enum_name(const char *const *names, int count, int v)
{
    return v >= 0 && v < count ? names[v] : "unknown";
}

const char *cnnelm_activation_name(cnnelm_activation a) { return enum_name(activation_names, 3, (int)a); }
const char *cnnelm_pooling_name(cnnelm_pooling p) { return enum_name(pooling_names, 2, (int)p); }
const char *cnnelm_reduce_name(cnnelm_reduce r) { return enum_name(reduce_names, 3, (int)r); }
const char *cnnelm_partitioning_name(cnnelm_partitioning p) { return enum_name(partitioning_names, 5, (int)p); }
const char *cnnelm_lr_schedule_name(cnnelm_lr_schedule s) { return enum_name(lr_schedule_names, 2, (int)s); }

/* ---- the schema ---- */

typedef enum key_kind {
    K_STRING,   /* char[size] */
    K_LAYERS,   /* char[size], syntax "6c-2s-..." */
    K_BACKEND,  /* char[size], a plugin name: letters, digits, '_' and '-' */
    K_INT,      /* int, long or uint64_t (by size), integer in [imin, imax] */
    K_FLOAT,    /* double in the float range */
    K_ENUM,     /* int-sized enum, one of names[] */
    K_BOOL,     /* int, true or false */
    K_NOISE,    /* unsigned mask: an array of names[] (data.extend) */
    K_FLOATS    /* cnnelm_float_list: an array of numbers > 0 (model.lambda_candidates) */
} key_kind;

#define NO_MAX LLONG_MAX

typedef struct key_def {
    const char *path;        /* "model.kernel"; worker keys: "workers.backend" (in each element) */
    key_kind kind;
    int worker;              /* 1: a member of each workers element, offset into cnnelm_worker_config;
                              * 2: a member of each data.sources element */
    int required;            /* 1: must be present (worker keys only) */
    size_t offset, size;
    long long imin, imax;    /* K_INT; imax NO_MAX = no upper bound */
    double fmin, fmax;       /* K_FLOAT; fmax HUGE_VAL = no upper bound */
    int fmin_open, fmax_open;
    const char *const *names;/* K_ENUM */
    long long idef;          /* default of K_INT, K_ENUM (index) */
    double fdef;             /* default of K_FLOAT */
    const char *sdef;        /* default of strings */
    const char *help;
    int auto_ok;             /* K_FLOAT: the string "auto" is allowed too, stored as 0 */
} key_def;

#define CF(f) .offset = offsetof(cnnelm_config, f), .size = sizeof(((cnnelm_config *)0)->f)
#define SF(f) .offset = offsetof(cnnelm_config, data.sources[0].f), .size = sizeof(((cnnelm_config *)0)->data.sources[0].f)
#define WF(f) .offset = offsetof(cnnelm_worker_config, f), .size = sizeof(((cnnelm_worker_config *)0)->f)

static const key_def schema[] = {
    {.path = "plugin_path", .kind = K_STRING, CF(plugin_path), .sdef = "",
     .help = "Colon-separated directories searched first for backend plugins (libcnnelm-<backend>.so), "
             "before CNNELM_PLUGIN_PATH and the install directory (<prefix>/lib/cnnelm); a relative entry "
             "is relative to this config file's directory. \"\": none."},
    {.path = "cache_dir", .kind = K_STRING, CF(cache_dir), .sdef = "",
     .help = "Directory where backends keep compiled device programs (the OpenCL kernels), given to "
             "every plugin. \"\": $XDG_CACHE_HOME/cnnelm, else ~/.cache/cnnelm."},

    {.path = "data.train_images", .kind = K_STRING, CF(data.train_images), .sdef = "",
     .help = "Training images: an IDX image file (magic 0x803), raw or gzipped (detected by content). "
             "Required by the train command."},
    {.path = "data.train_labels", .kind = K_STRING, CF(data.train_labels), .sdef = "",
     .help = "Training labels: an IDX label file (magic 0x801), raw or gzipped, one label per image."},
    {.path = "data.test_images", .kind = K_STRING, CF(data.test_images), .sdef = "",
     .help = "Test images (IDX). \"\": no test set."},
    {.path = "data.test_labels", .kind = K_STRING, CF(data.test_labels), .sdef = "",
     .help = "Test labels (IDX). \"\": no test set."},
    {.path = "data.train_limit", .kind = K_INT, CF(data.train_limit), .imin = 0, .imax = NO_MAX, .idef = 0,
     .help = "Use only the first N training examples. 0: all."},
    {.path = "data.test_limit", .kind = K_INT, CF(data.test_limit), .imin = 0, .imax = NO_MAX, .idef = 0,
     .help = "Use only the first N test examples. 0: all."},
    {.path = "data.extend", .kind = K_NOISE, CF(data.extend), .names = noise_names, .idef = 0,
     .help = "Extended data, as in the paper: one noisy copy of every training and test image per "
             "noise type listed, e.g. [\"gaussian\", \"salt_pepper\", \"poisson\"] (4x the data), "
             "seeded by train.seed (test copies: train.seed + 1). Noise levels: docs/data.md. []: none."},
    {.path = "data.sources.train_images", .kind = K_STRING, .worker = 2, .required = 1, SF(train_images),
     .sdef = "", .help = "data.sources: a list of IDX sets used as one data set, labels offset per "
                         "source, e.g. ( { train_images = \"a.gz\"; train_labels = \"al.gz\"; }, "
                         "{ ... } ). Replaces data.train_images etc. Required in each source."},
    {.path = "data.sources.train_labels", .kind = K_STRING, .worker = 2, .required = 1, SF(train_labels),
     .sdef = "", .help = "A source's training labels (IDX)."},
    {.path = "data.sources.test_images", .kind = K_STRING, .worker = 2, SF(test_images), .sdef = "",
     .help = "A source's test images (IDX); \"\": none."},
    {.path = "data.sources.test_labels", .kind = K_STRING, .worker = 2, SF(test_labels), .sdef = "",
     .help = "A source's test labels (IDX); \"\": none."},
    {.path = "data.shards", .kind = K_STRING, CF(data.shards), .sdef = "",
     .help = "A training set given as many IDX image files: a glob pattern (e.g. "
             "\"parts/train-*-images-idx3-ubyte.gz\"), matched files used in name order; each "
             "file's labels are the file of the same name with \"images\" replaced by \"labels\" "
             "and \"idx3\" by \"idx1\". Labels are read at start; each shard's images are opened "
             "on first use. With train.partitioning = \"by-source\" the shards are split in order "
             "into train.partitions groups, one partition each. Replaces data.train_images and "
             "data.train_labels. \"\": none."},
    {.path = "data.stream", .kind = K_BOOL, CF(data.stream), .idef = 1,
     .help = "Read IDX images from disk chunk by chunk (noisy copies made when read) instead of "
             "holding the data set in memory: memory then grows with the chunk and the labels, "
             "not the images. false: hold it in memory."},
    {.path = "data.cache_dir", .kind = K_STRING, CF(data.cache_dir), .sdef = "",
     .help = "Where a streamed gzipped IDX file is decompressed once (a file named after it and "
             "keyed by its path, size and modification time; shared by concurrent runs). "
             "\"\": $XDG_CACHE_HOME/cnnelm, else ~/.cache/cnnelm; one that cannot be written: a "
             "temporary file, with a note."},
    {.path = "data.resize", .kind = K_STRING, CF(data.resize), .sdef = "",
     .help = "\"WxH\" (e.g. \"28x28\"): images in an image folder of another size are resized to it "
             "(bilinear). \"\": every image must have the folder's most common size; others count as bad files."},
    {.path = "data.grayscale", .kind = K_BOOL, CF(data.grayscale), .idef = 0,
     .help = "Convert colour (RGB) inputs to gray: luma (299 R + 587 G + 114 B) / 1000."},
    {.path = "data.max_bad", .kind = K_INT, CF(data.max_bad), .imin = 0, .imax = NO_MAX, .idef = 0,
     .help = "Image-folder files that cannot be decoded (or have another size) are named on stderr and "
             "skipped, up to this many; one more is an error."},
    {.path = "data.class_names", .kind = K_STRING, CF(data.class_names), .sdef = "",
     .help = "Class names, comma-separated, in label order (\"T-shirt,Trouser,...\"), for reports and "
             "predictions. Image folders name classes after their subfolders. \"\": none."},
    {.path = "data.class_names_file", .kind = K_STRING, CF(data.class_names_file), .sdef = "",
     .help = "A file with one class name a line, in label order (instead of data.class_names)."},
    {.path = "data.max_bytes", .kind = K_INT, CF(data.max_bytes), .imin = 0, .imax = NO_MAX, .idef = 0,
     .help = "The largest payload (bytes) an IDX header may announce for a file read into memory "
             "(gzipped images, labels; raw images are mapped, not read): a bigger claim is refused "
             "before anything is read. 0: half the physical memory."},

    {.path = "model.layers", .kind = K_LAYERS, CF(model.layers), .sdef = "6c-2s-12c-2s",
     .help = "Architecture: layers joined by '-'; Nc = convolution with N output maps, Ns = N x N "
             "pooling; N in 1..1024. Shapes are checked against the data when training starts."},
    {.path = "model.kernel", .kind = K_INT, CF(model.kernel), .imin = 1, .imax = 27, .idef = 5,
     .help = "Convolution kernel size k (k x k, valid, stride 1)."},
    {.path = "model.activation", .kind = K_ENUM, CF(model.activation), .names = activation_names,
     .idef = CNNELM_ACT_RELU,
     .help = "Activation after each convolution; opttanh = 1.7159 tanh(2x/3)."},
    {.path = "model.pooling", .kind = K_ENUM, CF(model.pooling), .names = pooling_names,
     .idef = CNNELM_POOL_MEAN, .help = "Pooling (sub-sampling) of each s x s block."},
    {.path = "model.elm_activation", .kind = K_ENUM, CF(model.elm_activation), .names = activation_names,
     .idef = CNNELM_ACT_IDENTITY,
     .help = "Activation applied to the flattened last layer to give the ELM hidden matrix H."},
    {.path = "model.lambda", .kind = K_FLOAT, CF(model.lambda), .fmin = 0, .fmin_open = 1, .fmax = HUGE_VAL,
     .fdef = 100.0, .auto_ok = 1,
     .help = "Ridge regularisation: beta = (I/lambda + U)^-1 V. Larger = less regularisation "
             "(like libsvm's C; 1/alpha in scikit-learn); below 1e-6 warns. \"auto\": chosen from "
             "the data by generalised cross-validation among model.lambda_candidates, for every "
             "partition and again for a refit (the choice and the curve are logged and in the "
             "JSON report)."},
    {.path = "model.lambda_candidates", .kind = K_FLOATS, CF(model.lambda_candidates),
     .help = "Candidates for model.lambda = \"auto\": 1 to 32 numbers > 0. []: 1, 10, 100, ..., 1e6."},
    {.path = "model.init", .kind = K_ENUM, CF(model.init), .names = init_names, .idef = CNNELM_INIT_ZERO_MEAN,
     .help = "Initial kernels: uniform in +-sqrt(6/((in+out) k^2)) (the paper's toolbox); zero-mean: "
             "the same with each kernel's mean subtracted (about 1 point more test accuracy)."},

    {.path = "train.seed", .kind = K_INT, CF(train.seed), .imin = 0, .imax = NO_MAX, .idef = 1,
     .help = "Seed of the initial weights and of the partition shuffle (64-bit; write values above "
             "2147483647 with the L suffix, e.g. 5000000000L)."},
    {.path = "train.iterations", .kind = K_INT, CF(train.iterations), .imin = 0, .imax = 100000, .idef = 0,
     .help = "Fine-tuning iterations (epochs) of back-propagation through the CNN layers. 0: plain "
             "CNN-ELM, no fine-tuning."},
    {.path = "train.batch", .kind = K_INT, CF(train.batch), .imin = 0, .imax = NO_MAX, .idef = 0,
     .help = "ELM update interval in examples during fine-tuning (beta is re-solved after each "
             "batch). 0: the whole partition."},
    {.path = "train.chunk", .kind = K_INT, CF(train.chunk), .imin = 1, .imax = 1000000, .idef = 1000,
     .help = "Examples per device call; bounds device memory. Does not change the result beyond float "
             "rounding."},
    {.path = "train.learning_rate", .kind = K_FLOAT, CF(train.learning_rate), .fmin = 0, .fmin_open = 1,
     .fmax = HUGE_VAL, .fdef = 0.01, .help = "Fine-tuning SGD step size alpha."},
    {.path = "train.lr_schedule", .kind = K_ENUM, CF(train.lr_schedule), .names = lr_schedule_names,
     .idef = CNNELM_LR_CONSTANT,
     .help = "constant: alpha every iteration; inverse: alpha / iteration (the paper's)."},
    {.path = "train.momentum", .kind = K_FLOAT, CF(train.momentum), .fmin = 0, .fmax = 1, .fmax_open = 1,
     .fdef = 0.0, .help = "SGD momentum. 0: plain SGD."},
    {.path = "train.partitions", .kind = K_INT, CF(train.partitions), .imin = 1, .imax = 100000, .idef = 1,
     .help = "Number of partitions k of the training set, each trained independently and then combined."},
    {.path = "train.partitioning", .kind = K_ENUM, CF(train.partitioning), .names = partitioning_names,
     .idef = CNNELM_PART_SHUFFLE,
     .help = "How the training set is split: shuffle (random, equal sizes), stratified (equal class "
             "proportions), contiguous (file order), label-skew (non-IID: partitions see different "
             "classes), by-source (one partition per data.sources entry, non-IID; train.partitions "
             "is not used)."},
    {.path = "train.reduce", .kind = K_ENUM, CF(train.reduce), .names = reduce_names,
     .idef = CNNELM_REDUCE_MEAN,
     .help = "How the k models are combined: mean (plain mean of weights and beta, the paper), "
             "weighted (mean weighted by partition size), refit (mean weights, then beta solved once "
             "from the summed U and V of all partitions)."},
    {.path = "train.compare_single", .kind = K_BOOL, CF(train.compare_single), .idef = 0,
     .help = "Also train one model on all the training data, for the comparison table."},
    {.path = "train.trials", .kind = K_INT, CF(train.trials), .imin = 1, .imax = 1000, .idef = 1,
     .help = "Repeat the run with seeds seed, seed+1, ...; the table shows mean +- standard deviation."},
    {.path = "train.folds", .kind = K_INT, CF(train.folds), .imin = 0, .imax = 100, .idef = 0,
     .help = "n > 1: n-fold cross-validation on the training set instead of the test set. 0: off."},
    {.path = "train.checkpoint_dir", .kind = K_STRING, CF(train.checkpoint_dir), .sdef = "",
     .help = "Directory where each finished partition's model is written (atomically); train "
             "--resume reuses those whose NAME.model.fingerprint matches this run (settings, data files, "
             "examples). \"\": no checkpoints."},
    {.path = "train.memory_limit", .kind = K_INT, CF(train.memory_limit), .imin = 0, .imax = NO_MAX,
     .idef = 0, .help = "Host memory in MiB a run may plan to use (ELM sums and solve in double, "
                        "buffers per worker, per-partition models; printed before the run): a run "
                        "that needs more is refused before it starts. 0: MemAvailable from "
                        "/proc/meminfo."},

    {.path = "workers.backend", .kind = K_BACKEND, .worker = 1, .required = 1, WF(backend), .sdef = "cpu",
     .help = "Backend plugin name: \"cpu\" loads libcnnelm-cpu.so, \"opencl\" libcnnelm-opencl.so. "
             "Required in each worker."},
    {.path = "workers.device", .kind = K_INT, .worker = 1, WF(device), .imin = 0, .imax = INT_MAX, .idef = 0,
     .help = "Device index within the backend."},
    {.path = "workers.match", .kind = K_STRING, .worker = 1, WF(match), .sdef = "",
     .help = "Pick the device by name instead of index: the first whose name or vendor contains "
             "this text (e.g. \"NVIDIA\", \"gfx90a\"). \"\": use device."},
    {.path = "workers.threads", .kind = K_INT, .worker = 1, WF(threads), .imin = 0, .imax = INT_MAX,
     .idef = 0, .help = "Host threads for this worker. 0: the backend's default."},
    {.path = "workers.op_timeout", .kind = K_FLOAT, .worker = 1, WF(op_timeout), .fmin = 0, .fmax = 1e6,
     .fdef = 600.0,
     .help = "Seconds one device call (an op or a transfer) may take. A call that takes longer makes "
             "the device lost: its partition goes to another worker, or the run ends with an error "
             "naming the plugin, the op and the shape. 0: no limit."},
};

#define N_KEYS (sizeof schema / sizeof schema[0])

static int enum_count(const char *const *names)
{
    int n = 0;
    while (names[n]) n++;
    return n;
}

static const char *leaf(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

static const key_def *find_key(const char *path, int worker)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        if (schema[i].worker != worker) continue;
        if (strcmp(worker ? leaf(schema[i].path) : schema[i].path, path) == 0)
            return &schema[i];
    }
    return NULL;
}

/* A group of the schema: some non-worker key lies under "path.". */
static int is_group(const char *path)
{
    size_t n = strlen(path);
    for (size_t i = 0; i < N_KEYS; i++)
        if (!schema[i].worker && strncmp(schema[i].path, path, n) == 0 && schema[i].path[n] == '.')
            return 1;
    return 0;
}

static void range_text(const key_def *k, char *buf, size_t size)
{
    if (k->kind == K_INT) {
        if (k->imax == NO_MAX || (k->imax == INT_MAX && k->size == sizeof(int)))
            snprintf(buf, size, ">= %lld", k->imin);
        else
            snprintf(buf, size, "%lld..%lld", k->imin, k->imax);
    } else if (k->kind == K_FLOAT) {
        if (k->fmax == HUGE_VAL)
            snprintf(buf, size, "%s %g%s", k->fmin_open ? ">" : ">=", k->fmin,
                     k->auto_ok ? " or \"auto\"" : "");
        else
            snprintf(buf, size, "%c%g, %g%c", k->fmin_open ? '(' : '[', k->fmin, k->fmax,
                     k->fmax_open ? ')' : ']');
    } else if (k->kind == K_BOOL) {
        snprintf(buf, size, "true, false");
    } else if (k->kind == K_FLOATS) {
        snprintf(buf, size, "1 to %d numbers > 0", CNNELM_MAX_FLOAT_LIST);
    } else if (k->kind == K_ENUM || k->kind == K_NOISE) {
        size_t used = 0;
        buf[0] = 0;
        for (int i = 0; k->names[i] && used < size; i++)
            used += (size_t)snprintf(buf + used, size - used, "%s\"%s\"", i ? ", " : "", k->names[i]);
    } else {
        buf[0] = 0;
    }
}

static void float_text(double v, char *buf, size_t size)
{
    snprintf(buf, size, "%.17g", v);
    /* shortest form that reads back the same */
    for (int prec = 1; prec <= 17; prec++) {
        char tmp[64];
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) {
            snprintf(buf, size, "%s", tmp);
            break;
        }
    }
    if (!strpbrk(buf, ".eEni"))
        strncat(buf, ".0", size - strlen(buf) - 1);
}

static void default_text(const key_def *k, char *buf, size_t size)
{
    switch (k->kind) {
    case K_INT: snprintf(buf, size, "%lld", k->idef); break;
    case K_FLOAT: float_text(k->fdef, buf, size); break;
    case K_ENUM: snprintf(buf, size, "\"%s\"", k->names[k->idef]); break;
    case K_BOOL: snprintf(buf, size, "%s", k->idef ? "true" : "false"); break;
    case K_NOISE: case K_FLOATS: snprintf(buf, size, "[]"); break;
    default: snprintf(buf, size, "\"%s\"", k->sdef); break;
    }
}

static const char *kind_text(const key_def *k)
{
    switch (k->kind) {
    case K_INT: return strcmp(k->path, "train.seed") == 0 ? "int64" : "int";
    case K_FLOAT: return "float";
    case K_ENUM: return "enum";
    case K_BOOL: return "bool";
    case K_NOISE: return "array of strings";
    case K_FLOATS: return "array of floats";
    default: return "string";
    }
}

/* ---- storing values into the struct ---- */

static void store_int(void *base, const key_def *k, long long v)
{
    char *p = (char *)base + k->offset;
    if (k->size == sizeof(int)) {
        int x = (int)v;
        memcpy(p, &x, sizeof x);
    } else {
        int64_t x = v; /* long or uint64_t; values are >= 0 here, same representation */
        memcpy(p, &x, sizeof x);
    }
}

static long long load_int(const void *base, const key_def *k)
{
    const char *p = (const char *)base + k->offset;
    if (k->size == sizeof(int)) {
        int x;
        memcpy(&x, p, sizeof x);
        return x;
    }
    int64_t x;
    memcpy(&x, p, sizeof x);
    return x;
}

static void store_default(void *base, const key_def *k)
{
    char *p = (char *)base + k->offset;
    switch (k->kind) {
    case K_INT: case K_ENUM: case K_BOOL: case K_NOISE: store_int(base, k, k->idef); break;
    case K_FLOAT: memcpy(p, &k->fdef, sizeof(double)); break;
    case K_FLOATS: memset(p, 0, k->size); break;
    default: snprintf(p, k->size, "%s", k->sdef); break;
    }
}

void cnnelm_config_defaults(cnnelm_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_KEYS; i++) {
        if (schema[i].worker == 1) store_default(&cfg->workers[0], &schema[i]);
        else if (!schema[i].worker) store_default(cfg, &schema[i]);
    }
    cfg->n_workers = 1;
}

/* ---- error locations ---- */

typedef struct ctx {
    const char *path;      /* the config file, or "" */
    cnnelm_error *err;
} ctx;

/* An override as messages show it, on one line: as typed, or, when it holds control
 * bytes, in double quotes with those bytes escaped (a newline as \x0a). */
static void show_override(const char *ov, char *out, size_t cap)
{
    int plain = 1;
    for (const char *p = ov; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
            plain = 0;
    if (plain) {
        snprintf(out, cap, "%.600s%s", ov, strlen(ov) > 600 ? "..." : "");
        return;
    }
    char esc[660];
    snprintf(out, cap, "\"%s\"", cnnelm_escape(ov, strlen(ov), esc, sizeof esc));
}

/* "FILE:LINE: msg" for a setting from a file, "-s OVERRIDE: msg" for one from an override
 * (its hook points at the override text). */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail_at(const ctx *c, const config_setting_t *s, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* values quoted in msg come from files and -s: control bytes shown as \xNN, one line */
    char clean[sizeof msg * 4];
    size_t o = 0;
    for (const char *p = msg; *p && o + 5 < sizeof clean; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20 || ch == 0x7f)
            o += (size_t)snprintf(clean + o, sizeof clean - o, "\\x%02x", ch);
        else
            clean[o++] = (char)ch;
    }
    clean[o] = '\0';
    const char *hook = s ? config_setting_get_hook(s) : NULL;
    if (hook) {
        char shown[700];
        show_override(hook, shown, sizeof shown);
        return cnnelm_fail(c->err, "-s %s: %s", shown, clean);
    }
    const char *file = s && config_setting_source_file(s) ? config_setting_source_file(s) : c->path;
    if (s && config_setting_source_line(s) > 0)
        return cnnelm_fail(c->err, "%s:%u: %s", file, config_setting_source_line(s), clean);
    return cnnelm_fail(c->err, "%s: %s", file, clean);
}

static const char *type_text(int type)
{
    switch (type) {
    case CONFIG_TYPE_GROUP: return "a group";
    case CONFIG_TYPE_INT: case CONFIG_TYPE_INT64: return "an integer";
    case CONFIG_TYPE_FLOAT: return "a float";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_ARRAY: return "an array";
    case CONFIG_TYPE_LIST: return "a list";
    default: return "nothing";
    }
}

/* ---- suggestions by edit distance ---- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 128 || lb > 128) return (size_t)-1;
    size_t row[129];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static void consider(const char *name, const char *cand, const char **best, size_t *best_d)
{
    size_t d = edit_distance(name, cand);
    if (strcmp(leaf(name), leaf(cand)) == 0 && d > 1)
        d = 1; /* the right key in the wrong group */
    if (d < *best_d) {
        *best_d = d;
        *best = cand;
    }
}

/* The closest known name to `name` (a full path, or a worker key's leaf), or NULL. */
static const char *suggest(const char *name, int worker)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < N_KEYS; i++)
        if (schema[i].worker == worker)
            consider(name, worker ? leaf(schema[i].path) : schema[i].path, &best, &best_d);
    static const char *const group_names[] = {"data", "model", "train", "workers"};
    if (!worker)
        for (int i = 0; i < 4; i++)
            consider(name, group_names[i], &best, &best_d);
    size_t limit = strlen(name) / 3;
    if (limit < 2) limit = 2;
    return best && best_d <= limit ? best : NULL;
}

static int fail_unknown(const ctx *c, const config_setting_t *s, const char *shown, const char *name,
                        int worker, const char *shown_prefix)
{
    const char *sug = suggest(name, worker);
    if (sug)
        return fail_at(c, s, "unknown setting '%s' (did you mean '%s%s'?)", shown, shown_prefix, sug);
    return fail_at(c, s, "unknown setting '%s'", shown);
}

/* ---- checking one value ---- */

/* "6c-2s-12c-2s": tokens N followed by c or s, N in 1..1024, joined by '-'. */
static int layers_syntax(const char *s, char *bad, size_t bad_size)
{
    if (!*s) {
        snprintf(bad, bad_size, "(empty)");
        return -1;
    }
    const char *p = s;
    for (;;) {
        const char *start = p;
        long n = 0;
        while (isdigit((unsigned char)*p) && n <= 1024) n = n * 10 + (*p++ - '0');
        int ok = p > start && n >= 1 && n <= 1024 && (*p == 'c' || *p == 's') &&
                 (p[1] == '-' || p[1] == 0);
        if (!ok) {
            const char *end = strchr(start, '-');
            int len = end ? (int)(end - start) : (int)strlen(start);
            snprintf(bad, bad_size, "'%.*s'", len > 40 ? 40 : len, start);
            return -1;
        }
        p++;
        if (*p == 0) return 0;
        p++; /* '-' */
    }
}

static int check_value(const ctx *c, const config_setting_t *s, const key_def *k, const char *shown,
                       void *base)
{
    int type = config_setting_type(s);
    char range[160];
    range_text(k, range, sizeof range);
    switch (k->kind) {
    case K_INT: {
        if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
            return fail_at(c, s, "%s must be an integer, not %s", shown, type_text(type));
        long long v = config_setting_get_int64(s);
        if (v < k->imin || v > k->imax)
            return fail_at(c, s, "%s = %lld is out of range (%s)", shown, v, range);
        store_int(base, k, v);
        return 0;
    }
    case K_BOOL:
        if (type != CONFIG_TYPE_BOOL)
            return fail_at(c, s, "%s must be true or false, not %s", shown, type_text(type));
        store_int(base, k, config_setting_get_bool(s));
        return 0;
    case K_NOISE: {
        if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
            return fail_at(c, s, "%s must be an array of strings, e.g. [\"gaussian\", \"poisson\"], not %s",
                           shown, type_text(type));
        unsigned mask = 0;
        int n = config_setting_length(s);
        for (int i = 0; i < n; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            const char *v = config_setting_type(e) == CONFIG_TYPE_STRING ? config_setting_get_string(e) : NULL;
            int found = -1;
            for (int j = 0; v && k->names[j]; j++)
                if (strcmp(v, k->names[j]) == 0)
                    found = j;
            if (found < 0)
                return fail_at(c, s, "%s[%d] is not one of %s", shown, i, range);
            if (mask & (1u << found))
                return fail_at(c, s, "%s lists \"%s\" twice", shown, v);
            mask |= 1u << found;
        }
        store_int(base, k, (long long)mask);
        return 0;
    }
    case K_FLOATS: {
        if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
            return fail_at(c, s, "%s must be an array of numbers, e.g. [10.0, 100.0, 1000.0], not %s",
                           shown, type_text(type));
        cnnelm_float_list list;
        memset(&list, 0, sizeof list);
        int n = config_setting_length(s);
        if (n > CNNELM_MAX_FLOAT_LIST)
            return fail_at(c, s, "%s has %d entries (at most %d)", shown, n, CNNELM_MAX_FLOAT_LIST);
        for (int i = 0; i < n; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            if (!config_setting_is_number(e))
                return fail_at(c, s, "%s[%d] must be a number, not %s", shown, i,
                               type_text(config_setting_type(e)));
            double v = config_setting_type(e) == CONFIG_TYPE_FLOAT ? config_setting_get_float(e)
                                                                   : (double)config_setting_get_int64(e);
            if (!(v > 0) || !isfinite(v))
                return fail_at(c, s, "%s[%d] = %g is out of range (a number > 0)", shown, i, v);
            list.v[list.n++] = v;
        }
        memcpy((char *)base + k->offset, &list, sizeof list);
        return 0;
    }
    case K_FLOAT: {
        if (k->auto_ok && type == CONFIG_TYPE_STRING && strcmp(config_setting_get_string(s), "auto") == 0) {
            double zero = 0; /* "auto" */
            memcpy((char *)base + k->offset, &zero, sizeof zero);
            return 0;
        }
        if (!config_setting_is_number(s))
            return fail_at(c, s, "%s must be a number, not %s", shown, type_text(type));
        double v = type == CONFIG_TYPE_FLOAT ? config_setting_get_float(s)
                                             : (double)config_setting_get_int64(s);
        int low = k->fmin_open ? !(v > k->fmin) : !(v >= k->fmin);
        int high = k->fmax == HUGE_VAL ? !isfinite(v) : k->fmax_open ? !(v < k->fmax) : !(v <= k->fmax);
        if (low || high)
            return fail_at(c, s, "%s = %g is out of range (%s)", shown, v, range);
        memcpy((char *)base + k->offset, &v, sizeof v);
        return 0;
    }
    default:
        break;
    }
    if (type != CONFIG_TYPE_STRING)
        return fail_at(c, s, "%s must be a string (in double quotes), not %s", shown, type_text(type));
    const char *v = config_setting_get_string(s);
    char *dst = (char *)base + k->offset;
    if (k->kind == K_ENUM) {
        for (int i = 0; k->names[i]; i++) {
            if (strcmp(v, k->names[i]) == 0) {
                store_int(base, k, i);
                return 0;
            }
        }
        return fail_at(c, s, "%s = \"%.200s\" is not one of %s", shown, v, range);
    }
    if (strlen(v) >= k->size)
        return fail_at(c, s, "%s is too long (%zu characters, at most %zu)", shown, strlen(v), k->size - 1);
    if (k->kind == K_LAYERS) {
        char bad[64];
        if (layers_syntax(v, bad, sizeof bad))
            return fail_at(c, s, "%s = \"%s\": bad layer %s (want layers like 6c or 2s: a count 1..1024 "
                           "then c (convolution) or s (pooling), joined by '-', e.g. \"6c-2s-12c-2s\")",
                           shown, v, bad);
    }
    if (k->kind == K_BACKEND) {
        if (!*v)
            return fail_at(c, s, "%s is empty (want a backend name such as \"cpu\")", shown);
        for (const char *p = v; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
                return fail_at(c, s, "%s = \"%s\": a backend name has only letters, digits, '_' and '-'",
                               shown, v);
    }
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

/* ---- walking the tree ---- */

static int check_workers(const ctx *c, const config_setting_t *list, cnnelm_config *cfg)
{
    int type = config_setting_type(list);
    if (type != CONFIG_TYPE_LIST && !(type == CONFIG_TYPE_ARRAY && config_setting_length(list) == 0))
        return fail_at(c, list, "workers must be a list of groups, e.g. ( { backend = \"cpu\"; device = 0; } ), "
                       "not %s", type_text(type));
    int n = config_setting_length(list);
    if (n == 0)
        return fail_at(c, list, "workers is empty: at least one worker is needed, e.g. "
                       "( { backend = \"cpu\"; } )");
    if (n > CNNELM_MAX_WORKERS)
        return fail_at(c, list, "workers has %d entries (at most %d)", n, CNNELM_MAX_WORKERS);
    for (int i = 0; i < n; i++) {
        const config_setting_t *w = config_setting_get_elem(list, (unsigned)i);
        cnnelm_worker_config *wc = &cfg->workers[i];
        char where[48];
        snprintf(where, sizeof where, "workers[%d]", i);
        if (!config_setting_is_group(w))
            return fail_at(c, w, "%s must be a group such as { backend = \"cpu\"; }, not %s", where,
                           type_text(config_setting_type(w)));
        for (size_t j = 0; j < N_KEYS; j++)
            if (schema[j].worker == 1) store_default(wc, &schema[j]);
        wc->backend[0] = 0;
        int m = config_setting_length(w);
        for (int j = 0; j < m; j++) {
            const config_setting_t *s = config_setting_get_elem(w, (unsigned)j);
            const char *name = config_setting_name(s);
            char shown[128];
            snprintf(shown, sizeof shown, "%s.%.60s", where, name);
            const key_def *k = find_key(name, 1);
            if (!k) {
                char prefix[64];
                snprintf(prefix, sizeof prefix, "%s.", where);
                return fail_unknown(c, s, shown, name, 1, prefix);
            }
            if (check_value(c, s, k, shown, wc))
                return -1;
        }
        for (size_t j = 0; j < N_KEYS; j++) {
            if (schema[j].worker != 1 || !schema[j].required) continue;
            if (!config_setting_get_member(w, leaf(schema[j].path)))
                return fail_at(c, w, "%s has no %s (e.g. %s = %s;)", where, leaf(schema[j].path),
                               leaf(schema[j].path), "\"cpu\"");
        }
    }
    cfg->n_workers = n;
    return 0;
}

static int check_sources(const ctx *c, const config_setting_t *list, cnnelm_config *cfg)
{
    int type = config_setting_type(list);
    if (type != CONFIG_TYPE_LIST && !(type == CONFIG_TYPE_ARRAY && config_setting_length(list) == 0))
        return fail_at(c, list, "data.sources must be a list of groups, e.g. ( { train_images = \"a.gz\"; "
                       "train_labels = \"b.gz\"; } ), not %s", type_text(type));
    int n = config_setting_length(list);
    if (n > CNNELM_MAX_SOURCES)
        return fail_at(c, list, "data.sources has %d entries (at most %d)", n, CNNELM_MAX_SOURCES);
    for (int i = 0; i < n; i++) {
        const config_setting_t *src = config_setting_get_elem(list, (unsigned)i);
        /* source i's fields live at the offset of sources[0] plus i elements */
        char *base = (char *)cfg + (size_t)i * sizeof cfg->data.sources[0];
        char where[48];
        snprintf(where, sizeof where, "data.sources[%d]", i);
        if (!config_setting_is_group(src))
            return fail_at(c, src, "%s must be a group { train_images = ...; train_labels = ...; }, not %s",
                           where, type_text(config_setting_type(src)));
        int m = config_setting_length(src);
        for (int j = 0; j < m; j++) {
            const config_setting_t *s = config_setting_get_elem(src, (unsigned)j);
            const char *name = config_setting_name(s);
            char shown[128];
            snprintf(shown, sizeof shown, "%s.%.60s", where, name);
            const key_def *k = find_key(name, 2);
            if (!k) {
                char prefix[64];
                snprintf(prefix, sizeof prefix, "%s.", where);
                return fail_unknown(c, s, shown, name, 2, prefix);
            }
            if (check_value(c, s, k, shown, base))
                return -1;
        }
        for (size_t j = 0; j < N_KEYS; j++) {
            if (schema[j].worker != 2 || !schema[j].required) continue;
            if (!config_setting_get_member(src, leaf(schema[j].path)))
                return fail_at(c, src, "%s has no %s", where, leaf(schema[j].path));
        }
        const char *ti = cfg->data.sources[i].test_images, *tl = cfg->data.sources[i].test_labels;
        if (!*ti != !*tl)
            return fail_at(c, src, "%s: test_images and test_labels go together (one is empty)", where);
    }
    cfg->data.n_sources = n;
    return 0;
}

static int check_group(const ctx *c, const config_setting_t *g, const char *prefix, cnnelm_config *cfg)
{
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        char path[256];
        snprintf(path, sizeof path, "%s%s%.200s", prefix, *prefix ? "." : "", config_setting_name(s));
        if (!*prefix && strcmp(path, "workers") == 0) {
            if (check_workers(c, s, cfg))
                return -1;
            continue;
        }
        if (strcmp(path, "data.sources") == 0) {
            if (check_sources(c, s, cfg))
                return -1;
            continue;
        }
        if (is_group(path)) {
            if (!config_setting_is_group(s))
                return fail_at(c, s, "%s must be a group { ... }, not %s", path,
                               type_text(config_setting_type(s)));
            if (check_group(c, s, path, cfg))
                return -1;
            continue;
        }
        const key_def *k = find_key(path, 0);
        if (!k)
            return fail_unknown(c, s, path, path, 0, "");
        if (check_value(c, s, k, path, cfg))
            return -1;
    }
    return 0;
}

/* ---- integers beyond 32 bits ---- */

/* libconfig 1.5 reads an integer literal without the L suffix as 32 bits and silently wraps
 * larger ones. Finds the first such literal in `text` (skipping strings and comments): returns
 * its line (and the literal in tok), or 0 when there is none. */
static int find_wide_int(const char *text, char *tok, size_t tok_size)
{
    int line = 1;
    const char *p = text;
    while (*p) {
        if (*p == '\n') {
            line++; p++;
        } else if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1]) p++;
                else if (*p == '\n') line++;
            }
            if (*p) p++;
        } else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
            while (*p && *p != '\n') p++;
        } else if (p[0] == '/' && p[1] == '*') {
            for (p += 2; *p && !(p[0] == '*' && p[1] == '/'); p++)
                if (*p == '\n') line++;
            if (*p) p += 2;
        } else if (isalpha((unsigned char)*p) || *p == '_' || *p == '*' || *p == '@') {
            while (isalnum((unsigned char)*p) || *p == '_' || *p == '*' || *p == '-' || *p == '@') p++;
        } else if (isdigit((unsigned char)*p)) {
            const char *start = p;
            int is_float = 0, hex = p[0] == '0' && (p[1] == 'x' || p[1] == 'X');
            if (hex) p += 2;
            while (isalnum((unsigned char)*p) || *p == '.' ||
                   ((*p == '-' || *p == '+') && !hex && (p[-1] == 'e' || p[-1] == 'E'))) {
                if (*p == '.' || (!hex && (*p == 'e' || *p == 'E'))) is_float = 1;
                p++;
            }
            int has_l = p[-1] == 'L' || p[-1] == 'l';
            if (!is_float && !has_l) {
                int neg = start > text && start[-1] == '-';
                errno = 0;
                unsigned long long v = strtoull(start, NULL, hex ? 16 : 10);
                int wide = errno == ERANGE ||
                           (hex ? v > 0xffffffffull : v > (neg ? 2147483648ull : 2147483647ull));
                if (wide) {
                    snprintf(tok, tok_size, "%s%.*s", neg ? "-" : "", (int)(p - start > 40 ? 40 : p - start),
                             start);
                    return line;
                }
            }
        } else {
            p++;
        }
    }
    return 0;
}

/* ---- overrides ---- */

static void hook_all(config_setting_t *s, void *hook)
{
    config_setting_set_hook(s, hook);
    if (config_setting_is_aggregate(s))
        for (int i = 0; i < config_setting_length(s); i++)
            hook_all(config_setting_get_elem(s, (unsigned)i), hook);
}

/* Adds a deep copy of src under parent (name ignored for list and array elements). */
static config_setting_t *copy_setting(config_setting_t *parent, const char *name,
                                      const config_setting_t *src)
{
    int type = config_setting_type(src);
    config_setting_t *d = config_setting_add(parent, config_setting_is_group(parent) ? name : NULL, type);
    if (!d) return NULL;
    switch (type) {
    case CONFIG_TYPE_INT: config_setting_set_int(d, config_setting_get_int(src)); break;
    case CONFIG_TYPE_INT64: config_setting_set_int64(d, config_setting_get_int64(src)); break;
    case CONFIG_TYPE_FLOAT: config_setting_set_float(d, config_setting_get_float(src)); break;
    case CONFIG_TYPE_BOOL: config_setting_set_bool(d, config_setting_get_bool(src)); break;
    case CONFIG_TYPE_STRING: config_setting_set_string(d, config_setting_get_string(src)); break;
    default:
        for (int i = 0; i < config_setting_length(src); i++) {
            const config_setting_t *e = config_setting_get_elem(src, (unsigned)i);
            if (!copy_setting(d, config_setting_name(e), e))
                return NULL;
        }
    }
    config_setting_set_format(d, config_setting_get_format(src));
    return d;
}

/* Puts a copy of src at parent.name: groups merge member by member, anything else replaces. */
static int put_setting(config_setting_t *parent, const char *name, const config_setting_t *src, void *hook)
{
    config_setting_t *old = config_setting_get_member(parent, name);
    if (old && config_setting_is_group(old) && config_setting_is_group(src)) {
        config_setting_set_hook(old, hook);
        for (int i = 0; i < config_setting_length(src); i++) {
            const config_setting_t *e = config_setting_get_elem(src, (unsigned)i);
            if (put_setting(old, config_setting_name(e), e, hook))
                return -1;
        }
        return 0;
    }
    if (old && config_setting_remove(parent, name) != CONFIG_TRUE)
        return -1;
    config_setting_t *d = copy_setting(parent, name, src);
    if (!d)
        return -1;
    hook_all(d, hook);
    return 0;
}

static int valid_key(const char *key)
{
    /* libconfig names joined by '.': [A-Za-z*][-A-Za-z0-9_*]* */
    const char *p = key;
    for (;;) {
        if (!isalpha((unsigned char)*p) && *p != '*') return 0;
        while (isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '*') p++;
        if (*p == 0) return 1;
        if (*p != '.') return 0;
        p++;
    }
}

static int is_plain_decimal(const char *s)
{
    if (*s == '-' || *s == '+') s++;
    if (!isdigit((unsigned char)*s)) return 0;
    while (isdigit((unsigned char)*s)) s++;
    return *s == 0;
}

static int apply_override(config_t *conf, const char *ov, cnnelm_error *err)
{
    char shown[700]; /* ov as messages show it: escaped, on one line */
    show_override(ov, shown, sizeof shown);
    const char *eq = strchr(ov, '=');
    if (!eq)
        return cnnelm_fail(err, "-s %s: expected key=value, e.g. -s train.seed=7", shown);
    char key[256];
    const char *kb = ov, *ke = eq;
    while (kb < ke && isspace((unsigned char)*kb)) kb++;
    while (ke > kb && isspace((unsigned char)ke[-1])) ke--;
    if ((size_t)(ke - kb) >= sizeof key)
        return cnnelm_fail(err, "-s %s: key too long", shown);
    memcpy(key, kb, (size_t)(ke - kb));
    key[ke - kb] = 0;
    if (!valid_key(key))
        return cnnelm_fail(err, "-s %s: bad key '%s' (want names joined by '.', e.g. train.seed)", shown, key);
    const key_def *k = find_key(key, 0);
    if (!k && !is_group(key) && strcmp(key, "workers") != 0 && strcmp(key, "data.sources") != 0) {
        ctx c = {"", err};
        config_setting_t fake;
        memset(&fake, 0, sizeof fake);
        fake.hook = (void *)ov;
        if (strncmp(key, "workers.", 8) == 0)
            return cnnelm_fail(err, "-s %s: workers is a list; override it whole, e.g. "
                               "-s 'workers=({backend=\"cpu\";device=0;})'", shown);
        if (strncmp(key, "data.sources.", 13) == 0)
            return cnnelm_fail(err, "-s %s: data.sources is a list; override it whole", shown);
        return fail_unknown(&c, &fake, key, key, 0, "");
    }
    const char *value = eq + 1;
    while (isspace((unsigned char)*value)) value++;
    size_t vlen = strlen(value);
    while (vlen > 0 && isspace((unsigned char)value[vlen - 1])) vlen--;
    int string_key = k && (k->kind == K_STRING || k->kind == K_LAYERS || k->kind == K_ENUM ||
                           (k->auto_ok && vlen == 4 && strncmp(value, "auto", 4) == 0));

    /* "v = VALUE\n;" (a comment in VALUE ends at the newline); integers beyond 32 bits get the
     * L suffix libconfig needs. */
    size_t size = vlen + 16;
    char *text = malloc(size);
    if (!text)
        return cnnelm_fail(err, "-s %s: out of memory", shown);
    char *vcopy = strndup(value, vlen);
    if (!vcopy) {
        free(text);
        return cnnelm_fail(err, "-s %s: out of memory", shown);
    }
    char tok[64];
    int wide = find_wide_int(vcopy, tok, sizeof tok) > 0;
    snprintf(text, size, "v = %s%s\n;", vcopy, wide && is_plain_decimal(vcopy) ? "L" : "");
    config_t tmp;
    config_init(&tmp);
    int ok = config_read_string(&tmp, text) == CONFIG_TRUE &&
             config_setting_length(config_root_setting(&tmp)) == 1;
    config_setting_t *v = ok ? config_lookup(&tmp, "v") : NULL;
    int rc = -1;
    if (string_key && (!v || (config_setting_is_scalar(v) && config_setting_type(v) != CONFIG_TYPE_STRING))) {
        /* Convenience: a bare value for a string key is the string itself. */
        config_destroy(&tmp);
        config_init(&tmp);
        v = config_setting_add(config_root_setting(&tmp), "v", CONFIG_TYPE_STRING);
        config_setting_set_string(v, vcopy);
    } else if (!v) {
        cnnelm_fail(err, "-s %s: cannot parse the value: %s (write it as in a config file, strings "
                    "in double quotes)", shown, config_error_text(&tmp) ? config_error_text(&tmp)
                                                                  : "more than one setting");
        goto done;
    } else if (wide && !is_plain_decimal(vcopy)) {
        cnnelm_fail(err, "-s %s: integer %s does not fit in 32 bits; write it with the L suffix (%sL)",
                    shown, tok, tok);
        goto done;
    }

    /* Walk to the parent group, creating groups as needed. */
    config_setting_t *parent = config_root_setting(conf);
    char *seg = key;
    for (char *dot; (dot = strchr(seg, '.')) != NULL; seg = dot + 1) {
        *dot = 0;
        config_setting_t *g = config_setting_get_member(parent, seg);
        if (!g) {
            g = config_setting_add(parent, seg, CONFIG_TYPE_GROUP);
            config_setting_set_hook(g, (void *)ov);
        } else if (!config_setting_is_group(g)) {
            cnnelm_fail(err, "-s %s: '%s' is set to %s, not a group", shown, seg, type_text(config_setting_type(g)));
            goto done;
        }
        parent = g;
    }
    if (put_setting(parent, seg, v, (void *)ov)) {
        cnnelm_fail(err, "-s %s: cannot apply the override", shown);
        goto done;
    }
    rc = 0;
done:
    config_destroy(&tmp);
    free(text);
    free(vcopy);
    return rc;
}

/* ---- the effective configuration as text ---- */

static config_setting_t *group_for(config_setting_t *root, const char *path)
{
    const char *dot = strchr(path, '.');
    if (!dot) return root;
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(dot - path), path);
    config_setting_t *g = config_setting_get_member(root, name);
    return g ? g : config_setting_add(root, name, CONFIG_TYPE_GROUP);
}

static void add_value(config_setting_t *parent, const key_def *k, const void *base)
{
    const char *name = leaf(k->path);
    const char *p = (const char *)base + k->offset;
    switch (k->kind) {
    case K_INT: {
        long long v = load_int(base, k);
        int wide = k->size != sizeof(int) && (v > INT_MAX || strcmp(k->path, "train.seed") == 0);
        config_setting_t *s = config_setting_add(parent, name, wide ? CONFIG_TYPE_INT64 : CONFIG_TYPE_INT);
        if (wide) config_setting_set_int64(s, v);
        else config_setting_set_int(s, (int)v);
        break;
    }
    case K_FLOAT: {
        double v;
        memcpy(&v, p, sizeof v);
        if (k->auto_ok && v == 0)
            config_setting_set_string(config_setting_add(parent, name, CONFIG_TYPE_STRING), "auto");
        else
            config_setting_set_float(config_setting_add(parent, name, CONFIG_TYPE_FLOAT), v);
        break;
    }
    case K_FLOATS: {
        config_setting_t *a = config_setting_add(parent, name, CONFIG_TYPE_ARRAY);
        cnnelm_float_list list;
        memcpy(&list, p, sizeof list);
        for (int i = 0; i < list.n; i++)
            config_setting_set_float(config_setting_add(a, NULL, CONFIG_TYPE_FLOAT), list.v[i]);
        break;
    }
    case K_ENUM:
        config_setting_set_string(config_setting_add(parent, name, CONFIG_TYPE_STRING),
                                  enum_name(k->names, enum_count(k->names), (int)load_int(base, k)));
        break;
    case K_BOOL:
        config_setting_set_bool(config_setting_add(parent, name, CONFIG_TYPE_BOOL), (int)load_int(base, k));
        break;
    case K_NOISE: {
        config_setting_t *a = config_setting_add(parent, name, CONFIG_TYPE_ARRAY);
        unsigned mask = (unsigned)load_int(base, k);
        for (int i = 0; k->names[i]; i++)
            if (mask >> i & 1u)
                config_setting_set_string(config_setting_add(a, NULL, CONFIG_TYPE_STRING), k->names[i]);
        break;
    }
    default:
        config_setting_set_string(config_setting_add(parent, name, CONFIG_TYPE_STRING), p);
    }
}

static char *effective_text(const cnnelm_config *cfg)
{
    config_t out;
    config_init(&out);
    config_setting_t *root = config_root_setting(&out);
    for (size_t i = 0; i < N_KEYS; i++)
        if (!schema[i].worker)
            add_value(group_for(root, schema[i].path), &schema[i], cfg);
    config_setting_t *data = group_for(root, "data.x");
    config_setting_t *sources = config_setting_add(data, "sources", CONFIG_TYPE_LIST);
    for (int i = 0; i < cfg->data.n_sources; i++) {
        config_setting_t *g = config_setting_add(sources, NULL, CONFIG_TYPE_GROUP);
        const char *base = (const char *)cfg + (size_t)i * sizeof cfg->data.sources[0];
        for (size_t j = 0; j < N_KEYS; j++)
            if (schema[j].worker == 2)
                add_value(g, &schema[j], base);
    }
    config_setting_t *list = config_setting_add(root, "workers", CONFIG_TYPE_LIST);
    for (int w = 0; w < cfg->n_workers; w++) {
        config_setting_t *g = config_setting_add(list, NULL, CONFIG_TYPE_GROUP);
        for (size_t i = 0; i < N_KEYS; i++)
            if (schema[i].worker == 1)
                add_value(g, &schema[i], &cfg->workers[w]);
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f) {
        config_write(&out, f);
        if (fclose(f) != 0) {
            free(text);
            text = NULL;
        }
    }
    config_destroy(&out);
    return text;
}

/* ---- loading ---- */

static int read_file(config_t *conf, const char *path, cnnelm_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cnnelm_fail(err, "%s: cannot open: %s", path, strerror(errno));
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            size_t ncap = cap ? cap * 2 : 16384;
            char *t = realloc(text, ncap);
            if (!t) {
                free(text);
                fclose(f);
                return cnnelm_fail(err, "%s: out of memory", path);
            }
            text = t;
            cap = ncap;
        }
        size_t got = fread(text + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    int e = errno;
    fclose(f);
    if (bad) {
        free(text);
        return cnnelm_fail(err, "%s: cannot read: %s", path, strerror(e));
    }
    text[len] = 0;
    char tok[64];
    int line = find_wide_int(text, tok, sizeof tok);
    free(text);
    if (line)
        return cnnelm_fail(err, "%s:%d: integer %s does not fit in 32 bits; write it with the L suffix (%sL)",
                           path, line, tok, tok);

    /* @include paths are relative to the file's directory. */
    char dir[CNNELM_PATH_MAX];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    if (slash == path) snprintf(dir, sizeof dir, "/");
    config_set_include_dir(conf, dir);
    if (config_read_file(conf, path) != CONFIG_TRUE) {
        if (config_error_type(conf) == CONFIG_ERR_FILE_IO)
            return cnnelm_fail(err, "%s: cannot read: %s", config_error_file(conf) ? config_error_file(conf) : path,
                               config_error_text(conf) ? config_error_text(conf) : "I/O error");
        return cnnelm_fail(err, "%s:%d: %s", config_error_file(conf) ? config_error_file(conf) : path,
                           config_error_line(conf), config_error_text(conf) ? config_error_text(conf) : "parse error");
    }
    return 0;
}

/* Relative plugin_path entries name directories beside the config file, not wherever the
 * command runs (a directory a user happens to be in must not supply plugins); without a file,
 * the working directory. Rewritten absolute, so the effective config says what is searched. */
static int absolute_plugin_path(cnnelm_config *cfg, cnnelm_error *err)
{
    char base[CNNELM_PATH_MAX], out[CNNELM_PATH_MAX] = "";
    const char *slash = strrchr(cfg->path, '/');
    if (slash)
        snprintf(base, sizeof base, "%.*s", slash == cfg->path ? 1 : (int)(slash - cfg->path), cfg->path);
    else
        base[0] = '\0';
    if (base[0] != '/') {
        char cwd[CNNELM_PATH_MAX], rel[CNNELM_PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            return cnnelm_fail(err, "plugin_path: cannot read the working directory");
        snprintf(rel, sizeof rel, "%s", base);
        if (snprintf(base, sizeof base, "%s%s%s", cwd, rel[0] ? "/" : "", rel) >= (int)sizeof base)
            return cnnelm_fail(err, "plugin_path: the config file's directory is too long");
    }
    size_t used = 0;
    for (const char *p = cfg->plugin_path; *p;) {
        const char *end = strchr(p, ':');
        int len = end ? (int)(end - p) : (int)strlen(p);
        if (len > 0) {
            int n = p[0] == '/' ? snprintf(out + used, sizeof out - used, "%s%.*s", used ? ":" : "", len, p)
                                : snprintf(out + used, sizeof out - used, "%s%s/%.*s", used ? ":" : "",
                                           base, len, p);
            if (n < 0 || (size_t)n >= sizeof out - used)
                return cnnelm_fail(err, "plugin_path: too long once relative entries are made absolute "
                                   "against %s", base);
            used += (size_t)n;
        }
        if (!end)
            break;
        p = end + 1;
    }
    memcpy(cfg->plugin_path, out, sizeof out);
    return 0;
}

int cnnelm_config_load(cnnelm_config *cfg, const char *path, const char *const *overrides,
                       int n_overrides, cnnelm_error *err)
{
    cnnelm_config_defaults(cfg);
    if (path && strlen(path) >= sizeof cfg->path)
        return cnnelm_fail(err, "%.200s...: path too long", path);
    snprintf(cfg->path, sizeof cfg->path, "%s", path ? path : "");
    config_t conf;
    config_init(&conf);
    int rc = -1;
    if (path && *path && read_file(&conf, path, err))
        goto done;
    for (int i = 0; i < n_overrides; i++)
        if (apply_override(&conf, overrides[i], err))
            goto done;
    ctx c = {path && *path ? path : "(defaults)", err};
    if (check_group(&c, config_root_setting(&conf), "", cfg))
        goto done;
    /* keys that depend on each other; the message points at the setting (file:line or -s) */
    if (cfg->data.n_sources > 0 && (cfg->data.train_images[0] || cfg->data.train_labels[0] ||
                                    cfg->data.test_images[0] || cfg->data.test_labels[0])) {
        const char *names[] = {"train_images", "train_labels", "test_images", "test_labels"};
        const char *vals[] = {cfg->data.train_images, cfg->data.train_labels, cfg->data.test_images,
                              cfg->data.test_labels};
        int i = 0;
        while (!vals[i][0]) i++;
        char key[32];
        snprintf(key, sizeof key, "data.%s", names[i]);
        fail_at(&c, config_lookup(&conf, key), "data.%s is set, but data.sources replaces data.train_images, "
                "data.train_labels, data.test_images and data.test_labels: set them to \"\"", names[i]);
        goto done;
    }
    if (cfg->train.partitioning == CNNELM_PART_BY_SOURCE && cfg->data.n_sources == 0 && !cfg->data.shards[0]) {
        fail_at(&c, config_lookup(&conf, "train.partitioning"),
                "train.partitioning = \"by-source\" needs data.sources (one partition per source)");
        goto done;
    }
    if (cfg->train.folds == 1) {
        fail_at(&c, config_lookup(&conf, "train.folds"),
                "train.folds = 1: cross-validation needs at least 2 folds (0: off)");
        goto done;
    }
    if (absolute_plugin_path(cfg, err))
        goto done;
    cfg->text = effective_text(cfg);
    if (!cfg->text) {
        cnnelm_fail(err, "%s: out of memory", c.path);
        goto done;
    }
    rc = 0;
done:
    config_destroy(&conf);
    if (rc) {
        char keep[CNNELM_PATH_MAX];
        memcpy(keep, cfg->path, sizeof keep);
        cnnelm_config_defaults(cfg);
        memcpy(cfg->path, keep, sizeof keep);
    }
    return rc;
}

void cnnelm_config_free(cnnelm_config *cfg)
{
    if (!cfg) return;
    free(cfg->text);
    cfg->text = NULL;
}

/* ---- the reference (docs/config.md) ---- */

static void md_escape(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", out);
        else fputc(*s, out);
    }
}

void cnnelm_config_write_reference(FILE *out)
{
    fputs("| key | type | default | allowed | meaning |\n", out);
    fputs("|-----|------|---------|---------|---------|\n", out);
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_def *k = &schema[i];
        char def[160], range[160];
        default_text(k, def, sizeof def);
        range_text(k, range, sizeof range);
        if (k->kind == K_LAYERS)
            snprintf(range, sizeof range, "Nc / Ns joined by '-', N 1..1024");
        else if (k->kind == K_BACKEND)
            snprintf(range, sizeof range, "a plugin name: letters, digits, '_', '-'");
        else if (k->kind == K_STRING && k->size)
            snprintf(range, sizeof range, "at most %zu characters", k->size - 1);
        if (k->worker == 2) {
            fprintf(out, "| `data.sources[i].%s` | %s | %s", leaf(k->path), kind_text(k),
                    k->required ? "required" : "`\"\"`");
        } else if (k->worker) {
            fprintf(out, "| `workers[i].%s` | %s | ", leaf(k->path), kind_text(k));
            if (k->required) fputs("required (the default worker: `\"cpu\"`)", out);
            else fprintf(out, "`%s`", def);
        } else {
            fprintf(out, "| `%s` | %s | `%s`", k->path, kind_text(k), def);
        }
        fputs(" | ", out);
        md_escape(out, range);
        fputs(" | ", out);
        md_escape(out, k->help);
        fputs(" |\n", out);
    }
}
