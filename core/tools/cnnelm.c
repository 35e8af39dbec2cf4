/* cnnelm command-line tool: parses arguments and calls the library's jobs (cnnelm/run.h).
 * Exit status: 0 success, 1 a failed job (the message says why), 2 a usage error. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef CNNELM_HAVE_MPI
#include <mpi.h>
#endif

#include "cnnelm/backend.h"
#include "cnnelm/cluster.h"
#include "cnnelm/config.h"
#include "cnnelm/dataset.h"
#include "cnnelm/plugin.h"
#include "cnnelm/plugin_check.h"
#include "cnnelm/predict.h"
#include "cnnelm/reduce.h"
#include "cnnelm/run.h"
#include "plot.h"

#ifndef CNNELM_VERSION
#define CNNELM_VERSION "unknown"
#endif

static const char *usage_main =
    "usage: cnnelm COMMAND [OPTIONS]\n"
    "\n"
    "Train and evaluate CNN-ELM image classifiers (distributed averaging CNN-ELM).\n"
    "\n"
    "commands:\n"
    "  train         train a model as a config file says, evaluate it, save it\n"
    "  eval          evaluate a saved model on a config's test set\n"
    "  average       combine model files trained anywhere (mean, weighted, refit)\n"
    "  plot          draw a report's accuracy and J against iterations (PNG or SVG)\n"
    "  extend        write a config's extended (noisy) data set as IDX files\n"
    "  devices       list the backend plugins found and their devices\n"
    "  plugin-check  run a plugin's ops against the CPU reference (conformance)\n"
    "  predict       apply a model to images (IDX, PNG/JPEG files or folders, CSV)\n"
    "  info          show what a model file is\n"

    "\n"
    "options:\n"
    "  -h, --help     this help (`cnnelm COMMAND --help` for a command's options)\n"
    "  -V, --version  print the version\n"
    "  --allow-insecure-plugins  (any command) load plugin files that are writable by group or\n"
    "                 others or owned by another user, with a warning, instead of refusing them\n";

static const char *usage_train =
    "usage: cnnelm train -c CONFIG [-s KEY=VALUE]... [-o MODEL] [--report FILE.json] [--resume]\n"
    "                    [--strict] [--quiet]\n"
    "\n"
    "Train a CNN-ELM as CONFIG says (see conf/default.cfg and docs/config.md), evaluate it on the\n"
    "configured test set, print accuracy, kappa and the confusion matrix, and save the model.\n"
    "\n"
    "  -c, --config FILE     libconfig file (required)\n"
    "  -s, --set KEY=VALUE   override one setting, VALUE written as in a config file:\n"
    "                        -s train.seed=7  -s 'data.train_images=\"/data/x.gz\"'\n"
    "                        -s 'workers=({backend=\"cpu\";device=0;threads=2;})'\n"
    "  -o, --output MODEL    model file to write (default: cnnelm.model)\n"
    "      --report FILE     write a JSON report (results, per-iteration series, timings, config)\n"
    "      --resume          reuse the partitions already trained in train.checkpoint_dir\n"
    "      --strict          exit 1 when the run warned (a diverged partition, a model at chance\n"
    "                        level, a reduced model worse than every partition); the model and\n"
    "                        report are still written\n"
    "  -q, --quiet           no progress on stderr (warnings are still printed)\n"
    "  -v, --verbose         also show the backends' messages (program cache, build logs)\n"
    "  -h, --help            this help\n"
    "\n"
    "Under mpirun (mpirun -np N cnnelm train ...) the partitions are dealt to the N processes;\n"
    "rank 0 reduces, evaluates and alone writes the model and the report.\n";

static const char *usage_average =
    "usage: cnnelm average -o OUT.model [--reduce mean|weighted|refit] [-c CONFIG [-s K=V]...]\n"
    "                      A.model B.model ...\n"
    "\n"
    "Combine models trained from the same initial weights (same architecture and seed):\n"
    "  mean      average kernels, biases and beta (the paper)\n"
    "  weighted  the same, weighted by each model's number of training examples\n"
    "  refit     average kernels and biases, then solve beta from U and V summed over the\n"
    "            training data of CONFIG (required for refit) with the averaged kernels\n"
    "\n"
    "  -o, --output FILE     the combined model (required)\n"
    "      --reduce MODE     mean (default), weighted or refit\n"
    "  -c, --config FILE     the training data and workers, for refit\n"
    "  -s, --set KEY=VALUE   override one setting of CONFIG\n"
    "  -q, --quiet           no progress on stderr\n";

static const char *usage_plot =
    "usage: cnnelm plot REPORT.json -o FIGURE.png|FIGURE.svg\n"
    "\n"
    "Plot test accuracy, training accuracy and J against fine-tuning iterations for every model\n"
    "in a report written by `cnnelm train --report` (the paper's Fig. 7), through gnuplot.\n";

static const char *usage_extend =
    "usage: cnnelm extend -c CONFIG [-s KEY=VALUE]... -o DIR\n"
    "\n"
    "Write the training and test sets as CONFIG builds them (data.sources, data.extend noise)\n"
    "into DIR as IDX files (train-images-idx3-ubyte.gz, ...), for other tools.\n";

static const char *usage_check =
    "usage: cnnelm plugin-check PATH/TO/libcnnelm-NAME.so [--device N] [--timeout SECONDS] [-v]\n"
    "\n"
    "Load the plugin and query its devices, then run every op the plugin has on random inputs of\n"
    "many shapes against the CPU reference (writes past the end, unwritten outputs, repeated\n"
    "accumulating calls, two threads at once), each case in its own process (a crash or a hang\n"
    "is reported, not fatal), and print op, shape, max relative error, tolerance, speed relative\n"
    "to the reference and the result; the last line names the ops that failed and why. Ops the\n"
    "plugin leaves out run on the CPU reference in a training run and are listed as such.\n"
    "--timeout: the limit per case (default 60 s; the end-to-end training gets 10x).\n"
    "Exit status 0 only when every check passes.\n";

static const char *usage_eval =
    "usage: cnnelm eval -m MODEL -c CONFIG [-s KEY=VALUE]... [--report FILE.json] [--quiet]\n"
    "\n"
    "Evaluate a saved model on the test set named by CONFIG (data.test_images, data.test_labels),\n"
    "on the config's first worker. Prints accuracy, kappa and the confusion matrix.\n"
    "\n"
    "  -m, --model MODEL     model file (required)\n"
    "  -c, --config FILE     libconfig file (required)\n"
    "  -s, --set KEY=VALUE   override one setting (as for train)\n"
    "      --report FILE     write a JSON report\n"
    "  -q, --quiet           no progress on stderr\n"
    "  -h, --help            this help\n";

static const char *usage_devices =
    "usage: cnnelm devices [-v] [--plugin-path DIRS] [--timeout SECONDS]\n"
    "\n"
    "List every backend plugin (libcnnelm-NAME.so) on the search path and its devices. The search\n"
    "path is DIRS (colon-separated; relative to the working directory), then $CNNELM_PLUGIN_PATH\n"
    "(relative entries only as ./DIR), then the install directory (<prefix>/lib/cnnelm, found from\n"
    "where cnnelm is; build/lib/cnnelm in the build tree).\n"
    "\n"
    "  -v, --verbose         also print the search path and driver versions\n"
    "      --plugin-path D   directories to search first\n"
    "      --timeout S       a plugin that takes longer to load and list its devices is listed\n"
    "                        as broken (each is probed in a child process; default 30 s)\n"
    "  -h, --help            this help\n";

static const char *usage_predict =
    "usage: cnnelm predict -m MODEL INPUT... [-o PREDICTIONS.csv] [--top K] [--scores]\n"
    "                      [--labels FILE] [--resize] [-c CONFIG] [-s KEY=VALUE]... [--quiet]\n"
    "\n"
    "Apply a model to every example of the inputs and write one CSV row per example: source\n"
    "(image file, or FILE:INDEX), predicted class (and name), true label when known, then the\n"
    "top K or every score. INPUT: an IDX image file (its labels from --labels or a sibling\n"
    "...-labels-idx1-... file), a PNG or JPEG file, a folder of them (class subfolders give the\n"
    "labels), or a CSV file (label first, then pixels; or pixels only). With labels, prints the\n"
    "accuracy. Runs on CONFIG's first worker (default: the CPU), chunk by chunk.\n"
    "\n"
    "  -m, --model MODEL     model file (required)\n"
    "  -o, --output FILE     predictions CSV (default: stdout)\n"
    "      --top K           the K best classes and their scores\n"
    "      --scores          every class's score (H beta)\n"
    "      --labels FILE     IDX labels for an IDX input\n"
    "      --resize          resize images of another size to the model's input (bilinear)\n"
    "  -c, --config FILE     workers (backend, device) and train.chunk\n"
    "  -s, --set KEY=VALUE   override one setting\n"
    "  -q, --quiet           no progress on stderr\n";

static const char *usage_info =
    "usage: cnnelm info MODEL [--json]\n"
    "\n"
    "Print what a model file is: architecture, input size and channels, classes and their names,\n"
    "lambda, examples seen, iterations, diverged flag, reduce, partitions, CRC-32 and format version.\n";

enum { OPT_REPORT = 256, OPT_PLUGIN_PATH, OPT_RESUME, OPT_REDUCE, OPT_DEVICE, OPT_TOP, OPT_SCORES,
       OPT_LABELS, OPT_RESIZE, OPT_JSON, OPT_STRICT, OPT_TIMEOUT };

static int usage_error(const char *usage, const char *fmt, const char *arg)
{
    fprintf(stderr, "cnnelm: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", usage);
    return 2;
}

static int cmd_job(int argc, char **argv, int is_train, const cnnelm_cluster *cluster)
{
    const char *usage = is_train ? usage_train : usage_eval;
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' }, { "set", required_argument, NULL, 's' },
        { "output", required_argument, NULL, 'o' }, { "model", required_argument, NULL, 'm' },
        { "report", required_argument, NULL, OPT_REPORT }, { "quiet", no_argument, NULL, 'q' },
        { "resume", no_argument, NULL, OPT_RESUME },  { "help", no_argument, NULL, 'h' },
        { "verbose", no_argument, NULL, 'v' },
        { "strict", no_argument, NULL, OPT_STRICT },
        { NULL, 0, NULL, 0 },
    };
    cnnelm_run_options o = { 0 };
    o.cluster = cluster;
    o.out = stdout; /* the results; progress and warnings go to stderr */
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    if (!sets)
        return 1;
    int n_sets = 0, ch, rc;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, is_train ? "c:s:o:qvh" : "c:s:m:qvh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': o.config_path = optarg; break;
        case 's':
            if (!strchr(optarg, '=')) {
                free(sets);
                return usage_error(usage, "-s %s: expected KEY=VALUE", optarg);
            }
            sets[n_sets++] = optarg;
            break;
        case 'o': o.model_path = optarg; break;
        case 'm': o.model_path = optarg; break;
        case OPT_REPORT: o.report_path = optarg; break;
        case OPT_RESUME:
            if (!is_train) {
                free(sets);
                return usage_error(usage, "%s", "--resume is an option of train");
            }
            o.resume = 1;
            break;
        case OPT_STRICT:
            if (!is_train) {
                free(sets);
                return usage_error(usage, "%s", "--strict is an option of train");
            }
            o.strict = 1;
            break;
        case 'q': o.quiet = 1; break;
        case 'v': o.verbose = 1; break;
        case 'h': fputs(usage, stdout); free(sets); return 0;
        default:
            free(sets);
            return usage_error(usage, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) {
        free(sets);
        return usage_error(usage, "unexpected argument '%s'", argv[optind]);
    }
    if (!o.config_path) {
        free(sets);
        return usage_error(usage, "%s", "a config file is required (-c CONFIG)");
    }
    if (!is_train && !o.model_path) {
        free(sets);
        return usage_error(usage, "%s", "a model file is required (-m MODEL)");
    }
    if (!o.model_path)
        o.model_path = "cnnelm.model";
    o.overrides = sets;
    o.n_overrides = n_sets;
    cnnelm_error err = { "" };
    rc = is_train ? cnnelm_run_train(&o, &err) : cnnelm_run_eval(&o, &err);
    free(sets);
    if (rc != 0) {
        int sig = is_train ? cnnelm_run_interrupted() : 0;
        cnnelm_cluster_error(cluster, err.msg);
#ifdef CNNELM_HAVE_MPI
        if (cluster && cluster->mpi)
            MPI_Abort(MPI_COMM_WORLD, 1); /* ends every rank: a job never hangs */
#endif
        return sig ? 128 + sig : 1; /* 130 after SIGINT, as a shell reports it */
    }
    return 0;
}

static int cmd_average(int argc, char **argv)
{
    static const struct option opts[] = {
        { "output", required_argument, NULL, 'o' }, { "reduce", required_argument, NULL, OPT_REDUCE },
        { "config", required_argument, NULL, 'c' }, { "set", required_argument, NULL, 's' },
        { "quiet", no_argument, NULL, 'q' },        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    cnnelm_average_options o = { 0 };
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    if (!sets)
        return 1;
    int n_sets = 0, ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "o:c:s:qh", opts, NULL)) != -1) {
        switch (ch) {
        case 'o': o.output = optarg; break;
        case 'c': o.config_path = optarg; break;
        case 's': sets[n_sets++] = optarg; break;
        case 'q': o.quiet = 1; break;
        case OPT_REDUCE:
            if (!strcmp(optarg, "mean"))
                o.reduce = CNNELM_REDUCE_MEAN;
            else if (!strcmp(optarg, "weighted"))
                o.reduce = CNNELM_REDUCE_WEIGHTED;
            else if (!strcmp(optarg, "refit"))
                o.reduce = CNNELM_REDUCE_REFIT;
            else {
                free(sets);
                return usage_error(usage_average, "--reduce %s: expected mean, weighted or refit", optarg);
            }
            break;
        case 'h': fputs(usage_average, stdout); free(sets); return 0;
        default: free(sets); return usage_error(usage_average, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (!o.output) {
        free(sets);
        return usage_error(usage_average, "%s", "an output file is required (-o OUT.model)");
    }
    if (optind >= argc) {
        free(sets);
        return usage_error(usage_average, "%s", "no model files to combine");
    }
    o.models = (const char *const *)(argv + optind);
    o.n_models = argc - optind;
    o.overrides = sets;
    o.n_overrides = n_sets;
    cnnelm_error err = { "" };
    uint64_t examples = 0;
    int rc = cnnelm_average_models(&o, &examples, &err);
    free(sets);
    if (rc) {
        fprintf(stderr, "cnnelm: error: %s\n", err.msg);
        return 1;
    }
    printf("combined %d models (%s reduce, %llu training examples) into %s\n", o.n_models,
           cnnelm_reduce_name(o.reduce), (unsigned long long)examples, o.output);
    return 0;
}

static int cmd_plot(int argc, char **argv)
{
    static const struct option opts[] = {
        { "output", required_argument, NULL, 'o' }, { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    const char *out = NULL;
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'o': out = optarg; break;
        case 'h': fputs(usage_plot, stdout); return 0;
        default: return usage_error(usage_plot, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return usage_error(usage_plot, "%s", "expected one report file");
    if (!out)
        return usage_error(usage_plot, "%s", "an output file is required (-o FIGURE.png)");
    cnnelm_error err = { "" };
    if (cnnelm_run_plot(argv[optind], out, &err)) {
        fprintf(stderr, "cnnelm: error: %s\n", err.msg);
        return 1;
    }
    printf("plot written to %s\n", out);
    return 0;
}

static int cmd_extend(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' }, { "set", required_argument, NULL, 's' },
        { "output", required_argument, NULL, 'o' }, { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },         { NULL, 0, NULL, 0 },
    };
    const char *cfg = NULL, *dir = NULL;
    int quiet = 0, n_sets = 0, ch;
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    if (!sets)
        return 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "c:s:o:qh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': cfg = optarg; break;
        case 's': sets[n_sets++] = optarg; break;
        case 'o': dir = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': fputs(usage_extend, stdout); free(sets); return 0;
        default: free(sets); return usage_error(usage_extend, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (!cfg || !dir || optind < argc) {
        free(sets);
        return usage_error(usage_extend, "%s", "expected -c CONFIG and -o DIR");
    }
    cnnelm_error err = { "" };
    int rc = cnnelm_run_extend(cfg, sets, n_sets, dir, quiet, stdout, &err);
    free(sets);
    if (rc) {
        fprintf(stderr, "cnnelm: error: %s\n", err.msg);
        return 1;
    }
    return 0;
}

static int cmd_plugin_check(int argc, char **argv)
{
    static const struct option opts[] = {
        { "device", required_argument, NULL, OPT_DEVICE }, { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },                { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { NULL, 0, NULL, 0 },
    };
    int device = 0, verbose = 0, ch;
    double timeout = 60;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
        switch (ch) {
        case OPT_DEVICE: {
            char *end;
            long d = strtol(optarg, &end, 10);
            if (*end || d < 0 || d > 4096)
                return usage_error(usage_check, "--device %s: expected a device index", optarg);
            device = (int)d;
            break;
        }
        case OPT_TIMEOUT: {
            char *end;
            timeout = strtod(optarg, &end);
            if (*end || end == optarg || !(timeout > 0) || timeout > 86400)
                return usage_error(usage_check, "--timeout %s: expected seconds (> 0, at most 86400)", optarg);
            break;
        }
        case 'v': verbose = 1; break;
        case 'h': fputs(usage_check, stdout); return 0;
        default: return usage_error(usage_check, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return usage_error(usage_check, "%s", "expected one plugin file");
    cnnelm_error err = { "" };
    cnnelm_plugin_check_options copts = { .device = device, .verbose = verbose, .timeout_s = timeout };
    cnnelm_plugin_check_summary sum;
    int rc = cnnelm_plugin_check_run(argv[optind], &copts, stdout, &sum, &err);
    if (rc < 0) {
        fprintf(stderr, "cnnelm: error: %s\n", err.msg);
        return 1;
    }
    return sum.failed ? 1 : 0;
}

static int cmd_devices(int argc, char **argv)
{
    static const struct option opts[] = {
        { "verbose", no_argument, NULL, 'v' }, { "plugin-path", required_argument, NULL, OPT_PLUGIN_PATH },
        { "help", no_argument, NULL, 'h' },    { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { NULL, 0, NULL, 0 },
    };
    int verbose = 0, ch;
    double timeout = 30;
    const char *path = NULL;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
        switch (ch) {
        case 'v': verbose = 1; break;
        case OPT_PLUGIN_PATH: path = optarg; break;
        case OPT_TIMEOUT: {
            char *end;
            timeout = strtod(optarg, &end);
            if (*end || end == optarg || !(timeout > 0) || timeout > 86400)
                return usage_error(usage_devices, "--timeout %s: expected seconds (> 0, at most 86400)", optarg);
            break;
        }
        case 'h': fputs(usage_devices, stdout); return 0;
        default: return usage_error(usage_devices, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error(usage_devices, "unexpected argument '%s'", argv[optind]);
    cnnelm_error err = { "" };
    if (cnnelm_run_devices_timeout(path, verbose, timeout, stdout, &err) < 0) {
        fprintf(stderr, "cnnelm: error: %s\n", err.msg);
        return 1;
    }
    return 0;
}

/* --allow-insecure-plugins may stand anywhere: taken out before the command parses the rest. */
static int take_insecure_plugins_flag(int argc, char **argv)
{
    int m = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) { /* operands from here on */
            while (i < argc)
                argv[m++] = argv[i++];
            break;
        }
        if (strcmp(argv[i], "--allow-insecure-plugins") == 0)
            cnnelm_plugin_allow_insecure(1);
        else
            argv[m++] = argv[i];
    }
    argv[m] = NULL;
    return m;
}

static int cmd_predict(int argc, char **argv)
{
    static const struct option opts[] = {
        { "model", required_argument, NULL, 'm' },   { "output", required_argument, NULL, 'o' },
        { "top", required_argument, NULL, OPT_TOP }, { "scores", no_argument, NULL, OPT_SCORES },
        { "labels", required_argument, NULL, OPT_LABELS }, { "resize", no_argument, NULL, OPT_RESIZE },
        { "config", required_argument, NULL, 'c' },  { "set", required_argument, NULL, 's' },
        { "quiet", no_argument, NULL, 'q' },         { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    cnnelm_predict_options o = { 0 };
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    if (!sets)
        return 1;
    int n_sets = 0, ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "m:o:c:s:qh", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': o.model_path = optarg; break;
        case 'o': o.output_path = optarg; break;
        case 'c': o.config_path = optarg; break;
        case 's':
            if (!strchr(optarg, '=')) {
                free(sets);
                return usage_error(usage_predict, "-s %s: expected KEY=VALUE", optarg);
            }
            sets[n_sets++] = optarg;
            break;
        case OPT_TOP: {
            char *end;
            long k = strtol(optarg, &end, 10);
            if (*end || k < 1 || k > 256) {
                free(sets);
                return usage_error(usage_predict, "--top %s: expected a number of classes (1 or more)", optarg);
            }
            o.top_k = (int)k;
            break;
        }
        case OPT_SCORES: o.scores = 1; break;
        case OPT_LABELS: o.labels_path = optarg; break;
        case OPT_RESIZE: o.resize = 1; break;
        case 'q': o.quiet = 1; break;
        case 'h': fputs(usage_predict, stdout); free(sets); return 0;
        default:
            free(sets);
            return usage_error(usage_predict, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (!o.model_path) {
        free(sets);
        return usage_error(usage_predict, "%s", "a model file is required (-m MODEL)");
    }
    if (optind >= argc) {
        free(sets);
        return usage_error(usage_predict, "%s", "no inputs to predict");
    }
    o.inputs = (const char *const *)(argv + optind);
    o.n_inputs = argc - optind;
    o.overrides = sets;
    o.n_overrides = n_sets;
    cnnelm_error err = { "" };
    o.out = stdout; /* the CSV without -o, the summary with it */
    int rc = cnnelm_run_predict(&o, &err);
    free(sets);
    if (rc) {
        fprintf(stderr, "cnnelm: error: %s\n", err.msg);
        return 1;
    }
    return 0;
}

static int cmd_info(int argc, char **argv)
{
    static const struct option opts[] = {
        { "json", no_argument, NULL, OPT_JSON }, { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    int json = 0, ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case OPT_JSON: json = 1; break;
        case 'h': fputs(usage_info, stdout); return 0;
        default: return usage_error(usage_info, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return usage_error(usage_info, "%s", "expected one model file");
    cnnelm_error err = { "" };
    if (cnnelm_run_info(argv[optind], json, stdout, &err)) {
        fprintf(stderr, "cnnelm: error: %s\n", err.msg);
        return 1;
    }
    return 0;
}

/* What a command printed must reach stdout: a full disk or a closed stdout is an error (exit
 * 1), not a silent loss of the results. */
static int check_stdout(int rc)
{
    int e = fflush(stdout) != 0 ? errno : 0;
    if (!e && !ferror(stdout))
        return rc;
    if (rc == 0)
        fprintf(stderr, "cnnelm: error: writing the results to stdout failed: %s\n",
                e ? strerror(e) : "a write failed");
    return rc ? rc : 1;
}

/* A device whose call never returned leaves a thread inside its plugin: end without running
 * library destructors under it (the output is flushed, files are already committed). */
static int end_after_job(int rc)
{
    if (cnnelm_workers_abandoned()) {
        rc = check_stdout(rc);
        fflush(NULL);
        _Exit(rc);
    }
    return rc;
}

static int run_command(int argc, char **argv)
{
    argc = take_insecure_plugins_flag(argc, argv);
    if (argc < 2)
        return usage_error(usage_main, "%s", "no command given");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
        printf("cnnelm %s (plugin ABI %d.%d)\n", CNNELM_VERSION, CNNELM_BACKEND_ABI_MAJOR,
               CNNELM_BACKEND_ABI_MINOR);
        return 0;
    }
    /* getopt_long permutes from argv[1]: hand it the command's own arguments. */
    if (!strcmp(cmd, "eval"))
        return end_after_job(cmd_job(argc - 1, argv + 1, 0, NULL));
    if (!strcmp(cmd, "train")) {
        cnnelm_cluster cluster;
        cnnelm_error err = { "" };
        if (cnnelm_cluster_init(&cluster, &argc, &argv, &err)) {
            fprintf(stderr, "cnnelm: error: %s\n", err.msg);
            return 1;
        }
        int rc = cmd_job(argc - 1, argv + 1, 1, &cluster);
        cnnelm_cluster_finalize(&cluster);
        return end_after_job(rc);
    }
    if (!strcmp(cmd, "average"))
        return cmd_average(argc - 1, argv + 1);
    if (!strcmp(cmd, "plot"))
        return cmd_plot(argc - 1, argv + 1);
    if (!strcmp(cmd, "extend"))
        return cmd_extend(argc - 1, argv + 1);
    if (!strcmp(cmd, "plugin-check"))
        return cmd_plugin_check(argc - 1, argv + 1);
    if (!strcmp(cmd, "devices"))
        return cmd_devices(argc - 1, argv + 1);
    if (!strcmp(cmd, "predict"))
        return cmd_predict(argc - 1, argv + 1);
    if (!strcmp(cmd, "info"))
        return cmd_info(argc - 1, argv + 1);
    return usage_error(usage_main, "unknown command '%s'", cmd);
}

int main(int argc, char **argv)
{
    return check_stdout(run_command(argc, argv));
}
