/* cnnelm configuration schema: one table of every key (type, range, default, help) that the
 * checks, the defaults, the effective-config text and the reference (docs/config.md) all read,
 * and the names of the enums as config files write them. */
#include "config/config_schema.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(cnnelm_activation) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(cnnelm_pooling) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(cnnelm_reduce) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(cnnelm_partitioning) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(cnnelm_lr_schedule) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(cnnelm_sums) == sizeof(int), "enums are stored as int");

/* ---- enum names (index = enum value) ---- */

static const char *const activation_names[] = {"identity", "relu", "opttanh", NULL};
static const char *const pooling_names[] = {"mean", "max", NULL};
static const char *const reduce_names[] = {"mean", "weighted", "refit", NULL};
static const char *const partitioning_names[] = {"shuffle", "stratified", "contiguous", "label-skew",
                                                  "by-source", NULL};
static const char *const lr_schedule_names[] = {"constant", "inverse", NULL};
static const char *const init_names[] = {"zero-mean", "uniform", "patches", NULL};
static const char *const sums_names[] = {"float", "double", NULL};
static const char *const noise_names[] = {"gaussian", "salt_pepper", "poisson", NULL};
static const char *const augment_names[] = {"hflip", "shift", NULL}; /* CNNELM_AUGMENT_* bits */

const char *cnnelm_schema_enum_name(const char *const *names, int v)
{
    int n = 0;
    while (names[n]) n++;
    return v >= 0 && v < n ? names[v] : "unknown";
}

#define NAME(list, v) cnnelm_schema_enum_name(list, (int)(v))
const char *cnnelm_activation_name(cnnelm_activation a) { return NAME(activation_names, a); }
const char *cnnelm_pooling_name(cnnelm_pooling p) { return NAME(pooling_names, p); }
const char *cnnelm_reduce_name(cnnelm_reduce r) { return NAME(reduce_names, r); }
const char *cnnelm_partitioning_name(cnnelm_partitioning p) { return NAME(partitioning_names, p); }
const char *cnnelm_lr_schedule_name(cnnelm_lr_schedule s) { return NAME(lr_schedule_names, s); }
#undef NAME

/* ---- the schema ---- */

#define CF(f) .offset = offsetof(cnnelm_config, f), .size = sizeof(((cnnelm_config *)0)->f)
#define SF(f) .offset = offsetof(cnnelm_config, data.sources[0].f), .size = sizeof(((cnnelm_config *)0)->data.sources[0].f)
#define WF(f) .offset = offsetof(cnnelm_worker_config, f), .size = sizeof(((cnnelm_worker_config *)0)->f)

const key_def cnnelm_schema[] = {
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
    {.path = "data.augment", .kind = K_NOISE, CF(data.augment), .names = augment_names, .idef = 0,
     .help = "Train-only augmentation: one transformed copy of every training image (data.extend's "
             "copies included) per name listed, each at most once: \"hflip\" (mirrored left-right), "
             "\"shift\" (moved one pixel right, left, down or up, seeded per image by train.seed; "
             "zero fill). Copies follow in that order and are made when fetched; the test set is "
             "never changed. []: none."},
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
    {.path = "data.hold_mb", .kind = K_INT, CF(data.hold_mb), .imin = 0, .imax = NO_MAX, .idef = 512,
     .help = "With data.stream: when the streamed image files of a set (training or test) take at "
             "most this many MiB together, each is read into memory whole at its first use, then "
             "rows are copied from there (a shuffled partition would otherwise cost one read per "
             "row); bigger sets stream row by row. 0: always row by row."},
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
             "pooling; N in 1..1024. The string may end with a multi-scale group, \"(4s,12s)\": "
             "the maps before it pooled at each size, side by side in H, and then with \"-sqrt\": "
             "the signed square root of every feature (both without fine-tuning). Shapes are "
             "checked against the data when training starts."},
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
             "the same with each kernel's mean subtracted (about 1 point more test accuracy); patches: "
             "the first convolution's kernels are k x k patches of training images drawn by train.seed "
             "(the same for every partition, worker and rank), mean-subtracted and scaled to the "
             "zero-mean kernel's norm, deeper layers zero-mean (measured: docs/data.md)."},
    {.path = "model.whiten", .kind = K_FLOAT, CF(model.whiten), .fmin = 0, .fmax = 1e6, .fdef = 0,
     .help = "With model.init = \"patches\": ZCA-whitening regulariser eps, a share of the mean "
             "patch variance. Each drawn kernel w becomes (S + eps I)^-1 w at its norm, S the "
             "covariance of the training images' mean-subtracted patches: the patch as seen through "
             "whitened inputs (edges weigh more than smooth gradients). 0: plain patches; 0.1 "
             "measured best (docs/data.md). An error with another model.init."},

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
    {.path = "train.sync_every", .kind = K_INT, CF(train.sync_every), .imin = 0, .imax = 1000000000,
     .idef = 0,
     .help = "n > 0: partitions fine-tuning in parallel average their kernels, biases and momentum "
             "velocities every n batches (and at the end of each iteration), exactly, across workers "
             "and ranks; each keeps its own beta, U and V. Needs train.iterations > 0 and "
             "train.partitions > 1; not with train --resume. 0: one average at the end (the paper)."},
    {.path = "train.sync_beta", .kind = K_BOOL, CF(train.sync_beta), .idef = 0,
     .help = "With train.sync_every = n: the partitions' beta is shared too: at each average the "
             "increments of every partition's running U and V are summed exactly, and every "
             "partition's next batch is back-propagated with the beta of those sums (its own later "
             "increments added until the next average), so the kernels follow the gradient of all "
             "the classes. Needs train.sync_every > 0."},
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
    /* lambda by held-out accuracy (issue 12) */
    {.path = "train.validation", .kind = K_FLOAT, CF(train.validation), .fmin = 0, .fmax = 0.5, .fmax_open = 1,
     .fdef = 0.0,
     .help = "With model.lambda = \"auto\": the share of each model's training rows held out "
             "(stratified by class, seeded by train.seed, the same rows whatever the workers or ranks) "
             "to choose lambda by held-out accuracy instead of GCV; beta is then refitted on every row "
             "with the chosen lambda. 0: GCV. Without \"auto\" an error."},
    {.path = "train.memory_limit", .kind = K_INT, CF(train.memory_limit), .imin = 0, .imax = NO_MAX,
     .idef = 0, .help = "Host memory in MiB a run may plan to use (ELM sums and solve in double, "
                        "buffers per worker, per-partition models; printed before the run): a run "
                        "that needs more is refused before it starts. 0: MemAvailable from "
                        "/proc/meminfo."},
    {.path = "train.sums", .kind = K_ENUM, CF(train.sums), .names = sums_names, .idef = CNNELM_SUMS_FLOAT,
     .help = "How the device sums U = H'H and V = H'T within an ELM batch: float (fast), or double "
             "(each product exact, the sums independent of how examples are grouped into chunks, "
             "batches and partitions beyond double rounding: refit's beta then equals one model's "
             "to 1e-9; slower for large L, see docs/config.md)."},

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

const size_t cnnelm_schema_n = sizeof cnnelm_schema / sizeof cnnelm_schema[0];
#define N_KEYS cnnelm_schema_n

const char *cnnelm_schema_leaf(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

const key_def *cnnelm_schema_find(const char *path, int worker)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        if (cnnelm_schema[i].worker != worker) continue;
        if (strcmp(worker ? cnnelm_schema_leaf(cnnelm_schema[i].path) : cnnelm_schema[i].path, path) == 0)
            return &cnnelm_schema[i];
    }
    return NULL;
}

/* A group of the schema: some non-worker key lies under "path.". */
int cnnelm_schema_is_group(const char *path)
{
    size_t n = strlen(path);
    for (size_t i = 0; i < N_KEYS; i++)
        if (cnnelm_schema[i].worker == KEY_TOP && strncmp(cnnelm_schema[i].path, path, n) == 0 &&
            cnnelm_schema[i].path[n] == '.')
            return 1;
    return 0;
}

void cnnelm_schema_range_text(const key_def *k, char *buf, size_t size)
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

void cnnelm_schema_store_int(void *base, const key_def *k, long long v)
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

long long cnnelm_schema_load_int(const void *base, const key_def *k)
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

void cnnelm_schema_store_default(void *base, const key_def *k)
{
    char *p = (char *)base + k->offset;
    switch (k->kind) {
    case K_INT: case K_ENUM: case K_BOOL: case K_NOISE: cnnelm_schema_store_int(base, k, k->idef); break;
    case K_FLOAT: memcpy(p, &k->fdef, sizeof(double)); break;
    case K_FLOATS: memset(p, 0, k->size); break;
    default: snprintf(p, k->size, "%s", k->sdef); break;
    }
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
        const key_def *k = &cnnelm_schema[i];
        char def[160], range[160];
        default_text(k, def, sizeof def);
        cnnelm_schema_range_text(k, range, sizeof range);
        if (k->kind == K_LAYERS)
            snprintf(range, sizeof range, "Nc / Ns joined by '-', N 1..1024");
        else if (k->kind == K_BACKEND)
            snprintf(range, sizeof range, "a plugin name: letters, digits, '_', '-'");
        else if (k->kind == K_STRING && k->size)
            snprintf(range, sizeof range, "at most %zu characters", k->size - 1);
        if (k->worker == KEY_IN_SOURCES) {
            fprintf(out, "| `data.sources[i].%s` | %s | %s", cnnelm_schema_leaf(k->path), kind_text(k),
                    k->required ? "required" : "`\"\"`");
        } else if (k->worker == KEY_IN_WORKERS) {
            fprintf(out, "| `workers[i].%s` | %s | ", cnnelm_schema_leaf(k->path), kind_text(k));
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
